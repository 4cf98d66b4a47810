//! Durable storage in a directory: hard state, snapshots, and an append-only log.
//!
//! ```text
//! DIR/hardstate           term + vote     replaced atomically (write temp, fsync, rename, fsync dir)
//! DIR/snapshot-<i>-<t>    a snapshot      streamed in, then renamed, the same way (snapshot_files.rs)
//! DIR/log                 append-only records, fsynced per save; rewritten after some snapshots
//! ```
//!
//! Every file starts with an 8-byte magic naming its kind and format version.
//! `hardstate` holds one checksummed record; `log` holds a sequence:
//!
//! ```text
//! record  = len:u32le crc32(payload):u32le payload
//! payload = 1 base_index base_term          (first record: the log follows this point)
//!         | 2 index term command            (an entry; replaces any entry at index or later)
//!         | 3 first_index                   (drop entries at first_index or later)
//! ```
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
//! Rewriting costs fsyncs and a rename on the node thread (6-35 ms measured
//! under load, most of it freeing the old file's blocks), so it is rare, and
//! the old file is closed (its blocks freed) on another thread, as older
//! snapshot files are deleted.
//!
//! A torn final record (a crash mid-append: never acknowledged) is cut off at
//! start-up. Any other checksum or format failure refuses to start, naming the
//! file: starting empty could make this server vote twice or forget entries it
//! acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::snapshot_files::SnapshotFiles;
use super::{SnapshotFill, Storage};
use crate::codec::{crc32, Decode, Decoder, Encode, Encoder};
use crate::raft::core::InitialState;
use crate::raft::messages::{Entry, Index, Term};
use crate::raft::ready::{HardState, LogWrite, Persist, Snapshot};

const HARDSTATE_MAGIC: &[u8; 8] = b"RKVHS01\n";
const LOG_MAGIC: &[u8; 8] = b"RKVLG02\n";
/// Largest record accepted when reading (bounds allocation on corrupt input).
const MAX_RECORD: usize = 256 << 20;
/// A snapshot that agrees with the log leaves the log file alone (start-up
/// drops what the snapshot covers) until the file is this long, and twice
/// what it still needs: then it is rewritten. Rewriting costs the node thread
/// several milliseconds (fsyncs, a rename), too much for every snapshot.
const LOG_REWRITE_BYTES: u64 = 64 << 20;

const TAG_BASE: u8 = 1;
const TAG_ENTRY: u8 = 2;
const TAG_TRUNCATE: u8 = 3;

/// Raft state in files under one directory.
pub struct FileStorage {
    dir: PathBuf,
    state: Mutex<LogState>,
    snapshots: SnapshotFiles,
    /// [`LOG_REWRITE_BYTES`], smaller in tests.
    rewrite_bytes: u64,
}

/// The log as stored: its base point and the entries after it (a mirror of
/// what replaying the file gives once the current snapshot is applied, used to
/// rewrite the file).
struct LogState {
    file: Option<File>,
    /// The file's length: live records, and records a snapshot has made dead.
    file_bytes: u64,
    base_index: Index,
    base_term: Term,
    entries: Vec<Entry>,
}

impl LogState {
    fn last_index(&self) -> Index {
        self.base_index + self.entries.len() as Index
    }

    fn term(&self, index: Index) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        let offset = index.checked_sub(self.base_index + 1)?;
        self.entries
            .get(usize::try_from(offset).ok()?)
            .map(|e| e.term)
    }

    /// Drops entries at `index` or later.
    fn truncate_from(&mut self, index: Index) {
        let keep = index.saturating_sub(self.base_index + 1);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Applies a write; `Err` if it would leave a gap.
    fn apply(&mut self, write: &LogWrite) -> Result<(), String> {
        if write.first_index <= self.base_index || write.first_index > self.last_index() + 1 {
            return Err(format!(
                "write at {} outside log {}..={}",
                write.first_index,
                self.base_index + 1,
                self.last_index() + 1
            ));
        }
        self.truncate_from(write.first_index);
        self.entries.extend(write.entries.iter().cloned());
        Ok(())
    }

    /// Moves the base to a snapshot point: keeps the entries after it if the log
    /// agrees with the snapshot there (§7), otherwise drops them all. Returns
    /// whether it kept them.
    fn rebase(&mut self, index: Index, term: Term) -> bool {
        let agrees = self.term(index) == Some(term);
        if agrees {
            let drop = usize::try_from(index - self.base_index).unwrap_or(usize::MAX);
            self.entries.drain(..drop.min(self.entries.len()));
        } else {
            self.entries.clear();
        }
        self.base_index = index;
        self.base_term = term;
        agrees
    }

    /// About how many bytes a rewritten file would hold.
    fn live_bytes(&self) -> u64 {
        let records = self.entries.iter().map(|e| e.command.len() as u64 + 32);
        LOG_MAGIC.len() as u64 + 32 + records.sum::<u64>()
    }
}

