//! One schedule: the event loop, and how a simulated server executes its `Ready`.
//!
//! Events wait in a priority queue ordered by virtual time, ties broken by the
//! order they were scheduled; the loop takes the next one, jumps the clock to
//! it, and handles it. A server handles one event the way the threaded runtime
//! (`src/node/`) handles a batch: feed the core, take its `Ready`, then
//! **persist → send → apply**, with a pending crash striking in the middle of
//! the save, between saving and sending, or between sending and applying.
//! After every step the [`Checker`] checks the paper's safety properties.
//!
//! The schedule has two phases. While faults run, clients keep issuing
//! operations. Then everything heals (crashed servers restart, paused ones
//! resume, clocks return to normal, links reconnect, nothing is lost any
//! more), each client issues one last operation, and the cluster has a bounded
//! virtual time to elect a leader and finish every request: liveness.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::clients::{is_retryable, kv_operations, ClientState, Record, SimClient};
use super::disk::SimDisk;
use super::faults::{CrashPoint, Fault, FaultPlan};
use super::invariants::{Checker, Violation};
use super::knobs::{stream_seed, Knobs, Options, Stream};
use super::linearizability::{check_kv, Input, Operation, Verdict};
use super::network::{Endpoint, Network};
use super::runner::RunStats;
use super::trace::Trace;
use super::{format_time, Time, MS};
use crate::codec::Encode;
use crate::raft::messages::{Index, NodeId, Request, Response};
use crate::raft::rng::Rng;
use crate::raft::{ApplyMsg, Config, Raft, Role, Status};
use crate::service::applier::{Applier, Outcome};
use crate::service::command::Command;
use crate::service::state_machine::Op;

/// The runtime's tick (NOTES.md: 10 ms).
const TICK: Time = 10 * MS;
/// Most ticks a server catches up on after a pause (as `src/node/` does).
const MAX_CATCH_UP_TICKS: u64 = 5;
/// Search steps the end-of-run linearizability check may take.
const LINEARIZABILITY_STEPS: u64 = 50_000_000;

/// A message in flight.
#[derive(Debug, Clone)]
struct Packet {
    from: Endpoint,
    to: Endpoint,
    sent_at: Time,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// A Raft RPC; the requester's incarnation routes the reply.
    Request {
        request: Request,
        requester_incarnation: u32,
    },
    /// Its reply, carrying the request back (as the runtime's senders do).
    Response {
        request: Request,
        response: Response,
        requester_incarnation: u32,
    },
    /// A client's operation.
    ClientRequest { attempt: u64, op: Op },
    /// A server's answer to one attempt, with the index it was applied at.
    ClientReply {
        attempt: u64,
        reply: String,
        index: Option<Index>,
    },
}

/// Whom a proposal's outcome goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    client: usize,
    attempt: u64,
}

#[derive(Debug)]
enum Event {
    Tick {
        node: usize,
        incarnation: u32,
    },
    Deliver(Packet),
    ClientWake {
        client: usize,
        token: u64,
    },
    RequestTimeout {
        node: usize,
        incarnation: u32,
        waiter: Waiter,
    },
    Fault,
    Restart {
        node: usize,
    },
    Resume {
        node: usize,
        incarnation: u32,
    },
    ClockNormal {
        node: usize,
        incarnation: u32,
    },
    HealNetwork {
        generation: u64,
    },
    EndFaults,
    Deadline,
}

struct Scheduled {
    at: Time,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A running server: the real core and the real service.
struct Running {
    raft: Raft,
    applier: Applier<Waiter>,
    since_snapshot: u64,
}

/// A server slot: its disk survives crashes; the rest does not.
struct SimNode {
    disk: SimDisk,
    running: Option<Running>,
    incarnation: u32,
    restarted_at: Time,
    paused_since: Option<Time>,
    /// Packets that arrived while paused, handled on resume.
    inbox: Vec<Packet>,
    tick_every: Time,
    /// A crash waiting to strike at this point of the next step.
    crash_point: Option<CrashPoint>,
    down_for: Time,
}

/// What one step of a server is fed.
enum StepInput {
    Tick,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Faults,
    Liveness,
}

/// Whether a step ended with the server crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crashed {
    Yes,
    No,
}

