//! Per-peer sender threads: carry the core's requests through the [`Transporter`].
//!
//! Each peer gets a queue and a small pool of worker threads. On a healthy link
//! one worker sends everything, in order, so AppendEntries arrive in the order the
//! leader pipelined them. A call to a dead or partitioned peer can block for
//! seconds, though, and must not hold up the next heartbeat: when every busy
//! worker has been stuck in its call for longer than [`STUCK_AFTER`], the next
//! request starts another worker, up to [`MAX_WORKERS`]. Idle workers exit after
//! a while. When more than [`MAX_QUEUED`] requests wait, the oldest is dropped:
//! Raft treats it like a lost message and the next heartbeat repairs the gap.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::messages::{NodeId, Request};
use super::node::Event;
use crate::transport::Transporter;

/// Most concurrent calls to one peer.
pub const MAX_WORKERS: usize = 16;
/// Most requests waiting for a worker; beyond this the oldest is dropped.
pub const MAX_QUEUED: usize = 256;
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
    events: Mutex<Sender<Event>>,
    state: Mutex<QueueState>,
    wakeup: Condvar,
}

#[derive(Default)]
struct QueueState {
    queue: VecDeque<Request>,
    idle: usize,
    /// When each busy worker's current call began.
    busy_since: Vec<Instant>,
    workers: Vec<JoinHandle<()>>,
    closed: bool,
}

impl PeerSender {
    /// A sender for `peer` that reports replies as [`Event::Response`] on `events`.
    pub fn new(peer: NodeId, transport: Arc<dyn Transporter>, events: Sender<Event>) -> Self {
        Self {
            shared: Arc::new(Shared {
                peer,
                transport,
                events: Mutex::new(events),
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
        if state.queue.len() >= MAX_QUEUED {
            state.queue.pop_front();
        }
        state.queue.push_back(request);
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
        let workers = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.queue.clear();
            std::mem::take(&mut state.workers)
        };
        self.shared.wakeup.notify_all();
        for worker in workers {
            let _ = worker.join();
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
            if let Some(request) = state.queue.pop_front() {
                let started = Instant::now();
                state.busy_since.push(started);
                drop(state);
                if let Ok(response) = self.transport.call(self.peer, &request) {
                    let event = Event::Response {
                        from: self.peer,
                        request,
                        response,
                    };
                    let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = events.send(event);
                }
                state = self.lock();
                if let Some(pos) = state.busy_since.iter().position(|&t| t == started) {
                    state.busy_since.swap_remove(pos);
                }
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
