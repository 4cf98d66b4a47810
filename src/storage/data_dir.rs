//! The data directory as storage writes it: every call that changes what is
//! on disk goes through one [`FileOps`], and the first one that fails stops
//! all writing.
//!
//! [`FileStorage`](super::file::FileStorage) and its snapshot files write only
//! through a [`DataDir`]: with [`StdFileOps`] in a server, and in the tests of
//! every error path (`storage/faults.rs`) with one that fails the Nth write,
//! fsync or rename with ENOSPC or EIO. Reads go straight to `std::fs`: a failed
//! read changes nothing and acknowledges nothing (at start-up it stops the
//! start; a snapshot piece that cannot be read is not sent, and the leader
//! tries again later).
//!
//! Why the first failure stops all writing: after a failed write or fsync the
//! file's state is unknown. Linux may drop the dirty pages it could not write
//! and clear the error, so a retried fsync reports success for data that is
//! lost (PostgreSQL's "fsyncgate", 2018). Nothing written after a failure can
//! be trusted, so every later write-side call fails at once with the first
//! error, and the server stops (fail-stop, as etcd does: `server/etcdserver/
//! raft.go` calls `Fatal` when saving fails). Its next start recovers from
//! what is durable.
//!
//! Every error names what failed and on which file, and keeps its kind:
//! `fdatasync /var/lib/raftkv/log: No space left on device (os error 28)`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The file-system calls that change what is on disk. Each may fail (ENOSPC,
/// EIO, EROFS); the implementation says nothing about what to do then.
pub trait FileOps: Send + Sync {
    /// Creates (or empties) the file at `path` for writing.
    fn create(&self, path: &Path) -> io::Result<File>;
    /// Opens the existing file at `path` for appending (and truncating).
    fn open_append(&self, path: &Path) -> io::Result<File>;
    /// Writes some of `bytes` to `file`, as [`Write::write`] does.
    fn write(&self, file: &mut File, bytes: &[u8]) -> io::Result<usize>;
    /// fdatasync: the file's data (and the size that reaches it) is durable.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsync: the file's data and metadata are durable.
    fn sync_all(&self, file: &File) -> io::Result<()>;
    /// Cuts `file` (or extends it with zeros) to `len` bytes.
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsyncs the directory at `dir`: renames and deletions in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
pub struct StdFileOps;

impl FileOps for StdFileOps {
    fn create(&self, path: &Path) -> io::Result<File> {
        File::create(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).open(path)
    }

    fn write(&self, file: &mut File, bytes: &[u8]) -> io::Result<usize> {
        file.write(bytes)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// One storage directory, written through a [`FileOps`].
///
/// Invariant: once a write-side call has failed, `failed` holds its error and
/// every later write-side call returns it without touching the disk.
pub struct DataDir {
    path: PathBuf,
    ops: Box<dyn FileOps>,
    /// Bytes written through this directory's files since it was opened
    /// (the free-space estimate subtracts them between measurements).
    written: AtomicU64,
    /// The first failure: its kind and its message (naming call and file).
    failed: Mutex<Option<(io::ErrorKind, String)>>,
}

impl DataDir {
    /// The directory at `path` (created if needed), written through `ops`.
    pub fn open(path: &Path, ops: Box<dyn FileOps>) -> io::Result<Arc<DataDir>> {
        fs::create_dir_all(path)?;
        Ok(Arc::new(DataDir {
            path: path.to_path_buf(),
            ops,
            written: AtomicU64::new(0),
            failed: Mutex::new(None),
        }))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the file `name` in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Bytes written through the directory's files since it was opened.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The first write-side call that failed, if one has: after it, the
    /// directory refuses every write.
    pub fn failure(&self) -> Option<io::Error> {
        self.lock_failed()
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    fn lock_failed(&self) -> MutexGuard<'_, Option<(io::ErrorKind, String)>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one write-side call `what` on `path`: refused if an earlier one
    /// failed; a failure names the call and the file, and is kept.
    fn run<T>(
        &self,
        what: &str,
        path: &Path,
        call: impl FnOnce(&dyn FileOps) -> io::Result<T>,
    ) -> io::Result<T> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        call(&*self.ops).map_err(|e| {
            let message = format!("{what} {}: {e}", path.display());
            let mut failed = self.lock_failed();
            failed.get_or_insert((e.kind(), message.clone()));
            io::Error::new(e.kind(), message)
        })
    }

    /// Creates (or empties) the file `name` for writing.
    pub fn create(self: &Arc<Self>, name: &str) -> io::Result<DiskFile> {
        let path = self.join(name);
        let file = self.run("create", &path, |ops| ops.create(&path))?;
        Ok(DiskFile {
            file,
            path,
            dir: Arc::clone(self),
        })
    }

    /// Opens the existing file `name` to append to it.
    pub fn open_append(self: &Arc<Self>, name: &str) -> io::Result<DiskFile> {
        let path = self.join(name);
        let file = self.run("open", &path, |ops| ops.open_append(&path))?;
        Ok(DiskFile {
            file,
            path,
            dir: Arc::clone(self),
        })
    }

    /// Renames `from` to `to` in the directory (durable only after [`DataDir::sync`]).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (self.join(from), self.join(to));
        self.run("rename", &from, |ops| ops.rename(&from, &to))
    }

    /// Deletes the file `name`; one already gone is fine (two deleters may race).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let path = self.join(name);
        self.run("delete", &path, |ops| match ops.remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            done => done,
        })
    }

    /// fsyncs the directory: the renames and deletions in it are durable.
    pub fn sync(&self) -> io::Result<()> {
        self.run("fsync", &self.path, |ops| ops.sync_dir(&self.path))
    }
}

/// A file opened for writing through its [`DataDir`]: writes and syncs go
/// through the directory's [`FileOps`] and its failure rule.
pub struct DiskFile {
    file: File,
    path: PathBuf,
    dir: Arc<DataDir>,
}

impl DiskFile {
    /// fdatasync: the data written so far is durable.
    pub fn sync_data(&self) -> io::Result<()> {
        self.dir
            .run("fdatasync", &self.path, |ops| ops.sync_data(&self.file))
    }

    /// fsync: the data and metadata written so far are durable.
    pub fn sync_all(&self) -> io::Result<()> {
        self.dir
            .run("fsync", &self.path, |ops| ops.sync_all(&self.file))
    }

    /// Cuts the file to `len` bytes (durable after a sync).
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.dir
            .run("truncate", &self.path, |ops| ops.set_len(&self.file, len))
    }
}

impl Write for DiskFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let file = &mut self.file;
        let n = self
            .dir
            .run("write", &self.path, |ops| ops.write(file, bytes))?;
        self.dir.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Nothing is buffered here: durability is [`DiskFile::sync_data`]'s.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for DiskFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}
