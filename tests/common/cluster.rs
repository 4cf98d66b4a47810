//! A Raft cluster on the simulated network, with the course tester's helpers.
//!
//! Servers are numbered 0..n in tests (Raft ids 1..=n). Every server's apply
//! channel is consumed by a checker thread that fails the test if a server applies
//! out of order, skips an index, or applies a command that differs from what
//! another server applied at the same index (State Machine Safety, §5.4.3).
//! In snapshot mode the checker also snapshots every 10 entries, synchronously
//! from the apply thread, as the course's part D tester does.

use std::collections::BTreeMap;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raftkv::codec::{Decoder, Encoder};
use raftkv::node::Node;
use raftkv::raft::rng::Rng;
use raftkv::raft::{ApplyMsg, Config, NodeId};
use raftkv::storage::memory::MemoryStorage;

use super::network::Network;

/// Tick of every node's clock.
pub const TICK: Duration = Duration::from_millis(10);
/// The election timeout the tester budgets for (the course's RAFT_ELECTION_TIMEOUT).
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
/// Every test must finish within this.
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(120);

/// What each server has applied, checked as it happens.
#[derive(Default)]
struct Applied {
    /// Per server: index → command.
    logs: Vec<BTreeMap<u64, Vec<u8>>>,
    /// Per server: highest index applied (or restored from a snapshot).
    last_applied: Vec<u64>,
    /// Per server: the incarnation whose messages count; older ones are zombies.
    incarnation: Vec<u64>,
    /// Highest index any server applied.
    max_index: u64,
    /// The first safety violation seen, if any.
    error: Option<String>,
}

impl Applied {
    fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(why);
        }
    }

    /// §5.4.3 State Machine Safety: no two servers apply different commands at an index.
    fn apply_command(&mut self, server: usize, index: u64, command: Vec<u8>) {
        if index != self.last_applied[server] + 1 {
            let last = self.last_applied[server];
            self.fail(format!(
                "server {server} applied index {index} out of order (last applied {last})"
            ));
            return;
        }
        for (other, log) in self.logs.iter().enumerate() {
            if let Some(theirs) = log.get(&index) {
                if *theirs != command {
                    let (a, b) = (show(&command), show(theirs));
                    self.fail(format!(
                        "commit index={index} server={server} {a} != server={other} {b}"
                    ));
                    return;
                }
            }
        }
        self.logs[server].insert(index, command);
        self.last_applied[server] = index;
        self.max_index = self.max_index.max(index);
    }

    fn apply_snapshot(&mut self, server: usize, index: u64, data: &[u8]) {
        if index < self.last_applied[server] {
            let last = self.last_applied[server];
            self.fail(format!(
                "server {server} got a snapshot at {index}, behind its applied index {last}"
            ));
            return;
        }
        match decode_snapshot(data) {
            Some((snap_index, commands)) if snap_index == index => {
                let log: BTreeMap<u64, Vec<u8>> = (1..).zip(commands).collect();
                self.logs[server] = log;
                self.last_applied[server] = index;
            }
            _ => self.fail(format!("server {server} got an undecodable snapshot")),
        }
    }
}

/// Human-readable form of a test command.
pub fn show(command: &[u8]) -> String {
    match std::str::from_utf8(command) {
        Ok(s) if s.len() <= 40 => s.to_string(),
        _ => format!("<{} bytes>", command.len()),
    }
}

/// A test command from a number.
pub fn cmd(x: u64) -> Vec<u8> {
    x.to_string().into_bytes()
}

/// The tester's snapshot format: the last index, then every command through it.
fn encode_snapshot(index: u64, log: &BTreeMap<u64, Vec<u8>>) -> Vec<u8> {
    let mut e = Encoder::new();
    e.put_uvarint(index);
    let commands: Vec<Vec<u8>> = (1..=index)
        .map(|i| log.get(&i).cloned().unwrap_or_default())
        .collect();
    e.put_seq(&commands);
    e.finish()
}

