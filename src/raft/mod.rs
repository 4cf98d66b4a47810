//! Raft consensus: the deterministic core, with no threads, clocks, sockets or files.
//!
//! Reading order: [`messages`] (the RPCs of Figure 2), [`log`] (the log with a
//! snapshot offset), [`core`] (Figure 2's state and the term rule), then the
//! rules by section: `election.rs` (§5.2, §5.4.1, pre-vote §9.6),
//! `replication.rs` (§5.3, §5.4.2) with [`progress`] (what a leader knows of
//! each follower, and flow control), `snapshot.rs` (§7), `leadership.rs`
//! (check-quorum §6.2, stickiness §4.2.3, leadership transfer §3.10; thesis
//! sections), `read_index.rs` (reads without log entries, thesis §6.4),
//! [`membership`] (thesis §4: adding and removing servers, with
//! the [`configuration`] they change). [`ready`] is the core's output, and
//! [`executor`] executes it in the one order every runtime follows (persist,
//! then release replies, send, apply); the runtime in [`crate::node`] and the
//! simulator (`src/sim/`) supply only the effects. [`rng`] draws election
//! timeouts from a seed; [`bugs`] switches one rule off, for the simulator
//! to catch; [`verdict`] says which rule decided the answer to the last
//! request (read by event streams, never by the core).
//!
//! Nothing here imports the modules that do I/O: the core is a value that
//! input goes into and a [`Ready`] comes out of.
//!
//! Tests: each rule is a script in `testdata/`, run by the runner in
//! `script/` (NOTES.md, "Rule scripts"); `rule_tests.rs` holds the few that
//! loop or count, and `executor_tests.rs` checks the executor's order of
//! effects with a recording fake.

pub mod bugs;
pub mod configuration;
pub mod core;
mod election;
pub mod executor;
pub mod leadership;
pub mod log;
pub mod membership;
pub mod messages;
pub mod progress;
mod read_index;
pub mod ready;
pub mod replication;
pub mod rng;
pub mod snapshot;
pub mod verdict;

#[cfg(test)]
mod executor_tests;
#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod script;

pub use self::bugs::Bug;
pub use self::configuration::Configuration;
pub use self::core::{Config, InitialState, Raft, Role, Status};
pub use self::executor::Effects;
pub use self::leadership::TransferError;
pub use self::membership::{
    AbortReason, ChangeStage, ChangeStatus, MembershipChange, MembershipError,
};
pub use self::messages::{Entry, Index, NodeId, Term};
pub use self::ready::{ApplyMsg, HardState, Persist, Ready, Snapshot, SnapshotChunk};
pub use self::replication::ProposeError;
pub use self::verdict::Verdict;
