//! Shared test harness: the simulated network and the Raft cluster tester.

pub mod chromium;
pub mod cluster;
pub mod http;
pub mod kv;
pub mod links;
pub mod network;
pub mod procs;
pub mod tmpfs;
