//! `GET /metrics`: every metric this server keeps, in Prometheus text format.
//!
//! Names follow etcd's (`etcd_server_has_leader` → `raftkv_server_has_leader`,
//! `etcd_disk_wal_fsync_duration_seconds` → `raftkv_disk_wal_fsync_duration_seconds`,
//! ...) except where etcd breaks Prometheus' rules: its
//! `proposals_committed_total` and `proposals_applied_total` are gauges
//! holding indexes; here those are real counters, and the indexes are gauges
//! named `raftkv_raft_*_index`. Values that are copies of state (term, role,
//! indexes, sizes) are read when scraped; counters and histograms are kept by
//! their owners (`metrics::raft::RaftMetrics`, the frontend, the server).

use super::response::Response;
use super::Context;
use crate::metrics::text::{Exposition, Kind, CONTENT_TYPE};
use crate::metrics::CounterVec;
use crate::raft::Role;

/// The `/metrics` response.
pub fn response(ctx: &Context) -> Response {
    Response::new(200, CONTENT_TYPE, render(ctx))
}

/// The exposition text.
pub fn render(ctx: &Context) -> String {
    let replica = ctx.frontend.replica();
    let node = replica.node();
    let (s, m) = (node.status(), node.metrics());
    let stats = replica.stats();
    let mut e = Exposition::new();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };

    e.family(
        "raftkv_build_info",
        Kind::Gauge,
        "Always 1; the labels say which build runs.",
    );
    e.sample(
        "raftkv_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let start = ctx.started.duration_since(std::time::UNIX_EPOCH);
    e.gauge(
        "raftkv_process_start_time_seconds",
        "When the server started, in seconds since the Unix epoch.",
        start.map_or(0.0, |d| d.as_secs_f64()),
    );

    // Raft state, read from the node's status.
    e.gauge(
        "raftkv_server_has_leader",
        "1 if this server knows a leader, else 0.",
        flag(s.leader_id.is_some()),
    );
    e.gauge(
        "raftkv_server_is_leader",
        "1 if this server is the leader, else 0.",
        flag(s.role == Role::Leader),
    );
    e.counter(
        "raftkv_server_leader_changes_seen_total",
        "Leaders seen: a leader appeared for a new term, or a different one.",
        m.leader_changes.get(),
    );
    e.counter(
        "raftkv_server_elections_started_total",
        "Times this server became a candidate.",
        m.elections_started.get(),
    );
    e.gauge(
        "raftkv_raft_term",
        "This server's current term.",
        s.term as f64,
    );
    e.family(
        "raftkv_raft_role",
        Kind::Gauge,
        "1 for this server's role, 0 for the others.",
    );
    for role in [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
    ] {
        let name = role.to_string();
        e.sample("raftkv_raft_role", &[("role", &name)], flag(s.role == role));
    }
    for (name, help, value) in [
        (
            "raftkv_raft_commit_index",
            "Highest log index known to be committed.",
            s.commit_index,
        ),
        (
            "raftkv_raft_applied_index",
            "Highest log index applied to the state machine.",
            s.last_applied,
        ),
        (
            "raftkv_raft_snapshot_index",
            "Last log index covered by the snapshot.",
            s.snapshot_index,
        ),
        (
            "raftkv_raft_last_log_index",
            "Index of the last log entry.",
            s.last_log_index,
        ),
    ] {
        e.gauge(name, help, value as f64);
    }

    // Proposals.
    e.counter(
        "raftkv_server_proposals_committed_total",
        "Log entries this server learned were committed since it started.",
        m.proposals_committed.get(),
    );
    e.counter(
        "raftkv_server_proposals_applied_total",
        "Log entries this server applied since it started.",
        m.proposals_applied.get(),
    );
    e.gauge(
        "raftkv_server_proposals_pending",
        "Client proposals waiting for their outcome.",
        m.proposals_pending.get() as f64,
    );
    e.family(
        "raftkv_server_proposals_failed_total",
        Kind::Counter,
        "Proposals made as leader that got no reply: leadership_lost (replaced by another leader's entry), timeout (outcome unknown).",
    );
    for (reason, counter) in [
        ("leadership_lost", &m.proposals_failed_leadership_lost),
        ("timeout", &m.proposals_failed_timeout),
    ] {
        let name = "raftkv_server_proposals_failed_total";
        e.sample(name, &[("reason", reason)], counter.get() as f64);
    }

    // Disk and network.
    for (name, help, histogram) in [
        (
            "raftkv_disk_wal_fsync_duration_seconds",
            "Time to make new log entries and term/vote durable (write and fsync).",
            &m.wal_fsync,
        ),
        (
            "raftkv_snapshot_save_duration_seconds",
            "Time to make a snapshot durable (taken here or received from the leader).",
            &m.snapshot_save,
        ),
        (
            "raftkv_snapshot_install_duration_seconds",
            "Time for the state machine to restore itself from a snapshot.",
            &m.snapshot_install,
        ),
    ] {
        e.family(name, Kind::Histogram, help);
        e.histogram(name, &[], &histogram.snapshot());
    }
    e.gauge(
        "raftkv_storage_failed",
        "1 once a storage write failed and the node stopped for good (fail-stop), else 0.",
        flag(node.failure().is_some()),
    );
    if let Some(disk) = ctx.frontend.disk_space() {
        if let Some(free) = disk.free_bytes() {
            e.gauge(
                "raftkv_disk_free_bytes",
                "Bytes this server may still write in its data directory's file system (df's Available, less what storage wrote since it last ran).",
                free as f64,
            );
        }
        e.gauge(
            "raftkv_disk_min_free_bytes",
            "Free space below which writes that grow the state are refused: -min-free-bytes plus the newest snapshot's size (0: the guard is off).",
            disk.threshold() as f64,
        );
        e.gauge(
            "raftkv_disk_space_low",
            "1 while free space is below raftkv_disk_min_free_bytes and writes that grow the state get NOSPACE_DISK, else 0.",
            flag(disk.is_low()),
        );
        e.gauge(
            "raftkv_disk_data_bytes",
            "Bytes in the data directory's files (log, hard state, snapshots).",
            disk.data_bytes() as f64,
        );
    }
    let rtt = "raftkv_network_peer_round_trip_time_seconds";
    e.family(
        rtt,
        Kind::Histogram,
        "Time from sending an RPC to a peer until its reply (includes the peer's fsync when entries are sent).",
    );
    for (peer, p) in m.peers() {
        e.histogram(rtt, &[("to", &peer.to_string())], &p.round_trip.snapshot());
    }
    let failures = "raftkv_network_peer_sent_failures_total";
    e.family(failures, Kind::Counter, "RPCs to a peer that got no reply.");
    for (peer, p) in m.peers() {
        e.sample(
            failures,
            &[("to", &peer.to_string())],
            p.send_failures.get() as f64,
        );
    }

    // Clients.
    labeled(
        &mut e,
        "raftkv_server_client_requests_total",
        "Client requests answered (text protocol and HTTP API), by command and result code.",
        &["command", "result"],
        ctx.frontend.requests(),
    );
    labeled(
        &mut e,
        "raftkv_http_requests_total",
        "HTTP requests answered, by method, route and status code.",
        &["method", "route", "code"],
        ctx.requests,
    );
    e.gauge(
        "raftkv_server_open_connections",
        "Open TCP connections (peers and clients).",
        ctx.open_connections
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );

    // The state machine.
    e.gauge(
        "raftkv_kv_keys",
        "Keys in the key-value store.",
        stats.keys as f64,
    );
    e.gauge(
        "raftkv_kv_bytes",
        "Bytes of keys and values in the key-value store.",
        stats.kv_bytes as f64,
    );
    e.gauge(
        "raftkv_ledger_accounts",
        "Accounts in the ledger.",
        stats.accounts as f64,
    );
    e.gauge(
        "raftkv_ledger_total_balance",
        "Money in all accounts (constant once accounts are open: transfers conserve it).",
        stats.total_cents as f64 / 100.0,
    );
    e.gauge(
        "raftkv_ledger_transfers",
        "Transfers remembered for exactly-once retries (one per txid).",
        stats.transfers as f64,
    );

    // The event ring behind `/events` (absent with -events=false).
    if let Some(ring) = node.events() {
        let r = ring.stats();
        let limits = ring.limits();
        e.gauge(
            "raftkv_events_ring_events",
            "Events held in the ring behind /events.",
            r.events as f64,
        );
        e.gauge(
            "raftkv_events_ring_bytes",
            "Bytes the ring's events take, counting what they point to.",
            r.bytes as f64,
        );
        e.gauge(
            "raftkv_events_ring_limit_bytes",
            "Most bytes the ring keeps before it drops its oldest events.",
            limits.bytes as f64,
        );
        e.counter(
            "raftkv_events_recorded_total",
            "Events recorded since the server started.",
            r.recorded,
        );
        e.counter(
            "raftkv_events_dropped_total",
            "Events dropped from the ring to stay within its limits.",
            r.dropped,
        );
        e.counter(
            "raftkv_events_readers_behind_total",
            "Times a reader of /events was told it missed events and must resynchronise.",
            r.readers_behind,
        );
    }
    e.finish()
}

fn labeled(e: &mut Exposition, name: &str, help: &str, labels: &[&str], counts: &CounterVec) {
    e.family(name, Kind::Counter, help);
    for (values, count) in counts.snapshot() {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect();
        e.sample(name, &pairs, count as f64);
    }
}
