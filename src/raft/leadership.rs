//! Stable leadership: check-quorum (thesis §6.2), stickiness (§4.2.3) and
//! leadership transfer (§3.10).
//!
//! Without these, a server cut off for a while comes back with a higher term
//! and deposes a healthy leader, and a leader cut off from every follower keeps
//! accepting requests it can never commit. Pre-vote, the third remedy, lives
//! with elections (`election.rs`).

use std::fmt;

use super::core::{Raft, Role};
use super::messages::{NodeId, Request, RequestVoteArgs, TimeoutNowArgs, TimeoutNowReply};
use super::verdict::Verdict;
use crate::{debug, info};

/// A leadership transfer in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The server that should become leader.
    pub target: NodeId,
    /// Ticks since the transfer began.
    pub elapsed: u32,
}

/// Why a leadership transfer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can hand over leadership.
    NotLeader,
    /// The target is this server, already the leader.
    ToSelf,
    /// No voter in the cluster has this id (learners cannot lead).
    UnknownServer(NodeId),
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader => write!(f, "not the leader"),
            TransferError::ToSelf => write!(f, "this server is already the leader"),
            TransferError::UnknownServer(id) => write!(f, "no voter with id {id}"),
        }
    }
}

impl Raft {
    /// Thesis §6.2: "a leader steps down if an election timeout elapses without
    /// a successful round of heartbeats to a majority of its cluster". Clients of
    /// a leader cut off in a minority then learn at once that it is not leader,
    /// instead of waiting for requests that can never commit.
    pub(super) fn tick_check_quorum(&mut self) {
        if !self.config.check_quorum {
            return;
        }
        self.check_quorum_elapsed += 1;
        if self.check_quorum_elapsed < self.config.election_ticks {
            return;
        }
        self.check_quorum_elapsed = 0;
        // Thesis §4.1: the voters of the latest configuration count; a leader
        // being removed does not count itself.
        let heard = |id| id == self.id || self.progress.get(&id).is_some_and(|p| p.recent_active);
        let quorum = self.configuration.has_quorum(heard);
        let heard = self
            .configuration
            .voters
            .keys()
            .filter(|&&id| heard(id))
            .count();
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        if !quorum {
            info!(
                self.id,
                self.current_term,
                "stepped down: heard from {heard} of {} voters within an election timeout (check-quorum, §6.2)",
                self.configuration.voters.len()
            );
            let term = self.current_term;
            self.become_follower(term, None);
        }
    }

    /// Thesis §4.2.3 (stickiness): while a server believes a current leader
    /// exists (a follower that heard from it within the minimum election
    /// timeout, or the leader itself), it ignores requests to vote in a newer
    /// term, unless they come from a leadership transfer. A server that was cut
    /// off, or was removed, cannot depose a leader that a majority still hears.
    /// Only with check-quorum: it is what makes a leader that lost its majority
    /// step down, so stickiness never keeps a dead leader in place.
    pub(super) fn ignores_vote_request(&self, args: &RequestVoteArgs) -> bool {
        if !self.config.check_quorum || args.leadership_transfer || args.term <= self.current_term {
            return false;
        }
        match self.role {
            Role::Leader => true,
            _ => self.leader_id.is_some() && self.election_elapsed < self.config.election_ticks,
        }
    }

    /// Thesis §3.10: starts handing leadership to `target`. The leader stops
    /// accepting proposals, brings the target's log up to date, then sends it
    /// `TimeoutNow` so it campaigns at once. If no new leader appears within an
    /// election timeout the transfer aborts and proposals resume.
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target == self.id {
            return Err(TransferError::ToSelf);
        }
        if !self.progress.contains_key(&target) || !self.configuration.is_voter(target) {
            return Err(TransferError::UnknownServer(target));
        }
        if self.transfer.as_ref().is_some_and(|t| t.target == target) {
            return Ok(());
        }
        info!(
            self.id,
            self.current_term, "transferring leadership to {target} (§3.10): proposals paused"
        );
        self.transfer = Some(Transfer { target, elapsed: 0 });
        if !self.maybe_send_timeout_now(target) {
            self.send_append(target);
        }
        Ok(())
    }

    /// Sends `TimeoutNow` to `peer` if it is the transfer's target and holds
    /// the leader's whole log. Returns whether it did.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) -> bool {
        let is_target = self.transfer.as_ref().is_some_and(|t| t.target == peer);
        let caught_up = self
            .progress
            .get(&peer)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if !is_target || !caught_up {
            return false;
        }
        debug!(
            self.id,
            self.current_term, "{peer} has the whole log: sending TimeoutNow"
        );
        let args = TimeoutNowArgs {
            term: self.current_term,
            leader_id: self.id,
        };
        self.send(peer, Request::TimeoutNow(args));
        true
    }

    /// Aborts a transfer that has not produced a new leader within an election
    /// timeout (a target that cannot catch up, or is cut off): proposals resume.
    pub(super) fn tick_transfer(&mut self) {
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        transfer.elapsed += 1;
        if transfer.elapsed >= self.config.election_ticks {
            let target = transfer.target;
            self.transfer = None;
            info!(
                self.id,
                self.current_term,
                "leadership transfer to {target} aborted after an election timeout: proposals resume"
            );
        }
    }

    /// Thesis §3.10, the target's side: the leader says "time out now", so
    /// campaign at once, without a pre-vote and flagged as a transfer so that
    /// voters still hearing from the old leader vote anyway.
    pub(super) fn handle_timeout_now(&mut self, args: TimeoutNowArgs) -> TimeoutNowReply {
        // A server that may not campaign never does (thesis §4.2.1).
        self.verdict = Verdict::TimeoutNowIgnored;
        if args.term == self.current_term && self.role != Role::Leader && self.may_campaign() {
            self.verdict = Verdict::Campaigning;
            info!(
                self.id,
                self.current_term,
                "leader {} is handing over leadership: starting an election now (§3.10)",
                args.leader_id
            );
            self.become_candidate(true);
        }
        TimeoutNowReply {
            term: self.current_term,
        }
    }
}
