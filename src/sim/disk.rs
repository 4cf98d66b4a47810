//! The simulated disk: exactly what the [`Storage`] contract (and `FileStorage`) promises.
//!
//! A save that returns is durable. A crash in the middle of a save leaves a
//! prefix of its steps done, in `FileStorage`'s order: the hard state file
//! (replaced atomically: old or new), then the snapshot pieces received (the
//! last one publishes a complete file), then the switch to a new current
//! snapshot, then the log's appended records, of which any prefix may have
//! reached the disk (a torn tail, which `FileStorage` cuts off at start-up,
//! loses the records after it). Nothing a save did not reach is ever visible
//! after a restart, and a complete snapshot file is adopted at start-up, as
//! `FileStorage` does. Durable bytes are never damaged: Raft does not promise
//! to survive that.
//!
//! A disk that fails in the middle of a save (`CrashPoint::DiskFails`) leaves
//! the same prefix as a crash, and then fails every later save, as
//! `FileStorage`'s `DataDir` does after a failed write or fsync, until the
//! server restarts (the operator made room, or replaced the disk).

use crate::raft::ready::{LogWrite, Persist, Snapshot};
use crate::raft::rng::Rng;
use crate::raft::InitialState;
use crate::storage::memory::MemoryStorage;
use crate::storage::{read_snapshot_bytes, Storage};

/// One server's disk.
#[derive(Default)]
pub(crate) struct SimDisk {
    stored: MemoryStorage,
    /// A save failed: nothing more is written until the server restarts.
    failed: std::cell::Cell<bool>,
}

impl SimDisk {
    /// Makes `persist` durable, or says why the write is impossible (a write
    /// that would leave a gap in the log: a bug in the core).
    pub(crate) fn save(&self, persist: &Persist) -> Result<(), String> {
        self.stored.save(persist).map_err(|e| e.to_string())
    }

    /// Saves the part of `persist` that reached the disk before a crash, chosen
    /// by `rng`, and returns how much that was (for the trace).
    pub(crate) fn save_torn(&self, persist: &Persist, rng: &mut Rng) -> Result<String, String> {
        let (torn, what) = torn_prefix(persist, rng);
        self.save(&torn)?;
        Ok(what)
    }

    /// Saves the part of `persist` that reached the disk before it failed
    /// (as a torn save), then fails every later write until [`SimDisk::repair`].
    pub(crate) fn save_failing(&self, persist: &Persist, rng: &mut Rng) -> Result<String, String> {
        let what = self.save_torn(persist, rng)?;
        self.failed.set(true);
        Ok(what)
    }

    /// Whether a save failed since the server last started: only a runtime
    /// that ignores the failure (`Bug::IgnoreFailedSave`) writes on.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.get()
    }

    /// The server restarts: its disk works again (room was made, or the
    /// disk replaced).
    pub(crate) fn repair(&self) {
        self.failed.set(false);
    }

    /// Writes a snapshot's bytes (durable when this returns).
    pub(crate) fn write_snapshot(&self, point: Snapshot, data: &[u8]) -> Result<Snapshot, String> {
        if self.failed.get() {
            return Err("the disk failed earlier".into());
        }
        self.stored
            .write_snapshot(point, &mut |w| w.write_all(data))
            .map_err(|e| e.to_string())
    }

    /// A snapshot's bytes, whole.
    pub(crate) fn read_snapshot(&self, snapshot: &Snapshot) -> std::io::Result<Vec<u8>> {
        read_snapshot_bytes(&self.stored, snapshot)
    }

    /// The storage underneath, for the runtime's code that reads it (the
    /// senders' snapshot pieces).
    pub(crate) fn storage(&self) -> &dyn Storage {
        &self.stored
    }

    /// What a restarting server reads back.
    pub(crate) fn load(&self) -> InitialState {
        // MemoryStorage::load cannot fail.
        self.stored.load().unwrap_or_default()
    }
}

/// The prefix of `persist`'s steps that a crash let through.
fn torn_prefix(persist: &Persist, rng: &mut Rng) -> (Persist, String) {
    // Steps in FileStorage's order: the hard state file, the snapshot pieces,
    // the new current snapshot, then the log's records. The crash falls
    // before step `cut`, or inside the log step.
    let mut steps = Vec::new();
    if persist.hard_state.is_some() {
        steps.push("hardstate");
    }
    if !persist.snapshot_chunks.is_empty() {
        steps.push("snapshot pieces");
    }
    if persist.snapshot.is_some() {
        steps.push("snapshot");
    }
    let records = persist.log.as_ref().map_or(0, |w| w.entries.len().max(1));
    let cut = rng.range(0, steps.len() as u64 + 1) as usize;
    let done = |step: &str| {
        steps
            .iter()
            .position(|s| *s == step)
            .is_some_and(|i| i < cut)
    };
    let mut torn = Persist::default();
    if done("hardstate") {
        torn.hard_state = persist.hard_state;
    }
    if done("snapshot pieces") {
        torn.snapshot_chunks = persist.snapshot_chunks.clone();
    }
    if done("snapshot") {
        torn.snapshot = persist.snapshot.clone();
    }
    let mut what = format!("{} of {} file steps", cut, steps.len());
    if cut == steps.len() {
        if let Some(write) = &persist.log {
            // A prefix of the appended records reached the disk.
            let kept = rng.range(0, records as u64 + 1) as usize;
            if kept > 0 {
                torn.log = Some(LogWrite {
                    first_index: write.first_index,
                    entries: write.entries[..kept.min(write.entries.len())].to_vec(),
                });
            }
            what = format!("{what}, {kept} of {records} log records");
        }
    }
    (torn, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::messages::Entry;
    use crate::raft::HardState;

    fn persist() -> Persist {
        Persist {
            hard_state: Some(HardState {
                current_term: 2,
                voted_for: Some(1),
            }),
            snapshot_chunks: Vec::new(),
            snapshot: None,
            log: Some(LogWrite {
                first_index: 1,
                entries: (0..4).map(|i| Entry::command(2, vec![i])).collect(),
            }),
        }
    }

    #[test]
    fn a_torn_save_keeps_a_prefix_in_file_storage_order() {
        let mut rng = Rng::new(3);
        let mut seen_partial_log = false;
        for _ in 0..200 {
            let (torn, _) = torn_prefix(&persist(), &mut rng);
            if torn.log.is_some() {
                assert!(
                    torn.hard_state.is_some(),
                    "the log never lands before the term"
                );
            }
            let kept = torn.log.map_or(0, |w| w.entries.len());
            seen_partial_log |= (1..4).contains(&kept);
        }
        assert!(seen_partial_log);
    }

    #[test]
    fn a_failed_disk_writes_nothing_more_until_it_is_repaired() {
        let disk = SimDisk::default();
        let mut rng = Rng::new(1);
        disk.save_failing(&persist(), &mut rng).unwrap();
        assert!(disk.has_failed());
        let point = Snapshot::default();
        assert!(disk.write_snapshot(point.clone(), b"x").is_err());
        disk.repair();
        assert!(!disk.has_failed());
        assert!(disk.write_snapshot(point, b"x").is_ok());
    }

    #[test]
    fn a_completed_save_is_what_load_returns() {
        let disk = SimDisk::default();
        disk.save(&persist()).unwrap();
        let loaded = disk.load();
        assert_eq!(loaded.entries.len(), 4);
        assert_eq!(loaded.hard_state.current_term, 2);
    }
}
