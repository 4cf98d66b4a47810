//! The one executor of a [`Ready`]: the order of effects, written once for the
//! threaded runtime and the simulator alike.
//!
//! The core asks for effects; this module decides their order; a runtime
//! supplies only the effects themselves, through [`Effects`]. The threaded
//! runtime (`src/node/`) implements them with a [`crate::storage::Storage`],
//! per-peer sender threads and channels; the simulator (`src/sim/`) with its
//! simulated disk, network and service, and its checker's hooks; the rule
//! scripts (`src/raft/script/`) with effects that print. So the order the
//! simulator checks, and the scripts show, is the order the runtime runs.
//!
//! The rule, for each `Ready` the core hands over (`super::ready` says why):
//!
//! 1. **configure**: learn the configuration in force, if it changed
//!    (thesis §4.1), before any message of the `Ready` goes out: some may go to
//!    a new member;
//! 2. **persist**: make `persist` durable, then report the log write with
//!    [`Raft::persisted`] (the leader counts itself toward a majority only
//!    then, thesis §10.2.1);
//! 3. **release the replies** to the RPCs handled since the last execution:
//!    Figure 2, "respond to RPCs only after updating stable storage";
//! 4. **send** the core's messages;
//! 5. **apply** what committed.
//!
//! One exception, thesis §10.2.1: when `send_first` is set (a leader whose term
//! and vote did not change), the messages go out before the write, so
//! followers write in parallel with the leader. Replies never move.
//!
//! Then again, until the core has nothing left to do: a durable write can let
//! the leader commit, which makes a new `Ready`.
//!
//! An effect may halt the execution (a crash in the simulator, or a property
//! the checker finds broken): nothing after it happens, as after a crash.
//!
//! A save the storage refuses (a full disk, an I/O error, a failed fsync)
//! halts it too, by the executor's own rule, fail-stop: the server stops for
//! good through [`Effects::fail_stop`], and nothing of the `Ready` that the
//! rule puts after the write happens, so nothing that is not durable is
//! acknowledged. The save is never retried: after a failed fsync the file's
//! state is unknown, and a retried fsync can report success for data that is
//! lost (PostgreSQL's "fsyncgate"); etcd stops the same way. A restart
//! recovers from what is durable.
//!
//! [`execute`] is the whole rule. It is made of two halves, [`start_ready`]
//! (steps 1 and 2, up to the write) and [`AfterWrite::finish`] (the rest),
//! for a runtime whose write completes later: the rule scripts
//! (`src/raft/script/`) leave a leader's write in progress to show §10.2.1,
//! with the same executor the runtime and the simulator run.

use std::io;

use super::bugs::Bug;
use super::configuration::Configuration;
use super::core::Raft;
use super::messages::{Index, Term};
use super::ready::{ApplyMsg, Outbound, Persist, Ready};

/// What a runtime does for the executor: the effects, never their order.
///
/// Every method that returns `Err` halts the execution at once: the executor
/// calls nothing after it, [`Effects::core`] included.
pub trait Effects {
    /// Why an execution stopped early.
    type Halt;

    /// The core whose output is executed.
    fn core(&mut self) -> &mut Raft;

    /// Sees each `Ready` as the core hands it over, before any of it is
    /// executed (the simulator's checker looks here). Does nothing by default.
    fn inspect(&mut self, _ready: &Ready) -> Result<(), Self::Halt> {
        Ok(())
    }

    /// Whether replies to RPCs handled since the last execution are held,
    /// waiting for [`Effects::release_replies`].
    fn holds_replies(&self) -> bool;

    /// The configuration in force changed (thesis §4.1): learn its members
    /// and their addresses. Does nothing by default.
    fn configure(&mut self, _configuration: &Configuration) -> Result<(), Self::Halt> {
        Ok(())
    }

    /// Makes `persist` durable, in [`Persist`]'s order, and returns the
    /// storage's answer.
    ///
    /// # Correctness
    /// When this returns `Ok(Ok(()))`, the state survives a crash (under
    /// [`execute`]; a runtime that calls [`start_ready`] itself may return
    /// with the write in progress, and calls [`AfterWrite::finish`] only once
    /// it is durable). When the storage refused a write (`Ok(Err(_))`), or the
    /// effects halt during the save (`Err`), any prefix of the steps may have
    /// reached the disk (a torn save), and nothing of this `Ready` that the
    /// rule puts after the write happens. A storage that refused a write
    /// refuses every later one.
    fn persist(&mut self, persist: &Persist) -> Result<io::Result<()>, Self::Halt>;

