//! One test per rule of stable leadership, asserting the core's exact output:
//! pre-vote (thesis §9.6), check-quorum (§6.2), stickiness (§4.2.3) and
//! leadership transfer (§3.10). Both extensions are on, as in the server.

use super::core::{Config, InitialState, Raft, Role};
use super::leadership::TransferError;
use super::messages::*;
use super::ready::{HardState, Outbound, Snapshot};
use super::replication::ProposeError;

const ELECTION: u32 = 10;

fn server(id: NodeId, n: u64) -> Raft {
    server_at(id, n, 0, &[])
}

/// Server `id` of `n`, at `term`, holding entries of `terms`.
fn server_at(id: NodeId, n: u64, term: Term, terms: &[Term]) -> Raft {
    let mut config = Config::new(id, (1..=n).collect());
    config.election_ticks = ELECTION;
    config.heartbeat_ticks = 3;
    assert!(config.pre_vote && config.check_quorum, "on by default");
    let entries = terms
        .iter()
        .map(|&t| Entry::command(t, vec![t as u8]))
        .collect();
    let initial = InitialState {
        hard_state: HardState {
            current_term: term,
            voted_for: None,
        },
        snapshot: Snapshot::default(),
        entries,
    };
    Raft::new(config, initial)
}

fn tick_until(raft: &mut Raft, role: Role) {
    for _ in 0..3 * ELECTION {
        raft.tick();
        if raft.role == role {
            return;
        }
    }
    panic!("not {role} after {} ticks", 3 * ELECTION);
}

fn vote_request(term: Term, candidate_id: NodeId, last: (Index, Term), pre_vote: bool) -> Request {
    Request::RequestVote(RequestVoteArgs {
        term,
        candidate_id,
        last_log_index: last.0,
        last_log_term: last.1,
        pre_vote,
        leadership_transfer: false,
    })
}

fn granted(response: Response) -> (Term, bool) {
    match response {
        Response::RequestVote(r) => (r.term, r.vote_granted),
        other => panic!("expected a vote reply, got {other:?}"),
    }
}

/// Server 1 of `n`, leader of term 1 with one entry of its term, after a
/// pre-vote and a vote it won; its output drained.
fn leader(n: u64) -> Raft {
    let mut raft = server(1, n);
    tick_until(&mut raft, Role::PreCandidate);
    for out in raft.ready().messages {
        let reply = RequestVoteReply {
            term: 1,
            vote_granted: true,
        };
        raft.handle_response(out.to, &out.request, Response::RequestVote(reply));
    }
    assert_eq!(raft.role, Role::Candidate);
    for out in raft.ready().messages {
        let reply = RequestVoteReply {
            term: 1,
            vote_granted: true,
        };
        raft.handle_response(out.to, &out.request, Response::RequestVote(reply));
    }
    assert_eq!(raft.role, Role::Leader);
    // Every follower answers the new leader's first heartbeat (its probe).
    for out in raft.ready().messages {
        let reply = AppendEntriesReply {
            term: 1,
            success: true,
            conflict_term: None,
            conflict_index: 0,
        };
        raft.handle_response(out.to, &out.request, Response::AppendEntries(reply));
    }
    raft.ready();
    raft
}

/// A follower of leader 2 in term `term`, that has just heard from it.
fn follower_of_2(id: NodeId, term: Term) -> Raft {
    let mut raft = server_at(id, 3, term, &[]);
    let heartbeat = Request::AppendEntries(AppendEntriesArgs {
        term,
        leader_id: 2,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![],
        leader_commit: 0,
        read_seq: 0,
    });
    raft.handle_request(2, heartbeat);
    assert_eq!(raft.leader_id, Some(2));
    raft.ready();
    raft
}

/// Reference: thesis §9.6 — on election timeout a server first asks for
/// pre-votes for term + 1, changing neither its term nor its vote, and
/// persisting nothing.
#[test]
fn an_election_timeout_asks_for_pre_votes_without_changing_the_term() {
    let mut raft = server_at(1, 3, 4, &[2, 4]);
    tick_until(&mut raft, Role::PreCandidate);
    assert_eq!((raft.current_term, raft.voted_for), (4, None));
    let ready = raft.ready();
    assert!(ready.persist.is_empty(), "a pre-vote persists nothing");
    let expected = |to| Outbound {
        to,
        request: vote_request(5, 1, (2, 4), true),
    };
    assert_eq!(ready.messages, vec![expected(2), expected(3)]);
}

/// Reference: thesis §9.6 — a majority of pre-votes starts the real election.
#[test]
fn a_majority_of_pre_votes_starts_a_real_election() {
    let mut raft = server_at(1, 3, 4, &[2, 4]);
    tick_until(&mut raft, Role::PreCandidate);
    let out = raft.ready().messages;
    let grant = Response::RequestVote(RequestVoteReply {
        term: 5,
        vote_granted: true,
    });
    raft.handle_response(out[0].to, &out[0].request, grant);
    assert_eq!((raft.role, raft.current_term), (Role::Candidate, 5));
    let ready = raft.ready();
    assert_eq!(
        ready.persist.hard_state,
        Some(HardState {
            current_term: 5,
            voted_for: Some(1)
        })
    );
    assert_eq!(ready.messages[0].request, vote_request(5, 1, (2, 4), false));
}

