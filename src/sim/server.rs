//! A simulated server: the real core and the real service, executing each `Ready`.
//!
//! A server handles one event the way the threaded runtime (`src/node/`)
//! handles a batch: feed the core, take its `Ready`, then **persist → send →
//! apply**. A pending crash strikes in the middle of the save (a torn save),
//! between saving and sending, between sending and applying, or at the latest
//! when the step ends. Clients are answered as `src/service/frontend.rs` does:
//! a follower says `ERR NO_LEADER`, a leader proposes and waits for the entry's
//! outcome through the shared [`Applier`].

use super::disk::SimDisk;
use super::faults::CrashPoint;
use super::invariants::{AppliedEntry, Violation};
use super::knobs::{stream_seed, Stream};
use super::network::Endpoint;
use super::packets::{Body, Packet};
use super::trace::{show, show_persist, show_request};
use super::world::{Event, World};
use super::{format_time, Time, MS};
use crate::codec::{Decode, Encode};
use crate::raft::messages::{Index, NodeId, Request, Response};
use crate::raft::ready::Outbound;
use crate::raft::{ApplyMsg, Bug, Config, MembershipChange, Raft, Status};
use crate::service::applier::{Applier, Outcome};
use crate::service::command::Command;
use crate::service::state_machine::Op;

/// The runtime's tick (NOTES.md: 10 ms).
pub(super) const TICK: Time = 10 * MS;
/// Most ticks a server catches up on after a pause (as `src/node/` does).
const MAX_CATCH_UP_TICKS: u64 = 5;

/// Whom a proposal's outcome goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Waiter {
    pub(super) client: usize,
    pub(super) attempt: u64,
}

/// A running server: the real core and the real service.
pub(super) struct Running {
    pub(super) raft: Raft,
    pub(super) applier: Applier<Waiter>,
    pub(super) since_snapshot: u64,
    /// The last ReadIndex read id this server handed out.
    pub(super) next_read: u64,
}

/// A server slot: its disk survives crashes; the rest does not.
pub(super) struct SimNode {
    /// The server exists: one of the first, or one the leader was asked to add.
    pub(super) born: bool,
    /// Its removal is committed: it is stopped for good.
    pub(super) retired: bool,
    /// The leader was asked to remove it (the request may not commit).
    pub(super) removal_requested: bool,
    pub(super) disk: SimDisk,
    pub(super) running: Option<Running>,
    pub(super) incarnation: u32,
    pub(super) restarted_at: Time,
    pub(super) paused_since: Option<Time>,
    /// Packets that arrived while paused, handled on resume.
    pub(super) inbox: Vec<Packet>,
    pub(super) tick_every: Time,
    /// A crash waiting to strike at this point of the next step.
    pub(super) crash_point: Option<CrashPoint>,
    /// If no step reaches the crash point by then, the crash strikes anyway.
    pub(super) crash_by: Time,
    pub(super) down_for: Time,
}

/// What one step of a server is fed.
pub(super) enum StepInput {
    Tick,
    Transfer {
        target: NodeId,
    },
    Membership(MembershipChange),
    Request {
        from: usize,
        request: Request,
        requester_incarnation: u32,
    },
    Response {
        from: usize,
        request: Request,
        response: Response,
    },
    Client {
        client: usize,
        attempt: u64,
        op: Op,
    },
}

/// Whether a step ended with the server crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Crashed {
    Yes,
    No,
}

