//! Deliberate bugs: one rule of the paper switched off, for the simulator to catch.
//!
//! Each [`Bug`] disables exactly one rule, at the one place that rule lives in
//! the core (or, for the order of effects and a failed save, in the executor of a
//! `Ready`). The simulator (`src/sim/`) runs schedules with a bug switched on
//! and must find a violation of a safety property; a test asserts that it does
//! within a bounded number of seeds. That is the proof the simulator can see
//! the bugs the paper warns about. A server never sets one.

use std::fmt;

/// One rule of the paper, switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// §5.4.2 off: a leader commits an entry of an earlier term by counting
    /// replicas, the mistake Figure 8 shows.
    Figure8,
    /// §5.4.1 off: votes are granted without the election restriction, so a
    /// server missing committed entries can become leader.
    NoElectionRestriction,
    /// Figure 2 ("respond to RPCs only after updating stable storage") off for
    /// votes: the vote is never written to disk, so a restarted server can vote
    /// twice in one term.
    UnpersistedVote,
    /// Figure 2, AppendEntries step 3 off: the follower truncates its log after
    /// `prev_log_index` even when the entries there match, so a delayed, shorter
    /// AppendEntries erases entries it already acknowledged.
    TruncateWithoutConflict,
    /// Thesis §6.4 off: a new leader serves reads before it has committed an
    /// entry of its own term, with a commit index that may be stale.
    ReadIndexAnyTerm,
    /// Thesis §4.1 as corrected in 2015 off: a leader changes the
    /// configuration before it has committed an entry of its own term, so
    /// leaders of different terms can make sibling changes whose majorities
    /// do not overlap, and a committed entry is overwritten.
    Membership2015,
    /// Figure 2 ("respond to RPCs only after updating stable storage") off in
    /// the executor of a `Ready` (`src/raft/executor.rs`): the replies to the
    /// RPCs handled are released before the state they depend on is durable,
    /// so a crash during the save can take back a vote or an acknowledged
    /// entry that a peer already counted.
    ReplyBeforePersist,
    /// Figure 2 ("If RPC request or response contains term T > currentTerm:
    /// set currentTerm = T", with currentTerm persistent: "updated on stable
    /// storage before responding to RPCs") off: a term adopted from an RPC is
    /// not written, so a server answers in a term its disk does not hold and,
    /// after a crash, is back in the older one.
    UnpersistedTerm,
    /// Figure 13, InstallSnapshot receiver step 6 off ("If existing log entry
    /// has same index and term as snapshot's last included entry, retain log
    /// entries following it and reply"): a late snapshot for an older point
    /// discards the entries after it, which the follower had acknowledged.
    SnapshotDiscardsLog,
    /// Fail-stop off in the executor of a `Ready` (`src/raft/executor.rs`): a
    /// server whose save fails (a full disk, an I/O error) carries on as if
    /// the save had succeeded, replying, sending and applying, while nothing
    /// it writes from then on is durable.
    IgnoreFailedSave,
}

impl Bug {
    /// Every bug, in a fixed order.
    pub const ALL: [Bug; 10] = [
        Bug::Figure8,
        Bug::NoElectionRestriction,
        Bug::UnpersistedVote,
        Bug::TruncateWithoutConflict,
        Bug::ReadIndexAnyTerm,
        Bug::Membership2015,
        Bug::ReplyBeforePersist,
        Bug::UnpersistedTerm,
        Bug::SnapshotDiscardsLog,
        Bug::IgnoreFailedSave,
    ];

    /// The name used on command lines (`-bug figure8`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::Figure8 => "figure8",
            Bug::NoElectionRestriction => "no-election-restriction",
            Bug::UnpersistedVote => "unpersisted-vote",
            Bug::TruncateWithoutConflict => "truncate-without-conflict",
            Bug::ReadIndexAnyTerm => "read-index-any-term",
            Bug::Membership2015 => "membership-2015",
            Bug::ReplyBeforePersist => "reply-before-persist",
            Bug::UnpersistedTerm => "unpersisted-term",
            Bug::SnapshotDiscardsLog => "snapshot-discards-log",
            Bug::IgnoreFailedSave => "ignore-failed-save",
        }
    }

    /// The rule this bug breaks, with its section.
    pub fn rule(self) -> &'static str {
        match self {
            Bug::Figure8 => "§5.4.2: commit only entries of the current term by counting replicas",
            Bug::NoElectionRestriction => {
                "§5.4.1: vote only for a candidate whose log is at least as up-to-date"
            }
            Bug::UnpersistedVote => "Figure 2: persist currentTerm and votedFor before replying",
            Bug::TruncateWithoutConflict => {
                "Figure 2, AppendEntries step 3: truncate only on a conflicting entry"
            }
            Bug::ReadIndexAnyTerm => {
                "thesis §6.4: serve reads only after committing an entry of the current term"
            }
            Bug::Membership2015 => {
                "thesis §4.1 (2015 fix): change the configuration only after committing an entry of the current term"
            }
            Bug::ReplyBeforePersist => {
                "Figure 2: respond to RPCs only after updating stable storage"
            }
            Bug::UnpersistedTerm => {
                "Figure 2: persist a term adopted from an RPC (T > currentTerm) before replying"
            }
            Bug::SnapshotDiscardsLog => {
                "Figure 13, InstallSnapshot step 6: keep the entries after a snapshot's matching last entry"
            }
            Bug::IgnoreFailedSave => {
                "Figure 2 and fail-stop: a server whose save failed stops; it never replies or applies as if the state were durable"
            }
        }
    }

    /// The bug called `name`, if any.
    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bug_parses_from_its_name() {
        for bug in Bug::ALL {
            assert_eq!(Bug::parse(bug.name()), Some(bug));
        }
        assert_eq!(Bug::parse("nonsense"), None);
    }
}
