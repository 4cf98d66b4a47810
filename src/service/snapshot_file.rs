//! Snapshot files: the state machine's snapshot on disk, named by the log
//! point it covers, written atomically and streamed both ways.
//!
//! ```text
//! DIR/snapshot-<index>-<term>       a complete snapshot (both numbers 20 digits)
//! DIR/snapshot-<index>-<term>.tmp   one being written, or left by a crash: never read
//!
//! file   = header stream
//! header = magic "RKVSM01\n"  index:u64le  term:u64le  crc32(magic index term):u32le
//! stream = the state machine's snapshot stream (version byte, state, crc32)
//! ```
//!
//! The header has a fixed size and its own checksum, so a file says which
//! point of the log it holds; the header, not the name, is what
//! [`read_snapshot_file`] reports. The state after it is
//! [`StateMachine::write_snapshot`]'s stream, checksummed on its own
//! (`src/service/snapshot_stream.rs`). Neither side holds the encoding in
//! memory: writing streams the state into the file, reading streams it out.
//!
//! Where the files live, and which one is current, is for the caller (Raft's
//! storage) to decide.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::state_machine::StateMachine;
use crate::codec::crc32;
use crate::raft::messages::{Index, Term};

/// Names the file's kind and format version.
const MAGIC: &[u8; 8] = b"RKVSM01\n";
/// Magic, index, term, header checksum.
const HEADER_BYTES: usize = 8 + 8 + 8 + 4;
const PREFIX: &str = "snapshot-";
const TEMP_SUFFIX: &str = ".tmp";

/// A snapshot file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFileInfo {
    /// Where it is.
    pub path: PathBuf,
    /// The last log index the snapshot includes.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// The file's size (header and state).
    pub bytes: u64,
}

/// Writes `sm`, the state as of log entry `(index, term)`, to a new file in
/// `dir`, and returns where and how big it is.
///
/// # Correctness
/// When this returns `Ok`, the file survives a crash under its final name. A
/// crash or an error before that leaves at most a `.tmp` file, which
/// [`list_snapshot_files`] never reports, and every complete snapshot file as
/// it was. Writing the same point again replaces the file atomically.
pub fn write_snapshot_file(
    dir: &Path,
    sm: &StateMachine,
    index: Index,
    term: Term,
) -> io::Result<SnapshotFileInfo> {
    let name = file_name(index, term);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let written = write_temp(&tmp, sm, index, term);
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // 3. Atomically give the file its name: readers see all of it or nothing.
    fs::rename(&tmp, &path)?;
    // 4. Make the rename itself durable (it lives in the directory).
    File::open(dir)?.sync_all()?;
    Ok(SnapshotFileInfo {
        path,
        index,
        term,
        bytes,
    })
}

/// Steps 1 and 2 of [`write_snapshot_file`]; returns the file's size.
fn write_temp(tmp: &Path, sm: &StateMachine, index: Index, term: Term) -> io::Result<u64> {
    // 1. Write beside the complete files, under a name no reader takes for a
    //    snapshot; the state streams in, never held whole in memory.
    let mut file = File::create(tmp)?;
    file.write_all(&header(index, term))?;
    let state = sm.write_snapshot(&mut file)?;
    // 2. Make the content durable before it can become visible under its name.
    file.sync_all()?;
    Ok(HEADER_BYTES as u64 + state)
}

/// Reads the snapshot file at `path`: the log point its header names and the
/// state. A damaged or truncated file is an error naming it
/// ([`io::ErrorKind::InvalidData`] or [`io::ErrorKind::UnexpectedEof`]).
pub fn read_snapshot_file(path: &Path) -> io::Result<(Index, Term, StateMachine)> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut file = File::open(path).map_err(named)?;
    let mut header = [0; HEADER_BYTES];
    file.read_exact(&mut header).map_err(named)?;
    let (index, term) = parse_header(&header).map_err(named)?;
    let sm = StateMachine::read_snapshot(&mut file).map_err(named)?;
    Ok((index, term, sm))
}

/// The complete snapshot files in `dir`, by index then term, as their names
/// give them (temporary files and other names are left out).
pub fn list_snapshot_files(dir: &Path) -> io::Result<Vec<SnapshotFileInfo>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((index, term)) = name.to_str().and_then(parse_file_name) else {
            continue;
        };
        files.push(SnapshotFileInfo {
            path: entry.path(),
            index,
            term,
            bytes: entry.metadata()?.len(),
        });
    }
    files.sort_by_key(|f| (f.index, f.term));
    Ok(files)
}

/// `snapshot-<index>-<term>`, zero-padded so names sort by index.
fn file_name(index: Index, term: Term) -> String {
    format!("{PREFIX}{index:020}-{term:020}")
}

