//! A deterministic cluster simulator: the real core and service on virtual time.
//!
//! One schedule runs a whole cluster (3, 5 or 7 servers, each the real
//! [`crate::raft::Raft`] core plus the real [`crate::service::applier::Applier`])
//! and a few clients on one thread, with a virtual clock and one seeded random
//! stream per concern. Nothing sleeps, nothing reads a wall clock, nothing
//! iterates a hash map: the seed alone decides every message delay, drop,
//! duplicate and late copy, partition, crash (even in the middle of a save, or
//! right after a change of term), pause and clock skew, so any failure replays
//! exactly from its seed.
//!
//! ```text
//!  seed ──▶ Knobs (swarm: which faults, how many nodes, clients, rates)
//!            │
//!            ▼
//!  event queue (virtual time) ──▶ World::step ──▶ node: core.step → Ready →
//!     ▲                                │            persist (SimDisk) → send → apply
//!     └──── packets, ticks, faults ◀───┘         checks after every step (invariants)
//! ```
//!
//! Reading order: [`knobs`] (what a seed decides), `world.rs` (the event loop),
//! `server.rs` (how a server steps: the runtime's executor, admissions,
//! snapshot policy), `service.rs` (its service: applying what committed and
//! answering clients through the replica's mapping), `senders.rs` (the
//! runtime's queue per peer),
//! `network.rs` and `packets.rs` (how messages travel and where they land),
//! `disk.rs`, `faults.rs`, `clients.rs`, [`invariants`] (the paper's safety
//! properties, and each server's own promises, checked after every step),
//! `watchers.rs` (watchers following prefixes from each server's watch
//! history across crashes, checked against the committed changes),
//! `history.rs` and [`linearizability`] (the end-of-run checks on what the
//! clients saw), and [`runner`] (many seeds, summaries, replay and
//! shrinking). `trace.rs` prints a schedule's events as log lines;
//! [`recording`] records them for the cluster page; [`scenario`] drives a
//! cluster by hand, and [`tours`] tells stories with it.
//!
//! Wherever the runtime's logic is plain code, the simulator runs that code:
//! the executor of a `Ready`, the queue to each peer
//! ([`crate::node::peer_queue`]), the admission of proposals and reads
//! ([`crate::service::admissions`]), the snapshot policy
//! ([`crate::service::snapshot_policy`]) and the mapping of outcomes to
//! replies ([`crate::service::replica::settle`]). Where it differs from the
//! threaded runtime (`src/node/`): one event is one `Ready` (the runtime
//! batches many), the worker threads are one call per peer holding up its
//! queue, a follower answers a client with `ERR NO_LEADER` instead of
//! forwarding it (clients rotate servers, as `src/client.rs` does on that
//! reply), and messages are not encoded to bytes (the codec has its own
//! tests). NOTES.md lists what it does not cover.

mod clients;
mod disk;
mod faults;
mod history;
pub mod invariants;
pub mod knobs;
pub mod linearizability;
mod network;
mod packets;
pub mod recording;
pub mod runner;
pub mod scenario;
mod senders;
mod server;
mod service;
pub mod tours;
pub mod trace;
mod watchers;
mod world;

pub use self::knobs::{FaultKind, Knobs, Options};
pub use self::runner::{run_schedule, Outcome, RunStats, Violation};
pub use self::trace::TraceMode;

/// Virtual time in microseconds since the schedule began.
pub type Time = u64;

/// One millisecond of virtual time.
pub const MS: Time = 1_000;
/// One second of virtual time.
pub const SECOND: Time = 1_000_000;

/// Formats virtual time as `12.345s`.
pub fn format_time(t: Time) -> String {
    format!("{}.{:03}s", t / SECOND, t % SECOND / MS)
}
