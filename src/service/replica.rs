//! A replica: one server's state machine kept in step with its Raft node.
//!
//! [`Replica::execute`] proposes an operation and waits until it is applied at
//! the index Raft assigned; the apply loop (the thread that takes the node's
//! batches of committed entries) applies every one through the [`Applier`]
//! (the state machine and the proposals waiting on it, shared with the
//! simulator), wakes the waiting request, and snapshots once the log has grown
//! past a threshold. The request thread sleeps once: the node thread numbers
//! its entry (or admits its read) and leaves it for the apply loop to
//! register (`Admissions`), rather than waking it to register itself.
//!
//! Snapshots never stall the apply loop for longer than a copy of the state's
//! structure: the loop clones the state machine (cheap, its values are shared
//! copy-on-write) and a background thread encodes the clone and hands it to
//! Raft, which then compacts its log. One snapshot is written at a time; while
//! one is, the loop keeps applying and starts the next once it is done.
//!
//! Linearizability: every write goes through the log, so a reply reflects
//! exactly the operations committed before it; a deposed leader cannot answer,
//! since its proposal either never commits or is replaced, and the waiter
//! learns that from the entry applied at its index. Reads (`GET`, `BALANCE`,
//! `AUDIT`) skip the log: Raft confirms with one heartbeat round that this
//! server still leads, then the read is answered once the state machine has
//! applied the read index (ReadIndex, thesis §6.4).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::admissions::{self, Admissions, Admitted};
use super::applier::{Applier, Outcome};
use super::command::Command;
use super::lease_clock::{self, LeaseClock};
use super::reply::{Code, Reply};
use super::snapshot_policy::{LogSinceSnapshot, SnapshotPolicy};
use super::state_machine::{Op, StateMachine, Stats};
use super::watch::{WatchHub, WatchLimits};
use crate::codec::Encode;
use crate::node::{Callback, Node};
use crate::raft::messages::NodeId;
use crate::raft::messages::{Index, Term};
use crate::raft::{ApplyMsg, ProposeError};
use crate::{debug, info};

/// Why an operation has no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// This server is not the leader (or lost leadership and the entry was
    /// replaced): the operation was not applied. Safe to retry elsewhere.
    NotLeader,
    /// No outcome within the deadline: it may or may not have been applied.
    Timeout,
    /// This leader is handing leadership to this server (thesis §3.10): the
    /// operation was not proposed. Safe to retry shortly.
    Transferring(NodeId),
}

impl ExecError {
    /// What a client is told when there is no outcome to give (and the
    /// request is not forwarded).
    pub fn reply(&self) -> Reply {
        match self {
            ExecError::NotLeader => Reply::not_leader(),
            ExecError::Timeout => Reply::outcome_unknown(),
            ExecError::Transferring(to) => Reply::error(
                Code::NoLeader,
                format!("leadership is moving to {to}; retry"),
            ),
        }
    }
}

impl From<ProposeError> for ExecError {
    /// Why Raft refused to take a proposal or a read.
    fn from(refused: ProposeError) -> Self {
        match refused {
            ProposeError::NotLeader => ExecError::NotLeader,
            ProposeError::Transferring(to) => ExecError::Transferring(to),
        }
    }
}

/// What a request handed to Raft comes to: Raft's refusal, or the outcome
/// the applier reported, or (`None`) nothing within the deadline. The one
/// mapping from outcomes to replies, which the replica and the simulator's
/// servers both run (the frontend then forwards [`ExecError::NotLeader`] or
/// answers [`ExecError::reply`]).
pub fn settle(answer: Option<Result<Outcome, ProposeError>>) -> Result<Reply, ExecError> {
    match answer {
        Some(Ok(outcome)) => outcome.into_result(),
        Some(Err(refused)) => Err(refused.into()),
        None => Err(ExecError::Timeout),
    }
}

/// How the apply loop reaches a waiting request: its outcome, or why Raft
/// refused it.
type Waiter = Sender<Result<Outcome, ProposeError>>;

type Applied = Applier<Waiter>;

/// Requests Raft has taken, for the apply loop to register
/// (`admissions.rs`). The node thread adds to it, in the callback of the
/// request's event; neither it nor the request's thread touches the state
/// machine's lock (which the apply loop holds while applying, and a
/// snapshot's copy for a while). The apply loop takes them all before each
/// batch: a proposal is always numbered, and a read admitted, before the
/// batch that commits or confirms it is sent.
type SharedAdmissions = Mutex<Admissions<Waiter>>;

