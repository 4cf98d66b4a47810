//! The TCP server: one port for peers and clients, one thread per connection.
//!
//! Like mini-redis's `Listener`/`Handler` split: the listener thread accepts
//! connections (refusing with `ERR BUSY` beyond the limit) and hands each to a
//! handler thread, which reads one request line, writes one response line, and
//! repeats. A line's first word says what it is:
//!
//! ```text
//! RAFT <from> <base64>        peer RPC                → OK <base64>
//! anything else               a client line, answered by `service::frontend`
//! ```
//!
//! A connection whose first line is an HTTP request line (`GET /status
//! HTTP/1.1`) is HTTP from then on, served by [`crate::http`].
//!
//! A follower forwards client commands to the leader it knows and relays the
//! reply, so any node accepts any command.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crate::codec::{Decode, Encode};
use crate::http;
use crate::metrics::CounterVec;
use crate::node::Node;
use crate::raft::messages::{NodeId, Request};
use crate::raft::Config as RaftConfig;
use crate::service::frontend::Frontend;
use crate::service::replica::Replica;
use crate::storage::file::FileStorage;
use crate::transport::line::{base64_decode, base64_encode, read_line, LineError};
use crate::transport::tcp::{dial, Partition, TcpTransport, MAX_PEER_LINE};
use crate::{debug, info};

/// Longest client request line.
pub const MAX_CLIENT_LINE: usize = 1 << 20;

/// Everything needed to run one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This server's id: its 1-based position in `peers`.
    pub id: NodeId,
    /// Every server's address, this one's included, in id order.
    pub peers: Vec<String>,
    /// Address to listen on (usually `peers[id - 1]`).
    pub listen: String,
    /// Directory for Raft state.
    pub data_dir: PathBuf,
    /// Snapshot once this many command bytes were applied since the last one.
    pub snapshot_bytes: usize,
    /// How long a client request may wait for its outcome.
    pub request_timeout: Duration,
    /// Most open connections, peers included.
    pub max_connections: usize,
    /// The Raft clock's tick.
    pub tick: Duration,
    /// How long one HTTP request's headers and body may take to arrive.
    pub http_read_timeout: Duration,
    /// Links to pretend are cut (demonstrations only).
    pub partition: Arc<Partition>,
}

impl ServerConfig {
    /// Defaults for server `id` of `peers`, storing under `data_dir`.
    pub fn new(id: NodeId, peers: Vec<String>, data_dir: impl Into<PathBuf>) -> Self {
        let listen = peers
            .get((id as usize).wrapping_sub(1))
            .cloned()
            .unwrap_or_default();
        Self {
            id,
            peers,
            listen,
            data_dir: data_dir.into(),
            snapshot_bytes: 4 << 20,
            request_timeout: Duration::from_secs(3),
            max_connections: 1024,
            tick: Duration::from_millis(10),
            http_read_timeout: Duration::from_secs(10),
            partition: Arc::new(Partition::default()),
        }
    }
}

