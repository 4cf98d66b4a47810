//! The queue's rules, by their exact outputs.

use super::*;
use crate::raft::messages::{
    AppendEntriesArgs, AppendEntriesReply, Entry, InstallSnapshotArgs, RequestVoteArgs,
    RequestVoteReply,
};
use crate::raft::ready::Snapshot;
use crate::raft::Configuration;
use crate::storage::memory::MemoryStorage;

fn append(prev: u64, n: usize, commit: u64) -> Request {
    append_in_round(prev, n, commit, 0)
}

fn append_in_round(prev: u64, n: usize, commit: u64, read_seq: u64) -> Request {
    Request::AppendEntries(AppendEntriesArgs {
        term: 2,
        leader_id: 1,
        prev_log_index: prev,
        prev_log_term: 2,
        entries: vec![Entry::command(2, vec![7]); n],
        leader_commit: commit,
        read_seq,
    })
}

fn vote_request(term: u64) -> Request {
    Request::RequestVote(RequestVoteArgs {
        term,
        candidate_id: 1,
        last_log_index: 0,
        last_log_term: 0,
        pre_vote: false,
        leadership_transfer: false,
    })
}

fn append_reply(success: bool) -> Response {
    Response::AppendEntries(AppendEntriesReply {
        term: 2,
        success,
        conflict_term: None,
        conflict_index: 0,
    })
}

/// What `merge(a, b)` leaves in `a`, if they merged.
fn merged(mut a: Request, b: &Request) -> Option<Request> {
    merge(&mut a, b, true).then_some(a)
}

/// A queue holding `requests`, whose peer accepts AppendEntries or not.
fn queue(accepting: bool, requests: &[Request]) -> PeerQueue {
    let mut queue = PeerQueue::default();
    queue.answered(Some(accepting));
    for request in requests {
        assert_eq!(queue.push(request.clone()), None);
    }
    queue
}

/// Everything the queue hands out, in order.
fn drain(mut queue: PeerQueue) -> Vec<Request> {
    std::iter::from_fn(|| queue.pop()).collect()
}

#[test]
fn only_contiguous_appends_merge() {
    assert_eq!(
        merged(append(10, 2, 5), &append(12, 3, 9)),
        Some(append(10, 5, 9))
    );
    assert_eq!(merged(append(10, 2, 5), &append(11, 3, 9)), None, "overlap");
    assert_eq!(merged(append(10, 2, 5), &append(14, 3, 9)), None, "gap");
}

/// A heartbeat (a read round) queued next to entries rides on them, on
/// either side: the call carries the entries, the later commit index and
/// the later read round.
#[test]
fn a_heartbeat_rides_on_the_entries_next_to_it() {
    assert_eq!(
        merged(append_in_round(12, 3, 9, 4), &append_in_round(8, 0, 11, 5)),
        Some(append_in_round(12, 3, 11, 5)),
        "heartbeat after entries"
    );
    assert_eq!(
        merged(append_in_round(8, 0, 11, 5), &append_in_round(12, 3, 9, 4)),
        Some(append_in_round(12, 3, 11, 5)),
        "heartbeat before entries"
    );
    assert_eq!(
        merged(append_in_round(8, 0, 9, 5), &append_in_round(8, 0, 11, 6)),
        Some(append_in_round(8, 0, 11, 6)),
        "two heartbeats with one anchor"
    );
    assert_eq!(
        merged(append_in_round(8, 0, 9, 5), &append_in_round(10, 0, 11, 6)),
        None,
        "two anchors: the later may be a probe"
    );
    let mut other_term = append_in_round(8, 0, 11, 5);
    if let Request::AppendEntries(a) = &mut other_term {
        a.term = 3;
    }
    assert_eq!(
        merged(append_in_round(12, 3, 9, 4), &other_term),
        None,
        "another term"
    );
}

/// A run of AppendEntries leaves the queue as one request; anything else
/// ends the run and goes as it is.
#[test]
fn the_front_of_the_queue_carries_the_run_behind_it() {
    let queued = [
        append(10, 2, 5),
        append(12, 3, 9),
        append(15, 1, 9),
        vote_request(3),
        append(16, 1, 10),
    ];
    assert_eq!(
        drain(queue(true, &queued)),
        [append(10, 6, 9), vote_request(3), append(16, 1, 10)]
    );
}

