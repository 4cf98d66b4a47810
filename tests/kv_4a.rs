//! Course KV service part A: a linearizable, fault-tolerant KV service without
//! snapshots. Reference: §8 (client interaction), §5 (the log underneath).

#[allow(dead_code)]
mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::kv::*;

fn generic(
    name: &'static str,
    clients: usize,
    servers: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    randomkeys: bool,
) {
    generic_test(Generic {
        name,
        clients,
        servers,
        unreliable,
        crash,
        partitions,
        maxraftstate: None,
        randomkeys,
    });
}

/// One client against five servers.
#[test]
fn basic_4a() {
    generic("Test: one client (4A)", 1, 5, false, false, false, false);
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
    generic("Test: many clients (4A)", 5, 5, false, false, false, false);
}

/// Five clients, unreliable network.
#[test]
fn unreliable_4a() {
    generic(
        "Test: unreliable net, many clients (4A)",
        5,
        5,
        true,
        false,
        false,
        false,
    );
}

/// Concurrent appends to one key on an unreliable network: each client's
/// appends appear exactly once, in order.
#[test]
fn unreliable_one_key_4a() {
    let cfg = KvCluster::new(3, true, None);
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
    let cfg = KvCluster::new(5, false, None);
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
    generic(
        "Test: partitions, one client (4A)",
        1,
        5,
        false,
        false,
        true,
        false,
    );
}

/// Random partitions, five clients.
#[test]
fn many_partitions_many_clients_4a() {
    generic(
        "Test: partitions, many clients (4A)",
        5,
        5,
        false,
        false,
        true,
        false,
    );
}

/// Every server crashes and restarts each round; one client.
#[test]
fn persist_one_client_4a() {
    generic(
        "Test: restarts, one client (4A)",
        1,
        5,
        false,
        true,
        false,
        false,
    );
}

/// Restarts, five clients.
#[test]
fn persist_concurrent_4a() {
    generic(
        "Test: restarts, many clients (4A)",
        5,
        5,
        false,
        true,
        false,
        false,
    );
}

/// Restarts on an unreliable network.
#[test]
fn persist_concurrent_unreliable_4a() {
    generic(
        "Test: unreliable net, restarts, many clients (4A)",
        5,
        5,
        true,
        true,
        false,
        false,
    );
}

/// Restarts and partitions.
#[test]
fn persist_partition_4a() {
    generic(
        "Test: restarts, partitions, many clients (4A)",
        5,
        5,
        false,
        true,
        true,
        false,
    );
}

/// Restarts, partitions, unreliable network.
#[test]
fn persist_partition_unreliable_4a() {
    generic(
        "Test: unreliable net, restarts, partitions, many clients (4A)",
        5,
        5,
        true,
        true,
        true,
        false,
    );
}

/// Everything at once with random keys, 15 clients on 7 servers; the history
/// must be linearizable.
#[test]
fn persist_partition_unreliable_linearizable_4a() {
    generic(
        "Test: unreliable net, restarts, partitions, random keys, many clients (4A)",
        15,
        7,
        true,
        true,
        true,
        true,
    );
}
