//! A simulated network that drops, delays, reorders and partitions RPCs.
//!
//! It reproduces the course's `labrpc` (MIT 6.5840's labs): every
//! call is real bytes (encode → deliver → decode); an unreliable network delays
//! requests 0–26 ms and drops 10 % of requests and 10 % of replies; long
//! reordering holds back 2/3 of replies for 200–2200 ms; a call over a disabled
//! link or to a dead server fails only after a random wait (0–7 s with long
//! delays, else 0–100 ms). A server that crashes while handling a call never
//! produces a successful reply. Every wait wakes early when the caller crashes or
//! the network closes, so killed servers' threads end promptly.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use raftkv::codec::{Decode, Encode};
use raftkv::node::Node;
use raftkv::raft::messages::{NodeId, Request, Response};
use raftkv::raft::rng::Rng;
use raftkv::transport::{TransportError, Transporter};

/// Something that answers RPCs delivered as bytes.
pub trait Handler: Send + Sync {
    /// Handles one request from `from`; `None` means "no reply" (e.g. shut down).
    fn handle(&self, from: NodeId, request: &[u8]) -> Option<Vec<u8>>;
}

/// First byte of a Raft peer request on the simulated network.
pub const RAFT_CHANNEL: u8 = b'R';
/// First byte of a client request line on the simulated network.
pub const CLIENT_CHANNEL: u8 = b'C';

/// A Raft node answers peer RPCs.
impl Handler for Node {
    fn handle(&self, from: NodeId, request: &[u8]) -> Option<Vec<u8>> {
        answer_raft(self, from, request)
    }
}

/// Decodes a `RAFT_CHANNEL` request, hands it to `node`, encodes the reply.
pub fn answer_raft(node: &Node, from: NodeId, request: &[u8]) -> Option<Vec<u8>> {
    let body = request.strip_prefix(&[RAFT_CHANNEL])?;
    let request = Request::decode(body).ok()?;
    node.handle_rpc(from, request).map(|r| r.encode())
}

struct Server {
    handler: Arc<dyn Handler>,
    incarnation: u64,
}

struct State {
    reliable: bool,
    long_reordering: bool,
    long_delays: bool,
    closed: bool,
    /// Directed links that are up.
    links: HashSet<(NodeId, NodeId)>,
    servers: HashMap<NodeId, Server>,
    /// The current incarnation of each endpoint; calls stamped with an older one fail.
    incarnations: HashMap<NodeId, u64>,
    rng: Rng,
}

struct Inner {
    state: Mutex<State>,
    /// Notified when an endpoint crashes or the network closes.
    wake: Condvar,
    total_calls: AtomicU64,
    total_bytes: AtomicU64,
    /// RPCs that reached each server's handler since its last restart.
    rpc_counts: Mutex<HashMap<NodeId, u64>>,
}

