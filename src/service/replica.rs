//! A replica: one server's state machine kept in step with its Raft node.
//!
//! [`Replica::execute`] proposes an operation and waits until it is applied at
//! the index Raft assigned; the apply loop (the thread that consumes the node's
//! apply channel) applies every committed entry through the [`Applier`] (the
//! state machine and the proposals waiting on it, shared with the simulator),
//! wakes the waiting request, and snapshots once the log has grown past a
//! threshold.
//!
//! Linearizability: every write goes through the log, so a reply reflects
//! exactly the operations committed before it; a deposed leader cannot answer,
//! since its proposal either never commits or is replaced, and the waiter
//! learns that from the entry applied at its index. Reads (`GET`, `BALANCE`,
//! `AUDIT`) skip the log: Raft confirms with one heartbeat round that this
//! server still leads, then the read is answered once the state machine has
//! applied the read index (ReadIndex, thesis §6.4).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::applier::{Applier, Outcome};
use super::state_machine::{Op, StateMachine, Stats};
use crate::codec::Encode;
use crate::node::Node;
use crate::raft::messages::Index;
use crate::raft::messages::NodeId;
use crate::raft::{ApplyMsg, ProposeError};
use crate::{debug, info};

/// Why an operation has no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// This server is not the leader (or lost leadership and the entry was
    /// replaced): the operation was not applied. Safe to retry elsewhere.
    NotLeader,
    /// No outcome within the deadline: it may or may not have been applied.
    Timeout,
    /// This leader is handing leadership to this server (thesis §3.10): the
    /// operation was not proposed. Safe to retry shortly.
    Transferring(NodeId),
}

type Applied = Applier<Sender<Outcome>>;

/// The replicated service on one server.
pub struct Replica {
    node: Arc<Node>,
    applied: Arc<Mutex<Applied>>,
    apply_loop: Mutex<Option<JoinHandle<()>>>,
    /// The next ReadIndex read id.
    next_read: AtomicU64,
}

impl Replica {
    /// Starts applying what `node` delivers on `apply`, snapshotting whenever
    /// more than `snapshot_bytes` of log were applied since the last one: the
    /// commands' bytes plus [`ENTRY_COST`] per entry, so that a flood of tiny
    /// commands (`REGISTER` is 3 bytes) cannot grow the in-memory log to
    /// millions of entries before a snapshot.
    pub fn start(node: Arc<Node>, apply: Receiver<ApplyMsg>, snapshot_bytes: usize) -> Replica {
        let applied = Arc::new(Mutex::new(Applied::default()));
        let (loop_node, loop_applied) = (Arc::clone(&node), Arc::clone(&applied));
        let apply_loop = thread::Builder::new()
            .name(format!("service-{}", node.id()))
            .spawn(move || run_apply_loop(&loop_node, &loop_applied, apply, snapshot_bytes))
            .ok();
        Replica {
            node,
            applied,
            apply_loop: Mutex::new(apply_loop),
            next_read: AtomicU64::new(1),
        }
    }

    /// The Raft node underneath.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Executes `op` and waits up to `timeout` for its reply: a write is
    /// proposed through the log, a read is served by ReadIndex.
    pub fn execute(&self, op: &Op, timeout: Duration) -> Result<String, ExecError> {
        if op.command.is_read() {
            return self.read(op, timeout);
        }
        let metrics = self.node.metrics();
        // Not the leader: no proposal was made (the frontend forwards instead).
        let (index, term) = self.node.start(op.encode()).map_err(refused)?;
        metrics.proposals_pending.inc();
        let (tx, rx) = mpsc::channel();
        let early = lock(&self.applied).wait_for(index, term, tx);
        let outcome = early.or_else(|| rx.recv_timeout(timeout).ok());
        metrics.proposals_pending.dec();
        match outcome {
            Some(Outcome::Reply(reply)) => Ok(reply),
            Some(Outcome::Replaced) => {
                metrics.proposals_failed_leadership_lost.inc();
                Err(ExecError::NotLeader)
            }
            Some(Outcome::Unknown) | None => {
                metrics.proposals_failed_timeout.inc();
                Err(ExecError::Timeout)
            }
        }
    }

