//! Scripted scenarios: a test drives the simulated cluster by hand.
//!
//! The same servers, network and invariant checks as a random schedule, but no
//! random faults and no clients: the test isolates, partitions, crashes and
//! heals servers itself, proposes commands, asks for leadership transfers and
//! membership changes (servers [`SPARE_SERVERS`] beyond the first may join),
//! and lets virtual time pass. The network is reliable (1–3 ms per message) unless
//! the test cuts links. Every step is still checked against the paper's safety
//! properties, so a scenario fails on a violation as well as on its own
//! assertions. Runs are deterministic: a scenario either always passes or
//! always fails.
//!
//! ```
//! use raftkv::sim::scenario::Scenario;
//! use raftkv::sim::SECOND;
//!
//! let mut cluster = Scenario::new(3, 1);
//! let leader = cluster.wait_for_leader(5 * SECOND).unwrap();
//! assert!(cluster.status(leader).is_some());
//! ```

use super::invariants::Violation;
use super::knobs::Options;
use super::network::Network;
use super::packets::SCRIPT_CLIENT;
use super::recording::Collector;
use super::server::StepInput;
use super::trace::{Trace, TraceMode};
use super::world::World;
use super::{Time, MS};
use crate::codec::Encode;
use crate::events::{Action, Actor, Event, Intervention, Sink, What};
use crate::raft::messages::{Index, NodeId, Term};
use crate::raft::rng::Rng;
use crate::raft::{
    Bug, Configuration, MembershipChange, MembershipError, ProposeError, Role, Status,
    TransferError,
};
use crate::service::command::Command;
use crate::service::snapshot_policy::SnapshotPolicy;
use crate::service::state_machine::Op;

/// The servers' minimum election timeout in virtual time (30 ticks of 10 ms).
pub const ELECTION_TIMEOUT: Time = 300 * MS;
/// How many servers may join a scenario's cluster (ids after the first ones).
pub const SPARE_SERVERS: usize = 4;

/// A cluster a test drives by hand.
pub struct Scenario {
    world: World,
    /// The last request number handed out.
    requests: u64,
}

impl Scenario {
    /// `nodes` servers with the servers' defaults (pre-vote and check-quorum
    /// on), started at time 0; `seed` decides election timeouts and delays.
    pub fn new(nodes: usize, seed: u64) -> Scenario {
        Scenario::with(nodes, seed, true, true)
    }

    /// As [`Scenario::new`], choosing pre-vote and check-quorum.
    pub fn with(nodes: usize, seed: u64, pre_vote: bool, check_quorum: bool) -> Scenario {
        Scenario::build(nodes, seed, pre_vote, check_quorum, None, true)
    }

    /// As [`Scenario::new`], with one rule of the paper broken on purpose
    /// (to show what it prevents).
    pub fn with_bug(nodes: usize, seed: u64, bug: Bug) -> Scenario {
        Scenario::build(nodes, seed, true, true, Some(bug), true)
    }

    /// As [`Scenario::new`], with `bug` (if any) switched on and the new
    /// leader's no-op on or off (§8: without it, a new leader commits
    /// nothing of earlier terms until a client proposes; Figure 8's bug
    /// hides behind it).
    pub fn with_options(nodes: usize, seed: u64, bug: Option<Bug>, noop: bool) -> Scenario {
        Scenario::build(nodes, seed, true, true, bug, noop)
    }

    fn build(
        nodes: usize,
        seed: u64,
        pre_vote: bool,
        check_quorum: bool,
        bug: Option<Bug>,
        noop: bool,
    ) -> Scenario {
        let options = Options {
            bug,
            nodes: Some(nodes),
            spare_nodes: Some(SPARE_SERVERS),
            clients: Some(0),
            faults: Vec::new(),
            lossy: false,
            pre_vote: Some(pre_vote),
            check_quorum: Some(check_quorum),
            noop_on_election: Some(noop),
            ..Options::default()
        };
        let mut world = World::new(seed, &options, Trace::new(TraceMode::Off, false));
        world.knobs.snapshot_policy = None;
        // As the server (unless asked otherwise): a new leader appends an
        // entry of its term at once.
        world.knobs.noop_on_election = noop;
        let slots = nodes + SPARE_SERVERS;
        world.net = Network::new(Rng::new(seed ^ 0x5ce4a), slots, MS, 2 * MS, 0, 0);
        let mut scenario = Scenario { world, requests: 0 };
        scenario.fail_on(|w| w.begin());
        scenario
    }

