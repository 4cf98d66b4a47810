//! Where a server keeps what must survive a crash: term, vote, log and snapshot.
//!
//! The core says what to persist in [`Persist`]; a [`Storage`] makes it durable.
//! Snapshot bytes never pass through the core: the service streams them into
//! storage ([`Storage::write_snapshot`]), the runtime reads pieces of them to
//! send to a follower ([`Storage::read_snapshot_chunk`]), and a follower's
//! storage assembles the pieces it receives (`Persist::snapshot_chunks`).
//! The files: [`file::FileStorage`] keeps it in a directory, with the log's
//! records in `log_file.rs` and snapshot files in `snapshot_files.rs`, every
//! change to the disk made through `data_dir.rs` (where the first failure
//! stops every later write); `space.rs` measures the free space and guards
//! against filling the disk; `faults.rs` fails every write-side call in turn
//! (tests). [`memory::MemoryStorage`] serves the tests (a crash is simulated
//! by copying it).

pub mod data_dir;
#[cfg(test)]
mod faults;
pub mod file;
mod log_file;
pub mod memory;
pub mod snapshot_files;
pub mod space;

use std::io::{self, Read, Write};

use crate::raft::core::InitialState;
use crate::raft::ready::{Persist, Snapshot};

/// Writes a snapshot's bytes into the writer it is given.
pub type SnapshotFill<'a> = &'a mut dyn FnMut(&mut dyn Write) -> io::Result<()>;

/// Durable storage for one server's Raft state.
pub trait Storage: Send + Sync {
    /// Reads back everything saved so far (all defaults for a new server).
    ///
    /// # Correctness
    /// Returns exactly the state formed by every `save` that returned `Ok`, in
    /// order; the entries returned start right after the snapshot. Corrupt data is
    /// an error, never silently dropped (which could make a server vote twice).
    /// The snapshot may be newer than the last one a `save` made current: one
    /// written (or received whole) just before a crash; it holds committed state,
    /// so restarting from it is safe.
    fn load(&self) -> io::Result<InitialState>;

    /// Makes `persist` durable: the hard state, the snapshot pieces received,
    /// the new current snapshot (dropping entries it covers), and the log write
    /// (truncate, then append).
    ///
    /// # Correctness
    /// When `save` returns `Ok`, the new state survives a crash. A crash during
    /// `save` may leave a prefix of these steps done, in this order: hard state
    /// (a new term is durable before any entry of that term), snapshot pieces,
    /// snapshot, log (a torn log tail may be lost, since it was never
    /// acknowledged). Every such prefix is a state Raft can safely restart from.
    fn save(&self, persist: &Persist) -> io::Result<()>;

    /// Writes the snapshot `snapshot` describes (its point and the cluster
    /// configuration as of it; its `size` is ignored), streaming its bytes
    /// from `fill`, and returns its description with the size written. It does
    /// not become the current snapshot until a `save` names it; it never blocks
    /// `save` for longer than a file rename.
    ///
    /// # Correctness
    /// When this returns `Ok` the snapshot's bytes and its description, the
    /// configuration included, are durable (`load` returns them with it); a
    /// crash before leaves no trace a `load` would take for a snapshot.
    fn write_snapshot(&self, snapshot: Snapshot, fill: SnapshotFill<'_>) -> io::Result<Snapshot>;

    /// Opens `snapshot`'s bytes for reading (to restore the state machine).
    /// The reader fails with `InvalidData` at the end if the bytes do not match
    /// their checksum.
    fn open_snapshot(&self, snapshot: &Snapshot) -> io::Result<Box<dyn Read + Send>>;

    /// Reads up to `len` of `snapshot`'s bytes from `offset` (a piece to send
    /// to a follower). Fails if `snapshot` is no longer stored.
    fn read_snapshot_chunk(
        &self,
        snapshot: &Snapshot,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>>;
}

/// Reads `snapshot`'s bytes whole (small snapshots: tests, the simulator).
pub fn read_snapshot_bytes(storage: &dyn Storage, snapshot: &Snapshot) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    storage.open_snapshot(snapshot)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}
