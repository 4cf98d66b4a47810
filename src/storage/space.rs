//! How much room the data directory has left, and the free-space guard that
//! stops writes before the disk fills.
//!
//! `std` cannot ask the file system for its free space (`statvfs` is not in
//! it, and `unsafe` is not allowed here), so [`DiskSpace::measure`] runs
//! `df -Pk DIR`, whose output POSIX fixes, and reads its "Available" column:
//! the bytes this process may still write there. Between measurements the
//! bytes storage wrote since the last one are subtracted ([`DataDir::bytes_written`]),
//! so the estimate never lags behind a burst of writes; space freed meanwhile
//! shows at the next measurement. The alternative, a byte budget for the
//! directory, counts only this server's own files: it cannot see a disk
//! filled by something else, which is how disks usually fill.
//!
//! The guard keeps room to compact: it is low when free space falls below
//! `-min-free-bytes` plus the size of the newest snapshot (the next snapshot
//! is written beside it before the older one is deleted). While it is low,
//! the server refuses writes that grow the state with `ERR NOSPACE_DISK` (like
//! etcd's NOSPACE alarm), snapshots after every entry it applies, and rewrites
//! its log file at every snapshot ([`super::file::FileStorage::set_space_low`]),
//! so that `DEL` and compaction free space; it is no longer low once free
//! space is back above the threshold plus a tenth, and writes resume.
//!
//! If `df` cannot be run or read, the free space is unknown: the guard stays
//! off (one log line says so) and the metric is not exported.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::data_dir::DataDir;

/// `-min-free-bytes` when not given: room for the log to grow and be
/// rewritten (the log file is rewritten at 64 MiB).
pub const DEFAULT_MIN_FREE_BYTES: u64 = 128 << 20;
/// No measurement yet, or `df` failed.
const UNKNOWN: u64 = u64::MAX;

/// The free space of one data directory, and whether the guard is low.
pub struct DiskSpace {
    dir: Arc<DataDir>,
    /// Room kept free besides the snapshot's (`-min-free-bytes`); 0 turns the
    /// guard off.
    min_free: u64,
    /// `df`'s "Available" at the last measurement, or [`UNKNOWN`].
    measured_free: AtomicU64,
    /// [`DataDir::bytes_written`] at the last measurement.
    written_then: AtomicU64,
    /// Bytes in the directory's files at the last measurement.
    data_bytes: AtomicU64,
    /// The newest snapshot file's size at the last measurement.
    snapshot_bytes: AtomicU64,
    /// Set by the last measurement: free space below the threshold.
    low: AtomicBool,
    /// `df` failed at the last measurement (reported once, until it works).
    unmeasurable: AtomicBool,
}

/// What one measurement changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing the server must act on.
    None,
    /// Free space fell below the threshold: refuse writes that grow the state.
    BecameLow,
    /// Free space is back: accept writes again.
    Recovered,
    /// `df` could not be run or read (the first time): the guard is off.
    Unmeasurable(String),
}

impl DiskSpace {
    /// The free space of `dir`, guarded at `min_free` bytes (0: never low);
    /// unknown until [`DiskSpace::measure`].
    pub fn new(dir: Arc<DataDir>, min_free: u64) -> Self {
        Self {
            dir,
            min_free,
            measured_free: AtomicU64::new(UNKNOWN),
            written_then: AtomicU64::new(0),
            data_bytes: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            low: AtomicBool::new(false),
            unmeasurable: AtomicBool::new(false),
        }
    }

    /// Measures again (runs `df`, lists the directory) and says what changed.
    pub fn measure(&self) -> Change {
        let written = self.dir.bytes_written();
        let (data, snapshot) = directory_bytes(self.dir.path());
        self.data_bytes.store(data, Ordering::Relaxed);
        self.snapshot_bytes.store(snapshot, Ordering::Relaxed);
        match available_bytes(self.dir.path()) {
            Ok(free) => {
                self.measured_free.store(free, Ordering::Relaxed);
                self.written_then.store(written, Ordering::Relaxed);
                self.unmeasurable.store(false, Ordering::Relaxed);
            }
            Err(why) => {
                self.measured_free.store(UNKNOWN, Ordering::Relaxed);
                self.low.store(false, Ordering::Relaxed);
                let first = !self.unmeasurable.swap(true, Ordering::Relaxed);
                return if first {
                    Change::Unmeasurable(why)
                } else {
                    Change::None
                };
            }
        }
        let (Some(free), was_low) = (self.free_bytes(), self.low.load(Ordering::Relaxed)) else {
            return Change::None;
        };
        let threshold = self.threshold();
        let low = if was_low {
            free < threshold.saturating_add(threshold / 10)
        } else {
            self.min_free > 0 && free < threshold
        };
        self.low.store(low, Ordering::Relaxed);
        match (was_low, low) {
            (false, true) => Change::BecameLow,
            (true, false) => Change::Recovered,
            _ => Change::None,
        }
    }

