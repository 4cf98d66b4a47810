//! One test per rule of membership changes (thesis §4), asserting the core's
//! exact output: which configuration is in force, who counts, when a leader
//! may change it, the learner's catch-up rounds, and removing the leader.
//! Servers run as the server does (a first entry of each new leader's term)
//! but without pre-vote and check-quorum, which `leadership_tests.rs` covers.

use super::bugs::Bug;
use super::configuration::Configuration;
use super::core::{Config, InitialState, Raft, Role};
use super::membership::{
    AbortReason, ChangeStage, MembershipChange, MembershipError, MAX_CATCH_UP_ROUNDS,
    UNREACHABLE_TIMEOUTS,
};
use super::messages::*;
use super::ready::{HardState, LogWrite, Outbound, Ready, Snapshot};
use super::TransferError;

const ELECTION: u32 = 10;
const HEARTBEAT: u32 = 3;

fn config(id: NodeId, peers: Vec<NodeId>) -> Config {
    let mut config = Config::new(id, peers);
    config.election_ticks = ELECTION;
    config.heartbeat_ticks = HEARTBEAT;
    config.pre_vote = false;
    config.check_quorum = false;
    config.noop_on_election = true;
    config
}

/// The bootstrap configuration of servers `1..=n` (the course tests' style:
/// no addresses).
fn voters(n: u64) -> Configuration {
    Configuration::bootstrap(&(1..=n).collect::<Vec<_>>(), &Default::default())
}

fn server(id: NodeId, n: u64) -> Raft {
    Raft::new(config(id, (1..=n).collect()), InitialState::default())
}

/// What the runtime does with a Ready's save.
fn persisted(raft: &mut Raft, ready: &Ready) {
    if let Some((index, term)) = ready.persist.log.as_ref().and_then(|w| w.last()) {
        raft.persisted(index, term);
    }
}

/// Takes the Ready and reports its log write durable.
fn step(raft: &mut Raft) -> Ready {
    let ready = raft.ready();
    persisted(raft, &ready);
    ready
}

fn ok(term: Term) -> Response {
    Response::AppendEntries(AppendEntriesReply {
        term,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    })
}

/// Server `from` accepts every AppendEntries addressed to it in `ready`.
fn accept(raft: &mut Raft, ready: &Ready, from: &[NodeId]) {
    for out in &ready.messages {
        if from.contains(&out.to) && matches!(out.request, Request::AppendEntries(_)) {
            let term = out.request.term();
            raft.handle_response(out.to, &out.request, ok(term));
        }
    }
}

fn appends_to(ready: &Ready, to: NodeId) -> Vec<&AppendEntriesArgs> {
    ready
        .messages
        .iter()
        .filter(|out| out.to == to)
        .filter_map(|out| match &out.request {
            Request::AppendEntries(args) => Some(args),
            _ => None,
        })
        .collect()
}

/// Server 1 of `n`, elected in term 1, its first entry (the bootstrap
/// configuration, index 1) committed, output drained.
fn leader(n: u64) -> Raft {
    let mut raft = server(1, n);
    for _ in 0..2 * ELECTION {
        raft.tick();
        if raft.role != Role::Follower {
            break;
        }
    }
    if raft.role == Role::Candidate {
        for out in raft.ready().messages {
            let grant = Response::RequestVote(RequestVoteReply {
                term: 1,
                vote_granted: true,
            });
            raft.handle_response(out.to, &out.request, grant);
        }
    }
    assert_eq!(raft.role, Role::Leader);
    let ready = step(&mut raft);
    let others: Vec<NodeId> = (2..=n).collect();
    accept(&mut raft, &ready, &others);
    assert_eq!(raft.commit_index, 1);
    assert_eq!(raft.configuration(), (&voters(n), 1));
    raft.ready();
    raft
}

fn add(id: NodeId) -> MembershipChange {
    MembershipChange::Add {
        id,
        address: format!("h:{id}"),
    }
}

fn stage(raft: &Raft) -> ChangeStage {
    raft.status().membership_change.expect("a change").stage
}

