//! Durable storage in a directory: hard state, snapshots, and an append-only log.
//!
//! ```text
//! DIR/hardstate           term + vote     replaced atomically (write temp, fsync, rename, fsync dir)
//! DIR/snapshot-<i>-<t>    a snapshot      streamed in, then renamed, the same way (snapshot_files.rs)
//! DIR/log                 append-only records, fdatasynced per save (log_file.rs); rewritten after some snapshots
//! ```
//!
//! Every file starts with an 8-byte magic naming its kind and format version;
//! `hardstate` holds one checksummed record, `log` a sequence of them.
//!
//! Appending costs O(batch): new entries are appended as records and replayed at
//! start-up, where a later record at an index overrides earlier ones. A new
//! snapshot that agrees with the log (§7: the log holds its last entry) leaves
//! the file alone: start-up replays the file, then drops what the newest
//! snapshot covers, which is what the snapshot did to the log in memory. Only
//! once the file has grown to 64 MiB (`LOG_REWRITE_BYTES`, and twice what it still
//! needs) does a snapshot rewrite it, atomically like the other files; a
//! snapshot that disagrees (a leader's, replacing a conflicting log) rewrites
//! it at once, since entries appended after it must not follow the old ones.
//! Rewriting costs fsyncs and a rename on the node thread (and freeing the
//! old file's blocks, slow for a large file), so it is rare, and
//! the old file is closed (its blocks freed) on another thread, as older
//! snapshot files are deleted. While the disk is low on space
//! ([`FileStorage::set_space_low`]) the 64 MiB floor goes: every snapshot
//! rewrites a file that is more than half dead, so that compacting frees
//! space even on a disk smaller than the floor.
//!
//! A torn final record (a crash or a failed write mid-append: never
//! acknowledged) is cut off at start-up. Any other checksum or format failure
//! refuses to start, naming the file: starting empty could make this server
//! vote twice or forget entries it acknowledged.
//!
//! Every write goes through a [`DataDir`]: the first write, fsync or rename
//! that fails makes every later one fail with the same error (after a failed
//! fsync nothing written can be trusted; see `data_dir.rs`), and the error
//! names the call and the file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::data_dir::{DataDir, DiskFile, FileOps, StdFileOps};
use super::log_file::{self, LogState, LOG};
use super::snapshot_files::SnapshotFiles;
use super::{SnapshotFill, Storage};
use crate::codec::{Decode, Encode};
use crate::raft::core::InitialState;
use crate::raft::ready::{HardState, Persist, Snapshot};

const HARDSTATE: &str = "hardstate";
const HARDSTATE_MAGIC: &[u8; 8] = b"RKVHS01\n";
/// A snapshot that agrees with the log leaves the log file alone (start-up
/// drops what the snapshot covers) until the file is this long, and twice
/// what it still needs: then it is rewritten. Rewriting costs the node thread
/// several milliseconds (fsyncs, a rename), too much for every snapshot.
const LOG_REWRITE_BYTES: u64 = 64 << 20;

/// Raft state in files under one directory.
pub struct FileStorage {
    dir: Arc<DataDir>,
    state: Mutex<LogState>,
    snapshots: SnapshotFiles,
    /// [`LOG_REWRITE_BYTES`], smaller in tests.
    rewrite_bytes: u64,
    /// The disk is low on space: rewrite the log at every snapshot that
    /// leaves it more than half dead.
    space_low: AtomicBool,
}

