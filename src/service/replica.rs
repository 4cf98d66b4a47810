//! A replica: one server's state machine kept in step with its Raft node.
//!
//! [`Replica::execute`] proposes an operation and waits until it is applied at
//! the index Raft assigned; the apply loop (the thread that consumes the node's
//! apply channel) applies every committed entry to the [`StateMachine`], wakes
//! the waiting request, and snapshots once the log has grown past a threshold.
//!
//! Linearizability: every command, reads included, goes through the log, so a
//! reply reflects exactly the operations committed before it. A deposed leader
//! cannot answer: its proposal either never commits or is replaced, and the
//! waiter learns that from the entry applied at its index.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::state_machine::{Op, StateMachine};
use crate::codec::{Decode, Encode};
use crate::node::Node;
use crate::raft::messages::{Index, Term};
use crate::raft::ApplyMsg;
use crate::{debug, info};

/// Why an operation has no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// This server is not the leader (or lost leadership and the entry was
    /// replaced): the operation was not applied. Safe to retry elsewhere.
    NotLeader,
    /// No outcome within the deadline: it may or may not have been applied.
    Timeout,
}

enum Outcome {
    Reply(String),
    Replaced,
}

struct Applied {
    sm: StateMachine,
    /// Proposals waiting for their index to be applied, with the term they were
    /// proposed in.
    waiters: HashMap<Index, (Term, Sender<Outcome>)>,
    last_applied: Index,
    /// Outcomes of the last few applied entries, for a proposal whose entry was
    /// applied before its waiter could be registered.
    recent: VecDeque<(Index, Term, String)>,
}

/// How many applied outcomes `Applied::recent` keeps.
const RECENT_OUTCOMES: usize = 4096;

/// The replicated service on one server.
pub struct Replica {
    node: Arc<Node>,
    applied: Arc<Mutex<Applied>>,
    apply_loop: Mutex<Option<JoinHandle<()>>>,
}

impl Replica {
    /// Starts applying what `node` delivers on `apply`, snapshotting whenever
    /// more than `snapshot_bytes` of commands were applied since the last one.
    pub fn start(node: Arc<Node>, apply: Receiver<ApplyMsg>, snapshot_bytes: usize) -> Replica {
        let applied = Arc::new(Mutex::new(Applied {
            sm: StateMachine::default(),
            waiters: HashMap::new(),
            last_applied: 0,
            recent: VecDeque::with_capacity(RECENT_OUTCOMES),
        }));
        let (loop_node, loop_applied) = (Arc::clone(&node), Arc::clone(&applied));
        let apply_loop = thread::Builder::new()
            .name(format!("service-{}", node.id()))
            .spawn(move || run_apply_loop(&loop_node, &loop_applied, apply, snapshot_bytes))
            .ok();
        Replica {
            node,
            applied,
            apply_loop: Mutex::new(apply_loop),
        }
    }

    /// The Raft node underneath.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Proposes `op` and waits up to `timeout` for its reply.
    pub fn execute(&self, op: &Op, timeout: Duration) -> Result<String, ExecError> {
        let (index, term) = self.node.start(op.encode()).ok_or(ExecError::NotLeader)?;
        let rx = {
            let mut applied = lock(&self.applied);
            if index <= applied.last_applied {
                // Applied before we got here: the outcome is in the recent ring,
                // unless a snapshot skipped over it (then it is unknown).
                let outcome = applied.recent.iter().rev().find(|(i, ..)| *i == index);
                return match outcome {
                    Some((_, t, reply)) if *t == term => Ok(reply.clone()),
                    Some(_) => Err(ExecError::NotLeader),
                    None => Err(ExecError::Timeout),
                };
            }
            let (tx, rx) = mpsc::channel();
            applied.waiters.insert(index, (term, tx));
            rx
        };
        match rx.recv_timeout(timeout) {
            Ok(Outcome::Reply(reply)) => Ok(reply),
            Ok(Outcome::Replaced) => Err(ExecError::NotLeader),
            Err(_) => Err(ExecError::Timeout),
        }
    }

    /// The index applied last and the state machine's encoding at that point
    /// (for comparing replicas).
    pub fn applied_state(&self) -> (Index, Vec<u8>) {
        let applied = lock(&self.applied);
        (applied.last_applied, applied.sm.snapshot())
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
                since_snapshot += command.len();
                let mut state = lock(applied);
                let reply = match Op::decode(&command) {
                    Ok(op) => state.sm.apply(&op),
                    Err(e) => format!("ERR BAD_REQUEST undecodable entry: {e}"),
                };
                state.last_applied = index;
                if state.recent.len() == RECENT_OUTCOMES {
                    state.recent.pop_front();
                }
                state.recent.push_back((index, term, reply.clone()));
                if let Some((waiter_term, waiter)) = state.waiters.remove(&index) {
                    // Another leader's entry took this index: ours was never applied.
                    let outcome = if waiter_term == term {
                        Outcome::Reply(reply)
                    } else {
                        Outcome::Replaced
                    };
                    let _ = waiter.send(outcome);
                }
                if since_snapshot >= snapshot_bytes {
                    let data = state.sm.snapshot();
                    drop(state);
                    since_snapshot = 0;
                    node.snapshot(index, data);
                }
            }
            ApplyMsg::Snapshot(snapshot) => {
                let mut state = lock(applied);
                match StateMachine::restore(&snapshot.data) {
                    Ok(sm) => state.sm = sm,
                    Err(e) => {
                        info!(
                            id,
                            0,
                            "stopping: snapshot at {} is corrupt: {e}",
                            snapshot.last_included_index
                        );
                        drop(state);
                        node.stop();
                        return;
                    }
                }
                state.last_applied = snapshot.last_included_index;
                state.recent.clear();
                // Proposals the snapshot covers have unknown outcomes; their
                // waiters time out.
                let covered = snapshot.last_included_index;
                state.waiters.retain(|&i, _| i > covered);
                since_snapshot = 0;
                debug!(id, 0, "restored state machine from snapshot at {covered}");
            }
        }
    }
}