/// Reference: thesis §4.2.1 — a new server joins as a learner: the leader
/// appends the configuration with it, which is in force at once (the runtime
/// is told, to learn the address), probes the learner at once, and sends the
/// entry to the voters.
#[test]
fn an_added_server_joins_as_a_learner_in_force_when_appended() {
    let mut raft = leader(3);
    assert_eq!(raft.change_membership(add(4)), Ok(1));
    let with_learner = voters(3).with_learner(4, "h:4");
    assert_eq!(raft.configuration(), (&with_learner, 2));
    let ready = raft.ready();
    assert_eq!(ready.configuration, Some(with_learner.clone()));
    assert_eq!(
        ready.persist.log,
        Some(LogWrite {
            first_index: 2,
            entries: vec![Entry::configuration(1, &with_learner)]
        })
    );
    let probe = AppendEntriesArgs {
        term: 1,
        leader_id: 1,
        prev_log_index: 2,
        prev_log_term: 1,
        entries: vec![],
        leader_commit: 1,
        read_seq: 0,
    };
    assert_eq!(
        ready.messages[0],
        Outbound {
            to: 4,
            request: Request::AppendEntries(probe)
        }
    );
    for to in [2, 3] {
        let sent = appends_to(&ready, to);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].entries,
            vec![Entry::configuration(1, &with_learner)]
        );
    }
    assert_eq!(stage(&raft), ChangeStage::CatchingUp { round: 0 });
}

/// Reference: thesis §4.2.1 — a learner's copy never counts toward a
/// majority: in a cluster of two voters, the leader and the learner holding
/// an entry (two of three members) do not commit it; the other voter does.
#[test]
fn a_learner_replicates_but_never_counts() {
    let mut raft = leader(2);
    raft.change_membership(add(3)).unwrap();
    let ready = step(&mut raft);
    // The learner holds everything.
    let everything = Request::AppendEntries(AppendEntriesArgs {
        term: 1,
        leader_id: 1,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: raft.log.entries_from(1, usize::MAX),
        leader_commit: 1,
        read_seq: 0,
    });
    raft.handle_response(3, &everything, ok(1));
    assert_eq!(raft.progress[&3].match_index, 2);
    assert_eq!(
        raft.commit_index, 1,
        "leader and learner are not a majority"
    );
    accept(&mut raft, &ready, &[2]);
    assert_eq!(raft.commit_index, 2, "leader and voter 2 are");
}

/// Reference: thesis §4.2.1 — the learner is promoted once a catch-up round
/// ends within an election timeout and its own entry has committed; the
/// promotion is one more configuration entry, after which it counts.
#[test]
fn a_learner_that_catches_up_in_a_fast_round_is_promoted() {
    let mut raft = leader(3);
    raft.change_membership(add(4)).unwrap();
    let ready = step(&mut raft);
    let everything = Request::AppendEntries(AppendEntriesArgs {
        term: 1,
        leader_id: 1,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: raft.log.entries_from(1, usize::MAX),
        leader_commit: 1,
        read_seq: 0,
    });
    raft.handle_response(4, &everything, ok(1));
    assert_eq!(stage(&raft), ChangeStage::CatchingUp { round: 1 });
    assert_eq!(
        raft.log.last_index(),
        2,
        "waits for the learner entry to commit"
    );
    accept(&mut raft, &ready, &[2, 3]);
    let promoted = voters(4);
    let promoted = Configuration {
        voters: promoted
            .voters
            .into_iter()
            .map(|(id, a)| (id, if id == 4 { "h:4".into() } else { a }))
            .collect(),
        ..Configuration::default()
    };
    assert_eq!(raft.configuration(), (&promoted, 3));
    assert_eq!(stage(&raft), ChangeStage::Committing);
    let ready = step(&mut raft);
    assert_eq!(ready.configuration, Some(promoted));
    // Four voters: leader, 2 and 4 are a majority; leader and 2 are not.
    accept(&mut raft, &ready, &[2]);
    assert_eq!(raft.commit_index, 2);
    accept(&mut raft, &ready, &[4]);
    assert_eq!(raft.commit_index, 3);
    assert_eq!(stage(&raft), ChangeStage::Done);
}

/// Reference: thesis §4.2.1 — a learner that never answers is called off
/// after `UNREACHABLE_TIMEOUTS` election timeouts: the leader removes it
/// again (without retiring its id), and the voters are as they were.
#[test]
fn adding_an_unreachable_server_is_called_off_and_leaves_the_voters_alone() {
    let mut raft = leader(3);
    raft.change_membership(add(4)).unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2, 3]);
    for _ in 0..UNREACHABLE_TIMEOUTS * ELECTION - 1 {
        raft.tick();
    }
    assert_eq!(stage(&raft), ChangeStage::CatchingUp { round: 0 });
    raft.tick();
    assert_eq!(stage(&raft), ChangeStage::Committing);
    assert_eq!(raft.configuration(), (&voters(3), 3));
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2]);
    assert_eq!(stage(&raft), ChangeStage::Aborted(AbortReason::Unreachable));
    assert!(raft.configuration.retired.is_empty(), "4 may try again");
    assert!(!raft.progress.contains_key(&4), "no more sends to it");
}

