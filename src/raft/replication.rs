//! Log replication and commitment: §5.3 and §5.4.2.
//!
//! The leader appends client commands to its log and sends them to followers in
//! AppendEntries; each follower accepts them only if its log matches the leader's
//! at the entry just before (the consistency check), otherwise the leader backs
//! up and retries. An entry is committed once a majority stores it and it is
//! from the leader's current term (§5.4.2, Figure 8).

use super::bugs::Bug;
use super::core::{Raft, Role};
use super::messages::{AppendEntriesArgs, AppendEntriesReply, Entry, Index, NodeId, Request, Term};
use super::progress::{Progress, ReplicationState};
use super::verdict::Verdict;
use crate::{debug, info};

/// Why a proposal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// This server is not the leader.
    NotLeader,
    /// Leadership is being handed to this server (thesis §3.10).
    Transferring(NodeId),
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader => write!(f, "not the leader"),
            ProposeError::Transferring(to) => {
                write!(f, "leadership is being transferred to {to}")
            }
        }
    }
}

impl Raft {
    /// Appends `command` to the leader's log (§5.3: "the leader appends the
    /// command to its log as a new entry, then issues AppendEntries RPCs in
    /// parallel"). Returns the entry's index and term; it is not committed yet.
    /// Refused if this server is not the leader, or is handing leadership over
    /// (thesis §3.10: proposals pause during a transfer).
    pub fn propose(&mut self, command: Vec<u8>) -> Result<(Index, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        if let Some(transfer) = &self.transfer {
            return Err(ProposeError::Transferring(transfer.target));
        }
        let term = self.current_term;
        let index = self.log.append(Entry::command(term, command));
        self.mark_unstable(index);
        // Sent at the next `ready()`, so a burst of proposals shares one message.
        self.replicate_pending = true;
        self.maybe_commit();
        Ok((index, term))
    }

