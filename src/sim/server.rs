//! A simulated server: the real core, the real executor and the real service.
//!
//! A server handles one event the way the threaded runtime (`src/node/`)
//! handles a batch: feed the core, then run the executor the runtime runs
//! (`src/raft/executor.rs`: **persist → release replies → send → apply**) with
//! the simulator's effects (`ServerEffects`): the simulated disk, network and
//! service, and the checker's hooks (every step, save and message sent). A
//! pending crash strikes in the middle of the save (a torn save), between
//! saving and sending, between sending and applying, right after a step that
//! changed the server's term (once it answered), or at the latest when the
//! step ends; each halts the execution.
//! A disk that fails in the middle of a save (ENOSPC, EIO) leaves a torn save
//! and refuses it; the executor's rule then stops the server (fail-stop), and
//! it restarts later from its disk.
//!
//! The rest of a server is the runtime's code too, where it is plain code:
//! requests to peers go through the runtime's queue per peer (`senders.rs`);
//! a proposal numbered or a read admitted is registered with the
//! [`Applier`] before the batch that settles it
//! ([`crate::service::admissions`]); the service snapshots when the
//! service's [`crate::service::snapshot_policy::SnapshotPolicy`] says so; and
//! a client's outcome becomes its reply through the replica's
//! [`crate::service::replica::settle`] (`service.rs` applies and answers). A
//! follower answers a client `ERR NO_LEADER` (the frontend would forward
//! it).

use std::collections::BTreeMap;
use std::io;

