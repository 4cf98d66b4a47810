//! Snapshot files in a storage directory, streamed in and out with bounded memory.
//!
//! ```text
//! DIR/snapshot-<index:020>-<term:020>      one complete snapshot
//! file   = magic "RKVSN03\n" header crc32(header):u32le data crc32(data):u32le
//! header = index:u64le term:u64le size:u64le configuration_index:u64le
//!          configuration_len:u32le configuration
//! ```
//!
//! The header carries the cluster configuration as of the snapshot's index
//! (thesis §4.1; `raft::configuration` encodes it): the log entries that held
//! it are gone once the snapshot is current.
//!
//! A snapshot is written under a temporary name (`.tmp` when the service writes
//! it whole, `.incoming` while a leader's pieces arrive), fsynced, renamed, and
//! the directory fsynced: a file under a final name is always complete. The
//! current snapshot is the newest complete one: making a snapshot current
//! deletes the older ones (a transfer still reading one of them starts over
//! with the new one). Temporary files are deleted at start-up.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::data_dir::{DataDir, DiskFile};
use super::SnapshotFill;
use crate::codec::{Crc32, Decode, Encode};
use crate::raft::configuration::Configuration;
use crate::raft::messages::{Index, Term};
use crate::raft::ready::{Snapshot, SnapshotChunk};

const MAGIC: &[u8; 8] = b"RKVSN03\n";
/// Magic and the header's fixed fields (then the configuration and the
/// header's checksum).
const FIXED_LEN: usize = 8 + 36;
/// Longest encoded configuration accepted when reading (bounds allocation).
const MAX_CONFIGURATION: usize = 1 << 20;
/// The data's checksum.
const TRAILER_LEN: u64 = 4;
/// Buffers for reading and writing files.
const BUFFER: usize = 64 << 10;
/// A snapshot being written is made durable this many bytes at a time, so the
/// disk never holds a long queue of its dirty pages ahead of the log's next
/// fdatasync (which would wait behind them).
const SYNC_STEP: u64 = 1 << 20;

/// The snapshot files of one storage directory.
pub struct SnapshotFiles {
    dir: Arc<DataDir>,
    /// The snapshot being received from a leader, piece by piece.
    incoming: Mutex<Option<Incoming>>,
}

struct Incoming {
    snapshot: Snapshot,
    file: BufWriter<DiskFile>,
    crc: Crc32,
    written: u64,
}

fn name(index: Index, term: Term) -> String {
    format!("snapshot-{index:020}-{term:020}")
}

fn parse_name(name: &str) -> Option<(Index, Term)> {
    let rest = name.strip_prefix("snapshot-")?;
    let (index, term) = rest.split_once('-')?;
    if index.len() != 20 || term.len() != 20 {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

fn header(snapshot: &Snapshot) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    let configuration = snapshot.configuration.encode();
    let mut fields = Vec::with_capacity(36 + configuration.len());
    fields.extend_from_slice(&snapshot.last_included_index.to_le_bytes());
    fields.extend_from_slice(&snapshot.last_included_term.to_le_bytes());
    fields.extend_from_slice(&snapshot.size.to_le_bytes());
    fields.extend_from_slice(&snapshot.configuration_index.to_le_bytes());
    fields.extend_from_slice(&(configuration.len() as u32).to_le_bytes());
    fields.extend_from_slice(&configuration);
    let mut crc = Crc32::new();
    crc.update(&fields);
    bytes.extend_from_slice(&fields);
    bytes.extend_from_slice(&crc.finish().to_le_bytes());
    bytes
}

fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// Counts and checksums the bytes written through it, and makes them durable
/// every [`SYNC_STEP`] bytes.
struct Counting<'a> {
    inner: &'a mut BufWriter<DiskFile>,
    crc: Crc32,
    written: u64,
    /// Bytes made durable so far.
    synced: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.written += n as u64;
        if self.written - self.synced >= SYNC_STEP {
            self.inner.flush()?;
            self.inner.get_ref().sync_data()?;
            self.synced = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a snapshot's data and fails at the end if it does not match its
/// checksum.
struct Verifying {
    file: BufReader<File>,
    path: PathBuf,
    left: u64,
    crc: Crc32,
}

impl Read for Verifying {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(invalid(&self.path, "ends before its data does"));
        }
        self.crc.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 {
            let mut trailer = [0u8; 4];
            self.file.read_exact(&mut trailer)?;
            let crc = std::mem::take(&mut self.crc).finish();
            if u32::from_le_bytes(trailer) != crc {
                return Err(invalid(&self.path, "data does not match its checksum"));
            }
        }
        Ok(n)
    }
}

