//! The runtime around the core: one node thread, per-peer senders, and (for
//! the course's one-message-at-a-time apply channel) one applier.
//!
//! This is where the core's [`crate::raft::Ready`] meets threads, a [`Storage`] and a
//! [`Transporter`]: the node thread supplies the effects
//! ([`crate::raft::Effects`]) and [`crate::raft::executor`] decides their
//! order, the same executor the simulator (`src/sim/`) runs on virtual time.
//!
//! ```text
//!   propose() / snapshot() ┐                      ┌──▶ PeerSender(2) ──▶ Transporter ─┐
//!   handle_rpc() ──────────┼─▶ events ─▶ node ────┼──▶ PeerSender(3) ──▶ Transporter ─┤
//!   replies from peers ────┘    thread   │  ▲     │                                    │
//!                               owns Raft │  └─────┴──── Event::Response ◀────────────┘
//!                                         ▼
//!                                      Storage (persist first)
//!                                         │
//!                   ApplySink::Batches: ──┴──▶ one batch per Ready ──▶ service
//!                   ApplySink::Each: applier thread ──▶ apply channel ──▶ service
//! ```
//!
//! The node thread owns the [`Raft`] core and is the only thread that touches it.
//! It waits for events (or the next tick), feeds them to the core, then has
//! the executor carry out the core's [`crate::raft::Ready`]: persist, then
//! answer the RPCs it just handled and send, then apply. A storage failure
//! halts the execution and stops the node thread. It never blocks on the
//! network or on the service: requests go to per-peer sender queues and
//! committed entries to an unbounded channel (the service's own, or the
//! applier thread's, which alone waits for a bounded apply channel). So the service may call [`Node::snapshot`] from the thread
//! that consumes the apply channel.
//!
//! Every hand-off between threads is a wake-up, and on a loaded machine
//! wake-ups are much of what a request costs (NOTES.md, "Few wake-ups per
//! request"). So the server's path has as few as it can: a proposal or a read is a
//! message with a [`Callback`] (the caller sleeps once, until its outcome),
//! and committed entries go to the service as one batch per `Ready`, with no
//! thread in between.
//!
//! The requests to each peer wait in a [`peer_queue::PeerQueue`], whose rules
//! (merging, heartbeats riding on entries, dropping the oldest, snapshot
//! pieces read from storage) are plain code that the simulator runs too; the
//! sender threads (`sender.rs`) are the worker pool around it. When storage
//! fails, the node stops for good, and `failure.rs` says why and what to do
//! ([`StorageFailure`]).
//!
//! The peers are the members of the configuration in force (thesis §4): each
//! `Ready` that says the configuration changed starts senders for new
//! members, stops those of members gone, and gives the transport the
//! addresses, before any message of that `Ready` is sent.
//!
//! Trade-off: one thread owns the core instead of a mutex shared by many (the
//! course's usual shape). Every input is a message, so there is no lock to hold
//! while delivering to a channel, and no way to forget to persist before replying.
//!
//! Each event worth measuring is one call on [`RaftMetrics`]: a storage write,
//! an executed `Ready` (from which elections and leader changes are derived),
//! a peer call returning, a peer's RPC arriving.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::events::ring::{EventRing, Recorder};
use crate::events::watch::Watch;
use crate::events::{Answer, Persisted, Rpc, Sink, What};
use crate::metrics::raft::RaftMetrics;
use crate::raft::core::{Config, Raft, Role, Status};
use crate::raft::executor::{self, Effects};
use crate::raft::messages::{Index, NodeId, Request, Response, Term};
use crate::raft::ready::{ApplyMsg, Outbound, Persist, Snapshot};
use crate::raft::{
    Configuration, MembershipChange, MembershipError, ProposeError, TransferError, Verdict,
};
use crate::storage::{SnapshotFill, Storage};
use crate::transport::Transporter;
use crate::{debug, info};
use sender::ChunkSource;
use sender::PeerSender;

