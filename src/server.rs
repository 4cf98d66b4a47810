//! The TCP server: one port for peers and clients, one thread per connection.
//!
//! Like mini-redis's `Listener`/`Handler` split: the listener thread accepts
//! connections (refusing with `ERR BUSY` beyond the limit) and hands each to a
//! handler thread, which reads one request line, writes one response line, and
//! repeats. The first line says who is calling:
//!
//! ```text
//! PEER <cluster-id> <from> <to> <nonce>   a peer: handshake, then tagged RAFT and FWD lines (server/peer.rs)
//! anything else                           a client: `AUTH` if a token is configured, then commands (server/client.rs)
//! ```
//!
//! A client's `WATCH` line turns its connection into a stream of changes
//! until `CANCEL` (`server/watch.rs`), on the connection's own thread.
//!
//! Beside the connections, `server/disk.rs` runs the thread that watches the
//! data directory's free space and tells storage and the service when it is
//! low.
//!
//! A connection whose first line is an HTTP request line (`GET /status
//! HTTP/1.1`) is HTTP from then on, served by [`crate::http`], which asks for
//! the same client token (`Authorization: Bearer <token>`).
//!
//! A follower forwards client commands to the leader it knows, on an
//! authenticated link, and relays the reply, so any node accepts any command.
//! Peers are whoever the cluster configuration names (thesis §4): their ids
//! and addresses come from the log, not from the command line, which only
//! bootstraps a brand-new cluster (`-peers`) or starts a server that waits to
//! be added (`-join`).
//! A line must arrive whole within the idle timeout (`-idle-timeout` for
//! clients, [`PEER_IDLE_TIMEOUT`] for peers), so neither an idle connection nor
//! a half-written line holds a thread for longer.

mod client;
mod disk;
mod peer;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::auth::keyfile::{Hidden, MAKE_KEY};
use crate::auth::limit::LogThrottle;
use crate::auth::peer::{PeerAuth, DEFAULT_CLUSTER_ID};
use crate::auth::token::ClientAuth;
use crate::events::ring::{EventRing, Limits};
use crate::http;
use crate::metrics::CounterVec;
use crate::node::{ApplySink, Node, StorageFailure};
use crate::raft::messages::NodeId;
use crate::raft::Config as RaftConfig;
use crate::service::frontend::Frontend;
use crate::service::replica::Replica;
use crate::service::reply::{Code, Reply};
use crate::service::snapshot_policy::SnapshotPolicy;
use crate::service::state_machine::DEFAULT_QUOTA_BYTES;
use crate::service::watch::WatchLimits;
use crate::storage::file::FileStorage;
use crate::storage::space::{DiskSpace, DEFAULT_MIN_FREE_BYTES};
use crate::transport::line::{read_line_before, LineError};
use crate::transport::link::PeerLink;
use crate::transport::tcp::{is_loopback, Partition, TcpTransport};
use crate::{debug, info};

pub use crate::transport::tcp::PEER_IDLE_TIMEOUT;

