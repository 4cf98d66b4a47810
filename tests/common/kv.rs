//! The KV service on the simulated network, with clerks built on `src/client.rs`,
//! and the course's generic KV test (MIT 6.5840's KV labs).
//!
//! Each server is the real service stack (Raft node, replica, frontend) on one
//! network endpoint; clerks send `CLIENT id seq ...` lines over the same
//! network, seeing the servers in shuffled order. Links to KV servers fail fast
//! (0–99 ms), as in the course's KV tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use raftkv::client::{Client, Connector};
use raftkv::node::{ApplySink, Node};
use raftkv::raft::{Config, NodeId, Role};
use raftkv::service::frontend::Frontend;
use raftkv::service::replica::Replica;
use raftkv::service::reply::{Code, Reply};
use raftkv::service::snapshot_policy::SnapshotPolicy;
use raftkv::service::watch::WatchLimits;
use raftkv::storage::memory::MemoryStorage;

use super::cluster::{fresh_seed, init_logging, TICK};
use super::network::{answer_raft, FakeTransport, Handler, Network, CLIENT_CHANNEL};
use raftkv::raft::rng::Rng;
use raftkv::sim::linearizability::{check_kv, Input, Operation, Value, Verdict, DEFAULT_STEPS};

/// The election timeout the course's KV tests budget for.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a server holds a client request waiting for its outcome.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// First endpoint id used for clerks.
const FIRST_CLERK: NodeId = 1000;

/// A KV server on the simulated network: Raft RPCs and client lines.
struct KvHandler {
    frontend: Arc<Frontend>,
}

impl Handler for KvHandler {
    fn handle(&self, from: NodeId, request: &[u8]) -> Option<Vec<u8>> {
        match request.first() {
            Some(&CLIENT_CHANNEL) => {
                let line = std::str::from_utf8(&request[1..]).ok()?.trim_end();
                // No forwarding here: clerks find the leader by trying servers.
                let no_forward = |_: &str| Reply::error(Code::NoLeader, "not the leader");
                let (reply, _) = self.frontend.answer(line, &no_forward);
                Some(reply.to_string().into_bytes())
            }
            _ => answer_raft(self.frontend.replica().node(), from, request),
        }
    }
}

/// A clerk's way to the servers: the simulated network.
pub struct FakeConnector {
    transport: Arc<FakeTransport>,
    servers: Vec<NodeId>,
}

impl Connector for FakeConnector {
    fn servers(&self) -> usize {
        self.servers.len()
    }

    fn call(&mut self, server: usize, line: &str) -> std::io::Result<String> {
        let mut bytes = vec![CLIENT_CHANNEL];
        bytes.extend_from_slice(line.as_bytes());
        let reply = self
            .transport
            .call_bytes(self.servers[server], bytes)
            .map_err(std::io::Error::other)?;
        String::from_utf8(reply).map_err(std::io::Error::other)
    }
}

/// A clerk: the real client library over the simulated network.
pub struct Clerk {
    /// This clerk's network endpoint.
    pub endpoint: NodeId,
    /// The client library instance.
    pub client: Client<FakeConnector>,
}

struct Servers {
    frontends: Vec<Option<Arc<Frontend>>>,
    storages: Vec<Arc<MemoryStorage>>,
}

/// A cluster of KV servers and the course tester's helpers.
pub struct KvCluster {
    /// Number of servers.
    pub n: usize,
    net: Network,
    servers: Mutex<Servers>,
    /// Snapshot threshold; `None` means never snapshot.
    pub maxraftstate: Option<usize>,
    next_clerk: AtomicU64,
    rng: Mutex<Rng>,
    started: Mutex<(String, Instant)>,
}

/// The options of a [`KvCluster`] about to start.
#[must_use]
pub struct KvClusterBuilder {
    servers: usize,
    unreliable: bool,
    maxraftstate: Option<usize>,
}

impl KvClusterBuilder {
    /// The network drops and delays messages.
    pub fn unreliable(self) -> Self {
        self.unreliable_if(true)
    }

    /// The network is unreliable if `on` (for tests run both ways).
    pub fn unreliable_if(mut self, on: bool) -> Self {
        self.unreliable = on;
        self
    }

    /// Servers snapshot to keep their persisted Raft state near `bytes`
    /// (the course's `maxraftstate`).
    pub fn max_raft_state(mut self, bytes: usize) -> Self {
        self.maxraftstate = Some(bytes);
        self
    }

