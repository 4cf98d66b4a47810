//! Course Raft part C: persistence, Figure 8, unreliable networks and churn.
//! Reference: §5.4, Figure 2 ("persistent state on all servers"), Figure 8.

#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, sleep};
use std::time::Duration;

use common::cluster::{cmd, Cluster, ClusterBuilder, ELECTION_TIMEOUT};

/// Agreement survives restarting every server, the leader, and a follower.
/// Reference: Figure 2, persistent state.
#[test]
fn persist1_3c() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3C): basic persistence");
    cfg.one(cmd(11), servers, true);
    // Crash and re-start all.
    for i in 0..servers {
        cfg.restart(i);
    }
    for i in 0..servers {
        cfg.disconnect(i);
        cfg.connect(i);
    }
    cfg.one(cmd(12), servers, true);
    let leader1 = cfg.check_one_leader();
    cfg.disconnect(leader1);
    cfg.restart(leader1);
    cfg.connect(leader1);
    cfg.one(cmd(13), servers, true);
    let leader2 = cfg.check_one_leader();
    cfg.disconnect(leader2);
    cfg.one(cmd(14), servers - 1, true);
    cfg.restart(leader2);
    cfg.connect(leader2);
    cfg.wait(4, servers, None); // wait for leader2 to join before killing i3
    let i3 = (cfg.check_one_leader() + 1) % servers;
    cfg.disconnect(i3);
    cfg.one(cmd(15), servers - 1, true);
    cfg.restart(i3);
    cfg.connect(i3);
    cfg.one(cmd(16), servers, true);
    cfg.end();
}

/// Agreement depends on logs restored from storage, over five rounds of
/// disconnects and restarts. Reference: Figure 2, persistent state.
#[test]
fn persist2_3c() {
    let servers = 5;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3C): more persistence");
    let mut index = 1;
    for _ in 0..5 {
        cfg.one(cmd(10 + index), servers, true);
        index += 1;
        let leader1 = cfg.check_one_leader();
        cfg.disconnect((leader1 + 1) % servers);
        cfg.disconnect((leader1 + 2) % servers);
        cfg.one(cmd(10 + index), servers - 2, true);
        index += 1;
        cfg.disconnect(leader1 % servers);
        cfg.disconnect((leader1 + 3) % servers);
        cfg.disconnect((leader1 + 4) % servers);
        cfg.restart((leader1 + 1) % servers);
        cfg.restart((leader1 + 2) % servers);
        cfg.connect((leader1 + 1) % servers);
        cfg.connect((leader1 + 2) % servers);
        sleep(ELECTION_TIMEOUT);
        cfg.restart((leader1 + 3) % servers);
        cfg.connect((leader1 + 3) % servers);
        cfg.one(cmd(10 + index), servers - 2, true);
        index += 1;
        cfg.connect((leader1 + 4) % servers);
        cfg.connect(leader1 % servers);
    }
    cfg.one(cmd(1000), servers, true);
    cfg.end();
}

/// A crashed leader and follower come back with their logs; a lagging server
/// is brought up to date. Reference: Figure 2, persistent state.
#[test]
fn persist3_3c() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3C): partitioned leader and one follower crash, leader restarts");
    cfg.one(cmd(101), 3, true);
    let leader = cfg.check_one_leader();
    cfg.disconnect((leader + 2) % servers);
    cfg.one(cmd(102), 2, true);
    cfg.crash(leader % servers);
    cfg.crash((leader + 1) % servers);
    cfg.connect((leader + 2) % servers);
    cfg.restart(leader % servers);
    cfg.connect(leader % servers);
    cfg.one(cmd(103), 2, true);
    cfg.restart((leader + 1) % servers);
    cfg.connect((leader + 1) % servers);
    cfg.one(cmd(104), servers, true);
    cfg.end();
}

/// Leaders crash right after accepting entries, again and again, so logs
/// diverge in the ways Figure 8 draws; only current-term entries may be
/// committed by counting replicas. Reference: §5.4.2, Figure 8.
#[test]
fn figure_8_3c() {
    let servers = 5;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3C): Figure 8");
    cfg.one(cmd(cfg.random(1 << 40)), 1, true);
    let mut nup = servers;
    for _ in 0..1000 {
        let mut leader = None;
        for i in 0..servers {
            if cfg.start(i, cmd(cfg.random(1 << 40))).is_some() {
                leader = Some(i);
            }
        }
        if cfg.random(1000) < 100 {
            let ms = cfg.random(ELECTION_TIMEOUT.as_millis() as u64 / 2);
            sleep(Duration::from_millis(ms));
        } else {
            sleep(Duration::from_millis(cfg.random(13)));
        }
        if let Some(leader) = leader {
            cfg.crash(leader);
            nup -= 1;
        }
        if nup < 3 {
            let s = cfg.random(servers as u64) as usize;
            if !cfg.is_up(s) {
                cfg.restart(s);
                cfg.connect(s);
                nup += 1;
            }
        }
    }
    for i in 0..servers {
        if !cfg.is_up(i) {
            cfg.restart(i);
            cfg.connect(i);
        }
    }
    cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    cfg.end();
}

