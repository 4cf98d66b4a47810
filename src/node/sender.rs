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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
    /// Fills an InstallSnapshot request's bytes; false if the snapshot is gone
    /// (a newer one replaced it: the core will start over with that one).
    fn fill(&self, request: &mut Request) -> bool {
        let Request::InstallSnapshot(args) = request else {
            return true;
        };
        let snapshot = args.snapshot();
        let len = args.piece_len(self.chunk_bytes);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        match self
            .storage
            .read_snapshot_chunk(&snapshot, args.offset, len)
        {
            Ok(data) if data.len() == len => {
                args.data = data;
                true
            }
            _ => false,
        }
    }
}

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
    on_reply: OnReply,
    metrics: Arc<RaftMetrics>,
    chunks: ChunkSource,
    state: Mutex<QueueState>,
    wakeup: Condvar,
    /// Whether the peer accepted the last AppendEntries answered: only then
    /// may heartbeats ride on entries (see [`merge`]).
    last_append_accepted: AtomicBool,
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
                last_append_accepted: AtomicBool::new(false),
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
            if let Some(mut request) = state.queue.pop_front() {
                // Under load, requests pile up while a call is in flight: send
                // consecutive AppendEntries as one.
                let healthy = self.last_append_accepted.load(Ordering::Relaxed);
                while state
                    .queue
                    .front()
                    .is_some_and(|next| merge(&mut request, next, healthy))
                {
                    state.queue.pop_front();
                }
                let started = Instant::now();
                state.busy_since.push(started);
                drop(state);
                if !self.chunks.fill(&mut request) {
                    // The snapshot is gone: like a lost message.
                    state = self.lock();
                    if let Some(pos) = state.busy_since.iter().position(|&t| t == started) {
                        state.busy_since.swap_remove(pos);
                    }
                    continue;
                }
                let result = self.transport.call(self.peer, &request);
                let took = started.elapsed();
                self.metrics.peer_call(self.peer, took, result.is_ok());
                if let Ok(response) = result {
                    if let Response::AppendEntries(reply) = &response {
                        self.last_append_accepted
                            .store(reply.success, Ordering::Relaxed);
                    }
                    (self.on_reply)(request, response);
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

/// Most encoded entry bytes one merged AppendEntries may carry (base64 makes
/// its line 4/3 of that, within the peer line limit).
const MAX_MERGED_BYTES: usize = 4 << 20;
/// An entry's encoding beyond its command, at most: term (a 10-byte varint),
/// kind, and the command's length.
const ENTRY_OVERHEAD: usize = 16;

/// Merges `b` into `a` (queued before it) and returns true, if both are
/// AppendEntries of the same leader and term and one of these holds:
/// - `b` continues right where `a` ends: `a`'s entries, then `b`'s (two
///   heartbeats with the same anchor are the case with no entries);
/// - the peer is `healthy` (it accepted the last AppendEntries answered) and
///   one of them is a heartbeat while the other has entries: the one with
///   entries, which the follower must get anyway, carries the heartbeat's
///   read round and commit index.
///
/// The merged request carries the later commit index and read round. It is
/// one the leader could have sent itself when it made `b`: its entries and
/// their predecessor are still in its log (a leader only appends), and the
/// follower's answer is sent after `b`'s read round began, so it may confirm
/// it (thesis §6.4). Without heartbeats riding on entries, under a mix of
/// reads and writes every read round would be a call of its own between two
/// batches of entries.
///
/// What a heartbeat loses when it rides is its anchor: the leader takes the
/// rejection of a heartbeat, which is anchored at an entry the follower had
/// acknowledged, as proof that the follower lost its log, and the rejection
/// of anything else as an ordinary mismatch (`handle_append_entries_reply`).
/// So heartbeats ride only while the peer accepts AppendEntries: once it
/// rejects one (a lost log, or just a mismatch), heartbeats go alone again
/// until it accepts one.
fn merge(a: &mut Request, b: &Request, healthy: bool) -> bool {
    let (Request::AppendEntries(a), Request::AppendEntries(b)) = (a, b) else {
        return false;
    };
    if b.term != a.term || b.leader_id != a.leader_id {
        return false;
    }
    let commit = a.leader_commit.max(b.leader_commit);
    let read_seq = a.read_seq.max(b.read_seq);
    let (a_beats, b_beats) = (a.entries.is_empty(), b.entries.is_empty());
    let continues = b.prev_log_index == a.prev_log_index + a.entries.len() as u64;
    if healthy && a_beats && !b_beats {
        // `a` is a heartbeat: `b` carries it.
        *a = b.clone();
    } else if healthy && b_beats && !a_beats {
        // `b` is a heartbeat: `a` carries it.
    } else if continues {
        let bytes: usize = a
            .entries
            .iter()
            .chain(&b.entries)
            .map(|e| e.command.len() + ENTRY_OVERHEAD)
            .sum();
        if bytes > MAX_MERGED_BYTES {
            return false;
        }
        a.entries.extend(b.entries.iter().cloned());
    } else {
        return false;
    }
    a.leader_commit = commit;
    a.read_seq = read_seq;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::messages::{AppendEntriesArgs, Entry};

    fn append(prev: u64, n: usize, commit: u64) -> Request {
        append_in_round(prev, n, commit, 0)
    }

    fn append_in_round(prev: u64, n: usize, commit: u64, read_seq: u64) -> Request {
        Request::AppendEntries(AppendEntriesArgs {
            term: 2,
            leader_id: 1,
            prev_log_index: prev,
            prev_log_term: 2,
            entries: vec![Entry::command(2, vec![7]); n],
            leader_commit: commit,
            read_seq,
        })
    }

    /// What `merge(a, b)` leaves in `a`, if they merged.
    fn merged(mut a: Request, b: &Request) -> Option<Request> {
        merge(&mut a, b, true).then_some(a)
    }

    #[test]
    fn only_contiguous_appends_merge() {
        assert_eq!(
            merged(append(10, 2, 5), &append(12, 3, 9)),
            Some(append(10, 5, 9))
        );
        assert_eq!(merged(append(10, 2, 5), &append(11, 3, 9)), None, "overlap");
        assert_eq!(merged(append(10, 2, 5), &append(14, 3, 9)), None, "gap");
    }

    /// A heartbeat (a read round) queued next to entries rides on them, on
    /// either side: the call carries the entries, the later commit index and
    /// the later read round.
    #[test]
    fn a_heartbeat_rides_on_the_entries_next_to_it() {
        assert_eq!(
            merged(append_in_round(12, 3, 9, 4), &append_in_round(8, 0, 11, 5)),
            Some(append_in_round(12, 3, 11, 5)),
            "heartbeat after entries"
        );
        assert_eq!(
            merged(append_in_round(8, 0, 11, 5), &append_in_round(12, 3, 9, 4)),
            Some(append_in_round(12, 3, 11, 5)),
            "heartbeat before entries"
        );
        assert_eq!(
            merged(append_in_round(8, 0, 9, 5), &append_in_round(8, 0, 11, 6)),
            Some(append_in_round(8, 0, 11, 6)),
            "two heartbeats with one anchor"
        );
        assert_eq!(
            merged(append_in_round(8, 0, 9, 5), &append_in_round(10, 0, 11, 6)),
            None,
            "two anchors: the later may be a probe"
        );
        let mut other_term = append_in_round(8, 0, 11, 5);
        if let Request::AppendEntries(a) = &mut other_term {
            a.term = 3;
        }
        assert_eq!(
            merged(append_in_round(12, 3, 9, 4), &other_term),
            None,
            "another term"
        );
    }

    /// Once the peer rejects an AppendEntries, heartbeats go alone: the
    /// rejection of one anchored at an acknowledged entry is how the leader
    /// learns that the follower lost its log.
    #[test]
    fn heartbeats_go_alone_to_a_peer_that_rejects() {
        for (a, b) in [
            (append_in_round(12, 3, 9, 4), append_in_round(8, 0, 11, 5)),
            (append_in_round(8, 0, 11, 5), append_in_round(12, 3, 9, 4)),
        ] {
            let mut unmerged = a.clone();
            assert!(!merge(&mut unmerged, &b, false));
            assert_eq!(unmerged, a);
        }
        assert_eq!(
            {
                let mut a = append(10, 2, 5);
                merge(&mut a, &append(12, 3, 9), false).then_some(a)
            },
            Some(append(10, 5, 9)),
            "contiguous entries still merge"
        );
    }
}
