//! Course KV service part B: the same service with snapshots (log compaction).
//! Reference: §7.

#[allow(dead_code)]
mod common;

use std::thread::sleep;

use common::kv::*;

const LIMIT: usize = 1000;

/// The generic test with snapshots at `LIMIT`.
fn with_snapshots(name: &'static str) -> Generic {
    Generic {
        maxraftstate: Some(LIMIT),
        ..Generic::new(name)
    }
}

/// A server cut off from a majority that compacted its log is brought up by
/// InstallSnapshot when it rejoins a different majority.
#[test]
fn snapshot_rpc_4b() {
    let cfg = KvCluster::builder(3).max_raft_state(LIMIT).start();
    let mut ck = cfg.make_clerk(&cfg.all());
    cfg.begin("Test: InstallSnapshot RPC (4B)");
    put(&mut ck, "a", "A", None, 0);
    check(&mut ck, "a", "A");
    // A bunch of puts into the majority partition.
    cfg.partition(&[0, 1], &[2]);
    {
        let mut ck1 = cfg.make_clerk(&[0, 1]);
        for i in 0..50 {
            put(&mut ck1, &i.to_string(), &i.to_string(), None, 0);
        }
        sleep(ELECTION_TIMEOUT);
        put(&mut ck1, "b", "B", None, 0);
    }
    // The majority has thrown away most of its log.
    let size = cfg.log_size();
    assert!(
        size <= 8 * LIMIT,
        "logs were not trimmed ({size} > 8*{LIMIT})"
    );
    // Now a group that needs the lagging server, which must catch up.
    cfg.partition(&[0, 2], &[1]);
    {
        let mut ck1 = cfg.make_clerk(&[0, 2]);
        put(&mut ck1, "c", "C", None, 0);
        put(&mut ck1, "d", "D", None, 0);
        check(&mut ck1, "a", "A");
        check(&mut ck1, "b", "B");
        check(&mut ck1, "1", "1");
        check(&mut ck1, "49", "49");
    }
    // Now everybody.
    cfg.partition(&[0, 1, 2], &[]);
    put(&mut ck, "e", "E", None, 0);
    check(&mut ck, "c", "C");
    check(&mut ck, "e", "E");
    check(&mut ck, "1", "1");
    cfg.end();
}

/// 800 operations on one key keep the log and the snapshot small.
#[test]
fn snapshot_size_4b() {
    let cfg = KvCluster::builder(3).max_raft_state(LIMIT).start();
    let mut ck = cfg.make_clerk(&cfg.all());
    cfg.begin("Test: snapshot size is reasonable (4B)");
    for _ in 0..200 {
        put(&mut ck, "x", "0", None, 0);
        check(&mut ck, "x", "0");
        put(&mut ck, "x", "1", None, 0);
        check(&mut ck, "x", "1");
    }
    // Servers have thrown away most of their log entries...
    let size = cfg.log_size();
    assert!(
        size <= 8 * LIMIT,
        "logs were not trimmed ({size} > 8*{LIMIT})"
    );
    // ...and their snapshots are not unreasonably large.
    let snapshot = cfg.snapshot_size();
    assert!(snapshot <= 500, "snapshot too large ({snapshot} > 500)");
    cfg.end();
}

/// As `speed_4a`, with snapshots.
#[test]
fn speed_4b() {
    speed_test("Test: ops complete fast enough (4B)", Some(LIMIT));
}

/// Restarts with snapshots, one client.
#[test]
fn snapshot_recover_4b() {
    generic_test(Generic {
        crash: true,
        ..with_snapshots("Test: restarts, snapshots, one client (4B)")
    });
}

/// Restarts with snapshots, 20 clients.
#[test]
fn snapshot_recover_many_clients_4b() {
    generic_test(Generic {
        clients: 20,
        crash: true,
        ..with_snapshots("Test: restarts, snapshots, many clients (4B)")
    });
}

/// Snapshots on an unreliable network.
#[test]
fn snapshot_unreliable_4b() {
    generic_test(Generic {
        clients: 5,
        unreliable: true,
        ..with_snapshots("Test: unreliable net, snapshots, many clients (4B)")
    });
}

/// Snapshots, unreliable network, restarts.
#[test]
fn snapshot_unreliable_recover_4b() {
    generic_test(Generic {
        clients: 5,
        unreliable: true,
        crash: true,
        ..with_snapshots("Test: unreliable net, restarts, snapshots, many clients (4B)")
    });
}

/// Snapshots, unreliable network, restarts, partitions.
#[test]
fn snapshot_unreliable_recover_concurrent_partition_4b() {
    generic_test(Generic {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        ..with_snapshots("Test: unreliable net, restarts, partitions, snapshots, many clients (4B)")
    });
}

/// Everything, random keys, 15 clients on 7 servers, checked for linearizability.
#[test]
fn snapshot_unreliable_recover_concurrent_partition_linearizable_4b() {
    generic_test(Generic {
        clients: 15,
        servers: 7,
        unreliable: true,
        crash: true,
        partitions: true,
        randomkeys: true,
        ..with_snapshots(
            "Test: unreliable net, restarts, partitions, snapshots, random keys, many clients (4B)",
        )
    });
}
