//! One schedule: the event queue, the two phases, and the faults.
//!
//! Events wait in a priority queue ordered by virtual time, ties broken by the
//! order they were scheduled; the loop takes the next one, jumps the clock to
//! it, and handles it: a server's tick or incoming packet (`server.rs`), a
//! client's wake-up (`clients.rs`), a fault. After every server step the
//! [`Checker`] checks the paper's safety properties.
//!
//! The schedule has two phases. While faults run, clients keep issuing
//! operations. Then everything heals (crashed servers restart, paused ones
//! resume, clocks return to normal, links reconnect, nothing is lost any
//! more), each client issues one last operation, and the cluster has a bounded
//! virtual time to elect a leader and finish every request: liveness. The
//! history is checked at the end (`history.rs`).
//!
//! Servers come and go with membership changes (thesis §4): the world has a
//! slot for every server that may ever exist, the first `knobs.nodes` born at
//! the start and the spares born when the leader is asked to add them (each
//! under a fresh id). A server whose removal is known committed is retired:
//! stopped for good, as an operator would once `REMOVE` answered.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::clients::{ClientState, Record, SimClient};
use super::disk::SimDisk;
use super::faults::{CrashPoint, Fault, FaultPlan};
use super::invariants::{Checker, Violation};
use super::knobs::{stream_seed, Knobs, Options, Stream};
use super::network::{LateCopies, Network};
use super::packets::Packet;
use super::recording::Collector;
use super::runner::RunStats;
use super::server::{SimNode, StepInput, Waiter, TICK};
use super::service::frontend_reply;
use super::trace::Trace;
use super::watchers::Watchers;
use super::{format_time, Time};
use crate::events::{Action, Actor, Intervention};
use crate::raft::messages::{Index, NodeId};
use crate::raft::rng::Rng;
use crate::raft::{MembershipChange, Role};

#[derive(Debug)]
pub(super) enum Event {
    Tick {
        node: usize,
        incarnation: u32,
    },
    /// Boxed: a packet is large, the other events small.
    Deliver(Box<Packet>),
    ClientWake {
        client: usize,
        token: u64,
    },
    RequestTimeout {
        node: usize,
        incarnation: u32,
        waiter: Waiter,
    },
    /// The next fault of one of the two schedules (`faults.rs`).
    Fault(Schedule),
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

pub(super) struct Scheduled {
    pub(super) at: Time,
    pub(super) seq: u64,
    pub(super) event: Event,
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

/// Which fault schedule an [`Event::Fault`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Schedule {
    /// Crashes, partitions, pauses, clocks, transfers, membership.
    General,
    /// Late copies and term crashes, aimed at one server's promises.
    Promises,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Faults,
    Liveness,
}

/// Events a schedule may handle beyond [`STEPS_PER_OP`] per completed client
/// operation. A schedule usually handles 10-60 thousand, and a busy one
/// (a 1 ms network, clients that never pause) about 20 per operation; a broken
/// rule can set off a message storm that makes no progress, which this stops.
const MAX_IDLE_STEPS: u64 = 200_000;
/// Events allowed per completed client operation.
const STEPS_PER_OP: u64 = 100;

/// The whole simulated cluster and its clients.
pub(crate) struct World {
    pub(super) seed: u64,
    pub(super) options: Options,
    pub(super) knobs: Knobs,
    pub(super) now: Time,
    pub(super) seq: u64,
    pub(super) queue: BinaryHeap<Reverse<Scheduled>>,
    pub(super) nodes: Vec<SimNode>,
    pub(super) net: Network,
    pub(super) clients: Vec<SimClient>,
    pub(super) history: Vec<Record>,
    pub(super) checker: Checker,
    pub(super) faults: FaultPlan,
    pub(super) promise_faults: FaultPlan,
    pub(super) late_copies: LateCopies,
    pub(super) disk_rng: Rng,
    pub(super) phase: Phase,
    pub(super) partition_generation: u64,
    /// Highest index any definite reply came from.
    pub(super) max_acked: Index,
    pub(super) clients_done: usize,
    /// Answers to a scripted scenario's requests, by request number.
    pub(super) script_replies: std::collections::BTreeMap<u64, String>,
    pub(crate) trace: Trace,
    /// The run's events, when recorded (`recording.rs`).
    pub(crate) events: Collector,
    /// Messages sent so far: the last message id handed out.
    pub(super) messages_sent: u64,
    pub(crate) stats: RunStats,
    /// The simulated watchers (`watchers.rs`).
    pub(super) watchers: Watchers,
}

impl World {
    /// A fresh schedule for `seed`.
    pub(crate) fn new(seed: u64, options: &Options, trace: Trace) -> World {
        let knobs = Knobs::draw(seed, options);
        let slots = knobs.nodes + knobs.spare_nodes;
        let net = Network::new(
            Rng::new(stream_seed(seed, Stream::Network)),
            slots,
            knobs.delay_min,
            knobs.delay_spread,
            knobs.drop_permille,
            knobs.dup_permille,
        );
        let clients = (0..knobs.clients)
            .map(|c| SimClient::new(c, Rng::new(stream_seed(seed, Stream::Client(c))), &knobs))
            .collect();
        let nodes = (0..slots)
            .map(|slot| SimNode {
                born: slot < knobs.nodes,
                retired: false,
                removal_requested: false,
                disk: SimDisk::default(),
                running: None,
                incarnation: 0,
                restarted_at: 0,
                paused_since: None,
                inbox: Vec::new(),
                tick_every: TICK,
                crash_point: None,
                crash_by: 0,
                down_for: 0,
            })
            .collect();
        World {
            seed,
            options: options.clone(),
            faults: FaultPlan::general(Rng::new(stream_seed(seed, Stream::Faults)), &knobs),
            promise_faults: FaultPlan::promises(
                Rng::new(stream_seed(seed, Stream::PromiseFaults)),
                &knobs,
            ),
            late_copies: LateCopies::new(Rng::new(stream_seed(seed, Stream::LateCopies)), slots),
            disk_rng: Rng::new(stream_seed(seed, Stream::Disk)),
            checker: Checker::new(slots),
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
            script_replies: std::collections::BTreeMap::new(),
            trace,
            events: Collector::default(),
            messages_sent: 0,
            stats: RunStats::default(),
            watchers: Watchers::default(),
        }
    }