/// How a copy of the state is streamed into a snapshot (run off the apply
/// thread): [`StateMachine::write_snapshot`], or in tests one that waits to be
/// told.
type SnapshotEncoder = Arc<dyn Fn(&StateMachine, &mut dyn Write) -> io::Result<()> + Send + Sync>;

/// The replicated service on one server.
pub struct Replica {
    node: Arc<Node>,
    applied: Arc<Mutex<Applied>>,
    admissions: Arc<SharedAdmissions>,
    /// The space quota in force, as of the last batch applied: read on every
    /// request, so it must not take the state machine's lock.
    quota_in_force: Arc<AtomicU64>,
    apply_loop: Mutex<Option<JoinHandle<()>>>,
    /// The next ReadIndex read id.
    next_read: AtomicU64,
    /// The disk is low on space: snapshot after every entry applied.
    space_low: Arc<AtomicBool>,
    /// The recent changes, and the watchers waiting on them.
    watch: Arc<WatchHub>,
    /// The leader's lease deadlines (see `lease_clock.rs`).
    lease_clock: Arc<Mutex<LeaseClock>>,
    lease_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Replica {
    /// Starts applying what `node` delivers on `apply` (the node's
    /// [`crate::node::ApplySink::Batches`]), snapshotting as `policy` says.
    /// Its watches keep the history `limits` allow.
    pub fn start(
        node: Arc<Node>,
        apply: Receiver<Vec<ApplyMsg>>,
        policy: SnapshotPolicy,
        limits: WatchLimits,
    ) -> Replica {
        Self::start_with(
            node,
            apply,
            policy,
            Arc::new(|sm: &StateMachine, mut w: &mut dyn Write| {
                sm.write_snapshot(&mut w).map(drop)
            }),
            limits,
        )
    }

    /// [`Replica::start`], encoding snapshots with `encode`.
    fn start_with(
        node: Arc<Node>,
        apply: Receiver<Vec<ApplyMsg>>,
        policy: SnapshotPolicy,
        encode: SnapshotEncoder,
        limits: WatchLimits,
    ) -> Replica {
        let applied = Arc::new(Mutex::new(Applied::default()));
        let watch = Arc::new(WatchHub::new(limits));
        let loop_watch = Arc::clone(&watch);
        let admissions = Arc::new(SharedAdmissions::default());
        let (loop_node, loop_applied) = (Arc::clone(&node), Arc::clone(&applied));
        let loop_admissions = Arc::clone(&admissions);
        let quota_in_force = Arc::new(AtomicU64::new(StateMachine::default().quota()));
        let loop_quota = Arc::clone(&quota_in_force);
        let space_low = Arc::new(AtomicBool::new(false));
        let snapshots = Snapshots {
            policy,
            since: LogSinceSnapshot::default(),
            last_size: Arc::new(AtomicU64::new(0)),
            encode,
            writing: None,
            space_low: Arc::clone(&space_low),
        };
        let apply_loop = thread::Builder::new()
            .name(format!("service-{}", node.id()))
            .spawn(move || {
                let shared = (&loop_node, &*loop_applied, &*loop_admissions);
                run_apply_loop(shared, &loop_quota, &loop_watch, apply, snapshots);
            })
            .ok();
        Replica {
            node,
            applied,
            admissions,
            quota_in_force,
            apply_loop: Mutex::new(apply_loop),
            next_read: AtomicU64::new(1),
            space_low,
            watch,
            lease_clock: Arc::new(Mutex::new(LeaseClock::new(Duration::ZERO))),
            lease_thread: Mutex::new(None),
        }
    }

    /// The history of changes and its watchers.
    pub fn watch(&self) -> &WatchHub {
        &self.watch
    }

    /// Starts the lease thread: every [`lease_clock::TICK`], while this server leads, it
    /// proposes the expiry of every lease whose deadline passed on this
    /// server's clock (`lease_clock.rs`); a lease it first sees gets `grace`
    /// more (at least the longest election timeout).
    pub fn start_leases(&self, grace: Duration) {
        *lock_clock(&self.lease_clock) = LeaseClock::new(grace);
        let applied = Arc::clone(&self.applied);
        let leases = move || {
            lock(&applied)
                .state_machine()
                .leases()
                .iter()
                .map(|(id, l)| (id, l.ttl, l.renewals))
                .collect()
        };
        let clock = Arc::clone(&self.lease_clock);
        let thread = lease_clock::spawn(Arc::clone(&self.node), clock, leases);
        *self.lease_thread.lock().unwrap_or_else(|e| e.into_inner()) = thread;
    }

    /// How long lease `id` has left by this server's lease clock, if this
    /// server leads and has seen it.
    pub fn lease_remaining(&self, id: u64) -> Option<Duration> {
        lock_clock(&self.lease_clock).remaining(id, Instant::now())
    }

    /// Says whether the disk is low on space: while it is, a snapshot
    /// follows every entry applied (one at a time), so that `DEL`s free
    /// space at once instead of after the usual threshold of log.
    pub fn set_space_low(&self, low: bool) {
        self.space_low.store(low, Ordering::Relaxed);
    }

    /// The Raft node underneath.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Executes `op` and waits up to `timeout` for its reply: a write is
    /// proposed through the log, a read is served by ReadIndex.
    pub fn execute(&self, op: &Op, timeout: Duration) -> Result<Reply, ExecError> {
        if op.command.is_read() {
            return self.read(op, timeout);
        }
        let metrics = self.node.metrics();
        let (tx, rx) = mpsc::channel();
        let admissions = Arc::clone(&self.admissions);
        // The node thread numbers the entry and queues this request for the
        // apply loop; this thread sleeps once, until the outcome is known.
        let on_numbered = move |proposed: Result<(Index, Term), ProposeError>| match proposed {
            Ok((index, term)) => lock_admissions(&admissions).admit(Admitted::Proposal {
                index,
                term,
                waiter: tx,
            }),
            Err(e) => drop(tx.send(Err(e))),
        };
        metrics.proposals_pending.inc();
        self.node.propose(op.encode(), Callback::new(on_numbered));
        let answer = rx.recv_timeout(timeout).ok();
        metrics.proposals_pending.dec();
        match &answer {
            Some(Ok(Outcome::Replaced)) => metrics.proposals_failed_leadership_lost.inc(),
            Some(Ok(Outcome::Unknown)) | None => metrics.proposals_failed_timeout.inc(),
            // Refused (no proposal was made: the frontend forwards), or applied.
            Some(Err(_)) | Some(Ok(Outcome::Reply(_))) => {}
        }
        settle(answer)
    }

    /// Thesis §6.4: a read without a log entry. Asks Raft to confirm this
    /// server still leads (once Raft admits the read, the apply loop
    /// registers it), and answers once the state machine has applied the
    /// read index. A session's read is not recorded in its
    /// session (reads change nothing, so retrying one is harmless).
    fn read(&self, op: &Op, timeout: Duration) -> Result<Reply, ExecError> {
        let id = self.next_read.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let (admissions, command) = (Arc::clone(&self.admissions), op.command.clone());
        // As for a proposal: the node thread queues the read for the apply
        // loop, or sends Raft's refusal on the channel the answer would use.
        let on_admitted = move |admitted: Result<(), ProposeError>| match admitted {
            Ok(()) => lock_admissions(&admissions).admit(Admitted::Read {
                id,
                command,
                waiter: tx,
            }),
            Err(e) => drop(tx.send(Err(e))),
        };
        self.node.admit_read(id, Callback::new(on_admitted));
        let answer = rx.recv_timeout(timeout).ok();
        if let Some(Ok(Outcome::Unknown)) | None = answer {
            // Not registered yet (a leader cut off makes no batches): drop
            // it from the list, so retries cannot pile up there. Taken by
            // the apply loop meanwhile: it registers it, and Raft's
            // confirmation or failure removes it then.
            lock_admissions(&self.admissions).forget_read(id);
            lock(&self.applied).cancel_read(id);
        }
        settle(answer)
    }

    /// Answers a read from this server's state machine as it is, without
    /// asking the leader (a serializable read: any server answers it, and
    /// it may be stale; its reply says which revision it reflects).
    pub fn read_local(&self, command: &Command) -> Reply {
        lock(&self.applied)
            .state_machine()
            .read(command)
            .unwrap_or_else(|| Reply::error(Code::BadRequest, "not a read"))
    }

    /// Sizes of the state machine as of the last applied entry.
    pub fn stats(&self) -> Stats {
        lock(&self.applied).state_machine().stats()
    }

    /// The space quota in force (replicated by `SetQuota`), as of the last
    /// batch of entries applied.
    pub fn quota_in_force(&self) -> u64 {
        self.quota_in_force.load(Ordering::Relaxed)
    }

    /// Reads the state machine as of the last applied entry.
    pub fn with_state<R>(&self, read: impl FnOnce(&StateMachine) -> R) -> R {
        read(lock(&self.applied).state_machine())
    }

    /// The index applied last and the state machine's encoding at that point
    /// (for comparing replicas). Encoded outside the lock, from a copy.
    pub fn applied_state(&self) -> (Index, Vec<u8>) {
        let (index, state) = {
            let applied = lock(&self.applied);
            (applied.last_applied(), applied.state_machine().clone())
        };
        (index, state.snapshot())
    }

    /// Stops the node and waits for the apply loop to finish.
    pub fn shutdown(&self) {
        self.node.kill();
        join(&self.apply_loop);
        join(&self.lease_thread);
        self.watch.notify();
    }
}

/// Waits for the thread in `slot`, if one was started and not yet joined.
fn join(slot: &Mutex<Option<JoinHandle<()>>>) {
    let handle = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

fn lock_clock(clock: &Mutex<LeaseClock>) -> MutexGuard<'_, LeaseClock> {
    clock.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts the bytes written through it.
struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    written: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn lock(applied: &Mutex<Applied>) -> MutexGuard<'_, Applied> {
    applied.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_admissions(admissions: &SharedAdmissions) -> MutexGuard<'_, Admissions<Waiter>> {
    admissions.lock().unwrap_or_else(|e| e.into_inner())
}

/// While the disk is low on space, how long the apply loop waits for a batch
/// before it compacts what it has applied anyway.
const COMPACT_CHECK: Duration = Duration::from_secs(1);

/// When and how the apply loop snapshots, and the snapshot being written.
struct Snapshots {
    policy: SnapshotPolicy,
    /// The log applied since the last snapshot began.
    since: LogSinceSnapshot,
    /// The size of the last snapshot written.
    last_size: Arc<AtomicU64>,
    encode: SnapshotEncoder,
    /// The thread writing a snapshot, if one was started. Invariant: at most one.
    writing: Option<JoinHandle<()>>,
    /// The disk is low on space: any log applied calls for a snapshot.
    space_low: Arc<AtomicBool>,
}

impl Snapshots {
    /// Whether the disk is low on space (compact eagerly).
    fn space_low(&self) -> bool {
        self.space_low.load(Ordering::Relaxed)
    }