/// Longest client request line: room for a `PUT64` of the largest key and
/// value (base64 makes 1 MiB about 1.4 MB).
pub const MAX_CLIENT_LINE: usize = 2 << 20;
/// Longest reply line a client reads: a range page carries about 2 MiB of
/// keys and values at most, which JSON's escapes can grow up to six times.
pub const MAX_REPLY_LINE: usize = 16 << 20;
/// How long a client connection may stay idle, or take to send one line, by
/// default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a reply may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to run one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This server's id (ids are never reused).
    pub id: NodeId,
    /// The addresses of a brand-new cluster's servers, this one's included,
    /// for ids 1, 2, ...: its bootstrap configuration. Ignored once the data
    /// directory holds a configuration; empty with `join`.
    pub peers: Vec<String>,
    /// Start empty and wait to be added to a running cluster (`ADD`), never
    /// campaigning until a configuration makes this server a voter.
    pub join: bool,
    /// Address to listen on (usually `peers[id - 1]`).
    pub listen: String,
    /// Directory for Raft state.
    pub data_dir: PathBuf,
    /// Snapshot once this many bytes of log (commands plus 64 per entry), and
    /// at least as many as the last snapshot's size, were applied since the
    /// last one.
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
    /// The cluster key peers authenticate with. Without one, a cluster of more
    /// than one server starts only if every address is loopback.
    pub cluster_key: Option<Hidden<Vec<u8>>>,
    /// Names the cluster in every peer tag, so clusters sharing a key cannot
    /// talk to each other by mistake.
    pub cluster_id: String,
    /// The token clients must present with `AUTH` (none: no `AUTH` needed).
    pub client_token: Option<Hidden<String>>,
    /// A client connection is closed when a whole line does not arrive within
    /// this long (idle, or half-written).
    pub idle_timeout: Duration,
    /// The state machine's size limit this server asks for (see
    /// `service::quota`); writes that would grow the state beyond it get
    /// `ERR NOSPACE`.
    pub quota_bytes: u64,
    /// Ask for pre-votes before an election (thesis §9.6).
    pub pre_vote: bool,
    /// Leaders step down without a majority; followers are sticky (§6.2, §4.2.3).
    pub check_quorum: bool,
    /// Free space kept in the data directory's file system, besides room for
    /// a snapshot: below it, writes that grow the state get
    /// `ERR NOSPACE_DISK` (see `storage::space`). 0 turns the guard off.
    pub min_free_bytes: u64,
    /// Keep a ring of recent events for `GET /events` (see [`crate::events`]).
    pub events: bool,
    /// The bounds of watches: history kept, lag allowed, watchers open
    /// (`-watch-history-bytes`, `-watch-lag-bytes`, `-max-watchers`).
    pub watch: WatchLimits,
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
            join: false,
            listen,
            data_dir: data_dir.into(),
            snapshot_bytes: 4 << 20,
            request_timeout: Duration::from_secs(3),
            max_connections: 1024,
            tick: Duration::from_millis(10),
            http_read_timeout: Duration::from_secs(10),
            partition: Arc::new(Partition::default()),
            cluster_key: None,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            client_token: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            pre_vote: true,
            check_quorum: true,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            events: true,
            watch: WatchLimits::default(),
        }
    }
}

/// Without a key, peer tags prove nothing, so every address of a multi-server
/// cluster must be loopback: then only processes on this machine can speak
/// Raft to it. An address that does not resolve counts as not loopback.
fn check_unkeyed(config: &ServerConfig) -> io::Result<()> {
    for addr in config.peers.iter().chain([&config.listen]) {
        if !is_loopback(addr) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to start without a cluster key: {addr} is not a loopback \
                     address, and without a key anyone who can reach a node can speak Raft \
                     to it. Make a key ({MAKE_KEY}), copy it to every node, and pass \
                     -cluster-key-file cluster.key"
                ),
            ));
        }
    }
    Ok(())
}

