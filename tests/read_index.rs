//! Reads without log entries (ReadIndex, thesis §6.4) on the simulated
//! network: a deposed leader never serves a stale value.

use raftkv::raft::messages::NodeId;
use raftkv::sim::scenario::Scenario;
use raftkv::sim::{MS, SECOND};

fn others(of: &[NodeId], n: NodeId) -> Vec<NodeId> {
    (1..=n).filter(|id| !of.contains(id)).collect()
}

/// Proposes `key = value` at `leader` and waits until every server in `on`
/// applied it.
fn commit(cluster: &mut Scenario, leader: NodeId, key: &str, value: &str, on: &[NodeId]) {
    cluster
        .propose(leader, key, value)
        .expect("the leader accepts");
    let applied = cluster.run_until(2 * SECOND, |c| {
        on.iter()
            .all(|&id| c.value(id, key).as_deref() == Some(value))
    });
    assert!(applied.is_some(), "{key}={value} was not applied on {on:?}");
}

/// Reference: thesis §6.4; aphyr's "Call me maybe: etcd and Consul" — five
/// servers; the old leader and a client end up in the minority while the
/// majority elects a new leader and writes. A read at the old leader never
/// returns the old value: it needs a heartbeat round answered by a majority,
/// which the minority cannot give, so it fails or times out. With and
/// without check-quorum (without it the old leader keeps believing it leads).
#[test]
fn a_partitioned_old_leader_never_returns_a_stale_value() {
    for seed in 1..=6 {
        let check_quorum = seed % 2 == 0;
        let mut cluster = Scenario::with(5, seed, true, check_quorum);
        let old = cluster.wait_for_leader(10 * SECOND).expect("a leader");
        commit(&mut cluster, old, "x", "1", &[1, 2, 3, 4, 5]);
        let minority = [old, old % 5 + 1];
        let majority = others(&minority, 5);
        cluster.cut(&minority, &majority);
        cluster.cut(&majority, &minority);
        let new = cluster
            .run_until(5 * SECOND, |c| {
                c.leader().is_some_and(|l| majority.contains(&l))
            })
            .and_then(|_| cluster.leader())
            .expect("the majority elects a leader");
        commit(&mut cluster, new, "x", "2", &[new]);
        let stale = cluster.get(old, "x");
        cluster.run_for(2 * SECOND);
        let reply = cluster.reply(stale);
        assert!(
            reply.is_none_or(|r| r.starts_with("ERR ")),
            "seed {seed}: the old leader answered {reply:?}"
        );
        let fresh = cluster.get(new, "x");
        cluster.run_for(100 * MS);
        assert_eq!(cluster.reply(fresh), Some("VALUE 2"), "seed {seed}");
    }
}

/// Reference: thesis §6.4 — a read at a follower is refused (the service
/// forwards it to the leader), and a read at the leader sees every write the
/// leader acknowledged before it.
#[test]
fn a_read_at_the_leader_sees_every_acknowledged_write() {
    for seed in 1..=4 {
        let mut cluster = Scenario::new(3, seed);
        let leader = cluster.wait_for_leader(10 * SECOND).expect("a leader");
        commit(&mut cluster, leader, "k", "v1", &[leader]);
        let read = cluster.get(leader, "k");
        cluster.run_for(50 * MS);
        assert_eq!(cluster.reply(read), Some("VALUE v1"), "seed {seed}");
        let follower = leader % 3 + 1;
        let refused = cluster.get(follower, "k");
        let reply = cluster.reply(refused).unwrap_or_default();
        assert!(reply.starts_with("ERR NO_LEADER"), "seed {seed}: {reply}");
    }
}