    /// Starts the servers, connected.
    pub fn start(self) -> KvCluster {
        KvCluster::launch(self)
    }
}

impl KvCluster {
    /// How to start `servers` KV servers: on a reliable network, never
    /// snapshotting, unless the builder says otherwise
    /// (`KvCluster::builder(5).unreliable().max_raft_state(1000).start()`).
    pub fn builder(servers: usize) -> KvClusterBuilder {
        KvClusterBuilder {
            servers,
            unreliable: false,
            maxraftstate: None,
        }
    }

    fn launch(options: KvClusterBuilder) -> KvCluster {
        let KvClusterBuilder {
            servers: n,
            unreliable,
            maxraftstate,
        } = options;
        init_logging();
        let seed = fresh_seed();
        eprintln!("seed {seed} (set RAFTKV_SEED to replay the network's choices)");
        let net = Network::new(seed);
        net.set_reliable(!unreliable);
        net.set_long_delays(false);
        let cluster = KvCluster {
            n,
            net,
            servers: Mutex::new(Servers {
                frontends: (0..n).map(|_| None).collect(),
                storages: (0..n).map(|_| Arc::new(MemoryStorage::new())).collect(),
            }),
            maxraftstate,
            next_clerk: AtomicU64::new(FIRST_CLERK),
            rng: Mutex::new(Rng::new(seed ^ 0xc1e4)),
            started: Mutex::new((String::new(), Instant::now())),
        };
        for i in 0..n {
            cluster.start_server(i);
        }
        cluster.connect_all();
        cluster
    }

    fn id(i: usize) -> NodeId {
        i as NodeId + 1
    }