impl World {
    /// Starts (or restarts) server `node` from its disk.
    pub(super) fn start(&mut self, node: usize) -> Result<(), Violation> {
        self.nodes[node].disk.repair();
        let initial = self.nodes[node].disk.load();
        self.checker.on_start(node, &initial)?;
        let id = node as NodeId + 1;
        // The first servers bootstrap the cluster; later ones start empty and
        // wait to be added (thesis §4).
        let peers = if node < self.knobs.nodes {
            (1..=self.knobs.nodes as NodeId).collect()
        } else {
            Vec::new()
        };
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.restarted_at = self.now;
        n.tick_every = TICK;
        n.paused_since = None;
        let mut config = Config::new(id, peers);
        config.seed = stream_seed(self.seed, Stream::Node(node, n.incarnation));
        config.pre_vote = self.knobs.pre_vote;
        config.check_quorum = self.knobs.check_quorum;
        config.noop_on_election = self.knobs.noop_on_election;
        config.snapshot_chunk_bytes = self.knobs.snapshot_chunk_bytes;
        config.max_inflight_messages = self.knobs.max_inflight_messages;
        config.bug = self.options.bug;
        self.trace.node(
            id,
            initial.hard_state.current_term,
            format_args!(
                "started: snapshot through {}, {} log entries after it",
                initial.snapshot.last_included_index,
                initial.entries.len()
            ),
        );
        n.running = Some(Running {
            raft: Raft::new(config, initial),
            applier: Applier::default(),
            since_snapshot: 0,
            next_read: 0,
        });
        let incarnation = n.incarnation;
        self.schedule(TICK, Event::Tick { node, incarnation });
        // A restored snapshot is applied at once, as the runtime's first Ready does.
        self.step(node, None)
    }

    pub(super) fn on_tick(&mut self, node: usize, incarnation: u32) -> Result<(), Violation> {
        if !self.is_current(node, incarnation) || self.nodes[node].paused_since.is_some() {
            return Ok(()); // the tick chain resumes with the server
        }
        let every = self.nodes[node].tick_every;
        self.schedule(every, Event::Tick { node, incarnation });
        self.step(node, Some(StepInput::Tick))?;
        self.retire_removed(node);
        Ok(())
    }

    pub(super) fn resume(&mut self, node: usize) -> Result<(), Violation> {
        let Some(since) = self.nodes[node].paused_since.take() else {
            return Ok(());
        };
        let id = node as NodeId + 1;
        self.trace.sim(
            "sim",
            format_args!(
                "FAULT node {id}'s clock runs again after {}",
                format_time(self.now - since)
            ),
        );
        for packet in std::mem::take(&mut self.nodes[node].inbox) {
            self.deliver(packet)?;
            if self.nodes[node].running.is_none() {
                return Ok(());
            }
        }
        let missed = ((self.now - since) / self.nodes[node].tick_every).min(MAX_CATCH_UP_TICKS);
        for _ in 0..missed {
            self.step(node, Some(StepInput::Tick))?;
            if self.nodes[node].running.is_none() {
                return Ok(());
            }
        }
        let (every, incarnation) = (self.nodes[node].tick_every, self.nodes[node].incarnation);
        self.schedule(every, Event::Tick { node, incarnation });
        Ok(())
    }

