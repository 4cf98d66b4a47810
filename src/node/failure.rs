//! Why a node stopped for good: its storage failed (fail-stop).
//!
//! A node whose storage write fails stops at once and for good: it
//! acknowledges nothing more (the replies waiting for that write are never
//! sent), leads and follows no one, and reports the failure to its owner
//! ([`crate::node::Node::wait_for_failure`]). It never retries: after a failed
//! fsync the file's state is unknown, and a retried fsync can report success
//! for data that is lost (PostgreSQL's "fsyncgate"). etcd does the same
//! (`server/etcdserver/raft.go` calls `Fatal` when saving fails).
//!
//! A failed save of a `Ready` stops the node by the executor's rule
//! (`raft/executor.rs` calls `Effects::fail_stop`, which the simulator runs
//! too); a failed snapshot write or read stops it here, through
//! [`Node::fail`] or the node thread's own snapshot path.
//!
//! The owner decides what stopping means: the `raftkv` binary exits with
//! [`EXIT_STORAGE_FAILED`] so that a supervisor restarts it, and the restart
//! recovers from what is durable; a process that runs several nodes (the
//! cluster example, tests) keeps the others running and shows this one as
//! failed.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{lock, Event, Node, Shared};
use crate::info;
use crate::raft::{NodeId, Role};

/// The `raftkv` process's exit status after a storage failure: 74,
/// `EX_IOERR` of BSD's `sysexits.h` ("an error occurred while doing I/O on
/// some file"). Any non-zero status makes systemd's `Restart=on-failure`
/// restart it; this one says why.
pub const EXIT_STORAGE_FAILED: u8 = 74;

/// A storage failure that stopped a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFailure {
    /// The error's kind (`StorageFull` for ENOSPC, ...).
    pub kind: io::ErrorKind,
    /// What failed, on which file, and the system's message:
    /// `fdatasync /var/lib/raftkv/log: No space left on device (os error 28)`.
    pub message: String,
}

impl StorageFailure {
    /// The failure `error` describes.
    pub fn new(error: &io::Error) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// What an operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self.kind {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                "The disk is full: free space on it (or grow the file system), then restart the \
                 server; it recovers from what is durable and catches up from the leader"
            }
            io::ErrorKind::ReadOnlyFilesystem => {
                "The file system is read-only (often after disk errors): check the disk and \
                 remount it, then restart the server; it recovers from what is durable"
            }
            io::ErrorKind::InvalidData => {
                "Stored data is damaged: check the disk; if the data cannot be repaired, remove \
                 this server from the cluster (REMOVE) and add an empty one under a new id \
                 (restarting it empty under its old id could make it vote twice)"
            }
            _ => {
                "Check the disk (dmesg, SMART) and fix or replace it, then restart the server; \
                 it recovers from what is durable"
            }
        }
    }
}

impl fmt::Display for StorageFailure {
    /// The one line a failed node logs: what failed, on which file, what to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "storage failed, stopping for good: {}. {}",
            self.message,
            self.advice()
        )
    }
}

impl Shared {
    /// Storage failed with `error`: stops the node for good (fail-stop, see
    /// `node/failure.rs`), logging the one line that says what failed and
    /// what to do. Only the first failure counts, and is returned.
    pub(super) fn fail(&self, id: NodeId, error: &io::Error) -> StorageFailure {
        let failure = StorageFailure::new(error);
        // Lock order: `status` before `failure` (as `wait_for_failure` takes them).
        let term = lock(&self.status).term;
        {
            let mut first = lock(&self.failure);
            if let Some(first) = first.as_ref() {
                return first.clone();
            }
            info!(id, term, "{failure}");
            *first = Some(failure.clone());
        }
        self.killed.store(true, Ordering::SeqCst);
        // A stopped node leads and follows no one.
        let mut status = lock(&self.status);
        status.role = Role::Follower;
        status.leader_id = None;
        self.status_changed.notify_all();
        failure
    }
}

impl Node {
    /// The storage failure that stopped this node, if one did.
    pub fn failure(&self) -> Option<StorageFailure> {
        lock(&self.shared.failure).clone()
    }