    /// Thesis §6.4: a read without a log entry. Registers the read, asks Raft
    /// to confirm this server still leads, and answers once the state machine
    /// has applied the read index. A session's read is not recorded in its
    /// session (reads change nothing, so retrying one is harmless).
    fn read(&self, op: &Op, timeout: Duration) -> Result<String, ExecError> {
        let id = self.next_read.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        lock(&self.applied).wait_read(id, op.command.clone(), tx);
        if let Err(e) = self.node.read_index(id) {
            lock(&self.applied).cancel_read(id);
            return Err(refused(e));
        }
        let outcome = rx.recv_timeout(timeout).ok();
        match outcome {
            Some(Outcome::Reply(reply)) => Ok(reply),
            Some(Outcome::Replaced) => Err(ExecError::NotLeader),
            Some(Outcome::Unknown) | None => {
                lock(&self.applied).cancel_read(id);
                Err(ExecError::Timeout)
            }
        }
    }

    /// Sizes of the state machine as of the last applied entry.
    pub fn stats(&self) -> Stats {
        lock(&self.applied).state_machine().stats()
    }

    /// Reads the state machine as of the last applied entry.
    pub fn with_state<R>(&self, read: impl FnOnce(&StateMachine) -> R) -> R {
        read(lock(&self.applied).state_machine())
    }

    /// The index applied last and the state machine's encoding at that point
    /// (for comparing replicas).
    pub fn applied_state(&self) -> (Index, Vec<u8>) {
        let applied = lock(&self.applied);
        (applied.last_applied(), applied.state_machine().snapshot())
    }

    /// Stops the node and waits for the apply loop to finish.
    pub fn shutdown(&self) {
        self.node.kill();
        let handle = self
            .apply_loop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// Why Raft refused to take a proposal or a read.
fn refused(e: ProposeError) -> ExecError {
    match e {
        ProposeError::NotLeader => ExecError::NotLeader,
        ProposeError::Transferring(to) => ExecError::Transferring(to),
    }
}

/// What one log entry costs beyond its command's bytes, in memory and on disk
/// (its term, index, record header, allocation), for the snapshot threshold.
pub const ENTRY_COST: usize = 64;

fn lock(applied: &Mutex<Applied>) -> MutexGuard<'_, Applied> {
    applied.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_apply_loop(
    node: &Node,
    applied: &Mutex<Applied>,
    apply: Receiver<ApplyMsg>,
    snapshot_bytes: usize,
) {
    let (id, mut since_snapshot) = (node.id(), 0usize);
    for msg in apply {
        match msg {
            ApplyMsg::Command {
                index,
                term,
                command,
            } => {
                since_snapshot += command.len() + ENTRY_COST;
                node.metrics().proposals_applied.inc();
                let mut state = lock(applied);
                if let (_, Some((waiter, outcome))) = state.apply(index, term, &command) {
                    let _ = waiter.send(outcome);
                }
                if since_snapshot >= snapshot_bytes {
                    let data = state.state_machine().snapshot();
                    drop(state);
                    since_snapshot = 0;
                    node.snapshot(index, data);
                }
            }
            ApplyMsg::Internal { index, term } => {
                since_snapshot += ENTRY_COST;
                if let Some((waiter, outcome)) = lock(applied).skip(index, term) {
                    let _ = waiter.send(outcome);
                }
            }
            ApplyMsg::Read { id, .. } => {
                if let Some((waiter, outcome)) = lock(applied).read(id) {
                    let _ = waiter.send(outcome);
                }
            }
            ApplyMsg::ReadFailed { id } => {
                if let Some((waiter, outcome)) = lock(applied).read_failed(id) {
                    let _ = waiter.send(outcome);
                }
            }
            ApplyMsg::Snapshot(snapshot) => {
                let covered = snapshot.last_included_index;
                let started = Instant::now();
                let restored = lock(applied).restore(covered, &snapshot.data);
                node.metrics()
                    .snapshot_install
                    .observe_duration(started.elapsed());
                match restored {
                    // Proposals the snapshot covers have unknown outcomes.
                    Ok(waiters) => {
                        for waiter in waiters {
                            let _ = waiter.send(Outcome::Unknown);
                        }
                    }
                    Err(e) => {
                        info!(id, 0, "stopping: snapshot at {covered} is corrupt: {e}");
                        node.stop();
                        return;
                    }
                }
                since_snapshot = 0;
                debug!(id, 0, "restored state machine from snapshot at {covered}");
            }
        }
    }
}