    fn fail_on<T>(&mut self, f: impl FnOnce(&mut World) -> Result<T, Violation>) -> T {
        match f(&mut self.world) {
            Ok(t) => t,
            Err(v) => panic!(
                "invariant broken at {}: {v}",
                super::format_time(self.world.now())
            ),
        }
    }

    fn index(&self, id: NodeId) -> usize {
        let index = id as usize - 1;
        assert!(index < self.world.nodes.len(), "no server {id}");
        index
    }

    /// The current virtual time.
    pub fn now(&self) -> Time {
        self.world.now()
    }

    /// Lets `duration` of virtual time pass. Panics if an invariant breaks.
    pub fn run_for(&mut self, duration: Time) {
        let until = self.now() + duration;
        self.fail_on(|w| w.advance_to(until));
    }

    /// Lets time pass, a millisecond at a time, until `done` holds, `limit`
    /// has passed (`Ok(false)`), or an invariant breaks (`Err`): for scenarios
    /// that show what a broken rule leads to.
    pub fn try_run_until(
        &mut self,
        limit: Time,
        done: impl Fn(&Scenario) -> bool,
    ) -> Result<bool, Violation> {
        let start = self.now();
        while self.now() - start <= limit {
            if done(self) {
                return Ok(true);
            }
            let until = self.now() + MS;
            self.world.advance_to(until)?;
        }
        Ok(false)
    }

    /// From now on, records every event (see `recording.rs`), each in the
    /// step it happened in; an operator's actions (crash, cut, propose ...)
    /// are steps of their own.
    pub fn record_events(&mut self) {
        let world = &mut self.world;
        world.events = Collector::new(true);
        world.events.set_step(world.now, world.stats.steps);
        // Where every running server stands now, so a trace starts whole.
        for node in &mut world.nodes {
            if let Some(running) = node.running.as_mut() {
                running
                    .watch
                    .observe(&running.raft, node.tick_every, &mut world.events);
            }
        }
    }

    /// The events recorded so far, each with its step.
    pub fn events(&self) -> &[(u64, Event)] {
        self.world.events.events()
    }

    /// Records a narration (a guided tour's words) as a step of its own.
    pub fn narrate(&mut self, text: &str) {
        self.world.begin_step();
        let what = What::Narration { text: text.into() };
        self.world.events.record(0, 0, what);
    }

    /// An operator's action begins: a step of its own, recorded.
    fn act(&mut self, action: Action, nodes: &[NodeId], others: &[NodeId]) {
        self.world.begin_step();
        self.world.record_fault(Intervention {
            others: others.into(),
            ..Intervention::on(Actor::Operator, action, nodes)
        });
    }

    /// Servers snapshot once they have applied `log_bytes` of log since the
    /// last snapshot, weighed as the service weighs it
    /// ([`crate::service::snapshot_policy`]: a command's bytes plus
    /// `ENTRY_COST` per entry); by default they never do.
    pub fn snapshot_past(&mut self, log_bytes: usize) {
        self.world.knobs.snapshot_policy = Some(SnapshotPolicy {
            log_bytes,
            scale_with_state: false,
        });
    }

    /// Lets time pass, a millisecond at a time, until `done` holds or `limit`
    /// has passed; returns how long it took, or `None` on timeout.
    pub fn run_until(&mut self, limit: Time, done: impl Fn(&Scenario) -> bool) -> Option<Time> {
        let start = self.now();
        while self.now() - start <= limit {
            if done(self) {
                return Some(self.now() - start);
            }
            self.run_for(MS);
        }
        None
    }

