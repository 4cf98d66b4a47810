//! One test per rule of the paper, asserting the core's exact output
//! (in the spirit of etcd's `raft_paper_test.go`). No threads, no clocks.
//!
//! These servers run the paper's rules as the paper states them: pre-vote and
//! check-quorum, the thesis' extensions, are off here and tested in
//! `leadership_tests.rs`.

use super::configuration::Configuration;
use super::core::{Config, InitialState, Raft, Role};
use super::messages::*;
use super::progress::ReplicationState;
use super::ready::{ApplyMsg, HardState, LogWrite, Outbound, Snapshot, SnapshotChunk};

/// A server of an `n`-server cluster with fixed, short timers.
fn server(id: NodeId, n: u64) -> Raft {
    server_from(id, n, InitialState::default())
}

fn server_from(id: NodeId, n: u64, initial: InitialState) -> Raft {
    let mut config = Config::new(id, (1..=n).collect());
    config.election_ticks = 10;
    config.heartbeat_ticks = 3;
    config.pre_vote = false;
    config.check_quorum = false;
    Raft::new(config, initial)
}

fn entries(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| Entry::command(term, format!("c{}", i + 1).into_bytes()))
        .collect()
}

/// A server whose stored log has entries of `terms`, at `current_term`.
fn server_with_log(id: NodeId, n: u64, current_term: Term, terms: &[Term]) -> Raft {
    server_from(
        id,
        n,
        InitialState {
            hard_state: HardState {
                current_term,
                voted_for: None,
            },
            snapshot: Snapshot::default(),
            entries: entries(terms),
        },
    )
}

/// Ticks until the server starts an election (at most two timeouts).
fn tick_until_candidate(raft: &mut Raft) {
    for _ in 0..20 {
        raft.tick();
        if raft.role == Role::Candidate {
            return;
        }
    }
    panic!("no election after 20 ticks");
}

/// Makes server 1 leader of `n` servers in term 1 and drains its output.
fn leader(n: u64) -> Raft {
    let mut raft = server(1, n);
    tick_until_candidate(&mut raft);
    let ready = raft.ready();
    for out in ready.messages {
        raft.handle_response(
            out.to,
            &out.request,
            Response::RequestVote(RequestVoteReply {
                term: 1,
                vote_granted: true,
            }),
        );
    }
    assert_eq!(raft.role, Role::Leader);
    raft.ready();
    raft
}

/// What the runtime does after a Ready's save: reports the log write durable.
fn report_persisted(raft: &mut Raft, ready: &super::ready::Ready) {
    if let Some((index, term)) = ready.persist.log.as_ref().and_then(|w| w.last()) {
        raft.persisted(index, term);
    }
}

fn append(term: Term, prev: (Index, Term), terms: &[Term], leader_commit: Index) -> Request {
    Request::AppendEntries(AppendEntriesArgs {
        term,
        leader_id: 2,
        prev_log_index: prev.0,
        prev_log_term: prev.1,
        entries: terms
            .iter()
            .map(|&t| Entry::command(t, b"x".to_vec()))
            .collect(),
        leader_commit,
        read_seq: 0,
    })
}

fn append_reply(response: Response) -> AppendEntriesReply {
    match response {
        Response::AppendEntries(r) => r,
        other => panic!("expected an AppendEntries reply, got {other:?}"),
    }
}

/// Reference: §5.2 — a follower that hears nothing for an election timeout
/// increments its term, votes for itself and asks every peer for a vote.
#[test]
fn follower_starts_an_election_after_the_timeout() {
    let mut raft = server_with_log(1, 3, 4, &[2, 4]);
    tick_until_candidate(&mut raft);
    let ready = raft.ready();
    assert_eq!(
        ready.persist.hard_state,
        Some(HardState {
            current_term: 5,
            voted_for: Some(1)
        })
    );
    let expected = |to| Outbound {
        to,
        request: Request::RequestVote(RequestVoteArgs {
            term: 5,
            candidate_id: 1,
            last_log_index: 2,
            last_log_term: 4,
            pre_vote: false,
            leadership_transfer: false,
        }),
    };
    assert_eq!(ready.messages, vec![expected(2), expected(3)]);
}