    /// Whether the log applied since the last snapshot calls for one: any
    /// at all while the disk is low on space, else as the policy says.
    fn due(&self) -> bool {
        if self.space_low() {
            return self.since.bytes() > 0;
        }
        let last = self.last_size.load(Ordering::Relaxed);
        self.policy.due(self.since.bytes(), last)
    }

    /// Whether a snapshot is still being written (reaps a finished one).
    fn busy(&mut self) -> bool {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return true;
        }
        self.wait();
        false
    }

    /// Encodes `state`, a copy of the state machine through `index`, on its
    /// own thread, then hands it to Raft to compact the log. A snapshot that
    /// Raft has overtaken meanwhile (one installed from the leader at a later
    /// index) is refused by it and dropped.
    fn start(
        &mut self,
        node: &Arc<Node>,
        (index, term): (Index, Term),
        state: StateMachine,
        copied: Duration,
    ) {
        debug_assert!(self.writing.is_none(), "one snapshot at a time");
        let (node, encode, id) = (Arc::clone(node), Arc::clone(&self.encode), node.id());
        let last_size = Arc::clone(&self.last_size);
        let write = move || {
            let started = Instant::now();
            let mut written = 0u64;
            let fill = &mut |w: &mut dyn Write| {
                let mut counting = CountingWriter {
                    inner: w,
                    written: 0,
                };
                let result = encode(&state, &mut counting);
                written = counting.written;
                result
            };
            let taken = node.write_snapshot(index, term, fill);
            last_size.store(written, Ordering::Relaxed);
            match taken {
                Ok(taken) => debug!(
                    id,
                    0,
                    "snapshot through {index}: state copied in {copied:?} on the apply loop, \
                     {written} bytes written in {:?} beside it{}",
                    started.elapsed(),
                    if taken { "" } else { "; Raft has a later one" }
                ),
                // A storage failure: the node has stopped, and said why.
                Err(_) if node.failure().is_some() => {}
                Err(e) => info!(id, 0, "could not write a snapshot through {index}: {e}"),
            }
        };
        match thread::Builder::new()
            .name(format!("snapshot-{id}"))
            .spawn(write)
        {
            Ok(handle) => self.writing = Some(handle),
            // Retried after another threshold of log.
            Err(e) => info!(id, 0, "no thread to write a snapshot through {index}: {e}"),
        }
    }