impl FileStorage {
    /// Opens (creating if needed) storage in `dir`. Nothing is read until `load`.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with(dir, Box::new(StdFileOps))
    }

    /// [`FileStorage::open`], writing through `ops` (tests make its calls fail).
    pub fn open_with(dir: impl AsRef<Path>, ops: Box<dyn FileOps>) -> io::Result<Self> {
        let dir = DataDir::open(dir.as_ref(), ops)?;
        Ok(FileStorage {
            snapshots: SnapshotFiles::new(Arc::clone(&dir)),
            dir,
            rewrite_bytes: LOG_REWRITE_BYTES,
            state: Mutex::new(LogState::new()),
            space_low: AtomicBool::new(false),
        })
    }

    /// Rewrites the log after a snapshot once it is `bytes` long (tests).
    #[cfg(test)]
    pub(super) fn with_rewrite_bytes(mut self, bytes: u64) -> Self {
        self.rewrite_bytes = bytes;
        self
    }

    /// The directory, for its byte count and its first failure.
    pub fn data_dir(&self) -> &Arc<DataDir> {
        &self.dir
    }

    /// Says whether the disk is low on space: while it is, every snapshot
    /// rewrites a log file that is more than half dead, however short, so
    /// that compacting frees space (the free-space guard sets this).
    pub fn set_space_low(&self, low: bool) {
        self.space_low.store(low, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a single-record file, or `None` if it does not exist.
    fn read_single(&self, name: &str, magic: &[u8; 8]) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let body = bytes.strip_prefix(magic.as_slice()).ok_or_else(|| {
            log_file::corrupt(&path, "wrong magic (not a raftkv file, or another version)")
        })?;
        match log_file::read_record(body, 0) {
            log_file::RecordRead::Ok(payload, end) if end == body.len() => {
                Ok(Some(payload.to_vec()))
            }
            _ => Err(log_file::corrupt(&path, "checksum or length mismatch")),
        }
    }

    /// Write temp → fsync → rename → fsync dir: after this returns, `name` holds
    /// `payload` even across a crash; a crash (or a failure) before leaves the
    /// old file intact.
    fn write_atomically(&self, name: &str, magic: &[u8; 8], payload: &[u8]) -> io::Result<()> {
        let mut bytes = magic.to_vec();
        log_file::push_record(&mut bytes, payload);
        self.replace_file(name, &bytes).map(drop)
    }

    fn replace_file(&self, name: &str, bytes: &[u8]) -> io::Result<DiskFile> {
        let tmp = format!("{name}.tmp");
        // 1. Write the new content beside the old file.
        let mut file = self.dir.create(&tmp)?;
        file.write_all(bytes)?;
        // 2. Make the content durable before it can become visible under `name`.
        file.sync_all()?;
        // 3. Atomically replace the old file: readers see old or new, never a mix.
        self.dir.rename(&tmp, name)?;
        // 4. Make the rename itself durable (it lives in the directory).
        self.dir.sync()?;
        Ok(file)
    }

    /// Rewrites the log file from the mirror (after a snapshot moved its base).
    fn rewrite_log(&self, log: &mut LogState) -> io::Result<()> {
        let bytes = log.encode_file();
        // Kept open across the rename, so that freeing the old file's blocks
        // (milliseconds for a long log) happens when it closes, off this thread.
        let old = log.file.take();
        drop(self.replace_file(LOG, &bytes)?);
        log.file = Some(self.dir.open_append(LOG)?);
        log.file_bytes = bytes.len() as u64;
        in_background("log-gc", move || drop(old));
        Ok(())
    }

    /// Fails at once if an earlier write failed: nothing is changed after one.
    fn check_writable(&self) -> io::Result<()> {
        self.dir.failure().map_or(Ok(()), Err)
    }
}

impl Storage for FileStorage {
    fn load(&self) -> io::Result<InitialState> {
        self.check_writable()?;
        let hard_state = match self.read_single(HARDSTATE, HARDSTATE_MAGIC)? {
            Some(p) => HardState::decode(&p)
                .map_err(|e| log_file::corrupt(&self.path(HARDSTATE), &e.to_string()))?,
            None => HardState::default(),
        };
        // Half-written replacements left by a crash or a failed write: never
        // read, and on a full disk their space is wanted.
        self.dir.remove(&format!("{HARDSTATE}.tmp"))?;
        self.dir.remove(&format!("{LOG}.tmp"))?;
        let snapshot = self.snapshots.latest()?.unwrap_or_default();
        let mut log = self.lock();
        let existed = log_file::replay(&self.dir, &mut log)?;
        if snapshot.last_included_index < log.base_index {
            return Err(log_file::corrupt(
                &self.path(LOG),
                &format!(
                    "log starts after index {}, but the snapshot ends at {}",
                    log.base_index, snapshot.last_included_index
                ),
            ));
        }
        let needs_rewrite = !existed || snapshot.last_included_index > log.base_index;
        if snapshot.last_included_index > log.base_index {
            // A crash between storing a snapshot and rewriting the log.
            log.rebase(snapshot.last_included_index, snapshot.last_included_term);
        }
        if needs_rewrite {
            self.rewrite_log(&mut log)?;
        } else {
            log.file = Some(self.dir.open_append(LOG)?);
        }
        Ok(InitialState {
            hard_state,
            snapshot,
            entries: log.entries.clone(),
        })
    }