    fn servers(&self) -> MutexGuard<'_, Servers> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A random number in `0..below`.
    pub fn random(&self, below: u64) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range(0, below)
    }

    /// Marks the start of a test part.
    pub fn begin(&self, desc: &str) {
        eprintln!("{desc} ...");
        *self.started.lock().unwrap() = (desc.to_string(), Instant::now());
    }

    /// Prints the part's summary line.
    pub fn end(&self) {
        let (desc, started) = self.started.lock().unwrap().clone();
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(120),
            "{desc} took {elapsed:?}"
        );
        eprintln!(
            "  ... Passed --  {:4.1}s {} peers {:6} rpcs ({desc})",
            elapsed.as_secs_f64(),
            self.n,
            self.net.total_calls()
        );
    }

    // ---- servers ----

    /// Starts server `i` from its saved storage (a crashed server's copy).
    pub fn start_server(&self, i: usize) {
        let id = Self::id(i);
        let transport = self.net.new_endpoint(id);
        let mut servers = self.servers();
        let storage = Arc::clone(&servers.storages[i]);
        let mut config = Config::new(id, (1..=self.n as NodeId).collect());
        // As the server: reads are served by ReadIndex (thesis §6.4).
        config.noop_on_election = true;
        config.seed = fresh_seed() ^ id;
        let (apply_tx, apply_rx) = channel();
        let sink = ApplySink::Batches(apply_tx);
        let node = Node::with_sink(config, TICK, transport, storage, sink).expect("node starts");
        // Snapshot when the log holds about half the limit in commands, so the
        // persisted state (commands plus per-entry overhead) stays well under it.
        let snapshot_bytes = self.maxraftstate.map_or(usize::MAX, |l| l / 2);
        let policy = SnapshotPolicy {
            log_bytes: snapshot_bytes,
            scale_with_state: false,
        };
        // The course tests never watch: a small history keeps the many servers
        // one test binary runs (and restarts) from holding 16 MiB each.
        let watch = WatchLimits {
            history_bytes: 256 << 10,
            ..WatchLimits::default()
        };
        let replica = Replica::start(Arc::new(node), apply_rx, policy, watch);
        let frontend = Arc::new(Frontend::new(replica, REQUEST_TIMEOUT));
        self.net.add_server(
            id,
            Arc::new(KvHandler {
                frontend: Arc::clone(&frontend),
            }),
        );
        servers.frontends[i] = Some(frontend);
    }

    /// Crashes server `i`: it stops, and its storage is copied so nothing it
    /// writes while dying survives.
    pub fn shutdown_server(&self, i: usize) {
        self.net.remove_server(Self::id(i));
        let mut servers = self.servers();
        if let Some(frontend) = servers.frontends[i].take() {
            frontend.replica().shutdown();
        }
        servers.storages[i] = Arc::new(servers.storages[i].copy());
    }

    /// Persisted Raft state of the largest server.
    pub fn log_size(&self) -> usize {
        let storages: Vec<_> = self.servers().storages.clone();
        storages
            .iter()
            .map(|s| s.raft_state_size())
            .max()
            .unwrap_or(0)
    }

    /// Snapshot size of the largest server.
    pub fn snapshot_size(&self) -> usize {
        let storages: Vec<_> = self.servers().storages.clone();
        storages
            .iter()
            .map(|s| s.snapshot().size as usize)
            .max()
            .unwrap_or(0)
    }

    /// The servers' frontends (running ones).
    pub fn frontends(&self) -> Vec<Option<Arc<Frontend>>> {
        self.servers().frontends.clone()
    }

    /// The server that currently believes it leads, if any.
    pub fn leader(&self) -> Option<usize> {
        self.frontends().iter().position(|f| {
            f.as_ref()
                .is_some_and(|f| f.replica().node().status().role == Role::Leader)
        })
    }

    // ---- connectivity ----

    /// Splits the servers into two groups that cannot talk to each other.
    pub fn partition(&self, p1: &[usize], p2: &[usize]) {
        for group in [p1, p2] {
            for &a in group {
                for b in 0..self.n {
                    let up = group.contains(&b);
                    self.net.set_link(Self::id(a), Self::id(b), up);
                    self.net.set_link(Self::id(b), Self::id(a), up);
                }
            }
        }
    }

    /// Reconnects every server to every other.
    pub fn connect_all(&self) {
        let all: Vec<usize> = (0..self.n).collect();
        self.partition(&all, &[]);
    }

    /// Two groups, the current leader (if any) in the 2-server minority `p2`.
    pub fn make_partition(&self) -> (Vec<usize>, Vec<usize>) {
        let leader = self.leader().unwrap_or(0);
        let p2 = vec![leader, (leader + 1) % self.n];
        let p1 = (0..self.n).filter(|i| !p2.contains(i)).collect();
        (p1, p2)
    }

    /// A clerk that can reach the servers in `to`.
    pub fn make_clerk(&self, to: &[usize]) -> Clerk {
        let endpoint = self.next_clerk.fetch_add(1, Ordering::SeqCst);
        let transport = self.net.new_endpoint(endpoint);
        let mut order: Vec<NodeId> = (0..self.n).map(Self::id).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.random(i as u64 + 1) as usize);
        }
        let mut client = Client::with_connector(FakeConnector {
            transport,
            servers: order,
        });
        client.deadline = Duration::from_secs(100);
        self.connect_clerk(endpoint, to);
        Clerk { endpoint, client }
    }

    /// Lets the clerk at `endpoint` reach exactly the servers in `to`.
    pub fn connect_clerk(&self, endpoint: NodeId, to: &[usize]) {
        for s in 0..self.n {
            let up = to.contains(&s);
            self.net.set_link(endpoint, Self::id(s), up);
            self.net.set_link(Self::id(s), endpoint, up);
        }
    }

    /// Every server index.
    pub fn all(&self) -> Vec<usize> {
        (0..self.n).collect()
    }

    /// Makes the network unreliable or reliable.
    pub fn set_unreliable(&self, unreliable: bool) {
        self.net.set_reliable(!unreliable);
    }
}

impl Drop for KvCluster {
    fn drop(&mut self) {
        self.net.close();
        let frontends: Vec<_> = self
            .servers()
            .frontends
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for f in frontends {
            f.replica().shutdown();
        }
    }
}

// ---- operations, recorded for the linearizability check ----

/// Every operation the clerks performed, with real-time intervals.
///
/// A read's output is kept as a prefix of a text shared by the reads of its
/// key (a linearizability `Value`): a key that is only appended to holds
/// one growing value, which every read of it returns a prefix of, so the log
/// holds it once rather than once per read. (Kept whole, the outputs of a
/// few tens of thousands of reads of such a key take gigabytes.)
#[derive(Default)]
pub struct OpLog {
    start: Option<Instant>,
    recorded: Mutex<Recorded>,
}

