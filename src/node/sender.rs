//! Per-peer sender threads: carry the core's requests through the [`Transporter`].
//!
//! Each peer gets a [`PeerQueue`] and a small pool of worker threads. The
//! queue's rules (merging, heartbeats riding on entries, dropping the oldest,
//! snapshot pieces read from storage) are plain code in `peer_queue.rs`, which
//! the simulator runs too; this file is the threads around it. On a healthy
//! link one worker sends everything, in order, so AppendEntries arrive in the
//! order the leader pipelined them. A call to a dead or partitioned peer can
//! block for seconds, though, and must not hold up the next heartbeat: when
//! every busy worker has been stuck in its call for longer than
//! [`STUCK_AFTER`], the next request starts another worker, up to
//! [`MAX_WORKERS`]. Idle workers exit after a while.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::peer_queue::{accepted_append, fill_snapshot_piece, PeerQueue};
use crate::metrics::raft::RaftMetrics;
use crate::raft::messages::{NodeId, Request, Response};
use crate::storage::Storage;
use crate::transport::Transporter;

/// Where a worker hands each reply, with the request it answers.
pub type OnReply = Box<dyn Fn(Request, Response) + Send + Sync>;

/// Where a worker reads the bytes of the snapshot pieces it sends: the core
/// names the piece (offset, and whether it is the last), the worker reads it
/// from storage just before sending, so a snapshot of any size is never held
/// in memory and a slow disk never holds up the node thread.
pub struct ChunkSource {
    /// The server's storage.
    pub storage: Arc<dyn Storage>,
    /// Bytes per piece (the core's `Config::snapshot_chunk_bytes`).
    pub chunk_bytes: u64,
}

impl ChunkSource {
    /// Fills an InstallSnapshot request's bytes; false if the snapshot is gone.
    fn fill(&self, request: &mut Request) -> bool {
        fill_snapshot_piece(request, self.chunk_bytes, &*self.storage)
    }
}

/// Most concurrent calls to one peer.
pub const MAX_WORKERS: usize = 16;
/// An idle worker exits after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// A call taking longer than this no longer holds up the queue: another worker starts.
pub const STUCK_AFTER: Duration = Duration::from_millis(50);

/// The sending side for one peer.
pub struct PeerSender {
    shared: Arc<Shared>,
}

struct Shared {
    peer: NodeId,
    transport: Arc<dyn Transporter>,
    on_reply: OnReply,
    metrics: Arc<RaftMetrics>,
    chunks: ChunkSource,
    state: Mutex<QueueState>,
    wakeup: Condvar,
}

#[derive(Default)]
struct QueueState {
    queue: PeerQueue,
    idle: usize,
    /// When each busy worker's current call began.
    busy_since: Vec<Instant>,
    workers: Vec<JoinHandle<()>>,
    closed: bool,
}

impl PeerSender {
    /// A sender for `peer` that hands every reply to `on_reply` and times
    /// every call in `metrics`.
    pub fn new(
        peer: NodeId,
        transport: Arc<dyn Transporter>,
        on_reply: OnReply,
        metrics: Arc<RaftMetrics>,
        chunks: ChunkSource,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                peer,
                transport,
                on_reply,
                metrics,
                chunks,
                state: Mutex::new(QueueState::default()),
                wakeup: Condvar::new(),
            }),
        }
    }

    /// Queues `request` for delivery; never blocks on the network.
    pub fn send(&self, request: Request) {
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        state.queue.push(request);
        if state.idle > 0 {
            self.shared.wakeup.notify_one();
            return;
        }
        state.workers.retain(|w| !w.is_finished());
        let all_stuck = state.busy_since.iter().all(|t| t.elapsed() > STUCK_AFTER);
        if state.workers.len() < MAX_WORKERS && all_stuck {
            let shared = Arc::clone(&self.shared);
            let name = format!("send-to-{}", self.shared.peer);
            if let Ok(handle) = thread::Builder::new()
                .name(name)
                .spawn(move || shared.work())
            {
                state.workers.push(handle);
            }
        }
    }

    /// Stops accepting requests, drops queued ones, and waits for the workers to
    /// finish their current calls.
    pub fn close(&self) {
        for worker in self.stop() {
            let _ = worker.join();
        }
    }

    /// Stops accepting requests and drops queued ones, without waiting: the
    /// workers end after their current calls (a peer that left the
    /// configuration may take seconds to time out, and the node thread must
    /// not wait for that). Returns the workers, to join if wanted.
    pub fn stop(&self) -> Vec<JoinHandle<()>> {
        let workers = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.queue.clear();
            std::mem::take(&mut state.workers)
        };
        self.shared.wakeup.notify_all();
        workers
    }
}

impl QueueState {
    /// The call a worker began at `started` is over.
    fn call_ended(&mut self, started: Instant) {
        if let Some(pos) = self.busy_since.iter().position(|&t| t == started) {
            self.busy_since.swap_remove(pos);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker: take the oldest request, make the call, report the reply.
    fn work(&self) {
        let mut state = self.lock();
        loop {
            if state.closed {
                return;
            }
            if let Some(mut request) = state.queue.pop() {
                let started = Instant::now();
                state.busy_since.push(started);
                drop(state);
                if !self.chunks.fill(&mut request) {
                    // The snapshot is gone: like a lost message.
                    state = self.lock();
                    state.call_ended(started);
                    continue;
                }
                let result = self.transport.call(self.peer, &request);
                let took = started.elapsed();
                self.metrics.peer_call(self.peer, took, result.is_ok());
                let mut accepted = None;
                if let Ok(response) = result {
                    accepted = accepted_append(&response);
                    (self.on_reply)(request, response);
                }
                state = self.lock();
                state.queue.answered(accepted);
                state.call_ended(started);
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .wakeup
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                return;
            }
        }
    }
}
