//! One test per rule of ReadIndex (thesis §6.4), asserting the core's exact
//! output, and of the no-op a new leader appends (§8).

use super::configuration::Configuration;
use super::core::{Config, InitialState, Raft, Role};
use super::messages::*;
use super::ready::{ApplyMsg, HardState, Outbound, Ready, Snapshot};
use super::replication::ProposeError;

/// Server `id` of `n` with a no-op on election, holding entries of `terms`.
fn server_at(id: NodeId, n: u64, term: Term, terms: &[Term]) -> Raft {
    let mut config = Config::new(id, (1..=n).collect());
    config.election_ticks = 10;
    config.heartbeat_ticks = 3;
    config.pre_vote = false;
    config.noop_on_election = true;
    let entries = terms
        .iter()
        .map(|&t| Entry::command(t, vec![t as u8]))
        .collect();
    let hard_state = HardState {
        current_term: term,
        voted_for: None,
    };
    let initial = InitialState {
        hard_state,
        snapshot: Snapshot::default(),
        entries,
    };
    Raft::new(config, initial)
}

/// What the runtime does with a Ready's save.
fn persisted(raft: &mut Raft, ready: &Ready) {
    if let Some((index, term)) = ready.persist.log.as_ref().and_then(|w| w.last()) {
        raft.persisted(index, term);
    }
}

fn ok_reply(term: Term) -> Response {
    Response::AppendEntries(AppendEntriesReply {
        term,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    })
}

/// Makes `raft` leader (the others vote for it) and returns the Ready that
/// carries its first AppendEntries (with the no-op).
fn elect(raft: &mut Raft) -> Ready {
    for _ in 0..30 {
        raft.tick();
        if raft.role == Role::Candidate {
            break;
        }
    }
    let term = raft.current_term;
    for out in raft.ready().messages {
        let grant = Response::RequestVote(RequestVoteReply {
            term,
            vote_granted: true,
        });
        raft.handle_response(out.to, &out.request, grant);
    }
    assert_eq!(raft.role, Role::Leader);
    let ready = raft.ready();
    persisted(raft, &ready);
    ready
}

/// Server 1 of `n`, leader with its no-op committed, output drained.
fn settled_leader(n: u64) -> Raft {
    let mut raft = server_at(1, n, 0, &[]);
    let ready = elect(&mut raft);
    for out in ready.messages {
        raft.handle_response(out.to, &out.request, ok_reply(1));
    }
    assert_eq!(raft.commit_index, 1, "the no-op committed");
    raft.ready();
    raft
}

fn reads(ready: &Ready) -> Vec<(u64, Index)> {
    ready
        .apply
        .iter()
        .filter_map(|m| match m {
            ApplyMsg::Read { id, index } => Some((*id, *index)),
            _ => None,
        })
        .collect()
}

fn read_seq(out: &Outbound) -> u64 {
    match &out.request {
        Request::AppendEntries(a) => a.read_seq,
        other => panic!("expected AppendEntries, got {other:?}"),
    }
}

/// Reference: §8 — a new leader appends an entry of its term at once and
/// sends it with its first AppendEntries; it applies as `Internal`. The first
/// leader of a new cluster makes it its bootstrap configuration, so the log
/// holds one from then on (thesis §4.1); later leaders append a no-op.
#[test]
fn a_new_leader_appends_a_noop_of_its_term() {
    let mut raft = server_at(1, 3, 0, &[]);
    let bootstrap = Configuration::bootstrap(&[1, 2, 3], &Default::default());
    let ready = elect(&mut raft);
    let Request::AppendEntries(args) = &ready.messages[0].request else {
        panic!("expected AppendEntries");
    };
    assert_eq!(args.entries, vec![Entry::configuration(1, &bootstrap)]);
    raft.handle_response(2, &ready.messages[0].request, ok_reply(1));
    assert_eq!(
        raft.ready().apply,
        vec![ApplyMsg::Internal { index: 1, term: 1 }]
    );
    assert_eq!(raft.configuration(), (&bootstrap, 1));

    let mut later = server_at(1, 3, 1, &[]);
    later.handle_request(
        2,
        append_from_2(1, vec![Entry::configuration(1, &bootstrap)]),
    );
    later.ready();
    let ready = elect(&mut later);
    let Request::AppendEntries(args) = &ready.messages[0].request else {
        panic!("expected AppendEntries");
    };
    assert_eq!(args.entries, vec![Entry::noop(2)]);
}

/// An AppendEntries from leader 2 in `term` carrying `entries` from index 1.
fn append_from_2(term: Term, entries: Vec<Entry>) -> Request {
    Request::AppendEntries(AppendEntriesArgs {
        term,
        leader_id: 2,
        prev_log_index: 0,
        prev_log_term: 0,
        entries,
        leader_commit: 0,
        read_seq: 0,
    })
}

