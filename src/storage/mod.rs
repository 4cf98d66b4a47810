//! Where a server keeps what must survive a crash: term, vote, log and snapshot.
//!
//! The core says what to persist in [`Persist`]; a [`Storage`] makes it durable.
//! [`memory::MemoryStorage`] serves the tests (a crash is simulated by copying it).

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

    /// Makes `persist` durable: the snapshot (dropping entries it covers), then
    /// the log write (truncate, then append), then the hard state.
    ///
    /// # Correctness
    /// When `save` returns `Ok`, the new state survives a crash. A crash during
    /// `save` leaves either the old state or the new one, never a mix that
    /// `load` would accept (a torn log tail may be lost, since it was never
    /// acknowledged).
    fn save(&self, persist: &Persist) -> io::Result<()>;
}