/// Reference: §5.2 — the election timeout is randomized in [T, 2T).
#[test]
fn election_timeouts_are_randomized_within_range() {
    let mut seen = std::collections::BTreeSet::new();
    for id in 1..=20 {
        let raft = server(id, 3);
        assert!((10..20).contains(&raft.election_timeout));
        seen.insert(raft.election_timeout);
    }
    assert!(seen.len() > 1, "every server drew the same timeout");
}

/// Reference: §5.2 — a candidate with a majority of votes becomes leader and
/// sends empty AppendEntries (heartbeats) to every server at once.
#[test]
fn candidate_with_a_majority_becomes_leader_and_sends_heartbeats() {
    let mut raft = server(1, 3);
    tick_until_candidate(&mut raft);
    let ready = raft.ready();
    raft.handle_response(
        2,
        &ready.messages[0].request,
        Response::RequestVote(RequestVoteReply {
            term: 1,
            vote_granted: true,
        }),
    );
    assert_eq!(raft.role, Role::Leader);
    let ready = raft.ready();
    let heartbeat = |to| Outbound {
        to,
        request: append(1, (0, 0), &[], 0),
    };
    let mut expected = vec![heartbeat(2), heartbeat(3)];
    for out in &mut expected {
        if let Request::AppendEntries(a) = &mut out.request {
            a.leader_id = 1;
        }
    }
    assert_eq!(ready.messages, expected);
}

/// Reference: §5.2 — a candidate without a majority stays candidate.
#[test]
fn a_rejected_vote_does_not_elect() {
    let mut raft = server(1, 5);
    tick_until_candidate(&mut raft);
    let ready = raft.ready();
    let reply = Response::RequestVote(RequestVoteReply {
        term: 1,
        vote_granted: false,
    });
    for out in &ready.messages {
        raft.handle_response(out.to, &out.request, reply.clone());
    }
    raft.handle_response(
        2,
        &ready.messages[0].request,
        Response::RequestVote(RequestVoteReply {
            term: 1,
            vote_granted: true,
        }),
    );
    assert_eq!(raft.role, Role::Candidate, "2 of 5 votes is not a majority");
}

/// Reference: §5.2 — each server votes for at most one candidate per term, and
/// the vote is persisted before the reply leaves.
#[test]
fn a_server_votes_at_most_once_per_term() {
    let mut raft = server(1, 3);
    let ask = |candidate_id| {
        Request::RequestVote(RequestVoteArgs {
            term: 1,
            candidate_id,
            last_log_index: 0,
            last_log_term: 0,
            pre_vote: false,
            leadership_transfer: false,
        })
    };
    let granted = |r: Response| matches!(r, Response::RequestVote(v) if v.vote_granted);
    assert!(granted(raft.handle_request(2, ask(2))));
    assert_eq!(
        raft.ready().persist.hard_state,
        Some(HardState {
            current_term: 1,
            voted_for: Some(2)
        })
    );
    assert!(
        !granted(raft.handle_request(3, ask(3))),
        "second vote in term 1"
    );
    assert!(
        granted(raft.handle_request(2, ask(2))),
        "repeat vote for the same candidate"
    );
}

/// Reference: §5.4.1 — votes go only to candidates whose log is at least as
/// up-to-date: compare last terms, then lengths.
#[test]
fn votes_are_denied_to_candidates_with_older_logs() {
    let cases = [
        // (candidate's last index, last term, granted?)
        (3, 2, false), // shorter log, same last term
        (4, 2, true),  // same log
        (9, 1, false), // longer but older last term
        (1, 3, true),  // newer last term wins regardless of length
    ];
    for (last_log_index, last_log_term, want) in cases {
        let mut raft = server_with_log(1, 3, 2, &[1, 1, 2, 2]);
        let reply = raft.handle_request(
            2,
            Request::RequestVote(RequestVoteArgs {
                term: 3,
                candidate_id: 2,
                last_log_index,
                last_log_term,
                pre_vote: false,
                leadership_transfer: false,
            }),
        );
        assert_eq!(
            reply,
            Response::RequestVote(RequestVoteReply {
                term: 3,
                vote_granted: want
            }),
            "candidate log ({last_log_index}, {last_log_term})"
        );
    }
}

