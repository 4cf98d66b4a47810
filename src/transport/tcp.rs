//! The TCP [`Transporter`]: Raft RPCs on authenticated peer links.
//!
//! A peer RPC travels on a [`PeerLink`]: the encoded request in a tagged `RAFT`
//! line, the encoded reply in a tagged `OK` line (`auth::peer` has the
//! protocol). It shares the server's one port with client commands. Links are
//! kept and reused, one RPC at a time per link, with a small pool per peer so a
//! slow call does not hold up the next. A peer that refuses connections is
//! retried with exponential backoff (50 ms doubling to 1 s) rather than dialed
//! for every RPC. Peers' addresses come from the cluster configuration and
//! change with it ([`Transporter::set_addresses`]); without a cluster key
//! only loopback addresses are dialed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::link::{LinkError, PeerLink};
use super::{TransportError, Transporter};
use crate::auth::limit::{held_back_note, LogThrottle};
use crate::auth::peer::{Kind, PeerAuth};
use crate::codec::{Decode, Encode};
use crate::info;
use crate::raft::messages::{NodeId, Request, Response};

/// Largest peer message line. The biggest messages are one snapshot piece
/// (`Config::snapshot_chunk_bytes`, 1 MiB) and a merged AppendEntries (at most
/// 4 MiB of encoded entries, `peer_queue::MAX_MERGED_BYTES`), base64-encoded (4/3
/// larger): 8 MiB leaves room.
pub const MAX_PEER_LINE: usize = 8 << 20;
/// A server closes a peer connection idle this long; the transport stops
/// reusing a link after half of it, so it rarely picks one being closed.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long to wait for a reply (covers the peer's fsync).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle connections kept per peer.
const MAX_IDLE: usize = 8;
/// Backoff between failed dials: first and longest.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Pairs of servers that cannot reach each other: a simulated partition for
/// demonstrations (`examples/cluster.rs`). Empty in production.
#[derive(Debug, Default)]
pub struct Partition {
    cut: RwLock<BTreeSet<(NodeId, NodeId)>>,
}

impl Partition {
    /// Cuts every link between a server in `a` and a server in `b`, both ways.
    pub fn split(&self, a: &[NodeId], b: &[NodeId]) {
        let mut cut = self.cut.write().unwrap_or_else(|e| e.into_inner());
        for &x in a {
            for &y in b {
                cut.insert((x, y));
                cut.insert((y, x));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.cut.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Whether `from` can reach `to`.
    pub fn allows(&self, from: NodeId, to: NodeId) -> bool {
        !self
            .cut
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(from, to))
    }
}

#[derive(Default)]
struct Peer {
    idle: Vec<PeerLink>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Sends peer RPCs over TCP.
pub struct TcpTransport {
    me: NodeId,
    /// Where each peer is, as the latest configuration says.
    addrs: RwLock<BTreeMap<NodeId, String>>,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
    partition: Arc<Partition>,
    auth: Arc<PeerAuth>,
    /// Limits the log lines about peers refusing our messages.
    refusals: LogThrottle,
}

impl TcpTransport {
    /// A transport for server `me`, reaching each peer id at its address and
    /// authenticating with `auth`.
    pub fn new(
        me: NodeId,
        addrs: BTreeMap<NodeId, String>,
        partition: Arc<Partition>,
        auth: Arc<PeerAuth>,
    ) -> Self {
        Self {
            me,
            addrs: RwLock::new(addrs),
            peers: Mutex::new(BTreeMap::new()),
            partition,
            auth,
            refusals: LogThrottle::new(Duration::from_secs(5)),
        }
    }

    fn peers(&self) -> MutexGuard<'_, BTreeMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pooled link to `to` (and `true`), or a new one unless backing off.
    fn link(&self, to: NodeId) -> Result<(PeerLink, bool), LinkError> {
        {
            let mut peers = self.peers();
            let peer = peers.entry(to).or_default();
            while let Some(link) = peer.idle.pop() {
                if link.idle_for() < PEER_IDLE_TIMEOUT / 2 {
                    return Ok((link, true));
                }
            }
            if peer.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(LinkError::Io(std::io::Error::other(format!(
                    "backing off from {to}"
                ))));
            }
        }
        let addr = self
            .addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to)
            .cloned()
            .ok_or_else(|| LinkError::Io(std::io::Error::other(format!("no address for {to}"))))?;
        let opened = PeerLink::open(&addr, Arc::clone(&self.auth), self.me, to);
        let mut peers = self.peers();
        let peer = peers.entry(to).or_default();
        match opened {
            Ok(link) => {
                peer.failures = 0;
                peer.retry_at = None;
                Ok((link, false))
            }
            Err(e) => {
                let backoff = BACKOFF_MIN
                    .saturating_mul(1 << peer.failures.min(5))
                    .min(BACKOFF_MAX);
                peer.failures += 1;
                peer.retry_at = Some(Instant::now() + backoff);
                Err(e)
            }
        }
    }

    /// Logs (rate-limited) a peer refusing our messages or answering with a
    /// reply that fails authentication: both mean the keys differ or someone
    /// is tampering.
    fn report(&self, to: NodeId, request: &Request, e: &LinkError) {
        if !(e.is_auth_refusal() || matches!(e, LinkError::Forged(_))) {
            return;
        }
        if let Some(held_back) = self.refusals.admit() {
            info!(
                self.me,
                request.term(),
                "cannot authenticate with node {to}: {e}{}",
                held_back_note(held_back)
            );
        }
    }
}

impl Transporter for TcpTransport {
    /// Takes the configuration's addresses. A peer whose address changed
    /// loses its pooled links (they lead to the old address). Without a
    /// cluster key, a non-loopback address is refused: peer tags would prove
    /// nothing, and anyone could have asked for it with `ADD`.
    fn set_addresses(&self, addresses: &BTreeMap<NodeId, String>) {
        let mut addrs = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        let mut peers = self.peers();
        for (&id, addr) in addresses {
            if !self.auth.is_keyed() && !is_loopback(addr) {
                info!(
                    self.me,
                    0,
                    "refusing to reach node {id} at {addr}: without a cluster key only loopback addresses are allowed"
                );
                addrs.remove(&id);
                continue;
            }
            if addrs.get(&id) != Some(addr) {
                peers.remove(&id);
                addrs.insert(id, addr.clone());
            }
        }
        addrs.retain(|id, _| addresses.contains_key(id));
        peers.retain(|id, _| addresses.contains_key(id));
    }

