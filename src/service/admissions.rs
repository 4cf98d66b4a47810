//! Requests Raft has taken, on their way to the [`Applier`]: plain
//! deterministic code that the replica (`replica.rs`) and the simulator's
//! servers (`src/sim/server.rs`) both run.
//!
//! Raft numbers a proposal's entry (or admits a read) when it handles the
//! request; the outcome comes later, in a batch of committed entries (or the
//! read's confirmation). The rule that makes the outcome reach its requester:
//! every request admitted before a batch is registered with the applier
//! before that batch is applied ([`Admissions::register`]), so the batch that
//! commits a proposal, or confirms a read, finds its waiter. A proposal whose
//! entry was applied already (a batch raced ahead of it) learns its outcome
//! at registration, from the applier's recent outcomes.

use super::applier::{Applier, Outcome};
use super::command::Command;
use crate::raft::messages::{Index, Term};

/// A request Raft has taken, not yet registered with the applier.
#[derive(Debug)]
pub enum Admitted<W> {
    /// A proposal, by the index and term Raft gave its entry.
    Proposal {
        /// The entry's index.
        index: Index,
        /// The entry's term.
        term: Term,
        /// Who waits for the outcome.
        waiter: W,
    },
    /// A read served by ReadIndex (thesis §6.4), by its read id.
    Read {
        /// The id given to Raft.
        id: u64,
        /// What it reads.
        command: Command,
        /// Who waits for the answer.
        waiter: W,
    },
}

/// Requests admitted since the last batch, in the order Raft took them.
#[derive(Debug)]
pub struct Admissions<W> {
    fresh: Vec<Admitted<W>>,
}

impl<W> Default for Admissions<W> {
    fn default() -> Self {
        Self { fresh: Vec::new() }
    }
}

impl<W> Admissions<W> {
    /// Raft took `request`: it waits for the next batch.
    pub fn admit(&mut self, request: Admitted<W>) {
        self.fresh.push(request);
    }

    /// Takes the requests admitted so far, to register outside a lock that
    /// guards this list (the replica's request threads add to it while the
    /// apply loop registers).
    pub fn take(&mut self) -> Vec<Admitted<W>> {
        std::mem::take(&mut self.fresh)
    }

    /// Forgets read `id` if it is still waiting here (its requester gave up).
    pub fn forget_read(&mut self, id: u64) {
        self.fresh
            .retain(|a| !matches!(a, Admitted::Read { id: read, .. } if *read == id));
    }

    /// Registers every request admitted so far with `applier`, before the
    /// next batch is applied; `early` is told the outcome of each proposal
    /// whose entry was applied already.
    pub fn register(&mut self, applier: &mut Applier<W>, early: impl FnMut(W, Outcome)) {
        register(self.take(), applier, early);
    }
}

/// Registers `admitted` with `applier` ([`Admissions::register`] for a list
/// taken out of its lock).
pub fn register<W>(
    admitted: Vec<Admitted<W>>,
    applier: &mut Applier<W>,
    mut early: impl FnMut(W, Outcome),
) {
    for request in admitted {
        match request {
            Admitted::Proposal {
                index,
                term,
                waiter,
            } => {
                if let Some((waiter, outcome)) = applier.wait_for(index, term, waiter) {
                    early(waiter, outcome);
                }
            }
            Admitted::Read {
                id,
                command,
                waiter,
            } => applier.wait_read(id, command, waiter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;
    use crate::service::reply::Reply;
    use crate::service::state_machine::Op;

    fn put(k: &str) -> Vec<u8> {
        let command = Command::Put(k.into(), "v".into());
        Op {
            client_id: 0,
            seq: 0,
            command,
        }
        .encode()
    }

    /// A proposal and a read admitted before a batch find their outcomes in
    /// it; a proposal admitted after its entry was applied learns it at
    /// registration; a read forgotten before registration is never answered.
    #[test]
    fn requests_admitted_before_a_batch_are_settled_by_it() {
        let mut applier: Applier<&str> = Applier::default();
        let mut admissions = Admissions::default();
        admissions.admit(Admitted::Proposal {
            index: 1,
            term: 1,
            waiter: "proposer",
        });
        admissions.admit(Admitted::Read {
            id: 7,
            command: Command::Get("k".into()),
            waiter: "reader",
        });
        admissions.admit(Admitted::Read {
            id: 8,
            command: Command::Get("k".into()),
            waiter: "gone",
        });
        admissions.forget_read(8);
        let mut early = Vec::new();
        admissions.register(&mut applier, |w, o| early.push((w, o)));
        assert!(early.is_empty());
        let (_, woken) = applier.apply(1, 1, &put("k"));
        assert_eq!(woken, Some(("proposer", Outcome::Reply(Reply::Ok))));
        assert!(matches!(
            applier.read(7),
            Some(("reader", Outcome::Reply(_)))
        ));
        assert_eq!(applier.read(8), None, "forgotten");

        admissions.admit(Admitted::Proposal {
            index: 1,
            term: 1,
            waiter: "late",
        });
        admissions.register(&mut applier, |w, o| early.push((w, o)));
        assert_eq!(early, [("late", Outcome::Reply(Reply::Ok))]);
    }
}