mod failure;
pub mod peer_queue;
pub mod sender;

pub use failure::{StorageFailure, EXIT_STORAGE_FAILED};

/// Most events handled before the node thread executes a [`crate::raft::Ready`]: bounds
/// the latency one busy batch adds to everything in it.
const MAX_EVENTS_PER_BATCH: usize = 1024;
/// If the node thread falls this many ticks behind (a stalled machine), it
/// delivers these and forgets the rest, rather than firing a burst of timers.
const MAX_CATCH_UP_TICKS: u32 = 5;

/// Input to the node thread.
pub enum Event {
    /// An RPC from a peer; the reply goes back on `reply` once state is durable.
    Request {
        /// The sending peer.
        from: NodeId,
        /// What it asked.
        request: Request,
        /// Where to send the answer.
        reply: Sender<Response>,
    },
    /// A peer's reply to a request this node sent.
    Response {
        /// The peer that replied.
        from: NodeId,
        /// The request it answers.
        request: Request,
        /// Its answer.
        response: Response,
    },
    /// The service asks to replicate a command.
    Propose {
        /// The command.
        command: Vec<u8>,
        /// Called with the entry's index and term, or why it was refused.
        reply: OnProposed,
    },
    /// The service asks to serve read `id` by ReadIndex (thesis §6.4).
    ReadIndex {
        /// The service's read id.
        id: u64,
        /// Called with whether Raft took the read.
        reply: OnReadAdmitted,
    },
    /// The service asks the leader to change the membership (thesis §4).
    ChangeMembership {
        /// What to change.
        change: MembershipChange,
        /// Receives the change's number, or why it was refused.
        reply: Sender<Result<u64, MembershipError>>,
    },
    /// The service asks to hand leadership to `target` (thesis §3.10).
    TransferLeadership {
        /// The server that should lead.
        target: NodeId,
        /// Receives whether the transfer started.
        reply: Sender<Result<(), TransferError>>,
    },
    /// The service has snapshotted its state through `index` into `data`:
    /// store it, then compact.
    Snapshot {
        /// Last index the snapshot includes.
        index: Index,
        /// The snapshot bytes.
        data: Vec<u8>,
        /// Receives whether the log was compacted.
        done: Sender<bool>,
    },
    /// The service is about to write a snapshot through `index`: what
    /// storage keeps with it (the term, the configuration as of it).
    SnapshotPoint {
        /// Last index the snapshot includes.
        index: Index,
        /// Receives the description, `None` if no snapshot can end there.
        reply: Sender<Option<Snapshot>>,
    },
    /// The service has written a snapshot to storage itself: compact.
    SnapshotWritten {
        /// The snapshot.
        snapshot: Snapshot,
        /// Receives whether the log was compacted.
        done: Sender<bool>,
    },
    /// Stop the node thread.
    Shutdown,
}

/// A request's answer, called back exactly once: by the node thread with the
/// outcome, or with [`ProposeError::NotLeader`] if the node stops before
/// handling the request (the request was never made). A callback rather than
/// a channel, so that a proposer need not wake up twice (once for its entry's
/// index, once for its outcome): it registers where the apply loop will find
/// it, and sleeps only until its entry is applied.
pub struct Callback<T>(Option<AnswerFn<T>>);

/// What a [`Callback`] calls.
type AnswerFn<T> = Box<dyn FnOnce(Result<T, ProposeError>) + Send>;

impl<T> Callback<T> {
    /// Calls `f` with the answer.
    pub fn new(f: impl FnOnce(Result<T, ProposeError>) + Send + 'static) -> Self {
        Callback(Some(Box::new(f)))
    }

    fn call(mut self, answer: Result<T, ProposeError>) {
        if let Some(f) = self.0.take() {
            f(answer);
        }
    }
}

impl<T> Drop for Callback<T> {
    /// Dropped unanswered (the node stopped first): the request was never made.
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(ProposeError::NotLeader));
        }
    }
}

