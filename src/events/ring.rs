//! A server's recent events: a ring bounded by count and bytes, read by `since`.
//!
//! The node thread records into a [`Recorder`], which keeps a batch and
//! hands it to the [`EventRing`] once per round of work: one lock per round,
//! not per event. The ring numbers events 1, 2, ... as they arrive and drops
//! the oldest when either bound would be passed. Readers ask for the events
//! after the last `seq` they saw ([`EventRing::since`]); one that fell so far
//! behind that events it never saw were dropped is told how many it missed,
//! so it can resynchronise (read `/status` again) instead of drawing a
//! history with a hole in it. A reader never holds the lock longer than it
//! takes to copy a bounded batch, and writers never wait for readers: a slow
//! page costs the node nothing but that copy.
//!
//! Trade-off: a `Mutex` around a `VecDeque`, not a lock-free ring. The node
//! thread takes it once per batch, a request thread once per client request
//! and reply; that is a few uncontended locks per request, which the
//! benchmark can measure against the same build run with `-events=false`.

use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::{Event, Sink, TermRuns, What};
use crate::raft::{NodeId, Term};

/// How much a ring keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most events.
    pub events: usize,
    /// Most bytes, counting each event's struct and what it points to.
    pub bytes: usize,
}

impl Default for Limits {
    /// 16,384 events or 4 MiB, whichever comes first.
    fn default() -> Self {
        Limits {
            events: 16_384,
            bytes: 4 << 20,
        }
    }
}

/// What a reader gets: the events after its `seq`, and how many it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// Events after the `seq` asked for, oldest first.
    pub events: Vec<Event>,
    /// Events after that `seq` the ring no longer holds (dropped before the
    /// reader came back for them): if not 0, the reader must resynchronise.
    pub missed: u64,
    /// The `seq` the next event will get.
    pub next_seq: u64,
}

/// A ring's size and counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Events held.
    pub events: usize,
    /// Bytes held.
    pub bytes: usize,
    /// Events recorded since the server started.
    pub recorded: u64,
    /// Events dropped to stay within the limits.
    pub dropped: u64,
    /// Times a reader was told it missed events.
    pub readers_behind: u64,
}

struct Inner {
    events: VecDeque<Event>,
    bytes: usize,
    next_seq: u64,
    dropped: u64,
    /// Readers blocked in [`EventRing::wait_since`]: a writer wakes them only
    /// when there is one, so recording costs no system call otherwise.
    waiting: usize,
    /// The highest term of any event kept.
    latest_term: Term,
}

impl Inner {
    /// Numbers `event` and keeps it.
    fn keep(&mut self, mut event: Event) {
        event.seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += cost(&event);
        self.latest_term = self.latest_term.max(event.term);
        self.events.push_back(event);
    }
}

/// One server's recent events.
pub struct EventRing {
    node: NodeId,
    limits: Limits,
    inner: Mutex<Inner>,
    /// Notified when events arrive (for readers that stream).
    arrived: Condvar,
    readers_behind: AtomicU64,
}

