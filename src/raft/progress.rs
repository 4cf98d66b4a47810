//! What a leader knows about one follower's log (Figure 2's `nextIndex[]`/`matchIndex[]`),
//! and how much it may send it before hearing back (flow control, as etcd's
//! `Progress` and `Inflights`).
//!
//! Flow control keeps a slow or lagging follower from piling up messages:
//! while probing (and while sending a snapshot) one message with data is in
//! flight at a time; while streaming, a bounded window of them. Heartbeats
//! go out regardless, carrying no data (`Raft::send_heartbeat`). A lost
//! message is sent again within a heartbeat round or two: any answer reopens
//! a paused probe, and a window whose oldest message went unanswered for a
//! whole heartbeat interval is given up (`Progress::stalled`), as is a
//! snapshot piece (`Progress::piece_lost`).

use std::collections::VecDeque;

use super::messages::Index;
use super::ready::Snapshot;

/// A snapshot being sent to a follower in pieces (§7, Figure 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// The snapshot being sent.
    pub snapshot: Snapshot,
    /// Where the next piece starts: the bytes the follower acknowledged.
    pub offset: u64,
    /// The piece in flight at the previous heartbeat round (its offset), to
    /// tell a piece that went a whole interval unanswered.
    pub in_flight_at_last_round: Option<u64>,
}

impl SnapshotTransfer {
    /// A transfer of `snapshot` from its first byte.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            offset: 0,
            in_flight_at_last_round: None,
        }
    }
}

/// How the leader is currently sending to a follower (etcd's progress states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationState {
    /// The leader does not yet know where the follower's log matches its own: it
    /// sends one AppendEntries at a time and backtracks `next_index` on rejection.
    Probe,
    /// The follower's log is known to match up to `match_index`: the leader streams
    /// new entries and advances `next_index` optimistically as it sends them.
    Replicate,
}

/// The leader's view of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Index of the highest log entry known to be replicated on the follower.
    pub match_index: Index,
    /// Index of the next log entry to send to the follower.
    ///
    /// Invariant: `match_index < next_index`.
    pub next_index: Index,
    /// Whether sends are probing or streaming.
    pub state: ReplicationState,
    /// Whether the follower replied since the leader's last check-quorum round
    /// (thesis §6.2).
    pub recent_active: bool,
    /// The last ReadIndex heartbeat round the follower answered (thesis §6.4).
    pub read_ack: u64,
    /// A snapshot being sent to the follower instead of entries, if any.
    pub snapshot_transfer: Option<SnapshotTransfer>,
    /// Probe (and snapshot pieces): a message with data is in flight, so the
    /// next one waits for an answer.
    pub paused: bool,
    /// Replicate: the AppendEntries with entries in flight.
    pub inflight: Inflight,
    /// The oldest message in flight at the previous heartbeat round (its
    /// last index), to tell a window that stopped moving.
    pub oldest_at_last_round: Option<Index>,
}

/// The AppendEntries in flight to a streaming follower, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inflight {
    /// The last index each message carries, and its entries' command bytes.
    messages: VecDeque<(Index, usize)>,
    /// The sum of their bytes.
    bytes: usize,
}

impl Inflight {
    /// Whether another message must wait: `max_messages` are in flight, or
    /// `max_bytes` of entries.
    pub fn is_full(&self, max_messages: usize, max_bytes: usize) -> bool {
        self.messages.len() >= max_messages.max(1) || self.bytes >= max_bytes.max(1)
    }

    /// The number of messages in flight.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The last index of the oldest message in flight.
    pub fn oldest(&self) -> Option<Index> {
        self.messages.front().map(|&(last, _)| last)
    }

    fn add(&mut self, last_index: Index, bytes: usize) {
        self.messages.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// The follower holds everything through `index`: those messages arrived.
    fn free_through(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.messages.front() {
            if last > index {
                break;
            }
            self.messages.pop_front();
            self.bytes -= bytes;
        }
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }
}

impl Progress {
    /// Figure 2, on election: `nextIndex` = leader last log index + 1, `matchIndex` = 0.
    pub fn new(last_log_index: Index) -> Self {
        Self {
            match_index: 0,
            next_index: last_log_index + 1,
            state: ReplicationState::Probe,
            recent_active: false,
            read_ack: 0,
            snapshot_transfer: None,
            paused: false,
            inflight: Inflight::default(),
            oldest_at_last_round: None,
        }
    }

    /// Whether a message with data (entries or a snapshot piece) may go now.
    pub fn may_send_data(&self, max_messages: usize, max_bytes: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.paused,
            ReplicationState::Replicate => !self.inflight.is_full(max_messages, max_bytes),
        }
    }

    /// Records a message with data sent: entries through `last_index` of
    /// `bytes` bytes (a snapshot piece: any values).
    pub fn sent_data(&mut self, last_index: Index, bytes: usize) {
        match self.state {
            ReplicationState::Probe => self.paused = true,
            ReplicationState::Replicate => self.inflight.add(last_index, bytes),
        }
    }