/// Called with the index and term a proposal's entry will have if it
/// commits, or why it was refused.
pub type OnProposed = Callback<(Index, Term)>;

/// Called with whether Raft admitted a read (its outcome arrives on the apply
/// channel).
pub type OnReadAdmitted = Callback<()>;

/// Where a node delivers what it has committed, in order.
pub enum ApplySink {
    /// One message at a time, on a bounded channel (the course's
    /// `applyCh`): an applier thread waits for the service to take each, so
    /// the node thread never blocks, and nothing is delivered once the node
    /// is killed.
    Each(SyncSender<ApplyMsg>),
    /// Each `Ready`'s messages as one batch, straight from the node thread
    /// (no thread in between): for a service that keeps up and drains
    /// batches, like [`crate::service::replica::Replica`].
    Batches(Sender<Vec<ApplyMsg>>),
}

/// State shared between the node's threads and its handle.
struct Shared {
    status: Mutex<Status>,
    /// Notified whenever `status` changes.
    status_changed: Condvar,
    killed: AtomicBool,
    /// Set once, when storage fails; the node has stopped for good.
    failure: Mutex<Option<StorageFailure>>,
    metrics: Arc<RaftMetrics>,
}

/// A running Raft server: the handle the service and the transport use.
pub struct Node {
    id: NodeId,
    events: Sender<Event>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// For snapshot bytes, which the service streams in and out itself.
    storage: Arc<dyn Storage>,
    /// Recent events (`GET /events`), unless they are off.
    ring: Option<Arc<EventRing>>,
}

impl Node {
    /// Starts a server from whatever `storage` holds. Committed commands (and
    /// snapshots, the stored one first) are delivered in order on `apply`; a
    /// clock ticks the core every `tick`.
    pub fn new(
        config: Config,
        tick: Duration,
        transport: Arc<dyn Transporter>,
        storage: Arc<dyn Storage>,
        apply: SyncSender<ApplyMsg>,
    ) -> io::Result<Node> {
        Self::with_sink(config, tick, transport, storage, ApplySink::Each(apply))
    }

    /// [`Node::new`], delivering to `apply` as the sink says.
    pub fn with_sink(
        config: Config,
        tick: Duration,
        transport: Arc<dyn Transporter>,
        storage: Arc<dyn Storage>,
        apply: ApplySink,
    ) -> io::Result<Node> {
        Self::with_events(config, tick, transport, storage, apply, None)
    }

    /// [`Node::with_sink`], recording what happens into `events` (see
    /// [`crate::events`]) if given.
    pub fn with_events(
        config: Config,
        tick: Duration,
        transport: Arc<dyn Transporter>,
        storage: Arc<dyn Storage>,
        apply: ApplySink,
        events: Option<Arc<EventRing>>,
    ) -> io::Result<Node> {
        let initial = storage.load()?;
        let id = config.id;
        let raft = Raft::new(config, initial);
        // The peers arrive with the first Ready's configuration.
        let metrics = Arc::new(RaftMetrics::new(&[]));
        let shared = Arc::new(Shared {
            status: Mutex::new(raft.status()),
            status_changed: Condvar::new(),
            killed: AtomicBool::new(false),
            failure: Mutex::new(None),
            metrics: Arc::clone(&metrics),
        });
        let (events_tx, events_rx) = mpsc::channel();
        let (apply_tx, applier) = match apply {
            ApplySink::Batches(batches) => (batches, None),
            ApplySink::Each(each) => {
                let (apply_tx, apply_rx) = mpsc::channel();
                (apply_tx, Some((apply_rx, each)))
            }
        };
        info!(
            id,
            raft.status().term,
            "starting: log {}..={}, snapshot through {}",
            raft.status().snapshot_index + 1,
            raft.status().last_log_index,
            raft.status().snapshot_index
        );
        let node_loop = NodeLoop {
            raft,
            tick,
            events: events_rx,
            replies: events_tx.clone(),
            transport,
            senders: BTreeMap::new(),
            addresses: BTreeMap::new(),
            storage: Arc::clone(&storage),
            applier: apply_tx,
            shared: Arc::clone(&shared),
            pending_replies: Vec::new(),
            recorder: Recorder::new(events.clone()),
            watch: Watch::default(),
        };
        let mut threads = vec![thread::Builder::new()
            .name(format!("raft-{id}"))
            .spawn(move || node_loop.run())?];
        if let Some((batches, apply)) = applier {
            let applier_shared = Arc::clone(&shared);
            threads.push(
                thread::Builder::new()
                    .name(format!("apply-{id}"))
                    .spawn(move || run_applier(batches, apply, &applier_shared))?,
            );
        }
        Ok(Node {
            id,
            events: events_tx,
            shared,
            threads: Mutex::new(threads),
            storage,
            ring: events,
        })
    }