    /// Waits up to `timeout` (forever if `None`) for storage to fail; returns
    /// the failure, or `None` on timeout. The `raftkv` binary waits here and
    /// exits with [`EXIT_STORAGE_FAILED`].
    pub fn wait_for_failure(&self, timeout: Option<Duration>) -> Option<StorageFailure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut status = self.lock_status();
        loop {
            if let Some(failure) = self.failure() {
                return Some(failure);
            }
            status = match deadline {
                None => self
                    .shared
                    .status_changed
                    .wait(status)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.shared
                        .status_changed
                        .wait_timeout(status, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Stops the node for good because storage failed with `error` (a
    /// snapshot the service wrote, or could not read back): see
    /// [`StorageFailure`]. Logs one line; only the first failure counts.
    pub fn fail(&self, error: &io::Error) {
        self.shared.fail(self.id, error);
        let _ = self.events.send(Event::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::*;
    use crate::node::{ApplySink, Node};
    use crate::raft::core::{Config, InitialState, Role};
    use crate::raft::messages::{NodeId, Request, Response};
    use crate::raft::ready::{ApplyMsg, Persist, Snapshot};
    use crate::storage::memory::MemoryStorage;
    use crate::storage::{SnapshotFill, Storage};
    use crate::transport::{TransportError, Transporter};

    struct NoPeers;

    impl Transporter for NoPeers {
        fn call(&self, _: NodeId, _: &Request) -> Result<Response, TransportError> {
            Err(TransportError::Unreachable("no peers".into()))
        }
    }

    /// Memory storage whose log writes fail once `full` is set.
    #[derive(Default)]
    struct FillingDisk {
        stored: MemoryStorage,
        full: AtomicBool,
    }

    impl Storage for FillingDisk {
        fn load(&self) -> io::Result<InitialState> {
            self.stored.load()
        }

        fn save(&self, persist: &Persist) -> io::Result<()> {
            if self.full.load(Ordering::SeqCst) && persist.log.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "fdatasync /data/log: No space left on device (os error 28)",
                ));
            }
            self.stored.save(persist)
        }

        fn write_snapshot(&self, s: Snapshot, fill: SnapshotFill<'_>) -> io::Result<Snapshot> {
            self.stored.write_snapshot(s, fill)
        }

        fn open_snapshot(&self, s: &Snapshot) -> io::Result<Box<dyn io::Read + Send>> {
            self.stored.open_snapshot(s)
        }

        fn read_snapshot_chunk(&self, s: &Snapshot, at: u64, len: usize) -> io::Result<Vec<u8>> {
            self.stored.read_snapshot_chunk(s, at, len)
        }
    }

    /// A leader whose log write fails stops for good: the entry is never
    /// committed or applied, the node leads no one, refuses what follows,
    /// and tells its owner why.
    #[test]
    fn a_failed_log_write_stops_the_node_for_good_and_nothing_is_applied() {
        let disk = Arc::new(FillingDisk::default());
        let (apply_tx, apply_rx) = mpsc::channel();
        let node = Node::with_sink(
            Config::new(1, vec![1]),
            Duration::from_millis(5),
            Arc::new(NoPeers),
            Arc::clone(&disk) as _,
            ApplySink::Batches(apply_tx),
        )
        .unwrap();
        let patience = Duration::from_secs(10);
        assert!(node
            .wait_for_status(patience, |s| s.role == Role::Leader)
            .is_some());
        assert_eq!(node.wait_for_failure(Some(Duration::ZERO)), None);
        disk.full.store(true, Ordering::SeqCst);
        let (index, _) = node
            .start(b"x".to_vec())
            .expect("proposed before the write");
        let failure = node.wait_for_failure(Some(patience)).expect("failed");
        assert_eq!(failure.kind, io::ErrorKind::StorageFull);
        assert!(failure.message.contains("/data/log"), "{failure}");
        let status = node.status();
        assert_eq!((status.role, status.leader_id), (Role::Follower, None));
        assert!(node.is_killed());
        assert!(node.start(b"y".to_vec()).is_err(), "refused after");
        let applied: Vec<ApplyMsg> = apply_rx.try_iter().flatten().collect();
        assert!(
            !applied
                .iter()
                .any(|m| matches!(m, ApplyMsg::Command { index: i, .. } if *i == index)),
            "an entry whose write failed was applied"
        );
        let stored = disk.stored.load().unwrap().entries.len() as u64;
        assert!(stored < index, "the failed entry is not stored");
    }

    #[test]
    fn the_line_names_the_call_the_file_and_what_to_do() {
        let error = io::Error::new(
            io::ErrorKind::StorageFull,
            "fdatasync /data/log: No space left on device (os error 28)",
        );
        let line = StorageFailure::new(&error).to_string();
        assert!(
            line.contains("fdatasync /data/log: No space left"),
            "{line}"
        );
        assert!(line.contains("The disk is full"), "{line}");
        let eio = StorageFailure::new(&io::Error::from_raw_os_error(5));
        assert!(eio.to_string().contains("Check the disk"), "{eio}");
    }
}