    /// Free bytes now: the last measurement less what storage wrote since;
    /// `None` if unknown.
    pub fn free_bytes(&self) -> Option<u64> {
        let measured = self.measured_free.load(Ordering::Relaxed);
        if measured == UNKNOWN {
            return None;
        }
        let since = self
            .dir
            .bytes_written()
            .saturating_sub(self.written_then.load(Ordering::Relaxed));
        Some(measured.saturating_sub(since))
    }

    /// The free space below which the guard is low: `-min-free-bytes` plus
    /// the newest snapshot's size (0 when the guard is off).
    pub fn threshold(&self) -> u64 {
        if self.min_free == 0 {
            return 0;
        }
        self.min_free
            .saturating_add(self.snapshot_bytes.load(Ordering::Relaxed))
    }

    /// Bytes in the data directory's files, as of the last measurement.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes.load(Ordering::Relaxed)
    }

    /// Whether writes that grow the state are refused: free space was below
    /// the threshold at the last measurement, or is now by the estimate.
    pub fn is_low(&self) -> bool {
        if self.low.load(Ordering::Relaxed) {
            return true;
        }
        let threshold = self.threshold();
        threshold > 0 && self.free_bytes().is_some_and(|free| free < threshold)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Bytes in the files of `dir`, and the size of its newest snapshot file
/// (snapshot names sort by index and term).
fn directory_bytes(dir: &Path) -> (u64, u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, 0);
    };
    let mut total = 0;
    let mut newest: Option<(String, u64)> = None;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        total += meta.len();
        let name = entry.file_name().to_string_lossy().into_owned();
        let complete = name.starts_with("snapshot-") && !name.contains('.');
        if complete && newest.as_ref().is_none_or(|(n, _)| name > *n) {
            newest = Some((name, meta.len()));
        }
    }
    (total, newest.map_or(0, |(_, len)| len))
}

/// `df -Pk dir`'s "Available" column, in bytes.
fn available_bytes(dir: &Path) -> Result<u64, String> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run df: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("df failed: {}", why.trim()));
    }
    parse_df(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "cannot read df's output".to_string())
}

/// Reads "Available" (in KiB) from `df -Pk` output: the column before
/// "Capacity", which is the first field of the second line ending in `%` (a
/// file system's name may hold spaces, and so may the mount point after).
fn parse_df(output: &str) -> Option<u64> {
    let line = output.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let capacity = fields.iter().position(|f| f.ends_with('%'))?;
    let kib: u64 = fields.get(capacity.checked_sub(1)?)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::data_dir::StdFileOps;

    #[test]
    fn df_output_is_read_whatever_the_names() {
        let plain = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                     /dev/vda 264212084 14974272 80311616 16% /\n";
        assert_eq!(parse_df(plain), Some(80311616 * 1024));
        let spaces = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                      my disk 4096 1024 3072 25% /mnt/a b\n";
        assert_eq!(parse_df(spaces), Some(3072 * 1024));
        for bad in [
            "",
            "header only\n",
            "h\nno numbers here\n",
            "h\nx y z 12% /\n",
        ] {
            assert_eq!(parse_df(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_estimate_subtracts_what_storage_wrote_since_the_last_measurement() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path(), Box::new(StdFileOps)).unwrap();
        let space = DiskSpace::new(Arc::clone(&dir), 1);
        assert_eq!(space.free_bytes(), None, "unknown before measuring");
        if let Change::Unmeasurable(why) = space.measure() {
            eprintln!("skipped: df does not work here ({why})");
            return;
        }
        let measured = space.free_bytes().expect("measured");
        let mut file = dir.create("x").unwrap();
        std::io::Write::write_all(&mut file, &[0u8; 4096]).unwrap();
        assert_eq!(space.free_bytes(), Some(measured - 4096));
        assert!(!space.is_low(), "1 byte kept free");
    }
}