/// Reference: §5.1 — a leader that sees a higher term in a reply steps down
/// and persists the new term.
#[test]
fn a_higher_term_in_a_reply_makes_the_leader_step_down() {
    let mut raft = leader(3);
    raft.handle_response(
        2,
        &append(1, (0, 0), &[], 0),
        Response::AppendEntries(AppendEntriesReply {
            term: 7,
            success: false,
            conflict_term: None,
            conflict_index: 0,
        }),
    );
    assert_eq!(raft.role, Role::Follower);
    assert_eq!(
        raft.ready().persist.hard_state,
        Some(HardState {
            current_term: 7,
            voted_for: None
        })
    );
}

/// Reference: §5.1 — requests from an older term are rejected with our term.
#[test]
fn requests_from_stale_terms_are_rejected() {
    let mut raft = server_with_log(1, 3, 5, &[]);
    let reply = append_reply(raft.handle_request(2, append(4, (0, 0), &[4], 0)));
    assert_eq!((reply.term, reply.success), (5, false));
    assert_eq!(raft.log.last_index(), 0);
}

/// Reference: §5.3 — the consistency check rejects an append whose previous
/// entry is missing or has another term, with hints to back up a term at a time.
#[test]
fn the_consistency_check_rejects_with_backtracking_hints() {
    let mut raft = server_with_log(1, 3, 3, &[1, 1, 2, 2, 2]);
    // Missing entry: hint is our log length + 1.
    let reply = append_reply(raft.handle_request(2, append(3, (9, 3), &[3], 0)));
    assert!(!reply.success);
    assert_eq!((reply.conflict_term, reply.conflict_index), (None, 6));
    // Conflicting term at 5: hint is the first index of our term-2 run.
    let reply = append_reply(raft.handle_request(2, append(3, (5, 3), &[3], 0)));
    assert!(!reply.success);
    assert_eq!((reply.conflict_term, reply.conflict_index), (Some(2), 3));
    assert_eq!(
        raft.log.last_index(),
        5,
        "a rejected append changes nothing"
    );
}

/// Reference: §5.3 — a conflicting entry and all that follow it are deleted,
/// new entries appended, and exactly that range persisted.
#[test]
fn conflicting_entries_are_replaced() {
    let mut raft = server_with_log(1, 3, 3, &[1, 1, 2, 2]);
    let reply = append_reply(raft.handle_request(2, append(3, (2, 1), &[3, 3], 0)));
    assert!(reply.success);
    assert_eq!(raft.log.last_index(), 4);
    assert_eq!(raft.log.term(3), Some(3));
    assert_eq!(raft.log.term(4), Some(3));
    let ready = raft.ready();
    let write = ready.persist.log.expect("log write");
    assert_eq!(write.first_index, 3);
    assert_eq!(write.entries.len(), 2);
}

/// Reference: §5.3 — an old, shorter AppendEntries that arrives late must not
/// truncate entries that match.
#[test]
fn a_delayed_append_does_not_truncate_matching_entries() {
    let mut raft = server_with_log(1, 3, 2, &[1, 2, 2, 2]);
    let reply = append_reply(raft.handle_request(2, append(2, (1, 1), &[2], 0)));
    assert!(reply.success);
    assert_eq!(raft.log.last_index(), 4);
    assert_eq!(
        raft.ready().persist.log,
        None,
        "nothing changed, nothing to write"
    );
}

