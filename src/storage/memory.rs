//! An in-memory [`Storage`] for tests: "durable" means "kept in this object".
//!
//! The test harness simulates a crash by copying the storage and giving the copy
//! to the restarted server, so anything a killed instance writes afterwards is
//! lost, as on a real machine.

use std::io;
use std::sync::{Mutex, MutexGuard};

use super::Storage;
use crate::codec::Encode;
use crate::raft::core::InitialState;
use crate::raft::ready::{HardState, Persist, Snapshot};

/// Raft state held in memory, updated atomically under one lock.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<InitialState>,
}

impl MemoryStorage {
    /// Empty storage, as for a server's first boot.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deep copy: what a crashed server's disk looks like to its next instance.
    pub fn copy(&self) -> Self {
        Self {
            state: Mutex::new(self.lock().clone()),
        }
    }

    /// Bytes of Raft state (hard state plus encoded log entries), excluding the
    /// snapshot: the number services watch to decide when to snapshot.
    pub fn raft_state_size(&self) -> usize {
        let state = self.lock();
        state.hard_state.encode().len()
            + state
                .entries
                .iter()
                .map(|e| e.encode().len())
                .sum::<usize>()
    }

    /// The stored snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// The stored term and vote.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state
    }

    fn lock(&self) -> MutexGuard<'_, InitialState> {
        // A panic elsewhere while holding the lock cannot leave the state torn:
        // `save` checks before it mutates. Keep using the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> io::Result<InitialState> {
        Ok(self.lock().clone())
    }

    fn save(&self, persist: &Persist) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(snapshot) = &persist.snapshot {
            let old_first = state.snapshot.last_included_index + 1;
            let covered = snapshot.last_included_index.saturating_sub(old_first - 1);
            let drop = usize::try_from(covered).unwrap_or(usize::MAX);
            let drop = drop.min(state.entries.len());
            state.entries.drain(..drop);
            state.snapshot = snapshot.clone();
        }
        if let Some(write) = &persist.log {
            let first = state.snapshot.last_included_index + 1;
            let last = first + state.entries.len() as u64;
            if write.first_index < first || write.first_index > last {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "log write at {} outside stored log {first}..={last}",
                        write.first_index
                    ),
                ));
            }
            state.entries.truncate((write.first_index - first) as usize);
            state.entries.extend(write.entries.iter().cloned());
        }
        if let Some(hard_state) = persist.hard_state {
            state.hard_state = hard_state;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::messages::Entry;
    use crate::raft::ready::LogWrite;

    fn entry(term: u64, command: &[u8]) -> Entry {
        Entry::command(term, command.to_vec())
    }

    #[test]
    fn writes_truncate_then_append_and_snapshots_drop_covered_entries() {
        let s = MemoryStorage::new();
        let write = |first_index, entries| Persist {
            log: Some(LogWrite {
                first_index,
                entries,
            }),
            ..Persist::default()
        };
        s.save(&write(
            1,
            vec![entry(1, b"a"), entry(1, b"b"), entry(1, b"c")],
        ))
        .unwrap();
        s.save(&write(3, vec![entry(2, b"C")])).unwrap();
        s.save(&Persist {
            snapshot: Some(Snapshot {
                last_included_index: 2,
                last_included_term: 1,
                data: b"ab".to_vec(),
            }),
            ..Persist::default()
        })
        .unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.entries, vec![entry(2, b"C")]);
        assert_eq!(loaded.snapshot.last_included_index, 2);
        assert!(s.save(&write(9, vec![])).is_err(), "a gap is refused");
    }

    #[test]
    fn a_copy_does_not_see_later_writes() {
        let s = MemoryStorage::new();
        let copy = s.copy();
        s.save(&Persist {
            hard_state: Some(HardState {
                current_term: 3,
                voted_for: Some(1),
            }),
            ..Persist::default()
        })
        .unwrap();
        assert_eq!(copy.hard_state(), HardState::default());
        assert_eq!(s.hard_state().current_term, 3);
    }
}
