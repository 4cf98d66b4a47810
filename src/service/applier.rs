//! Applying committed entries and telling each proposer what became of its proposal.
//!
//! A proposal is known by the `(index, term)` Raft gave it. When the entry at
//! `index` is applied, its proposer learns the reply if the entry has the same
//! term, or that it was **replaced** (another leader's entry took the index:
//! the proposal was never applied). If a snapshot skips over the index, the
//! outcome is **unknown**. This logic has no threads and no clock, so the
//! threaded [`super::replica::Replica`] and the simulator share it: whatever
//! the simulator checks about outcomes is what the server does.
//!
//! Reads served by ReadIndex (thesis §6.4) wait here too, by the read id given
//! to Raft: when Raft confirms the read, every entry it must see has been
//! applied, and the read is answered from the state machine as it is then.

use std::collections::{BTreeMap, VecDeque};

use super::command::Command;
use super::kv::Change;
use super::replica::ExecError;
use super::reply::{Code, Reply};
use super::state_machine::{Op, StateMachine};
use crate::codec::{Decode, DecodeError};
use crate::raft::messages::{Index, Term};

/// How many applied outcomes are kept for proposals whose entry was applied
/// before their proposer asked.
pub const RECENT_OUTCOMES: usize = 4096;

/// What became of a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was applied; this is its reply.
    Reply(Reply),
    /// Another entry took its index: it was never applied (safe to retry).
    Replaced,
    /// A snapshot covered its index before its outcome was seen: it may or may
    /// not have been applied.
    Unknown,
}

impl Outcome {
    /// The reply, or why there is none: a replaced proposal was never
    /// applied ([`ExecError::NotLeader`]), an unknown one may have been
    /// ([`ExecError::Timeout`]).
    pub fn into_result(self) -> Result<Reply, ExecError> {
        match self {
            Outcome::Reply(reply) => Ok(reply),
            Outcome::Replaced => Err(ExecError::NotLeader),
            Outcome::Unknown => Err(ExecError::Timeout),
        }
    }
}

/// The state machine plus the proposals waiting on it. `W` is whatever the
/// caller uses to reach a waiting proposer (a channel, a simulated client).
#[derive(Debug)]
pub struct Applier<W> {
    sm: StateMachine,
    last_applied: Index,
    /// Proposals waiting for their index to be applied, with their term.
    waiters: BTreeMap<Index, (Term, W)>,
    /// Outcomes of the last [`RECENT_OUTCOMES`] applied entries (`None` for
    /// an entry Raft wrote for itself).
    recent: VecDeque<(Index, Term, Option<Reply>)>,
    /// Reads waiting for Raft to confirm them, by read id.
    reads: BTreeMap<u64, (Command, W)>,
    /// The keys the entry applied last changed, with their revision (what a
    /// watch will report); the buffer is reused, so recording costs no
    /// allocation per write.
    changes: Vec<Change>,
}

impl<W> Default for Applier<W> {
    fn default() -> Self {
        Self {
            sm: StateMachine::default(),
            last_applied: 0,
            waiters: BTreeMap::new(),
            recent: VecDeque::with_capacity(RECENT_OUTCOMES),
            reads: BTreeMap::new(),
            changes: Vec::new(),
        }
    }
}

impl<W> Applier<W> {
    /// The index applied last.
    pub fn last_applied(&self) -> Index {
        self.last_applied
    }

    /// The state machine as of [`Applier::last_applied`].
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// The keys the last entry applied changed, with their revision.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// How many proposals are waiting for their outcome.
    pub fn pending(&self) -> usize {
        self.waiters.len()
    }

    /// Registers `waiter` for the proposal at `(index, term)`. If that index was
    /// applied already, returns `waiter` with the outcome now instead.
    pub fn wait_for(&mut self, index: Index, term: Term, waiter: W) -> Option<(W, Outcome)> {
        if index > self.last_applied {
            self.waiters.insert(index, (term, waiter));
            return None;
        }
        let seen = self.recent.iter().rev().find(|(i, ..)| *i == index);
        let outcome = match seen {
            Some((_, t, Some(reply))) if *t == term => Outcome::Reply(reply.clone()),
            Some(_) => Outcome::Replaced,
            None => Outcome::Unknown,
        };
        Some((waiter, outcome))
    }

    /// Applies the committed entry at `index` and returns its reply, plus the
    /// waiter to tell, if a proposal was waiting on this index.
    pub fn apply(
        &mut self,
        index: Index,
        term: Term,
        command: &[u8],
    ) -> (Reply, Option<(W, Outcome)>) {
        debug_assert_eq!(index, self.last_applied + 1, "applies are consecutive");
        self.changes.clear();
        let reply = match Op::decode(command) {
            Ok(op) => self.sm.apply_recording(op, &mut self.changes),
            Err(e) => Reply::error(Code::BadRequest, format!("undecodable entry: {e}")),
        };
        self.remember(index, term, Some(reply.clone()));
        let woken = self.waiters.remove(&index).map(|(waiter_term, waiter)| {
            // Another leader's entry took this index: ours was never applied.
            let outcome = if waiter_term == term {
                Outcome::Reply(reply.clone())
            } else {
                Outcome::Replaced
            };
            (waiter, outcome)
        });
        (reply, woken)
    }

