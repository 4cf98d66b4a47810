//! Course Raft part B: log agreement. Reference: §5.3, §5.4.

#[allow(dead_code)]
mod common;

use std::sync::{Arc, Mutex};
use std::thread::{self, sleep};
use std::time::Duration;

use common::cluster::{cmd, Cluster, ELECTION_TIMEOUT};

/// Entries commit at the indexes `start` returned, starting at 1. Reference: §5.3.
#[test]
fn basic_agree_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): basic agreement");
    for index in 1..=3u64 {
        let (nd, _) = cfg.n_committed(index);
        assert_eq!(nd, 0, "some have committed before start()");
        let xindex = cfg.one(cmd(index * 100), servers, false);
        assert_eq!(xindex, index, "got index {xindex} but expected {index}");
    }
    cfg.end();
}

/// Each command is sent to each peer just once. Reference: §5.3.
#[test]
fn rpc_bytes_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): RPC byte count");
    cfg.one(cmd(99), servers, false);
    let bytes0 = cfg.bytes_total();
    let mut sent = 0u64;
    for index in 2..12u64 {
        let command: Vec<u8> = (0..5000).map(|_| b'a' + cfg.random(26) as u8).collect();
        sent += command.len() as u64;
        let xindex = cfg.one(command, servers, false);
        assert_eq!(xindex, index, "got index {xindex} but expected {index}");
    }
    let got = cfg.bytes_total() - bytes0;
    let expected = servers as u64 * sent;
    assert!(
        got <= expected + 50_000,
        "too many RPC bytes; got {got}, expected {expected}"
    );
    cfg.end();
}

/// Agreement continues with one follower down, and stops with two.
/// Reference: §5.3.
#[test]
fn follower_failure_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): test progressive failure of followers");
    cfg.one(cmd(101), servers, false);
    // Disconnect one follower from the network.
    let leader1 = cfg.check_one_leader();
    cfg.disconnect((leader1 + 1) % servers);
    // The leader and remaining follower should be able to agree despite the
    // disconnected follower.
    cfg.one(cmd(102), servers - 1, false);
    sleep(ELECTION_TIMEOUT);
    cfg.one(cmd(103), servers - 1, false);
    // Disconnect the remaining follower.
    let leader2 = cfg.check_one_leader();
    cfg.disconnect((leader2 + 1) % servers);
    cfg.disconnect((leader2 + 2) % servers);
    // Submit a command.
    let (index, _) = cfg
        .start(leader2, cmd(104))
        .expect("leader rejected start()");
    assert_eq!(index, 4, "expected index 4, got {index}");
    sleep(2 * ELECTION_TIMEOUT);
    // Check that the command didn't commit.
    let (n, _) = cfg.n_committed(index);
    assert_eq!(n, 0, "{n} committed but no majority");
    cfg.end();
}

/// A new leader takes over when the leader fails; nothing commits without a
/// majority. Reference: §5.3.
#[test]
fn leader_failure_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): test failure of leaders");
    cfg.one(cmd(101), servers, false);
    // Disconnect the first leader.
    let leader1 = cfg.check_one_leader();
    cfg.disconnect(leader1);
    // The remaining followers should elect a new leader.
    cfg.one(cmd(102), servers - 1, false);
    sleep(ELECTION_TIMEOUT);
    cfg.one(cmd(103), servers - 1, false);
    // Disconnect the new leader.
    let leader2 = cfg.check_one_leader();
    cfg.disconnect(leader2);
    // Submit a command to each server.
    for i in 0..servers {
        cfg.start(i, cmd(104));
    }
    sleep(2 * ELECTION_TIMEOUT);
    // Check that command 104 did not commit.
    let (n, _) = cfg.n_committed(4);
    assert_eq!(n, 0, "{n} committed but no majority");
    cfg.end();
}

/// A follower that missed entries catches up when it reconnects. Reference: §5.3.
#[test]
fn fail_agree_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): agreement after follower reconnects");
    cfg.one(cmd(101), servers, false);
    // Disconnect one follower from the network.
    let leader = cfg.check_one_leader();
    cfg.disconnect((leader + 1) % servers);
    // The leader and remaining follower should be able to agree.
    cfg.one(cmd(102), servers - 1, false);
    cfg.one(cmd(103), servers - 1, false);
    sleep(ELECTION_TIMEOUT);
    cfg.one(cmd(104), servers - 1, false);
    cfg.one(cmd(105), servers - 1, false);
    // Re-connect.
    cfg.connect((leader + 1) % servers);
    // The full set of servers should preserve previous agreements, and be able
    // to agree on new commands.
    cfg.one(cmd(106), servers, true);
    sleep(ELECTION_TIMEOUT);
    cfg.one(cmd(107), servers, true);
    cfg.end();
}

