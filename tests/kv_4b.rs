//! Course KV service part B: the same service with snapshots (log compaction).
//! Reference: §7.

#[allow(dead_code)]
mod common;

use std::thread::sleep;

use common::kv::*;

const LIMIT: usize = 1000;

fn generic(
    name: &'static str,
    clients: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    randomkeys: bool,
) {
    generic_test(Generic {
        name,
        clients,
        servers: if randomkeys { 7 } else { 5 },
        unreliable,
        crash,
        partitions,
        maxraftstate: Some(LIMIT),
        randomkeys,
    });
}

/// A server cut off from a majority that compacted its log is brought up by
/// InstallSnapshot when it rejoins a different majority.
#[test]
fn snapshot_rpc_4b() {
    let cfg = KvCluster::new(3, false, Some(LIMIT));
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
    let cfg = KvCluster::new(3, false, Some(LIMIT));
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
    generic(
        "Test: restarts, snapshots, one client (4B)",
        1,
        false,
        true,
        false,
        false,
    );
}

/// Restarts with snapshots, 20 clients.
#[test]
fn snapshot_recover_many_clients_4b() {
    generic(
        "Test: restarts, snapshots, many clients (4B)",
        20,
        false,
        true,
        false,
        false,
    );
}

/// Snapshots on an unreliable network.
#[test]
fn snapshot_unreliable_4b() {
    generic(
        "Test: unreliable net, snapshots, many clients (4B)",
        5,
        true,
        false,
        false,
        false,
    );
}

/// Snapshots, unreliable network, restarts.
#[test]
fn snapshot_unreliable_recover_4b() {
    generic(
        "Test: unreliable net, restarts, snapshots, many clients (4B)",
        5,
        true,
        true,
        false,
        false,
    );
}

/// Snapshots, unreliable network, restarts, partitions.
#[test]
fn snapshot_unreliable_recover_concurrent_partition_4b() {
    generic(
        "Test: unreliable net, restarts, partitions, snapshots, many clients (4B)",
        5,
        true,
        true,
        true,
        false,
    );
}

/// Everything, random keys, 15 clients on 7 servers, checked for linearizability.
#[test]
fn snapshot_unreliable_recover_concurrent_partition_linearizable_4b() {
    generic(
        "Test: unreliable net, restarts, partitions, snapshots, random keys, many clients (4B)",
        15,
        true,
        true,
        true,
        true,
    );
}
