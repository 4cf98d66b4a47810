//! Raft consensus: a deterministic core and the thin runtime that drives it.
//!
//! Reading order: [`messages`] (the RPCs of Figure 2), [`log`] (the log with a
//! snapshot offset), [`core`] (Figure 2's state and the term rule), then the
//! rules by section: `election.rs` (§5.2, §5.4.1), `replication.rs` (§5.3,
//! §5.4.2), `snapshot.rs` (§7). [`ready`] is the core's output; [`node`] is the
//! runtime that persists, sends and applies it.

pub mod core;
mod election;
pub mod log;
pub mod messages;
pub mod node;
pub mod progress;
pub mod ready;
mod replication;
pub mod rng;
mod sender;
mod snapshot;

#[cfg(test)]
mod core_tests;

pub use self::core::{Config, InitialState, Raft, Role, Status};
pub use self::messages::{Entry, Index, NodeId, Term};
pub use self::node::Node;
pub use self::ready::{ApplyMsg, HardState, Persist, Ready, Snapshot};