/// Reference: thesis §4.2.1 — rounds that each take longer than an election
/// timeout (the log keeps growing faster than the learner copies it) call
/// the change off after `MAX_CATCH_UP_ROUNDS`.
#[test]
fn a_learner_too_slow_for_ten_rounds_is_called_off() {
    let mut raft = leader(3);
    raft.change_membership(add(4)).unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2, 3]);
    for round in 1..=MAX_CATCH_UP_ROUNDS {
        // A slow round: an election timeout passes (the learner answers
        // heartbeats meanwhile, so it is not unreachable), the log grows.
        for _ in 0..ELECTION {
            raft.tick();
            let behind = Request::AppendEntries(AppendEntriesArgs {
                term: 1,
                leader_id: 1,
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![],
                leader_commit: 0,
                read_seq: 0,
            });
            raft.handle_response(4, &behind, ok(1));
        }
        raft.propose(vec![round as u8]).unwrap();
        let ready = step(&mut raft);
        accept(&mut raft, &ready, &[2, 3]);
        // The learner reaches the end of the previous round.
        let last = raft.log.last_index() - 1;
        let caught = Request::AppendEntries(AppendEntriesArgs {
            term: 1,
            leader_id: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: raft.log.entries_from(1, usize::MAX)[..last as usize].to_vec(),
            leader_commit: 0,
            read_seq: 0,
        });
        raft.handle_response(4, &caught, ok(1));
        if round < MAX_CATCH_UP_ROUNDS {
            assert_eq!(stage(&raft), ChangeStage::CatchingUp { round });
        }
    }
    assert_eq!(stage(&raft), ChangeStage::Committing);
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2]);
    assert_eq!(stage(&raft), ChangeStage::Aborted(AbortReason::TooSlow));
    assert_eq!(raft.configuration.voters, voters(3).voters);
    assert!(raft.configuration.learners.is_empty());
}

/// Reference: thesis §4.1 — one change at a time: a second request while a
/// change runs, or while the latest configuration is not committed, is
/// refused (and worth retrying).
#[test]
fn one_change_at_a_time() {
    let mut raft = leader(3);
    raft.change_membership(add(4)).unwrap();
    assert_eq!(
        raft.change_membership(add(5)),
        Err(MembershipError::ChangeInProgress)
    );
    assert_eq!(
        raft.change_membership(MembershipChange::Remove { id: 3 }),
        Err(MembershipError::ChangeInProgress)
    );
    // Not leader, stranger, last voter, reused id.
    let mut follower = server(2, 3);
    assert_eq!(
        follower.change_membership(add(4)),
        Err(MembershipError::NotLeader)
    );
    let mut alone = leader(1);
    assert_eq!(
        alone.change_membership(MembershipChange::Remove { id: 9 }),
        Err(MembershipError::NotMember(9))
    );
    assert_eq!(
        alone.change_membership(MembershipChange::Remove { id: 1 }),
        Err(MembershipError::LastVoter)
    );
}

/// Reference: thesis §4.1 — a removed server's id is never used again; a
/// retried request that is already done succeeds at once.
#[test]
fn ids_are_never_reused_and_retries_of_done_changes_succeed() {
    let mut raft = leader(3);
    raft.change_membership(MembershipChange::Remove { id: 3 })
        .unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2]);
    assert_eq!(stage(&raft), ChangeStage::Done);
    assert!(raft.configuration.retired.contains(&3));
    assert_eq!(
        raft.change_membership(add(3)),
        Err(MembershipError::IdInUse(3))
    );
    assert_eq!(
        raft.change_membership(MembershipChange::Remove { id: 3 }),
        Ok(2),
        "already removed"
    );
    assert_eq!(stage(&raft), ChangeStage::Done);
    assert_eq!(raft.log.last_index(), 2, "nothing appended");
}

