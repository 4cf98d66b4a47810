//! Stable leadership on the simulated network: pre-vote (thesis §9.6),
//! check-quorum and stickiness (§6.2, §4.2.3), leadership transfer (§3.10).
//!
//! Each scenario is scripted on the deterministic simulator (`raftkv::sim::
//! scenario`), with every safety property checked after every step. Where a
//! rule is what makes a scenario pass, the same schedule is also run with the
//! rule off, to show what it prevents.

use raftkv::raft::messages::NodeId;
use raftkv::raft::{ProposeError, Role};
use raftkv::sim::scenario::{Scenario, ELECTION_TIMEOUT};
use raftkv::sim::{Time, MS, SECOND};

/// Election timeouts are drawn from [T, 2T).
const MAX_ELECTION_TIMEOUT: Time = 2 * ELECTION_TIMEOUT;

/// A cluster of `n` with a settled leader.
fn elected(n: usize, seed: u64, pre_vote: bool, check_quorum: bool) -> (Scenario, NodeId) {
    let mut cluster = Scenario::with(n, seed, pre_vote, check_quorum);
    let leader = cluster
        .wait_for_leader(10 * SECOND)
        .expect("a leader is elected");
    cluster.run_for(500 * MS);
    assert_eq!(cluster.leader(), Some(leader), "the first leader stays");
    (cluster, leader)
}

fn follower_of(leader: NodeId, n: usize) -> NodeId {
    leader % n as NodeId + 1
}

fn term(cluster: &Scenario, id: NodeId) -> u64 {
    cluster.status(id).expect("running").term
}

/// Proposes `key = value` at the leader and waits until server `on` applied it.
fn commit(cluster: &mut Scenario, leader: NodeId, key: &str, value: &str, on: NodeId) {
    cluster
        .propose(leader, key, value)
        .expect("the leader accepts");
    let applied = cluster.run_until(2 * SECOND, |c| c.value(on, key).as_deref() == Some(value));
    assert!(applied.is_some(), "{key}={value} was not applied on {on}");
}

/// Reference: thesis §9.6 — a follower cut off for 10 election timeouts asks
/// only for pre-votes, which nobody grants, so its term never rises, and when
/// it returns the leader and the term are unchanged.
#[test]
fn an_isolated_follower_rejoins_without_changing_the_term_or_the_leader() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(5, seed, true, true);
        let before = term(&cluster, leader);
        let follower = follower_of(leader, 5);
        cluster.isolate(follower);
        cluster.run_for(10 * MAX_ELECTION_TIMEOUT);
        assert_eq!(
            term(&cluster, follower),
            before,
            "seed {seed}: the cut-off follower raised its term"
        );
        cluster.heal();
        cluster.run_for(2 * SECOND);
        assert_eq!(cluster.leader(), Some(leader), "seed {seed}");
        assert_eq!(cluster.max_term(), before, "seed {seed}");
        commit(&mut cluster, leader, "k", "v", follower);
    }
    // Without pre-vote (the paper's rules) the same schedule deposes the leader.
    let (mut cluster, leader) = elected(5, 1, false, false);
    let before = term(&cluster, leader);
    let follower = follower_of(leader, 5);
    cluster.isolate(follower);
    cluster.run_for(10 * MAX_ELECTION_TIMEOUT);
    assert!(term(&cluster, follower) > before + 5);
    cluster.heal();
    cluster.run_for(2 * SECOND);
    assert!(
        cluster.max_term() > before,
        "without pre-vote the term moves"
    );
}

/// Reference: thesis §6.2 — a leader cut off from the majority steps down
/// within two election timeouts (it checks every election timeout that it
/// heard from a majority since the previous check), and refuses proposals.
#[test]
fn a_leader_cut_off_from_the_majority_steps_down_within_two_election_timeouts() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(5, seed, true, true);
        cluster.isolate(leader);
        let took = cluster.run_until(2 * ELECTION_TIMEOUT + 10 * MS, |c| {
            c.status(leader).is_some_and(|s| s.role != Role::Leader)
        });
        assert!(
            took.is_some(),
            "seed {seed}: still leader after two election timeouts"
        );
        assert_eq!(
            cluster.propose(leader, "k", "v"),
            Err(ProposeError::NotLeader)
        );
        // The majority elects a new leader meanwhile.
        let new = cluster.wait_for_leader(5 * SECOND).expect("a new leader");
        assert_ne!(new, leader);
    }
    // Without check-quorum it would keep leading, and accepting, for ever.
    let (mut cluster, leader) = elected(5, 1, true, false);
    cluster.isolate(leader);
    cluster.run_for(10 * MAX_ELECTION_TIMEOUT);
    assert_eq!(cluster.status(leader).map(|s| s.role), Some(Role::Leader));
}