impl EventRing {
    /// An empty ring for server `node`.
    pub fn new(node: NodeId, limits: Limits) -> Self {
        EventRing {
            node,
            limits,
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                dropped: 0,
                waiting: 0,
                latest_term: 0,
            }),
            arrived: Condvar::new(),
            readers_behind: AtomicU64::new(0),
        }
    }

    /// The server whose events these are.
    pub fn node(&self) -> NodeId {
        self.node
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one event that happened now (for threads other than the
    /// node's, which batch through a [`Recorder`]).
    pub fn push(&self, term: Term, what: What) {
        self.extend([self.event(now_micros(), term, what)]);
    }

    /// An event of this server at `time`, to hand to [`EventRing::extend`].
    pub fn event(&self, time: u64, term: Term, what: What) -> Event {
        Event {
            seq: 0,
            time,
            node: self.node,
            term,
            what,
        }
    }

    /// Numbers and keeps every event of `batch` (which it empties), dropping
    /// the oldest as the limits require.
    pub fn append(&self, batch: &mut Vec<Event>) {
        if !batch.is_empty() {
            self.extend(batch.drain(..));
        }
    }

    /// Numbers and keeps `events` (their `seq` is ignored), dropping the
    /// oldest as the limits require.
    pub fn extend(&self, events: impl IntoIterator<Item = Event>) {
        let mut inner = self.lock();
        for event in events {
            inner.keep(event);
        }
        self.trim_and_wake(inner);
    }

    /// Keeps what a request thread saw, each `(time, what)`, in the latest
    /// term the ring has recorded: the node thread records every change of
    /// term, so a request thread need not take the node's lock to ask.
    pub fn extend_in_latest_term(&self, events: impl IntoIterator<Item = (u64, What)>) {
        let mut inner = self.lock();
        for (time, what) in events {
            let event = self.event(time, inner.latest_term, what);
            inner.keep(event);
        }
        self.trim_and_wake(inner);
    }

    /// Drops the oldest events past the limits, then wakes waiting readers.
    fn trim_and_wake(&self, mut inner: MutexGuard<'_, Inner>) {
        while inner.events.len() > self.limits.events
            || (inner.bytes > self.limits.bytes && inner.events.len() > 1)
        {
            let Some(old) = inner.events.pop_front() else {
                break;
            };
            inner.bytes -= cost(&old);
            inner.dropped += 1;
        }
        let wake = inner.waiting > 0;
        drop(inner);
        if wake {
            self.arrived.notify_all();
        }
    }

    /// The events after `seq`, at most `max` of them.
    pub fn since(&self, seq: u64, max: usize) -> Since {
        let inner = self.lock();
        self.collect(&inner, seq, max)
    }

    /// As [`EventRing::since`], but waits up to `timeout` for an event after
    /// `seq` if there is none yet (a streaming reader's wait).
    pub fn wait_since(&self, seq: u64, max: usize, timeout: Duration) -> Since {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while inner.next_seq <= effective(seq, &inner) + 1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner.waiting += 1;
            inner = self
                .arrived
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            inner.waiting -= 1;
        }
        self.collect(&inner, seq, max)
    }

    fn collect(&self, inner: &Inner, seq: u64, max: usize) -> Since {
        let oldest = inner.events.front().map_or(inner.next_seq, |e| e.seq);
        let seq = effective(seq, inner);
        let missed = oldest.saturating_sub(seq + 1);
        if missed > 0 {
            self.readers_behind.fetch_add(1, Ordering::Relaxed);
        }
        let skip = (seq + 1).saturating_sub(oldest) as usize;
        let events = inner.events.iter().skip(skip).take(max).cloned().collect();
        Since {
            events,
            missed,
            next_seq: inner.next_seq,
        }
    }

    /// Size and counters.
    pub fn stats(&self) -> RingStats {
        let inner = self.lock();
        RingStats {
            events: inner.events.len(),
            bytes: inner.bytes,
            recorded: inner.next_seq - 1,
            dropped: inner.dropped,
            readers_behind: self.readers_behind.load(Ordering::Relaxed),
        }
    }

    /// The limits it keeps to.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// The `seq` a reader resumes after: a `seq` from before a restart (ahead
/// of this ring) starts over.
fn effective(seq: u64, inner: &Inner) -> u64 {
    if seq >= inner.next_seq {
        0
    } else {
        seq
    }
}

/// What one event costs the ring: its struct and the memory it points to.
fn cost(event: &Event) -> usize {
    let heap = match &event.what {
        What::Configuration {
            voters, learners, ..
        } => (voters.len() + learners.len()) * size_of::<u64>(),
        What::ClientRequest { text, .. } | What::ClientReply { text, .. } => {
            text.as_ref().map_or(0, |t| t.len())
        }
        What::Intervention(f) => (f.nodes.len() + f.others.len()) * size_of::<u64>(),
        What::Violation {
            evidence, nodes, ..
        } => evidence.len() + nodes.len() * size_of::<u64>(),
        What::Narration { text } => text.len(),
        What::Persist(p) => match p.log.as_ref().map(|w| &w.terms) {
            Some(TermRuns::Many(runs)) => runs.len() * size_of::<(u64, u64)>(),
            _ => 0,
        },
        _ => 0,
    };
    size_of::<Event>() + heap
}

/// Microseconds since this process first asked (a monotonic clock).
pub fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The node thread's recorder: events of one round of work, handed to the
/// ring together by [`Recorder::flush`]. Without a ring (events off) it
/// records nothing and callers build nothing.
pub struct Recorder {
    ring: Option<Arc<EventRing>>,
    batch: Vec<Event>,
}

impl Recorder {
    /// A recorder into `ring`, or one that records nothing.
    pub fn new(ring: Option<Arc<EventRing>>) -> Self {
        Recorder {
            ring,
            batch: Vec::new(),
        }
    }

    /// Hands the events recorded since the last flush to the ring.
    pub fn flush(&mut self) {
        if let Some(ring) = &self.ring {
            ring.append(&mut self.batch);
        }
    }
}

impl Sink for Recorder {
    fn enabled(&self) -> bool {
        self.ring.is_some()
    }

    fn record(&mut self, node: NodeId, term: Term, what: What) {
        if self.ring.is_some() {
            self.batch.push(Event {
                seq: 0,
                time: now_micros(),
                node,
                term,
                what,
            });
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_request_threads_events_take_the_latest_term_recorded() {
        let ring = EventRing::new(1, Limits::default());
        ring.extend_in_latest_term([(5, What::Apply { index: 1 })]);
        ring.push(3, What::Apply { index: 2 });
        ring.extend_in_latest_term([(7, What::Apply { index: 3 })]);
        let terms: Vec<(u64, Term, u64)> = ring
            .since(0, 10)
            .events
            .iter()
            .map(|e| (e.seq, e.term, e.time))
            .collect();
        assert_eq!(terms[0], (1, 0, 5));
        assert_eq!(terms[1].1, 3);
        assert_eq!(terms[2], (3, 3, 7));
    }

    #[test]
    fn a_waiting_reader_wakes_when_an_event_arrives() {
        let ring = Arc::new(EventRing::new(1, Limits::default()));
        let reader = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let started = Instant::now();
                let got = ring.wait_since(0, 10, Duration::from_secs(60));
                (got.events.len(), started.elapsed())
            })
        };
        // Whether the reader is asleep by now or not yet, it must return at
        // once: a lost wake-up would keep it asleep for the whole minute.
        ring.push(1, What::Apply { index: 1 });
        let (events, waited) = reader.join().expect("reader thread");
        assert_eq!(events, 1);
        assert!(waited < Duration::from_secs(30), "reader slept {waited:?}");
    }
    use super::*;
    use crate::events::Rpc;

    fn commit(index: u64) -> What {
        What::Commit {
            index,
            entry_term: Some(1),
            leader: true,
        }
    }

    fn indexes(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .map(|e| match e.what {
                What::Commit { index, .. } => index,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn events_are_numbered_in_order_and_since_returns_what_follows() {
        let ring = EventRing::new(2, Limits::default());
        for i in 1..=5 {
            ring.push(1, commit(i));
        }
        let all = ring.since(0, 100);
        assert_eq!(all.missed, 0);
        assert_eq!(all.next_seq, 6);
        let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert!(all.events.iter().all(|e| e.node == 2));
        assert!(all.events.windows(2).all(|w| w[0].time <= w[1].time));
        let after = ring.since(3, 100);
        assert_eq!(indexes(&after.events), [4, 5]);
        assert_eq!(ring.since(5, 100).events, []);
        assert_eq!(indexes(&ring.since(1, 2).events), [2, 3], "at most max");
    }

    #[test]
    fn the_ring_keeps_the_newest_within_its_count_and_tells_late_readers() {
        let ring = EventRing::new(
            1,
            Limits {
                events: 4,
                bytes: 1 << 20,
            },
        );
        for i in 1..=10 {
            ring.push(1, commit(i));
        }
        let stats = ring.stats();
        assert_eq!((stats.events, stats.recorded, stats.dropped), (4, 10, 6));
        let late = ring.since(2, 100);
        assert_eq!(indexes(&late.events), [7, 8, 9, 10]);
        assert_eq!(late.missed, 4, "events 3..=6 are gone");
        let fresh = ring.since(6, 100);
        assert_eq!((fresh.missed, fresh.events.len()), (0, 4));
        assert_eq!(ring.stats().readers_behind, 1);
    }

    #[test]
    fn the_ring_keeps_within_its_bytes_counting_what_events_point_to() {
        let text = "x".repeat(1000);
        let one = size_of::<Event>() + text.len();
        let ring = EventRing::new(
            1,
            Limits {
                events: 1000,
                bytes: 3 * one,
            },
        );
        for i in 0..10 {
            let what = What::Narration {
                text: text.as_str().into(),
            };
            ring.push(i, what);
        }
        let stats = ring.stats();
        assert_eq!(stats.events, 3);
        assert!(stats.bytes <= 3 * one, "{stats:?}");
        assert_eq!(ring.since(0, 100).missed, 7);
    }

    #[test]
    fn a_seq_from_an_earlier_run_reads_from_the_start() {
        let ring = EventRing::new(1, Limits::default());
        ring.push(1, commit(1));
        let read = ring.since(99, 10);
        assert_eq!((read.missed, read.events.len()), (0, 1));
    }

    #[test]
    fn a_streaming_reader_wakes_when_an_event_arrives_and_times_out_otherwise() {
        let ring = Arc::new(EventRing::new(1, Limits::default()));
        let started = Instant::now();
        let empty = ring.wait_since(0, 10, Duration::from_millis(50));
        assert!(empty.events.is_empty() && started.elapsed() >= Duration::from_millis(50));
        let writer = Arc::clone(&ring);
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.push(
                3,
                What::Send {
                    to: 2,
                    msg: 0,
                    rpc: Rpc::TimeoutNow,
                },
            );
        });
        let woken = ring.wait_since(0, 10, Duration::from_secs(10));
        handle.join().unwrap();
        assert_eq!(woken.events.len(), 1);
        assert_eq!(woken.events[0].term, 3);
    }

    #[test]
    fn a_recorder_batches_and_a_disabled_one_records_nothing() {
        let ring = Arc::new(EventRing::new(4, Limits::default()));
        let mut recorder = Recorder::new(Some(Arc::clone(&ring)));
        recorder.record(4, 2, commit(1));
        recorder.record(4, 2, commit(2));
        assert_eq!(ring.stats().recorded, 0, "nothing before the flush");
        recorder.flush();
        assert_eq!(indexes(&ring.since(0, 10).events), [1, 2]);
        let mut off = Recorder::new(None);
        assert!(!off.enabled());
        off.record(4, 2, commit(3));
        off.flush();
    }
}