    /// The storage refused a save with `error`: stop for good (fail-stop),
    /// saying what failed and what to do, and return why the execution halts.
    fn fail_stop(&mut self, error: io::Error) -> Self::Halt;

    /// Hands the replies to the RPCs handled since the last execution to
    /// their senders, and holds none after.
    fn release_replies(&mut self) -> Result<(), Self::Halt>;

    /// Sends `messages` to peers (never empty).
    fn send(&mut self, messages: Vec<Outbound>) -> Result<(), Self::Halt>;

    /// Hands `apply` to the state machine, in order (never empty).
    fn apply(&mut self, apply: Vec<ApplyMsg>) -> Result<(), Self::Halt>;

    /// One `Ready` is executed and the next is about to be taken (the
    /// simulator's service takes a snapshot here). Does nothing by default.
    fn end_ready(&mut self) -> Result<(), Self::Halt> {
        Ok(())
    }
}

/// Executes the core's output in the order of the module documentation, until
/// the core has nothing left to do and no reply is held.
pub fn execute<E: Effects>(effects: &mut E) -> Result<(), E::Halt> {
    while let Some(after_write) = start_ready(effects)? {
        after_write.finish(effects)?;
    }
    Ok(())
}

/// Takes the core's next `Ready` and executes it up to its write: configure,
/// the messages `send_first` lets go first (thesis §10.2.1), persist. Returns
/// what the rule puts after the write, or `None` if the core had nothing to
/// do and no reply is held.
///
/// [`execute`] finishes each `Ready` at once, since its runtimes' writes are
/// durable when `persist` returns. A runtime whose write may still be in
/// progress when `persist` returns (the rule scripts' `ready N sync=later`)
/// calls [`AfterWrite::finish`] once it is durable, and takes the next
/// `Ready` only then.
pub fn start_ready<E: Effects>(effects: &mut E) -> Result<Option<AfterWrite>, E::Halt> {
    let mut ready = effects.core().ready();
    effects.inspect(&ready)?;
    if ready.is_empty() && !effects.holds_replies() {
        return Ok(None);
    }
    // 1. Configure, before any message leaves: some may go to a new member.
    if let Some(configuration) = ready.configuration.take() {
        effects.configure(&configuration)?;
    }
    let mut messages = Some(ready.messages).filter(|m| !m.is_empty());
    if ready.send_first {
        // Thesis §10.2.1: followers start writing while the leader does.
        if let Some(messages) = messages.take() {
            effects.send(messages)?;
        }
    }
    if effects.core().has_bug(Bug::ReplyBeforePersist) && effects.holds_replies() {
        effects.release_replies()?;
    }
    // 2. Persist.
    if !ready.persist.is_empty() {
        if let Err(error) = effects.persist(&ready.persist)? {
            // Fail-stop: nothing that depends on the write happens.
            if !effects.core().has_bug(Bug::IgnoreFailedSave) {
                return Err(effects.fail_stop(error));
            }
        }
    }
    Ok(Some(AfterWrite {
        written: ready.persist.log.as_ref().and_then(|w| w.last()),
        messages,
        apply: ready.apply,
    }))
}

/// What a `Ready` does once its write is durable: steps 2 (the report) to 5
/// of the module documentation. Dropping it unfinished loses the rest of the
/// `Ready`, as a crash during the write would.
#[must_use = "the replies, messages and entries to apply wait for finish"]
#[derive(Debug)]
pub struct AfterWrite {
    /// The last entry the write appended, to report durable.
    written: Option<(Index, Term)>,
    /// Messages that wait for the write (none if `send_first` sent them).
    messages: Option<Vec<Outbound>>,
    apply: Vec<ApplyMsg>,
}

impl AfterWrite {
    /// The write [`start_ready`] began is durable: reports it, releases the
    /// replies, sends, applies, and ends the `Ready`.
    pub fn finish<E: Effects>(self, effects: &mut E) -> Result<(), E::Halt> {
        // 2. The log write is durable (thesis §10.2.1: a leader counts
        // itself toward a majority only now).
        if let Some((index, term)) = self.written {
            effects.core().persisted(index, term);
        }
        // 3. Figure 2: respond to RPCs only after updating stable storage.
        if effects.holds_replies() {
            effects.release_replies()?;
        }
        // 4. Send.
        if let Some(messages) = self.messages {
            effects.send(messages)?;
        }
        // 5. Apply.
        if !self.apply.is_empty() {
            effects.apply(self.apply)?;
        }
        effects.end_ready()
    }
}