/// The operations so far, with their outputs set aside as shared texts.
#[derive(Default)]
struct Recorded {
    /// The operations, `output` left `None`...
    ops: Vec<Operation>,
    /// ... and each one's output: the first `len` bytes of `texts[text]`.
    outputs: Vec<Option<(usize, usize)>>,
    /// Texts that outputs are prefixes of.
    texts: Vec<String>,
    /// The texts of each key's outputs.
    texts_of_key: HashMap<String, Vec<usize>>,
}

impl Recorded {
    /// Where `output`, read from `key`, is kept: a text it is a prefix of,
    /// or one that it extends (which grows), or else a new one.
    fn share(&mut self, key: &str, output: String) -> (usize, usize) {
        let len = output.len();
        let ids = self.texts_of_key.entry(key.to_string()).or_default();
        for &id in ids.iter() {
            let text = &mut self.texts[id];
            if text.starts_with(&output) {
                return (id, len);
            }
            if output.starts_with(text.as_str()) {
                text.push_str(&output[text.len()..]);
                return (id, len);
            }
        }
        ids.push(self.texts.len());
        self.texts.push(output);
        (self.texts.len() - 1, len)
    }
}

impl OpLog {
    /// An empty log whose clock starts now.
    pub fn new() -> Self {
        OpLog {
            start: Some(Instant::now()),
            recorded: Mutex::default(),
        }
    }

    fn now(&self) -> u64 {
        self.start.map_or(0, |s| s.elapsed().as_nanos() as u64)
    }

    fn record(&self, op: Operation, output: Option<String>) {
        let mut recorded = self.recorded.lock().unwrap();
        let key = match &op.input {
            Input::Get(k) | Input::Put(k, _) | Input::Append(k, _) => k.clone(),
            Input::Cas { key, .. } => key.clone(),
        };
        let shared = output.map(|o| recorded.share(&key, o));
        recorded.ops.push(op);
        recorded.outputs.push(shared);
    }

    /// The history, each read's output a prefix of its key's shared text.
    /// (Taken, not copied: the history is the largest thing a KV test holds.)
    pub fn into_history(self) -> Vec<Operation> {
        let recorded = self
            .recorded
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let texts: Vec<Arc<str>> = recorded.texts.into_iter().map(Arc::from).collect();
        recorded
            .ops
            .into_iter()
            .zip(recorded.outputs)
            .map(|(op, output)| Operation {
                output: output.map(|(id, len)| {
                    Value::prefix(&texts[id], len).expect("a recorded output is a prefix")
                }),
                ..op
            })
            .collect()
    }
}

/// Runs one clerk operation, logging it (if `log` is given) with its interval.
fn run(
    log: Option<&OpLog>,
    client: usize,
    input: Input,
    f: impl FnOnce() -> std::io::Result<Option<String>>,
) -> Option<String> {
    let call = log.map_or(0, OpLog::now);
    let result = f();
    let ret = log.map_or(0, OpLog::now);
    let (output, ret) = match result {
        Ok(output) => (output, Some(ret)),
        Err(e) => panic!("clerk {client} gave up on {input:?}: {e}"),
    };
    if let Some(log) = log {
        let op = Operation {
            client,
            input,
            output: None,
            call,
            ret,
        };
        log.record(op, output.clone());
    }
    output
}

/// `Get`, logged.
pub fn get(ck: &mut Clerk, key: &str, log: Option<&OpLog>, cli: usize) -> String {
    run(log, cli, Input::Get(key.into()), || ck.client.get(key)).unwrap_or_default()
}

/// `Put`, logged.
pub fn put(ck: &mut Clerk, key: &str, value: &str, log: Option<&OpLog>, cli: usize) {
    run(log, cli, Input::Put(key.into(), value.into()), || {
        ck.client.put(key, value).map(|_| None)
    });
}

/// `Append`, logged.
pub fn append(ck: &mut Clerk, key: &str, value: &str, log: Option<&OpLog>, cli: usize) {
    run(log, cli, Input::Append(key.into(), value.into()), || {
        ck.client.append(key, value).map(|_| None)
    });
}

/// Fails unless `key` holds `value`.
pub fn check(ck: &mut Clerk, key: &str, value: &str) {
    let v = get(ck, key, None, 0);
    assert_eq!(v, value, "get({key}): wrong value");
}

