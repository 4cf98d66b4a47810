//! raftkv: a reference implementation of the Raft consensus algorithm.
//!
//! Raft keeps a log replicated on a cluster of servers so that they apply the
//! same commands in the same order, and stays available while a majority is up
//! (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm",
//! 2014; section numbers in comments refer to it).
//!
//! # Reading order
//! 1. [`raft::messages`]: the RPCs of Figure 2, field for field.
//! 2. [`raft::log`]: the log, with the offset left by a snapshot.
//! 3. [`raft::core`]: Figure 2's state, the term rule and the core's ten
//!    entry points; then the rules, one file per section:
//!    `raft/election.rs` (§5.2, §5.4.1, pre-vote thesis §9.6),
//!    `raft/replication.rs` (§5.3, §5.4.2) with [`raft::progress`] (what a
//!    leader knows of each follower, flow control), `raft/snapshot.rs` (§7,
//!    Figure 13), `raft/leadership.rs` (check-quorum thesis §6.2, stickiness
//!    §4.2.3, transfer §3.10), `raft/read_index.rs` (reads without log
//!    entries, thesis §6.4) and [`raft::membership`] (thesis §4) with
//!    [`raft::configuration`].
//!    Beside them, [`raft::rng`] draws election timeouts from a seed,
//!    [`raft::verdict`] records which rule decided each answer, and
//!    [`raft::bugs`] switches one rule off for the simulator to catch.
//! 4. [`raft::ready`]: what the core asks of the world: persist → send → apply;
//!    [`raft::executor`]: that order, written once, with the effects a runtime
//!    supplies ([`raft::Effects`]).
//! 5. [`node`]: the runtime's effects, with [`transport`] and [`storage`].
//! 6. [`codec`]: the binary encoding of everything on the wire and on disk;
//!    [`json`]: JSON values, encoding and a strict parser (HTTP bodies, the
//!    text protocol's ranges and transactions, traces).
//! 7. [`sim`]: the deterministic simulator that runs the core, the executor,
//!    the runtime's queues per peer and the service under thousands of fault
//!    schedules and checks the paper's properties.
//! 8. [`service`] and [`server`]: the KV store and ledger on top, with client
//!    sessions, typed replies ([`service::reply`]) and the bounds that keep its
//!    state finite, and the one TCP port
//!    for peers, text clients ([`client`], [`watch_client`]) and [`http`] (JSON API written with
//!    [`json`], `/metrics` from [`metrics`], the live cluster page).
//! 9. [`auth`]: who may talk to a server: peers prove they hold the cluster
//!    key (an HMAC-SHA256 tag on every message), clients present a token.
//! 10. [`events`]: what happened on a server, as data (an RPC and the rule
//!     that answered it, a vote, a commit, ...), one model for the live
//!     runtime (`GET /events`), the simulator's traces and the page that
//!     replays both; [`sim::tours`] are narrated runs that are also tests.
//! 11. [`logger`]: one line per event that matters, on stderr.
//!
//! # Threads of one server
//! ```text
//!   clients, peers ──▶ connection threads ──▶ events channel ──▶ node thread: owns the Raft core
//!   (one TCP port)     (one per connection)                      │     │     │
//!                                 1. persist: Storage::save ◀────┘     │     └──▶ 3. apply: one batch
//!                                 2. send: per-peer sender threads ◀───┘          per Ready ──▶ service
//!                                    ──▶ Transporter (replies come back as events)
//! ```
//!
//! The core ([`raft::Raft`]) is deterministic: no threads, clocks, sockets or
//! files, randomness from a seeded generator. Each of its rules is a script
//! in `src/raft/testdata/` that prints every message and state change; the
//! scenario tests in `tests/` run whole clusters over a simulated network
//! that drops, delays, reorders and partitions. NOTES.md is the guided tour
//! of all of it.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod codec;
pub mod events;
pub mod http;
pub mod json;
pub mod logger;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod server;
pub mod service;
pub mod sim;
pub mod storage;
pub mod transport;
pub mod watch_client;