    /// The current virtual time.
    pub(crate) fn now(&self) -> Time {
        self.now
    }

    /// Starts every server and client.
    pub(crate) fn begin(&mut self) -> Result<(), Violation> {
        self.trace
            .sim("sim", format_args!("seed {} {}", self.seed, self.knobs));
        for node in self.live_servers() {
            self.start(node)?;
        }
        for client in 0..self.clients.len() {
            self.wake_client(client, 0);
        }
        Ok(())
    }

    /// Handles every event due up to virtual time `until`, then sets the clock
    /// there (for scripted scenarios).
    pub(crate) fn advance_to(&mut self, until: Time) -> Result<(), Violation> {
        while self.queue.peek().is_some_and(|next| next.0.at <= until) {
            let Some(Reverse(next)) = self.queue.pop() else {
                break;
            };
            self.now = next.at;
            self.trace.set_now(self.now);
            self.begin_step();
            self.handle(next.event)?;
            self.follow_watches()?;
        }
        self.now = self.now.max(until);
        self.trace.set_now(self.now);
        self.events.set_step(self.now, self.stats.steps);
        Ok(())
    }

    /// Runs the schedule to its end; `Err` at the first violation.
    pub(crate) fn run(&mut self) -> Result<(), Violation> {
        self.begin()?;
        let gap = self.faults.next_gap();
        self.schedule(gap, Event::Fault(Schedule::General));
        if self.promise_faults.is_active() {
            let gap = self.promise_faults.next_gap();
            self.schedule(gap, Event::Fault(Schedule::Promises));
        }
        self.schedule(self.options.fault_time, Event::EndFaults);
        self.schedule(
            self.options.fault_time + self.options.liveness_time,
            Event::Deadline,
        );
        while let Some(Reverse(next)) = self.queue.pop() {
            self.now = next.at;
            self.trace.set_now(self.now);
            self.begin_step();
            if self.stats.steps > MAX_IDLE_STEPS + STEPS_PER_OP * self.stats.ops_ok {
                return Err(Violation {
                    invariant: "step_budget",
                    rule: "a schedule makes progress: at most 200,000 events plus 100 per client operation",
                    evidence: format!(
                        "{} events by {} for {} client operations: a message storm",
                        self.stats.steps,
                        format_time(self.now),
                        self.stats.ops_ok
                    ),
                });
            }
            self.handle(next.event)?;
            self.follow_watches()?;
            if self.phase == Phase::Liveness && self.finished() {
                return self.final_checks();
            }
        }
        Ok(())
    }

