//! Leader election: §5.2, with the election restriction of §5.4.1.
//!
//! A follower that hears nothing for an election timeout becomes a candidate,
//! votes for itself and asks everyone else for votes. A server grants at most one
//! vote per term, and only to a candidate whose log is at least as up-to-date as
//! its own, so any leader already holds every committed entry (§5.4.1).

use super::bugs::Bug;
use super::core::{Raft, Role};
use super::messages::{NodeId, Request, RequestVoteArgs, RequestVoteReply};
use super::progress::Progress;
use crate::{debug, info};

impl Raft {
    /// §5.2: "If election timeout elapses without receiving AppendEntries RPC from
    /// current leader or granting vote to candidate: convert to candidate."
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.become_candidate();
        }
    }

    /// §5.2: increment currentTerm, vote for self, reset the election timer, send
    /// RequestVote to all other servers.
    pub(super) fn become_candidate(&mut self) {
        self.current_term += 1;
        self.voted_for = Some(self.id);
        self.hard_state_changed = true;
        self.role = Role::Candidate;
        self.leader_id = None;
        self.progress.clear();
        self.votes_granted.clear();
        self.votes_granted.insert(self.id);
        self.reset_election_timer();
        info!(
            self.id,
            self.current_term,
            "election timeout: became candidate (last log {} at term {})",
            self.log.last_index(),
            self.log.last_term()
        );
        if self.votes_granted.len() >= self.quorum() {
            self.become_leader();
            return;
        }
        let args = RequestVoteArgs {
            term: self.current_term,
            candidate_id: self.id,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        for peer in self.peers.clone() {
            self.send(peer, Request::RequestVote(args.clone()));
        }
    }

    /// §5.2: a candidate that wins votes from a majority becomes leader and at once
    /// sends heartbeats to establish its authority. Figure 2: nextIndex starts just
    /// past the leader's last entry, matchIndex at 0.
    pub(super) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader_id = Some(self.id);
        self.heartbeat_elapsed = 0;
        let last = self.log.last_index();
        self.progress = self
            .peers
            .iter()
            .map(|&p| (p, Progress::new(last)))
            .collect();
        let voters: Vec<String> = self.votes_granted.iter().map(|v| v.to_string()).collect();
        info!(
            self.id,
            self.current_term,
            "became leader (votes from {})",
            voters.join(",")
        );
        self.broadcast_append();
    }

    /// Figure 2, RequestVote receiver implementation.
    pub(super) fn handle_request_vote(&mut self, args: RequestVoteArgs) -> RequestVoteReply {
        let reject = RequestVoteReply {
            term: self.current_term,
            vote_granted: false,
        };
        // 1. Reply false if term < currentTerm (§5.1).
        if args.term < self.current_term {
            return reject;
        }
        // 2. If votedFor is null or candidateId, and candidate's log is at least as
        //    up-to-date as receiver's log, grant vote (§5.2, §5.4.1).
        let can_vote = self.voted_for.is_none_or(|v| v == args.candidate_id);
        let up_to_date = self
            .log
            .is_up_to_date(args.last_log_index, args.last_log_term)
            || self.has_bug(Bug::NoElectionRestriction);
        if !can_vote {
            debug!(
                self.id,
                self.current_term,
                "rejected vote for {}: already voted for {:?}",
                args.candidate_id,
                self.voted_for
            );
            return reject;
        }
        if !up_to_date {
            debug!(
                self.id,
                self.current_term,
                "rejected vote for {}: its log ({} at term {}) is behind ours ({} at term {})",
                args.candidate_id,
                args.last_log_index,
                args.last_log_term,
                self.log.last_index(),
                self.log.last_term()
            );
            return reject;
        }
        if self.voted_for.is_none() {
            self.voted_for = Some(args.candidate_id);
            self.hard_state_changed = true;
        }
        // §5.2: granting a vote resets the election timer.
        self.reset_election_timer();
        debug!(
            self.id,
            self.current_term, "voted for {}", args.candidate_id
        );
        RequestVoteReply {
            term: self.current_term,
            vote_granted: true,
        }
    }

    /// Counts a vote; a majority makes this candidate leader (§5.2).
    pub(super) fn handle_request_vote_reply(&mut self, from: NodeId, reply: RequestVoteReply) {
        if self.role != Role::Candidate || !reply.vote_granted {
            return;
        }
        self.votes_granted.insert(from);
        if self.votes_granted.len() >= self.quorum() {
            self.become_leader();
        }
    }
}