    /// Feeds `input` to server `node`'s core, then executes its `Ready`.
    pub(super) fn step(&mut self, node: usize, input: Option<StepInput>) -> Result<(), Violation> {
        let id = node as NodeId + 1;
        let Some(running) = self.nodes[node].running.as_mut() else {
            return Ok(());
        };
        let before = running.raft.status();
        let mut outgoing: Vec<(Endpoint, Body)> = Vec::new();
        match input {
            None => {}
            Some(StepInput::Tick) => running.raft.tick(),
            Some(StepInput::Membership(change)) => {
                if let Err(refused) = running.raft.change_membership(change.clone()) {
                    self.trace.node(
                        id,
                        before.term,
                        format_args!("refused to {change}: {refused}"),
                    );
                }
            }
            Some(StepInput::Transfer { target }) => {
                if let Err(refused) = running.raft.transfer_leadership(target) {
                    self.trace.node(
                        id,
                        before.term,
                        format_args!("refused to transfer leadership to {target}: {refused}"),
                    );
                }
            }
            Some(StepInput::Request {
                from,
                request,
                requester_incarnation,
            }) => {
                let response = running
                    .raft
                    .handle_request(from as NodeId + 1, request.clone());
                outgoing.push((
                    Endpoint::Node(from),
                    Body::Response {
                        request,
                        response,
                        requester_incarnation,
                    },
                ));
            }
            Some(StepInput::Response {
                from,
                request,
                response,
            }) => running
                .raft
                .handle_response(from as NodeId + 1, &request, response),
            Some(StepInput::Client {
                client,
                attempt,
                op,
            }) => {
                let waiter = Waiter { client, attempt };
                if op.command.is_read() && self.knobs.noop_on_election {
                    // Thesis §6.4: a read is not proposed; Raft confirms it.
                    running.next_read += 1;
                    let read = running.next_read;
                    running.applier.wait_read(read, op.command.clone(), waiter);
                    if let Err(refused) = running.raft.read_index(read) {
                        running.applier.cancel_read(read);
                        let reply = format!("ERR NO_LEADER {refused}; retry");
                        outgoing.push(client_reply(waiter, reply, None));
                        return self.finish_step(node, before, outgoing);
                    }
                    self.schedule_request_timeout(node, waiter);
                    return self.finish_step(node, before, outgoing);
                }
                let (index, term) = match running.raft.propose(op.encode()) {
                    Ok(proposed) => proposed,
                    Err(refused) => {
                        let reply = format!("ERR NO_LEADER {refused}; retry");
                        outgoing.push(client_reply(waiter, reply, None));
                        return self.finish_step(node, before, outgoing);
                    }
                };
                let early = running.applier.wait_for(index, term, waiter);
                if self.trace.on() {
                    let what = show(&op);
                    self.trace.node(
                        id,
                        term,
                        format_args!("proposed {what} at {index} for client {client}"),
                    );
                }
                match early {
                    Some(outcome) => {
                        let (reply, index) = describe_outcome(outcome, index);
                        outgoing.push(client_reply(waiter, reply, index));
                    }
                    None => self.schedule_request_timeout(node, waiter),
                }
            }
        }
        self.finish_step(node, before, outgoing)
    }

    /// A server holds a request at most the request timeout, then answers
    /// `ERR TIMEOUT` (as `src/service/frontend.rs` does).
    fn schedule_request_timeout(&mut self, node: usize, waiter: Waiter) {
        let incarnation = self.nodes[node].incarnation;
        let timeout = self.knobs.request_timeout;
        let event = Event::RequestTimeout {
            node,
            incarnation,
            waiter,
        };
        self.schedule(timeout, event);
    }

    /// Executes the step's `Ready`; a crash scheduled for this step strikes at
    /// the latest when it ends.
    pub(super) fn finish_step(
        &mut self,
        node: usize,
        before: Status,
        outgoing: Vec<(Endpoint, Body)>,
    ) -> Result<(), Violation> {
        let crashed = self.execute_ready(node, before, outgoing)?;
        let n = &self.nodes[node];
        if crashed == Crashed::No && n.crash_point.is_some() && self.now >= n.crash_by {
            self.trace.sim(
                "sim",
                format_args!("FAULT node {} crashed at the end of a step", node + 1),
            );
            self.crash(node);
        }
        Ok(())
    }