/// Agreement despite dropped, delayed and duplicated-effect RPCs.
/// Reference: §5.3 ("retries indefinitely").
#[test]
fn unreliable_agree_3c() {
    let servers = 5;
    let cfg = Cluster::builder(servers).unreliable().start();
    cfg.begin("Test (3C): unreliable agreement");
    thread::scope(|s| {
        for iters in 1..50u64 {
            for j in 0..4u64 {
                let cfg = &cfg;
                s.spawn(move || {
                    cfg.one(cmd(100 * iters + j), 1, true);
                });
            }
            cfg.one(cmd(iters), 1, true);
        }
        cfg.set_unreliable(false);
    });
    cfg.one(cmd(100), servers, true);
    cfg.end();
}

/// Figure 8 on an unreliable network with long reordering: leaders are
/// disconnected rather than crashed. Reference: §5.4.2, Figure 8.
#[test]
fn figure_8_unreliable_3c() {
    let servers = 5;
    let cfg = Cluster::builder(servers).unreliable().start();
    cfg.begin("Test (3C): Figure 8 (unreliable)");
    cfg.one(cmd(cfg.random(10_000)), 1, true);
    let mut nup = servers;
    for iters in 0..1000 {
        if iters == 200 {
            cfg.set_long_reordering(true);
        }
        let mut leader = None;
        for i in 0..servers {
            if cfg.start(i, cmd(cfg.random(10_000))).is_some() && cfg.is_connected(i) {
                leader = Some(i);
            }
        }
        if cfg.random(1000) < 100 {
            let ms = cfg.random(ELECTION_TIMEOUT.as_millis() as u64 / 2);
            sleep(Duration::from_millis(ms));
        } else {
            sleep(Duration::from_millis(cfg.random(13)));
        }
        if let Some(leader) = leader {
            if cfg.random(1000) < ELECTION_TIMEOUT.as_millis() as u64 / 2 {
                cfg.disconnect(leader);
                nup -= 1;
            }
        }
        if nup < 3 {
            let s = cfg.random(servers as u64) as usize;
            if !cfg.is_connected(s) {
                cfg.connect(s);
                nup += 1;
            }
        }
    }
    for i in 0..servers {
        if !cfg.is_connected(i) {
            cfg.connect(i);
        }
    }
    cfg.one(cmd(cfg.random(10_000)), servers, true);
    cfg.end();
}

/// Three clients submit to every live server while servers are disconnected,
/// crashed and restarted; every value a client saw committed is in the final
/// log. Reference: §5.4.3 State Machine Safety.
fn churn(name: &str, cluster: ClusterBuilder) {
    let servers = 5;
    let cfg = cluster.start();
    cfg.begin(name);
    let stop = AtomicBool::new(false);
    let values: Vec<u64> = thread::scope(|s| {
        let clients: Vec<_> = (0..3u64)
            .map(|me| {
                let (cfg, stop) = (&cfg, &stop);
                s.spawn(move || {
                    let mut values = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let x = cfg.random(1 << 40);
                        let mut index = None;
                        for i in 0..servers {
                            // Try them all; maybe one of them is a leader.
                            if let Some((index1, _)) = cfg.start(i, cmd(x)) {
                                index = Some(index1);
                            }
                        }
                        let Some(index) = index else {
                            sleep(Duration::from_millis(79 + me * 17));
                            continue;
                        };
                        // Maybe the leader will commit our value, maybe not, but
                        // don't wait forever.
                        for to in [10, 20, 50, 100, 200] {
                            let (nd, command) = cfg.n_committed(index);
                            if nd > 0 {
                                if command == Some(cmd(x)) {
                                    values.push(x);
                                }
                                break;
                            }
                            sleep(Duration::from_millis(to));
                        }
                    }
                    values
                })
            })
            .collect();
        for _ in 0..20 {
            if cfg.random(1000) < 200 {
                let i = cfg.random(servers as u64) as usize;
                cfg.disconnect(i);
            }
            if cfg.random(1000) < 500 {
                let i = cfg.random(servers as u64) as usize;
                if !cfg.is_up(i) {
                    cfg.restart(i);
                }
                cfg.connect(i);
            }
            if cfg.random(1000) < 200 {
                let i = cfg.random(servers as u64) as usize;
                if cfg.is_up(i) {
                    cfg.crash(i);
                }
            }
            // Often enough that peers rarely settle between changes, rarely enough
            // that they can often keep up: a bit under the election timeout.
            sleep(ELECTION_TIMEOUT * 7 / 10);
        }
        sleep(ELECTION_TIMEOUT);
        cfg.set_unreliable(false);
        for i in 0..servers {
            if !cfg.is_up(i) {
                cfg.restart(i);
            }
            cfg.connect(i);
        }
        stop.store(true, Ordering::SeqCst);
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client failed"))
            .collect()
    });
    sleep(ELECTION_TIMEOUT);
    let last_index = cfg.one(cmd(cfg.random(1 << 40)), servers, true);
    let mut really = Vec::new();
    for index in 1..=last_index {
        let v = cfg.wait(index, servers, None).expect("committed");
        really.push(v);
    }
    for v in values {
        assert!(really.contains(&cmd(v)), "didn't find a value: {v}");
    }
    cfg.end();
}

/// Churn on a reliable network. Reference: §5.4.3.
#[test]
fn reliable_churn_3c() {
    churn("Test (3C): churn", Cluster::builder(5));
}

/// Churn on an unreliable network. Reference: §5.4.3.
#[test]
fn unreliable_churn_3c() {
    churn(
        "Test (3C): unreliable churn",
        Cluster::builder(5).unreliable(),
    );
}