/// The `(index, term)` a complete snapshot file's name gives.
fn parse_file_name(name: &str) -> Option<(Index, Term)> {
    let (index, term) = name.strip_prefix(PREFIX)?.split_once('-')?;
    let number = |s: &str| {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(index)?, number(term)?))
}

fn header(index: Index, term: Term) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&index.to_le_bytes());
    header[16..24].copy_from_slice(&term.to_le_bytes());
    let crc = crc32(&header[..24]);
    header[24..].copy_from_slice(&crc.to_le_bytes());
    header
}

fn parse_header(header: &[u8; HEADER_BYTES]) -> io::Result<(Index, Term)> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if &header[..8] != MAGIC {
        return Err(invalid(
            "wrong magic (not a raftkv snapshot file, or another version)",
        ));
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(header[24..].try_into().unwrap_or_default());
    if crc32(&header[..24]) != crc {
        return Err(invalid("header checksum mismatch"));
    }
    Ok((word(8), word(16)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{parse, Request};
    use crate::service::state_machine::Op;

    fn state(lines: &[&str]) -> StateMachine {
        let mut sm = StateMachine::default();
        for line in lines {
            let Ok(Request::Command(command)) = parse(line) else {
                panic!("bad line {line}");
            };
            sm.apply(&Op {
                client_id: 0,
                seq: 0,
                command,
            });
        }
        sm
    }

    #[test]
    fn a_snapshot_file_reads_back_the_state_and_the_point_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let sm = state(&["PUT a 1", "OPEN alice 10", "PUT b 2"]);
        let info = write_snapshot_file(dir.path(), &sm, 42, 7).unwrap();
        assert_eq!((info.index, info.term), (42, 7));
        assert_eq!(info.bytes, fs::metadata(&info.path).unwrap().len());
        assert_eq!(
            info.bytes,
            (HEADER_BYTES + sm.snapshot().len()) as u64,
            "header, then the snapshot stream"
        );
        assert_eq!(read_snapshot_file(&info.path).unwrap(), (42, 7, sm));
        assert_eq!(list_snapshot_files(dir.path()).unwrap(), vec![info]);
    }

    /// A crash mid-write leaves a `.tmp` file: it is never listed, and does
    /// not stop the same snapshot from being written again.
    #[test]
    fn a_leftover_temp_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let older = write_snapshot_file(dir.path(), &state(&["PUT a 1"]), 5, 1).unwrap();
        let torn = dir.path().join(format!("{}{TEMP_SUFFIX}", file_name(9, 2)));
        fs::write(&torn, &header(9, 2)[..10]).unwrap();
        fs::write(dir.path().join("unrelated"), b"x").unwrap();
        assert_eq!(
            list_snapshot_files(dir.path()).unwrap(),
            vec![older.clone()]
        );
        let sm = state(&["PUT a 2"]);
        let newer = write_snapshot_file(dir.path(), &sm, 9, 2).unwrap();
        assert!(!torn.exists(), "the temp file became the snapshot");
        assert_eq!(
            list_snapshot_files(dir.path()).unwrap(),
            vec![older, newer.clone()]
        );
        assert_eq!(read_snapshot_file(&newer.path).unwrap(), (9, 2, sm));
    }

    #[test]
    fn a_damaged_or_truncated_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let info = write_snapshot_file(dir.path(), &state(&["PUT k v"]), 3, 1).unwrap();
        let good = fs::read(&info.path).unwrap();
        let refused = |bytes: &[u8]| {
            fs::write(&info.path, bytes).unwrap();
            let e = read_snapshot_file(&info.path).unwrap_err();
            assert!(e.to_string().contains("snapshot-"), "{e}");
            e.kind()
        };
        for at in [0, 9, 17, 25, HEADER_BYTES, good.len() - 1] {
            let mut damaged = good.clone();
            damaged[at] ^= 1;
            assert_eq!(refused(&damaged), io::ErrorKind::InvalidData, "byte {at}");
        }
        for cut in [0, HEADER_BYTES - 1, HEADER_BYTES, good.len() - 1] {
            assert_eq!(
                refused(&good[..cut]),
                io::ErrorKind::UnexpectedEof,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn only_names_of_complete_snapshot_files_parse() {
        assert_eq!(
            parse_file_name(&file_name(u64::MAX, 3)),
            Some((u64::MAX, 3))
        );
        for name in [
            "snapshot-1-2",
            "snapshot-00000000000000000001-00000000000000000002.tmp",
            "snapshot-0000000000000000000+-00000000000000000002",
            "log",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }
}