/// A leader cut off from a majority accepts entries but cannot commit them.
/// Reference: §5.3.
#[test]
fn fail_no_agree_3b() {
    let servers = 5;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): no agreement if too many followers disconnect");
    cfg.one(cmd(10), servers, false);
    // 3 of 5 followers disconnect.
    let leader = cfg.check_one_leader();
    cfg.disconnect((leader + 1) % servers);
    cfg.disconnect((leader + 2) % servers);
    cfg.disconnect((leader + 3) % servers);
    let (index, _) = cfg.start(leader, cmd(20)).expect("leader rejected start()");
    assert_eq!(index, 2, "expected index 2, got {index}");
    sleep(2 * ELECTION_TIMEOUT);
    let (n, _) = cfg.n_committed(index);
    assert_eq!(n, 0, "{n} committed but no majority");
    // Repair.
    cfg.connect((leader + 1) % servers);
    cfg.connect((leader + 2) % servers);
    cfg.connect((leader + 3) % servers);
    // The disconnected majority may have chosen a leader from among their own
    // ranks, forgetting index 2.
    let leader2 = cfg.check_one_leader();
    let (index2, _) = cfg
        .start(leader2, cmd(30))
        .expect("leader2 rejected start()");
    assert!((2..=3).contains(&index2), "unexpected index {index2}");
    cfg.one(cmd(1000), servers, true);
    cfg.end();
}