impl FileStorage {
    /// Opens (creating if needed) storage in `dir`. Nothing is read until `load`.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(FileStorage {
            snapshots: SnapshotFiles::new(&dir),
            dir,
            rewrite_bytes: LOG_REWRITE_BYTES,
            state: Mutex::new(LogState {
                file: None,
                file_bytes: 0,
                base_index: 0,
                base_term: 0,
                entries: Vec::new(),
            }),
        })
    }

    /// Rewrites the log after a snapshot once it is `bytes` long (tests).
    #[cfg(test)]
    fn with_rewrite_bytes(mut self, bytes: u64) -> Self {
        self.rewrite_bytes = bytes;
        self
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
        let body = bytes
            .strip_prefix(magic.as_slice())
            .ok_or_else(|| corrupt(&path, "wrong magic (not a raftkv file, or another version)"))?;
        match read_record(body, 0) {
            RecordRead::Ok(payload, end) if end == body.len() => Ok(Some(payload.to_vec())),
            _ => Err(corrupt(&path, "checksum or length mismatch")),
        }
    }

    /// Write temp → fsync → rename → fsync dir: after this returns, `name` holds
    /// `payload` even across a crash; a crash before leaves the old file intact.
    fn write_atomically(&self, name: &str, magic: &[u8; 8], payload: &[u8]) -> io::Result<()> {
        let mut bytes = magic.to_vec();
        push_record(&mut bytes, payload);
        self.replace_file(name, &bytes).map(drop)
    }

    fn replace_file(&self, name: &str, bytes: &[u8]) -> io::Result<File> {
        let tmp = self.path(&format!("{name}.tmp"));
        // 1. Write the new content beside the old file.
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        // 2. Make the content durable before it can become visible under `name`.
        file.sync_all()?;
        // 3. Atomically replace the old file: readers see old or new, never a mix.
        fs::rename(&tmp, self.path(name))?;
        // 4. Make the rename itself durable (it lives in the directory).
        File::open(&self.dir)?.sync_all()?;
        Ok(file)
    }

    /// Rewrites the log file from the mirror (after a snapshot moved its base).
    fn rewrite_log(&self, log: &mut LogState) -> io::Result<()> {
        let mut bytes = LOG_MAGIC.to_vec();
        push_record(&mut bytes, &base_payload(log.base_index, log.base_term));
        for (i, entry) in log.entries.iter().enumerate() {
            let index = log.base_index + 1 + i as Index;
            push_record(&mut bytes, &entry_payload(index, entry));
        }
        // Kept open across the rename, so that freeing the old file's blocks
        // (milliseconds for a long log) happens when it closes, off this thread.
        let old = log.file.take();
        drop(self.replace_file("log", &bytes)?);
        log.file = Some(OpenOptions::new().append(true).open(self.path("log"))?);
        log.file_bytes = bytes.len() as u64;
        in_background("log-gc", move || drop(old));
        Ok(())
    }

    /// Replays the log file into `log`, cutting off a torn final record.
    fn replay_log(&self, log: &mut LogState) -> io::Result<bool> {
        let path = self.path("log");
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if bytes.len() < LOG_MAGIC.len() && LOG_MAGIC.starts_with(&bytes) {
            return Ok(false); // torn while being created: nothing was ever in it
        }
        let body = bytes
            .strip_prefix(LOG_MAGIC.as_slice())
            .ok_or_else(|| corrupt(&path, "wrong magic (not a raftkv log, or another version)"))?;
        let mut pos = 0;
        let mut first = true;
        while pos < body.len() {
            let (payload, end) = match read_record(body, pos) {
                RecordRead::Ok(payload, end) => (payload, end),
                RecordRead::Torn => {
                    let keep = (LOG_MAGIC.len() + pos) as u64;
                    crate::info!(
                        0,
                        0,
                        "{}: cutting torn final record at byte {keep}",
                        path.display()
                    );
                    OpenOptions::new().write(true).open(&path)?.set_len(keep)?;
                    break;
                }
                RecordRead::Corrupt(why) => {
                    return Err(corrupt(
                        &path,
                        &format!("record at byte {}: {why}", LOG_MAGIC.len() + pos),
                    ))
                }
            };
            self.replay_record(log, payload, first).map_err(|why| {
                corrupt(
                    &path,
                    &format!("record at byte {}: {why}", LOG_MAGIC.len() + pos),
                )
            })?;
            first = false;
            pos = end;
        }
        log.file_bytes = (LOG_MAGIC.len() + pos) as u64;
        Ok(true)
    }

    fn replay_record(&self, log: &mut LogState, payload: &[u8], first: bool) -> Result<(), String> {
        let mut d = Decoder::new(payload);
        let tag = d.get_u8().map_err(|e| e.to_string())?;
        match (tag, first) {
            (TAG_BASE, true) => {
                log.base_index = d.get_uvarint().map_err(|e| e.to_string())?;
                log.base_term = d.get_uvarint().map_err(|e| e.to_string())?;
                log.entries.clear();
            }
            (TAG_ENTRY, false) => {
                let index = d.get_uvarint().map_err(|e| e.to_string())?;
                let entry = Entry::decode_from(&mut d).map_err(|e| e.to_string())?;
                log.apply(&LogWrite {
                    first_index: index,
                    entries: vec![entry],
                })?;
            }
            (TAG_TRUNCATE, false) => {
                let first_index = d.get_uvarint().map_err(|e| e.to_string())?;
                log.apply(&LogWrite {
                    first_index,
                    entries: vec![],
                })?;
            }
            _ => return Err(format!("unexpected record kind {tag}")),
        }
        d.finish().map_err(|e| e.to_string())
    }
}