    /// Waits up to `limit` for a single leader and returns its id.
    pub fn wait_for_leader(&mut self, limit: Time) -> Option<NodeId> {
        self.run_until(limit, |s| s.leader().is_some())?;
        self.leader()
    }

    /// Server `id`'s status, if it is running.
    pub fn status(&self, id: NodeId) -> Option<Status> {
        let node = &self.world.nodes[self.index(id)];
        node.running.as_ref().map(|r| r.raft.status())
    }

    /// The leader of the highest term any running server leads in.
    pub fn leader(&self) -> Option<NodeId> {
        (1..=self.world.nodes.len() as NodeId)
            .filter_map(|id| self.status(id))
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// The highest term of any running server.
    pub fn max_term(&self) -> Term {
        (1..=self.world.nodes.len() as NodeId)
            .filter_map(|id| self.status(id))
            .map(|s| s.term)
            .max()
            .unwrap_or(0)
    }

    /// Cuts every link between server `id` and the others, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        let rest: Vec<NodeId> = (1..=self.world.nodes.len() as NodeId)
            .filter(|&o| o != id && self.world.nodes[o as usize - 1].born)
            .collect();
        self.act(Action::Partition, &[id], &rest);
        let me = self.index(id);
        let others: Vec<usize> = (0..self.world.nodes.len()).filter(|&i| i != me).collect();
        self.world.net.cut(&[me], &others);
        self.world.net.cut(&others, &[me]);
    }

    /// Cuts the links from every server in `from` to every server in `to`
    /// (one way: the other direction still works).
    pub fn cut(&mut self, from: &[NodeId], to: &[NodeId]) {
        self.act(Action::OneWay, from, to);
        let from: Vec<usize> = from.iter().map(|&id| self.index(id)).collect();
        let to: Vec<usize> = to.iter().map(|&id| self.index(id)).collect();
        self.world.net.cut(&from, &to);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.act(Action::Heal, &[], &[]);
        self.world.net.heal();
    }

    /// Stops server `id` at once (it keeps its disk).
    pub fn crash(&mut self, id: NodeId) {
        self.act(Action::Crash, &[id], &[]);
        let index = self.index(id);
        self.world.stop(index);
    }

    /// Restarts a crashed server `id` from its disk.
    pub fn restart(&mut self, id: NodeId) {
        self.act(Action::Restart, &[id], &[]);
        let index = self.index(id);
        self.fail_on(|w| w.start(index));
    }

    /// Stops server `id` and gives it an empty disk, then starts it again:
    /// an operator replacing a failed disk. Raft assumes stable storage, so
    /// this is outside its model (the server forgets its vote); the leader
    /// notices the lost entries and sends them again, or its snapshot.
    pub fn wipe(&mut self, id: NodeId) {
        self.act(Action::Crash, &[id], &[]);
        let index = self.index(id);
        if self.world.nodes[index].running.is_some() {
            self.world.stop(index);
        }
        self.world.nodes[index].disk = Default::default();
        self.world.checker.on_disk_replaced(index);
        self.act(Action::Restart, &[id], &[]);
        self.fail_on(|w| w.start(index));
    }

    /// The world underneath (for the tours, which record a violation as
    /// an event instead of panicking).
    pub(crate) fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// Proposes `PUT key value` at server `id`, as the service would.
    pub fn propose(
        &mut self,
        id: NodeId,
        key: &str,
        value: &str,
    ) -> Result<(Index, Term), ProposeError> {
        let index = self.index(id);
        let op = Op {
            client_id: 0,
            seq: 0,
            command: Command::Put(key.into(), value.into()),
        };
        self.world.begin_step();
        if self.world.recording() {
            let what = What::ClientRequest {
                client: 0,
                request: 0,
                op: "put",
                text: Some(format!("PUT {key} {value}").into()),
            };
            self.world.record(index, what);
        }
        let running = self.world.nodes[index]
            .running
            .as_mut()
            .ok_or(ProposeError::NotLeader)?;
        let before = running.raft.status();
        let proposed = running.raft.propose(op.encode());
        self.fail_on(|w| w.finish_step(index, before, Vec::new()));
        proposed
    }