fn decode_snapshot(data: &[u8]) -> Option<(u64, Vec<Vec<u8>>)> {
    let mut d = Decoder::new(data);
    let index = d.get_uvarint().ok()?;
    let commands: Vec<Vec<u8>> = d.get_seq().ok()?;
    (commands.len() as u64 == index).then_some((index, commands))
}

/// Seeds tests from the clock, printing the seed so a failure can be replayed.
pub fn fresh_seed() -> u64 {
    if let Some(seed) = std::env::var("RAFTKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Quiets node logs unless `RAFTKV_LOG=1` (or `=2` for detail).
pub fn init_logging() {
    match std::env::var("RAFTKV_LOG").as_deref() {
        Ok("1") => raftkv::logger::set_quiet(false),
        Ok("2") => raftkv::logger::set_verbose(true),
        _ => raftkv::logger::set_quiet(true),
    }
}

/// The servers' mutable parts, changed by crashes and restarts.
struct Servers {
    nodes: Vec<Option<Arc<Node>>>,
    storages: Vec<Arc<MemoryStorage>>,
    connected: Vec<bool>,
    appliers: Vec<Option<JoinHandle<()>>>,
}

/// What `begin` noted, for the summary line `end` prints.
struct Stats {
    desc: String,
    started: Instant,
    rpcs_at_start: u64,
    bytes_at_start: u64,
    max_index_at_start: u64,
}

/// A cluster of `n` Raft servers and the course tester's checks. Every method
/// takes `&self`, so client threads can run while the test injects faults.
pub struct Cluster {
    /// Number of servers.
    pub n: usize,
    net: Network,
    servers: Mutex<Servers>,
    applied: Arc<Mutex<Applied>>,
    snapshots: bool,
    rng: Mutex<Rng>,
    stats: Mutex<Stats>,
}

/// The options of a [`Cluster`] about to start.
#[must_use]
pub struct ClusterBuilder {
    servers: usize,
    unreliable: bool,
    snapshots: bool,
}

impl ClusterBuilder {
    /// The network drops, delays and reorders messages.
    pub fn unreliable(self) -> Self {
        self.unreliable_if(true)
    }

    /// The network is unreliable if `on` (for tests run both ways).
    pub fn unreliable_if(mut self, on: bool) -> Self {
        self.unreliable = on;
        self
    }

    /// The apply checker snapshots every 10 entries, as the course's part D
    /// tester does.
    pub fn snapshots(mut self) -> Self {
        self.snapshots = true;
        self
    }

    /// Starts the servers, connected.
    pub fn start(self) -> Cluster {
        Cluster::launch(self)
    }
}

impl Cluster {
    /// How to start a cluster of `servers`: reliable, without snapshots,
    /// unless the builder says otherwise
    /// (`Cluster::builder(3).unreliable().snapshots().start()`).
    pub fn builder(servers: usize) -> ClusterBuilder {
        ClusterBuilder {
            servers,
            unreliable: false,
            snapshots: false,
        }
    }

    fn launch(options: ClusterBuilder) -> Cluster {
        let ClusterBuilder {
            servers: n,
            unreliable,
            snapshots,
        } = options;
        init_logging();
        let seed = fresh_seed();
        let net = Network::new(seed);
        net.set_reliable(!unreliable);
        let cluster = Cluster {
            n,
            net,
            servers: Mutex::new(Servers {
                nodes: (0..n).map(|_| None).collect(),
                storages: (0..n).map(|_| Arc::new(MemoryStorage::new())).collect(),
                connected: vec![false; n],
                appliers: (0..n).map(|_| None).collect(),
            }),
            applied: Arc::new(Mutex::new(Applied {
                logs: vec![BTreeMap::new(); n],
                last_applied: vec![0; n],
                incarnation: vec![0; n],
                ..Applied::default()
            })),
            snapshots,
            rng: Mutex::new(Rng::new(seed ^ 0x5eed)),
            stats: Mutex::new(Stats {
                desc: String::new(),
                started: Instant::now(),
                rpcs_at_start: 0,
                bytes_at_start: 0,
                max_index_at_start: 0,
            }),
        };
        eprintln!("seed {seed} (set RAFTKV_SEED to replay the network's choices)");
        for i in 0..n {
            cluster.restart(i);
        }
        for i in 0..n {
            cluster.connect(i);
        }
        cluster
    }

    /// Raft id of server `i`.
    fn id(i: usize) -> NodeId {
        i as NodeId + 1
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn servers(&self) -> MutexGuard<'_, Servers> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A random number in `0..below` from the test's seeded generator.
    pub fn random(&self, below: u64) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range(0, below)
    }

    /// Marks the start of a test, for its summary line.
    pub fn begin(&self, desc: &str) {
        eprintln!("{desc} ...");
        let max_index = self.max_index();
        let mut stats = self.stats();
        stats.desc = desc.to_string();
        stats.started = Instant::now();
        stats.rpcs_at_start = self.net.total_calls();
        stats.bytes_at_start = self.net.total_bytes();
        stats.max_index_at_start = max_index;
    }

    /// Checks the time limit and the apply checker, then prints a one-line summary.
    pub fn end(&self) {
        self.check_apply_error();
        let max_index = self.max_index();
        let stats = self.stats();
        let elapsed = stats.started.elapsed();
        assert!(
            elapsed <= TEST_TIME_LIMIT,
            "test took {elapsed:?}, longer than {TEST_TIME_LIMIT:?}"
        );
        let rpcs = self.net.total_calls() - stats.rpcs_at_start;
        let bytes = self.net.total_bytes() - stats.bytes_at_start;
        let agreements = max_index - stats.max_index_at_start;
        eprintln!(
            "  ... Passed --  {:4.1}s {} peers {:5} rpcs {:8} bytes {:4} agreements ({})",
            elapsed.as_secs_f64(),
            self.n,
            rpcs,
            bytes,
            agreements,
            stats.desc
        );
    }

    /// Fails the test if any server violated the apply rules.
    pub fn check_apply_error(&self) {
        if let Some(e) = self.lock().error.clone() {
            panic!("apply error: {e}");
        }
    }

    // ---- faults ----

    /// Connects server `i` to every other connected server, both ways.
    pub fn connect(&self, i: usize) {
        let mut servers = self.servers();
        servers.connected[i] = true;
        for j in 0..self.n {
            if servers.connected[j] {
                self.net.set_link(Self::id(i), Self::id(j), true);
                self.net.set_link(Self::id(j), Self::id(i), true);
            }
        }
    }

    /// Cuts every link of server `i`.
    pub fn disconnect(&self, i: usize) {
        self.servers().connected[i] = false;
        for j in 0..self.n {
            self.net.set_link(Self::id(i), Self::id(j), false);
            self.net.set_link(Self::id(j), Self::id(i), false);
        }
    }

    /// Whether server `i` is connected.
    pub fn is_connected(&self, i: usize) -> bool {
        self.servers().connected[i]
    }

    /// Kills server `i` and keeps a copy of its storage, so whatever the dying
    /// instance still writes is lost.
    pub fn crash(&self, i: usize) {
        self.disconnect(i);
        self.net.remove_server(Self::id(i));
        let mut servers = self.servers();
        if let Some(node) = servers.nodes[i].take() {
            node.kill();
        }
        if let Some(applier) = servers.appliers[i].take() {
            let _ = applier.join();
        }
        servers.storages[i] = Arc::new(servers.storages[i].copy());
    }

    /// Starts (or crashes and restarts) server `i` from its saved storage, with a
    /// new network identity. It stays disconnected until [`Cluster::connect`].
    pub fn restart(&self, i: usize) {
        self.crash(i);
        let id = Self::id(i);
        let transport = self.net.new_endpoint(id);
        let mut servers = self.servers();
        let storage = Arc::clone(&servers.storages[i]);
        let incarnation = {
            let mut applied = self.lock();
            applied.incarnation[i] += 1;
            applied.logs[i].clear();
            applied.last_applied[i] = 0;
            applied.incarnation[i]
        };
        let (tx, rx) = sync_channel(0);
        let mut config = Config::new(id, (1..=self.n as NodeId).collect());
        config.seed = fresh_seed() ^ id;
        let node =
            Arc::new(Node::new(config, TICK, transport, storage, tx).expect("a node starts"));
        self.net.add_server(id, node.clone());
        let applied = Arc::clone(&self.applied);
        let weak: Weak<Node> = Arc::downgrade(&node);
        let snapshots = self.snapshots;
        servers.appliers[i] = Some(thread::spawn(move || {
            for msg in rx {
                let mut state = applied.lock().unwrap_or_else(|e| e.into_inner());
                if state.incarnation[i] != incarnation {
                    continue; // A zombie's applies do not count.
                }
                match msg {
                    ApplyMsg::Command { index, command, .. } => {
                        state.apply_command(i, index, command);
                        if snapshots && (index + 1) % 10 == 0 && state.error.is_none() {
                            let data = encode_snapshot(index, &state.logs[i]);
                            drop(state);
                            if let Some(node) = weak.upgrade() {
                                node.snapshot(index, data);
                            }
                        }
                    }
                    ApplyMsg::Snapshot(snapshot) => {
                        let mut data = Vec::new();
                        let read = weak.upgrade().map(|node| {
                            node.open_snapshot(&snapshot)
                                .and_then(|mut r| r.read_to_end(&mut data))
                        });
                        match read {
                            Some(Ok(_)) => {
                                state.apply_snapshot(i, snapshot.last_included_index, &data)
                            }
                            _ => continue, // killed meanwhile
                        }
                    }
                    // These servers neither append no-ops nor serve reads.
                    other => state.fail(format!("server {i} delivered {other:?}")),
                }
            }
        }));
        servers.nodes[i] = Some(node);
    }

    /// Whether server `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.servers().nodes[i].is_some()
    }

    /// Makes the network unreliable (or reliable again).
    pub fn set_unreliable(&self, unreliable: bool) {
        self.net.set_reliable(!unreliable);
    }

    /// Turns long reply reordering on or off.
    pub fn set_long_reordering(&self, on: bool) {
        self.net.set_long_reordering(on);
    }

    // ---- observation ----

    /// Server `i`'s running node, if it is up.
    pub fn node(&self, i: usize) -> Option<Arc<Node>> {
        self.servers().nodes[i].clone()
    }

    /// Offers `command` to server `i`; `Some((index, term))` if it is leader.
    pub fn start(&self, i: usize, command: Vec<u8>) -> Option<(u64, u64)> {
        self.node(i)?.start(command).ok()
    }

    /// Server `i`'s term and whether it thinks it leads.
    pub fn state(&self, i: usize) -> (u64, bool) {
        self.node(i).map_or((0, false), |n| n.state())
    }

    /// RPCs that reached server `i` since it started.
    pub fn rpc_count(&self, i: usize) -> u64 {
        self.net.rpc_count(Self::id(i))
    }

    /// All calls made on the network so far.
    pub fn rpc_total(&self) -> u64 {
        self.net.total_calls()
    }

    /// All bytes carried so far.
    pub fn bytes_total(&self) -> u64 {
        self.net.total_bytes()
    }

    /// Size of server `i`'s persisted Raft state (excluding the snapshot).
    pub fn raft_state_size(&self, i: usize) -> usize {
        let storage = Arc::clone(&self.servers().storages[i]);
        storage.raft_state_size()
    }

    /// Highest index applied by any server.
    pub fn max_index(&self) -> u64 {
        self.lock().max_index
    }

    /// What server `i` applied at `index`, if anything.
    pub fn applied_at(&self, i: usize, index: u64) -> Option<Vec<u8>> {
        self.lock().logs[i].get(&index).cloned()
    }

    // ---- the course tester's checks ----

    /// Waits for exactly one leader among connected servers and returns it.
    /// Fails if some term has two leaders, or if none emerges in ~5 s.
    pub fn check_one_leader(&self) -> usize {
        for _ in 0..10 {
            let ms = 450 + self.random(100);
            thread::sleep(Duration::from_millis(ms));
            let mut leaders: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for i in (0..self.n).filter(|&i| self.is_connected(i)) {
                let (term, is_leader) = self.state(i);
                if is_leader {
                    leaders.entry(term).or_default().push(i);
                }
            }
            for (term, ids) in &leaders {
                assert!(
                    ids.len() <= 1,
                    "term {term} has {} (>1) leaders: {ids:?}",
                    ids.len()
                );
            }
            if let Some((_, ids)) = leaders.iter().next_back() {
                return ids[0];
            }
        }
        panic!("expected one leader, got none");
    }

    /// All connected servers agree on the term; returns it.
    pub fn check_terms(&self) -> u64 {
        let mut term = None;
        for i in (0..self.n).filter(|&i| self.is_connected(i)) {
            let (t, _) = self.state(i);
            match term {
                None => term = Some(t),
                Some(seen) => assert_eq!(seen, t, "servers disagree on term"),
            }
        }
        term.unwrap_or(0)
    }

    /// No connected server believes it is leader.
    pub fn check_no_leader(&self) {
        for i in (0..self.n).filter(|&i| self.is_connected(i)) {
            let (_, is_leader) = self.state(i);
            assert!(
                !is_leader,
                "expected no leader among connected servers, but {i} claims to be"
            );
        }
    }

    /// How many servers applied `index`, and what (failing if they differ).
    pub fn n_committed(&self, index: u64) -> (usize, Option<Vec<u8>>) {
        self.check_apply_error();
        let applied = self.lock();
        let mut count = 0;
        let mut command: Option<Vec<u8>> = None;
        for log in &applied.logs {
            if let Some(c) = log.get(&index) {
                if let Some(seen) = &command {
                    assert_eq!(seen, c, "committed values do not match at index {index}");
                }
                count += 1;
                command = Some(c.clone());
            }
        }
        (count, command)
    }

    /// Waits for at least `n` servers to commit `index`. Returns `None` if some
    /// server's term moves past `start_term` first (the entry may never commit).
    pub fn wait(&self, index: u64, n: usize, start_term: Option<u64>) -> Option<Vec<u8>> {
        let mut pause = Duration::from_millis(10);
        for _ in 0..30 {
            let (count, _) = self.n_committed(index);
            if count >= n {
                break;
            }
            thread::sleep(pause);
            if pause < Duration::from_secs(1) {
                pause *= 2;
            }
            if let Some(start) = start_term {
                if (0..self.n).any(|i| self.state(i).0 > start) {
                    return None; // someone has moved on; can no longer guarantee we'll win
                }
            }
        }
        let (count, command) = self.n_committed(index);
        assert!(
            count >= n,
            "only {count} decided for index {index}; wanted {n}"
        );
        command
    }

    /// Offers `command` until some leader accepts it and `expected` servers commit
    /// it, within 10 s; returns its index. Without `retry`, the first leader that
    /// accepts it must get it committed within 2 s.
    pub fn one(&self, command: Vec<u8>, expected: usize, retry: bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut starts = 0;
        while Instant::now() < deadline {
            let mut index = None;
            for _ in 0..self.n {
                starts = (starts + 1) % self.n;
                if self.is_connected(starts) {
                    if let Some((i, _)) = self.start(starts, command.clone()) {
                        index = Some(i);
                        break;
                    }
                }
            }
            if let Some(index) = index {
                // Somebody claimed to be the leader and to have submitted our command.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    let (count, got) = self.n_committed(index);
                    if count > 0 && count >= expected && got.as_deref() == Some(&command[..]) {
                        return index;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                assert!(retry, "one({}) failed to reach agreement", show(&command));
            } else {
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("one({}) failed to reach agreement", show(&command));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.net.close();
        let mut servers = self.servers();
        for node in servers.nodes.iter_mut().filter_map(Option::take) {
            node.kill();
        }
        for applier in servers.appliers.iter_mut().filter_map(Option::take) {
            let _ = applier.join();
        }
    }
}