/// Reference: thesis §9.6 — a voter grants a pre-vote for a newer term to an
/// up-to-date log, and changes nothing: not its term, its vote or its timer.
#[test]
fn a_pre_vote_is_granted_without_changing_the_voter() {
    let mut raft = server_at(2, 3, 4, &[2, 4]);
    for _ in 0..3 {
        raft.tick();
    }
    let elapsed = raft.election_elapsed;
    let reply = raft.handle_request(1, vote_request(5, 1, (2, 4), true));
    assert_eq!(granted(reply), (5, true));
    assert_eq!((raft.current_term, raft.voted_for), (4, None));
    assert_eq!(raft.election_elapsed, elapsed, "the timer is not reset");
    assert!(raft.ready().persist.is_empty());
    // A log behind ours gets no pre-vote.
    let reply = raft.handle_request(3, vote_request(5, 3, (1, 2), true));
    assert_eq!(granted(reply), (4, false));
}

/// Reference: thesis §9.6, etcd-io/etcd#8243 — a pre-vote for a term that is
/// not newer than ours is refused with our term, and the pre-candidate, behind
/// in terms, adopts it instead of being stranded.
#[test]
fn a_pre_candidate_behind_in_terms_learns_the_term_from_a_refusal() {
    let mut voter = server_at(2, 3, 7, &[]);
    let reply = voter.handle_request(1, vote_request(3, 1, (0, 0), true));
    assert_eq!(granted(reply.clone()), (7, false));
    let mut candidate = server_at(1, 3, 2, &[]);
    tick_until(&mut candidate, Role::PreCandidate);
    let out = candidate.ready().messages;
    candidate.handle_response(out[0].to, &out[0].request, reply);
    assert_eq!(
        (candidate.role, candidate.current_term),
        (Role::Follower, 7)
    );
}

/// Reference: etcd-io/etcd#8334 — a pre-candidate forgets its old leader, so
/// it grants its peers' pre-votes and someone can be elected.
#[test]
fn a_pre_candidate_forgets_its_leader_and_grants_pre_votes() {
    let mut raft = follower_of_2(1, 3);
    tick_until(&mut raft, Role::PreCandidate);
    assert_eq!(raft.leader_id, None);
    let reply = raft.handle_request(3, vote_request(4, 3, (0, 0), true));
    assert_eq!(granted(reply), (4, true));
}

/// Reference: thesis §4.2.3 — a follower that heard from its leader within
/// the minimum election timeout ignores pre-votes and votes for newer terms
/// (its term stays), unless they come from a leadership transfer.
#[test]
fn a_follower_that_hears_its_leader_ignores_newer_vote_requests() {
    let mut raft = follower_of_2(1, 3);
    let reply = raft.handle_request(3, vote_request(4, 3, (0, 0), true));
    assert_eq!(granted(reply), (3, false));
    let reply = raft.handle_request(3, vote_request(9, 3, (0, 0), false));
    assert_eq!(granted(reply), (3, false));
    assert_eq!((raft.current_term, raft.voted_for), (3, None));
    let transfer = Request::RequestVote(RequestVoteArgs {
        term: 4,
        candidate_id: 3,
        last_log_index: 0,
        last_log_term: 0,
        pre_vote: false,
        leadership_transfer: true,
    });
    assert_eq!(granted(raft.handle_request(3, transfer)), (4, true));
    // Once the leader has been silent for the minimum timeout, votes count again.
    let mut quiet = follower_of_2(1, 3);
    for _ in 0..ELECTION {
        quiet.election_elapsed += 1;
    }
    let reply = quiet.handle_request(3, vote_request(4, 3, (0, 0), false));
    assert_eq!(granted(reply), (4, true));
}

/// Reference: thesis §6.2 — a leader checks every election timeout that it
/// heard from a majority since the last check, and steps down if not; one
/// that hears from a majority stays. (The first check counts the votes that
/// elected it, so a leader cut off at once steps down within two timeouts.)
#[test]
fn a_leader_without_a_quorum_steps_down_after_an_election_timeout() {
    let mut raft = leader(3);
    for _ in 0..2 * ELECTION - 1 {
        raft.tick();
    }
    assert_eq!(raft.role, Role::Leader);
    raft.tick();
    assert_eq!(
        (raft.role, raft.leader_id, raft.current_term),
        (Role::Follower, None, 1)
    );

    let mut raft = leader(3);
    for _ in 0..3 * ELECTION {
        for out in raft.ready().messages {
            if out.to == 2 {
                if let Request::AppendEntries(args) = &out.request {
                    let ok = Response::AppendEntries(AppendEntriesReply {
                        term: 1,
                        success: true,
                        conflict_term: None,
                        conflict_index: 0,
                    });
                    raft.handle_response(2, &Request::AppendEntries(args.clone()), ok);
                }
            }
        }
        raft.tick();
    }
    assert_eq!(raft.role, Role::Leader, "server 2 answers: a majority");
}

