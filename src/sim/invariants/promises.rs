//! The promises each server makes, checked at every step: what it said stays true.
//!
//! The cluster-wide properties (`invariants.rs`) catch a broken promise only
//! once it has cost the cluster something, which takes a rare schedule. These
//! catch it at the server that breaks it, the moment it does: its durable term
//! and vote cover every message it sent (Figure 2), an entry it acknowledged
//! stays in its log (§5.3), and a leader's matchIndex for a follower is what
//! that follower holds (Figure 2). The simulator calls the hooks here on every
//! message a server sends, every save, every step and every restart.

use super::{violation, Ack, Checker, Violation};
use crate::raft::messages::{Index, NodeId, Request, Response, Term};
use crate::raft::progress::Progress;
use crate::raft::Status;
use std::collections::BTreeMap;

/// The name of a message's kind, for evidence.
fn kind(request: &Request) -> &'static str {
    match request {
        Request::RequestVote(a) if a.pre_vote => "pre-vote",
        Request::RequestVote(_) => "RequestVote",
        Request::AppendEntries(_) => "AppendEntries",
        Request::InstallSnapshot(_) => "InstallSnapshot",
        Request::TimeoutNow(_) => "TimeoutNow",
    }
}

impl Checker {
    /// Server `node` sent `request` (a request of the core's, as it leaves).
    pub fn on_request_sent(&mut self, node: usize, request: &Request) -> Result<(), Violation> {
        if let Request::RequestVote(args) = request {
            if args.pre_vote {
                // Thesis §9.6: a pre-vote proposes the next term; nobody adopts it.
                return Ok(());
            }
        }
        let shadow = &mut self.shadows[node];
        shadow.term_sent = shadow.term_sent.max(request.term());
        self.durable_term_and_vote_cover_sent(node, kind(request), "request")
    }

    /// Server `node` answered `request` with `response` (as the answer leaves).
    pub fn on_reply_sent(
        &mut self,
        node: usize,
        request: &Request,
        response: &Response,
    ) -> Result<(), Violation> {
        match (request, response) {
            (Request::RequestVote(args), Response::RequestVote(reply)) if reply.vote_granted => {
                if args.pre_vote {
                    // A granted pre-vote carries the term proposed, not adopted (§9.6).
                    return Ok(());
                }
                self.vote_once_per_term(node, reply.term, args.candidate_id)?;
                self.shadows[node].vote_sent = Some((reply.term, args.candidate_id));
            }
            (Request::AppendEntries(args), Response::AppendEntries(reply)) if reply.success => {
                let matched = args.prev_log_index + args.entries.len() as Index;
                self.record_ack(node, matched, reply.term)?;
            }
            (Request::InstallSnapshot(args), Response::InstallSnapshot(reply))
                if reply.stored >= args.size =>
            {
                self.record_ack(node, args.last_included_index, reply.term)?;
            }
            _ => {}
        }
        let shadow = &mut self.shadows[node];
        shadow.term_sent = shadow.term_sent.max(response.term());
        self.durable_term_and_vote_cover_sent(node, kind(request), "reply")
    }

    /// Server `node`, leader or not after its step, has this `progress`
    /// (Figure 2's `nextIndex[]` and `matchIndex[]`; empty unless it leads).
    pub fn on_progress(
        &mut self,
        node: usize,
        status: &Status,
        progress: &BTreeMap<NodeId, Progress>,
    ) -> Result<(), Violation> {
        let shadow = &mut self.shadows[node];
        shadow.matched.clear();
        if progress.is_empty() {
            return Ok(());
        }
        shadow.led_in = status.term;
        let matched = progress
            .iter()
            .filter(|(_, p)| p.match_index > 0)
            .map(|(&id, p)| (id, p.match_index));
        shadow.matched.extend(matched);
        for i in 0..self.shadows[node].matched.len() {
            let (follower, _) = self.shadows[node].matched[i];
            self.match_index_is_held(node, follower)?;
        }
        Ok(())
    }

    /// Records that server `node` acknowledged its log through `index` to the
    /// leader of `term`: from now on it promises to hold that entry.
    fn record_ack(&mut self, node: usize, index: Index, term: Term) -> Result<(), Violation> {
        let chain = &self.shadows[node].chain;
        let hash = match chain.at(index) {
            Some((_, h)) => Some(h),
            None if index < chain.base_index => None, // its snapshot covers it
            None => {
                return Err(violation(
                    "acknowledged_entries_stay",
                    "§5.3: a follower acknowledges only entries it stores",
                    format!(
                        "node {} acknowledged entries through {index} in term {term}, \
                         but its log ends at {}",
                        Self::id(node),
                        chain.last_index()
                    ),
                ))
            }
        };
        let ack = Ack { index, hash, term };
        // Holding the newest acknowledgement holds every earlier one up to its
        // index (the chain hash covers the prefix), and a later term replaces
        // no less: keep only the acknowledgements no other one implies.
        let acks = &mut self.shadows[node].acks;
        acks.retain(|a| a.index > ack.index || a.term > ack.term);
        if !acks
            .iter()
            .any(|a| a.index >= ack.index && a.term >= ack.term)
        {
            acks.push(ack);
        }
        Ok(())
    }

