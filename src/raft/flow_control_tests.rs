//! Flow control and heartbeats, asserting the core's exact output: one probe
//! in flight, a bounded window while streaming, heartbeats anchored at the
//! point known to match, and a follower that lost its log started over.

use super::core::{Config, InitialState, Raft, Role};
use super::messages::*;
use super::progress::ReplicationState;
use super::ready::{Outbound, Ready};

const HEARTBEAT: u32 = 3;

/// Server 1 of 3, leader of term 1 (pre-vote and check-quorum off, to keep
/// the exchanges short), with a window of 2 messages; its first heartbeat
/// round sent and not answered yet.
fn leader() -> Raft {
    let mut config = Config::new(1, vec![1, 2, 3]);
    config.pre_vote = false;
    config.check_quorum = false;
    config.election_ticks = 10;
    config.heartbeat_ticks = HEARTBEAT;
    config.max_inflight_messages = 2;
    let mut raft = Raft::new(config, InitialState::default());
    while raft.role != Role::Candidate {
        raft.tick();
    }
    for out in raft.ready().messages {
        let granted = RequestVoteReply {
            term: 1,
            vote_granted: true,
        };
        raft.handle_response(out.to, &out.request, Response::RequestVote(granted));
    }
    assert_eq!(raft.role, Role::Leader);
    raft
}

/// The requests in `ready` to `to`.
fn to(ready: &Ready, to: NodeId) -> Vec<Request> {
    ready
        .messages
        .iter()
        .filter(|m| m.to == to)
        .map(|m| m.request.clone())
        .collect()
}

fn heartbeat_round(raft: &mut Raft) -> Ready {
    for _ in 0..HEARTBEAT {
        raft.tick();
    }
    raft.ready()
}

fn append_reply(success: bool, conflict_index: Index) -> Response {
    Response::AppendEntries(AppendEntriesReply {
        term: 1,
        success,
        conflict_term: None,
        conflict_index,
    })
}

fn propose(raft: &mut Raft, command: u8) {
    raft.propose(vec![command]).expect("leader");
}

/// Proposes three entries and answers the probes, so both followers stream
/// and match through index 3.
fn streaming_leader() -> Raft {
    let mut raft = leader();
    let probes = raft.ready();
    for c in 1..=3 {
        propose(&mut raft, c);
    }
    raft.ready();
    for out in &probes.messages {
        raft.handle_response(out.to, &out.request, append_reply(true, 0));
    }
    // The answers to the probes send the three entries; answer those too.
    let ready = raft.ready();
    for out in &ready.messages {
        raft.handle_response(out.to, &out.request, append_reply(true, 0));
    }
    raft.ready();
    assert_eq!(raft.progress[&2].state, ReplicationState::Replicate);
    assert_eq!(raft.progress[&2].match_index, 3);
    raft
}

/// Reference: etcd's probe state — while probing, one AppendEntries with data
/// is in flight; until it is answered, heartbeat rounds send AppendEntries
/// without entries at the point known to match.
#[test]
fn a_probing_follower_gets_one_probe_then_heartbeats_until_it_answers() {
    let mut raft = leader();
    let first = raft.ready();
    let probe = to(&first, 2);
    assert!(matches!(&probe[..], [Request::AppendEntries(a)] if a.prev_log_index == 0));
    assert!(raft.progress[&2].paused);
    propose(&mut raft, 7);
    assert!(
        to(&raft.ready(), 2).is_empty(),
        "the entry waits for the probe's answer"
    );
    let heartbeat = AppendEntriesArgs {
        term: 1,
        leader_id: 1,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 0,
        read_seq: 0,
    };
    assert_eq!(
        heartbeat_round(&mut raft).messages,
        vec![
            Outbound {
                to: 2,
                request: Request::AppendEntries(heartbeat.clone())
            },
            Outbound {
                to: 3,
                request: Request::AppendEntries(heartbeat.clone())
            },
        ]
    );
    // The heartbeat's answer (anchored at 0 = next_index - 1) shows that the
    // follower matches right up to next_index: the leader streams to it.
    let answered = Request::AppendEntries(heartbeat);
    raft.handle_response(2, &answered, append_reply(true, 0));
    assert_eq!(raft.progress[&2].state, ReplicationState::Replicate);
    let again = to(&raft.ready(), 2);
    assert!(
        matches!(&again[..], [Request::AppendEntries(a)] if a.prev_log_index == 0 && a.entries.len() == 1),
        "{again:?}"
    );
}

/// Reference: etcd's `Inflights` — a streaming follower has at most
/// `max_inflight_messages` AppendEntries with entries in flight; an answer
/// frees what it covers.
#[test]
fn a_streaming_follower_has_a_bounded_window() {
    let mut raft = streaming_leader();
    let mut sent = Vec::new();
    for c in 4..=6 {
        propose(&mut raft, c);
        sent.extend(to(&raft.ready(), 2));
    }
    assert_eq!(sent.len(), 2, "a window of 2: {sent:?}");
    assert_eq!(raft.progress[&2].inflight.len(), 2);
    // Answering the first frees one slot: the third entry goes.
    raft.handle_response(2, &sent[0], append_reply(true, 0));
    let third = to(&raft.ready(), 2);
    assert!(
        matches!(&third[..], [Request::AppendEntries(a)] if a.prev_log_index == 5 && a.entries.len() == 1),
        "{third:?}"
    );
}

