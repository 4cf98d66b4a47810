//! What a leader knows about one follower's log (Figure 2's `nextIndex[]`/`matchIndex[]`).

use super::messages::Index;
use super::ready::Snapshot;

/// A snapshot being sent to a follower in pieces (§7, Figure 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// The snapshot being sent.
    pub snapshot: Snapshot,
    /// Where the next piece starts: the bytes the follower acknowledged.
    pub offset: u64,
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
        }
    }

    /// Records that the follower holds everything up to `index`. Returns whether
    /// `match_index` moved (replies can arrive late and out of order).
    pub fn maybe_advance(&mut self, index: Index) -> bool {
        let moved = index > self.match_index;
        if moved {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(self.match_index + 1);
        self.state = ReplicationState::Replicate;
        debug_assert!(self.match_index < self.next_index);
        moved
    }

    /// Moves `next_index` back to `index` after a rejection, never at or below
    /// `match_index`, and returns to probing.
    pub fn back_off_to(&mut self, index: Index) {
        self.next_index = index.max(self.match_index + 1);
        self.state = ReplicationState::Probe;
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
}