/// Reference: §5.3 — a follower commits min(leaderCommit, index of last new
/// entry) and applies in order.
#[test]
fn followers_commit_up_to_what_they_have_verified() {
    let mut raft = server(1, 3);
    raft.handle_request(2, append(1, (0, 0), &[1, 1], 9));
    assert_eq!(raft.commit_index, 2, "not past the last new entry");
    let ready = raft.ready();
    let applied: Vec<Index> = ready
        .apply
        .iter()
        .map(|m| match m {
            ApplyMsg::Command { index, .. } => *index,
            _ => 0,
        })
        .collect();
    assert_eq!(applied, vec![1, 2]);
    assert!(raft.ready().apply.is_empty(), "each entry is applied once");
}

/// Reference: §5.3 — the leader appends a proposal, sends it to every follower,
/// and commits once a majority stores it; output is persist → send → apply.
#[test]
fn the_leader_commits_an_entry_stored_on_a_majority() {
    let mut raft = leader(3);
    // The first heartbeats' replies put followers into streaming mode.
    for peer in [2, 3] {
        raft.handle_response(
            peer,
            &append(1, (0, 0), &[], 0),
            Response::AppendEntries(AppendEntriesReply {
                term: 1,
                success: true,
                conflict_term: None,
                conflict_index: 0,
            }),
        );
    }
    raft.ready();
    assert_eq!(raft.propose(b"x".to_vec()), Ok((1, 1)));
    let ready = raft.ready();
    assert_eq!(
        ready.persist.log,
        Some(LogWrite {
            first_index: 1,
            entries: vec![Entry {
                term: 1,
                kind: EntryKind::Command,
                command: b"x".to_vec()
            }]
        })
    );
    assert_eq!(ready.messages.len(), 2);
    assert!(ready.apply.is_empty(), "not committed yet");
    report_persisted(&mut raft, &ready);
    let sent = ready.messages[0].request.clone();
    raft.handle_response(
        2,
        &sent,
        Response::AppendEntries(AppendEntriesReply {
            term: 1,
            success: true,
            conflict_term: None,
            conflict_index: 0,
        }),
    );
    assert_eq!(raft.commit_index, 1);
    assert_eq!(
        raft.ready().apply,
        vec![ApplyMsg::Command {
            index: 1,
            term: 1,
            command: b"x".to_vec()
        }]
    );
}

/// Reference: §5.4.2, Figure 8 — a leader never commits an entry from an earlier
/// term by counting replicas; it commits it only along with one of its own.
#[test]
fn leader_only_commits_entries_from_its_own_term() {
    // Server 1 holds an uncommitted term-2 entry and wins term 4.
    let mut raft = server_with_log(1, 3, 3, &[2]);
    tick_until_candidate(&mut raft);
    let ready = raft.ready();
    raft.handle_response(
        2,
        &ready.messages[0].request,
        Response::RequestVote(RequestVoteReply {
            term: 4,
            vote_granted: true,
        }),
    );
    assert_eq!(raft.role, Role::Leader);
    raft.ready();
    let ok = Response::AppendEntries(AppendEntriesReply {
        term: 4,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    });
    // Follower 2 now stores index 1 (term 2): a majority, but not this term.
    raft.handle_response(2, &append(4, (0, 0), &[2], 0), ok.clone());
    assert_eq!(
        raft.commit_index, 0,
        "§5.4.2: must not count replicas of a term-2 entry"
    );
    // Once an entry of term 4 is on a majority, both commit.
    raft.propose(b"y".to_vec()).expect("leader");
    let ready = raft.ready();
    report_persisted(&mut raft, &ready);
    raft.handle_response(2, &append(4, (1, 2), &[4], 0), ok);
    assert_eq!(raft.commit_index, 2);
}

