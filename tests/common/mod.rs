//! Shared test harness: the simulated network and the Raft cluster tester.

pub mod cluster;
pub mod kv;
pub mod network;
pub mod procs;