/// Concurrent `start` calls on the leader all commit. Reference: §5.3.
#[test]
fn concurrent_starts_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): concurrent start()s");
    let mut success = false;
    'attempt: for attempt in 0..5 {
        if attempt > 0 {
            // Give the solution some time to settle.
            sleep(Duration::from_secs(3));
        }
        let leader = cfg.check_one_leader();
        let Some((_, term)) = cfg.start(leader, cmd(1)) else {
            // Leader moved on really quickly.
            continue;
        };
        let node = cfg.node(leader).expect("leader is up");
        let indexes = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..5u64)
            .map(|ii| {
                let node = Arc::clone(&node);
                let indexes = Arc::clone(&indexes);
                thread::spawn(move || {
                    if let Ok((index, term1)) = node.start(cmd(100 + ii)) {
                        if term1 == term {
                            indexes.lock().unwrap().push(index);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        for j in 0..servers {
            if cfg.state(j).0 != term {
                // Term changed: we can't expect low RPC counts.
                continue 'attempt;
            }
        }
        let mut cmds = Vec::new();
        for index in indexes.lock().unwrap().clone() {
            match cfg.wait(index, servers, Some(term)) {
                Some(c) => cmds.push(c),
                None => continue 'attempt, // peers have moved on to later terms
            }
        }
        for ii in 0..5u64 {
            assert!(
                cmds.contains(&cmd(100 + ii)),
                "cmd {} missing in {:?}",
                100 + ii,
                cmds
            );
        }
        success = true;
        break;
    }
    assert!(success, "term changed too often");
    cfg.end();
}

/// A partitioned leader's uncommitted entries are replaced when it rejoins.
/// Reference: §5.3, §5.4.
#[test]
fn rejoin_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): rejoin of partitioned leader");
    cfg.one(cmd(101), servers, true);
    // Leader network failure.
    let leader1 = cfg.check_one_leader();
    cfg.disconnect(leader1);
    // Make the old leader try to agree on some entries.
    cfg.start(leader1, cmd(102));
    cfg.start(leader1, cmd(103));
    cfg.start(leader1, cmd(104));
    // New leader commits, also for index=2.
    cfg.one(cmd(103), 2, true);
    // New leader network failure.
    let leader2 = cfg.check_one_leader();
    cfg.disconnect(leader2);
    // Old leader connected again.
    cfg.connect(leader1);
    cfg.one(cmd(104), 2, true);
    // All together now.
    cfg.connect(leader2);
    cfg.one(cmd(105), servers, true);
    cfg.end();
}

/// The leader backs up quickly over long runs of conflicting entries.
/// Reference: §5.3 (the optimization in its last paragraphs).
#[test]
fn backup_3b() {
    let servers = 5;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): leader backs up quickly over incorrect follower logs");
    let r = cfg.random(1 << 40);
    cfg.one(cmd(r), servers, true);
    // Put leader and one follower in a partition.
    let leader1 = cfg.check_one_leader();
    cfg.disconnect((leader1 + 2) % servers);
    cfg.disconnect((leader1 + 3) % servers);
    cfg.disconnect((leader1 + 4) % servers);
    // Submit lots of commands that won't commit.
    for _ in 0..50 {
        let r = cfg.random(1 << 40);
        cfg.start(leader1, cmd(r));
    }
    sleep(ELECTION_TIMEOUT / 2);
    cfg.disconnect(leader1 % servers);
    cfg.disconnect((leader1 + 1) % servers);
    // Allow other partition to recover.
    cfg.connect((leader1 + 2) % servers);
    cfg.connect((leader1 + 3) % servers);
    cfg.connect((leader1 + 4) % servers);
    // Lots of successful commands to new group.
    for _ in 0..50 {
        let r = cfg.random(1 << 40);
        cfg.one(cmd(r), 3, true);
    }
    // Now another partitioned leader and one follower.
    let leader2 = cfg.check_one_leader();
    let mut other = (leader1 + 2) % servers;
    if leader2 == other {
        other = (leader2 + 1) % servers;
    }
    cfg.disconnect(other);
    // Lots more commands that won't commit.
    for _ in 0..50 {
        let r = cfg.random(1 << 40);
        cfg.start(leader2, cmd(r));
    }
    sleep(ELECTION_TIMEOUT / 2);
    // Bring original leader back to life.
    for i in 0..servers {
        cfg.disconnect(i);
    }
    cfg.connect(leader1 % servers);
    cfg.connect((leader1 + 1) % servers);
    cfg.connect(other);
    // Lots of successful commands to new group.
    for _ in 0..50 {
        let r = cfg.random(1 << 40);
        cfg.one(cmd(r), 3, true);
    }
    // Now everyone.
    for i in 0..servers {
        cfg.connect(i);
    }
    let r = cfg.random(1 << 40);
    cfg.one(cmd(r), servers, true);
    cfg.end();
}

/// Elections and agreement use few RPCs, and an idle cluster only heartbeats.
/// Reference: §5.2, §5.3.
#[test]
fn count_3b() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3B): RPC counts aren't too high");
    let rpcs = |cfg: &Cluster| (0..servers).map(|j| cfg.rpc_count(j)).sum::<u64>();
    cfg.check_one_leader();
    let total1 = rpcs(&cfg);
    assert!(
        (1..=30).contains(&total1),
        "too many or few RPCs ({total1}) to elect initial leader"
    );
    let mut total2 = 0;
    let mut success = false;
    'attempt: for attempt in 0..5 {
        if attempt > 0 {
            // Give the solution some time to settle.
            sleep(Duration::from_secs(3));
        }
        let leader = cfg.check_one_leader();
        let total1 = rpcs(&cfg);
        let iters = 10u64;
        let Some((starti, term)) = cfg.start(leader, cmd(1)) else {
            continue;
        };
        let mut cmds = Vec::new();
        for i in 1..iters + 2 {
            let x = cfg.random(1 << 31);
            cmds.push(cmd(x));
            match cfg.start(leader, cmd(x)) {
                Some((index1, term1)) if term1 == term => {
                    assert_eq!(index1, starti + i, "start() failed");
                }
                _ => continue 'attempt,
            }
        }
        for i in 1..iters + 1 {
            match cfg.wait(starti + i, servers, Some(term)) {
                Some(c) => assert_eq!(c, cmds[(i - 1) as usize], "wrong value committed"),
                None => continue 'attempt,
            }
        }
        if (0..servers).any(|j| cfg.state(j).0 != term) {
            // Term changed: we can't expect low RPC counts.
            continue;
        }
        total2 = rpcs(&cfg);
        assert!(
            total2 - total1 <= (iters + 1 + 3) * 3,
            "too many RPCs ({}) for {iters} entries",
            total2 - total1
        );
        success = true;
        break;
    }
    assert!(success, "term changed too often");
    sleep(ELECTION_TIMEOUT);
    let total3 = rpcs(&cfg);
    assert!(
        total3 - total2 <= 3 * 20,
        "too many RPCs ({}) for 1 second of idleness",
        total3 - total2
    );
    cfg.end();
}