/// Reference: §5.3 — on rejection the leader uses the hints: past its own last
/// entry of the conflicting term, or to the follower's first entry of it.
#[test]
fn the_leader_backs_up_a_whole_term_per_rejection() {
    let mut raft = server_with_log(1, 3, 5, &[1, 1, 4, 4, 5, 5]);
    tick_until_candidate(&mut raft);
    let ready = raft.ready();
    raft.handle_response(
        2,
        &ready.messages[0].request,
        Response::RequestVote(RequestVoteReply {
            term: 6,
            vote_granted: true,
        }),
    );
    raft.ready();
    let reject = |conflict_term, conflict_index| {
        Response::AppendEntries(AppendEntriesReply {
            term: 6,
            success: false,
            conflict_term,
            conflict_index,
        })
    };
    // Follower has term 4 at index 6, first term-4 index 3; we have term 4 up to 4.
    raft.handle_response(2, &append(6, (6, 5), &[], 0), reject(Some(4), 3));
    assert_eq!(raft.progress[&2].next_index, 5);
    // Follower has term 3 (which we lack) from index 2: jump to its first index.
    raft.handle_response(2, &append(6, (4, 4), &[], 0), reject(Some(3), 2));
    assert_eq!(raft.progress[&2].next_index, 2);
    // Follower's log is too short: jump just past its end.
    raft.handle_response(2, &append(6, (1, 1), &[], 0), reject(None, 1));
    assert_eq!(raft.progress[&2].next_index, 1);
    let ready = raft.ready();
    let retry = ready.messages.last().expect("an immediate retry");
    assert!(matches!(&retry.request,
        Request::AppendEntries(a) if a.prev_log_index == 0 && a.entries.len() == 6));
}

/// Reference: §7 — snapshotting drops the covered log; a follower that needs
/// compacted entries is sent the snapshot instead.
#[test]
fn a_follower_behind_the_snapshot_gets_install_snapshot() {
    let mut raft = leader(3);
    let ok = Response::AppendEntries(AppendEntriesReply {
        term: 1,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    });
    for i in 1..=3u64 {
        raft.propose(vec![i as u8]).expect("leader");
        let ready = raft.ready();
        report_persisted(&mut raft, &ready);
        raft.handle_response(
            2,
            &append(1, (i - 1, u64::from(i > 1)), &[1], 0),
            ok.clone(),
        );
    }
    raft.ready();
    let snap = |index, term, size| Snapshot {
        last_included_index: index,
        last_included_term: term,
        size,
        ..Snapshot::default()
    };
    assert!(!raft.snapshot(snap(2, 7, 10)), "names a term the log lacks");
    assert!(raft.snapshot(snap(2, 1, 10)));
    assert!(
        !raft.snapshot(snap(2, 1, 10)),
        "not past the current snapshot"
    );
    assert!(!raft.snapshot(snap(9, 1, 10)), "not applied yet");
    let ready = raft.ready();
    assert_eq!(
        ready
            .persist
            .snapshot
            .as_ref()
            .map(|s| s.last_included_index),
        Some(2)
    );
    assert_eq!(raft.log.first_index(), 3);
    // Follower 3's log is empty (its next index, 1, is compacted away), and its
    // last probe was answered (flow control lets the next message go).
    let progress = raft.progress.get_mut(&3).unwrap();
    (progress.next_index, progress.paused) = (1, false);
    raft.send_append(3);
    let ready = raft.ready();
    // The first piece; the runtime fills in its bytes from storage.
    assert_eq!(
        ready.messages,
        vec![Outbound {
            to: 3,
            request: Request::InstallSnapshot(InstallSnapshotArgs {
                term: 1,
                leader_id: 1,
                last_included_index: 2,
                last_included_term: 1,
                size: 10,
                offset: 0,
                configuration: Configuration::bootstrap(&[1, 2, 3], &Default::default()),
                configuration_index: 0,
                data: vec![],
                done: true,
            })
        }]
    );
}

