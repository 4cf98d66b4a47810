//! An in-memory [`Storage`] for tests: "durable" means "kept in this object".
//!
//! The test harness simulates a crash by copying the storage and giving the copy
//! to the restarted server, so anything a killed instance writes afterwards is
//! lost, as on a real machine.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{SnapshotFill, Storage};
use crate::codec::Encode;
use crate::raft::core::InitialState;
use crate::raft::messages::{Index, Term};
use crate::raft::ready::{HardState, Persist, Snapshot};

/// What the storage holds.
#[derive(Debug, Clone, Default)]
struct Stored {
    /// Term, vote, the current snapshot's description and the log after it.
    state: InitialState,
    /// Snapshots by (index, term): the current one, and newer ones written or
    /// received but not yet made current.
    snapshots: BTreeMap<(Index, Term), StoredSnapshot>,
    /// A snapshot being received in pieces.
    incoming: Option<(Snapshot, Vec<u8>)>,
}

/// A snapshot's description (the configuration included) and its bytes.
type StoredSnapshot = (Snapshot, Arc<Vec<u8>>);

/// Raft state held in memory, updated atomically under one lock.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    stored: Mutex<Stored>,
}

impl MemoryStorage {
    /// Empty storage, as for a server's first boot.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deep copy: what a crashed server's disk looks like to its next
    /// instance (a snapshot being received is lost, as a temporary file is).
    pub fn copy(&self) -> Self {
        let mut stored = self.lock().clone();
        stored.incoming = None;
        Self {
            stored: Mutex::new(stored),
        }
    }

    /// Bytes of Raft state (hard state plus encoded log entries), excluding the
    /// snapshot: the number services watch to decide when to snapshot.
    pub fn raft_state_size(&self) -> usize {
        let stored = self.lock();
        stored.state.hard_state.encode().len()
            + stored
                .state
                .entries
                .iter()
                .map(|e| e.encode().len())
                .sum::<usize>()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().state.snapshot.clone()
    }

    /// The stored term and vote.
    pub fn hard_state(&self) -> HardState {
        self.lock().state.hard_state
    }

    fn lock(&self) -> MutexGuard<'_, Stored> {
        // A panic elsewhere while holding the lock cannot leave the state torn:
        // `save` checks before it mutates. Keep using the data.
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes(&self, snapshot: &Snapshot) -> io::Result<Arc<Vec<u8>>> {
        let key = (snapshot.last_included_index, snapshot.last_included_term);
        self.lock()
            .snapshots
            .get(&key)
            .map(|(_, bytes)| Arc::clone(bytes))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such snapshot"))
    }
}

/// A reader over shared snapshot bytes.
struct SharedReader {
    bytes: Arc<Vec<u8>>,
    at: usize,
}

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> io::Result<InitialState> {
        let mut stored = self.lock();
        let stored = &mut *stored;
        // A newer snapshot written or received before a crash is taken, as
        // `FileStorage` does: it holds committed state. It becomes the stored
        // base, so later log writes are placed after it.
        if let Some((&(index, term), (snapshot, _))) = stored.snapshots.last_key_value() {
            let state = &mut stored.state;
            if index > state.snapshot.last_included_index {
                let covered = index - state.snapshot.last_included_index;
                let agrees = usize::try_from(covered - 1)
                    .ok()
                    .and_then(|i| state.entries.get(i))
                    .is_some_and(|e| e.term == term);
                let drop = usize::try_from(covered).unwrap_or(usize::MAX);
                if agrees {
                    state.entries.drain(..drop.min(state.entries.len()));
                } else {
                    state.entries.clear();
                }
                state.snapshot = snapshot.clone();
            }
        }
        Ok(stored.state.clone())
    }

    fn save(&self, persist: &Persist) -> io::Result<()> {
        let mut stored = self.lock();
        for chunk in &persist.snapshot_chunks {
            if chunk.offset == 0 {
                stored.incoming = Some((chunk.snapshot.clone(), Vec::new()));
            }
            let Some((snapshot, bytes)) = stored.incoming.as_mut() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a piece of no transfer",
                ));
            };
            if *snapshot != chunk.snapshot || bytes.len() as u64 != chunk.offset {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a piece out of order",
                ));
            }
            bytes.extend_from_slice(&chunk.data);
            if chunk.done {
                if let Some((snapshot, bytes)) = stored.incoming.take() {
                    let key = (snapshot.last_included_index, snapshot.last_included_term);
                    stored.snapshots.insert(key, (snapshot, Arc::new(bytes)));
                }
            }
        }
        let stored = &mut *stored;
        let state = &mut stored.state;
        if let Some(snapshot) = &persist.snapshot {
            let old_first = state.snapshot.last_included_index + 1;
            let covered = snapshot.last_included_index.saturating_sub(old_first - 1);
            let drop = usize::try_from(covered).unwrap_or(usize::MAX);
            let drop = drop.min(state.entries.len());
            state.entries.drain(..drop);
            state.snapshot = snapshot.clone();
            let current = (snapshot.last_included_index, snapshot.last_included_term);
            stored.snapshots.retain(|&key, _| key >= current);
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

    fn write_snapshot(&self, snapshot: Snapshot, fill: SnapshotFill<'_>) -> io::Result<Snapshot> {
        let mut bytes = Vec::new();
        fill(&mut bytes)?;
        let snapshot = Snapshot {
            size: bytes.len() as u64,
            ..snapshot
        };
        let key = (snapshot.last_included_index, snapshot.last_included_term);
        let stored = (snapshot.clone(), Arc::new(bytes));
        self.lock().snapshots.insert(key, stored);
        Ok(snapshot)
    }

    fn open_snapshot(&self, snapshot: &Snapshot) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(SharedReader {
            bytes: self.bytes(snapshot)?,
            at: 0,
        }))
    }

    fn read_snapshot_chunk(
        &self,
        snapshot: &Snapshot,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let bytes = self.bytes(snapshot)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
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
        let point = Snapshot {
            last_included_index: 2,
            last_included_term: 1,
            ..Snapshot::default()
        };
        let snapshot = s
            .write_snapshot(point, &mut |w| w.write_all(b"ab"))
            .unwrap();
        s.save(&Persist {
            snapshot: Some(snapshot),
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