    /// Persist, then send, then apply: the order `Ready` demands (src/raft/ready.rs).
    pub(super) fn execute_ready(
        &mut self,
        node: usize,
        mut before: Status,
        mut outgoing: Vec<(Endpoint, Body)>,
    ) -> Result<Crashed, Violation> {
        let id = node as NodeId + 1;
        // A durable write can let the leader commit (§10.2.1), and a snapshot
        // makes a save of its own: loop until the core has nothing to do.
        loop {
            let Some(running) = self.nodes[node].running.as_mut() else {
                return Ok(Crashed::Yes);
            };
            let ready = running.raft.ready();
            let after = running.raft.status();
            self.checker
                .on_step(node, &before, &after, &ready.persist)?;
            if ready.is_empty() && outgoing.is_empty() {
                return Ok(Crashed::No);
            }
            let crash_point = self.nodes[node].crash_point;
            let mut requests = Some(ready.messages);
            if ready.send_first {
                // Thesis §10.2.1: followers write while the leader does.
                self.send_requests(node, after.term, requests.take());
            }

            // 1. Persist.
            if !ready.persist.is_empty() {
                if crash_point == Some(CrashPoint::DuringPersist) {
                    let what = self.nodes[node]
                        .disk
                        .save_torn(&ready.persist, &mut self.disk_rng)
                        .map_err(|e| storage_violation(id, e))?;
                    self.trace.sim(
                        "sim",
                        format_args!("FAULT node {id} crashed in the middle of a save ({what} reached the disk)"),
                    );
                    self.crash(node);
                    return Ok(Crashed::Yes);
                }
                if let Some(CrashPoint::DiskFails { full }) = crash_point {
                    let what = self.nodes[node]
                        .disk
                        .save_failing(&ready.persist, &mut self.disk_rng)
                        .map_err(|e| storage_violation(id, e))?;
                    let error = if full { "ENOSPC" } else { "EIO" };
                    if self.options.bug != Some(Bug::IgnoreFailedSave) {
                        // Fail-stop (src/node/failure.rs): stop, acknowledge nothing.
                        self.trace.sim(
                            "sim",
                            format_args!("FAULT node {id}'s disk failed in the middle of a save ({error}; {what} reached the disk): it stops"),
                        );
                        self.crash(node);
                        return Ok(Crashed::Yes);
                    }
                    self.trace.sim(
                        "sim",
                        format_args!("FAULT node {id}'s disk failed in the middle of a save ({error}; {what} reached the disk), and it carries on (bug)"),
                    );
                    self.nodes[node].crash_point = None;
                } else if !self.nodes[node].disk.has_failed() {
                    // (A disk that failed writes nothing more; only a runtime
                    // that ignores failures gets here with one.)
                    self.nodes[node]
                        .disk
                        .save(&ready.persist)
                        .map_err(|e| storage_violation(id, e))?;
                }
                self.checker.on_saved(node)?;
                if self.trace.on() {
                    self.trace.node(
                        id,
                        after.term,
                        format_args!("persisted {}", show_persist(&ready.persist)),
                    );
                }
                let last = ready.persist.log.as_ref().and_then(|w| w.last());
                if let (Some((index, term)), Some(running)) =
                    (last, self.nodes[node].running.as_mut())
                {
                    running.raft.persisted(index, term);
                }
            }

            // 2. Send (replies to the RPCs just handled, then the core's requests).
            let sends = !outgoing.is_empty() || requests.as_ref().is_some_and(|r| !r.is_empty());
            if sends && crash_point == Some(CrashPoint::BeforeSend) {
                self.trace.sim(
                    "sim",
                    format_args!("FAULT node {id} crashed after saving, before sending"),
                );
                self.crash(node);
                return Ok(Crashed::Yes);
            }
            for (to, body) in outgoing.drain(..) {
                if let Body::Response {
                    request: Request::RequestVote(args),
                    response: Response::RequestVote(reply),
                    ..
                } = &body
                {
                    if reply.vote_granted && !args.pre_vote {
                        self.checker
                            .on_vote_granted(node, reply.term, args.candidate_id)?;
                    }
                }
                self.send(Endpoint::Node(node), to, body);
            }
            self.send_requests(node, after.term, requests);

            // 3. Apply.
            if !ready.apply.is_empty() {
                if crash_point == Some(CrashPoint::BeforeApply) {
                    self.trace.sim(
                        "sim",
                        format_args!("FAULT node {id} crashed after sending, before applying"),
                    );
                    self.crash(node);
                    return Ok(Crashed::Yes);
                }
                for msg in ready.apply {
                    self.apply(node, msg)?;
                }
            }

            // The service snapshots once enough entries were applied (src/service/replica.rs).
            let Some(running) = self.nodes[node].running.as_mut() else {
                return Ok(Crashed::Yes);
            };
            before = running.raft.status();
            let threshold = self.knobs.snapshot_entries;
            if threshold > 0 && running.since_snapshot >= threshold {
                running.since_snapshot = 0;
                let index = running.applier.last_applied();
                let data = running.applier.state_machine().snapshot();
                if let Some(point) = running.raft.snapshot_point(index) {
                    // As the replica's snapshot thread: bytes to storage first.
                    let written = self.nodes[node].disk.write_snapshot(point, &data);
                    if let (Ok(snapshot), Some(running)) =
                        (written, self.nodes[node].running.as_mut())
                    {
                        running.raft.snapshot(snapshot);
                    }
                }
            }
        }
    }

