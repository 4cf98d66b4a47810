//! Leader election: §5.2, with the election restriction of §5.4.1 and the
//! pre-vote of thesis §9.6.
//!
//! A follower that hears nothing for an election timeout becomes a candidate,
//! votes for itself and asks everyone else for votes. A server grants at most one
//! vote per term, and only to a candidate whose log is at least as up-to-date as
//! its own, so any leader already holds every committed entry (§5.4.1).
//!
//! With pre-vote, the follower first becomes a pre-candidate and asks whether it
//! *could* win the next term, changing nobody's term or vote; only a majority of
//! yeses lets it start the real election. A server cut off from the majority
//! therefore never raises the term, and cannot depose the leader when it returns.

use super::bugs::Bug;
use super::core::{Raft, Role};
use super::messages::{Entry, NodeId, Request, RequestVoteArgs, RequestVoteReply};
use super::progress::Progress;
use super::verdict::Verdict;
use crate::{debug, info};

impl Raft {
    /// §5.2: "If election timeout elapses without receiving AppendEntries RPC from
    /// current leader or granting vote to candidate: convert to candidate."
    /// Thesis §4.2.1, §4.2.3: a server that may not campaign (a learner, a
    /// removed server, one waiting to be added; see `may_campaign`) never does.
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            if !self.may_campaign() {
                // Forget a leader not heard from, as a pre-candidate does, so
                // stickiness does not keep this server from voting.
                self.leader_id = None;
                self.reset_election_timer();
                return;
            }
            if self.config.pre_vote {
                self.become_pre_candidate();
            } else {
                self.become_candidate(false);
            }
        }
    }

    /// Thesis §9.6: before a real election, ask the others whether they would
    /// vote for this server in the next term. Nothing is changed or persisted.
    pub(super) fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        // Forget the old leader: a pre-candidate that still trusted it would
        // refuse its peers' pre-votes, and nobody would ever be elected
        // (etcd-io/etcd#8334).
        self.leader_id = None;
        self.progress.clear();
        self.votes_granted.clear();
        self.votes_granted.insert(self.id);
        self.reset_election_timer();
        info!(
            self.id,
            self.current_term,
            "election timeout: asking for pre-votes for term {} (last log {} at term {})",
            self.current_term + 1,
            self.log.last_index(),
            self.log.last_term()
        );
        if self.has_vote_quorum() {
            self.become_candidate(false);
            return;
        }
        self.broadcast_vote_request(true, false);
    }

    /// Thesis §9.6, the voter's side of a pre-vote (and the answer to a vote
    /// request ignored for stickiness, §4.2.3): grant if the proposed term is
    /// newer than ours and the candidate's log is up to date, without changing
    /// term, vote or election timer. A refusal carries our term, so a server
    /// behind in terms learns it (dropping it would strand that server,
    /// etcd-io/etcd#8243).
    pub(super) fn handle_pre_vote_or_ignore(&mut self, args: &RequestVoteArgs) -> RequestVoteReply {
        let reject = RequestVoteReply {
            term: self.current_term,
            vote_granted: false,
        };
        if self.ignores_vote_request(args) {
            let leader = match self.role {
                Role::Leader => Some(self.id),
                _ => self.leader_id,
            };
            self.verdict = Verdict::LeaderAlive { leader };
            debug!(
                self.id,
                self.current_term,
                "ignored {}vote request from {} for term {}: leader {:?} is alive",
                if args.pre_vote { "pre-" } else { "" },
                args.candidate_id,
                args.term,
                self.leader_id
            );
            return reject;
        }
        let up_to_date = self
            .log
            .is_up_to_date(args.last_log_index, args.last_log_term)
            || self.has_bug(Bug::NoElectionRestriction);
        if args.term <= self.current_term {
            self.verdict = Verdict::PreVoteTermNotNewer;
            return reject;
        }
        if !up_to_date {
            self.verdict = self.log_more_up_to_date();
            return reject;
        }
        self.verdict = Verdict::VoteGranted;
        debug!(
            self.id,
            self.current_term, "granted a pre-vote to {} for term {}", args.candidate_id, args.term
        );
        RequestVoteReply {
            term: args.term,
            vote_granted: true,
        }
    }

    /// Counts a pre-vote; a majority lets this pre-candidate start the real
    /// election (§9.6).
    pub(super) fn handle_pre_vote_reply(
        &mut self,
        from: NodeId,
        args: &RequestVoteArgs,
        reply: &RequestVoteReply,
    ) {
        let current = self.role == Role::PreCandidate && args.term == self.current_term + 1;
        if !current || !reply.vote_granted {
            return;
        }
        self.votes_granted.insert(from);
        if self.has_vote_quorum() {
            self.become_candidate(false);
        }
    }

    /// §5.2: increment currentTerm, vote for self, reset the election timer, send
    /// RequestVote to all other servers. `leadership_transfer` marks an election
    /// the old leader asked for (§3.10).
    pub(super) fn become_candidate(&mut self, leadership_transfer: bool) {
        self.current_term += 1;
        self.voted_for = Some(self.id);
        self.hard_state_changed = true;
        self.role = Role::Candidate;
        self.leader_id = None;
        self.progress.clear();
        self.votes_granted.clear();
        self.votes_granted.insert(self.id);
        self.reset_election_timer();
        let why = if leadership_transfer {
            "leadership transfer"
        } else if self.config.pre_vote {
            "won the pre-vote"
        } else {
            "election timeout"
        };
        info!(
            self.id,
            self.current_term,
            "{why}: became candidate (last log {} at term {})",
            self.log.last_index(),
            self.log.last_term()
        );
        if self.has_vote_quorum() {
            self.become_leader();
            return;
        }
        self.broadcast_vote_request(false, leadership_transfer);
    }

    /// Sends every other voter a RequestVote for this term (or a pre-vote for
    /// the next one). Learners are not asked: their votes would not count.
    fn broadcast_vote_request(&mut self, pre_vote: bool, leadership_transfer: bool) {
        let args = RequestVoteArgs {
            term: self.current_term + u64::from(pre_vote),
            candidate_id: self.id,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            pre_vote,
            leadership_transfer,
        };
        let me = self.id;
        let voters: Vec<NodeId> = self.configuration.voters.keys().copied().collect();
        for peer in voters.into_iter().filter(|&p| p != me) {
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
        self.check_quorum_elapsed = 0;
        let last = self.log.last_index();
        self.progress = self
            .others()
            .into_iter()
            .map(|p| (p, Progress::new(last)))
            .collect();
        if self.config.noop_on_election {
            // §8: commit an entry of this term at once, which settles which
            // earlier entries are committed (and lets reads be served, §6.4).
            // The first leader of a new cluster writes its bootstrap
            // configuration instead, so the log holds one from then on.
            let entry = if self.configuration_index == 0 && !self.configuration.is_empty() {
                Entry::configuration(self.current_term, &self.configuration)
            } else {
                Entry::noop(self.current_term)
            };
            let index = self.log.append(entry);
            self.mark_unstable(index);
            if self.configuration_index == 0 {
                self.adopt_configuration(index, self.configuration.clone());
            }
        }
        let voters: Vec<String> = self.votes_granted.iter().map(|v| v.to_string()).collect();
        info!(
            self.id,
            self.current_term,
            "became leader (votes from {})",
            voters.join(",")
        );
        self.broadcast_heartbeat();
    }

    /// Figure 2, RequestVote receiver implementation.
    pub(super) fn handle_request_vote(&mut self, args: RequestVoteArgs) -> RequestVoteReply {
        let reject = RequestVoteReply {
            term: self.current_term,
            vote_granted: false,
        };
        // 1. Reply false if term < currentTerm (§5.1).
        if args.term < self.current_term {
            self.verdict = Verdict::StaleTerm {
                current_term: self.current_term,
            };
            return reject;
        }
        // 2. If votedFor is null or candidateId, and candidate's log is at least as
        //    up-to-date as receiver's log, grant vote (§5.2, §5.4.1).
        let can_vote = self.voted_for.is_none_or(|v| v == args.candidate_id);
        let up_to_date = self
            .log
            .is_up_to_date(args.last_log_index, args.last_log_term)
            || self.has_bug(Bug::NoElectionRestriction);
        if let (false, Some(candidate)) = (can_vote, self.voted_for) {
            self.verdict = Verdict::AlreadyVoted { candidate };
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
            self.verdict = self.log_more_up_to_date();
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
        self.verdict = Verdict::VoteGranted;
        debug!(
            self.id,
            self.current_term, "voted for {}", args.candidate_id
        );
        RequestVoteReply {
            term: self.current_term,
            vote_granted: true,
        }
    }

    /// §5.4.1's refusal: this server's log is more up to date.
    fn log_more_up_to_date(&self) -> Verdict {
        Verdict::LogMoreUpToDate {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        }
    }

    /// Counts a vote; a majority makes this candidate leader (§5.2).
    pub(super) fn handle_request_vote_reply(&mut self, from: NodeId, reply: RequestVoteReply) {
        if self.role != Role::Candidate || !reply.vote_granted {
            return;
        }
        self.votes_granted.insert(from);
        if self.has_vote_quorum() {
            self.become_leader();
        }
    }
}