/// Reference: raft-dev 2015, "bug in single-server membership changes" — a
/// new leader refuses to change the configuration until it has committed an
/// entry of its own term; with `Bug::Membership2015` it does not wait.
#[test]
fn a_new_leader_changes_nothing_until_it_commits_in_its_term() {
    for bug in [None, Some(Bug::Membership2015)] {
        // Its log holds the committed configuration of term 1; it leads term 2.
        let mut config = config(1, vec![1, 2, 3]);
        config.bug = bug;
        let stored = InitialState {
            hard_state: HardState {
                current_term: 1,
                voted_for: None,
            },
            snapshot: Snapshot {
                last_included_index: 1,
                last_included_term: 1,
                size: 0,
                configuration: voters(3),
                configuration_index: 1,
            },
            entries: vec![],
        };
        let mut raft = Raft::new(config, stored);
        for _ in 0..2 * ELECTION {
            raft.tick();
        }
        for out in raft.ready().messages {
            let grant = Response::RequestVote(RequestVoteReply {
                term: 2,
                vote_granted: true,
            });
            raft.handle_response(out.to, &out.request, grant);
        }
        assert_eq!((raft.role, raft.commit_index), (Role::Leader, 1));
        let ready = step(&mut raft);
        let remove = MembershipChange::Remove { id: 3 };
        if bug.is_some() {
            assert_eq!(
                raft.change_membership(remove),
                Ok(1),
                "the bug changes the configuration before committing in term 2"
            );
            continue;
        }
        assert_eq!(
            raft.change_membership(remove.clone()),
            Err(MembershipError::NotReady)
        );
        accept(&mut raft, &ready, &[2]);
        assert_eq!(raft.commit_index, 2, "its no-op");
        assert_eq!(raft.change_membership(remove), Ok(1));
    }
}

/// Reference: thesis §4.2.1, §4.2.3 — a server that is not a voter in its
/// latest configuration never campaigns: one waiting to be added (no
/// configuration at all) and a learner stay quiet for ten election timeouts.
#[test]
fn a_server_that_is_not_a_voter_never_campaigns() {
    let mut waiting = Raft::new(config(4, vec![]), InitialState::default());
    let mut learner = server(4, 0);
    let with_learner = voters(3).with_learner(4, "h:4");
    learner.handle_request(
        1,
        Request::AppendEntries(AppendEntriesArgs {
            term: 1,
            leader_id: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry::configuration(1, &with_learner)],
            leader_commit: 0,
            read_seq: 0,
        }),
    );
    assert_eq!(learner.configuration(), (&with_learner, 1));
    for raft in [&mut waiting, &mut learner] {
        raft.ready();
        for _ in 0..10 * ELECTION {
            raft.tick();
            let ready = raft.ready();
            assert!(ready.messages.is_empty(), "{:?}", ready.messages);
        }
        assert_eq!(raft.role, Role::Follower);
        // Nor does a TimeoutNow make it campaign.
        let term = raft.current_term;
        raft.handle_request(
            1,
            Request::TimeoutNow(TimeoutNowArgs { term, leader_id: 1 }),
        );
        assert_eq!(raft.role, Role::Follower);
    }
}

/// Reference: thesis §4.1 — handling an RPC never consults the
/// configuration: a learner (say, a new voter that has not yet heard of its
/// promotion) grants its vote to a candidate whose log is up to date.
#[test]
fn a_server_that_has_not_learned_of_its_promotion_still_votes() {
    let mut learner = server(4, 0);
    let with_learner = voters(3).with_learner(4, "h:4");
    learner.handle_request(
        1,
        Request::AppendEntries(AppendEntriesArgs {
            term: 1,
            leader_id: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry::configuration(1, &with_learner)],
            leader_commit: 0,
            read_seq: 0,
        }),
    );
    let vote = Request::RequestVote(RequestVoteArgs {
        term: 2,
        candidate_id: 2,
        last_log_index: 2,
        last_log_term: 1,
        pre_vote: false,
        leadership_transfer: false,
    });
    // Its leader has gone quiet for an election timeout.
    for _ in 0..2 * ELECTION {
        learner.tick();
    }
    let Response::RequestVote(reply) = learner.handle_request(2, vote) else {
        panic!("a vote reply");
    };
    assert!(reply.vote_granted);
}