/// Reference: etcd `TestFreeStuckCandidateWithCheckQuorum` — a server stuck
/// at a higher term forces the leader down through its reply.
#[test]
fn a_reply_with_a_higher_term_deposes_the_leader() {
    let mut raft = leader(3);
    for _ in 0..3 {
        raft.tick(); // the next heartbeat
    }
    let out = raft.ready().messages;
    let stuck = Response::AppendEntries(AppendEntriesReply {
        term: 9,
        success: false,
        conflict_term: None,
        conflict_index: 1,
    });
    raft.handle_response(out[0].to, &out[0].request, stuck);
    assert_eq!((raft.role, raft.current_term), (Role::Follower, 9));
}

/// Reference: thesis §3.10 — a transfer to itself or to an unknown server is
/// refused; only the leader can transfer.
#[test]
fn a_transfer_to_itself_or_to_a_stranger_is_refused() {
    let mut raft = leader(3);
    assert_eq!(raft.transfer_leadership(1), Err(TransferError::ToSelf));
    assert_eq!(
        raft.transfer_leadership(7),
        Err(TransferError::UnknownServer(7))
    );
    let mut follower = server(2, 3);
    assert_eq!(
        follower.transfer_leadership(3),
        Err(TransferError::NotLeader)
    );
}

fn accept_append(raft: &mut Raft, from: NodeId) {
    for out in raft.ready().messages {
        if out.to != from {
            continue;
        }
        if let Request::AppendEntries(args) = &out.request {
            let ok = Response::AppendEntries(AppendEntriesReply {
                term: raft.current_term,
                success: true,
                conflict_term: None,
                conflict_index: 0,
            });
            raft.handle_response(from, &Request::AppendEntries(args.clone()), ok);
        }
    }
}

fn timeout_now(term: Term) -> Request {
    Request::TimeoutNow(TimeoutNowArgs { term, leader_id: 1 })
}

/// Reference: thesis §3.10 — the leader stops accepting proposals, brings the
/// target up to date, and only then sends it TimeoutNow.
#[test]
fn a_transfer_catches_the_target_up_then_sends_timeout_now() {
    let mut raft = leader(3);
    raft.propose(b"x".to_vec()).expect("leader");
    raft.transfer_leadership(3).expect("a known follower");
    assert_eq!(
        raft.propose(b"y".to_vec()),
        Err(ProposeError::Transferring(3))
    );
    // Server 3 has nothing yet: the leader sends it the log, not TimeoutNow.
    let ready = raft.ready();
    assert!(ready
        .messages
        .iter()
        .all(|m| !matches!(m.request, Request::TimeoutNow(_))));
    let to_3: Vec<&Outbound> = ready.messages.iter().filter(|m| m.to == 3).collect();
    let Request::AppendEntries(args) = &to_3[0].request else {
        panic!("expected AppendEntries to 3, got {:?}", to_3[0]);
    };
    let ok = Response::AppendEntries(AppendEntriesReply {
        term: 1,
        success: true,
        conflict_term: None,
        conflict_index: 0,
    });
    let args = args.clone();
    raft.handle_response(3, &Request::AppendEntries(args), ok);
    let ready = raft.ready();
    assert_eq!(
        ready.messages,
        vec![Outbound {
            to: 3,
            request: timeout_now(1)
        }]
    );
}

/// Reference: thesis §3.10 — a transfer that produces no new leader within an
/// election timeout is aborted, and proposals resume.
#[test]
fn a_transfer_that_cannot_finish_aborts_and_proposals_resume() {
    let mut raft = leader(3);
    raft.transfer_leadership(2).expect("a known follower");
    for _ in 0..ELECTION - 1 {
        raft.tick();
        accept_append(&mut raft, 3); // keep a quorum: only the transfer should end
    }
    assert!(raft.propose(b"z".to_vec()).is_err());
    raft.tick();
    assert_eq!(raft.role, Role::Leader);
    assert_eq!(raft.status().transferring_to, None);
    assert!(raft.propose(b"z".to_vec()).is_ok());
}

/// Reference: thesis §3.10 — on TimeoutNow the target campaigns at once,
/// without a pre-vote, flagged as a transfer.
#[test]
fn timeout_now_starts_an_election_at_once_flagged_as_a_transfer() {
    let mut raft = follower_of_2(3, 1);
    let reply = raft.handle_request(
        2,
        Request::TimeoutNow(TimeoutNowArgs {
            term: 1,
            leader_id: 2,
        }),
    );
    assert_eq!(reply, Response::TimeoutNow(TimeoutNowReply { term: 2 }));
    assert_eq!(raft.role, Role::Candidate);
    let ready = raft.ready();
    let expected = Request::RequestVote(RequestVoteArgs {
        term: 2,
        candidate_id: 3,
        last_log_index: 0,
        last_log_term: 0,
        pre_vote: false,
        leadership_transfer: true,
    });
    assert_eq!(ready.messages[0].request, expected);
    // A TimeoutNow from an older term is ignored.
    let mut raft = follower_of_2(3, 5);
    raft.handle_request(2, timeout_now(4));
    assert_eq!((raft.role, raft.current_term), (Role::Follower, 5));
}
