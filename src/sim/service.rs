//! A simulated server's service: the real [`Applier`] applies what Raft
//! committed, and each client's outcome becomes its reply through the
//! replica's own mapping ([`settle`]).
//!
//! `server.rs` steps the server and executes its `Ready`; this file is what
//! the executor's apply effect does there, as the replica's apply loop
//! (`src/service/replica.rs`) does in the threaded runtime: register the
//! requests Raft took before the batch ([`crate::service::admissions`]),
//! apply each message, wake the client waiting on it. The checker sees every
//! entry applied, read answered and snapshot restored.

use super::invariants::{AppliedEntry, Violation};
use super::network::Endpoint;
use super::packets::Body;
use super::server::Waiter;
use super::trace::show;
use super::world::World;
use crate::codec::Decode;
use crate::raft::messages::{Index, NodeId};
use crate::raft::{ApplyMsg, ProposeError};
use crate::service::applier::{Applier, Outcome};
use crate::service::command::Command;
use crate::service::replica::settle;
use crate::service::reply::Reply;
use crate::service::state_machine::Op;

impl World {
    /// Hands one committed entry (or snapshot) to server `node`'s service and
    /// answers the client waiting on it.
    pub(super) fn apply(&mut self, node: usize, msg: ApplyMsg) -> Result<(), Violation> {
        let id = node as NodeId + 1;
        let Some(running) = self.nodes[node].running.as_mut() else {
            return Ok(());
        };
        running.since_snapshot.applied(&msg);
        match msg {
            ApplyMsg::Command {
                index,
                term,
                command,
            } => {
                let op = Op::decode(&command).ok();
                let duplicate = op
                    .as_ref()
                    .is_some_and(|op| running.applier.state_machine().is_duplicate(op));
                let from_before = transfer_source(&op, &running.applier);
                let revision_before = running.applier.state_machine().kv().revision();
                let (reply, woken) = running.applier.apply(index, term, &command);
                let moved =
                    from_before.is_some() && from_before != transfer_source(&op, &running.applier);
                revisions_count_writes(id, index, revision_before, &running.applier)?;
                running.history.record(running.applier.changes());
                self.watchers.on_applied(running.applier.changes());
                if let Some(op) = &op {
                    self.checker.on_apply(
                        node,
                        AppliedEntry {
                            index,
                            term,
                            command: &op.command,
                            bytes: &command,
                            reply: &reply,
                            moved,
                            duplicate,
                        },
                        running.applier.state_machine(),
                    )?;
                    if self.trace.on() {
                        self.trace.node(
                            id,
                            term,
                            format_args!("applied {index}: {} -> {reply}", show(op)),
                        );
                    }
                }
                if let Some((waiter, outcome)) = woken {
                    let (reply, index) = describe_outcome(outcome, index);
                    self.reply_to_client(node, waiter, reply, index);
                }
            }
            ApplyMsg::Internal { index, term } => {
                let woken = running.applier.skip(index, term);
                self.checker.on_skip(node, index, term)?;
                if let Some((waiter, outcome)) = woken {
                    let (reply, index) = describe_outcome(outcome, index);
                    self.reply_to_client(node, waiter, reply, index);
                }
            }
            ApplyMsg::Read { id: read, index } => {
                let Some((waiter, outcome)) = running.applier.read(read) else {
                    return Ok(());
                };
                let applied = running.applier.last_applied();
                if applied < index {
                    return Err(Violation {
                        invariant: "reads_see_their_read_index",
                        rule: "thesis §6.4: serve a read once its read index is applied",
                        evidence: format!(
                            "node {id} answered read {read} at applied index {applied}, below its read index {index}"
                        ),
                    });
                }
                let (reply, _) = describe_outcome(outcome, index);
                self.checker
                    .on_read(node, &reply, applied, running.applier.state_machine())?;
                if self.trace.on() {
                    self.trace.node(
                        id,
                        0,
                        format_args!("read {read} confirmed at read index {index}: {reply}"),
                    );
                }
                self.reply_to_client(node, waiter, reply, Some(applied));
            }
            ApplyMsg::ReadFailed { id: read } => {
                if let Some((waiter, outcome)) = running.applier.read_failed(read) {
                    let (reply, index) = describe_outcome(outcome, 0);
                    self.reply_to_client(node, waiter, reply, index);
                }
            }
            ApplyMsg::Snapshot(snapshot) => {
                let index = snapshot.last_included_index;
                let data = self.nodes[node].disk.read_snapshot(&snapshot);
                let Some(running) = self.nodes[node].running.as_mut() else {
                    return Ok(());
                };
                let covered = data
                    .map_err(|e| e.to_string())
                    .and_then(|data| {
                        running
                            .applier
                            .restore(index, &data)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| Violation {
                        invariant: "snapshot_restores",
                        rule: "§7: a snapshot holds the state machine's state",
                        evidence: format!(
                            "node {id} could not restore its snapshot at {index}: {e}"
                        ),
                    })?;
                // Changes the snapshot skipped are not in the history.
                let revision = running.applier.state_machine().kv().revision();
                running.history.reset(revision);
                self.checker
                    .on_restore(node, index, running.applier.state_machine())?;
                self.trace.node(
                    id,
                    snapshot.last_included_term,
                    format_args!("restored the state machine from the snapshot at {index}"),
                );
                for waiter in covered {
                    let reply = frontend_reply(Some(Ok(Outcome::Unknown)));
                    self.reply_to_client(node, waiter, reply, None);
                }
            }
        }
        Ok(())
    }

    /// Registers the requests server `node`'s Raft has taken since the last
    /// batch, before the next is applied (as the replica's apply loop does);
    /// a proposal whose entry was applied already is answered now.
    pub(super) fn register_admitted(&mut self, node: usize) {
        let Some(running) = self.nodes[node].running.as_mut() else {
            return;
        };
        let mut early = Vec::new();
        let applier = &mut running.applier;
        running
            .admissions
            .register(applier, |waiter, outcome| early.push((waiter, outcome)));
        let applied = running.applier.last_applied();
        for (waiter, outcome) in early {
            let (reply, index) = describe_outcome(outcome, applied);
            self.reply_to_client(node, waiter, reply, index);
        }
    }

    /// Sends server `node`'s `reply` to the client attempt `waiter` waits
    /// for, with the index the request was applied at, if it was.
    pub(super) fn reply_to_client(
        &mut self,
        node: usize,
        waiter: Waiter,
        reply: Reply,
        index: Option<Index>,
    ) {
        let (to, body) = client_reply(waiter, reply, index);
        self.send(Endpoint::Node(node), to, body);
    }
}

/// etcd's data model: an entry that changed keys moves the store revision
/// by exactly one, and every key it changed carries that revision; an entry
/// that changed nothing leaves the revision alone.
fn revisions_count_writes(
    id: NodeId,
    index: Index,
    before: u64,
    applier: &Applier<Waiter>,
) -> Result<(), Violation> {
    let after = applier.state_machine().kv().revision();
    let changes = applier.changes();
    let expected = before + u64::from(!changes.is_empty());
    if after == expected && changes.iter().all(|c| c.revision == after) {
        return Ok(());
    }
    Err(Violation {
        invariant: "revisions_count_writes",
        rule: "one store revision per write (etcd's revisions)",
        evidence: format!(
            "node {id} applied {index}: revision {before} -> {after} with {} changes at {:?}",
            changes.len(),
            changes.iter().map(|c| c.revision).collect::<Vec<_>>()
        ),
    })
}

/// The source account's balance of a transfer, before or after applying it.
fn transfer_source(op: &Option<Op>, applier: &Applier<Waiter>) -> Option<i64> {
    match op.as_ref().map(|o| &o.command) {
        Some(Command::Transfer(t)) => applier.state_machine().ledger().balance_cents(&t.from),
        _ => None,
    }
}

/// The packet that carries `reply` to the client attempt `waiter`.
pub(super) fn client_reply(waiter: Waiter, reply: Reply, index: Option<Index>) -> (Endpoint, Body) {
    (
        Endpoint::Client(waiter.client),
        Body::ClientReply {
            attempt: waiter.attempt,
            reply,
            index,
        },
    )
}

/// The reply a server's frontend sends for `outcome`, and the index it was
/// applied at if it was: the replica's mapping ([`settle`]).
fn describe_outcome(outcome: Outcome, index: Index) -> (Reply, Option<Index>) {
    match settle(Some(Ok(outcome))) {
        Ok(reply) => (reply, Some(index)),
        Err(e) => (e.reply(), None),
    }
}

/// The reply a server's frontend sends for what became of a request (Raft's
/// refusal, an outcome, or `None`: none within the request timeout): the
/// replica's mapping ([`settle`]); the simulated frontend never forwards.
pub(super) fn frontend_reply(answer: Option<Result<Outcome, ProposeError>>) -> Reply {
    settle(answer).unwrap_or_else(|e| e.reply())
}