/// Reference: §7 — a follower installs a newer snapshot: discards a conflicting
/// log, hands the snapshot to the service, and moves commit and apply to it.
#[test]
fn install_snapshot_replaces_a_conflicting_log() {
    let mut raft = server_with_log(1, 3, 1, &[1, 1]);
    let snapshot = InstallSnapshotArgs {
        term: 2,
        leader_id: 2,
        last_included_index: 5,
        last_included_term: 2,
        size: 2,
        offset: 0,
        configuration: Configuration::default(),
        configuration_index: 0,
        data: b"s5".to_vec(),
        done: true,
    };
    raft.handle_request(2, Request::InstallSnapshot(snapshot));
    assert_eq!((raft.commit_index, raft.last_applied), (5, 5));
    assert_eq!(raft.log.last_index(), 5);
    let ready = raft.ready();
    assert_eq!(
        ready.persist.log,
        Some(LogWrite {
            first_index: 6,
            entries: vec![]
        })
    );
    let installed = Snapshot {
        last_included_index: 5,
        last_included_term: 2,
        size: 2,
        ..Snapshot::default()
    };
    assert_eq!(
        ready.persist.snapshot_chunks,
        vec![SnapshotChunk {
            snapshot: installed.clone(),
            offset: 0,
            data: b"s5".to_vec(),
            done: true
        }]
    );
    assert_eq!(ready.persist.snapshot, Some(installed.clone()));
    assert_eq!(ready.apply, vec![ApplyMsg::Snapshot(installed)]);
}

/// Reference: §7 — a snapshot covering a prefix of a matching log keeps the
/// entries after it; one behind the commit index is ignored.
#[test]
fn install_snapshot_keeps_a_matching_suffix_and_never_goes_back() {
    let mut raft = server(1, 3);
    raft.handle_request(2, append(1, (0, 0), &[1, 1, 1, 1], 1));
    raft.ready();
    let install = |index| {
        Request::InstallSnapshot(InstallSnapshotArgs {
            term: 1,
            leader_id: 2,
            last_included_index: index,
            last_included_term: 1,
            size: 0,
            offset: 0,
            configuration: Configuration::default(),
            configuration_index: 0,
            data: vec![],
            done: true,
        })
    };
    raft.handle_request(2, install(2));
    assert_eq!(raft.log.first_index(), 3);
    assert_eq!(
        raft.log.last_index(),
        4,
        "entries after the snapshot are kept"
    );
    raft.ready();
    raft.handle_request(2, install(1));
    assert_eq!(raft.log.snapshot_index(), 2, "an older snapshot is ignored");
    assert!(raft.ready().apply.is_empty());
}

/// Reference: §7 — on restart, the stored snapshot is the first thing applied.
#[test]
fn a_restarted_server_applies_its_snapshot_first() {
    let mut raft = server_from(
        1,
        3,
        InitialState {
            hard_state: HardState {
                current_term: 3,
                voted_for: Some(2),
            },
            snapshot: Snapshot {
                last_included_index: 10,
                last_included_term: 3,
                size: 3,
                ..Snapshot::default()
            },
            entries: entries(&[3]),
        },
    );
    assert_eq!(raft.log.last_index(), 11);
    let ready = raft.ready();
    assert!(matches!(&ready.apply[..], [ApplyMsg::Snapshot(s)] if s.last_included_index == 10));
    assert_eq!(raft.voted_for, Some(2), "the vote survives the restart");
}

/// Reference: §5.2 — a single-server cluster elects itself and commits alone.
#[test]
fn a_single_server_is_its_own_majority() {
    let mut raft = server(1, 1);
    tick_until_candidate_or_leader(&mut raft);
    assert_eq!(raft.role, Role::Leader);
    raft.propose(b"solo".to_vec()).expect("leader");
    let ready = raft.ready();
    assert_eq!(raft.commit_index, 0, "not before its own write is durable");
    report_persisted(&mut raft, &ready);
    assert_eq!(raft.commit_index, 1);
    assert_eq!(raft.ready().apply.len(), 1);
}