/// Reference: thesis §6.4 — a read records the commit index, waits for a
/// heartbeat round a majority answers, and is then handed out after the
/// entries it covers.
#[test]
fn a_read_is_confirmed_by_one_heartbeat_round_answered_by_a_majority() {
    let mut raft = settled_leader(3);
    raft.read_index(7).expect("leader");
    let ready = raft.ready();
    assert!(reads(&ready).is_empty(), "not confirmed yet");
    assert_eq!(ready.messages.len(), 2, "one round: a heartbeat to each");
    assert!(ready.messages.iter().all(|m| read_seq(m) == 1));
    raft.handle_response(2, &ready.messages[0].request, ok_reply(1));
    assert_eq!(reads(&raft.ready()), vec![(7, 1)]);
}

/// Reference: thesis §6.4 (toyDB's read quorum sequence) — answers to
/// heartbeats sent before a read arrived do not confirm it.
#[test]
fn answers_to_heartbeats_sent_before_a_read_do_not_confirm_it() {
    let mut raft = settled_leader(3);
    raft.read_index(1).expect("leader");
    let first_round = raft.ready().messages;
    raft.read_index(2).expect("leader");
    let second_round = raft.ready().messages;
    assert!(second_round.iter().all(|m| read_seq(m) == 2));
    raft.handle_response(2, &first_round[0].request, ok_reply(1));
    assert_eq!(
        reads(&raft.ready()),
        vec![(1, 1)],
        "read 2 came after that round"
    );
    raft.handle_response(3, &second_round[1].request, ok_reply(1));
    assert_eq!(reads(&raft.ready()), vec![(2, 1)]);
}

/// Reference: thesis §6.4 — concurrent reads share a round: 200 reads that
/// arrive together cost one heartbeat per follower.
#[test]
fn two_hundred_concurrent_reads_share_one_heartbeat_round() {
    let mut raft = settled_leader(5);
    for id in 0..200 {
        raft.read_index(id).expect("leader");
    }
    let round = raft.ready().messages;
    assert_eq!(round.len(), 4, "one AppendEntries per follower");
    for out in &round[..2] {
        raft.handle_response(out.to, &out.request, ok_reply(1));
    }
    let confirmed = reads(&raft.ready());
    assert_eq!(confirmed.len(), 200);
    assert!(confirmed.iter().all(|&(_, index)| index == 1));
    assert!(
        raft.ready().messages.is_empty(),
        "no second round was needed"
    );
}

/// Reference: thesis §6.4, §8 — a new leader whose commit index may lag (it
/// holds an entry of an earlier term it does not know committed) admits reads
/// only once an entry of its own term commits; the read index then covers it.
#[test]
fn a_new_leader_serves_reads_only_after_committing_an_entry_of_its_term() {
    let mut raft = server_at(1, 3, 2, &[1, 2]);
    let ready = elect(&mut raft);
    assert_eq!(
        raft.commit_index, 0,
        "entries of earlier terms are not known committed"
    );
    raft.read_index(9).expect("leader");
    assert!(reads(&raft.ready()).is_empty());
    // The no-op (index 3) commits: the read is admitted at commit index 3.
    raft.handle_response(2, &ready.messages[0].request, ok_reply(3));
    assert_eq!(raft.commit_index, 3);
    let round = raft.ready();
    assert!(reads(&round).is_empty(), "admitted, not yet confirmed");
    let to_2 = round.messages.iter().find(|m| m.to == 2).expect("a round");
    raft.handle_response(2, &to_2.request, ok_reply(3));
    assert_eq!(reads(&raft.ready()), vec![(9, 3)]);
}

/// Reference: thesis §6.4 — a leader that steps down fails the reads it has
/// not confirmed; only the leader takes reads.
#[test]
fn pending_reads_fail_when_the_leader_steps_down() {
    let mut raft = settled_leader(3);
    raft.read_index(4).expect("leader");
    let round = raft.ready().messages;
    let newer = Response::AppendEntries(AppendEntriesReply {
        term: 5,
        success: false,
        conflict_term: None,
        conflict_index: 0,
    });
    raft.handle_response(2, &round[0].request, newer);
    assert_eq!(raft.role, Role::Follower);
    assert!(raft.ready().apply.contains(&ApplyMsg::ReadFailed { id: 4 }));
    assert_eq!(raft.read_index(5), Err(ProposeError::NotLeader));
}

/// Reference: thesis §6.4 — a one-server cluster is its own majority: a read
/// is confirmed at once.
#[test]
fn a_single_server_confirms_a_read_at_once() {
    let mut raft = server_at(1, 1, 0, &[]);
    for _ in 0..30 {
        raft.tick();
    }
    assert_eq!(raft.role, Role::Leader);
    let ready = raft.ready();
    persisted(&mut raft, &ready);
    raft.ready();
    raft.read_index(1).expect("leader");
    assert_eq!(reads(&raft.ready()), vec![(1, 1)]);
}