/// What every connection handler shares.
struct Shared {
    config: ServerConfig,
    frontend: Frontend,
    connections: AtomicUsize,
    stopping: AtomicBool,
    /// Open client connections, to close them at shutdown.
    open: Mutex<HashMap<u64, TcpStream>>,
    /// Idle connections to other servers, for forwarding.
    forward_pool: Mutex<BTreeMap<NodeId, Vec<BufReader<TcpStream>>>>,
    /// HTTP requests answered, by method, route and status.
    http_requests: CounterVec,
    /// When the server started.
    started: SystemTime,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

impl Server {
    /// Loads state from `data_dir`, starts the Raft node and starts listening.
    /// Fails if the address is taken or the stored state is corrupt.
    pub fn start(config: ServerConfig) -> io::Result<Server> {
        let id = config.id;
        if id == 0 || id as usize > config.peers.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "id {id} is not a position in a list of {} peers",
                    config.peers.len()
                ),
            ));
        }
        let listener = TcpListener::bind(&config.listen)?;
        let addr = listener.local_addr()?;
        let storage = Arc::new(FileStorage::open(&config.data_dir)?);
        let addrs: BTreeMap<NodeId, String> = (1..).zip(config.peers.iter().cloned()).collect();
        let transport = Arc::new(TcpTransport::new(
            id,
            addrs.clone(),
            Arc::clone(&config.partition),
        ));
        let mut raft_config = RaftConfig::new(id, addrs.keys().copied().collect());
        raft_config.seed = clock_seed() ^ id;
        let (apply_tx, apply_rx) = mpsc::sync_channel(1024);
        let node = Arc::new(Node::new(
            raft_config,
            config.tick,
            transport,
            storage,
            apply_tx,
        )?);
        let replica = Replica::start(node, apply_rx, config.snapshot_bytes);
        let term = replica.node().status().term;
        let frontend = Frontend::new(replica, config.request_timeout, config.peers.len());
        info!(
            id,
            term,
            "listening on {addr}, peers {}",
            config.peers.join(",")
        );
        let shared = Arc::new(Shared {
            config,
            frontend,
            connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            forward_pool: Mutex::new(BTreeMap::new()),
            http_requests: CounterVec::default(),
            started: SystemTime::now(),
        });
        let accept_shared = Arc::clone(&shared);
        let listener = thread::Builder::new()
            .name(format!("listen-{id}"))
            .spawn(move || accept_loop(listener, accept_shared))?;
        Ok(Server {
            addr,
            shared,
            listener: Some(listener),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Raft node.
    pub fn node(&self) -> &Node {
        self.shared.frontend.replica().node()
    }

    /// Stops listening, closes every connection and stops the node.
    pub fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop with a connection of our own.
        let _ = TcpStream::connect(self.addr);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        for stream in lock(&self.shared.open).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.shared.frontend.replica().shutdown();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        if shared.connections.load(Ordering::SeqCst) >= shared.config.max_connections {
            let _ = stream.write_all(b"ERR BUSY too many connections; try later\n");
            continue;
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn_id = next_id;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.open).insert(conn_id, clone);
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let handler_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("conn-{conn_id}"))
            .spawn(move || {
                handle_connection(stream, &handler_shared);
                lock(&handler_shared.open).remove(&conn_id);
                handler_shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            lock(&shared.open).remove(&conn_id);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Peer lines may carry whole snapshots; client lines are capped lower.
fn line_limit(start: &[u8]) -> usize {
    if start.starts_with(b"RAFT ") {
        MAX_PEER_LINE
    } else {
        MAX_CLIENT_LINE
    }
}

fn handle_connection(stream: TcpStream, shared: &Shared) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = io::BufWriter::new(write_half);
    let mut reader = BufReader::new(stream);
    let mut first = true;
    loop {
        let line = match read_line(&mut reader, line_limit) {
            Ok(line) => line,
            Err(LineError::TooLong) => {
                let _ = writeln!(writer, "ERR TOO_LONG line exceeds {MAX_CLIENT_LINE} bytes");
                let _ = writer.flush();
                return;
            }
            Err(_) => return,
        };
        if first {
            if http::request::is_request_line(&line) {
                return serve_http(line, reader, writer, shared);
            }
            first = line.iter().all(u8::is_ascii_whitespace);
        }
        let (reply, close) = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => dispatch(text, shared),
            Err(_) => ("ERR BAD_REQUEST line is not valid UTF-8".to_string(), false),
        };
        if writer
            .write_all(reply.as_bytes())
            .and_then(|_| writer.write_all(b"\n"))
            .and_then(|_| writer.flush())
            .is_err()
            || close
        {
            return;
        }
    }
}

/// Serves a connection that began with an HTTP request line.
fn serve_http(
    line: Vec<u8>,
    reader: BufReader<TcpStream>,
    writer: io::BufWriter<TcpStream>,
    shared: &Shared,
) {
    let forward = |l: &str| forward(l, shared);
    let ctx = http::Context {
        id: shared.config.id,
        peers: &shared.config.peers,
        frontend: &shared.frontend,
        forward: &forward,
        open_connections: &shared.connections,
        requests: &shared.http_requests,
        started: shared.started,
        read_timeout: shared.config.http_read_timeout,
    };
    http::serve(line, reader, writer, &ctx);
}

/// Answers one request line; the flag says whether to close the connection.
fn dispatch(line: &str, shared: &Shared) -> (String, bool) {
    match line.strip_prefix("RAFT ") {
        Some(rest) => (handle_peer_rpc(rest, shared), false),
        None => shared.frontend.answer(line, &|l| forward(l, shared)),
    }
}

fn handle_peer_rpc(rest: &str, shared: &Shared) -> String {
    let Some((from, payload)) = rest.split_once(' ') else {
        return "ERR BAD_REQUEST usage: RAFT <from> <base64>".into();
    };
    let Ok(from) = from.parse::<NodeId>() else {
        return "ERR BAD_REQUEST bad peer id".into();
    };
    if from == 0 || from as usize > shared.config.peers.len() || from == shared.config.id {
        return format!("ERR BAD_REQUEST {from} is not a peer");
    }
    if !shared.config.partition.allows(from, shared.config.id) {
        return "ERR NO_LEADER partitioned".into();
    }
    let Some(bytes) = base64_decode(payload.as_bytes()) else {
        return "ERR BAD_REQUEST invalid base64".into();
    };
    let request = match Request::decode(&bytes) {
        Ok(r) => r,
        Err(e) => return format!("ERR BAD_REQUEST {e}"),
    };
    match shared.frontend.replica().node().handle_rpc(from, request) {
        Some(response) => format!("OK {}", base64_encode(&response.encode())),
        None => "ERR NO_LEADER node stopped".into(),
    }
}

/// Relays a client line to the leader this server knows of.
fn forward(line: &str, shared: &Shared) -> String {
    let me = shared.config.id;
    let leader = match shared.frontend.replica().node().status().leader_id {
        Some(l) if l != me => l,
        _ => return "ERR NO_LEADER no leader known; retry".into(),
    };
    if !shared.config.partition.allows(me, leader) {
        return "ERR NO_LEADER leader unreachable; retry".into();
    }
    let Some(addr) = shared.config.peers.get(leader as usize - 1) else {
        return "ERR NO_LEADER no leader known; retry".into();
    };
    let request = format!("FWD {line}\n");
    // A pooled connection may have been closed by a leader that restarted since;
    // then the request never arrived and one retry on a fresh connection is safe.
    let pooled = lock(&shared.forward_pool)
        .get_mut(&leader)
        .and_then(Vec::pop);
    let attempts = [pooled.is_some(), false];
    let mut pooled = pooled;
    for from_pool in attempts {
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => match dial(addr) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(shared.config.request_timeout * 2));
                    BufReader::new(s)
                }
                Err(_) => return format!("ERR NO_LEADER leader {leader} unreachable; retry"),
            },
        };
        if conn.get_mut().write_all(request.as_bytes()).is_err() {
            if from_pool {
                continue;
            }
            return format!("ERR NO_LEADER leader {leader} unreachable; retry");
        }
        match read_line(&mut conn, |_| MAX_CLIENT_LINE * 2) {
            Ok(reply) => {
                lock(&shared.forward_pool)
                    .entry(leader)
                    .or_default()
                    .push(conn);
                debug!(me, 0, "forwarded a request to leader {leader}");
                return String::from_utf8(reply)
                    .unwrap_or_else(|_| "ERR TIMEOUT outcome unknown".into());
            }
            Err(LineError::Closed) if from_pool => continue,
            Err(_) => return "ERR TIMEOUT outcome unknown".into(),
        }
    }
    format!("ERR NO_LEADER leader {leader} unreachable; retry")
}