/// The simulated network shared by every endpoint of one test.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl Network {
    /// A reliable network with every link down and long delays on.
    pub fn new(seed: u64) -> Self {
        Network {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    reliable: true,
                    long_reordering: false,
                    long_delays: true,
                    closed: false,
                    links: HashSet::new(),
                    servers: HashMap::new(),
                    incarnations: HashMap::new(),
                    rng: Rng::new(seed),
                }),
                wake: Condvar::new(),
                total_calls: AtomicU64::new(0),
                total_bytes: AtomicU64::new(0),
                rpc_counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Unreliable: delays of 0–26 ms and 10 % of requests and replies dropped.
    pub fn set_reliable(&self, reliable: bool) {
        self.inner.lock().reliable = reliable;
    }

    /// Holds back 2/3 of replies for 200–2200 ms.
    pub fn set_long_reordering(&self, on: bool) {
        self.inner.lock().long_reordering = on;
    }

    /// Calls over dead links fail after 0–7 s (on) or 0–100 ms (off).
    pub fn set_long_delays(&self, on: bool) {
        self.inner.lock().long_delays = on;
    }

    /// Brings the directed link `from → to` up or down.
    pub fn set_link(&self, from: NodeId, to: NodeId, up: bool) {
        let mut state = self.inner.lock();
        if up {
            state.links.insert((from, to));
        } else {
            state.links.remove(&(from, to));
        }
    }

    /// Starts a new incarnation of endpoint `id`: calls from or to any earlier
    /// incarnation fail from now on. Returns the transport the new one sends with.
    pub fn new_endpoint(&self, id: NodeId) -> Arc<FakeTransport> {
        let incarnation = {
            let mut state = self.inner.lock();
            state.servers.remove(&id);
            let inc = state.incarnations.entry(id).or_insert(0);
            *inc += 1;
            *inc
        };
        self.inner.wake.notify_all();
        self.inner.counts().insert(id, 0);
        Arc::new(FakeTransport {
            inner: Arc::clone(&self.inner),
            me: id,
            incarnation,
        })
    }

    /// Registers the handler of endpoint `id`'s current incarnation.
    pub fn add_server(&self, id: NodeId, handler: Arc<dyn Handler>) {
        let mut state = self.inner.lock();
        let incarnation = state.incarnations.get(&id).copied().unwrap_or(0);
        state.servers.insert(
            id,
            Server {
                handler,
                incarnation,
            },
        );
    }

    /// Crashes endpoint `id`: its server stops receiving and every call it has
    /// in flight, in either direction, fails.
    pub fn remove_server(&self, id: NodeId) {
        {
            let mut state = self.inner.lock();
            state.servers.remove(&id);
            *state.incarnations.entry(id).or_insert(0) += 1;
        }
        self.inner.wake.notify_all();
    }

    /// Shuts the network down: every pending and future call fails at once.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.wake.notify_all();
    }

    /// Calls made so far, dropped ones included.
    pub fn total_calls(&self) -> u64 {
        self.inner.total_calls.load(Ordering::SeqCst)
    }

    /// Request bytes of every call plus reply bytes actually delivered.
    pub fn total_bytes(&self) -> u64 {
        self.inner.total_bytes.load(Ordering::SeqCst)
    }

    /// RPCs that reached `id`'s handler since it last started.
    pub fn rpc_count(&self, id: NodeId) -> u64 {
        self.inner.counts().get(&id).copied().unwrap_or(0)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<NodeId, u64>> {
        self.rpc_counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn random(&self, below: u64) -> u64 {
        self.lock().rng.range(0, below)
    }

    fn alive(state: &State, id: NodeId, incarnation: u64) -> bool {
        !state.closed && state.incarnations.get(&id) == Some(&incarnation)
    }

    /// Sleeps for `duration` unless caller `me` crashes or the network closes
    /// first; returns whether the caller is still alive.
    fn sleep(&self, duration: Duration, me: NodeId, incarnation: u64) -> bool {
        let deadline = Instant::now() + duration;
        let mut state = self.lock();
        loop {
            if !Self::alive(&state, me, incarnation) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            state = self
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// One RPC, with every fault the network is configured for.
    fn call(
        &self,
        me: NodeId,
        incarnation: u64,
        to: NodeId,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        self.total_calls.fetch_add(1, Ordering::SeqCst);
        self.total_bytes
            .fetch_add(request.len() as u64, Ordering::SeqCst);
        let (reachable, reliable, long_reordering, dead_delay_ms) = {
            let state = self.lock();
            if !Self::alive(&state, me, incarnation) {
                return Err(TransportError::Closed);
            }
            let reachable = state.links.contains(&(me, to)) && state.servers.contains_key(&to);
            let dead_delay_ms = if state.long_delays { 7000 } else { 100 };
            (
                reachable,
                state.reliable,
                state.long_reordering,
                dead_delay_ms,
            )
        };
        if !reachable {
            // A dead link fails only after a while, like a real timeout.
            let wait = Duration::from_millis(self.random(dead_delay_ms));
            self.sleep(wait, me, incarnation);
            return Err(TransportError::Unreachable(format!("{me} -> {to}")));
        }
        if !reliable {
            let delay = Duration::from_millis(self.random(27));
            if !self.sleep(delay, me, incarnation) {
                return Err(TransportError::Closed);
            }
            if self.random(1000) < 100 {
                return Err(TransportError::Unreachable("request dropped".into()));
            }
        }
        let (handler, server_incarnation) = {
            let state = self.lock();
            match state.servers.get(&to) {
                Some(s) => (Arc::clone(&s.handler), s.incarnation),
                None => return Err(TransportError::Unreachable(format!("{to} is down"))),
            }
        };
        *self.counts().entry(to).or_insert(0) += 1;
        let reply = handler.handle(me, &request);
        // A server killed while its handler ran never produces a successful reply.
        let server_alive = Self::alive(&self.lock(), to, server_incarnation);
        let reply = match reply {
            Some(reply) if server_alive => reply,
            _ => return Err(TransportError::Unreachable(format!("{to} crashed"))),
        };
        if !reliable && self.random(1000) < 100 {
            return Err(TransportError::Unreachable("reply dropped".into()));
        }
        if long_reordering && self.random(900) < 600 {
            // Hold the reply back 200–2200 ms, skewed towards the short end.
            let extra = self.random(self.random(2000) + 1);
            let hold = Duration::from_millis(200 + extra);
            if !self.sleep(hold, me, incarnation) {
                return Err(TransportError::Closed);
            }
        }
        self.total_bytes
            .fetch_add(reply.len() as u64, Ordering::SeqCst);
        Ok(reply)
    }
}

/// One endpoint's way into the network: a [`Transporter`] for Raft peers, and a
/// byte-level `call` for clerks.
pub struct FakeTransport {
    inner: Arc<Inner>,
    me: NodeId,
    incarnation: u64,
}

impl FakeTransport {
    /// Sends raw request bytes to `to` and returns the raw reply.
    pub fn call_bytes(&self, to: NodeId, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.inner.call(self.me, self.incarnation, to, request)
    }
}

impl Transporter for FakeTransport {
    fn call(&self, to: NodeId, request: &Request) -> Result<Response, TransportError> {
        let mut bytes = vec![RAFT_CHANNEL];
        bytes.extend_from_slice(&request.encode());
        let reply = self.call_bytes(to, bytes)?;
        Response::decode(&reply).map_err(|e| TransportError::BadReply(e.to_string()))
    }
}