    /// This server's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Asks the leader to replicate `command`. Returns the index and term the
    /// entry will have if it commits, or why it was refused (not the leader,
    /// killed, or handing leadership over). Returns at once; commitment is
    /// reported on the apply channel.
    pub fn start(&self, command: Vec<u8>) -> Result<(Index, Term), ProposeError> {
        let (reply, rx) = mpsc::channel();
        self.propose(
            command,
            Callback::new(move |proposed| {
                let _ = reply.send(proposed);
            }),
        );
        rx.recv().unwrap_or(Err(ProposeError::NotLeader))
    }

    /// [`Node::start`] without waiting: `reply` is called on the node thread
    /// with the index and term, or why the proposal was refused (or, if the
    /// node is stopping, with `NotLeader` on whichever thread drops the
    /// request: possibly this one, before `propose` returns).
    pub fn propose(&self, command: Vec<u8>, reply: OnProposed) {
        self.send_event(Event::Propose { command, reply });
    }

    /// Asks the leader to serve read `id` without a log entry (thesis §6.4).
    /// Returns whether Raft took it; `ApplyMsg::Read { id, .. }` arrives on
    /// the apply channel when the read may be answered, or
    /// `ApplyMsg::ReadFailed`.
    pub fn read_index(&self, id: u64) -> Result<(), ProposeError> {
        let (reply, rx) = mpsc::channel();
        self.admit_read(
            id,
            Callback::new(move |admitted| {
                let _ = reply.send(admitted);
            }),
        );
        rx.recv().unwrap_or(Err(ProposeError::NotLeader))
    }

    /// [`Node::read_index`] without waiting: `reply` is called on the node
    /// thread with whether Raft took the read (if the node is stopping, as
    /// for [`Node::propose`]).
    pub fn admit_read(&self, id: u64, reply: OnReadAdmitted) {
        self.send_event(Event::ReadIndex { id, reply });
    }

    /// Asks the leader to change the membership (thesis §4). Returns the
    /// change's number once it has started; watch
    /// [`Status::membership_change`] for its outcome.
    pub fn change_membership(&self, change: MembershipChange) -> Result<u64, MembershipError> {
        let (reply, rx) = mpsc::channel();
        self.send_event(Event::ChangeMembership { change, reply });
        rx.recv().unwrap_or(Err(MembershipError::NotLeader))
    }

    /// Asks the leader to hand leadership to `target` (thesis §3.10). Returns
    /// once the transfer has started; watch [`Node::status`] for the outcome.
    pub fn transfer_leadership(&self, target: NodeId) -> Result<(), TransferError> {
        let (reply, rx) = mpsc::channel();
        self.send_event(Event::TransferLeadership { target, reply });
        rx.recv().unwrap_or(Err(TransferError::NotLeader))
    }

    /// The current term and whether this server believes it is the leader.
    pub fn state(&self) -> (Term, bool) {
        let status = self.status();
        (status.term, status.role == Role::Leader)
    }