    /// Writes in the order that keeps every crash point safe: hard state first
    /// (a term must be durable before entries of that term are), then the
    /// snapshot pieces (a complete snapshot is durable under its name before
    /// anything depends on it), then the log (its entries are dropped only once
    /// the snapshot covering them is durable), then older snapshots go.
    ///
    /// A failure at any step returns it and leaves a prefix of the steps done,
    /// as a crash would; the directory then refuses every later write.
    fn save(&self, persist: &Persist) -> io::Result<()> {
        self.check_writable()?;
        if let Some(hs) = &persist.hard_state {
            self.write_atomically(HARDSTATE, HARDSTATE_MAGIC, &hs.encode())?;
        }
        for chunk in &persist.snapshot_chunks {
            self.snapshots.receive(chunk)?;
        }
        let mut log = self.lock();
        let mut rewrite = false;
        if let Some(snapshot) = &persist.snapshot {
            let agrees = log.rebase(snapshot.last_included_index, snapshot.last_included_term);
            // A log that agrees with the snapshot stays as it is: start-up
            // replays it and drops what the snapshot covers, exactly as here.
            // One that disagrees was dropped whole (§7), which the file must
            // say before anything is appended after the snapshot. On a disk
            // low on space, a file more than half dead is rewritten to free it.
            let floor = if self.space_low.load(Ordering::Relaxed) {
                0
            } else {
                self.rewrite_bytes
            };
            rewrite = !agrees || log.file_bytes >= floor.max(2 * log.live_bytes());
        }
        if let Some(write) = &persist.log {
            let last_index = log.last_index();
            log.apply(write)
                .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
            let bytes = log_file::append_records(write, last_index);
            if !rewrite && !bytes.is_empty() {
                let file = log
                    .file
                    .as_mut()
                    .ok_or_else(|| io::Error::other("storage used before load"))?;
                file.write_all(&bytes)?;
                // fdatasync: the appended records must be on disk before any
                // peer hears of them.
                file.sync_data()?;
                log.file_bytes += bytes.len() as u64;
            }
        }
        if rewrite {
            self.rewrite_log(&mut log)?;
        }
        if let Some(snapshot) = persist.snapshot.clone() {
            // Older snapshots are no longer needed (start-up takes the newest),
            // and deleting a large file takes milliseconds: off this thread.
            // A deletion that fails leaves the file (the next snapshot deletes
            // it) and, like any failed write, fails the directory's next one.
            let files = SnapshotFiles::new(Arc::clone(&self.dir));
            in_background("snapshot-gc", move || {
                if let Err(e) = files.keep_from(&snapshot) {
                    crate::info!(0, 0, "could not delete old snapshots: {e}");
                }
            });
        }
        Ok(())
    }

    fn write_snapshot(&self, snapshot: Snapshot, fill: SnapshotFill<'_>) -> io::Result<Snapshot> {
        self.check_writable()?;
        self.snapshots.write(snapshot, fill)
    }

    fn open_snapshot(&self, snapshot: &Snapshot) -> io::Result<Box<dyn std::io::Read + Send>> {
        self.snapshots.open(snapshot)
    }

    fn read_snapshot_chunk(
        &self,
        snapshot: &Snapshot,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        self.snapshots.read_chunk(snapshot, offset, len)
    }
}