impl Storage for FileStorage {
    fn load(&self) -> io::Result<InitialState> {
        let hard_state = match self.read_single("hardstate", HARDSTATE_MAGIC)? {
            Some(p) => HardState::decode(&p)
                .map_err(|e| corrupt(&self.path("hardstate"), &e.to_string()))?,
            None => HardState::default(),
        };
        let snapshot = self.snapshots.latest()?.unwrap_or_default();
        let mut log = self.lock();
        let existed = self.replay_log(&mut log)?;
        if snapshot.last_included_index < log.base_index {
            return Err(corrupt(
                &self.path("log"),
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
            log.file = Some(OpenOptions::new().append(true).open(self.path("log"))?);
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
    fn save(&self, persist: &Persist) -> io::Result<()> {
        if let Some(hs) = &persist.hard_state {
            self.write_atomically("hardstate", HARDSTATE_MAGIC, &hs.encode())?;
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
            // say before anything is appended after the snapshot.
            rewrite = !agrees || log.file_bytes >= self.rewrite_bytes.max(2 * log.live_bytes());
        }
        if let Some(write) = &persist.log {
            let truncates = write.first_index <= log.last_index();
            log.apply(write)
                .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
            if !rewrite {
                let mut bytes = Vec::new();
                if write.entries.is_empty() && truncates {
                    let mut e = Encoder::new();
                    e.put_u8(TAG_TRUNCATE);
                    e.put_uvarint(write.first_index);
                    push_record(&mut bytes, &e.finish());
                }
                for (i, entry) in write.entries.iter().enumerate() {
                    let payload = entry_payload(write.first_index + i as Index, entry);
                    push_record(&mut bytes, &payload);
                }
                if !bytes.is_empty() {
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
        }
        if rewrite {
            self.rewrite_log(&mut log)?;
        }
        if let Some(snapshot) = persist.snapshot.clone() {
            // Older snapshots are no longer needed (start-up takes the newest),
            // and deleting a large file takes milliseconds: off this thread.
            let dir = self.dir.clone();
            in_background("snapshot-gc", move || {
                if let Err(e) = SnapshotFiles::new(&dir).keep_from(&snapshot) {
                    crate::info!(
                        0,
                        0,
                        "{}: could not delete old snapshots: {e}",
                        dir.display()
                    );
                }
            });
        }
        Ok(())
    }

    fn write_snapshot(&self, snapshot: Snapshot, fill: SnapshotFill<'_>) -> io::Result<Snapshot> {
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

fn base_payload(index: Index, term: Term) -> Vec<u8> {
    let mut e = Encoder::new();
    e.put_u8(TAG_BASE);
    e.put_uvarint(index);
    e.put_uvarint(term);
    e.finish()
}

fn entry_payload(index: Index, entry: &Entry) -> Vec<u8> {
    let mut e = Encoder::new();
    e.put_u8(TAG_ENTRY);
    e.put_uvarint(index);
    entry.encode_to(&mut e);
    e.finish()
}

/// Appends `len crc payload` to `out`.
fn push_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

enum RecordRead<'a> {
    /// A good record and the offset just past it.
    Ok(&'a [u8], usize),
    /// The last record is incomplete or fails its checksum and ends the file.
    Torn,
    /// A bad record with more data after it.
    Corrupt(String),
}

/// Reads the record at `pos` of `body`.
fn read_record(body: &[u8], pos: usize) -> RecordRead<'_> {
    let Some(header) = body.get(pos..pos + 8) else {
        return RecordRead::Torn;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return RecordRead::Corrupt(format!("record length {len} exceeds {MAX_RECORD}"));
    }
    let end = pos + 8 + len;
    let Some(payload) = body.get(pos + 8..end) else {
        return RecordRead::Torn;
    };
    if crc32(payload) != crc {
        return if end == body.len() {
            RecordRead::Torn
        } else {
            RecordRead::Corrupt("checksum mismatch".into())
        };
    }
    RecordRead::Ok(payload, end)
}

fn corrupt(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is corrupt: {why}; refusing to start", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::configuration::Configuration;

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