/// Reference: thesis §10.2.1 — a leader may send AppendEntries before its own
/// write completes, so it counts itself toward a majority only once the
/// runtime reports the write durable.
#[test]
fn the_leader_counts_itself_only_once_its_write_is_durable() {
    let mut raft = leader(5);
    raft.propose(b"x".to_vec()).expect("leader");
    let ready = raft.ready();
    assert!(ready.send_first, "a leader's appends may precede its write");
    let ok = Response::AppendEntries(AppendEntriesReply {
        term: 1,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    });
    for peer in [2, 3] {
        raft.handle_response(peer, &append(1, (0, 0), &[1], 0), ok.clone());
    }
    assert_eq!(
        raft.commit_index, 0,
        "two followers and an unwritten leader"
    );
    report_persisted(&mut raft, &ready);
    assert_eq!(raft.commit_index, 1);
    // A report for an entry no longer in the log changes nothing.
    raft.persisted(9, 1);
    assert_eq!(raft.persisted_index, 1);
}

fn tick_until_candidate_or_leader(raft: &mut Raft) {
    for _ in 0..20 {
        raft.tick();
        if raft.role != Role::Follower {
            return;
        }
    }
}

/// Reference: Figure 13 — a snapshot arrives in pieces: each is stored only if
/// it continues what the follower holds (the reply says where to resume), each
/// counts as a heartbeat, and only the last installs the snapshot. A new
/// transfer (offset 0) starts over.
#[test]
fn a_snapshot_arrives_in_pieces_and_installs_on_the_last() {
    let mut raft = server(1, 3);
    let piece = |offset, data: &[u8], done| {
        Request::InstallSnapshot(InstallSnapshotArgs {
            term: 2,
            leader_id: 2,
            last_included_index: 5,
            last_included_term: 2,
            size: 6,
            offset,
            configuration: Configuration::default(),
            configuration_index: 0,
            data: data.to_vec(),
            done,
        })
    };
    let stored = |r: Response| match r {
        Response::InstallSnapshot(r) => r.stored,
        other => panic!("{other:?}"),
    };
    for _ in 0..5 {
        raft.tick();
    }
    assert_eq!(stored(raft.handle_request(2, piece(0, b"ab", false))), 2);
    assert_eq!(raft.election_elapsed, 0, "a piece is a heartbeat");
    assert_eq!(raft.ready().persist.snapshot_chunks.len(), 1);
    assert_eq!(
        stored(raft.handle_request(2, piece(4, b"ef", true))),
        2,
        "a gap"
    );
    assert!(raft.ready().persist.is_empty());
    assert_eq!(stored(raft.handle_request(2, piece(2, b"cd", false))), 4);
    assert_eq!(raft.commit_index, 0, "not installed before the last piece");
    assert_eq!(
        stored(raft.handle_request(2, piece(0, b"ab", false))),
        2,
        "starts over"
    );
    assert_eq!(stored(raft.handle_request(2, piece(2, b"cd", false))), 4);
    assert_eq!(stored(raft.handle_request(2, piece(4, b"ef", true))), 6);
    assert_eq!((raft.commit_index, raft.log.snapshot_index()), (5, 5));
    let ready = raft.ready();
    assert_eq!(ready.persist.snapshot_chunks.len(), 4);
    assert!(ready.persist.snapshot_chunks[3].done);
    assert!(matches!(&ready.apply[..], [ApplyMsg::Snapshot(s)] if s.size == 6));
}

/// Server 1 of 2, leader of term 1, with a 10-byte snapshot through index 1
/// (pieces of 4 bytes), has just sent follower 2 (which has nothing) the
/// snapshot's first piece.
fn leader_sending_a_snapshot() -> Raft {
    let mut config = Config::new(1, vec![1, 2]);
    config.pre_vote = false;
    config.check_quorum = false;
    config.snapshot_chunk_bytes = 4;
    config.election_ticks = 10;
    let mut raft = Raft::new(config, InitialState::default());
    tick_until_candidate(&mut raft);
    let votes = raft.ready().messages;
    raft.handle_response(
        2,
        &votes[0].request,
        Response::RequestVote(RequestVoteReply {
            term: 1,
            vote_granted: true,
        }),
    );
    assert_eq!(raft.role, Role::Leader);
    raft.propose(b"x".to_vec()).expect("leader");
    let ready = raft.ready();
    report_persisted(&mut raft, &ready);
    raft.last_applied = 1;
    let snapshot = Snapshot {
        last_included_index: 1,
        last_included_term: 1,
        size: 10,
        ..Snapshot::default()
    };
    assert!(raft.snapshot(snapshot));
    raft.ready();
    let progress = raft.progress.get_mut(&2).unwrap();
    (progress.next_index, progress.paused) = (1, false);
    raft.send_append(2);
    raft
}

