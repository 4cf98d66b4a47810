//! Fabricated histories for the per-server promise checks: each broken
//! promise is reported with the facts that show it, each legal history is not.

use std::collections::BTreeMap;

use super::{Checker, Violation};
use crate::raft::messages::{
    AppendEntriesArgs, AppendEntriesReply, Entry, Index, InstallSnapshotArgs, InstallSnapshotReply,
    NodeId, Request, RequestVoteArgs, RequestVoteReply, Response, Term,
};
use crate::raft::progress::Progress;
use crate::raft::ready::{LogWrite, Persist, Snapshot};
use crate::raft::{Configuration, HardState, InitialState, Role, Status};

/// Three servers, started empty, stepped by hand.
struct History {
    checker: Checker,
    statuses: Vec<Status>,
}

fn status(id: NodeId, term: Term, last_log_index: Index) -> Status {
    Status {
        id,
        term,
        role: Role::Follower,
        leader_id: None,
        commit_index: 0,
        last_applied: 0,
        snapshot_index: 0,
        last_log_index,
        transferring_to: None,
        configuration: Configuration::bootstrap(&[1, 2, 3], &BTreeMap::new()),
        configuration_index: 0,
        membership_change: None,
    }
}

fn hard_state(current_term: Term, voted_for: Option<NodeId>) -> Persist {
    Persist {
        hard_state: Some(HardState {
            current_term,
            voted_for,
        }),
        ..Persist::default()
    }
}

fn entries(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .map(|&t| Entry::command(t, vec![t as u8]))
        .collect()
}

fn append(first_index: Index, terms: &[Term]) -> Persist {
    Persist {
        log: Some(LogWrite {
            first_index,
            entries: entries(terms),
        }),
        ..Persist::default()
    }
}

fn append_entries(term: Term, prev_log_index: Index, count: usize) -> (Request, Response) {
    let request = Request::AppendEntries(AppendEntriesArgs {
        term,
        leader_id: 1,
        prev_log_index,
        prev_log_term: term,
        entries: entries(&vec![term; count]),
        leader_commit: 0,
        read_seq: 0,
    });
    let response = Response::AppendEntries(AppendEntriesReply {
        term,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    });
    (request, response)
}

fn vote(term: Term, candidate_id: NodeId, pre_vote: bool) -> (Request, Response) {
    let request = Request::RequestVote(RequestVoteArgs {
        term,
        candidate_id,
        last_log_index: 0,
        last_log_term: 0,
        pre_vote,
        leadership_transfer: false,
    });
    let response = Response::RequestVote(RequestVoteReply {
        term,
        vote_granted: true,
    });
    (request, response)
}

impl History {
    fn new() -> Self {
        let mut checker = Checker::new(3);
        for node in 0..3 {
            checker.on_start(node, &InitialState::default()).unwrap();
        }
        let statuses = (1..=3).map(|id| status(id, 0, 0)).collect();
        History { checker, statuses }
    }

    /// A step of `node` that leaves it in `term` with its log ending at
    /// `last`, writing `persist` (saved in full if `saved`).
    fn step(
        &mut self,
        node: usize,
        term: Term,
        last: Index,
        persist: Persist,
        saved: bool,
    ) -> Result<(), Violation> {
        let before = self.statuses[node].clone();
        let after = status(node as NodeId + 1, term, last);
        self.checker.on_step(node, &before, &after, &persist)?;
        self.statuses[node] = after;
        if saved {
            self.checker.on_saved(node, &persist)?;
        }
        Ok(())
    }

    fn reply(
        &mut self,
        node: usize,
        (request, response): (Request, Response),
    ) -> Result<(), Violation> {
        self.checker.on_reply_sent(node, &request, &response)
    }

    /// Server 1 leads `term` with these matchIndexes.
    fn lead(&mut self, term: Term, matched: &[(NodeId, Index)]) -> Result<(), Violation> {
        let progress: BTreeMap<NodeId, Progress> = matched
            .iter()
            .map(|&(id, index)| {
                let mut p = Progress::new(index);
                p.maybe_advance(index);
                (id, p)
            })
            .collect();
        let mut leader = status(1, term, self.statuses[0].last_log_index);
        leader.role = Role::Leader;
        self.checker.on_progress(0, &leader, &progress)
    }
}

fn broken(result: Result<(), Violation>, invariant: &str) -> String {
    match result {
        Err(v) if v.invariant == invariant => v.evidence,
        other => panic!("expected {invariant}, got {other:?}"),
    }
}

#[test]
fn a_reply_in_a_term_the_disk_does_not_hold_is_reported() {
    let mut h = History::new();
    // Adopts term 2 from an AppendEntries but saves nothing before replying.
    h.step(1, 2, 0, Persist::default(), true).unwrap();
    let evidence = broken(
        h.reply(1, append_entries(2, 0, 0)),
        "durable_term_and_vote_cover_sent",
    );
    assert!(
        evidence.contains("node 2 has sent messages in term 2 but its disk holds term 0"),
        "{evidence}"
    );
}

#[test]
fn a_reply_after_its_term_is_saved_is_legal() {
    let mut h = History::new();
    h.step(1, 2, 0, hard_state(2, None), true).unwrap();
    h.reply(1, append_entries(2, 0, 0)).unwrap();
    // A pre-vote proposes a term nobody has adopted yet (thesis §9.6).
    h.reply(2, vote(7, 1, true)).unwrap();
    // Thesis §10.2.1: a leader's request may leave before its log write.
    h.step(0, 1, 0, hard_state(1, Some(1)), true).unwrap();
    h.step(0, 1, 1, append(1, &[1]), false).unwrap();
    h.checker
        .on_request_sent(0, &append_entries(1, 0, 1).0)
        .unwrap();
}