/// Client `clnt`'s appends `x clnt j y` for `j < count` each appear exactly once,
/// in order.
pub fn check_clnt_appends(clnt: usize, v: &str, count: usize) {
    let mut last = None;
    for j in 0..count {
        let wanted = format!("x {clnt} {j} y");
        let off = v
            .find(&wanted)
            .unwrap_or_else(|| panic!("{clnt} missing element {wanted} in Append result"));
        assert!(
            v.rfind(&wanted) == Some(off),
            "duplicate element {wanted} in Append result"
        );
        if let Some(last) = last {
            assert!(
                off > last,
                "wrong order for element {wanted} in Append result"
            );
        }
        last = Some(off);
    }
}

/// Every client's appends appear exactly once, in order.
pub fn check_concurrent_appends(v: &str, counts: &[usize]) {
    for (i, &n) in counts.iter().enumerate() {
        check_clnt_appends(i, v, n);
    }
}

/// The parameters of the course's generic KV test. Start from
/// [`Generic::new`] and name what differs:
/// `Generic { clients: 5, unreliable: true, ..Generic::new("name") }`.
pub struct Generic {
    /// Test name.
    pub name: &'static str,
    /// Concurrent clients.
    pub clients: usize,
    /// Servers.
    pub servers: usize,
    /// Drop and delay messages.
    pub unreliable: bool,
    /// Crash and restart every server each round.
    pub crash: bool,
    /// Run the random partitioner.
    pub partitions: bool,
    /// Snapshot threshold.
    pub maxraftstate: Option<usize>,
    /// Clients use random keys (and Put); no per-client value check.
    pub randomkeys: bool,
}

impl Generic {
    /// One client, five servers, no faults, no snapshots, a key per client.
    pub fn new(name: &'static str) -> Generic {
        Generic {
            name,
            clients: 1,
            servers: 5,
            unreliable: false,
            crash: false,
            partitions: false,
            maxraftstate: None,
            randomkeys: false,
        }
    }
}

/// Random two-sided splits every 1–1.2 s until `done`.
fn partitioner(cfg: &KvCluster, done: &AtomicBool) {
    while !done.load(Ordering::SeqCst) {
        let side: Vec<u64> = (0..cfg.n).map(|_| cfg.random(2)).collect();
        let p0: Vec<usize> = (0..cfg.n).filter(|&i| side[i] == 0).collect();
        let p1: Vec<usize> = (0..cfg.n).filter(|&i| side[i] == 1).collect();
        cfg.partition(&p0, &p1);
        let pause = ELECTION_TIMEOUT + Duration::from_millis(cfg.random(200));
        let until = Instant::now() + pause;
        while Instant::now() < until && !done.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(20));
        }
    }
}

/// At most this many generic tests run at once in one test binary, however
/// many cores the test harness uses. Each holds a few hundred MB at the end
/// of its rounds (clients run as fast as the cluster commits, and without
/// snapshots five servers keep their whole log, twice: in the core and in
/// storage), so this bounds a binary's memory on any machine.
const MAX_GENERIC_AT_ONCE: usize = 2;

/// Generic tests running now, and a signal when one ends.
static GENERIC_RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A generic test's turn to run; the next may start when it is dropped.
struct GenericSlot;