    /// A summary of the server's state, as of its last handled event.
    pub fn status(&self) -> Status {
        self.lock_status().clone()
    }

    /// Waits up to `timeout` for the status to satisfy `done`; returns the
    /// status that did, or `None` on timeout.
    pub fn wait_for_status(
        &self,
        timeout: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Option<Status> {
        let deadline = Instant::now() + timeout;
        let mut status = self.lock_status();
        loop {
            if done(&status) {
                return Some(status.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            status = self
                .shared
                .status_changed
                .wait_timeout(status, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Its current term, as of its last handled event (cheaper than
    /// [`Node::status`]).
    pub fn term(&self) -> Term {
        self.lock_status().term
    }

    /// Its recent events, unless they are off.
    pub fn events(&self) -> Option<&Arc<EventRing>> {
        self.ring.as_ref()
    }

    /// What this server has measured about itself (for `/metrics` and `/status`).
    pub fn metrics(&self) -> &RaftMetrics {
        &self.shared.metrics
    }

    /// The service has applied everything through `index` and `data` is its state
    /// there: Raft stores it and may discard the log up to `index`. Safe to call
    /// from the thread that consumes the apply channel. (The node thread writes
    /// `data`; a large state should use [`Node::write_snapshot`].)
    pub fn snapshot(&self, index: Index, data: Vec<u8>) -> bool {
        let (done, rx) = mpsc::channel();
        self.send_event(Event::Snapshot { index, data, done });
        rx.recv().unwrap_or(false)
    }

    /// The service's state through (`index`, `term`) is streamed by `fill`:
    /// writes it to storage on the calling thread (the node thread goes on
    /// meanwhile), then lets Raft discard the log up to `index`. Returns
    /// whether it did (a newer snapshot may have arrived from the leader).
    pub fn write_snapshot(
        &self,
        index: Index,
        term: Term,
        fill: SnapshotFill<'_>,
    ) -> io::Result<bool> {
        // The description storage keeps with the bytes: the configuration as
        // of `index` (thesis §4.1) comes from the core.
        let (reply, point) = mpsc::channel();
        self.send_event(Event::SnapshotPoint { index, reply });
        let point = point.recv().ok().flatten();
        let Some(point) = point.filter(|p| p.last_included_term == term) else {
            return Ok(false);
        };
        let snapshot = match self.storage.write_snapshot(point, fill) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                self.fail(&e);
                return Err(e);
            }
        };
        let (done, rx) = mpsc::channel();
        self.send_event(Event::SnapshotWritten { snapshot, done });
        Ok(rx.recv().unwrap_or(false))
    }

    /// Opens a snapshot's bytes (one handed over as `ApplyMsg::Snapshot`).
    pub fn open_snapshot(&self, snapshot: &Snapshot) -> io::Result<Box<dyn std::io::Read + Send>> {
        self.storage.open_snapshot(snapshot)
    }

    /// Handles a request from peer `from` and returns the reply, once the state
    /// it depends on is durable. `None` if the node was killed meanwhile.
    pub fn handle_rpc(&self, from: NodeId, request: Request) -> Option<Response> {
        self.shared.metrics.heard_from(from);
        let (reply, rx) = mpsc::channel();
        self.send_event(Event::Request {
            from,
            request,
            reply,
        });
        rx.recv().ok()
    }

    /// True once [`Node::kill`] has been called, or storage failed.
    pub fn is_killed(&self) -> bool {
        self.shared.killed.load(Ordering::SeqCst)
    }

    /// Tells the server to stop, without waiting: nothing more is applied (to
    /// an [`ApplySink::Batches`] sink, nothing after the batch in hand) and
    /// its threads wind down. Safe to call from the apply channel's consumer
    /// (unlike [`Node::kill`], which waits for the applier that feeds it).
    pub fn stop(&self) {
        self.shared.killed.store(true, Ordering::SeqCst);
        let _ = self.events.send(Event::Shutdown);
    }

    /// Stops the server and waits for its threads to end (after in-flight calls
    /// return). Idempotent.
    pub fn kill(&self) {
        self.stop();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }

    fn send_event(&self, event: Event) {
        if !self.is_killed() {
            let _ = self.events.send(event);
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, Status> {
        lock(&self.shared.status)
    }
}

/// Locks `m`, carrying on with the data if another thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The node thread's state: the core and the means to execute its output.
struct NodeLoop {
    raft: Raft,
    tick: Duration,
    events: Receiver<Event>,
    /// Where the senders hand peers' replies (back into `events`).
    replies: Sender<Event>,
    transport: Arc<dyn Transporter>,
    /// One per server this one has known as a member (but itself).
    senders: BTreeMap<NodeId, PeerSender>,
    /// Every other server's address, from the configurations seen: current
    /// members, and servers removed since this process started.
    addresses: BTreeMap<NodeId, String>,
    storage: Arc<dyn Storage>,
    applier: Sender<Vec<ApplyMsg>>,
    shared: Arc<Shared>,
    /// Answers to RPCs handled in this batch, held until state is durable.
    pending_replies: Vec<PendingReply>,
    /// Events of the batch at hand (nothing, when events are off).
    recorder: Recorder,
    /// What the recorded events last said of the core.
    watch: Watch,
}

/// An answer held until the state it depends on is durable.
struct PendingReply {
    reply: Sender<Response>,
    response: Response,
    /// For the reply's event: the peer, the request, the rule that decided.
    from: NodeId,
    rpc: Option<Rpc>,
    verdict: Verdict,
}

impl NodeLoop {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        'run: loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(event) => {
                    if !self.handle(event) {
                        break 'run;
                    }
                    for _ in 1..MAX_EVENTS_PER_BATCH {
                        let Ok(event) = self.events.try_recv() else {
                            break;
                        };
                        if !self.handle(event) {
                            break 'run;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let mut ticks = 0;
            while Instant::now() >= next_tick {
                if ticks < MAX_CATCH_UP_TICKS {
                    self.raft.tick();
                    ticks += 1;
                }
                next_tick += self.tick;
            }
            if self.execute_ready().is_err() {
                // Fail-stop (the executor's rule): the node has said what
                // failed; the replies waiting for the write are dropped
                // unsent, and nothing more is done.
                break;
            }
        }
        self.shared.killed.store(true, Ordering::SeqCst);
        for sender in self.senders.values() {
            sender.close();
        }
        debug!(
            self.raft.status().id,
            self.raft.status().term,
            "node thread exited"
        );
    }

    /// Feeds one event to the core. Returns false on shutdown.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Request {
                from,
                request,
                reply,
            } => {
                let rpc = self.recorder.enabled().then(|| {
                    let rpc = Rpc::of(&request, 0);
                    let term = self.raft.hard_state().current_term;
                    let msg = 0;
                    self.recorder
                        .record(self.id(), term, What::Receive { from, msg, rpc });
                    rpc
                });
                let response = self.raft.handle_request(from, request);
                self.pending_replies.push(PendingReply {
                    reply,
                    response,
                    from,
                    rpc,
                    verdict: self.raft.last_verdict(),
                });
            }
            Event::Response {
                from,
                request,
                response,
            } => {
                if self.recorder.enabled() {
                    let what = What::ReplyReceived {
                        from,
                        msg: 0,
                        rpc: Rpc::of(&request, 0),
                        answer: Answer::of(&response),
                    };
                    let term = self.raft.hard_state().current_term;
                    self.recorder.record(self.id(), term, what);
                }
                self.raft.handle_response(from, &request, response)
            }
            Event::Propose { command, reply } => reply.call(self.raft.propose(command)),
            Event::ReadIndex { id, reply } => reply.call(self.raft.read_index(id)),
            Event::ChangeMembership { change, reply } => {
                let _ = reply.send(self.raft.change_membership(change));
            }
            Event::TransferLeadership { target, reply } => {
                let _ = reply.send(self.raft.transfer_leadership(target));
            }
            Event::Snapshot { index, data, done } => {
                let stored = self.store_snapshot(index, data);
                let _ = done.send(stored);
                if lock(&self.shared.failure).is_some() {
                    return false;
                }
            }
            Event::SnapshotPoint { index, reply } => {
                let _ = reply.send(self.raft.snapshot_point(index));
            }
            Event::SnapshotWritten { snapshot, done } => {
                let _ = done.send(self.raft.snapshot(snapshot));
            }
            Event::Shutdown => return false,
        }
        true
    }

    /// Writes a small snapshot handed over as bytes, then compacts. A
    /// failed write stops the node (fail-stop).
    fn store_snapshot(&mut self, index: Index, data: Vec<u8>) -> bool {
        let Some(point) = self.raft.snapshot_point(index) else {
            return false;
        };
        let fill: SnapshotFill<'_> = &mut |w| w.write_all(&data);
        match self.storage.write_snapshot(point, fill) {
            Ok(snapshot) => self.raft.snapshot(snapshot),
            Err(e) => {
                self.shared.fail(self.raft.config().id, &e);
                false
            }
        }
    }

    /// The configuration changed (thesis §4): senders for new members, their
    /// addresses to the transport. A server the configuration removes keeps
    /// its sender and address: the leader goes on replicating to it until its
    /// removal commits, then tells it so (thesis §4.2.3, `Raft::others`), and
    /// those messages must reach it. Its idle sender holds no thread.
    fn apply_configuration(&mut self, configuration: &Configuration) {
        let me = self.raft.config().id;
        let members: Vec<NodeId> = configuration
            .members()
            .map(|(id, _)| id)
            .filter(|&id| id != me)
            .collect();
        for (id, addr) in configuration.members().filter(|&(id, _)| id != me) {
            self.addresses.insert(id, addr.to_string());
        }
        self.transport.set_addresses(&self.addresses);
        self.shared.metrics.set_peers(&members);
        let peers: Vec<NodeId> = self.addresses.keys().copied().collect();
        for &p in &peers {
            if self.senders.contains_key(&p) {
                continue;
            }
            let events = Mutex::new(self.replies.clone());
            let on_reply = move |request, response| {
                let event = Event::Response {
                    from: p,
                    request,
                    response,
                };
                let _ = lock(&events).send(event);
            };
            let (transport, metrics) = (
                Arc::clone(&self.transport),
                Arc::clone(&self.shared.metrics),
            );
            let chunks = ChunkSource {
                storage: Arc::clone(&self.storage),
                chunk_bytes: self.raft.config().snapshot_chunk_bytes,
            };
            let sender = PeerSender::new(p, transport, Box::new(on_reply), metrics, chunks);
            self.senders.insert(p, sender);
        }
    }

    /// This server's id.
    fn id(&self) -> NodeId {
        self.raft.config().id
    }

    /// Records `what` now, in the current term.
    fn record(&mut self, what: What) {
        let term = self.raft.hard_state().current_term;
        let id = self.id();
        self.recorder.record(id, term, what);
    }

    /// Executes the core's output (src/raft/executor.rs has the order), then
    /// hands the round's events to the ring and publishes the status; a
    /// failed save stops the node for good.
    fn execute_ready(&mut self) -> Result<(), StorageFailure> {
        let executed = executor::execute(self);
        self.recorder.flush();
        executed?;
        let status = self.raft.status();
        self.shared.metrics.observe(&status);
        let mut shared = lock(&self.shared.status);
        if *shared != status && lock(&self.shared.failure).is_none() {
            *shared = status;
            self.shared.status_changed.notify_all();
        }
        Ok(())
    }
}

/// The runtime's effects: a [`Storage`], the per-peer senders, the held reply
/// channels, the apply sink. Only a failed save halts the execution (and the
/// node thread, for good: fail-stop). Each effect records its event (when
/// events are on): the write, each reply and request, the apply; `inspect`
/// reads the core's changes off it before each `Ready` is executed.
impl Effects for NodeLoop {
    type Halt = StorageFailure;

    fn core(&mut self) -> &mut Raft {
        &mut self.raft
    }

    fn inspect(&mut self, _ready: &crate::raft::Ready) -> Result<(), StorageFailure> {
        let tick = self.tick.as_micros() as u64;
        self.watch.observe(&self.raft, tick, &mut self.recorder);
        Ok(())
    }

    fn holds_replies(&self) -> bool {
        !self.pending_replies.is_empty()
    }

    fn configure(&mut self, configuration: &Configuration) -> Result<(), StorageFailure> {
        self.apply_configuration(configuration);
        Ok(())
    }

    /// Never halts by itself: the storage's answer goes to the executor,
    /// whose rule on a failure is [`Effects::fail_stop`].
    fn persist(&mut self, persist: &Persist) -> Result<io::Result<()>, StorageFailure> {
        let started = Instant::now();
        if let Err(e) = self.storage.save(persist) {
            return Ok(Err(e));
        }
        let with_snapshot = persist.snapshot.is_some();
        let took = started.elapsed();
        self.shared.metrics.persisted(with_snapshot, took);
        if self.recorder.enabled() {
            let micros = took.as_micros() as u64;
            self.record(What::Persist(Persisted::of(persist, micros)));
        }
        Ok(Ok(()))
    }

    /// Stops the node for good (`node/failure.rs`): one line says what
    /// failed and what to do, and the owner is told.
    fn fail_stop(&mut self, error: io::Error) -> StorageFailure {
        self.shared.fail(self.id(), &error)
    }

    fn release_replies(&mut self) -> Result<(), StorageFailure> {
        let replies = std::mem::take(&mut self.pending_replies);
        for pending in replies {
            if let Some(rpc) = pending.rpc {
                self.record(What::Reply {
                    to: pending.from,
                    msg: 0,
                    rpc,
                    answer: Answer::of(&pending.response),
                    verdict: pending.verdict,
                });
            }
            let _ = pending.reply.send(pending.response);
        }
        Ok(())
    }

    /// Hands requests to the per-peer senders.
    fn send(&mut self, messages: Vec<Outbound>) -> Result<(), StorageFailure> {
        let chunk = self.raft.config().snapshot_chunk_bytes;
        for message in messages {
            if self.recorder.enabled() {
                let rpc = Rpc::of(&message.request, chunk);
                self.record(What::Send {
                    to: message.to,
                    msg: 0,
                    rpc,
                });
            }
            if let Some(sender) = self.senders.get(&message.to) {
                sender.send(message.request);
            }
        }
        Ok(())
    }

    fn apply(&mut self, apply: Vec<ApplyMsg>) -> Result<(), StorageFailure> {
        if self.recorder.enabled() {
            if let Some(index) = apply.iter().rev().find_map(applied_index) {
                self.record(What::Apply { index });
            }
        }
        let _ = self.applier.send(apply);
        Ok(())
    }
}

/// The log index an apply message brings the state machine to, if any.
fn applied_index(msg: &ApplyMsg) -> Option<Index> {
    match msg {
        ApplyMsg::Command { index, .. } | ApplyMsg::Internal { index, .. } => Some(*index),
        ApplyMsg::Snapshot(s) => Some(s.last_included_index),
        ApplyMsg::Read { .. } | ApplyMsg::ReadFailed { .. } => None,
    }
}

/// The applier thread: hands committed entries to the service, in order, so the
/// node thread never waits for the service.
fn run_applier(batches: Receiver<Vec<ApplyMsg>>, apply: SyncSender<ApplyMsg>, shared: &Shared) {
    for batch in batches {
        for msg in batch {
            if shared.killed.load(Ordering::SeqCst) || apply.send(msg).is_err() {
                return;
            }
        }
    }
}