impl SnapshotFiles {
    /// The snapshot files in `dir`.
    pub fn new(dir: Arc<DataDir>) -> Self {
        Self {
            dir,
            incoming: Mutex::new(None),
        }
    }

    fn path(&self, snapshot: &Snapshot) -> PathBuf {
        self.dir.join(&name(
            snapshot.last_included_index,
            snapshot.last_included_term,
        ))
    }

    fn lock_incoming(&self) -> MutexGuard<'_, Option<Incoming>> {
        self.incoming.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the file `tmp` durable under `snapshot`'s name.
    fn publish(&self, tmp: &str, snapshot: &Snapshot) -> io::Result<()> {
        let (index, term) = (snapshot.last_included_index, snapshot.last_included_term);
        // Rename over the final name: readers see no file or a whole one.
        self.dir.rename(tmp, &name(index, term))?;
        // Make the rename itself durable (it lives in the directory).
        self.dir.sync()
    }

    /// Writes the snapshot `snapshot` describes whole (its `size` is what
    /// `fill` writes), streaming its bytes from `fill`.
    pub fn write(&self, mut snapshot: Snapshot, fill: SnapshotFill<'_>) -> io::Result<Snapshot> {
        let (index, term) = (snapshot.last_included_index, snapshot.last_included_term);
        snapshot.size = 0;
        let tmp = format!("{}.tmp", name(index, term));
        let written = (|| {
            // 1. Write the bytes beside any older snapshot, the header last
            //    (its size is known only at the end).
            let mut file = BufWriter::with_capacity(BUFFER, self.dir.create(&tmp)?);
            file.write_all(&header(&snapshot))?;
            let mut counting = Counting {
                inner: &mut file,
                crc: Crc32::new(),
                written: 0,
                synced: 0,
            };
            fill(&mut counting)?;
            let (crc, size) = (counting.crc.finish(), counting.written);
            file.write_all(&crc.to_le_bytes())?;
            snapshot.size = size;
            let mut file = file.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header(&snapshot))?;
            // 2. Make the content durable before it can become visible.
            file.sync_all()
        })();
        if let Err(e) = written {
            // Its space is wanted. Deleted directly: after a failed write the
            // directory refuses its own calls, and deleting a temporary file
            // cannot make anything look durable that is not.
            let _ = fs::remove_file(self.dir.join(&tmp));
            return Err(e);
        }
        // 3. Rename into place and make the rename durable.
        self.publish(&tmp, &snapshot)?;
        Ok(snapshot)
    }

    /// Appends a piece received from a leader; the last piece makes the
    /// snapshot durable under its own name. Pieces arrive in order from
    /// offset 0 (the core checks); a piece that does not continue the one
    /// being received is refused.
    pub fn receive(&self, chunk: &SnapshotChunk) -> io::Result<()> {
        let snapshot = &chunk.snapshot;
        let tmp = format!(
            "{}.incoming",
            name(snapshot.last_included_index, snapshot.last_included_term)
        );
        let tmp_path = self.dir.join(&tmp);
        let mut incoming = self.lock_incoming();
        if chunk.offset == 0 {
            // A new transfer: start the file over.
            let mut file = BufWriter::with_capacity(BUFFER, self.dir.create(&tmp)?);
            file.write_all(&header(snapshot))?;
            *incoming = Some(Incoming {
                snapshot: snapshot.clone(),
                file,
                crc: Crc32::new(),
                written: 0,
            });
        }
        let Some(current) = incoming.as_mut() else {
            return Err(invalid(
                &tmp_path,
                "a piece past offset 0 of a transfer never started",
            ));
        };
        if current.snapshot != *snapshot || current.written != chunk.offset {
            return Err(invalid(&tmp_path, "a piece out of order"));
        }
        current.file.write_all(&chunk.data)?;
        current.crc.update(&chunk.data);
        current.written += chunk.data.len() as u64;
        if !chunk.done {
            // The piece must be durable before the leader hears it arrived.
            current.file.flush()?;
            return current.file.get_ref().sync_data();
        }
        let Some(mut done) = incoming.take() else {
            return Ok(());
        };
        if done.written != snapshot.size {
            return Err(invalid(
                &tmp_path,
                "the last piece ends before the snapshot does",
            ));
        }
        let crc = std::mem::take(&mut done.crc).finish();
        done.file.write_all(&crc.to_le_bytes())?;
        let file = done.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        self.publish(&tmp, snapshot)
    }

    /// Opens `snapshot`'s data for reading, verified against its checksum.
    pub fn open(&self, snapshot: &Snapshot) -> io::Result<Box<dyn Read + Send>> {
        let path = self.path(snapshot);
        let mut file = BufReader::with_capacity(BUFFER, File::open(&path)?);
        let expected = header(snapshot);
        let mut head = vec![0u8; expected.len()];
        file.read_exact(&mut head)?;
        if head != expected {
            return Err(invalid(&path, "header does not describe this snapshot"));
        }
        Ok(Box::new(Verifying {
            file,
            path,
            left: snapshot.size,
            crc: Crc32::new(),
        }))
    }

    /// Reads up to `len` bytes of `snapshot`'s data from `offset`.
    pub fn read_chunk(&self, snapshot: &Snapshot, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let len =
            len.min(usize::try_from(snapshot.size.saturating_sub(offset)).unwrap_or(usize::MAX));
        let mut file = File::open(self.path(snapshot))?;
        let header_len = header(snapshot).len() as u64;
        file.seek(SeekFrom::Start(header_len + offset))?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// Reads the header of the complete file `path`, if it is one.
    fn describe(&self, path: &Path, index: Index, term: Term) -> io::Result<Snapshot> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        let short = |_| invalid(path, "shorter than its header");
        let mut head = vec![0u8; FIXED_LEN];
        file.read_exact(&mut head).map_err(short)?;
        let field = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[40..44]);
        let configuration_len = u32::from_le_bytes(len) as usize;
        if configuration_len > MAX_CONFIGURATION {
            return Err(invalid(path, "not a complete snapshot file"));
        }
        let mut configuration = vec![0u8; configuration_len];
        file.read_exact(&mut configuration).map_err(short)?;
        let configuration = Configuration::decode(&configuration)
            .map_err(|e| invalid(path, &format!("its configuration is corrupt: {e}")))?;
        let snapshot = Snapshot {
            last_included_index: field(8),
            last_included_term: field(16),
            size: field(24),
            configuration_index: field(32),
            configuration,
        };
        let header = header(&snapshot);
        let mut whole = head;
        whole.extend_from_slice(&snapshot.configuration.encode());
        let mut crc = [0u8; 4];
        file.read_exact(&mut crc).map_err(short)?;
        whole.extend_from_slice(&crc);
        let consistent = whole == header
            && snapshot.last_included_index == index
            && snapshot.last_included_term == term
            && length == header.len() as u64 + snapshot.size + TRAILER_LEN;
        if !consistent {
            return Err(invalid(path, "not a complete snapshot file"));
        }
        Ok(snapshot)
    }

    /// The complete snapshot files, oldest first, as (index, term, path).
    fn complete(&self) -> io::Result<Vec<(Index, Term, PathBuf)>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(self.dir.path())? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some((index, term)) = name.to_str().and_then(parse_name) {
                found.push((index, term, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The newest complete snapshot, for start-up; deletes temporary files
    /// left by a crash. A damaged file under a final name is an error naming
    /// it: a snapshot was durable there.
    pub fn latest(&self) -> io::Result<Option<Snapshot>> {
        for entry in fs::read_dir(self.dir.path())? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let temporary = name.ends_with(".tmp") || name.ends_with(".incoming");
            if temporary && name.starts_with("snapshot-") {
                self.dir.remove(name)?;
            }
        }
        match self.complete()?.pop() {
            Some((index, term, path)) => self.describe(&path, index, term).map(Some),
            None => Ok(None),
        }
    }

    /// `snapshot` is now current: deletes every complete snapshot older than
    /// it (one already gone is fine: two of these may run at once).
    pub fn keep_from(&self, snapshot: &Snapshot) -> io::Result<()> {
        let current = (snapshot.last_included_index, snapshot.last_included_term);
        for (index, term, _) in self.complete()? {
            if (index, term) < current {
                self.dir.remove(&name(index, term))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::data_dir::StdFileOps;

    fn files_in(dir: &Path) -> SnapshotFiles {
        SnapshotFiles::new(DataDir::open(dir, Box::new(StdFileOps)).expect("open"))
    }

    /// A configuration as of index 2, to see it survive the file.
    fn configuration() -> Configuration {
        let addresses = [(1, "h:1".to_string())].into_iter().collect();
        Configuration::bootstrap(&[1], &addresses).with_learner(2, "h:2")
    }

    fn write(files: &SnapshotFiles, index: Index, bytes: &[u8]) -> Snapshot {
        let point = Snapshot {
            last_included_index: index,
            last_included_term: 1,
            configuration: configuration(),
            configuration_index: 2,
            size: 0,
        };
        files
            .write(point, &mut |w| w.write_all(bytes))
            .expect("write")
    }

    fn read(files: &SnapshotFiles, s: &Snapshot) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        files.open(s)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_snapshot_written_whole_reads_back_in_chunks_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let s = write(&files, 7, b"hello snapshot");
        assert_eq!(s.size, 14);
        assert_eq!(
            (&s.configuration, s.configuration_index),
            (&configuration(), 2)
        );
        assert_eq!(read(&files, &s).unwrap(), b"hello snapshot");
        assert_eq!(files.read_chunk(&s, 6, 4).unwrap(), b"snap");
        assert_eq!(files.read_chunk(&s, 10, 100).unwrap(), b"shot");
        assert_eq!(files.latest().unwrap(), Some(s));
    }

    #[test]
    fn a_snapshot_made_durable_in_steps_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let bytes: Vec<u8> = (0..(5 * SYNC_STEP / 2)).map(|i| (i % 251) as u8).collect();
        let s = write(&files, 7, &bytes);
        assert_eq!(s.size, bytes.len() as u64);
        assert_eq!(read(&files, &s).unwrap(), bytes);
    }

    #[test]
    fn pieces_received_in_order_make_a_snapshot_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let s = Snapshot {
            last_included_index: 9,
            last_included_term: 2,
            size: 6,
            configuration: configuration(),
            configuration_index: 2,
        };
        let piece = |offset, data: &[u8], done| SnapshotChunk {
            snapshot: s.clone(),
            offset,
            data: data.to_vec(),
            done,
        };
        files.receive(&piece(0, b"abc", false)).unwrap();
        assert!(files.receive(&piece(4, b"ef", true)).is_err(), "a gap");
        assert!(files.complete().unwrap().is_empty(), "nothing complete yet");
        files.receive(&piece(3, b"def", true)).unwrap();
        assert_eq!(read(&files, &s).unwrap(), b"abcdef");
        assert_eq!(files.latest().unwrap(), Some(s));
    }

    #[test]
    fn a_flipped_data_byte_fails_the_checksum_and_temporaries_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let s = write(&files, 3, b"0123456789");
        fs::write(dir.path().join(format!("{}.tmp", name(5, 1))), b"half").unwrap();
        assert_eq!(
            files.latest().unwrap(),
            Some(s.clone()),
            "the .tmp is not a snapshot"
        );
        let path = files.path(&s);
        let mut bytes = fs::read(&path).unwrap();
        bytes[header(&s).len() + 2] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = read(&files, &s).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn making_a_snapshot_current_deletes_only_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let old = write(&files, 3, b"old");
        let current = write(&files, 5, b"current");
        let newer = write(&files, 8, b"newer");
        files.keep_from(&current).unwrap();
        assert!(read(&files, &old).is_err());
        assert_eq!(read(&files, &current).unwrap(), b"current");
        assert_eq!(files.latest().unwrap(), Some(newer));
    }
}
