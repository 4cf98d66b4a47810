//! The replicated service: a key-value store and a money ledger on top of Raft.
//!
//! [`command`] parses the text protocol ([`kv_command`] the KV store's
//! lines); [`state_machine`] applies commands deterministically ([`kv`] with
//! its revisions, [`range`] and [`txn`] on it, [`ledger`], [`session`] for
//! exactly-once retries, [`quota`] for the size limit) and streams its
//! snapshots ([`snapshot_stream`]). Every answer is a typed [`reply::Reply`];
//! only the edges turn it into a line or an HTTP response ([`kv_json`] gives
//! ranges and transactions their JSON). [`replica`] keeps the state machine
//! in step with Raft through plain code the simulator runs too: [`applier`]
//! (outcomes), [`admissions`] (requests on their way to it) and
//! [`snapshot_policy`] (when to snapshot); [`frontend`] answers clients.
//!
//! Coordination on top of the store: [`history`] keeps the recent changes
//! and [`watch`] streams them to watchers without slowing the apply loop;
//! [`lease`] keeps leases in the replicated state, and [`lease_clock`] is
//! the leader's clock that proposes their expiry through the log.

pub mod admissions;
pub mod applier;
pub mod command;
pub mod frontend;
pub mod history;
pub mod kv;
pub mod kv_command;
pub mod kv_json;
pub mod lease;
pub mod lease_clock;
pub mod ledger;
pub mod quota;
pub mod range;
pub mod replica;
pub mod reply;
pub mod session;
pub mod snapshot_policy;
pub mod snapshot_stream;
pub mod state_machine;
pub mod txn;
pub mod watch;
