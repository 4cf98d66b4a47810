//! The TCP [`Transporter`]: one request line out, one response line back.
//!
//! A peer RPC is the line `RAFT <from> <base64(request)>`, answered by
//! `OK <base64(response)>` (or `ERR <CODE> <message>`). It shares the server's
//! one port with client commands. Connections are kept and reused, one RPC at a
//! time per connection, with a small pool per peer so a slow call does not hold
//! up the next. A peer that refuses connections is retried with exponential
//! backoff (50 ms doubling to 1 s) rather than dialed for every RPC.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::line::{base64_decode, base64_encode, read_line, LineError};
use super::{TransportError, Transporter};
use crate::codec::{Decode, Encode};
use crate::raft::messages::{NodeId, Request, Response};

/// Largest peer message line (snapshots travel whole in one line).
pub const MAX_PEER_LINE: usize = 64 << 20;
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
    idle: Vec<BufReader<TcpStream>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Sends peer RPCs over TCP.
pub struct TcpTransport {
    me: NodeId,
    addrs: BTreeMap<NodeId, String>,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
    partition: Arc<Partition>,
}

impl TcpTransport {
    /// A transport for server `me`, reaching each peer id at its address.
    pub fn new(me: NodeId, addrs: BTreeMap<NodeId, String>, partition: Arc<Partition>) -> Self {
        Self {
            me,
            addrs,
            peers: Mutex::new(BTreeMap::new()),
            partition,
        }
    }

    fn peers(&self) -> MutexGuard<'_, BTreeMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `to`, or a new one unless backing off.
    fn connection(&self, to: NodeId) -> Result<BufReader<TcpStream>, TransportError> {
        {
            let mut peers = self.peers();
            let peer = peers.entry(to).or_default();
            if let Some(conn) = peer.idle.pop() {
                return Ok(conn);
            }
            if peer.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(TransportError::Unreachable(format!(
                    "backing off from {to}"
                )));
            }
        }
        let addr = self
            .addrs
            .get(&to)
            .ok_or_else(|| TransportError::Unreachable(format!("no address for {to}")))?;
        match dial(addr) {
            Ok(stream) => {
                let mut peers = self.peers();
                let peer = peers.entry(to).or_default();
                peer.failures = 0;
                peer.retry_at = None;
                Ok(BufReader::new(stream))
            }
            Err(e) => {
                let mut peers = self.peers();
                let peer = peers.entry(to).or_default();
                let backoff = BACKOFF_MIN
                    .saturating_mul(1 << peer.failures.min(5))
                    .min(BACKOFF_MAX);
                peer.failures += 1;
                peer.retry_at = Some(Instant::now() + backoff);
                Err(TransportError::Unreachable(format!("{addr}: {e}")))
            }
        }
    }

    fn exchange(conn: &mut BufReader<TcpStream>, line: &[u8]) -> Result<Response, TransportError> {
        let io = |e: std::io::Error| TransportError::Unreachable(e.to_string());
        conn.get_mut().write_all(line).map_err(io)?;
        let reply = read_line(conn, |_| MAX_PEER_LINE).map_err(|e| match e {
            LineError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                TransportError::Timeout
            }
            LineError::Io(e) => io(e),
            LineError::Closed => TransportError::Unreachable("connection closed".into()),
            LineError::TooLong => TransportError::BadReply("reply too long".into()),
        })?;
        let payload = reply.strip_prefix(b"OK ").ok_or_else(|| {
            TransportError::BadReply(String::from_utf8_lossy(&reply).chars().take(200).collect())
        })?;
        let bytes = base64_decode(payload)
            .ok_or_else(|| TransportError::BadReply("invalid base64".into()))?;
        Response::decode(&bytes).map_err(|e| TransportError::BadReply(e.to_string()))
    }
}

impl Transporter for TcpTransport {
    fn call(&self, to: NodeId, request: &Request) -> Result<Response, TransportError> {
        if !self.partition.allows(self.me, to) {
            return Err(TransportError::Unreachable("partitioned".into()));
        }
        let mut line = format!("RAFT {} ", self.me).into_bytes();
        line.extend_from_slice(base64_encode(&request.encode()).as_bytes());
        line.push(b'\n');
        let mut conn = self.connection(to)?;
        let result = Self::exchange(&mut conn, &line);
        if result.is_ok() {
            let mut peers = self.peers();
            let peer = peers.entry(to).or_default();
            if peer.idle.len() < MAX_IDLE {
                peer.idle.push(conn);
            }
        }
        result
    }
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