/// What every connection handler shares.
struct Shared {
    config: ServerConfig,
    frontend: Frontend,
    connections: AtomicUsize,
    stopping: AtomicBool,
    /// Open client connections, to close them at shutdown.
    open: Mutex<HashMap<u64, TcpStream>>,
    /// Idle links to other servers, for forwarding.
    forward_pool: Mutex<BTreeMap<NodeId, Vec<PeerLink>>>,
    /// The cluster key and id, for peer connections both ways.
    auth: Arc<PeerAuth>,
    /// The client token check.
    clients: ClientAuth,
    /// Limits the log lines about refused peer messages.
    refusals: LogThrottle,
    /// Limits the log lines about peer lines sent on client connections.
    stray_peer_lines: LogThrottle,
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
    /// The thread watching free space, stopped by dropping the sender.
    disk_watch: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Server {
    /// Loads state from `data_dir`, starts the Raft node and starts listening.
    /// Fails if the address is taken or the stored state is corrupt.
    pub fn start(config: ServerConfig) -> io::Result<Server> {
        let id = config.id;
        let bad = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if config.join && (id == 0 || !config.peers.is_empty()) {
            return bad(format!("-join takes an id above 0 and no peers (id {id})"));
        }
        if !config.join && (id == 0 || id as usize > config.peers.len()) {
            return bad(format!(
                "id {id} is not a position in a list of {} peers",
                config.peers.len()
            ));
        }
        let key = config.cluster_key.as_ref().map(|k| k.0.as_slice());
        // A cluster that may grow (a joining server's) counts as many servers.
        let many = config.peers.len() > 1 || config.join;
        if key.is_none() && many {
            check_unkeyed(&config)?;
        }
        let auth = PeerAuth::new(key, &config.cluster_id)
            .map(Arc::new)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(&config.listen)?;
        let addr = listener.local_addr()?;
        let storage = Arc::new(FileStorage::open(&config.data_dir)?);
        let space = Arc::new(DiskSpace::new(
            Arc::clone(storage.data_dir()),
            config.min_free_bytes,
        ));
        let addrs: BTreeMap<NodeId, String> = (1..).zip(config.peers.iter().cloned()).collect();
        // The node gives the transport the configuration's addresses.
        let transport = Arc::new(TcpTransport::new(
            id,
            BTreeMap::new(),
            Arc::clone(&config.partition),
            Arc::clone(&auth),
        ));
        let mut raft_config = RaftConfig::new(id, addrs.keys().copied().collect());
        let raft_config_election_ticks = raft_config.election_ticks;
        raft_config.addresses = addrs;
        raft_config.seed = clock_seed() ^ id;
        raft_config.pre_vote = config.pre_vote;
        raft_config.check_quorum = config.check_quorum;
        // Reads are served by ReadIndex, which needs a commit in each new
        // leader's term (thesis §6.4).
        raft_config.noop_on_election = true;
        let (apply_tx, apply_rx) = mpsc::channel();
        let events = config
            .events
            .then(|| Arc::new(EventRing::new(id, Limits::default())));
        let node = Arc::new(Node::with_events(
            raft_config,
            config.tick,
            transport,
            Arc::clone(&storage) as _,
            ApplySink::Batches(apply_tx),
            events,
        )?);
        let policy = SnapshotPolicy {
            log_bytes: config.snapshot_bytes,
            scale_with_state: true,
        };
        let replica = Replica::start(node, apply_rx, policy, config.watch);
        // A lease a leader first sees gets the longest election timeout more.
        replica.start_leases(config.tick * 2 * raft_config_election_ticks);
        let term = replica.node().status().term;
        let mut frontend = Frontend::new(replica, config.request_timeout);
        frontend.set_quota(config.quota_bytes);
        frontend.set_disk_space(Arc::clone(&space));
        frontend.set_loopback_only(!auth.is_keyed());
        let configuration = frontend.replica().node().status().configuration;
        info!(
            id,
            term,
            "listening on {addr}, {}, cluster id {}",
            if configuration.is_empty() {
                "waiting to be added to a cluster".to_string()
            } else {
                configuration.to_string()
            },
            config.cluster_id
        );
        if !auth.is_keyed() && many {
            info!(
                id,
                term,
                "warning: no cluster key; peers are not authenticated (allowed because every \
                 address is loopback; use -cluster-key-file for anything else)"
            );
        }
        let clients = ClientAuth::new(config.client_token.as_ref().map(|t| t.0.as_str()));
        let shared = Arc::new(Shared {
            config,
            frontend,
            connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            forward_pool: Mutex::new(BTreeMap::new()),
            auth,
            clients,
            refusals: LogThrottle::new(Duration::from_secs(5)),
            stray_peer_lines: LogThrottle::new(Duration::from_secs(5)),
            http_requests: CounterVec::default(),
            started: SystemTime::now(),
        });
        let accept_shared = Arc::clone(&shared);
        let listener = thread::Builder::new()
            .name(format!("listen-{id}"))
            .spawn(move || accept_loop(listener, accept_shared))?;
        let (stop_watch, stop) = mpsc::channel();
        let watch_shared = Arc::clone(&shared);
        let watcher = thread::Builder::new()
            .name(format!("disk-{id}"))
            .spawn(move || {
                let replica = watch_shared.frontend.replica();
                disk::watch(id, &space, &storage, replica, &stop);
            })?;
        Ok(Server {
            addr,
            shared,
            listener: Some(listener),
            disk_watch: Some((stop_watch, watcher)),
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

    /// The storage failure that stopped this server's node, if one did: the
    /// node has stopped for good (see [`StorageFailure`]), and its owner
    /// decides what that means (the `raftkv` binary exits).
    pub fn failure(&self) -> Option<StorageFailure> {
        self.node().failure()
    }

    /// Waits until storage fails, and returns the failure (`raftkv`'s main
    /// thread waits here, then exits with `node::EXIT_STORAGE_FAILED`).
    pub fn wait_for_failure(&self) -> StorageFailure {
        loop {
            if let Some(failure) = self.node().wait_for_failure(None) {
                return failure;
            }
        }
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
        if let Some((stop, watcher)) = self.disk_watch.take() {
            drop(stop);
            let _ = watcher.join();
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
            let busy = Reply::error(Code::Busy, "too many connections; try later");
            let _ = stream.write_all(format!("{busy}\n").as_bytes());
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

fn handle_connection(stream: TcpStream, shared: &Shared) {
    let Ok(remote) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = io::BufWriter::new(write_half);
    let mut reader = BufReader::new(stream);
    let mut conn = client::ClientConn::new(remote);
    let mut first = true;
    loop {
        let limit = conn.line_limit(shared);
        let deadline = Instant::now() + shared.config.idle_timeout;
        let line = match read_line_before(&mut reader, |_| limit, deadline) {
            Ok(line) => line,
            Err(LineError::TooLong) => {
                let too_long = Reply::error(Code::TooLong, format!("line exceeds {limit} bytes"));
                let _ = writeln!(writer, "{too_long}");
                let _ = writer.flush();
                return;
            }
            Err(e) if e.is_timeout() => {
                debug!(
                    shared.config.id,
                    0,
                    "closing the connection from {remote}: no whole line within {:?}",
                    shared.config.idle_timeout
                );
                return;
            }
            Err(_) => return,
        };
        if first {
            if line.starts_with(b"PEER ") {
                return peer::serve(&line, reader, writer, remote, shared);
            }
            if http::request::is_request_line(&line) {
                return serve_http(line, reader, writer, remote, shared);
            }
            first = line.iter().all(u8::is_ascii_whitespace);
        }
        if let Some(watch) = conn.watch_request(&line, shared) {
            let open = match watch {
                Ok(request) => watch::serve(request, &mut reader, &mut writer, shared),
                Err(refusal) => writeln!(writer, "{refusal}")
                    .and_then(|_| writer.flush())
                    .is_ok(),
            };
            if !open {
                return;
            }
            continue;
        }
        let (reply, close) = conn.answer(&line, shared);
        let Some(reply) = reply else { continue };
        // The one place a reply becomes protocol text: its line.
        if writeln!(writer, "{reply}")
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
    remote: SocketAddr,
    shared: &Shared,
) {
    let forward = |l: &str| peer::forward(l, shared);
    let ctx = http::Context {
        id: shared.config.id,
        frontend: &shared.frontend,
        forward: &forward,
        open_connections: &shared.connections,
        requests: &shared.http_requests,
        started: shared.started,
        read_timeout: shared.config.http_read_timeout,
        clients: &shared.clients,
        remote: remote.ip(),
    };
    http::serve(line, reader, writer, &ctx);
}