/// Reference: thesis §4.2.3 and §9.6 (the 2020 Cloudflare incident) — when one
/// server reaches only one other, and not the leader, it cannot win a
/// pre-vote (the server it reaches still hears the leader), so there is no
/// churn: term and leader stay, and the leader keeps committing.
#[test]
fn a_partial_partition_causes_no_churn() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(3, seed, true, true);
        let before = term(&cluster, leader);
        let cut_off = follower_of(leader, 3);
        let bridge = follower_of(cut_off, 3);
        assert!(bridge != leader && bridge != cut_off);
        cluster.cut(&[leader], &[cut_off]);
        cluster.cut(&[cut_off], &[leader]);
        cluster.run_for(10 * MAX_ELECTION_TIMEOUT);
        assert_eq!(cluster.leader(), Some(leader), "seed {seed}");
        assert_eq!(cluster.max_term(), before, "seed {seed}");
        commit(&mut cluster, leader, "k", "v", bridge);
    }
    // With the paper's rules the cut-off server keeps starting elections.
    let (mut cluster, leader) = elected(3, 1, false, false);
    let before = term(&cluster, leader);
    let cut_off = follower_of(leader, 3);
    cluster.cut(&[leader], &[cut_off]);
    cluster.cut(&[cut_off], &[leader]);
    cluster.run_for(10 * MAX_ELECTION_TIMEOUT);
    assert!(cluster.max_term() > before + 3, "the paper's rules churn");
}

/// Reference: thesis §9.6, etcd-io/etcd#8243 — a server behind in terms still
/// completes an election: a refused pre-vote tells it the current term.
#[test]
fn a_server_with_a_smaller_term_still_completes_an_election() {
    for seed in 1..=5 {
        let (mut cluster, first) = elected(3, seed, true, true);
        let behind = follower_of(first, 3);
        let other = follower_of(behind, 3);
        cluster.crash(behind);
        // Two transfers raise the others' term by two; `behind` misses both.
        cluster.transfer(first, other).expect("transfer");
        assert!(cluster
            .run_until(SECOND, |c| c.leader() == Some(other))
            .is_some());
        cluster.transfer(other, first).expect("transfer back");
        assert!(cluster
            .run_until(SECOND, |c| c.leader() == Some(first))
            .is_some());
        commit(&mut cluster, first, "k", "v", other);
        // Only `behind` (old term) and `other` (newer term, longer log) remain.
        cluster.crash(first);
        cluster.restart(behind);
        assert!(term(&cluster, behind) < term(&cluster, other));
        let leader = cluster.wait_for_leader(10 * SECOND).expect("a leader");
        assert_eq!(leader, other, "seed {seed}: the up-to-date server wins");
        assert_eq!(term(&cluster, behind), term(&cluster, other));
    }
}

/// Reference: thesis §3.10 — leadership moves to an up-to-date target within
/// an election timeout, in the next term.
#[test]
fn a_transfer_to_an_up_to_date_server_completes_within_an_election_timeout() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(3, seed, true, true);
        let target = follower_of(leader, 3);
        commit(&mut cluster, leader, "k", "v", target);
        let before = term(&cluster, leader);
        cluster.transfer(leader, target).expect("transfer");
        let took = cluster.run_until(ELECTION_TIMEOUT, |c| c.leader() == Some(target));
        assert!(took.is_some(), "seed {seed}");
        assert_eq!(term(&cluster, target), before + 1);
    }
}

/// Reference: thesis §3.10 — a lagging target is caught up first, then takes
/// over, with every entry the old leader had.
#[test]
fn a_transfer_to_a_lagging_server_catches_it_up_first() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(3, seed, true, true);
        let target = follower_of(leader, 3);
        let other = follower_of(target, 3);
        cluster.isolate(target);
        for i in 0..20 {
            commit(&mut cluster, leader, &format!("k{i}"), "v", other);
        }
        cluster.heal();
        cluster.transfer(leader, target).expect("transfer");
        let took = cluster.run_until(ELECTION_TIMEOUT, |c| c.leader() == Some(target));
        assert!(took.is_some(), "seed {seed}");
        for i in 0..20 {
            let key = format!("k{i}");
            commit(&mut cluster, target, "after", &key, target);
            assert_eq!(cluster.value(target, &key).as_deref(), Some("v"));
        }
    }
}