    /// The follower answered something: a paused probe may go again (the
    /// probe, or its answer, may have been lost).
    ///
    /// A snapshot piece in flight is the exception: only its own answer
    /// ([`Progress::piece_answered`]) or a heartbeat interval without one
    /// ([`Progress::piece_lost`]) lets a piece go again. The answer to
    /// anything else says nothing about the piece, which may still wait in
    /// the runtime's queue to that follower or be being made durable there.
    /// Sending it again on every such answer queues a copy of the piece
    /// behind every heartbeat, and with one call at a time per peer each
    /// copy costs a round trip before the next piece can go. etcd's
    /// `Progress.IsPaused` likewise sends nothing while a snapshot is on its
    /// way.
    pub fn answered(&mut self) {
        if self.snapshot_transfer.is_none() {
            self.paused = false;
        }
    }

    /// The follower answered the snapshot piece in flight: the next may go.
    pub fn piece_answered(&mut self) {
        self.paused = false;
        if let Some(transfer) = self.snapshot_transfer.as_mut() {
            transfer.in_flight_at_last_round = None;
        }
    }

    /// Called once per heartbeat round: whether the snapshot piece in flight
    /// was already in flight, unanswered, a round ago, so a whole heartbeat
    /// interval passed without its answer. It, or its answer, was lost: it
    /// may go again (the round's heartbeat carries it).
    pub fn piece_lost(&mut self) -> bool {
        let Some(transfer) = self.snapshot_transfer.as_mut() else {
            return false;
        };
        let in_flight = self.paused.then_some(transfer.offset);
        let lost = in_flight.is_some() && in_flight == transfer.in_flight_at_last_round;
        transfer.in_flight_at_last_round = in_flight;
        if lost {
            self.paused = false;
        }
        lost
    }

    /// Called once per heartbeat round: whether the oldest message in flight
    /// was already the oldest a round ago, so a whole heartbeat interval
    /// passed without the follower acknowledging it. It, or its answer, was
    /// lost (or the follower is far slower than the window allows): the
    /// leader then probes again from `match_index`.
    pub fn stalled(&mut self) -> bool {
        let oldest = self.inflight.oldest();
        let stalled = oldest.is_some() && oldest == self.oldest_at_last_round;
        self.oldest_at_last_round = oldest;
        stalled
    }

    /// The follower no longer holds entries it acknowledged (its disk was
    /// wiped or replaced: Raft assumes stable storage, operators do not
    /// always provide it). Forget what it had matched and probe again.
    pub fn forget_match(&mut self) {
        self.match_index = 0;
        self.back_off_to(self.next_index);
    }

    /// Records that the follower holds everything up to `index`. Returns whether
    /// `match_index` moved (replies can arrive late and out of order). A
    /// snapshot the follower no longer needs is not sent further; once the
    /// follower is known to match right up to `next_index`, and no snapshot
    /// is on its way, the leader streams to it.
    pub fn maybe_advance(&mut self, index: Index) -> bool {
        let moved = index > self.match_index;
        if moved {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(self.match_index + 1);
        self.inflight.free_through(self.match_index);
        if self
            .snapshot_transfer
            .as_ref()
            .is_some_and(|t| t.snapshot.last_included_index <= self.match_index)
        {
            // The piece in flight, if any, no longer matters.
            self.snapshot_transfer = None;
            self.paused = false;
        }
        if self.next_index == self.match_index + 1 && self.snapshot_transfer.is_none() {
            self.state = ReplicationState::Replicate;
        }
        debug_assert!(self.match_index < self.next_index);
        moved
    }

    /// Moves `next_index` back to `index` after a rejection, never at or below
    /// `match_index`, and returns to probing (what was in flight is void).
    pub fn back_off_to(&mut self, index: Index) {
        self.next_index = index.max(self.match_index + 1);
        self.state = ReplicationState::Probe;
        self.inflight.clear();
        self.oldest_at_last_round = None;
        self.paused = false;
        debug_assert!(self.match_index < self.next_index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_replies_never_move_match_index_back() {
        let mut p = Progress::new(10);
        assert!(p.maybe_advance(8));
        assert!(!p.maybe_advance(5));
        assert_eq!((p.match_index, p.next_index), (8, 11));
        p.back_off_to(3);
        assert_eq!(p.next_index, 9);
        assert_eq!(p.state, ReplicationState::Probe);
    }

    /// Reference: §7, Figure 13 — a snapshot piece in flight goes again only
    /// after its own answer or a whole heartbeat interval without one, never
    /// on the answer to something else.
    #[test]
    fn a_snapshot_piece_waits_for_its_own_answer_or_a_whole_interval() {
        let mut p = Progress::new(10);
        p.snapshot_transfer = Some(SnapshotTransfer::new(Snapshot::default()));
        p.sent_data(0, 0);
        p.answered();
        assert!(p.paused, "a heartbeat's answer let a copy of the piece go");
        assert!(!p.piece_lost(), "in flight for less than an interval");
        assert!(p.piece_lost(), "unanswered for a whole interval");
        assert!(!p.paused);
        p.sent_data(0, 0);
        p.piece_answered();
        assert!(!p.paused);
        assert!(!p.piece_lost(), "nothing in flight");
    }
}