/// A window whose oldest message goes unanswered for a whole heartbeat
/// interval was lost (or its answers were): the next round probes again from
/// `match_index` instead of waiting for ever.
#[test]
fn a_window_unanswered_for_a_heartbeat_interval_is_sent_again() {
    let mut raft = streaming_leader();
    let mut sent_to_3 = Vec::new();
    for c in 4..=6 {
        propose(&mut raft, c);
        sent_to_3.extend(to(&raft.ready(), 3));
    }
    assert_eq!(raft.progress[&2].inflight.len(), 2);
    // The window is full: the first round is heartbeats anchored at
    // match_index 3, for both followers.
    let round = heartbeat_round(&mut raft);
    for follower in [2, 3] {
        let heartbeat = to(&round, follower);
        assert!(
            matches!(&heartbeat[..], [Request::AppendEntries(a)] if a.prev_log_index == 3 && a.entries.is_empty()),
            "{heartbeat:?}"
        );
    }
    // Follower 3 acknowledges its window, then the entry that waited;
    // follower 2 stays silent.
    while !sent_to_3.is_empty() {
        for request in std::mem::take(&mut sent_to_3) {
            raft.handle_response(3, &request, append_reply(true, 0));
        }
        sent_to_3 = to(&raft.ready(), 3);
    }
    assert_eq!(raft.progress[&3].match_index, 6);
    // A whole interval later, 4 is still the oldest message in flight to 2:
    // the leader probes 2 from 4 with everything it lacks.
    let round = heartbeat_round(&mut raft);
    let probe = to(&round, 2);
    assert!(
        matches!(&probe[..], [Request::AppendEntries(a)] if a.prev_log_index == 3 && a.entries.len() == 3),
        "{probe:?}"
    );
    assert_eq!(raft.progress[&2].state, ReplicationState::Probe);
    let heartbeat = to(&round, 3);
    assert!(
        matches!(&heartbeat[..], [Request::AppendEntries(a)] if a.prev_log_index == 6 && a.entries.is_empty()),
        "follower 3 answered in time: {heartbeat:?}"
    );
}

/// A follower whose disk was wiped rejects a heartbeat at the index it had
/// matched: the leader forgets that match and probes it from its end.
#[test]
fn a_follower_that_lost_its_log_is_replicated_to_from_scratch() {
    let mut raft = streaming_leader();
    let round = heartbeat_round(&mut raft);
    let heartbeat = to(&round, 2);
    assert!(matches!(&heartbeat[..], [Request::AppendEntries(a)] if a.prev_log_index == 3));
    raft.handle_response(2, &heartbeat[0], append_reply(false, 1));
    let progress = &raft.progress[&2];
    assert_eq!(
        (progress.match_index, progress.next_index, progress.state),
        (0, 1, ReplicationState::Probe)
    );
    let probe = to(&raft.ready(), 2);
    assert!(
        matches!(&probe[..], [Request::AppendEntries(a)] if a.prev_log_index == 0 && a.entries.len() == 3),
        "{probe:?}"
    );
    // The commit index stays where it was: it never moves back.
    assert_eq!(raft.commit_index, 3);
}

/// Reordering is no loss: a follower that rejected entries because they
/// overtook the ones before them, and then acknowledged those, keeps its
/// match; the leader only probes again from just past it.
#[test]
fn a_rejection_overtaken_by_an_acknowledgment_keeps_the_match() {
    let mut raft = streaming_leader();
    propose(&mut raft, 4);
    let first = to(&raft.ready(), 2);
    propose(&mut raft, 5);
    let second = to(&raft.ready(), 2);
    assert!(matches!(&second[..], [Request::AppendEntries(a)] if a.prev_log_index == 4));
    // The follower got the second first (its log ends at 3), then the first.
    raft.handle_response(2, &first[0], append_reply(true, 0));
    raft.handle_response(2, &second[0], append_reply(false, 4));
    let progress = &raft.progress[&2];
    assert_eq!(
        (progress.match_index, progress.next_index, progress.state),
        (4, 5, ReplicationState::Probe)
    );
    let probe = to(&raft.ready(), 2);
    assert!(
        matches!(&probe[..], [Request::AppendEntries(a)] if a.prev_log_index == 4 && a.entries.len() == 1),
        "{probe:?}"
    );
}

/// Read rounds (thesis §6.4) come far more often than heartbeat intervals:
/// they never count as an interval, so a window in flight survives any
/// number of them.
#[test]
fn read_rounds_do_not_give_up_a_window() {
    let mut raft = streaming_leader();
    for c in 4..=5 {
        propose(&mut raft, c);
        raft.ready();
    }
    assert_eq!(raft.progress[&2].inflight.len(), 2);
    for read in 1..=5 {
        raft.read_index(read).expect("leader");
        let ready = raft.ready();
        assert!(
            to(&ready, 2)
                .iter()
                .all(|r| matches!(r, Request::AppendEntries(a) if a.entries.is_empty())),
            "read round {read}: heartbeats only"
        );
    }
    let progress = &raft.progress[&2];
    assert_eq!(progress.state, ReplicationState::Replicate);
    assert_eq!(progress.inflight.len(), 2);
}