    /// Sends the core's requests from server `node` (in `term`, for the trace).
    /// A snapshot piece gets its bytes from the server's disk first, as the
    /// runtime's senders do (src/node/sender.rs).
    fn send_requests(&mut self, node: usize, term: u64, requests: Option<Vec<Outbound>>) {
        let id = node as NodeId + 1;
        let incarnation = self.nodes[node].incarnation;
        for mut message in requests.into_iter().flatten() {
            if let Request::InstallSnapshot(args) = &mut message.request {
                let chunk = self.knobs.snapshot_chunk_bytes;
                match self.nodes[node].disk.read_chunk(args, chunk) {
                    Some(data) => args.data = data,
                    None => continue, // the snapshot is gone: a lost message
                }
            }
            if self.trace.on() {
                self.trace.node(
                    id,
                    term,
                    format_args!("-> {} {}", message.to, show_request(&message.request)),
                );
            }
            let to = Endpoint::Node((message.to - 1) as usize);
            let body = Body::Request {
                request: message.request,
                requester_incarnation: incarnation,
            };
            self.send(Endpoint::Node(node), to, body);
        }
    }

    /// Hands one committed entry (or snapshot) to server `node`'s service and
    /// answers the client waiting on it.
    pub(super) fn apply(&mut self, node: usize, msg: ApplyMsg) -> Result<(), Violation> {
        let id = node as NodeId + 1;
        let Some(running) = self.nodes[node].running.as_mut() else {
            return Ok(());
        };
        match msg {
            ApplyMsg::Command {
                index,
                term,
                command,
            } => {
                running.since_snapshot += 1;
                let op = Op::decode(&command).ok();
                let duplicate = op
                    .as_ref()
                    .is_some_and(|op| running.applier.state_machine().is_duplicate(op));
                let from_before = transfer_source(&op, &running.applier);
                let (reply, woken) = running.applier.apply(index, term, &command);
                let moved =
                    from_before.is_some() && from_before != transfer_source(&op, &running.applier);
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
                running.since_snapshot += 1;
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
                running.since_snapshot = 0;
                self.checker
                    .on_restore(node, index, running.applier.state_machine())?;
                self.trace.node(
                    id,
                    snapshot.last_included_term,
                    format_args!("restored the state machine from the snapshot at {index}"),
                );
                for waiter in covered {
                    let reply = "ERR TIMEOUT outcome unknown".to_string();
                    self.reply_to_client(node, waiter, reply, None);
                }
            }
        }
        Ok(())
    }

    pub(super) fn reply_to_client(
        &mut self,
        node: usize,
        waiter: Waiter,
        reply: String,
        index: Option<Index>,
    ) {
        let (to, body) = client_reply(waiter, reply, index);
        self.send(Endpoint::Node(node), to, body);
    }
}

/// The source account's balance of a transfer, before or after applying it.
fn transfer_source(op: &Option<Op>, applier: &Applier<Waiter>) -> Option<i64> {
    match op.as_ref().map(|o| &o.command) {
        Some(Command::Transfer(t)) => applier.state_machine().ledger().balance_cents(&t.from),
        _ => None,
    }
}

fn client_reply(waiter: Waiter, reply: String, index: Option<Index>) -> (Endpoint, Body) {
    (
        Endpoint::Client(waiter.client),
        Body::ClientReply {
            attempt: waiter.attempt,
            reply,
            index,
        },
    )
}

/// The reply line a server's frontend sends for `outcome` (src/service/frontend.rs).
fn describe_outcome(outcome: Outcome, index: Index) -> (String, Option<Index>) {
    match outcome {
        Outcome::Reply(reply) => (reply, Some(index)),
        Outcome::Replaced => ("ERR NO_LEADER not the leader; retry".into(), None),
        Outcome::Unknown => ("ERR TIMEOUT outcome unknown".into(), None),
    }
}

fn storage_violation(id: NodeId, why: String) -> Violation {
    Violation {
        invariant: "storage_contract",
        rule: "Persist: a log write continues the stored log",
        evidence: format!("node {id}'s disk refused a save: {why}"),
    }
}