use super::disk::SimDisk;
use super::faults::CrashPoint;
use super::invariants::Violation;
use super::knobs::{stream_seed, Stream};
use super::network::Endpoint;
use super::packets::{Body, Packet};
use super::senders::SimSender;
use super::service::{client_reply, frontend_reply};
use super::trace::{show, show_persist};
use super::watchers::SIM_HISTORY_BYTES;
use super::world::{Event, World};
use super::{format_time, Time, MS};
use crate::codec::Encode;
use crate::events::watch::Watch;
use crate::events::{Action, Actor, Intervention, Persisted, What};
use crate::raft::executor::{self, Effects};
use crate::raft::messages::{NodeId, Request, Response};
use crate::raft::ready::{Outbound, Persist, Ready};
use crate::raft::{ApplyMsg, Config, MembershipChange, Raft, Status};
use crate::service::admissions::{Admissions, Admitted};
use crate::service::applier::Applier;
use crate::service::history::History;
use crate::service::snapshot_policy::LogSinceSnapshot;
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
    /// Requests Raft has taken, registered before the next batch is applied.
    pub(super) admissions: Admissions<Waiter>,
    /// The log applied since the last snapshot, and the last one's size.
    pub(super) since_snapshot: LogSinceSnapshot,
    pub(super) last_snapshot_bytes: u64,
    /// The last ReadIndex read id this server handed out.
    pub(super) next_read: u64,
    /// What the recorded events last said of the core.
    pub(super) watch: Watch,
    /// The watch history of what it applied (`watchers.rs`).
    pub(super) history: History,
    /// One sender per peer this server has sent to.
    pub(super) senders: BTreeMap<NodeId, SimSender>,
    /// The last call number a sender used.
    pub(super) next_call: u64,
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
        call: u64,
        msg: u64,
    },
    Response {
        from: usize,
        request: Request,
        response: Response,
        call: u64,
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
            admissions: Admissions::default(),
            since_snapshot: LogSinceSnapshot::default(),
            last_snapshot_bytes: 0,
            next_read: 0,
            watch: Watch::default(),
            history: History::new(0, SIM_HISTORY_BYTES),
            senders: BTreeMap::new(),
            next_call: 0,
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
        self.record_fault(Intervention::on(Actor::Simulator, Action::Resume, &[id]));
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
                call,
                msg,
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
                        call,
                        msg,
                        verdict: running.raft.last_verdict(),
                    },
                ));
            }
            Some(StepInput::Response {
                from,
                request,
                response,
                call,
            }) => {
                // The sender's call ends first (its worker takes the next
                // request), then the core handles the answer.
                let from = from as NodeId + 1;
                self.call_answered(node, from, call, &response)?;
                let Some(running) = self.nodes[node].running.as_mut() else {
                    return Ok(());
                };
                running.raft.handle_response(from, &request, response);
            }
            Some(StepInput::Client {
                client,
                attempt,
                op,
            }) => {
                let waiter = Waiter { client, attempt };
                let admitted = if op.command.is_read() && self.knobs.noop_on_election {
                    // Thesis §6.4: a read is not proposed; Raft confirms it.
                    running.next_read += 1;
                    let read = running.next_read;
                    running.raft.read_index(read).map(|()| Admitted::Read {
                        id: read,
                        command: op.command,
                        waiter,
                    })
                } else {
                    let proposed = running.raft.propose(op.encode());
                    if let (Ok((index, term)), true) = (proposed, self.trace.on()) {
                        let what = show(&op);
                        let why = format_args!("proposed {what} at {index} for client {client}");
                        self.trace.node(id, term, why);
                    }
                    proposed.map(|(index, term)| Admitted::Proposal {
                        index,
                        term,
                        waiter,
                    })
                };
                match admitted {
                    Ok(admitted) => {
                        running.admissions.admit(admitted);
                        self.schedule_request_timeout(node, waiter);
                    }
                    Err(refused) => {
                        let reply = frontend_reply(Some(Err(refused)));
                        outgoing.push(client_reply(waiter, reply, None));
                    }
                }
            }
        }
        self.finish_step(node, before, outgoing)
    }

    /// A server holds a request at most the request timeout, then answers
    /// that its outcome is unknown (as the replica does).
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

    /// Executes server `node`'s output with the executor the runtime runs
    /// (src/raft/executor.rs), through the simulator's effects: `outgoing`
    /// holds the replies to what the step handled.
    pub(super) fn execute_ready(
        &mut self,
        node: usize,
        before: Status,
        outgoing: Vec<(Endpoint, Body)>,
    ) -> Result<Crashed, Violation> {
        if self.nodes[node].running.is_none() {
            return Ok(Crashed::Yes);
        }
        let crash_point = self.nodes[node].crash_point;
        let term = before.term;
        let mut effects = ServerEffects {
            world: self,
            node,
            before,
            term,
            outgoing,
            crash_point,
            send_first: false,
            term_changed: false,
        };
        match executor::execute(&mut effects) {
            Ok(()) => Ok(Crashed::No),
            Err(Halt::Crashed) => Ok(Crashed::Yes),
            Err(Halt::Violation(violation)) => Err(violation),
        }
    }
}

/// Why a simulated server's execution stopped early.
enum Halt {
    /// A crash point struck: the server is down, its disk as the crash left it.
    Crashed,
    /// The checker found a property broken.
    Violation(Violation),
}

impl From<Violation> for Halt {
    fn from(violation: Violation) -> Self {
        Halt::Violation(violation)
    }
}

/// A simulated server's effects: its [`SimDisk`] (with a torn save when a
/// crash strikes during it), the simulated network, the service applied within
/// the step, a crash before sending, before applying or right after a change
/// of term, and the checker's hooks on everything the executor does.
struct ServerEffects<'w> {
    world: &'w mut World,
    node: usize,
    /// The core's status before the `Ready` in hand (for the checker).
    before: Status,
    /// The core's term as of the `Ready` in hand (for the trace).
    term: u64,
    /// Replies to what the step handled (peers' RPCs, clients' requests),
    /// held until the executor releases them.
    outgoing: Vec<(Endpoint, Body)>,
    crash_point: Option<CrashPoint>,
    /// The `Ready` in hand sends before its save (thesis §10.2.1): a crash
    /// "before sending" strikes after the save, so not at that send.
    send_first: bool,
    /// The `Ready` in hand follows a change of the server's term.
    term_changed: bool,
}