    /// Records the outcome of the entry just applied at `index`.
    fn remember(&mut self, index: Index, term: Term, reply: Option<Reply>) {
        self.last_applied = index;
        if self.recent.len() == RECENT_OUTCOMES {
            self.recent.pop_front();
        }
        self.recent.push_back((index, term, reply));
    }

    /// Applies an entry Raft wrote for itself (a leader's no-op): the state
    /// machine does nothing, but a proposal waiting on its index was replaced.
    pub fn skip(&mut self, index: Index, term: Term) -> Option<(W, Outcome)> {
        debug_assert_eq!(index, self.last_applied + 1, "applies are consecutive");
        self.changes.clear();
        self.remember(index, term, None);
        self.waiters
            .remove(&index)
            .map(|(_, waiter)| (waiter, Outcome::Replaced))
    }

    /// Registers `waiter` for read `id` of `command`, before Raft's
    /// confirmation or failure of it is applied (see `admissions.rs`).
    pub fn wait_read(&mut self, id: u64, command: Command, waiter: W) {
        self.reads.insert(id, (command, waiter));
    }

    /// Forgets read `id` (Raft refused it), returning its waiter.
    pub fn cancel_read(&mut self, id: u64) -> Option<W> {
        self.reads.remove(&id).map(|(_, waiter)| waiter)
    }

    /// Raft confirmed read `id`: answers it from the state machine now.
    pub fn read(&mut self, id: u64) -> Option<(W, Outcome)> {
        let (command, waiter) = self.reads.remove(&id)?;
        let reply = self
            .sm
            .read(&command)
            .unwrap_or_else(|| Reply::error(Code::BadRequest, "not a read"));
        Some((waiter, Outcome::Reply(reply)))
    }

    /// Raft could not confirm read `id` (leadership was lost): nothing was read.
    pub fn read_failed(&mut self, id: u64) -> Option<(W, Outcome)> {
        self.cancel_read(id)
            .map(|waiter| (waiter, Outcome::Replaced))
    }

    /// Replaces the state with a snapshot's through `index`. Proposals at or
    /// below `index` learn nothing more: they are returned, their outcome unknown.
    pub fn restore(&mut self, index: Index, data: &[u8]) -> Result<Vec<W>, DecodeError> {
        let sm = StateMachine::restore(data)?;
        Ok(self.restore_state(index, sm))
    }

    /// [`Applier::restore`] with the state already read.
    pub fn restore_state(&mut self, index: Index, sm: StateMachine) -> Vec<W> {
        self.sm = sm;
        self.last_applied = index;
        self.recent.clear();
        let later = self.waiters.split_off(&(index + 1));
        let covered = std::mem::replace(&mut self.waiters, later);
        covered.into_values().map(|(_, w)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;
    use crate::service::command::Command;

    fn put(k: &str, v: &str) -> Vec<u8> {
        Op {
            client_id: 0,
            seq: 0,
            command: Command::Put(k.into(), v.into()),
        }
        .encode()
    }

    #[test]
    fn a_waiter_learns_its_reply_or_that_it_was_replaced() {
        let mut a: Applier<&str> = Applier::default();
        assert_eq!(a.wait_for(1, 2, "mine"), None);
        assert_eq!(a.wait_for(2, 2, "lost"), None);
        assert_eq!(
            a.apply(1, 2, &put("k", "v")),
            (Reply::Ok, Some(("mine", Outcome::Reply(Reply::Ok))))
        );
        assert_eq!(
            a.apply(2, 3, &put("k", "w")).1,
            Some(("lost", Outcome::Replaced))
        );
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn a_late_waiter_finds_the_outcome_in_the_recent_ring() {
        let mut a: Applier<()> = Applier::default();
        a.apply(1, 1, &put("k", "v"));
        assert_eq!(a.wait_for(1, 1, ()), Some(((), Outcome::Reply(Reply::Ok))));
        assert_eq!(a.wait_for(1, 2, ()), Some(((), Outcome::Replaced)));
    }

    #[test]
    fn a_snapshot_makes_covered_outcomes_unknown() {
        let mut a: Applier<u8> = Applier::default();
        a.wait_for(3, 1, 3);
        a.wait_for(9, 1, 9);
        let covered = a.restore(5, &StateMachine::default().snapshot());
        assert_eq!(covered, Ok(vec![3]));
        assert_eq!(a.pending(), 1);
        assert_eq!(a.wait_for(4, 1, 4), Some((4, Outcome::Unknown)));
    }
}