    /// Waits for the snapshot being written, if any.
    fn wait(&mut self) {
        if let Some(writing) = self.writing.take() {
            let _ = writing.join();
        }
    }
}

impl Drop for Snapshots {
    /// The apply loop ends only after its snapshot is written (or refused).
    fn drop(&mut self) {
        self.wait();
    }
}

/// Registers the requests Raft has taken since the last batch (see
/// `admissions.rs`); a proposal whose entry was applied already learns its
/// outcome now.
fn register_admitted(applied: &Mutex<Applied>, admissions: &SharedAdmissions) {
    let fresh = lock_admissions(admissions).take();
    if fresh.is_empty() {
        return;
    }
    admissions::register(fresh, &mut lock(applied), |waiter, outcome| {
        let _ = waiter.send(Ok(outcome));
    });
}

/// The apply loop: takes each batch of committed entries (and confirmed
/// reads, and snapshots) from the node, in order, until the node stops.
fn run_apply_loop(
    (node, applied, admissions): (&Arc<Node>, &Mutex<Applied>, &SharedAdmissions),
    quota_in_force: &AtomicU64,
    watch: &WatchHub,
    apply: Receiver<Vec<ApplyMsg>>,
    mut snapshots: Snapshots,
) {
    // The last entry applied (a snapshot can end there), if one was since
    // the last snapshot.
    let mut last_applied = None;
    loop {
        let batch = match apply.recv_timeout(COMPACT_CHECK) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => {
                // While the disk is low, compact whatever was applied, even
                // if nothing more arrives (the guard refuses most writes).
                let idle_point = last_applied.filter(|_| snapshots.since.bytes() > 0);
                if let Some(point) = idle_point.filter(|_| snapshots.space_low()) {
                    if !snapshots.busy() {
                        let started = Instant::now();
                        let copy = lock(applied).state_machine().clone();
                        snapshots.since.snapshot_started();
                        snapshots.start(node, point, copy, started.elapsed());
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if node.is_killed() {
            return;
        }
        register_admitted(applied, admissions);
        for msg in batch {
            last_applied = match &msg {
                ApplyMsg::Command { index, term, .. } | ApplyMsg::Internal { index, term } => {
                    Some((*index, *term))
                }
                ApplyMsg::Snapshot(_) => None,
                ApplyMsg::Read { .. } | ApplyMsg::ReadFailed { .. } => last_applied,
            };
            apply_one((node, applied, watch), msg, &mut snapshots);
            if node.is_killed() {
                return;
            }
        }
        watch.notify();
        let quota = lock(applied).state_machine().quota();
        quota_in_force.store(quota, Ordering::Relaxed);
    }
}

/// Applies one message from the node, and starts a snapshot if the policy
/// says one is due.
fn apply_one(
    (node, applied, watch): (&Arc<Node>, &Mutex<Applied>, &WatchHub),
    msg: ApplyMsg,
    snapshots: &mut Snapshots,
) {
    let id = node.id();
    snapshots.since.applied(&msg);
    match msg {
        ApplyMsg::Command {
            index,
            term,
            command,
        } => {
            node.metrics().proposals_applied.inc();
            let mut state = lock(applied);
            if let (_, Some((waiter, outcome))) = state.apply(index, term, &command) {
                let _ = waiter.send(Ok(outcome));
            }
            // A push under the hub's lock; watchers are woken after the batch.
            watch.record(state.changes());
            // Past the threshold while a snapshot is still being written:
            // keep applying, and start the next one once it is done.
            if snapshots.due() && !snapshots.busy() {
                let started = Instant::now();
                let copy = state.state_machine().clone();
                drop(state);
                snapshots.since.snapshot_started();
                snapshots.start(node, (index, term), copy, started.elapsed());
            }
        }
        ApplyMsg::Internal { index, term } => {
            if let Some((waiter, outcome)) = lock(applied).skip(index, term) {
                let _ = waiter.send(Ok(outcome));
            }
        }
        ApplyMsg::Read { id, .. } => {
            if let Some((waiter, outcome)) = lock(applied).read(id) {
                let _ = waiter.send(Ok(outcome));
            }
        }
        ApplyMsg::ReadFailed { id } => {
            if let Some((waiter, outcome)) = lock(applied).read_failed(id) {
                let _ = waiter.send(Ok(outcome));
            }
        }
        ApplyMsg::Snapshot(snapshot) => {
            let covered = snapshot.last_included_index;
            let started = Instant::now();
            // Streamed from storage: read outside the lock, then swapped in.
            let read = node
                .open_snapshot(&snapshot)
                .and_then(|mut r| StateMachine::read_snapshot(&mut r));
            let restored = read.map(|sm| {
                let revision = sm.kv().revision();
                let mut state = lock(applied);
                // Changes the snapshot skipped are not in the history: a
                // watcher behind it learns that it was compacted.
                watch.reset(revision);
                state.restore_state(covered, sm)
            });
            node.metrics()
                .snapshot_install
                .observe_duration(started.elapsed());
            match restored {
                // Proposals the snapshot covers have unknown outcomes.
                Ok(waiters) => {
                    for waiter in waiters {
                        let _ = waiter.send(Ok(Outcome::Unknown));
                    }
                }
                Err(e) => {
                    // Storage could not give back what it stored: fail-stop.
                    let what = format!("reading the snapshot through {covered}: {e}");
                    node.fail(&io::Error::new(e.kind(), what));
                    return;
                }
            }
            debug!(id, 0, "restored state machine from snapshot at {covered}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::core::{Config, Role};
    use crate::raft::messages::{Request, Response};
    use crate::service::command::Command;
    use crate::storage::memory::MemoryStorage;
    use crate::transport::{TransportError, Transporter};

    /// A one-server cluster has no one to call.
    struct NoPeers;

    impl Transporter for NoPeers {
        fn call(&self, _: NodeId, _: &Request) -> Result<Response, TransportError> {
            Err(TransportError::Unreachable("no peers".into()))
        }
    }

    /// Long enough that only a stalled apply loop could miss it.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn put(replica: &Replica, i: usize) -> Result<Reply, ExecError> {
        let op = Op {
            client_id: 0,
            seq: 0,
            command: Command::Put(format!("k{i}").into(), "v".repeat(100).into()),
        };
        replica.execute(&op, PATIENCE)
    }

    /// The snapshot encoder is held on a channel the test controls: while it
    /// is held, the apply loop must keep applying (and start no second
    /// snapshot); once released, Raft takes the snapshot. Reference: §7.
    #[test]
    fn the_apply_loop_keeps_applying_while_a_snapshot_is_being_written() {
        let (apply_tx, apply_rx) = mpsc::channel();
        let node = Node::with_sink(
            Config::new(1, vec![1]),
            Duration::from_millis(5),
            Arc::new(NoPeers),
            Arc::new(MemoryStorage::new()),
            crate::node::ApplySink::Batches(apply_tx),
        )
        .unwrap();
        let (started_tx, started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let (started_tx, released) = (Mutex::new(started_tx), Mutex::new(released));
        let encode: SnapshotEncoder = Arc::new(move |sm: &StateMachine, mut w: &mut dyn Write| {
            let _ = lock_ignoring_poison(&started_tx).send(sm.stats().keys);
            let _ = lock_ignoring_poison(&released).recv();
            sm.write_snapshot(&mut w).map(drop)
        });
        // A snapshot about every 2 entries.
        let policy = SnapshotPolicy {
            log_bytes: 300,
            scale_with_state: false,
        };
        let limits = WatchLimits::default();
        let replica = Replica::start_with(Arc::new(node), apply_rx, policy, encode, limits);
        let node = Arc::clone(replica.node());
        assert!(node
            .wait_for_status(PATIENCE, |s| s.role == Role::Leader)
            .is_some());

        // Applies entries until the first snapshot starts; returns the number
        // of keys in the state it copied.
        let mut i = 0;
        let mut put_until_a_snapshot_starts = || loop {
            assert_eq!(put(&replica, i), Ok(Reply::Ok));
            i += 1;
            if let Ok(keys) = started.try_recv() {
                return keys;
            }
            assert!(i < 1000, "no snapshot started");
        };
        let first = put_until_a_snapshot_starts();
        for j in 0..20 {
            assert_eq!(put(&replica, 1000 + j), Ok(Reply::Ok), "applied meanwhile");
        }
        assert!(started.try_recv().is_err(), "one snapshot at a time");
        assert_eq!(node.status().snapshot_index, 0, "not written yet");

        release.send(()).unwrap();
        let status = node.wait_for_status(PATIENCE, |s| s.snapshot_index > 0);
        assert!(status.is_some(), "the snapshot reached Raft");
        // The next snapshot copies the state as it is now, with the entries
        // applied while the first was held.
        let second = put_until_a_snapshot_starts();
        assert!(second > first + 20, "{first} keys, then {second}");
        release.send(()).unwrap();
        replica.shutdown();
    }

    fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}