/// Reference: Figure 13 — the leader sends one piece at a time, the next one
/// from where the follower's reply says it stopped, then goes back to
/// AppendEntries after the snapshot.
#[test]
fn the_leader_sends_a_snapshot_piece_by_piece() {
    let mut raft = leader_sending_a_snapshot();
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let out = raft.ready().messages;
        let Request::InstallSnapshot(args) = &out[0].request else {
            panic!("{out:?}");
        };
        offsets.push((args.offset, args.done));
        let stored = (args.offset + 4).min(10);
        let reply = Response::InstallSnapshot(InstallSnapshotReply { term: 1, stored });
        raft.handle_response(2, &out[0].request, reply);
    }
    assert_eq!(offsets, vec![(0, false), (4, false), (8, true)]);
    let progress = &raft.progress[&2];
    assert_eq!(
        (progress.match_index, progress.snapshot_transfer.clone()),
        (1, None)
    );
}

/// Reference: Figure 13 — a follower that lost what it had received (it
/// restarted, or a late duplicate of the first piece made it start over)
/// answers the piece in flight with less than its offset; the leader resumes
/// from there. Replies to earlier pieces move nothing.
#[test]
fn the_leader_resumes_a_snapshot_from_where_the_follower_stands() {
    let mut raft = leader_sending_a_snapshot();
    let reply = |stored| Response::InstallSnapshot(InstallSnapshotReply { term: 1, stored });
    let first = raft.ready().messages.remove(0).request;
    raft.handle_response(2, &first, reply(4));
    let second = raft.ready().messages.remove(0).request;
    assert!(matches!(&second, Request::InstallSnapshot(a) if a.offset == 4));
    // A late reply to the first piece: nothing is sent.
    raft.handle_response(2, &first, reply(0));
    assert!(raft.ready().messages.is_empty());
    // The reply to the piece in flight says the follower holds 0 bytes.
    raft.handle_response(2, &second, reply(0));
    let out = raft.ready().messages;
    assert!(
        matches!(&out[..], [m] if matches!(&m.request, Request::InstallSnapshot(a) if a.offset == 0)),
        "{out:?}"
    );
}

/// Flow control while a snapshot is on its way: an answered heartbeat (which
/// shows the follower matches only up to 0) may send the piece in flight
/// again, but never switches to streaming, which would let a window of
/// pieces go at once.
#[test]
fn a_heartbeat_answer_during_a_snapshot_transfer_keeps_one_piece_in_flight() {
    let mut raft = leader_sending_a_snapshot();
    let first = raft.ready().messages;
    assert!(
        matches!(&first[..], [m] if matches!(&m.request, Request::InstallSnapshot(a) if a.offset == 0))
    );
    let heartbeat = Request::AppendEntries(AppendEntriesArgs {
        term: 1,
        leader_id: 1,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 1,
        read_seq: 0,
    });
    let ok = Response::AppendEntries(AppendEntriesReply {
        term: 1,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    });
    for _ in 0..3 {
        raft.handle_response(2, &heartbeat, ok.clone());
        let progress = &raft.progress[&2];
        assert_eq!(progress.state, ReplicationState::Probe);
        assert!(progress.paused && progress.inflight.is_empty());
        let out = raft.ready().messages;
        assert!(
            matches!(&out[..], [m] if matches!(&m.request, Request::InstallSnapshot(a) if a.offset == 0)),
            "{out:?}"
        );
    }
}