#[test]
fn a_vote_granted_before_it_is_saved_is_reported() {
    let mut h = History::new();
    h.step(1, 1, 0, hard_state(1, None), true).unwrap();
    let evidence = broken(
        h.reply(1, vote(1, 3, false)),
        "durable_term_and_vote_cover_sent",
    );
    assert!(
        evidence
            .contains("granted its vote in term 1 to 3 but its disk holds term 1 with vote None"),
        "{evidence}"
    );
    let mut h = History::new();
    h.step(1, 1, 0, hard_state(1, Some(3)), true).unwrap();
    h.reply(1, vote(1, 3, false)).unwrap();
}

#[test]
fn a_restart_in_an_older_term_than_it_answered_in_is_reported() {
    let mut h = History::new();
    h.step(1, 2, 0, hard_state(2, None), true).unwrap();
    h.reply(1, append_entries(2, 0, 0)).unwrap();
    h.checker.on_crash(1);
    let older = InitialState {
        hard_state: HardState {
            current_term: 1,
            voted_for: None,
        },
        ..InitialState::default()
    };
    let evidence = broken(
        h.checker.on_start(1, &older),
        "durable_term_and_vote_cover_sent",
    );
    assert!(evidence.contains("disk holds term 1"), "{evidence}");
}

/// Server 2 stores entries 1..=3 of term 1 and acknowledges them.
fn acknowledged_three() -> History {
    let mut h = History::new();
    h.step(1, 1, 0, hard_state(1, None), true).unwrap();
    h.step(1, 1, 3, append(1, &[1, 1, 1]), true).unwrap();
    h.reply(1, append_entries(1, 0, 3)).unwrap();
    h
}

/// A snapshot through 2 of term 1 that keeps (or drops) the entry after it.
fn snapshot_through_2(drop_rest: bool) -> Persist {
    Persist {
        snapshot: Some(Snapshot {
            last_included_index: 2,
            last_included_term: 1,
            ..Snapshot::default()
        }),
        log: drop_rest.then_some(LogWrite {
            first_index: 3,
            entries: Vec::new(),
        }),
        ..Persist::default()
    }
}

#[test]
fn an_acknowledged_entry_dropped_in_the_same_term_is_reported() {
    let mut h = acknowledged_three();
    // Figure 13 step 6 broken: a snapshot through 2 discards entry 3.
    let evidence = broken(
        h.step(1, 1, 2, snapshot_through_2(true), true),
        "acknowledged_entries_stay",
    );
    assert!(
        evidence.contains("node 2 acknowledged its log through 3 to the leader of term 1, and now in term 1 holds a log ending at 2 (snapshot through 2)"),
        "{evidence}"
    );
}

#[test]
fn a_snapshot_that_keeps_the_acknowledged_entries_is_legal() {
    let mut h = acknowledged_three();
    h.step(1, 1, 3, snapshot_through_2(false), true).unwrap();
    // Confirming the snapshot's install acknowledges it too.
    let request = Request::InstallSnapshot(InstallSnapshotArgs {
        term: 1,
        leader_id: 1,
        last_included_index: 2,
        last_included_term: 1,
        size: 4,
        offset: 0,
        configuration: Configuration::default(),
        configuration_index: 0,
        data: vec![0; 4],
        done: true,
    });
    let response = Response::InstallSnapshot(InstallSnapshotReply { term: 1, stored: 4 });
    h.reply(1, (request, response)).unwrap();
}

#[test]
fn a_leader_of_a_later_term_may_replace_acknowledged_entries() {
    let mut h = acknowledged_three();
    h.step(1, 2, 3, hard_state(2, None), true).unwrap();
    h.step(1, 2, 3, append(3, &[2]), true).unwrap();
}

#[test]
fn acknowledging_an_entry_it_does_not_hold_is_reported() {
    let mut h = History::new();
    h.step(1, 1, 1, append(1, &[1]), true).unwrap();
    h.step(1, 1, 1, hard_state(1, None), true).unwrap();
    let evidence = broken(
        h.reply(1, append_entries(1, 0, 2)),
        "acknowledged_entries_stay",
    );
    assert!(evidence.contains("but its log ends at 1"), "{evidence}");
}

/// Server 1 holds entries 1..=3 of term 1, server 2 entries 1..=2.
fn leader_ahead() -> History {
    let mut h = History::new();
    h.step(0, 1, 3, append(1, &[1, 1, 1]), true).unwrap();
    h.step(1, 1, 2, append(1, &[1, 1]), true).unwrap();
    h
}

#[test]
fn a_match_index_beyond_the_followers_log_is_reported() {
    let mut h = leader_ahead();
    let evidence = broken(h.lead(1, &[(2, 3)]), "match_index_is_held");
    assert!(
        evidence.contains("leader 1 of term 1 has matchIndex 3 for node 2, which in term 1 holds a log ending at 2"),
        "{evidence}"
    );
    // The follower's side: losing what the leader matched is reported too.
    let mut h = leader_ahead();
    h.lead(1, &[(2, 2)]).unwrap();
    let evidence = broken(h.step(1, 1, 1, append(2, &[]), true), "match_index_is_held");
    assert!(
        evidence.contains("has matchIndex 2 for node 2"),
        "{evidence}"
    );
}

#[test]
fn a_match_index_the_follower_holds_is_legal() {
    let mut h = leader_ahead();
    h.lead(1, &[(2, 2)]).unwrap();
    // The follower appends more: still fine.
    h.step(1, 1, 3, append(3, &[1]), true).unwrap();
    // A follower in a later term may have had its log replaced.
    let mut h = leader_ahead();
    h.step(1, 2, 2, hard_state(2, None), true).unwrap();
    h.lead(1, &[(2, 3)]).unwrap();
}