/// Reference: thesis §4.1 — "a log entry for a configuration change can be
/// removed (if leadership changes); in this case, a server must be prepared
/// to fall back to the previous configuration in its log".
#[test]
fn truncating_a_configuration_entry_reverts_to_the_previous_one() {
    let mut follower = server(2, 3);
    let with_learner = voters(3).with_learner(4, "h:4");
    let without_3 = voters(3).without(3, true);
    let append = |term, prev: (Index, Term), entries| {
        Request::AppendEntries(AppendEntriesArgs {
            term,
            leader_id: 1,
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit: 0,
            read_seq: 0,
        })
    };
    follower.handle_request(
        1,
        append(
            1,
            (0, 0),
            vec![
                Entry::configuration(1, &with_learner),
                Entry::configuration(1, &without_3),
            ],
        ),
    );
    assert_eq!(follower.configuration(), (&without_3, 2));
    follower.ready();
    // Leader 3 of term 2 never had the second entry: it overwrites it.
    follower.handle_request(3, append(2, (1, 1), vec![Entry::noop(2)]));
    assert_eq!(follower.configuration(), (&with_learner, 1));
    assert_eq!(follower.ready().configuration, Some(with_learner));
    // And past every configuration entry: back to the bootstrap peers.
    follower.handle_request(3, append(3, (0, 0), vec![Entry::noop(3)]));
    assert_eq!(follower.configuration(), (&voters(3), 0));
}

/// Reference: thesis §4.2.2 — a leader removing itself keeps leading until
/// the configuration without it commits, without counting itself; then it
/// tells an up-to-date voter to campaign at once and steps down, and never
/// campaigns again.
#[test]
fn a_leader_removing_itself_leads_until_that_commits_then_steps_down() {
    let mut raft = leader(3);
    raft.change_membership(MembershipChange::Remove { id: 1 })
        .unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2]);
    assert_eq!(
        (raft.role, raft.commit_index),
        (Role::Leader, 1),
        "itself and 2 were a majority of the old voters, not of {{2, 3}}"
    );
    accept(&mut raft, &ready, &[3]);
    assert_eq!(raft.commit_index, 2);
    assert_eq!(raft.role, Role::Follower);
    assert_eq!(stage(&raft), ChangeStage::Done);
    let ready = raft.ready();
    let timeout_now: Vec<NodeId> = ready
        .messages
        .iter()
        .filter(|o| matches!(o.request, Request::TimeoutNow(_)))
        .map(|o| o.to)
        .collect();
    assert_eq!(
        timeout_now,
        vec![2],
        "the first up-to-date voter takes over"
    );
    assert!(
        appends_to(&ready, 3).iter().any(|a| a.leader_commit == 2),
        "the others learn the commit first"
    );
    for _ in 0..10 * ELECTION {
        raft.tick();
        assert!(raft.ready().messages.is_empty());
    }
}

/// Reference: thesis §4.2.2 (the "removedlog3" figure) — in a two-server
/// cluster the leader removing itself needs the other server's copy alone,
/// and hands over to it.
#[test]
fn the_leader_of_two_removes_itself_and_hands_over() {
    let mut raft = leader(2);
    raft.change_membership(MembershipChange::Remove { id: 1 })
        .unwrap();
    let ready = step(&mut raft);
    assert_eq!(raft.role, Role::Leader);
    accept(&mut raft, &ready, &[2]);
    assert_eq!(raft.role, Role::Follower);
    let ready = raft.ready();
    assert!(ready
        .messages
        .iter()
        .any(|o| o.to == 2 && matches!(o.request, Request::TimeoutNow(_))));
}

/// Reference: thesis §3.10, §4.2.1 — leadership goes only to a voter.
#[test]
fn leadership_is_not_transferred_to_a_learner() {
    let mut raft = leader(3);
    raft.change_membership(add(4)).unwrap();
    assert_eq!(
        raft.transfer_leadership(4),
        Err(TransferError::UnknownServer(4))
    );
}