/// Runs `work` on a thread of its own. Nothing depends on it: if no thread
/// can start, it is skipped (the next snapshot deletes what this one would
/// have, and an old log file is freed as the closure is dropped).
fn in_background(name: &str, work: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(work);
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Read;

    use super::*;
    use crate::raft::configuration::Configuration;
    use crate::raft::messages::{Entry, Index, Term};
    use crate::raft::ready::LogWrite;
    use crate::storage::log_file::LOG_MAGIC;

    fn entry(term: Term, command: &str) -> Entry {
        Entry::command(term, command.as_bytes().to_vec())
    }

    fn write(first_index: Index, entries: Vec<Entry>) -> Persist {
        Persist {
            log: Some(LogWrite {
                first_index,
                entries,
            }),
            ..Persist::default()
        }
    }

    /// A snapshot through `index` (term 1), the configuration as of it a
    /// learner's addition at index 2 (thesis §4.1).
    fn point(index: Index) -> Snapshot {
        let addresses = [(1, "h:1".to_string())].into_iter().collect();
        Snapshot {
            last_included_index: index,
            last_included_term: 1,
            configuration: Configuration::bootstrap(&[1], &addresses).with_learner(2, "h:2"),
            configuration_index: 2,
            size: 0,
        }
    }

    fn reopen(dir: &Path) -> io::Result<InitialState> {
        FileStorage::open(dir)?.load()
    }

    #[test]
    fn state_survives_reopening_with_truncations_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap(), InitialState::default());
        let hs = HardState {
            current_term: 4,
            voted_for: Some(2),
        };
        s.save(&Persist {
            hard_state: Some(hs),
            ..write(1, vec![entry(1, "a"), entry(1, "b"), entry(2, "c")])
        })
        .unwrap();
        s.save(&write(3, vec![entry(3, "C"), entry(3, "d")]))
            .unwrap();
        s.save(&write(4, vec![])).unwrap(); // pure truncation
        let loaded = reopen(dir.path()).unwrap();
        assert_eq!(loaded.hard_state, hs);
        assert_eq!(
            loaded.entries,
            vec![entry(1, "a"), entry(1, "b"), entry(3, "C")]
        );
        let snapshot = s
            .write_snapshot(point(2), &mut |w| w.write_all(b"ab"))
            .unwrap();
        s.save(&Persist {
            snapshot: Some(snapshot.clone()),
            ..Persist::default()
        })
        .unwrap();
        s.save(&write(4, vec![entry(3, "e")])).unwrap();
        let loaded = reopen(dir.path()).unwrap();
        assert_eq!(loaded.snapshot, snapshot, "with its configuration");
        let mut bytes = Vec::new();
        s.open_snapshot(&snapshot)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes, b"ab");
        assert_eq!(loaded.entries, vec![entry(3, "C"), entry(3, "e")]);
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join("log")).unwrap().len()
    }

    fn snapshot_through(s: &FileStorage, index: Index, term: Term) -> Persist {
        let mut at = point(index);
        at.last_included_term = term;
        let snapshot = s.write_snapshot(at, &mut |w| w.write_all(b"x")).unwrap();
        Persist {
            snapshot: Some(snapshot),
            ..Persist::default()
        }
    }

    #[test]
    fn a_snapshot_that_agrees_leaves_the_log_file_until_it_is_long() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path())
            .unwrap()
            .with_rewrite_bytes(300);
        s.load().unwrap();
        s.save(&write(1, vec![entry(1, "a"), entry(1, "b"), entry(1, "c")]))
            .unwrap();
        let before = log_len(dir.path());
        s.save(&snapshot_through(&s, 2, 1)).unwrap();
        assert_eq!(log_len(dir.path()), before, "not rewritten");
        s.save(&write(4, vec![entry(1, "d")])).unwrap();
        assert_eq!(
            reopen(dir.path()).unwrap().entries,
            vec![entry(1, "c"), entry(1, "d")],
            "start-up drops what the snapshot covers"
        );

        // Past the threshold, the next snapshot rewrites the file.
        let long = "v".repeat(400);
        s.save(&write(5, vec![entry(1, &long), entry(1, "f")]))
            .unwrap();
        let grown = log_len(dir.path());
        s.save(&snapshot_through(&s, 5, 1)).unwrap();
        assert!(log_len(dir.path()) < 100, "rewritten from {grown} bytes");
        s.save(&write(7, vec![entry(1, "g")])).unwrap();
        assert_eq!(
            reopen(dir.path()).unwrap().entries,
            vec![entry(1, "f"), entry(1, "g")]
        );
    }

    #[test]
    fn a_snapshot_that_disagrees_empties_the_log_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save(&write(1, vec![entry(1, "a"), entry(1, "b"), entry(1, "c")]))
            .unwrap();
        // A leader's snapshot through index 2 of term 5: this log has term 1
        // there, so all of it goes (§7), then the leader's entries follow.
        s.save(&snapshot_through(&s, 2, 5)).unwrap();
        s.save(&write(3, vec![entry(5, "X")])).unwrap();
        let loaded = reopen(dir.path()).unwrap();
        assert_eq!(loaded.snapshot.last_included_term, 5);
        assert_eq!(loaded.entries, vec![entry(5, "X")]);
    }

    #[test]
    fn older_snapshots_are_deleted_once_a_newer_one_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save(&write(1, vec![entry(1, "a"), entry(1, "b"), entry(1, "c")]))
            .unwrap();
        s.save(&snapshot_through(&s, 1, 1)).unwrap();
        s.save(&snapshot_through(&s, 2, 1)).unwrap();
        let snapshots = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("snapshot-"))
                .collect::<Vec<_>>()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while snapshots().len() > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "still there: {:?}",
                snapshots()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(reopen(dir.path()).unwrap().snapshot.last_included_index, 2);
    }

    #[test]
    fn a_torn_final_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save(&write(1, vec![entry(1, "a"), entry(1, "b")]))
            .unwrap();
        let path = dir.path().join("log");
        let len = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 2).unwrap();
        let loaded = reopen(dir.path()).unwrap();
        assert_eq!(loaded.entries, vec![entry(1, "a")]);
        // The cut is durable: appending after it works and survives.
        let s = FileStorage::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save(&write(2, vec![entry(1, "B")])).unwrap();
        assert_eq!(
            reopen(dir.path()).unwrap().entries,
            vec![entry(1, "a"), entry(1, "B")]
        );
    }

    #[test]
    fn corruption_before_the_tail_refuses_to_start_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save(&write(1, vec![entry(1, "aaaa"), entry(1, "bbbb")]))
            .unwrap();
        let path = dir.path().join("log");
        let mut bytes = fs::read(&path).unwrap();
        let first_entry_byte = bytes.windows(4).position(|w| w == b"aaaa").unwrap();
        bytes[first_entry_byte] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = reopen(dir.path()).unwrap_err();
        assert!(err.to_string().contains("log is corrupt"), "{err}");

        let hs = dir.path().join("hardstate");
        s.save(&Persist {
            hard_state: Some(HardState {
                current_term: 1,
                voted_for: None,
            }),
            ..Persist::default()
        })
        .unwrap();
        let mut bytes = fs::read(&hs).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&hs, &bytes).unwrap();
        let err = reopen(dir.path()).unwrap_err();
        assert!(err.to_string().contains("hardstate is corrupt"), "{err}");
    }

    #[test]
    fn a_crash_between_snapshot_and_log_rewrite_is_repaired_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        s.load().unwrap();
        s.save(&write(1, vec![entry(1, "a"), entry(1, "b"), entry(1, "c")]))
            .unwrap();
        // Simulate the crash: the snapshot is written, the log not yet rewritten.
        s.write_snapshot(point(2), &mut |w| w.write_all(b"ab"))
            .unwrap();
        assert_eq!(reopen(dir.path()).unwrap().entries, vec![entry(1, "c")]);
    }

    #[test]
    fn random_garbage_files_are_errors_not_panics() {
        let mut x: u64 = 12345;
        for round in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let len = round % 97;
            let mut bytes: Vec<u8> = LOG_MAGIC.to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            fs::write(dir.path().join("log"), &bytes).unwrap();
            fs::write(dir.path().join("hardstate"), &bytes[8..]).unwrap();
            let _ = reopen(dir.path());
        }
    }
}
