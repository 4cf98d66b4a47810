//! Why the core answered a peer's request as it did: the rule that decided, as data.
//!
//! Each handler of an incoming request (`election.rs`, `replication.rs`,
//! `snapshot.rs`, `leadership.rs`) notes which rule decided its answer, and
//! [`super::Raft::last_verdict`] reads it back. Nothing in the core reads it:
//! it changes no behaviour and no output, and costs one small store per
//! request. The runtimes put it on the reply's event (`crate::events`), so a
//! page can say "node 3 refused the vote: its log is more up to date, §5.4.1"
//! from what the core decided rather than from a guess.

use super::messages::{Index, NodeId, Term};

/// The rule that decided the answer to the last request handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// No request handled yet.
    #[default]
    Unknown,
    /// §5.1: the request's term is older than this server's `current_term`.
    StaleTerm {
        /// This server's term.
        current_term: Term,
    },
    /// §5.2, §5.4.1: vote granted (or, for a pre-vote, would be granted:
    /// thesis §9.6).
    VoteGranted,
    /// §5.2: this server already voted for another candidate in this term.
    AlreadyVoted {
        /// Whom it voted for.
        candidate: NodeId,
    },
    /// §5.4.1: this server's log is more up to date than the candidate's.
    LogMoreUpToDate {
        /// This server's last log index.
        last_log_index: Index,
        /// The term of that entry.
        last_log_term: Term,
    },
    /// Thesis §4.2.3: this server hears from a live leader, so it ignores a
    /// request to vote in a newer term (stickiness, with check-quorum).
    LeaderAlive {
        /// The leader it hears from (itself, when it leads).
        leader: Option<NodeId>,
    },
    /// Thesis §9.6: a pre-vote for a term that is not newer than this
    /// server's.
    PreVoteTermNotNewer,
    /// §5.3: AppendEntries accepted. Its entries are in the log from
    /// `prev_log_index + 1` on.
    Appended {
        /// Step 3: conflicting entries from here on were deleted first.
        truncated_from: Option<Index>,
    },
    /// §5.3: the log has no entry at `prev_log_index` (it is too short).
    MissingEntry {
        /// This server's last log index.
        last_log_index: Index,
    },
    /// §5.3: the entry at `prev_log_index` has another term.
    TermMismatch {
        /// The index checked (`prev_log_index`).
        index: Index,
        /// The term this server holds there.
        term: Term,
    },
    /// §7: a snapshot piece stored; `installed` once the last piece made it
    /// the server's snapshot (Figure 13, steps 5-8).
    SnapshotStored {
        /// Bytes of the snapshot held, in order.
        stored: u64,
        /// The last piece arrived and the snapshot replaced the log.
        installed: bool,
    },
    /// §7: the snapshot covers only what this server has committed already.
    SnapshotNotNeeded,
    /// §7: a piece that does not continue what this server holds (lost,
    /// duplicated or late): it says where to resume.
    SnapshotOutOfOrder {
        /// Bytes held, where the next piece must start.
        stored: u64,
    },
    /// Thesis §3.10: the leader's TimeoutNow made this server campaign.
    Campaigning,
    /// Thesis §3.10: a TimeoutNow this server did not act on (an old term,
    /// already leading, or not allowed to campaign).
    TimeoutNowIgnored,
}

#[cfg(test)]
mod tests {
    use super::super::core::{Config, InitialState, Raft};
    use super::super::messages::*;
    use super::super::ready::{HardState, Snapshot};
    use super::*;

    /// Server `id` of three, in `current_term`, with entries of `terms`.
    fn server(id: NodeId, current_term: Term, voted_for: Option<NodeId>, terms: &[Term]) -> Raft {
        let mut config = Config::new(id, vec![1, 2, 3]);
        config.pre_vote = false;
        config.check_quorum = false;
        let entries = terms
            .iter()
            .map(|&t| Entry::command(t, b"x".to_vec()))
            .collect();
        let initial = InitialState {
            hard_state: HardState {
                current_term,
                voted_for,
            },
            snapshot: Snapshot::default(),
            entries,
        };
        Raft::new(config, initial)
    }

    fn vote(term: Term, candidate_id: NodeId, last: (Index, Term)) -> Request {
        Request::RequestVote(RequestVoteArgs {
            term,
            candidate_id,
            last_log_index: last.0,
            last_log_term: last.1,
            pre_vote: false,
            leadership_transfer: false,
        })
    }

    fn append(term: Term, prev: (Index, Term), terms: &[Term]) -> Request {
        Request::AppendEntries(AppendEntriesArgs {
            term,
            leader_id: 2,
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries: terms
                .iter()
                .map(|&t| Entry::command(t, b"y".to_vec()))
                .collect(),
            leader_commit: 0,
            read_seq: 0,
        })
    }

    /// Reference: §5.1, §5.2, §5.4.1 — each refusal of a vote names its rule.
    #[test]
    fn a_refused_vote_names_the_rule_that_refused_it() {
        let mut raft = server(1, 3, None, &[1, 3]);
        raft.handle_request(2, vote(2, 2, (9, 3)));
        assert_eq!(raft.last_verdict(), Verdict::StaleTerm { current_term: 3 });
        raft.handle_request(2, vote(3, 2, (5, 2)));
        let ours = Verdict::LogMoreUpToDate {
            last_log_index: 2,
            last_log_term: 3,
        };
        assert_eq!(raft.last_verdict(), ours);
        raft.handle_request(3, vote(3, 3, (2, 3)));
        assert_eq!(raft.last_verdict(), Verdict::VoteGranted);
        raft.handle_request(2, vote(3, 2, (4, 3)));
        assert_eq!(raft.last_verdict(), Verdict::AlreadyVoted { candidate: 3 });
    }

    /// Reference: §5.3 — a rejected AppendEntries says whether the entry at
    /// `prev_log_index` is missing or of another term; an accepted one says
    /// where it deleted conflicting entries.
    #[test]
    fn an_append_verdict_names_the_consistency_check_outcome() {
        let mut raft = server(1, 2, None, &[1, 1, 2]);
        raft.handle_request(2, append(2, (5, 2), &[2]));
        let missing = Verdict::MissingEntry { last_log_index: 3 };
        assert_eq!(raft.last_verdict(), missing);
        raft.handle_request(2, append(2, (3, 1), &[2]));
        let mismatch = Verdict::TermMismatch { index: 3, term: 2 };
        assert_eq!(raft.last_verdict(), mismatch);
        raft.handle_request(2, append(3, (2, 1), &[3, 3]));
        let replaced = Verdict::Appended {
            truncated_from: Some(3),
        };
        assert_eq!(raft.last_verdict(), replaced);
        assert_eq!(raft.log().term(3), Some(3));
        raft.handle_request(2, append(3, (3, 3), &[3]));
        let appended = Verdict::Appended {
            truncated_from: None,
        };
        assert_eq!(raft.last_verdict(), appended);
    }
}