/// The whole simulated cluster and its clients.
pub(crate) struct World {
    seed: u64,
    options: Options,
    knobs: Knobs,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    net: Network,
    clients: Vec<SimClient>,
    history: Vec<Record>,
    checker: Checker,
    faults: FaultPlan,
    disk_rng: Rng,
    phase: Phase,
    partition_generation: u64,
    /// Highest index any definite reply came from.
    max_acked: Index,
    clients_done: usize,
    pub(crate) trace: Trace,
    pub(crate) stats: RunStats,
}

impl World {
    /// A fresh schedule for `seed`.
    pub(crate) fn new(seed: u64, options: &Options, trace: Trace) -> World {
        let knobs = Knobs::draw(seed, options);
        let net = Network::new(
            Rng::new(stream_seed(seed, Stream::Network)),
            knobs.nodes,
            knobs.delay_min,
            knobs.delay_spread,
            knobs.drop_permille,
            knobs.dup_permille,
        );
        let clients = (0..knobs.clients)
            .map(|c| SimClient::new(c, Rng::new(stream_seed(seed, Stream::Client(c))), &knobs))
            .collect();
        let nodes = (0..knobs.nodes)
            .map(|_| SimNode {
                disk: SimDisk::default(),
                running: None,
                incarnation: 0,
                restarted_at: 0,
                paused_since: None,
                inbox: Vec::new(),
                tick_every: TICK,
                crash_point: None,
                down_for: 0,
            })
            .collect();
        World {
            seed,
            options: options.clone(),
            faults: FaultPlan::new(Rng::new(stream_seed(seed, Stream::Faults)), &knobs),
            disk_rng: Rng::new(stream_seed(seed, Stream::Disk)),
            checker: Checker::new(knobs.nodes),
            knobs,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            net,
            clients,
            history: Vec::new(),
            phase: Phase::Faults,
            partition_generation: 0,
            max_acked: 0,
            clients_done: 0,
            trace,
            stats: RunStats::default(),
        }
    }

    /// The current virtual time.
    pub(crate) fn now(&self) -> Time {
        self.now
    }

    /// Runs the schedule to its end; `Err` at the first violation.
    pub(crate) fn run(&mut self) -> Result<(), Violation> {
        self.trace
            .sim("sim", format_args!("seed {} {}", self.seed, self.knobs));
        for node in 0..self.nodes.len() {
            self.start(node)?;
        }
        for client in 0..self.clients.len() {
            self.wake_client(client, 0);
        }
        let gap = self.faults.next_gap();
        self.schedule(gap, Event::Fault);
        self.schedule(self.options.fault_time, Event::EndFaults);
        self.schedule(
            self.options.fault_time + self.options.liveness_time,
            Event::Deadline,
        );
        while let Some(Reverse(next)) = self.queue.pop() {
            self.now = next.at;
            self.trace.set_now(self.now);
            self.stats.steps += 1;
            self.handle(next.event)?;
            if self.phase == Phase::Liveness && self.finished() {
                return self.final_checks();
            }
        }
        Ok(())
    }