impl GenericSlot {
    fn take() -> GenericSlot {
        let (running, ended) = &GENERIC_RUNNING;
        let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= MAX_GENERIC_AT_ONCE {
            running = ended.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        GenericSlot
    }
}

impl Drop for GenericSlot {
    fn drop(&mut self) {
        let (running, ended) = &GENERIC_RUNNING;
        *running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        ended.notify_one();
    }
}

/// The course's generic test: three rounds of 5 s of concurrent clients with the
/// chosen faults, then checks (appends exactly once and in order, log trimmed,
/// no snapshots without a limit) and a linearizability check of the history.
pub fn generic_test(p: Generic) {
    const ROUND: Duration = Duration::from_secs(5);
    let _slot = GenericSlot::take();
    let mut builder = KvCluster::builder(p.servers).unreliable_if(p.unreliable);
    if let Some(bytes) = p.maxraftstate {
        builder = builder.max_raft_state(bytes);
    }
    let cfg = builder.start();
    cfg.begin(p.name);
    let log = OpLog::new();
    let mut ck = cfg.make_clerk(&cfg.all());
    for _ in 0..3 {
        let done_clients = AtomicBool::new(false);
        let done_partitioner = AtomicBool::new(false);
        let counts: Vec<usize> = thread::scope(|s| {
            let clients: Vec<_> = (0..p.clients)
                .map(|cli| {
                    let (cfg, log, done) = (&cfg, &log, &done_clients);
                    let randomkeys = p.randomkeys;
                    let nclients = p.clients as u64;
                    s.spawn(move || {
                        let mut myck = cfg.make_clerk(&cfg.all());
                        let mut j = 0;
                        let mut last = String::new();
                        if !randomkeys {
                            put(&mut myck, &cli.to_string(), &last, Some(log), cli);
                        }
                        while !done.load(Ordering::SeqCst) {
                            let key = if randomkeys {
                                cfg.random(nclients).to_string()
                            } else {
                                cli.to_string()
                            };
                            let nv = format!("x {cli} {j} y");
                            if cfg.random(1000) < 500 {
                                append(&mut myck, &key, &nv, Some(log), cli);
                                if !randomkeys {
                                    last.push_str(&nv);
                                }
                                j += 1;
                            } else if randomkeys && cfg.random(1000) < 100 {
                                // Only with random keys: it would break the Get check below.
                                put(&mut myck, &key, &nv, Some(log), cli);
                                j += 1;
                            } else {
                                let v = get(&mut myck, &key, Some(log), cli);
                                if !randomkeys {
                                    assert_eq!(v, last, "get wrong value, key {key}");
                                }
                            }
                        }
                        j
                    })
                })
                .collect();
            let partitioner_thread = p.partitions.then(|| {
                let (cfg, done) = (&cfg, &done_partitioner);
                s.spawn(move || {
                    // Let the clients make some progress uninterrupted first.
                    sleep(Duration::from_secs(1));
                    partitioner(cfg, done)
                })
            });
            sleep(ROUND);
            done_clients.store(true, Ordering::SeqCst);
            done_partitioner.store(true, Ordering::SeqCst);
            if let Some(t) = partitioner_thread {
                t.join().expect("partitioner");
                // A client may have a request stuck in a minority: reconnect, and
                // give the minority time to learn of the new term.
                cfg.connect_all();
                sleep(ELECTION_TIMEOUT);
            }
            if p.crash {
                for i in 0..p.servers {
                    cfg.shutdown_server(i);
                }
                sleep(ELECTION_TIMEOUT);
                for i in 0..p.servers {
                    cfg.start_server(i);
                }
                cfg.connect_all();
            }
            clients
                .into_iter()
                .map(|c| c.join().expect("client"))
                .collect()
        });
        for (i, &j) in counts.iter().enumerate() {
            let v = get(&mut ck, &i.to_string(), Some(&log), 0);
            if !p.randomkeys {
                check_clnt_appends(i, &v, j);
            }
        }
        if let Some(limit) = p.maxraftstate {
            // After the servers processed everything and had time to snapshot.
            let size = cfg.log_size();
            assert!(
                size <= 8 * limit,
                "logs were not trimmed ({size} > 8*{limit})"
            );
        } else {
            let size = cfg.snapshot_size();
            assert_eq!(size, 0, "snapshot used ({size} bytes) without a limit");
        }
    }
    let history = log.into_history();
    // A search that runs out of steps proves nothing: that fails the test too.
    match check_kv(&history, DEFAULT_STEPS) {
        Verdict::Linearizable => {}
        verdict => panic!(
            "linearizability check of {} operations: {verdict:?}",
            history.len()
        ),
    }
    cfg.end();
}

/// 1000 sequential appends must average under a third of a heartbeat interval
/// (100 ms): commits must not wait for the next heartbeat.
pub fn speed_test(name: &str, maxraftstate: Option<usize>) {
    const OPS: usize = 1000;
    let mut builder = KvCluster::builder(3);
    if let Some(bytes) = maxraftstate {
        builder = builder.max_raft_state(bytes);
    }
    let cfg = builder.start();
    let mut ck = cfg.make_clerk(&cfg.all());
    cfg.begin(name);
    // Wait until the first op completes, so a leader is elected.
    get(&mut ck, "x", None, 0);
    let start = Instant::now();
    for i in 0..OPS {
        append(&mut ck, "x", &format!("x 0 {i} y"), None, 0);
    }
    let per_op = start.elapsed() / OPS as u32;
    let v = get(&mut ck, "x", None, 0);
    check_clnt_appends(0, &v, OPS);
    eprintln!("  {per_op:?} per op");
    assert!(
        per_op < Duration::from_micros(33_333),
        "operations completed too slowly: {per_op:?}/op"
    );
    cfg.end();
}
