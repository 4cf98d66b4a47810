//! Events read off the core between rounds of work: role, vote, timer, commit, snapshot, configuration.
//!
//! Changes of role, term, vote or commit index happen inside the core while
//! it handles input; a runtime learns of them by comparing what the core
//! says now with what it said last time. [`Watch`] does that comparison for
//! both runtimes, after each input and after each executed `Ready`, and
//! records one event per change. It reads the core through cheap accessors
//! (no copy of the configuration unless its index moved).

use super::{configuration, Sink, SnapshotSummary, What};
use crate::raft::{Index, NodeId, Raft, Role, Term};

/// What the watcher saw last time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    role: Role,
    term: Term,
    leader: Option<NodeId>,
    voted_for: Option<NodeId>,
    commit_index: Index,
    last_applied: Index,
    snapshot_index: Index,
    configuration_index: Index,
    members: (Vec<NodeId>, Vec<NodeId>),
    timer: (u32, u32),
}

/// Compares the core with what it was, and records what changed.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    seen: Option<Seen>,
}

impl Watch {
    /// Records every change since the last call (everything, the first
    /// time). `tick_micros` converts the election timeout to time. A new
    /// snapshot ahead of what was applied came from the leader (installed);
    /// one within it was taken of the state machine.
    pub fn observe(&mut self, raft: &Raft, tick_micros: u64, sink: &mut dyn Sink) {
        if !sink.enabled() {
            return;
        }
        let hard_state = raft.hard_state();
        let (config, configuration_index) = raft.configuration();
        let now = Seen {
            role: raft.role(),
            term: hard_state.current_term,
            leader: raft.leader_id(),
            voted_for: hard_state.voted_for,
            commit_index: raft.commit_index(),
            last_applied: raft.last_applied(),
            snapshot_index: raft.log().snapshot_index(),
            configuration_index,
            members: (Vec::new(), Vec::new()),
            timer: raft.election_timer(),
        };
        let id = raft.config().id;
        let term = now.term;
        let first = self.seen.is_none();
        let mut seen = self.seen.take().unwrap_or_else(|| Seen {
            role: now.role,
            leader: None,
            voted_for: None,
            commit_index: now.snapshot_index,
            last_applied: now.snapshot_index,
            snapshot_index: now.snapshot_index,
            configuration_index: Index::MAX,
            timer: (0, 0),
            ..now.clone()
        });
        if first || now.role != seen.role || now.leader != seen.leader || now.term != seen.term {
            sink.record(
                id,
                term,
                What::Role {
                    role: now.role,
                    previous: seen.role,
                    previous_term: seen.term,
                    leader: now.leader,
                },
            );
        }
        if let Some(candidate) = now
            .voted_for
            .filter(|_| now.voted_for != seen.voted_for || now.term != seen.term)
        {
            sink.record(id, term, What::Vote { candidate });
        }
        // Compared in place: a new list is made only when it changed.
        let same_members = config.voters.keys().eq(seen.members.0.iter())
            && config.learners.keys().eq(seen.members.1.iter());
        let members = if configuration_index != seen.configuration_index || !same_members {
            sink.record(id, term, configuration(configuration_index, config));
            (
                config.voters.keys().copied().collect(),
                config.learners.keys().copied().collect(),
            )
        } else {
            std::mem::take(&mut seen.members)
        };
        if now.snapshot_index > seen.snapshot_index {
            let summary = SnapshotSummary {
                index: now.snapshot_index,
                term: raft.log().snapshot_term(),
                bytes: raft.current_snapshot().size,
            };
            let what = if seen.last_applied < now.snapshot_index {
                What::SnapshotInstalled(summary)
            } else {
                What::SnapshotTaken(summary)
            };
            sink.record(id, term, what);
        }
        if now.commit_index > seen.commit_index {
            sink.record(
                id,
                term,
                What::Commit {
                    index: now.commit_index,
                    entry_term: raft.log().term(now.commit_index),
                    leader: now.role == Role::Leader,
                },
            );
        }
        let (elapsed, timeout) = now.timer;
        let reset = timeout != seen.timer.1 || elapsed < seen.timer.0;
        if now.role != Role::Leader && reset {
            let left = u64::from(timeout.saturating_sub(elapsed));
            sink.record(
                id,
                term,
                What::Timer {
                    timeout: left * tick_micros,
                },
            );
        }
        seen = Seen { members, ..now };
        self.seen = Some(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Sink};
    use crate::raft::{Config, InitialState, Term};

    #[derive(Default)]
    struct Kept(Vec<Event>);

    impl Sink for Kept {
        fn enabled(&self) -> bool {
            true
        }
        fn record(&mut self, node: NodeId, term: Term, what: What) {
            let (seq, time) = (self.0.len() as u64 + 1, 0);
            self.0.push(Event {
                seq,
                time,
                node,
                term,
                what,
            });
        }
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.what.name()).collect()
    }

    /// Reference: §5.2 — a follower that times out becomes a candidate,
    /// votes for itself and draws a new timeout: three events, once each.
    #[test]
    fn a_watch_records_each_change_once() {
        let mut config = Config::new(1, vec![1, 2, 3]);
        config.pre_vote = false;
        let mut raft = Raft::new(config, InitialState::default());
        let mut watch = Watch::default();
        let mut kept = Kept::default();
        watch.observe(&raft, 10_000, &mut kept);
        assert_eq!(kinds(&kept.0), ["role", "configuration", "timer"]);
        watch.observe(&raft, 10_000, &mut kept);
        assert_eq!(kept.0.len(), 3, "nothing changed, nothing recorded");
        while raft.role() != Role::Candidate {
            raft.tick();
        }
        kept.0.clear();
        watch.observe(&raft, 10_000, &mut kept);
        assert_eq!(kinds(&kept.0), ["role", "vote", "timer"]);
        assert!(kept.0.iter().all(|e| e.term == 1));
        match &kept.0[0].what {
            What::Role { role, previous, .. } => {
                assert_eq!((*role, *previous), (Role::Candidate, Role::Follower))
            }
            other => panic!("{other:?}"),
        }
    }
}