    /// Asks server `leader` to hand leadership to `target` (thesis §3.10).
    pub fn transfer(&mut self, leader: NodeId, target: NodeId) -> Result<(), TransferError> {
        self.act(Action::Transfer, &[leader], &[target]);
        let index = self.index(leader);
        let running = self.world.nodes[index]
            .running
            .as_mut()
            .ok_or(TransferError::NotLeader)?;
        let result = running.raft.transfer_leadership(target);
        self.fail_on(|w| w.step(index, None::<StepInput>));
        result
    }

    /// Starts server `id`, one of the spares, empty: it waits to be added
    /// (thesis §4), like `raftkv -join`.
    pub fn join(&mut self, id: NodeId) {
        let index = self.index(id);
        assert!(!self.world.nodes[index].born, "server {id} exists already");
        self.world.nodes[index].born = true;
        self.fail_on(|w| w.start(index));
    }

    /// Asks server `leader` for a membership change (thesis §4).
    pub fn change(
        &mut self,
        leader: NodeId,
        change: MembershipChange,
    ) -> Result<u64, MembershipError> {
        let (action, server) = match &change {
            MembershipChange::Add { id, .. } => (Action::Add, *id),
            MembershipChange::Remove { id } => (Action::Remove, *id),
        };
        self.act(action, &[leader], &[server]);
        let index = self.index(leader);
        let running = self.world.nodes[index]
            .running
            .as_mut()
            .ok_or(MembershipError::NotLeader)?;
        let before = running.raft.status();
        let result = running.raft.change_membership(change);
        self.fail_on(|w| w.finish_step(index, before, Vec::new()));
        result
    }

    /// Starts server `id` (if it is not running yet) and asks `leader` to add
    /// it, at the address `sim:<id>`.
    pub fn add(&mut self, leader: NodeId, id: NodeId) -> Result<u64, MembershipError> {
        if !self.world.nodes[self.index(id)].born {
            self.join(id);
        }
        let address = format!("sim:{id}");
        self.change(leader, MembershipChange::Add { id, address })
    }

    /// Asks `leader` to remove server `id`.
    pub fn remove(&mut self, leader: NodeId, id: NodeId) -> Result<u64, MembershipError> {
        self.change(leader, MembershipChange::Remove { id })
    }

    /// Server `id`'s configuration and the index of the entry holding it,
    /// if it is running.
    pub fn configuration(&self, id: NodeId) -> Option<(Configuration, Index)> {
        self.status(id)
            .map(|s| (s.configuration, s.configuration_index))
    }

    /// Sends `GET key` to server `id` as a client would (a read served by
    /// ReadIndex, thesis §6.4), and returns a ticket for [`Scenario::reply`].
    pub fn get(&mut self, id: NodeId, key: &str) -> u64 {
        self.requests += 1;
        let ticket = self.requests;
        let index = self.index(id);
        self.world.begin_step();
        if self.world.recording() {
            let what = What::ClientRequest {
                client: 0,
                request: ticket,
                op: "get",
                text: Some(format!("GET {key}").into()),
            };
            self.world.record(index, what);
        }
        let input = StepInput::Client {
            client: SCRIPT_CLIENT,
            attempt: ticket,
            op: Op {
                client_id: 0,
                seq: 0,
                command: Command::Get(key.into()),
            },
        };
        self.fail_on(|w| w.step(index, Some(input)));
        ticket
    }

    /// The reply to request `ticket`, once there is one (a server also
    /// answers `ERR TIMEOUT` after its request timeout).
    pub fn reply(&self, ticket: u64) -> Option<&str> {
        self.world.script_replies.get(&ticket).map(String::as_str)
    }

    /// The value of `key` in server `id`'s state machine.
    pub fn value(&self, id: NodeId, key: &str) -> Option<String> {
        let node = &self.world.nodes[self.index(id)];
        let running = node.running.as_ref()?;
        running
            .applier
            .state_machine()
            .kv()
            .value(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}