    fn call(&self, to: NodeId, request: &Request) -> Result<Response, TransportError> {
        if !self.partition.allows(self.me, to) {
            return Err(TransportError::Unreachable("partitioned".into()));
        }
        let payload = request.encode();
        loop {
            let (mut link, pooled) = self.link(to).map_err(|e| {
                self.report(to, request, &e);
                to_transport_error(e)
            })?;
            match link.call(Kind::Raft, &payload) {
                Ok(bytes) => {
                    let response = Response::decode(&bytes)
                        .map_err(|e| TransportError::BadReply(e.to_string()))?;
                    let mut peers = self.peers();
                    let peer = peers.entry(to).or_default();
                    if peer.idle.len() < MAX_IDLE {
                        peer.idle.push(link);
                    }
                    return Ok(response);
                }
                // The peer closed this pooled link while it was idle: the
                // request never arrived; try a new link.
                Err(e) if pooled && e.is_closed() => continue,
                Err(e) => {
                    self.report(to, request, &e);
                    return Err(to_transport_error(e));
                }
            }
        }
    }
}

fn to_transport_error(e: LinkError) -> TransportError {
    match e {
        LinkError::Io(e) => TransportError::Unreachable(e.to_string()),
        LinkError::Timeout => TransportError::Timeout,
        LinkError::Refused(line) => TransportError::BadReply(line),
        LinkError::Forged(why) => TransportError::BadReply(why),
    }
}

/// Whether every address `addr` resolves to is a loopback address (one that
/// does not resolve is not).
pub fn is_loopback(addr: &str) -> bool {
    addr.to_socket_addrs()
        .map(|ips| {
            let ips: Vec<SocketAddr> = ips.collect();
            !ips.is_empty() && ips.iter().all(|a| a.ip().is_loopback())
        })
        .unwrap_or(false)
}

/// Opens a connection with the transport's timeouts and Nagle off.
pub fn dial(addr: &str) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = std::io::Error::other(format!("{addr} resolves to no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(CALL_TIMEOUT))?;
                stream.set_write_timeout(Some(CALL_TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
