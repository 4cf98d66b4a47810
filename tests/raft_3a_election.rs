//! Course Raft part A: leader election. Reference: §5.2.

#[allow(dead_code)]
mod common;

use std::thread::sleep;

use common::cluster::{Cluster, ELECTION_TIMEOUT};

/// A leader is elected and, with no failures, stays leader. Reference: §5.2.
#[test]
fn initial_election_3a() {
    let cfg = Cluster::builder(3).start();
    cfg.begin("Test (3A): initial election");
    cfg.check_one_leader();
    // Let all peers hear the leader's first heartbeats before comparing terms.
    sleep(std::time::Duration::from_millis(50));
    let term1 = cfg.check_terms();
    assert!(term1 >= 1, "term is {term1}, but should be at least 1");
    // Does the leader+term stay the same if there is no network failure?
    sleep(2 * ELECTION_TIMEOUT);
    let term2 = cfg.check_terms();
    if term1 != term2 {
        eprintln!("warning: term changed even though there were no failures");
    }
    cfg.check_one_leader();
    cfg.end();
}

/// A new leader is elected when the old one is cut off, and only with a majority.
/// Reference: §5.2.
#[test]
fn re_election_3a() {
    let servers = 3;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3A): election after network failure");
    let leader1 = cfg.check_one_leader();
    // If the leader disconnects, a new one should be elected.
    cfg.disconnect(leader1);
    cfg.check_one_leader();
    // If the old leader rejoins, that shouldn't disturb the new leader.
    cfg.connect(leader1);
    let leader2 = cfg.check_one_leader();
    // If there's no quorum, no new leader should be elected.
    cfg.disconnect(leader2);
    cfg.disconnect((leader2 + 1) % servers);
    sleep(2 * ELECTION_TIMEOUT);
    // Check that the one connected server does not think it is the leader.
    cfg.check_no_leader();
    // If a quorum arises, it should elect a leader.
    cfg.connect((leader2 + 1) % servers);
    cfg.check_one_leader();
    // Re-join of last node shouldn't prevent leader from existing.
    cfg.connect(leader2);
    cfg.check_one_leader();
    cfg.end();
}

/// Any majority of seven elects a leader, round after round. Reference: §5.2.
#[test]
fn many_elections_3a() {
    let servers = 7;
    let cfg = Cluster::builder(servers).start();
    cfg.begin("Test (3A): multiple elections");
    cfg.check_one_leader();
    for _ in 1..10 {
        // Disconnect three nodes.
        let i1 = cfg.random(servers as u64) as usize;
        let i2 = cfg.random(servers as u64) as usize;
        let i3 = cfg.random(servers as u64) as usize;
        cfg.disconnect(i1);
        cfg.disconnect(i2);
        cfg.disconnect(i3);
        // Either the current leader should still be alive, or the remaining four
        // should elect a new one.
        cfg.check_one_leader();
        cfg.connect(i1);
        cfg.connect(i2);
        cfg.connect(i3);
    }
    cfg.check_one_leader();
    cfg.end();
}