/// Once the peer rejects an AppendEntries, heartbeats go alone: the
/// rejection of one anchored at an acknowledged entry is how the leader
/// learns that the follower lost its log. An accepted one lets them ride
/// again; an answer to anything else changes nothing.
#[test]
fn heartbeats_go_alone_to_a_peer_that_rejects() {
    let queued = [append_in_round(12, 3, 9, 4), append_in_round(8, 0, 11, 5)];
    let alone = queued.to_vec();
    let riding = vec![append_in_round(12, 3, 11, 5)];
    assert_eq!(drain(queue(false, &queued)), alone, "rejected");
    assert_eq!(drain(queue(true, &queued)), riding, "accepted");

    let mut peer = PeerQueue::default();
    assert_eq!(
        drain_into(&mut peer, &queued),
        alone,
        "nothing answered yet"
    );
    peer.answered(accepted_append(&append_reply(true)));
    assert_eq!(drain_into(&mut peer, &queued), riding);
    let vote = Response::RequestVote(RequestVoteReply {
        term: 2,
        vote_granted: false,
    });
    peer.answered(accepted_append(&vote));
    assert_eq!(
        drain_into(&mut peer, &queued),
        riding,
        "a vote says nothing"
    );
    peer.answered(accepted_append(&append_reply(false)));
    assert_eq!(drain_into(&mut peer, &queued), alone);

    let mut contiguous = queue(false, &[append(10, 2, 5), append(12, 3, 9)]);
    assert_eq!(
        contiguous.pop(),
        Some(append(10, 5, 9)),
        "contiguous entries still merge"
    );
}

/// Queues `requests` on `queue` and takes everything out again.
fn drain_into(queue: &mut PeerQueue, requests: &[Request]) -> Vec<Request> {
    for request in requests {
        queue.push(request.clone());
    }
    std::iter::from_fn(|| queue.pop()).collect()
}

/// Past `MAX_QUEUED`, each new request pushes out the oldest.
#[test]
fn a_full_queue_drops_its_oldest_request() {
    let mut queue = PeerQueue::default();
    for term in 1..=MAX_QUEUED as u64 {
        assert_eq!(queue.push(vote_request(term)), None);
    }
    assert_eq!(queue.len(), MAX_QUEUED);
    assert_eq!(queue.push(vote_request(1000)), Some(vote_request(1)));
    assert_eq!(queue.push(vote_request(1001)), Some(vote_request(2)));
    assert_eq!(queue.len(), MAX_QUEUED);
    assert_eq!(queue.pop(), Some(vote_request(3)));
    queue.clear();
    assert!(queue.is_empty());
    assert_eq!(queue.pop(), None);
}

fn piece(snapshot: &Snapshot, offset: u64, done: bool) -> Request {
    Request::InstallSnapshot(InstallSnapshotArgs {
        term: 2,
        leader_id: 1,
        last_included_index: snapshot.last_included_index,
        last_included_term: snapshot.last_included_term,
        size: snapshot.size,
        offset,
        configuration: snapshot.configuration.clone(),
        configuration_index: snapshot.configuration_index,
        data: Vec::new(),
        done,
    })
}

fn data(request: &Request) -> &[u8] {
    match request {
        Request::InstallSnapshot(args) => &args.data,
        _ => &[],
    }
}

/// Reference: Figure 13 (`offset`, `data`, `done`) — a piece's bytes are
/// read from storage when it is sent: `chunk_bytes` of them, or the rest for
/// the last; a snapshot no longer stored loses the piece.
#[test]
fn a_snapshot_piece_gets_its_bytes_from_storage() {
    let storage = MemoryStorage::new();
    let point = Snapshot {
        last_included_index: 5,
        last_included_term: 2,
        size: 0,
        configuration: Configuration::bootstrap(&[1, 2], &Default::default()),
        configuration_index: 0,
    };
    let snapshot = storage
        .write_snapshot(point, &mut |w| w.write_all(b"0123456789"))
        .unwrap();
    let mut first = piece(&snapshot, 0, false);
    assert!(fill_snapshot_piece(&mut first, 4, &storage));
    assert_eq!(data(&first), b"0123");
    let mut last = piece(&snapshot, 8, true);
    assert!(fill_snapshot_piece(&mut last, 4, &storage));
    assert_eq!(data(&last), b"89");

    let gone = Snapshot {
        last_included_index: 3,
        ..snapshot
    };
    assert!(!fill_snapshot_piece(
        &mut piece(&gone, 0, false),
        4,
        &storage
    ));
    let mut other = append(1, 1, 1);
    assert!(fill_snapshot_piece(&mut other, 4, &storage));
    assert_eq!(other, append(1, 1, 1), "not a piece: left alone");
}