    /// Leaders send a heartbeat every `heartbeat_ticks` to keep followers from
    /// starting elections (§5.2), first giving up what went unanswered.
    pub(super) fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.give_up_unanswered();
            self.broadcast_heartbeat();
        }
    }

    /// Once per heartbeat interval (not per read round: those come far more
    /// often): a streaming follower whose oldest message in flight went a
    /// whole interval unanswered is probed again from `match_index` (see
    /// `Progress::stalled`), and a snapshot piece that went a whole interval
    /// unanswered goes again with this round (`Progress::piece_lost`).
    fn give_up_unanswered(&mut self) {
        let (id, term) = (self.id, self.current_term);
        for (&peer, p) in self.progress.iter_mut() {
            if p.piece_lost() {
                debug!(
                    id,
                    term,
                    "no answer from {peer} for the snapshot piece at byte {} in a heartbeat interval: sending it again",
                    p.snapshot_transfer.as_ref().map_or(0, |t| t.offset)
                );
            }
            if p.stalled() {
                debug!(
                    id,
                    term,
                    "no answer from {peer} for entries through {} in a heartbeat interval: probing from {}",
                    p.inflight.oldest().unwrap_or(0),
                    p.match_index + 1
                );
                p.back_off_to(p.match_index + 1);
            }
        }
    }

    /// A round of heartbeats (§5.2; also a ReadIndex round, thesis §6.4): each
    /// follower gets what it lacks if flow control lets it go now, else an
    /// AppendEntries without entries.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let last = self.log.last_index();
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            let Some(p) = self.progress.get(&peer) else {
                continue;
            };
            let lacks = p.snapshot_transfer.is_some()
                || p.state == ReplicationState::Probe
                || p.next_index <= last;
            if lacks && self.may_send_data(p) {
                self.send_append(peer);
            } else {
                self.send_heartbeat(peer);
            }
        }
    }

    /// An AppendEntries without entries, anchored where the follower is known
    /// to match (its `match_index`), so it never changes the follower's log
    /// and, unlike one at `next_index`, is not rejected for data still in
    /// flight: a rejection means the follower lost entries it had stored. It
    /// resets the follower's election timer, carries the commit index and the
    /// read round.
    pub(super) fn send_heartbeat(&mut self, peer: NodeId) {
        let Some(progress) = self.progress.get(&peer) else {
            return;
        };
        // A follower that matched only entries this log has compacted away
        // gets a heartbeat at 0, which matches any log.
        let (prev_log_index, prev_log_term) = match self.log.term(progress.match_index) {
            Some(term) => (progress.match_index, term),
            None => (0, 0),
        };
        let args = AppendEntriesArgs {
            term: self.current_term,
            leader_id: self.id,
            prev_log_index,
            prev_log_term,
            entries: Vec::new(),
            leader_commit: self.commit_index,
            read_seq: self.reads.seq,
        };
        self.send(peer, Request::AppendEntries(args));
    }

    /// Flow control (see `progress`): whether `p` may be sent data now.
    pub(super) fn may_send_data(&self, p: &Progress) -> bool {
        p.may_send_data(
            self.config.max_inflight_messages,
            self.config.max_inflight_bytes,
        )
    }

    /// Sends new entries to the followers that are streaming (probing followers
    /// wait for their outstanding probe's reply or the next heartbeat).
    pub(super) fn broadcast_new_entries(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let streaming: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, p)| {
                p.state == ReplicationState::Replicate
                    && p.next_index <= last
                    && self.may_send_data(p)
            })
            .map(|(&id, _)| id)
            .collect();
        for peer in streaming {
            self.send_append(peer);
        }
    }

    /// Sends `peer` the entries from its `next_index`, or the snapshot if those
    /// entries were compacted away (§7), if flow control lets data go now.
    pub(super) fn send_append(&mut self, peer: NodeId) {
        let Some(progress) = self.progress.get(&peer) else {
            return;
        };
        if !self.may_send_data(progress) {
            return;
        }
        let next = progress.next_index;
        let prev_log_index = next - 1;
        let sending_snapshot = progress.snapshot_transfer.is_some();
        let Some(prev_log_term) = self.log.term(prev_log_index).filter(|_| !sending_snapshot)
        else {
            // The entry before `next` is in the snapshot: only the snapshot will
            // do (or it is being sent: send its next piece again).
            self.send_snapshot(peer);
            return;
        };
        let entries = self.log.entries_from(next, self.config.max_append_bytes);
        if let Some(progress) = self.progress.get_mut(&peer) {
            let last_sent = prev_log_index + entries.len() as Index;
            if progress.state == ReplicationState::Replicate && !entries.is_empty() {
                // Pipelining: assume these arrive; a rejection will move us back.
                progress.next_index = last_sent + 1;
                let bytes = entries.iter().map(|e| e.command.len()).sum();
                progress.sent_data(last_sent, bytes);
            } else if progress.state == ReplicationState::Probe {
                // One probe at a time.
                progress.sent_data(last_sent, 0);
            }
        }
        let args = AppendEntriesArgs {
            term: self.current_term,
            leader_id: self.id,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.commit_index,
            read_seq: self.reads.seq,
        };
        self.send(peer, Request::AppendEntries(args));
    }

    /// Figure 2, AppendEntries receiver implementation.
    pub(super) fn handle_append_entries(
        &mut self,
        from: NodeId,
        args: AppendEntriesArgs,
    ) -> AppendEntriesReply {
        let mut reply = AppendEntriesReply {
            term: self.current_term,
            success: false,
            conflict_term: None,
            conflict_index: 0,
        };
        // 1. Reply false if term < currentTerm (§5.1).
        if args.term < self.current_term {
            self.verdict = Verdict::StaleTerm {
                current_term: self.current_term,
            };
            return reply;
        }
        // §5.2: a candidate (or stale follower) recognizes the legitimate leader;
        // hearing from it resets the election timer.
        self.become_follower(args.term, Some(from));
        self.election_elapsed = 0;

        let AppendEntriesArgs {
            mut prev_log_index,
            mut prev_log_term,
            mut entries,
            leader_commit,
            ..
        } = args;
        // §7: entries covered by our snapshot are committed, hence already match.
        let snapshot_index = self.log.snapshot_index();
        if prev_log_index < snapshot_index {
            let covered = (snapshot_index - prev_log_index) as usize;
            entries.drain(..covered.min(entries.len()));
            prev_log_index = snapshot_index;
            prev_log_term = self.log.snapshot_term();
        }

        // 2. Reply false if log doesn't contain an entry at prevLogIndex whose term
        //    matches prevLogTerm (§5.3), with hints to skip a whole term at a time.
        match self.log.term(prev_log_index) {
            None => {
                reply.conflict_index = self.log.last_index() + 1;
                self.verdict = Verdict::MissingEntry {
                    last_log_index: self.log.last_index(),
                };
                debug!(
                    self.id,
                    self.current_term,
                    "rejected append from {from}: log has no entry at {prev_log_index}"
                );
                return reply;
            }
            Some(term) if term != prev_log_term => {
                reply.conflict_term = Some(term);
                reply.conflict_index = self.log.first_index_of_term_run(prev_log_index);
                self.verdict = Verdict::TermMismatch {
                    index: prev_log_index,
                    term,
                };
                debug!(
                    self.id,
                    self.current_term,
                    "rejected append from {from}: entry {prev_log_index} has term {term}, not {prev_log_term}"
                );
                return reply;
            }
            Some(_) => {}
        }

        // 3. If an existing entry conflicts with a new one (same index, different
        //    term), delete the existing entry and all that follow it (§5.3).
        // 4. Append any new entries not already in the log. Matching entries are
        //    left alone, so a delayed, shorter AppendEntries never truncates.
        let last_new_index = prev_log_index + entries.len() as Index;
        let replaces_suffix = !entries.is_empty() && self.log.last_index() > prev_log_index;
        let mut truncated_from = None;
        if self.has_bug(Bug::TruncateWithoutConflict) && replaces_suffix {
            self.truncate_log_from(prev_log_index + 1);
            truncated_from = Some(prev_log_index + 1);
        }
        let mut appended_configuration = None;
        for (offset, entry) in entries.into_iter().enumerate() {
            let index = prev_log_index + 1 + offset as Index;
            match self.log.term(index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    debug_assert!(index > self.commit_index, "truncating a committed entry");
                    self.truncate_log_from(index);
                    truncated_from.get_or_insert(index);
                }
                None => {}
            }
            if let Some(configuration) = entry.as_configuration() {
                appended_configuration = Some((index, configuration));
            }
            self.log.append(entry);
            self.mark_unstable(index);
        }
        // Thesis §4.1: a configuration takes effect as soon as it is appended.
        if let Some((index, configuration)) = appended_configuration {
            self.adopt_configuration(index, configuration);
        }

        // 5. If leaderCommit > commitIndex, set commitIndex =
        //    min(leaderCommit, index of last new entry).
        let commit = leader_commit.min(last_new_index);
        if commit > self.commit_index {
            self.commit_index = commit;
        }
        reply.success = true;
        self.verdict = Verdict::Appended { truncated_from };
        reply
    }

    /// The leader's side of AppendEntries: advance on success, back up on a
    /// consistency-check failure.
    pub(super) fn handle_append_entries_reply(
        &mut self,
        from: NodeId,
        args: &AppendEntriesArgs,
        reply: AppendEntriesReply,
    ) {
        if self.role != Role::Leader {
            return;
        }
        // Any answer in this term acknowledges the leader's read round (§6.4).
        self.acknowledge_read_round(from, args.read_seq);
        let last_index = self.log.last_index();
        let next_after_rejection = self.next_index_after_rejection(&reply);
        let (id, term) = (self.id, self.current_term);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.answered();
        if reply.success {
            // Figure 2: on success, update nextIndex and matchIndex for the follower.
            let matched = args.prev_log_index + args.entries.len() as Index;
            if progress.maybe_advance(matched) {
                self.maybe_commit();
            }
            if self.maybe_send_timeout_now(from) {
                return;
            }
        } else {
            // While a snapshot is being sent, AppendEntries are heartbeats
            // only: their rejections say nothing new.
            if progress.snapshot_transfer.is_some() {
                return;
            }
            // A follower never loses entries it acknowledged, unless its disk
            // did (Raft assumes stable storage; operators do not always
            // provide it). A heartbeat is anchored at an entry the follower had
            // acknowledged before it was sent (`send_heartbeat`), so its
            // rejection proves the loss: start over from what the follower
            // holds now. (An empty probe overtaken by the entries before it can
            // look the same; that costs one extra probe.)
            let heartbeat = args.entries.is_empty() && args.prev_log_index <= progress.match_index;
            if heartbeat {
                info!(
                    id,
                    term,
                    "follower {from} lost entries it had stored (its log now ends before {next_after_rejection}, it had matched {}): replicating to it from scratch",
                    progress.match_index
                );
                progress.forget_match();
            } else {
                // Replies can be reordered: a rejection of something older than
                // what the follower has since matched, or (while probing) of
                // anything but the latest probe, is stale. Ignore it.
                let stale = args.prev_log_index < progress.match_index
                    || (progress.state == ReplicationState::Probe
                        && args.prev_log_index + 1 != progress.next_index);
                if stale {
                    return;
                }
            }
            // Figure 2: on failure, decrement nextIndex and retry; the hints let
            // the leader skip a whole conflicting term at once (§5.3).
            progress.back_off_to(next_after_rejection.min(last_index + 1));
        }
        let behind = self
            .progress
            .get(&from)
            .is_some_and(|p| p.next_index <= last_index || !reply.success);
        if behind {
            self.send_append(from);
        }
    }

    /// Where a follower's log might match ours, judging by its rejection hints:
    /// just past our last entry of its conflicting term if we have that term,
    /// else the first index it holds of that term, else just past its last entry.
    fn next_index_after_rejection(&self, reply: &AppendEntriesReply) -> Index {
        let hinted = match reply.conflict_term {
            Some(term) => self
                .log
                .last_index_of_term(term)
                .map_or(reply.conflict_index, |last| last + 1),
            None => reply.conflict_index,
        };
        hinted.max(1)
    }

    /// §5.3/§5.4.2: "If there exists an N such that N > commitIndex, a majority of
    /// matchIndex[i] ≥ N, and log[N].term == currentTerm: set commitIndex = N."
    /// Only entries of the current term are committed by counting replicas; older
    /// ones commit indirectly with them (Figure 8 shows why).
    pub(super) fn maybe_commit(&mut self) -> bool {
        // Thesis §10.2.1: the leader's own log counts only once it is on disk,
        // since the runtime may send AppendEntries before the leader's write.
        // Thesis §4.1: the latest configuration's voters count; learners do
        // not, and neither does a leader that is removing itself.
        let matched = |id| match self.progress.get(&id) {
            _ if id == self.id => self.persisted_index,
            Some(p) => p.match_index,
            None => 0,
        };
        let Some(majority_index) = self.configuration.quorum_value(matched) else {
            return false;
        };
        let current_term = self.log.term(majority_index) == Some(self.current_term);
        if majority_index > self.commit_index && (current_term || self.has_bug(Bug::Figure8)) {
            self.commit_index = majority_index;
            debug!(
                self.id,
                self.current_term, "committed up to {majority_index}"
            );
            self.admit_waiting_reads();
            self.maybe_advance_change();
            return true;
        }
        false
    }
}
