//! Where a server keeps what must survive a crash: term, vote, log and snapshot.
//!
//! The core says what to persist in [`Persist`]; a [`Storage`] makes it durable.
//! [`memory::MemoryStorage`] serves the tests (a crash is simulated by copying it).

pub mod file;
pub mod memory;

use std::io;

use crate::raft::core::InitialState;
use crate::raft::ready::Persist;

/// Durable storage for one server's Raft state.
pub trait Storage: Send + Sync {
    /// Reads back everything saved so far (all defaults for a new server).
    ///
    /// # Correctness
    /// Returns exactly the state formed by every `save` that returned `Ok`, in
    /// order; the entries returned start right after the snapshot. Corrupt data is
    /// an error, never silently dropped (which could make a server vote twice).
    fn load(&self) -> io::Result<InitialState>;

    /// Makes `persist` durable: the hard state, the snapshot (dropping entries
    /// it covers), and the log write (truncate, then append).
    ///
    /// # Correctness
    /// When `save` returns `Ok`, the new state survives a crash. A crash during
    /// `save` may leave a prefix of these steps done, in this order: hard state
    /// (a new term is durable before any entry of that term), snapshot, log (a
    /// torn log tail may be lost, since it was never acknowledged). Every such
    /// prefix is a state Raft can safely restart from.
    fn save(&self, persist: &Persist) -> io::Result<()>;
}
