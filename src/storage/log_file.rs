//! The log file's records, and the mirror of the log they describe.
//!
//! ```text
//! file    = magic "RKVLG02\n" record*
//! record  = len:u32le crc32(payload):u32le payload
//! payload = 1 base_index base_term          (first record: the log follows this point)
//!         | 2 index term command            (an entry; replaces any entry at index or later)
//!         | 3 first_index                   (drop entries at first_index or later)
//! ```
//!
//! Replaying the records in order gives the log; a later record at an index
//! overrides earlier ones. A torn final record (a crash or a failed write
//! mid-append: never acknowledged) is cut off; any other checksum or format
//! failure is an error naming the file, never skipped.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use super::data_dir::{DataDir, DiskFile};
use crate::codec::{crc32, Decode, Decoder, Encode, Encoder};
use crate::raft::messages::{Entry, Index, Term};
use crate::raft::ready::LogWrite;

/// The log file's name in the data directory.
pub(super) const LOG: &str = "log";
/// The log file's magic: its kind and format version.
pub(super) const LOG_MAGIC: &[u8; 8] = b"RKVLG02\n";
/// Largest record accepted when reading (bounds allocation on corrupt input).
const MAX_RECORD: usize = 256 << 20;

const TAG_BASE: u8 = 1;
const TAG_ENTRY: u8 = 2;
const TAG_TRUNCATE: u8 = 3;

/// The log as stored: its base point and the entries after it (a mirror of
/// what replaying the file gives once the current snapshot is applied, used to
/// rewrite the file).
pub(super) struct LogState {
    /// The file, open for appending (after `load`).
    pub(super) file: Option<DiskFile>,
    /// The file's length: live records, and records a snapshot has made dead.
    pub(super) file_bytes: u64,
    pub(super) base_index: Index,
    pub(super) base_term: Term,
    pub(super) entries: Vec<Entry>,
}

impl LogState {
    /// An empty log at the start of time.
    pub(super) fn new() -> Self {
        LogState {
            file: None,
            file_bytes: 0,
            base_index: 0,
            base_term: 0,
            entries: Vec::new(),
        }
    }

    pub(super) fn last_index(&self) -> Index {
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
    pub(super) fn apply(&mut self, write: &LogWrite) -> Result<(), String> {
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
    pub(super) fn rebase(&mut self, index: Index, term: Term) -> bool {
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
    pub(super) fn live_bytes(&self) -> u64 {
        let records = self.entries.iter().map(|e| e.command.len() as u64 + 32);
        LOG_MAGIC.len() as u64 + 32 + records.sum::<u64>()
    }

    /// The whole file for this log: magic, base, entries.
    pub(super) fn encode_file(&self) -> Vec<u8> {
        let mut bytes = LOG_MAGIC.to_vec();
        push_record(&mut bytes, &base_payload(self.base_index, self.base_term));
        for (i, entry) in self.entries.iter().enumerate() {
            let index = self.base_index + 1 + i as Index;
            push_record(&mut bytes, &entry_payload(index, entry));
        }
        bytes
    }
}

/// The records that append `write` to a log whose last index is `last_index`.
pub(super) fn append_records(write: &LogWrite, last_index: Index) -> Vec<u8> {
    let mut bytes = Vec::new();
    if write.entries.is_empty() && write.first_index <= last_index {
        let mut e = Encoder::new();
        e.put_u8(TAG_TRUNCATE);
        e.put_uvarint(write.first_index);
        push_record(&mut bytes, &e.finish());
    }
    for (i, entry) in write.entries.iter().enumerate() {
        let payload = entry_payload(write.first_index + i as Index, entry);
        push_record(&mut bytes, &payload);
    }
    bytes
}

/// Replays the log file of `dir` into `log`, cutting off a torn final
/// record. Returns whether the file existed (with anything in it).
pub(super) fn replay(dir: &Arc<DataDir>, log: &mut LogState) -> io::Result<bool> {
    let path = dir.join(LOG);
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
                let file = dir.open_append(LOG)?;
                file.set_len(keep)?;
                file.sync_data()?;
                break;
            }
            RecordRead::Corrupt(why) => {
                return Err(corrupt(
                    &path,
                    &format!("record at byte {}: {why}", LOG_MAGIC.len() + pos),
                ))
            }
        };
        replay_record(log, payload, first).map_err(|why| {
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

fn replay_record(log: &mut LogState, payload: &[u8], first: bool) -> Result<(), String> {
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
pub(super) fn push_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

pub(super) enum RecordRead<'a> {
    /// A good record and the offset just past it.
    Ok(&'a [u8], usize),
    /// The last record is incomplete or fails its checksum and ends the file.
    Torn,
    /// A bad record with more data after it.
    Corrupt(String),
}

/// Reads the record at `pos` of `body`.
pub(super) fn read_record(body: &[u8], pos: usize) -> RecordRead<'_> {
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

/// The error for a damaged file: start-up refuses it, naming the file.
pub(super) fn corrupt(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is corrupt: {why}; refusing to start", path.display()),
    )
}