    fn schedule(&mut self, after: Time, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            event,
        }));
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Event::Deliver(packet) => self.deliver(packet),
            Event::ClientWake { client, token } => {
                if self.clients[client].token == token {
                    self.on_client_wake(client);
                }
                Ok(())
            }
            Event::RequestTimeout {
                node,
                incarnation,
                waiter,
            } => {
                if self.is_current(node, incarnation) {
                    let reply = "ERR TIMEOUT outcome unknown".to_string();
                    self.reply_to_client(node, waiter, reply, None);
                }
                Ok(())
            }
            Event::Fault => {
                if self.phase == Phase::Faults {
                    if let Some(fault) = self.faults.next_fault() {
                        self.inject(fault);
                    }
                    let gap = self.faults.next_gap();
                    self.schedule(gap, Event::Fault);
                }
                Ok(())
            }
            Event::Restart { node } => {
                if self.nodes[node].running.is_none() {
                    self.start(node)?;
                }
                Ok(())
            }
            Event::Resume { node, incarnation } => {
                if self.is_current(node, incarnation) {
                    self.resume(node)?;
                }
                Ok(())
            }
            Event::ClockNormal { node, incarnation } => {
                if self.is_current(node, incarnation) {
                    self.nodes[node].tick_every = TICK;
                }
                Ok(())
            }
            Event::HealNetwork { generation } => {
                if generation == self.partition_generation && self.net.is_partitioned() {
                    self.net.heal();
                    self.trace
                        .sim("sim", format_args!("FAULT heal: every link restored"));
                }
                Ok(())
            }
            Event::EndFaults => self.end_faults(),
            Event::Deadline => Err(self.liveness_violation()),
        }
    }

    fn is_current(&self, node: usize, incarnation: u32) -> bool {
        let n = &self.nodes[node];
        n.running.is_some() && n.incarnation == incarnation
    }

    // ---- Servers ----

    /// Starts (or restarts) server `node` from its disk.
    fn start(&mut self, node: usize) -> Result<(), Violation> {
        let initial = self.nodes[node].disk.load();
        self.checker.on_start(node, &initial)?;
        let id = node as NodeId + 1;
        let peers = (1..=self.nodes.len() as NodeId).collect();
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.restarted_at = self.now;
        n.tick_every = TICK;
        n.paused_since = None;
        let mut config = Config::new(id, peers);
        config.seed = stream_seed(self.seed, Stream::Node(node, n.incarnation));
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
        });
        let incarnation = n.incarnation;
        self.schedule(TICK, Event::Tick { node, incarnation });
        // A restored snapshot is applied at once, as the runtime's first Ready does.
        self.step(node, None)
    }

    fn on_tick(&mut self, node: usize, incarnation: u32) -> Result<(), Violation> {
        if !self.is_current(node, incarnation) || self.nodes[node].paused_since.is_some() {
            return Ok(()); // the tick chain resumes with the server
        }
        let every = self.nodes[node].tick_every;
        self.schedule(every, Event::Tick { node, incarnation });
        self.step(node, Some(StepInput::Tick))
    }

    fn resume(&mut self, node: usize) -> Result<(), Violation> {
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
    fn step(&mut self, node: usize, input: Option<StepInput>) -> Result<(), Violation> {
        let id = node as NodeId + 1;
        let Some(running) = self.nodes[node].running.as_mut() else {
            return Ok(());
        };
        let before = running.raft.status();
        let mut outgoing: Vec<(Endpoint, Body)> = Vec::new();
        match input {
            None => {}
            Some(StepInput::Tick) => running.raft.tick(),
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
                let proposed = match before.role {
                    Role::Leader => running.raft.propose(op.encode()),
                    _ => None,
                };
                let Some((index, term)) = proposed else {
                    let reply = "ERR NO_LEADER not the leader; retry".to_string();
                    outgoing.push(client_reply(waiter, reply, None));
                    return self.finish_step(node, before, outgoing);
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
                    None => {
                        let incarnation = self.nodes[node].incarnation;
                        let timeout = self.knobs.request_timeout;
                        let event = Event::RequestTimeout {
                            node,
                            incarnation,
                            waiter,
                        };
                        self.schedule(timeout, event);
                    }
                }
            }
        }
        self.finish_step(node, before, outgoing)
    }

    /// Executes the step's `Ready`; a crash scheduled for this step strikes at
    /// the latest when it ends.
    fn finish_step(
        &mut self,
        node: usize,
        before: Status,
        outgoing: Vec<(Endpoint, Body)>,
    ) -> Result<(), Violation> {
        if self.execute_ready(node, before, outgoing)? == Crashed::No
            && self.nodes[node].crash_point.is_some()
        {
            self.crash(node); // the crash strikes after this step
        }
        Ok(())
    }

    /// Persist, then send, then apply: the order `Ready` demands (src/raft/ready.rs).
    fn execute_ready(
        &mut self,
        node: usize,
        mut before: Status,
        mut outgoing: Vec<(Endpoint, Body)>,
    ) -> Result<Crashed, Violation> {
        let id = node as NodeId + 1;
        loop {
            let Some(running) = self.nodes[node].running.as_mut() else {
                return Ok(Crashed::Yes);
            };
            let ready = running.raft.ready();
            let after = running.raft.status();
            self.checker
                .on_step(node, &before, &after, &ready.persist)?;
            let crash_point = self.nodes[node].crash_point;

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
                self.nodes[node]
                    .disk
                    .save(&ready.persist)
                    .map_err(|e| storage_violation(id, e))?;
                if self.trace.on() {
                    self.trace.node(
                        id,
                        after.term,
                        format_args!("persisted {}", show_persist(&ready.persist)),
                    );
                }
            }

            // 2. Send (replies to the RPCs just handled, then the core's requests).
            let sends = !outgoing.is_empty() || !ready.messages.is_empty();
            if sends && crash_point == Some(CrashPoint::BeforeSend) {
                self.trace.sim(
                    "sim",
                    format_args!("FAULT node {id} crashed after saving, before sending"),
                );
                self.crash(node);
                return Ok(Crashed::Yes);
            }
            for (to, body) in outgoing.drain(..) {
                self.send(Endpoint::Node(node), to, body);
            }
            let incarnation = self.nodes[node].incarnation;
            for message in ready.messages {
                if self.trace.on() {
                    self.trace.node(
                        id,
                        after.term,
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

            // 3. Apply.
            if ready.apply.is_empty() {
                return Ok(Crashed::No);
            }
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

            // The service snapshots once enough entries were applied (src/service/replica.rs).
            let Some(running) = self.nodes[node].running.as_mut() else {
                return Ok(Crashed::Yes);
            };
            let threshold = self.knobs.snapshot_entries;
            if threshold == 0 || running.since_snapshot < threshold {
                return Ok(Crashed::No);
            }
            running.since_snapshot = 0;
            let index = running.applier.last_applied();
            let data = running.applier.state_machine().snapshot();
            before = running.raft.status();
            running.raft.snapshot(index, data);
        }
    }

    /// Hands one committed entry (or snapshot) to server `node`'s service and
    /// answers the client waiting on it.
    fn apply(&mut self, node: usize, msg: ApplyMsg) -> Result<(), Violation> {
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
                let op = crate::codec::Decode::decode(&command).ok();
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
                        super::invariants::AppliedEntry {
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
            ApplyMsg::Snapshot(snapshot) => {
                let index = snapshot.last_included_index;
                let covered = running
                    .applier
                    .restore(index, &snapshot.data)
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

    fn reply_to_client(
        &mut self,
        node: usize,
        waiter: Waiter,
        reply: String,
        index: Option<Index>,
    ) {
        let (to, body) = client_reply(waiter, reply, index);
        self.send(Endpoint::Node(node), to, body);
    }

    // ---- The network ----

    fn send(&mut self, from: Endpoint, to: Endpoint, body: Body) {
        let delays = self.net.delays();
        if delays.is_empty() && self.trace.on() {
            self.trace.sim(
                "net",
                format_args!("dropped {} -> {}", show_endpoint(from), show_endpoint(to)),
            );
        }
        if delays.len() > 1 && self.trace.on() {
            self.trace.sim(
                "net",
                format_args!(
                    "duplicated {} -> {}",
                    show_endpoint(from),
                    show_endpoint(to)
                ),
            );
        }
        for delay in delays {
            let packet = Packet {
                from,
                to,
                sent_at: self.now,
                body: body.clone(),
            };
            self.schedule(delay, Event::Deliver(packet));
        }
    }

    fn deliver(&mut self, packet: Packet) -> Result<(), Violation> {
        if !self.net.allows(packet.from, packet.to) {
            if self.trace.on() {
                self.trace.sim(
                    "net",
                    format_args!(
                        "lost {} -> {} (partition)",
                        show_endpoint(packet.from),
                        show_endpoint(packet.to)
                    ),
                );
            }
            return Ok(());
        }
        let node = match packet.to {
            Endpoint::Client(client) => {
                if let Body::ClientReply {
                    attempt,
                    reply,
                    index,
                } = packet.body
                {
                    self.on_client_reply(client, attempt, reply, index);
                }
                return Ok(());
            }
            Endpoint::Node(node) => node,
        };
        let n = &mut self.nodes[node];
        if n.running.is_none() || packet.sent_at < n.restarted_at {
            return Ok(()); // sent to a server that is down, or to an earlier incarnation
        }
        if n.paused_since.is_some() {
            n.inbox.push(packet);
            return Ok(());
        }
        let from = match packet.from {
            Endpoint::Node(from) => from,
            Endpoint::Client(from) => from,
        };
        let input = match packet.body {
            Body::Request {
                request,
                requester_incarnation,
            } => StepInput::Request {
                from,
                request,
                requester_incarnation,
            },
            Body::Response {
                request,
                response,
                requester_incarnation,
            } => {
                if requester_incarnation != n.incarnation {
                    return Ok(()); // a reply to a request of an earlier incarnation
                }
                StepInput::Response {
                    from,
                    request,
                    response,
                }
            }
            Body::ClientRequest { attempt, op } => StepInput::Client {
                client: from,
                attempt,
                op,
            },
            Body::ClientReply { .. } => return Ok(()),
        };
        self.step(node, Some(input))
    }

    // ---- Faults ----

    fn inject(&mut self, fault: Fault) {
        self.stats.faults += 1;
        match fault {
            Fault::Crash {
                node,
                point,
                down_for,
            } => {
                let n = &mut self.nodes[node];
                if n.running.is_none() || n.crash_point.is_some() {
                    return;
                }
                n.down_for = down_for;
                let id = node + 1;
                self.trace.sim(
                    "sim",
                    format_args!(
                        "FAULT crash node {id} {} (down for {})",
                        point.describe(),
                        format_time(down_for)
                    ),
                );
                if point == CrashPoint::Now {
                    self.crash(node);
                } else {
                    n.crash_point = Some(point);
                }
            }
            Fault::Partition {
                from,
                to,
                one_way,
                bridge,
                lasts,
            } => {
                self.net.heal();
                self.net.cut(&from, &to);
                if !one_way {
                    self.net.cut(&to, &from);
                }
                self.partition_generation += 1;
                if self.trace.on() {
                    let ids = |v: &[usize]| {
                        v.iter()
                            .map(|i| (i + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let shape = match (one_way, bridge) {
                        (true, _) => format!("one-way: {} cannot reach {}", ids(&from), ids(&to)),
                        (false, Some(b)) => {
                            format!(
                                "bridge: {} | {} with node {} seeing both",
                                ids(&from),
                                ids(&to),
                                b + 1
                            )
                        }
                        (false, None) => format!("{} | {}", ids(&from), ids(&to)),
                    };
                    self.trace.sim(
                        "sim",
                        format_args!("FAULT partition {shape} for {}", format_time(lasts)),
                    );
                }
                let generation = self.partition_generation;
                self.schedule(lasts, Event::HealNetwork { generation });
            }
            Fault::Pause { node, lasts } => {
                let n = &mut self.nodes[node];
                if n.running.is_none() || n.paused_since.is_some() {
                    return;
                }
                n.paused_since = Some(self.now);
                let incarnation = n.incarnation;
                self.trace.sim(
                    "sim",
                    format_args!(
                        "FAULT node {}'s clock stops for {}",
                        node + 1,
                        format_time(lasts)
                    ),
                );
                self.schedule(lasts, Event::Resume { node, incarnation });
            }
            Fault::FastClock {
                node,
                percent,
                lasts,
            } => {
                let n = &mut self.nodes[node];
                if n.running.is_none() {
                    return;
                }
                n.tick_every = TICK * 100 / (100 + percent);
                let incarnation = n.incarnation;
                self.trace.sim(
                    "sim",
                    format_args!(
                        "FAULT node {}'s clock runs {percent}% fast for {}",
                        node + 1,
                        format_time(lasts)
                    ),
                );
                self.schedule(lasts, Event::ClockNormal { node, incarnation });
            }
        }
    }

    /// Server `node` stops: everything but its disk is lost.
    fn crash(&mut self, node: usize) {
        self.checker.on_crash(node);
        let n = &mut self.nodes[node];
        n.running = None;
        n.crash_point = None;
        n.paused_since = None;
        n.inbox.clear();
        let down_for = n.down_for;
        self.stats.crashes += 1;
        if self.phase == Phase::Faults {
            self.schedule(down_for, Event::Restart { node });
        } else {
            self.schedule(0, Event::Restart { node });
        }
    }

    /// The faults stop: every server runs, every link works, nothing is lost.
    fn end_faults(&mut self) -> Result<(), Violation> {
        self.phase = Phase::Liveness;
        self.stats.fault_time = self.now;
        self.trace.sim(
            "sim",
            format_args!(
                "faults end: restart and resume every server, heal every link, lose nothing"
            ),
        );
        self.net.heal();
        self.net.make_reliable();
        for node in 0..self.nodes.len() {
            self.nodes[node].crash_point = None;
            self.nodes[node].tick_every = TICK;
            if self.nodes[node].running.is_none() {
                self.start(node)?;
            } else {
                self.resume(node)?;
            }
        }
        for client in 0..self.clients.len() {
            self.clients[client].final_ops = Some(1);
        }
        Ok(())
    }

    // ---- Clients ----

    fn wake_client(&mut self, client: usize, after: Time) {
        let c = &mut self.clients[client];
        c.token += 1;
        let token = c.token;
        self.schedule(after, Event::ClientWake { client, token });
    }

    fn on_client_wake(&mut self, client: usize) {
        match self.clients[client].state {
            ClientState::Idle => {
                let c = &mut self.clients[client];
                if c.final_ops == Some(0) {
                    c.state = ClientState::Done;
                    self.clients_done += 1;
                    return;
                }
                if let Some(left) = c.final_ops.as_mut() {
                    *left -= 1;
                }
                let op = c.next_op(&self.knobs);
                self.history.push(Record {
                    client,
                    op,
                    call: self.now,
                    ret: None,
                    reply: None,
                    index: None,
                });
                self.clients[client].current = Some(self.history.len() - 1);
                self.send_attempt(client);
            }
            ClientState::Waiting { .. } => {
                // No reply in time: try the next server.
                let pause = self.clients[client].rotate(self.knobs.nodes);
                self.clients[client].state = ClientState::Backoff;
                self.wake_client(client, pause);
            }
            ClientState::Backoff => self.send_attempt(client),
            ClientState::Done => {}
        }
    }

    fn send_attempt(&mut self, client: usize) {
        let Some(current) = self.clients[client].current else {
            return;
        };
        let c = &mut self.clients[client];
        let attempt = c.next_attempt();
        c.state = ClientState::Waiting { attempt };
        let server = c.server;
        let op = self.history[current].op.clone();
        if self.trace.on() {
            self.trace.sim(
                &format!("client {client}"),
                format_args!("-> node {} {} (attempt {attempt})", server + 1, show(&op)),
            );
        }
        self.send(
            Endpoint::Client(client),
            Endpoint::Node(server),
            Body::ClientRequest { attempt, op },
        );
        let timeout = self.knobs.client_timeout;
        self.wake_client(client, timeout);
    }

    fn on_client_reply(
        &mut self,
        client: usize,
        attempt: u64,
        reply: String,
        index: Option<Index>,
    ) {
        if self.clients[client].state != (ClientState::Waiting { attempt }) {
            return; // a reply to an attempt it gave up on
        }
        if self.trace.on() {
            self.trace.sim(
                &format!("client {client}"),
                format_args!("<- {reply} (attempt {attempt})"),
            );
        }
        if is_retryable(&reply) {
            let pause = self.clients[client].rotate(self.knobs.nodes);
            self.clients[client].state = ClientState::Backoff;
            self.wake_client(client, pause);
            return;
        }
        if let Some(current) = self.clients[client].current.take() {
            let record = &mut self.history[current];
            record.ret = Some(self.now);
            record.reply = Some(reply);
            record.index = index;
            self.stats.ops_ok += 1;
        }
        if let Some(index) = index {
            self.max_acked = self.max_acked.max(index);
        }
        self.clients[client].state = ClientState::Idle;
        let think = self.clients[client].think(&self.knobs);
        self.wake_client(client, think);
    }

    // ---- The end ----

    /// Liveness reached: a leader, every client done, and some server has
    /// applied everything any client was told.
    fn finished(&self) -> bool {
        self.clients_done == self.clients.len()
            && self.nodes.iter().any(|n| {
                n.running
                    .as_ref()
                    .is_some_and(|r| r.raft.status().role == Role::Leader)
            })
            && self
                .most_applied()
                .is_some_and(|(_, applied)| applied >= self.max_acked)
    }

    fn most_applied(&self) -> Option<(usize, Index)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.running.as_ref().map(|r| (i, r.applier.last_applied())))
            .max_by_key(|&(i, applied)| (applied, Reverse(i)))
    }

    fn liveness_violation(&self) -> Violation {
        let pending: Vec<String> = self
            .clients
            .iter()
            .filter(|c| c.state != ClientState::Done)
            .map(|c| format!("client {} ({:?})", c.index, c.state))
            .collect();
        let servers: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.running {
                Some(r) => {
                    let s = r.raft.status();
                    format!(
                        "node {} {} of term {} commit {}",
                        i + 1,
                        s.role,
                        s.term,
                        s.commit_index
                    )
                }
                None => format!("node {} down", i + 1),
            })
            .collect();
        Violation {
            invariant: "liveness",
            rule: "§5.2/§5.3: with a majority up and connected, a leader is elected and requests complete",
            evidence: format!(
                "{} after the faults ended: still pending: [{}]; servers: [{}]",
                format_time(self.options.liveness_time),
                pending.join(", "),
                servers.join(", ")
            ),
        }
    }

    /// The history checks: linearizable KV operations (with a final read of
    /// every key at the end), and appends applied exactly once.
    fn final_checks(&mut self) -> Result<(), Violation> {
        self.stats.virtual_time = self.now;
        self.stats.ops_unknown = self.history.iter().filter(|r| r.ret.is_none()).count() as u64;
        let Some((node, _)) = self.most_applied() else {
            return Ok(());
        };
        let Some(running) = self.nodes[node].running.as_ref() else {
            return Ok(());
        };
        let kv = running.applier.state_machine().kv();
        let mut operations = kv_operations(&self.history);
        let reader = self.clients.len();
        let keys: Vec<String> = (0..self.knobs.keys).map(|k| format!("k{k}")).collect();
        for key in &keys {
            operations.push(Operation {
                client: reader,
                input: Input::Get(key.clone()),
                output: kv.value(key).map(String::from),
                call: self.now,
                ret: Some(self.now),
            });
        }
        for key in &keys {
            appends_apply_once(key, kv.value(key).unwrap_or(""), &self.history)?;
        }
        match check_kv(&operations, LINEARIZABILITY_STEPS) {
            Verdict::Linearizable => Ok(()),
            verdict => Err(Violation {
                invariant: "linearizability",
                rule: "§8: every operation appears to take effect once, between its call and its reply",
                evidence: format!(
                    "the checker says {verdict:?} for {} KV operations (final reads from node {})",
                    operations.len(),
                    node + 1
                ),
            }),
        }
    }
}

/// Thesis §6.3: each APPEND a client made takes effect at most once, and an
/// acknowledged one exactly once (unless a PUT of the key may have erased it).
fn appends_apply_once(key: &str, value: &str, history: &[Record]) -> Result<(), Violation> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for token in value.split_terminator(';') {
        *counts.entry(token).or_default() += 1;
    }
    let overwritten = history
        .iter()
        .any(|r| matches!(&r.op.command, Command::Put(k, _) if k == key));
    for record in history {
        let Command::Append(k, v) = &record.op.command else {
            continue;
        };
        if k != key {
            continue;
        }
        let token = v.trim_end_matches(';');
        let seen = counts.get(token).copied().unwrap_or(0);
        let acked = record.reply.as_deref() == Some("OK");
        if seen > 1 || (acked && seen == 0 && !overwritten) {
            return Err(Violation {
                invariant: "appends_apply_once",
                rule: "thesis §6.3: exactly-once client commands",
                evidence: format!(
                    "APPEND {key} {v} (client {}, {}) appears {seen} times in the final value",
                    record.client,
                    if acked {
                        "acknowledged"
                    } else {
                        "outcome unknown"
                    }
                ),
            });
        }
    }
    Ok(())
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

fn show_endpoint(e: Endpoint) -> String {
    match e {
        Endpoint::Node(i) => format!("node {}", i + 1),
        Endpoint::Client(c) => format!("client {c}"),
    }
}

/// A command as the text protocol writes it.
fn show(op: &Op) -> String {
    match &op.command {
        Command::Put(k, v) => format!("PUT {k} {v}"),
        Command::Append(k, v) => format!("APPEND {k} {v}"),
        Command::Del(k) => format!("DEL {k}"),
        Command::Get(k) => format!("GET {k}"),
        Command::Open(a, c) => format!("OPEN {a} {c}"),
        Command::Transfer(t) => format!("TRANSFER {} {} {} {}", t.txid, t.from, t.to, t.cents),
        Command::Balance(a) => format!("BALANCE {a}"),
        Command::Audit => "AUDIT".into(),
    }
}

fn show_request(request: &Request) -> String {
    match request {
        Request::RequestVote(a) => format!(
            "RequestVote term={} last={}@{}",
            a.term, a.last_log_index, a.last_log_term
        ),
        Request::AppendEntries(a) => format!(
            "AppendEntries term={} prev={}@{} entries={} commit={}",
            a.term,
            a.prev_log_index,
            a.prev_log_term,
            a.entries.len(),
            a.leader_commit
        ),
        Request::InstallSnapshot(a) => format!(
            "InstallSnapshot term={} last={}@{} ({} bytes)",
            a.term,
            a.last_included_index,
            a.last_included_term,
            a.data.len()
        ),
    }
}

fn show_persist(p: &crate::raft::Persist) -> String {
    let mut parts = Vec::new();
    if let Some(hs) = p.hard_state {
        parts.push(format!("term={} vote={:?}", hs.current_term, hs.voted_for));
    }
    if let Some(s) = &p.snapshot {
        parts.push(format!("snapshot through {}", s.last_included_index));
    }
    if let Some(w) = &p.log {
        parts.push(format!(
            "log from {} ({} entries)",
            w.first_index,
            w.entries.len()
        ));
    }
    parts.join(", ")
}