/// Reference: thesis §3.10 — a transfer to a server that cannot take over
/// aborts after an election timeout; the old leader keeps leading and accepts
/// proposals again. Meanwhile proposals are refused, not lost.
#[test]
fn a_transfer_to_a_partitioned_server_aborts_and_proposals_resume() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(3, seed, true, true);
        let target = follower_of(leader, 3);
        cluster.isolate(target);
        cluster.transfer(leader, target).expect("transfer");
        assert_eq!(
            cluster.propose(leader, "k", "during"),
            Err(ProposeError::Transferring(target))
        );
        let aborted = cluster.run_until(ELECTION_TIMEOUT + 20 * MS, |c| {
            c.status(leader)
                .is_some_and(|s| s.transferring_to.is_none())
        });
        assert!(aborted.is_some(), "seed {seed}: the transfer never aborted");
        assert_eq!(cluster.leader(), Some(leader));
        let other = follower_of(target, 3);
        commit(&mut cluster, leader, "k", "after", other);
    }
}

/// Reference: thesis §3.10 — proposals accepted before a transfer are not
/// lost by it, and proposals during it are refused, never half-applied.
#[test]
fn proposals_during_a_transfer_are_refused_not_lost() {
    for seed in 1..=5 {
        let (mut cluster, leader) = elected(3, seed, true, true);
        let target = follower_of(leader, 3);
        for key in ["a", "b", "c"] {
            cluster.propose(leader, key, "before").expect("accepted");
        }
        cluster.transfer(leader, target).expect("transfer");
        assert_eq!(
            cluster.propose(leader, "d", "during"),
            Err(ProposeError::Transferring(target))
        );
        assert!(cluster
            .run_until(ELECTION_TIMEOUT, |c| c.leader() == Some(target))
            .is_some());
        commit(&mut cluster, target, "e", "after", leader);
        let everywhere =
            cluster.run_until(SECOND, |c| (1..=3).all(|id| c.value(id, "e").is_some()));
        assert!(everywhere.is_some(), "seed {seed}");
        for id in 1..=3 {
            for key in ["a", "b", "c"] {
                assert_eq!(
                    cluster.value(id, key).as_deref(),
                    Some("before"),
                    "seed {seed}"
                );
            }
            assert_eq!(cluster.value(id, "d"), None);
        }
    }
}

#[allow(dead_code)]
mod common;

/// Three real processes behind cuttable links: cuts the leader's first
/// follower off for 5 s, writes meanwhile, heals, waits for it to catch up.
/// Returns the term before the cut, and every node's (term, leader) after.
fn cut_a_real_follower_off(extra: &[&str]) -> (String, Vec<(String, String)>) {
    use common::links::Links;
    use common::procs::{free_port, ProcCluster};
    use std::time::Duration;

    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let links = Links::default();
    let reach: Vec<u16> = listen
        .iter()
        .enumerate()
        .map(|(i, &port)| links.proxy(i as u64 + 1, port))
        .collect();
    let cluster = ProcCluster::start_behind(&reach, &listen, extra);
    let leader = cluster.wait_for_leader();
    assert_eq!(cluster.request(leader, &["PUT before 1"]), ["OK"]);
    let term = cluster.status(leader)["term"].clone();
    let follower = (leader + 1) % 3;
    links.isolate(follower as u64 + 1, 3);
    // The scenario is the cut itself: 5 s of silence for the follower.
    std::thread::sleep(Duration::from_secs(5));
    links.heal();
    cluster.wait_for("a leader after the heal", Duration::from_secs(10), || {
        let leader = cluster.wait_for_leader();
        cluster.request(leader, &["PUT after 2"]) == ["OK"]
    });
    cluster.wait_for("the follower to catch up", Duration::from_secs(10), || {
        let leader = cluster.wait_for_leader();
        cluster.status(follower).get("commit") == cluster.status(leader).get("commit")
    });
    let after = (0..3)
        .map(|i| {
            let status = cluster.status(i);
            (status["term"].clone(), status["leader"].clone())
        })
        .collect();
    (term, after)
}

/// Reference: thesis §9.6, §4.2.3 — on three real processes, a follower cut
/// off from both peers for 5 s (more than 8 election timeouts) comes back
/// without moving the term or the leader, and catches up. With both
/// extensions off (the paper's rules) the same cut moves the term.
#[test]
fn a_real_follower_cut_off_for_five_seconds_changes_neither_leader_nor_term() {
    let (term, after) = cut_a_real_follower_off(&[]);
    let leader = after[0].1.clone();
    for (i, (t, l)) in after.iter().enumerate() {
        assert_eq!((t, l), (&term, &leader), "node {}", i + 1);
    }
    let (term, after) = cut_a_real_follower_off(&["-pre-vote=false", "-check-quorum=false"]);
    assert!(
        after.iter().all(|(t, _)| t != &term),
        "the paper's rules move the term"
    );
}