/// Reference: thesis §4.1 with §7 — a snapshot carries the configuration as
/// of its index (found in the entries it drops), an installed one is adopted,
/// and a server restarted from it uses it and ignores its bootstrap peers.
#[test]
fn the_snapshot_carries_the_configuration_as_of_its_index() {
    let mut raft = leader(3);
    raft.change_membership(MembershipChange::Remove { id: 3 })
        .unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2]);
    raft.propose(b"x".to_vec()).unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[2]);
    raft.ready();
    let without_3 = voters(3).without(3, true);
    // What the service writes: the point and the configuration as of it,
    // which the core supplies (`snapshot_point`).
    let point = |raft: &Raft, index| raft.snapshot_point(index).expect("applied");
    assert_eq!(point(&raft, 1).configuration, voters(3));
    assert!(raft.snapshot(point(&raft, 1)));
    assert_eq!(
        (
            &raft.snapshot.configuration,
            raft.snapshot.configuration_index
        ),
        (&voters(3), 1)
    );
    assert!(raft.snapshot(point(&raft, 3)));
    assert_eq!(
        (
            &raft.snapshot.configuration,
            raft.snapshot.configuration_index
        ),
        (&without_3, 2),
        "found in the entries the second compaction dropped"
    );
    // A follower installs it, and a restart from it adopts it.
    let mut follower = server(5, 5);
    follower.handle_request(
        1,
        Request::InstallSnapshot(InstallSnapshotArgs {
            term: 1,
            leader_id: 1,
            last_included_index: 3,
            last_included_term: 1,
            size: 2,
            offset: 0,
            configuration: without_3.clone(),
            configuration_index: 2,
            data: b"s3".to_vec(),
            done: true,
        }),
    );
    assert_eq!(follower.configuration(), (&without_3, 2));
    let restarted = Raft::new(
        config(2, vec![1, 2, 3, 4, 5]),
        InitialState {
            hard_state: HardState::default(),
            snapshot: raft.snapshot.clone(),
            entries: vec![],
        },
    );
    assert_eq!(restarted.configuration(), (&without_3, 2));
}

/// Reference: thesis §4.2.3 — the leader keeps replicating to a server it
/// removes until the removal commits and the server holds it, then sends it
/// the commit index once more (a heartbeat at its match index, which flow
/// control never holds back) and stops: the removed server learns it is out
/// (and stops campaigning) instead of timing out with its removal undecided.
#[test]
fn a_removed_server_hears_from_the_leader_until_it_knows_its_removal_committed() {
    let mut raft = leader(3);
    raft.change_membership(MembershipChange::Remove { id: 3 })
        .unwrap();
    let ready = step(&mut raft);
    let to_3 = appends_to(&ready, 3);
    assert_eq!(to_3.len(), 1, "the removal reaches 3 too");
    assert_eq!(
        to_3[0].entries,
        vec![Entry::configuration(1, &voters(3).without(3, true))]
    );
    accept(&mut raft, &ready, &[2]);
    assert_eq!(raft.commit_index, 2);
    // 3 has not acknowledged its removal: a heartbeat carrying the commit
    // would not tell it (it commits no further than it matches).
    assert!(raft.progress.contains_key(&3), "3 is still replicated to");
    assert!(appends_to(&raft.ready(), 3).is_empty());
    for _ in 0..HEARTBEAT {
        raft.tick();
    }
    assert_eq!(appends_to(&raft.ready(), 3).len(), 1, "3 still hears");
    // It answers the AppendEntries that carried its removal.
    accept(&mut raft, &ready, &[3]);
    assert!(!raft.progress.contains_key(&3), "no more sends to 3");
    let ready = raft.ready();
    let last = appends_to(&ready, 3);
    assert_eq!(last.len(), 1, "one last AppendEntries");
    assert_eq!(
        (last[0].prev_log_index, last[0].entries.len()),
        (2, 0),
        "a heartbeat at its match index"
    );
    assert_eq!(last[0].leader_commit, 2, "carrying the commit");
    for _ in 0..3 * HEARTBEAT {
        raft.tick();
    }
    assert!(appends_to(&raft.ready(), 3).is_empty());
}

/// Reference: thesis §4.2.3 — a removed server that acknowledged its
/// removal before it committed hears the commit as soon as it does, even
/// while flow control holds data back (its probe is unanswered).
#[test]
fn a_removed_server_holding_its_removal_is_told_at_commit_despite_flow_control() {
    let mut raft = leader(3);
    raft.change_membership(MembershipChange::Remove { id: 3 })
        .unwrap();
    let ready = step(&mut raft);
    accept(&mut raft, &ready, &[3]);
    assert_eq!(raft.progress[&3].match_index, 2);
    assert_eq!(raft.commit_index, 1, "3 no longer counts");
    // Say 3 is probed again and the probe goes unanswered: no data may go
    // to it now.
    raft.progress.get_mut(&3).unwrap().back_off_to(3);
    raft.send_append(3);
    assert_eq!(appends_to(&raft.ready(), 3).len(), 1, "the probe");
    assert!(raft.progress[&3].paused);
    accept(&mut raft, &ready, &[2]);
    assert_eq!(raft.commit_index, 2);
    assert!(!raft.progress.contains_key(&3));
    let last = raft.ready();
    let last = appends_to(&last, 3);
    assert_eq!(last.len(), 1, "one last AppendEntries");
    assert_eq!((last[0].prev_log_index, last[0].leader_commit), (2, 2));
}
