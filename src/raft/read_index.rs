//! Linearizable reads without log entries: ReadIndex (thesis §6.4).
//!
//! A read must not return state older than any write acknowledged before it
//! began. Going through the log guarantees that, at the cost of a write and an
//! fsync on a majority per read. ReadIndex gets the same guarantee with one
//! round of heartbeats, shared by every read that arrives meanwhile:
//!
//! 1. The leader notes its commit index as the read's *read index*. It must
//!    first have committed an entry of its own term: until then its commit
//!    index may lag behind entries an earlier leader committed (§8; a leader
//!    appends a no-op at election for this, `Config::noop_on_election`).
//! 2. It confirms it is still the leader: the read waits for a round of
//!    AppendEntries sent *after* it arrived to be answered by a majority. Each
//!    round carries a sequence number (`read_seq`); a follower's answer to a
//!    round acknowledges it, and acknowledgements of rounds sent before the
//!    read arrived do not count.
//! 3. Once confirmed, the read is answered from the state machine once it has
//!    applied the read index: the core emits `ApplyMsg::Read` after the
//!    entries it covers, so the service meets it in order.
//!
//! If the leader steps down first, its pending reads fail (`ApplyMsg::ReadFailed`).

use super::bugs::Bug;
use super::core::{Raft, Role};
use super::messages::Index;
use super::replication::ProposeError;

/// A read waiting for its heartbeat round.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingRead {
    id: u64,
    /// The read index: the commit index when the read was admitted.
    index: Index,
    /// The heartbeat round that confirms it.
    seq: u64,
}

/// The leader's reads in flight.
#[derive(Debug, Default)]
pub struct ReadQueue {
    /// Reads that arrived before this leader committed an entry of its term.
    before_commit: Vec<u64>,
    /// Admitted reads, in `seq` order.
    pending: Vec<PendingRead>,
    /// The last heartbeat round sent.
    pub(super) seq: u64,
    /// A round must go out at the next `ready()`.
    round_pending: bool,
    /// Confirmed reads (id, read index), handed out at the next `ready()`.
    pub(super) confirmed: Vec<(u64, Index)>,
    /// Failed reads, handed out at the next `ready()`.
    pub(super) failed: Vec<u64>,
}

impl Raft {
    /// Thesis §6.4: asks to serve read `id` (the caller's number) without a log
    /// entry. A later `Ready` holds `ApplyMsg::Read { id, .. }` once it is safe
    /// to answer, or `ApplyMsg::ReadFailed` if leadership was lost first.
    /// Refused at once if this server is not the leader or is handing
    /// leadership over.
    pub fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader);
        }
        if let Some(transfer) = &self.transfer {
            return Err(ProposeError::Transferring(transfer.target));
        }
        if self.committed_in_current_term() {
            self.admit_read(id);
        } else {
            self.reads.before_commit.push(id);
        }
        Ok(())
    }

    /// §8: a leader knows which entries are committed only once it has
    /// committed one of its own term.
    fn committed_in_current_term(&self) -> bool {
        self.log.term(self.commit_index) == Some(self.current_term)
            || self.has_bug(Bug::ReadIndexAnyTerm)
    }

    fn admit_read(&mut self, id: u64) {
        let read = PendingRead {
            id,
            index: self.commit_index,
            seq: self.reads.seq + 1,
        };
        self.reads.pending.push(read);
        self.reads.round_pending = true;
        self.maybe_confirm_reads();
    }

    /// Admits the reads that waited for this leader's first commit, once it
    /// happened (called whenever the commit index moves).
    pub(super) fn admit_waiting_reads(&mut self) {
        if self.reads.before_commit.is_empty() || !self.committed_in_current_term() {
            return;
        }
        for id in std::mem::take(&mut self.reads.before_commit) {
            self.admit_read(id);
        }
    }

    /// Sends one heartbeat round for every read admitted since the last one
    /// (called from `ready()`, so a burst of reads shares one round).
    pub(super) fn maybe_start_read_round(&mut self) {
        if self.role == Role::Leader && std::mem::take(&mut self.reads.round_pending) {
            self.reads.seq += 1;
            self.broadcast_heartbeat();
        }
    }

    /// Records that `from` answered an AppendEntries of round `seq` in this
    /// term, and confirms the reads a majority has now acknowledged.
    pub(super) fn acknowledge_read_round(&mut self, from: super::messages::NodeId, seq: u64) {
        if let Some(progress) = self.progress.get_mut(&from) {
            progress.read_ack = progress.read_ack.max(seq);
        }
        self.maybe_confirm_reads();
    }

    /// Confirms every pending read whose round a majority of the voters
    /// (this leader included, if it votes; thesis §4.1) has acknowledged.
    fn maybe_confirm_reads(&mut self) {
        if self.reads.pending.is_empty() {
            return;
        }
        let ack = |id| match self.progress.get(&id) {
            _ if id == self.id => u64::MAX,
            Some(p) => p.read_ack,
            None => 0,
        };
        let Some(confirmed) = self.configuration.quorum_value(ack) else {
            return;
        };
        let done = self
            .reads
            .pending
            .iter()
            .take_while(|r| r.seq <= confirmed)
            .count();
        for read in self.reads.pending.drain(..done) {
            self.reads.confirmed.push((read.id, read.index));
        }
    }

    /// A leader that steps down fails every read it has not confirmed.
    pub(super) fn fail_reads(&mut self) {
        let reads = &mut self.reads;
        reads.failed.append(&mut reads.before_commit);
        reads.failed.extend(reads.pending.drain(..).map(|r| r.id));
        reads.round_pending = false;
    }
}