impl ServerEffects<'_> {
    fn id(&self) -> NodeId {
        self.node as NodeId + 1
    }

    /// Crashes the server if its pending crash is due at `point`.
    fn maybe_crash(&mut self, point: CrashPoint, what: &str) -> Result<(), Halt> {
        if self.crash_point != Some(point) {
            return Ok(());
        }
        let id = self.id();
        self.world
            .trace
            .sim("sim", format_args!("FAULT node {id} crashed {what}"));
        self.world.crash(self.node);
        Err(Halt::Crashed)
    }

    /// A crash waiting for a change of term strikes once the step that
    /// changed it has answered and sent (Figure 2: what it said in the new
    /// term must survive).
    fn maybe_crash_after_term_change(&mut self) -> Result<(), Halt> {
        if !self.term_changed {
            return Ok(());
        }
        let what = "right after changing term, once it answered";
        self.maybe_crash(CrashPoint::AfterTermChange, what)
    }
}

impl Effects for ServerEffects<'_> {
    type Halt = Halt;

    fn core(&mut self) -> &mut Raft {
        // Every effect that stops the server halts the execution, and the
        // executor asks for the core only while it runs.
        let running = self.world.nodes[self.node].running.as_mut();
        &mut running.expect("a halted execution asks nothing more").raft
    }

    /// The checker sees every step's status, `Persist` and (for a leader)
    /// progress.
    fn inspect(&mut self, ready: &Ready) -> Result<(), Halt> {
        let world = &mut *self.world;
        let tick = world.nodes[self.node].tick_every;
        if let Some(running) = world.nodes[self.node].running.as_mut() {
            running
                .watch
                .observe(&running.raft, tick, &mut world.events);
        }
        let after = self.core().status();
        self.term = after.term;
        self.term_changed = after.term > self.before.term;
        self.send_first = ready.send_first;
        let persist = &ready.persist;
        let node = self.node;
        let world = &mut *self.world;
        world.checker.on_step(node, &self.before, &after, persist)?;
        if let Some(running) = world.nodes[node].running.as_ref() {
            world
                .checker
                .on_progress(node, &after, running.raft.progress())?;
        }
        Ok(())
    }

    fn holds_replies(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Saves to the server's disk. A crash due in the middle of the save
    /// leaves a torn save and halts; a disk that fails there leaves a torn
    /// save and refuses it (ENOSPC or EIO), as does a disk that failed
    /// earlier: the executor decides what follows (fail-stop).
    fn persist(&mut self, persist: &Persist) -> Result<io::Result<()>, Halt> {
        let (node, id) = (self.node, self.id());
        let world = &mut *self.world;
        match self.crash_point {
            Some(CrashPoint::DuringPersist) => {
                let what = world.nodes[node]
                    .disk
                    .save_torn(persist, &mut world.disk_rng)
                    .map_err(|e| storage_violation(id, e))?;
                let what = format!("in the middle of a save ({what} reached the disk)");
                return self.maybe_crash(CrashPoint::DuringPersist, &what).map(Ok);
            }
            Some(CrashPoint::DiskFails { full }) => {
                let what = world.nodes[node]
                    .disk
                    .save_failing(persist, &mut world.disk_rng)
                    .map_err(|e| storage_violation(id, e))?;
                // The fault has struck; the server's fate is the executor's rule.
                world.nodes[node].crash_point = None;
                self.crash_point = None;
                let error = disk_error(full);
                world.trace.sim(
                    "sim",
                    format_args!(
                        "FAULT node {id}'s disk failed in the middle of a save ({error}; {what} \
                         reached the disk)"
                    ),
                );
                return Ok(Err(error));
            }
            _ => {}
        }
        if world.nodes[node].disk.has_failed() {
            // Only a server that ignores a failed save gets here.
            return Ok(Err(io::Error::other("the disk failed earlier")));
        }
        world.nodes[node]
            .disk
            .save(persist)
            .map_err(|e| storage_violation(id, e))?;
        world.checker.on_saved(node, persist)?;
        if world.recording() {
            world.record(node, What::Persist(Persisted::of(persist, 0)));
        }
        if world.trace.on() {
            let what = show_persist(persist);
            world
                .trace
                .node(id, self.term, format_args!("persisted {what}"));
        }
        Ok(Ok(()))
    }

    /// Fail-stop, as the runtime's `node/failure.rs`: the server stops,
    /// acknowledging nothing, and restarts later from its disk (the operator
    /// made room, or replaced the disk).
    fn fail_stop(&mut self, error: io::Error) -> Halt {
        let id = self.id();
        self.world.trace.sim(
            "sim",
            format_args!("FAULT node {id} stops: storage failed ({error})"),
        );
        self.world.crash(self.node);
        Halt::Crashed
    }

    /// Replies to peers and clients; the checker sees every reply to a peer.
    fn release_replies(&mut self) -> Result<(), Halt> {
        self.maybe_crash(CrashPoint::BeforeSend, "after saving, before sending")?;
        let node = self.node;
        for (to, body) in self.outgoing.drain(..) {
            if let Body::Response {
                request, response, ..
            } = &body
            {
                self.world.checker.on_reply_sent(node, request, response)?;
            }
            self.world.send(Endpoint::Node(node), to, body);
        }
        Ok(())
    }

    /// Hands the requests to the server's queues per peer (`senders.rs`).
    fn send(&mut self, messages: Vec<Outbound>) -> Result<(), Halt> {
        if !std::mem::take(&mut self.send_first) {
            self.maybe_crash(CrashPoint::BeforeSend, "after saving, before sending")?;
        }
        self.world.queue_requests(self.node, messages)?;
        Ok(())
    }

    /// The service applies within the step, answering the clients it wakes;
    /// the requests Raft took before this batch are registered first.
    fn apply(&mut self, apply: Vec<ApplyMsg>) -> Result<(), Halt> {
        self.maybe_crash_after_term_change()?;
        self.maybe_crash(CrashPoint::BeforeApply, "after sending, before applying")?;
        self.world.register_admitted(self.node);
        for msg in apply {
            self.world.apply(self.node, msg)?;
        }
        let node = &self.world.nodes[self.node];
        if let Some(index) = node.running.as_ref().map(|r| r.applier.last_applied()) {
            self.world.record(self.node, What::Apply { index });
        }
        Ok(())
    }

    /// The service snapshots when the service's policy says so
    /// (`service::snapshot_policy`), writing the bytes to the disk first; a
    /// failed write stops the server (fail-stop, as `node/failure.rs`).
    fn end_ready(&mut self) -> Result<(), Halt> {
        self.maybe_crash_after_term_change()?;
        let node = self.node;
        let world = &mut *self.world;
        let Some(running) = world.nodes[node].running.as_mut() else {
            return Err(Halt::Crashed);
        };
        self.before = running.raft.status();
        let Some(policy) = world.knobs.snapshot_policy else {
            return Ok(());
        };
        let since = running.since_snapshot.bytes();
        if !policy.due(since, running.last_snapshot_bytes) {
            return Ok(());
        }
        running.since_snapshot.snapshot_started();
        let index = running.applier.last_applied();
        let data = running.applier.state_machine().snapshot();
        running.last_snapshot_bytes = data.len() as u64;
        if let Some(point) = running.raft.snapshot_point(index) {
            match world.nodes[node].disk.write_snapshot(point, &data) {
                Ok(snapshot) => {
                    if let Some(running) = world.nodes[node].running.as_mut() {
                        running.raft.snapshot(snapshot);
                    }
                }
                // A failed snapshot write stops the runtime's node too.
                Err(e) => return Err(self.fail_stop(io::Error::other(e))),
            }
        }
        Ok(())
    }
}

/// The error a disk that fails in the middle of a save returns: ENOSPC if
/// it is `full`, else EIO.
fn disk_error(full: bool) -> io::Error {
    if full {
        io::Error::new(
            io::ErrorKind::StorageFull,
            "ENOSPC: no space left on device",
        )
    } else {
        io::Error::other("EIO: input/output error")
    }
}

fn storage_violation(id: NodeId, why: String) -> Violation {
    Violation {
        invariant: "storage_contract",
        rule: "Persist: a log write continues the stored log",
        evidence: format!("node {id}'s disk refused a save: {why}"),
    }
}