    pub(super) fn schedule(&mut self, after: Time, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            event,
        }));
    }

    pub(super) fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Event::Deliver(packet) => self.deliver(*packet),
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
                    let reply = frontend_reply(None);
                    self.reply_to_client(node, waiter, reply, None);
                }
                Ok(())
            }
            Event::Fault(schedule) => {
                if self.phase == Phase::Faults {
                    let servers = self.live_servers();
                    let plan = match schedule {
                        Schedule::General => &mut self.faults,
                        Schedule::Promises => &mut self.promise_faults,
                    };
                    let fault = plan.next_fault(&servers);
                    let gap = plan.next_gap();
                    if let Some(fault) = fault {
                        self.inject(fault)?;
                    }
                    self.schedule(gap, Event::Fault(schedule));
                }
                Ok(())
            }
            Event::Restart { node } => {
                if self.nodes[node].running.is_none() && !self.nodes[node].retired {
                    self.record_sim(Action::Restart, &[node]);
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
                    self.record_sim(Action::Heal, &[]);
                    self.trace
                        .sim("sim", format_args!("FAULT heal: every link restored"));
                }
                Ok(())
            }
            Event::EndFaults => self.end_faults(),
            Event::Deadline => Err(self.liveness_violation()),
        }
    }

    pub(super) fn is_current(&self, node: usize, incarnation: u32) -> bool {
        let n = &self.nodes[node];
        n.running.is_some() && n.incarnation == incarnation
    }

    // ---- Faults ----

    pub(super) fn inject(&mut self, fault: Fault) -> Result<(), Violation> {
        self.stats.faults += 1;
        match fault {
            Fault::Crash {
                node,
                point,
                down_for,
            } => {
                let n = &mut self.nodes[node];
                if n.running.is_none() || n.crash_point.is_some() {
                    return Ok(());
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
                    // The crash waits (a second, or three for a change of
                    // term) for a step that saves, sends, applies or changes
                    // term, so it lands inside one.
                    n.crash_point = Some(point);
                    n.crash_by = self.now + point.waits();
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
                let action = match (one_way, bridge) {
                    (true, _) => Action::OneWay,
                    (false, Some(_)) => Action::Bridge,
                    (false, None) => Action::Partition,
                };
                let ids = |v: &[usize]| v.iter().map(|&i| i as NodeId + 1).collect();
                self.record_fault(Intervention {
                    by: Actor::Simulator,
                    action,
                    nodes: ids(&from),
                    others: ids(&to),
                    bridge: bridge.map(|b| b as NodeId + 1),
                    lasts,
                });
                let generation = self.partition_generation;
                self.schedule(lasts, Event::HealNetwork { generation });
            }
            Fault::Pause { node, lasts } => {
                let n = &mut self.nodes[node];
                if n.running.is_none() || n.paused_since.is_some() {
                    return Ok(());
                }
                n.paused_since = Some(self.now);
                let incarnation = n.incarnation;
                self.record_fault(Intervention {
                    lasts,
                    ..Intervention::on(Actor::Simulator, Action::Pause, &[node as NodeId + 1])
                });
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
            Fault::Transfer { node } => {
                let leader = (0..self.nodes.len()).find(|&i| {
                    self.nodes[i]
                        .running
                        .as_ref()
                        .is_some_and(|r| r.raft.status().role == crate::raft::Role::Leader)
                });
                let Some(leader) = leader else {
                    return Ok(());
                };
                let target = if node == leader {
                    let servers = self.live_servers();
                    let next = servers.iter().position(|&s| s == node).map_or(0, |i| i + 1);
                    servers[next % servers.len()]
                } else {
                    node
                };
                self.trace.sim(
                    "sim",
                    format_args!(
                        "FAULT ask leader {} to hand leadership to {}",
                        leader + 1,
                        target + 1
                    ),
                );
                let target = target as u64 + 1;
                self.record_fault(Intervention {
                    others: Box::new([target]),
                    ..Intervention::on(Actor::Simulator, Action::Transfer, &[leader as NodeId + 1])
                });
                self.step(leader, Some(StepInput::Transfer { target }))?;
            }
            Fault::FastClock {
                node,
                percent,
                lasts,
            } => {
                let n = &mut self.nodes[node];
                if n.running.is_none() {
                    return Ok(());
                }
                n.tick_every = TICK * 100 / (100 + percent);
                let incarnation = n.incarnation;
                self.record_fault(Intervention {
                    lasts,
                    ..Intervention::on(Actor::Simulator, Action::FastClock, &[node as NodeId + 1])
                });
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
            Fault::Membership { add, pick } => self.change_membership(add, pick)?,
            Fault::LateCopies { node, lasts } => {
                self.late_copies.start(node, self.now + lasts);
                self.trace.sim(
                    "sim",
                    format_args!(
                        "FAULT requests to node {} may arrive again, much later, for {}",
                        node + 1,
                        format_time(lasts)
                    ),
                );
            }
        }
        Ok(())
    }

    /// Records the simulator's `action` on the servers at `nodes` (indexes).
    fn record_sim(&mut self, action: Action, nodes: &[usize]) {
        let ids: Vec<NodeId> = nodes.iter().map(|&i| i as NodeId + 1).collect();
        self.record_fault(Intervention::on(Actor::Simulator, action, &ids));
    }

    /// The servers that exist: born, and not retired.
    pub(super) fn live_servers(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].born && !self.nodes[i].retired)
            .collect()
    }

    /// The running leader of the highest term, if any.
    pub(super) fn leader_index(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let status = self.nodes[i].running.as_ref()?.raft.status();
                (status.role == Role::Leader).then_some((status.term, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// A membership fault (thesis §4): asks the leader to add a server under
    /// a fresh id (started empty, waiting to be added), or to remove a member,
    /// but only if a majority of the remaining voters is running.
    fn change_membership(&mut self, add: bool, pick: u64) -> Result<(), Violation> {
        let Some(leader) = self.leader_index() else {
            return Ok(());
        };
        let Some(running) = self.nodes[leader].running.as_ref() else {
            return Ok(());
        };
        let (configuration, _) = running.raft.configuration();
        let configuration = configuration.clone();
        let fresh = (0..self.nodes.len()).find(|&i| !self.nodes[i].born);
        let change = match fresh {
            Some(slot) if add => {
                let id = slot as NodeId + 1;
                MembershipChange::Add {
                    id,
                    address: format!("sim:{id}"),
                }
            }
            _ => {
                let members: Vec<NodeId> = configuration.members().map(|(id, _)| id).collect();
                let Some(&id) = members.get((pick % members.len().max(1) as u64) as usize) else {
                    return Ok(());
                };
                let remaining = configuration.without(id, true);
                let up = remaining
                    .voters
                    .keys()
                    .filter(|&&v| self.nodes[v as usize - 1].running.is_some())
                    .count();
                if remaining.voters.is_empty() || up < remaining.majority() {
                    return Ok(());
                }
                self.nodes[id as usize - 1].removal_requested = true;
                MembershipChange::Remove { id }
            }
        };
        self.trace.sim(
            "sim",
            format_args!("FAULT ask leader {} to {change}", leader + 1),
        );
        let added = match &change {
            MembershipChange::Add { id, .. } => Some(*id),
            MembershipChange::Remove { .. } => None,
        };
        let (action, server) = match &change {
            MembershipChange::Add { id, .. } => (Action::Add, *id),
            MembershipChange::Remove { id } => (Action::Remove, *id),
        };
        self.record_fault(Intervention {
            others: Box::new([server]),
            ..Intervention::on(Actor::Simulator, action, &[leader as NodeId + 1])
        });
        self.step(leader, Some(StepInput::Membership(change)))?;
        // A new server starts (empty, waiting to be added) once the leader
        // took the request: its id stays fresh otherwise.
        let accepted = self.nodes[leader].running.as_ref().is_some_and(|r| {
            let (configuration, _) = r.raft.configuration();
            added.is_some_and(|id| configuration.is_member(id))
        });
        if let (Some(id), true) = (added, accepted) {
            let slot = id as usize - 1;
            self.nodes[slot].born = true;
            self.start(slot)?;
        }
        Ok(())
    }

    /// Retires the servers whose removal server `node` knows is committed:
    /// stops them for good, as an operator would.
    pub(super) fn retire_removed(&mut self, node: usize) {
        let pending: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].removal_requested && !self.nodes[i].retired)
            .collect();
        if pending.is_empty() {
            return;
        }
        let Some(running) = self.nodes[node].running.as_ref() else {
            return;
        };
        let status = running.raft.status();
        if status.configuration_index > status.commit_index {
            return;
        }
        for slot in pending {
            if status.configuration.retired.contains(&(slot as NodeId + 1)) {
                self.trace.sim(
                    "sim",
                    format_args!(
                        "node {}'s removal is committed: it stops for good",
                        slot + 1
                    ),
                );
                if self.nodes[slot].running.is_some() {
                    self.record_sim(Action::Crash, &[slot]);
                    self.stop(slot);
                }
                self.nodes[slot].retired = true;
            }
        }
    }

    /// Server `node` stops: everything but its disk is lost. It restarts after
    /// the fault's downtime (at once once the faults have ended).
    pub(super) fn crash(&mut self, node: usize) {
        self.record_sim(Action::Crash, &[node]);
        self.stop(node);
        let down_for = self.nodes[node].down_for;
        if self.phase == Phase::Faults {
            self.schedule(down_for, Event::Restart { node });
        } else {
            self.schedule(0, Event::Restart { node });
        }
    }

    /// Server `node` stops, with no restart scheduled.
    pub(crate) fn stop(&mut self, node: usize) {
        self.checker.on_crash(node);
        let n = &mut self.nodes[node];
        n.running = None;
        n.crash_point = None;
        n.paused_since = None;
        n.inbox.clear();
        self.stats.crashes += 1;
    }

    /// The faults stop: every server runs, every link works, nothing is lost.
    pub(super) fn end_faults(&mut self) -> Result<(), Violation> {
        self.phase = Phase::Liveness;
        self.stats.fault_time = self.now;
        self.trace.sim(
            "sim",
            format_args!(
                "faults end: restart and resume every server, heal every link, lose nothing"
            ),
        );
        self.record_sim(Action::EndFaults, &[]);
        self.net.heal();
        self.net.make_reliable();
        self.late_copies.stop();
        for node in self.live_servers() {
            self.nodes[node].crash_point = None;
            self.nodes[node].tick_every = TICK;
            if self.nodes[node].running.is_none() {
                self.record_sim(Action::Restart, &[node]);
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

    // ---- The end ----

    /// Liveness reached: a leader, every client done, and every server of its
    /// configuration (all are up and connected now) has applied everything
    /// any client was told: a follower left behind for good, say by a
    /// snapshot transfer that never finishes, is a liveness failure too.
    /// Servers outside the configuration (removed, or whose addition was
    /// called off) need not catch up, nor a learner whose server never
    /// started (the leader that added it fell before it could).
    ///
    /// Without the no-op at election, a new leader cannot commit the entries
    /// of earlier terms until a client proposes something (§5.4.2, Figure
    /// 8), and the clients may be done: then every server must have applied
    /// what the leader has committed.
    pub(super) fn finished(&self) -> bool {
        if self.clients_done < self.clients.len() {
            return false;
        }
        let Some(leader) = self.leader_index() else {
            return false;
        };
        let Some(running) = self.nodes[leader].running.as_ref() else {
            return false;
        };
        let target = if self.knobs.noop_on_election {
            self.max_acked
        } else {
            running.raft.status().commit_index
        };
        // Every member of the leader's configuration (thesis §4: servers that
        // were removed, or whose addition was called off, need not catch up).
        let (configuration, _) = running.raft.configuration();
        configuration
            .members()
            .map(|(id, _)| &self.nodes[id as usize - 1])
            .filter(|n| n.born)
            .all(|n| {
                n.running
                    .as_ref()
                    .is_some_and(|r| r.applier.last_applied() >= target)
            })
    }

    pub(super) fn most_applied(&self) -> Option<(usize, Index)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.running.as_ref().map(|r| (i, r.applier.last_applied())))
            .max_by_key(|&(i, applied)| (applied, Reverse(i)))
    }

    pub(super) fn liveness_violation(&self) -> Violation {
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
            .filter(|(_, n)| n.born && !n.retired)
            .map(|(i, n)| match &n.running {
                Some(r) => {
                    let s = r.raft.status();
                    format!(
                        "node {} {} of term {} commit {} applied {}",
                        i + 1,
                        s.role,
                        s.term,
                        s.commit_index,
                        r.applier.last_applied()
                    )
                }
                None => format!("node {} down", i + 1),
            })
            .collect();
        Violation {
            invariant: "liveness",
            rule: "§5.2/§5.3: with every server up and connected, a leader is elected, requests complete and every server catches up",
            evidence: format!(
                "{} after the faults ended: still pending: [{}]; acknowledged through {}; servers: [{}]",
                format_time(self.options.liveness_time),
                pending.join(", "),
                self.max_acked,
                servers.join(", ")
            ),
        }
    }
}
