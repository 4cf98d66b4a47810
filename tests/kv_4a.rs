//! Course KV service part A: a linearizable, fault-tolerant KV service without
//! snapshots. Reference: §8 (client interaction), §5 (the log underneath).

#[allow(dead_code)]
mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::kv::*;

/// One client against five servers.
#[test]
fn basic_4a() {
    generic_test(Generic::new("Test: one client (4A)"));
}

/// 1000 sequential appends average well under a heartbeat interval: commits
/// must not wait for the next heartbeat.
#[test]
fn speed_4a() {
    speed_test("Test: ops complete fast enough (4A)", None);
}

/// Five concurrent clients.
#[test]
fn concurrent_4a() {
    generic_test(Generic {
        clients: 5,
        ..Generic::new("Test: many clients (4A)")
    });
}

/// Five clients, unreliable network.
#[test]
fn unreliable_4a() {
    generic_test(Generic {
        clients: 5,
        unreliable: true,
        ..Generic::new("Test: unreliable net, many clients (4A)")
    });
}

/// Concurrent appends to one key on an unreliable network: each client's
/// appends appear exactly once, in order.
#[test]
fn unreliable_one_key_4a() {
    let cfg = KvCluster::builder(3).unreliable().start();
    let mut ck = cfg.make_clerk(&cfg.all());
    cfg.begin("Test: concurrent append to same key, unreliable (4A)");
    put(&mut ck, "k", "", None, 0);
    const CLIENTS: usize = 5;
    const UPTO: usize = 10;
    thread::scope(|s| {
        for me in 0..CLIENTS {
            let cfg = &cfg;
            s.spawn(move || {
                let mut myck = cfg.make_clerk(&cfg.all());
                for n in 0..UPTO {
                    append(&mut myck, "k", &format!("x {me} {n} y"), None, me);
                }
            });
        }
    });
    let v = get(&mut ck, "k", None, 0);
    check_concurrent_appends(&v, &[UPTO; CLIENTS]);
    cfg.end();
}

/// The majority makes progress while the old leader sits in a minority; the
/// minority answers nothing; after healing, its pending requests complete.
#[test]
fn one_partition_4a() {
    let cfg = KvCluster::builder(5).start();
    let mut ck = cfg.make_clerk(&cfg.all());
    put(&mut ck, "1", "13", None, 0);
    cfg.begin("Test: progress in majority (4A)");
    let (p1, p2) = cfg.make_partition();
    cfg.partition(&p1, &p2);
    let mut ckp1 = cfg.make_clerk(&p1);
    let mut ckp2a = cfg.make_clerk(&p2);
    let mut ckp2b = cfg.make_clerk(&p2);
    put(&mut ckp1, "1", "14", None, 0);
    check(&mut ckp1, "1", "14");
    cfg.end();

    cfg.begin("Test: no progress in minority (4A)");
    let (done_put, put_done) = mpsc::channel();
    let (done_get, get_done) = mpsc::channel();
    let (a_endpoint, b_endpoint) = (ckp2a.endpoint, ckp2b.endpoint);
    let put_thread = thread::spawn(move || {
        put(&mut ckp2a, "1", "15", None, 0);
        let _ = done_put.send(());
        ckp2a
    });
    let get_thread = thread::spawn(move || {
        get(&mut ckp2b, "1", None, 0); // a different clerk in the minority
        let _ = done_get.send(());
        ckp2b
    });
    // Neither may complete while partitioned.
    match put_done.recv_timeout(Duration::from_secs(1)) {
        Ok(()) => panic!("Put in minority completed"),
        Err(_) => assert!(get_done.try_recv().is_err(), "Get in minority completed"),
    }
    check(&mut ckp1, "1", "14");
    put(&mut ckp1, "1", "16", None, 0);
    check(&mut ckp1, "1", "16");
    cfg.end();

    cfg.begin("Test: completion after heal (4A)");
    cfg.connect_all();
    cfg.connect_clerk(a_endpoint, &cfg.all());
    cfg.connect_clerk(b_endpoint, &cfg.all());
    thread::sleep(ELECTION_TIMEOUT);
    put_done
        .recv_timeout(Duration::from_secs(3))
        .expect("Put did not complete");
    get_done
        .recv_timeout(Duration::from_secs(3))
        .expect("Get did not complete");
    put_thread.join().unwrap();
    get_thread.join().unwrap();
    check(&mut ck, "1", "15");
    cfg.end();
}

/// Random partitions, one client.
#[test]
fn many_partitions_one_client_4a() {
    generic_test(Generic {
        partitions: true,
        ..Generic::new("Test: partitions, one client (4A)")
    });
}

/// Random partitions, five clients.
#[test]
fn many_partitions_many_clients_4a() {
    generic_test(Generic {
        clients: 5,
        partitions: true,
        ..Generic::new("Test: partitions, many clients (4A)")
    });
}

/// Every server crashes and restarts each round; one client.
#[test]
fn persist_one_client_4a() {
    generic_test(Generic {
        crash: true,
        ..Generic::new("Test: restarts, one client (4A)")
    });
}

/// Restarts, five clients.
#[test]
fn persist_concurrent_4a() {
    generic_test(Generic {
        clients: 5,
        crash: true,
        ..Generic::new("Test: restarts, many clients (4A)")
    });
}

/// Restarts on an unreliable network.
#[test]
fn persist_concurrent_unreliable_4a() {
    generic_test(Generic {
        clients: 5,
        unreliable: true,
        crash: true,
        ..Generic::new("Test: unreliable net, restarts, many clients (4A)")
    });
}

/// Restarts and partitions.
#[test]
fn persist_partition_4a() {
    generic_test(Generic {
        clients: 5,
        crash: true,
        partitions: true,
        ..Generic::new("Test: restarts, partitions, many clients (4A)")
    });
}

/// Restarts, partitions, unreliable network.
#[test]
fn persist_partition_unreliable_4a() {
    generic_test(Generic {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        ..Generic::new("Test: unreliable net, restarts, partitions, many clients (4A)")
    });
}

/// Everything at once with random keys, 15 clients on 7 servers; the history
/// must be linearizable.
#[test]
fn persist_partition_unreliable_linearizable_4a() {
    generic_test(Generic {
        clients: 15,
        servers: 7,
        unreliable: true,
        crash: true,
        partitions: true,
        randomkeys: true,
        ..Generic::new("Test: unreliable net, restarts, partitions, random keys, many clients (4A)")
    });
}