    /// Figure 2: currentTerm and votedFor are "updated on stable storage
    /// before responding to RPCs". So a server's durable term is never below
    /// a term it has put in a message, and while that term is the one of a
    /// vote it granted, its durable vote is that vote. Checked on every
    /// message a server sends, every save and every restart. (A leader's
    /// AppendEntries may leave before its log write, thesis §10.2.1, but
    /// never before its term is durable; a pre-vote's term is only proposed.)
    pub(super) fn durable_term_and_vote_cover_sent(
        &self,
        node: usize,
        what: &str,
        when: &str,
    ) -> Result<(), Violation> {
        let shadow = &self.shadows[node];
        let durable = shadow.durable;
        let rule = "Figure 2: currentTerm and votedFor are durable before the server answers";
        if durable.current_term < shadow.term_sent {
            return Err(violation(
                "durable_term_and_vote_cover_sent",
                rule,
                format!(
                    "node {} has sent messages in term {} but its disk holds term {} \
                     (at a {what} {when})",
                    Self::id(node),
                    shadow.term_sent,
                    durable.current_term
                ),
            ));
        }
        if let Some((term, candidate)) = shadow.vote_sent {
            if durable.current_term == term && durable.voted_for != Some(candidate) {
                return Err(violation(
                    "durable_term_and_vote_cover_sent",
                    rule,
                    format!(
                        "node {} granted its vote in term {term} to {candidate} but its disk \
                         holds term {term} with vote {:?} (at a {what} {when})",
                        Self::id(node),
                        durable.voted_for
                    ),
                ));
            }
        }
        Ok(())
    }

    /// §5.3 and Figure 2 (the log is persistent): an entry a server
    /// acknowledged (a successful AppendEntries reply covering it, or a
    /// snapshot install it confirmed) stays in its log or snapshot, same
    /// index and term, until a leader of a higher term replaces it: a leader
    /// counted it toward a majority. `term` is the server's term now (a
    /// leader of a higher term may have replaced what it acknowledged).
    /// Checked whenever its log changes and at every restart.
    pub(super) fn acknowledged_entries_stay(
        &mut self,
        node: usize,
        term: Term,
    ) -> Result<(), Violation> {
        let shadow = &mut self.shadows[node];
        let chain = &shadow.chain;
        let mut broken = None;
        shadow.acks.retain(|ack| {
            let held = match chain.at(ack.index) {
                Some((_, h)) => ack.hash.is_none_or(|a| a == h),
                None => ack.index < chain.base_index,
            };
            if !held && term <= ack.term && broken.is_none() {
                broken = Some(*ack);
            }
            held
        });
        let Some(ack) = broken else {
            return Ok(());
        };
        let now = match chain.at(ack.index) {
            Some((t, _)) => format!("a different entry there (term {t})"),
            None => format!(
                "a log ending at {} (snapshot through {})",
                chain.last_index(),
                chain.base_index
            ),
        };
        Err(violation(
            "acknowledged_entries_stay",
            "§5.3 and Figure 2: an acknowledged entry stays until a later leader replaces it",
            format!(
                "node {} acknowledged its log through {} to the leader of term {}, \
                 and now in term {term} holds {now}",
                Self::id(node),
                ack.index,
                ack.term
            ),
        ))
    }

    /// Figure 2: matchIndex is the "index of highest log entry known to be
    /// replicated on server": a leader's matchIndex for a follower never
    /// exceeds what that follower holds (the same entry at that index, or a
    /// snapshot past it), unless the follower has since moved to a later
    /// term, whose leader may have replaced it, or lost its disk (outside
    /// Raft's assumptions; see `Shadow::disk_replaced`). Checked whenever either
    /// side's step changes it.
    pub(super) fn match_index_is_held(
        &self,
        leader: usize,
        follower: NodeId,
    ) -> Result<(), Violation> {
        let lead = &self.shadows[leader];
        let Some(&(_, index)) = lead.matched.iter().find(|(id, _)| *id == follower) else {
            return Ok(());
        };
        let Some(shadow) = usize::try_from(follower - 1)
            .ok()
            .and_then(|f| self.shadows.get(f))
        else {
            return Ok(());
        };
        if shadow.term > lead.led_in || shadow.disk_replaced {
            return Ok(());
        }
        let theirs = shadow.chain.at(index);
        let ours = lead.chain.at(index);
        let held = match (theirs, ours) {
            (Some((_, h)), Some((_, mine))) => h == mine,
            (Some(_), None) => true, // compacted here: log_matching compares them
            (None, _) => index < shadow.chain.base_index,
        };
        if held {
            return Ok(());
        }
        let holds = match theirs {
            Some((t, _)) => format!("a different entry there (term {t})"),
            None => format!(
                "a log ending at {} (snapshot through {})",
                shadow.chain.last_index(),
                shadow.chain.base_index
            ),
        };
        Err(violation(
            "match_index_is_held",
            "Figure 2: matchIndex is replicated on the follower",
            format!(
                "leader {} of term {} has matchIndex {index} for node {follower}, \
                 which in term {} holds {holds}",
                Self::id(leader),
                lead.led_in,
                shadow.term
            ),
        ))
    }

    /// Every leader's matchIndex for server `node`, after `node`'s log changed.
    pub(super) fn matches_for_are_held(&self, node: usize) -> Result<(), Violation> {
        let id = Self::id(node);
        for leader in 0..self.shadows.len() {
            if leader != node {
                self.match_index_is_held(leader, id)?;
            }
        }
        Ok(())
    }
}
