//! Membership changes on the simulated network (thesis §4): adding servers as
//! learners first, removing them (the leader included), and the rules that
//! keep every change safe, the 2015 correction above all.
//!
//! Each scenario is scripted on the deterministic simulator (`raftkv::sim::
//! scenario`), with every safety property checked after every step; the 2015
//! counterexample also runs with the rule switched off, to show the committed
//! entry it loses.

use raftkv::raft::messages::NodeId;
use raftkv::raft::{
    AbortReason, Bug, ChangeStage, Configuration, MembershipChange, MembershipError, Role,
};
use raftkv::service::snapshot_policy::ENTRY_COST;
use raftkv::sim::scenario::{Scenario, ELECTION_TIMEOUT};
use raftkv::sim::{Time, MS, SECOND};

/// Election timeouts are drawn from [T, 2T).
const MAX_ELECTION_TIMEOUT: Time = 2 * ELECTION_TIMEOUT;

/// A cluster of `n` with a settled leader that has committed an entry of its
/// term (so it may change the configuration).
fn elected(n: usize, seed: u64) -> (Scenario, NodeId) {
    let mut cluster = Scenario::new(n, seed);
    let leader = cluster
        .wait_for_leader(10 * SECOND)
        .expect("a leader is elected");
    commit(&mut cluster, leader, "boot", "1", &[leader]);
    (cluster, leader)
}

/// Proposes `key = value` at `leader` and waits until every server in `on`
/// applied it.
fn commit(cluster: &mut Scenario, leader: NodeId, key: &str, value: &str, on: &[NodeId]) {
    cluster
        .propose(leader, key, value)
        .expect("the leader accepts");
    let applied = cluster.run_until(5 * SECOND, |c| {
        on.iter()
            .all(|&id| c.value(id, key).as_deref() == Some(value))
    });
    if applied.is_none() {
        let statuses: Vec<String> = (1..=8)
            .filter_map(|id| cluster.status(id))
            .map(|s| {
                format!(
                    "{} {} t{} c{} l{} cfg@{}",
                    s.id, s.role, s.term, s.commit_index, s.last_log_index, s.configuration_index
                )
            })
            .collect();
        panic!("{key}={value} was not applied on {on:?}: {statuses:?}");
    }
}

fn voters(cluster: &Scenario, id: NodeId) -> Vec<NodeId> {
    let (configuration, _) = cluster.configuration(id).expect("running");
    configuration.voters.keys().copied().collect()
}

fn stage(cluster: &Scenario, leader: NodeId) -> Option<ChangeStage> {
    cluster
        .status(leader)
        .and_then(|s| s.membership_change)
        .map(|c| c.stage)
}

/// Waits until `leader`'s change has finished, and returns how.
fn finished(cluster: &mut Scenario, leader: NodeId, limit: Time) -> ChangeStage {
    cluster.run_until(limit, |c| {
        stage(c, leader).is_some_and(|s| matches!(s, ChangeStage::Done | ChangeStage::Aborted(_)))
    });
    stage(cluster, leader).expect("a change")
}

fn others(of: &[NodeId], all: &[NodeId]) -> Vec<NodeId> {
    all.iter().copied().filter(|id| !of.contains(id)).collect()
}

/// Cuts every link between the groups, both ways.
fn split(cluster: &mut Scenario, a: &[NodeId], b: &[NodeId]) {
    cluster.cut(a, b);
    cluster.cut(b, a);
}

/// The 2015 counterexample (raft-dev, "bug in single-server membership
/// changes"), up to the point where the new leader is asked to remove the
/// old one. Four servers; `s1` leads term 1 and adds `s5`, whose promotion
/// reaches only `s5`; `s2` wins the next term with `s3` and `s4`, then loses
/// `s4` before `s4` gets any entry of its term. Returns the cluster and
/// `[s1, s2, s3, s4]` (the roles, whichever ids play them).
fn the_2015_counterexample(bug: Option<Bug>) -> (Scenario, [NodeId; 4]) {
    let mut cluster = match bug {
        Some(bug) => Scenario::with_bug(4, 3, bug),
        None => Scenario::new(4, 3),
    };
    let s1 = cluster.wait_for_leader(10 * SECOND).expect("a leader");
    commit(&mut cluster, s1, "x", "1", &[1, 2, 3, 4]);
    let rest = others(&[s1], &[1, 2, 3, 4]);
    // s5 joins as a learner; everyone learns that this is committed before
    // s5 starts (so that its promotion follows at once).
    let address = "sim:5".to_string();
    cluster
        .change(s1, MembershipChange::Add { id: 5, address })
        .expect("s1 adds s5");
    let (_, learner_entry) = cluster.configuration(s1).expect("s1 runs");
    let known = cluster.run_until(SECOND, |c| {
        rest.iter().all(|&id| {
            c.status(id)
                .is_some_and(|s| s.commit_index >= learner_entry)
        })
    });
    assert!(known.is_some(), "the learner entry is known committed");
    cluster.join(5);
    // The promotion is appended: cut s1 and s5 off before it arrives anywhere
    // but at s5 (packets take at least a millisecond; a cut loses them).
    let promoted = cluster.run_until(5 * SECOND, |c| voters(c, s1).contains(&5));
    assert!(promoted.is_some(), "s5 caught up and was promoted");
    split(&mut cluster, &[s1, 5], &rest);
    cluster.run_for(100 * MS);
    for &id in &rest {
        assert!(!voters(&cluster, id).contains(&5), "{id} saw the promotion");
    }
    assert!(voters(&cluster, 5).contains(&5), "s5 saw its promotion");
    // The other three elect s2; at once it loses s4.
    let s2 = cluster
        .run_until(10 * SECOND, |c| {
            c.leader().is_some_and(|l| rest.contains(&l))
        })
        .and_then(|_| cluster.leader())
        .expect("the other three elect a leader");
    let [s3, s4] = <[NodeId; 2]>::try_from(others(&[s2], &rest)).expect("two others");
    cluster.heal();
    split(&mut cluster, &[s2, s3], &[s1, s4, 5]);
    (cluster, [s1, s2, s3, s4])
}

/// Reference: raft-dev 2015, "bug in single-server membership changes" — the
/// new leader of term 2 refuses to remove the old leader until it has
/// committed an entry of its own term; once it has, the removal is safe.
#[test]
fn the_2015_counterexample_is_refused_until_the_new_leader_commits_in_its_term() {
    let (mut cluster, [s1, s2, s3, s4]) = the_2015_counterexample(None);
    for _ in 0..20 {
        assert_eq!(
            cluster.remove(s2, s1),
            Err(MembershipError::NotReady),
            "s2 has committed nothing in its term"
        );
        cluster.run_for(10 * MS);
    }
    assert_eq!(cluster.leader(), Some(s2));
    // s4 comes back to s2's side: an entry of s2's term commits, and the
    // removal is allowed and commits.
    cluster.heal();
    split(&mut cluster, &[s2, s3, s4], &[s1, 5]);
    commit(&mut cluster, s2, "x", "2", &[s2, s3, s4]);
    cluster
        .remove(s2, s1)
        .expect("now s2 may change the configuration");
    assert_eq!(finished(&mut cluster, s2, 2 * SECOND), ChangeStage::Done);
    // Everyone reconnects: nothing committed is lost (the checker watched
    // every step), and the cluster without s1 keeps committing.
    cluster.heal();
    commit(&mut cluster, s2, "x", "3", &[s2, s3, s4]);
    assert_eq!(voters(&cluster, s2), {
        let mut v = vec![s2, s3, s4];
        v.sort_unstable();
        v
    });
}

/// Reference: raft-dev 2015 — without the fix, s2 removes s1 before
/// committing in its term: the sibling configurations {s2, s3, s4} and
/// {s1..s5} have majorities that do not overlap. s2 commits the removal with
/// s3; s1 wins term 3 with s4 and s5 and overwrites that committed entry.
#[test]
fn without_the_2015_fix_a_committed_entry_is_overwritten() {
    let (mut cluster, [s1, s2, s3, _s4]) = the_2015_counterexample(Some(Bug::Membership2015));
    let index = cluster.status(s2).expect("running").last_log_index;
    cluster.remove(s2, s1).expect("the bug does not wait");
    let committed = cluster.run_until(2 * SECOND, |c| {
        c.status(s2).is_some_and(|s| s.commit_index > index)
            && c.status(s3).is_some_and(|s| s.commit_index > index)
    });
    assert!(committed.is_some(), "s2 and s3 commit the removal");
    let broken = cluster.try_run_until(20 * SECOND, |c| c.leader() == Some(s1));
    let violation = broken.expect_err("a committed entry is lost");
    assert!(
        ["leader_completeness", "state_machine_safety"].contains(&violation.invariant),
        "{violation}"
    );
    assert!(violation.evidence.contains("committed"), "{violation}");
}

/// Reference: thesis §4.2.1 — a new server catches up as a learner while a
/// voter is down: commits go on meanwhile (the learner never counts), and it
/// is promoted only once it has caught up.
#[test]
fn a_learner_catches_up_while_a_voter_is_down_and_is_promoted_only_then() {
    for seed in 1..=3 {
        let (mut cluster, leader) = elected(3, seed);
        for i in 0..100 {
            cluster
                .propose(leader, &format!("k{i}"), "v")
                .expect("leader");
        }
        cluster.run_for(200 * MS);
        let down = leader % 3 + 1;
        cluster.crash(down);
        let behind = cluster.status(leader).expect("leader").last_log_index;
        cluster.add(leader, 4).expect("the leader adds 4");
        // Commits continue while 4 catches up.
        commit(&mut cluster, leader, "during", "1", &[leader]);
        let promoted = cluster.run_until(5 * SECOND, |c| voters(c, leader).contains(&4));
        assert!(promoted.is_some(), "seed {seed}: 4 is promoted");
        let caught_up = cluster.status(4).expect("4 runs").last_log_index;
        assert!(
            caught_up >= behind,
            "seed {seed}: promoted at {caught_up}, behind {behind}"
        );
        assert_eq!(
            finished(&mut cluster, leader, 2 * SECOND),
            ChangeStage::Done
        );
        // With 4 voters, 3 up: the leader, 4 and one more make a majority.
        commit(&mut cluster, leader, "after", "1", &[leader, 4]);
        cluster.restart(down);
        commit(&mut cluster, leader, "all", "1", &[1, 2, 3, 4]);
    }
}

/// Reference: thesis §4.2.1 — adding a server that never answers is called
/// off after two election timeouts; the configuration's voters are as they
/// were, and the cluster commits as before.
#[test]
fn adding_an_unreachable_server_is_called_off() {
    let (mut cluster, leader) = elected(3, 1);
    let before = voters(&cluster, leader);
    let address = "sim:nowhere".to_string();
    cluster
        .change(leader, MembershipChange::Add { id: 4, address })
        .expect("accepted");
    assert_eq!(
        finished(&mut cluster, leader, 5 * SECOND),
        ChangeStage::Aborted(AbortReason::Unreachable)
    );
    let (configuration, _) = cluster.configuration(leader).expect("leader");
    assert_eq!(voters(&cluster, leader), before);
    assert!(configuration.learners.is_empty());
    commit(&mut cluster, leader, "k", "v", &[1, 2, 3]);
}

/// Reference: thesis §4.2.2 — the leader removes itself: it leads until the
/// configuration without it commits, then steps down, and a server of the
/// new configuration leads at once (it hands over with TimeoutNow). Also in a
/// two-server cluster, where the other server's copy alone commits it.
#[test]
fn removing_the_leader_hands_over_to_the_new_configuration() {
    for n in [3, 2] {
        let (mut cluster, old) = elected(n, 2);
        let term = cluster.status(old).expect("leader").term;
        cluster.remove(old, old).expect("accepted");
        assert_eq!(finished(&mut cluster, old, 2 * SECOND), ChangeStage::Done);
        let new = cluster
            .run_until(ELECTION_TIMEOUT, |c| c.leader().is_some_and(|l| l != old))
            .and_then(|_| cluster.leader())
            .expect("a new leader within an election timeout");
        assert!(cluster.status(new).expect("leader").term > term);
        assert!(!voters(&cluster, new).contains(&old));
        let rest = others(&[old], &(1..=n as NodeId).collect::<Vec<_>>());
        commit(&mut cluster, new, "k", "v", &rest);
        cluster.run_for(10 * MAX_ELECTION_TIMEOUT);
        assert_ne!(
            cluster.status(old).map(|s| s.role),
            Some(Role::Leader),
            "n={n}: the removed leader never leads again"
        );
        assert_eq!(cluster.leader(), Some(new));
    }
}

/// Reference: thesis §4.2.3 — a removed server that keeps running, cut off,
/// for 50 election timeouts does not change the leader's term when it comes
/// back: with pre-vote it never raises its term, and without pre-vote
/// stickiness makes the others ignore its vote requests.
#[test]
fn a_removed_server_ticking_alone_does_not_change_the_leaders_term() {
    for pre_vote in [true, false] {
        let mut cluster = Scenario::with(3, 4, pre_vote, true);
        let leader = cluster.wait_for_leader(10 * SECOND).expect("a leader");
        commit(&mut cluster, leader, "boot", "1", &[leader]);
        let removed = leader % 3 + 1;
        cluster.remove(leader, removed).expect("accepted");
        assert_eq!(
            finished(&mut cluster, leader, 2 * SECOND),
            ChangeStage::Done
        );
        let term = cluster.status(leader).expect("leader").term;
        cluster.isolate(removed);
        cluster.run_for(50 * MAX_ELECTION_TIMEOUT);
        cluster.heal();
        cluster.run_for(5 * MAX_ELECTION_TIMEOUT);
        let status = cluster.status(leader).expect("leader");
        assert_eq!(
            (status.role, status.term),
            (Role::Leader, term),
            "pre-vote {pre_vote}"
        );
        let rest = others(&[removed], &[1, 2, 3]);
        commit(&mut cluster, leader, "k", "v", &rest);
    }
}

/// Reference: thesis §4.1 — a configuration entry that reaches one follower
/// and is then overwritten by the next leader is undone there: the follower
/// falls back to the previous configuration.
#[test]
fn a_truncated_configuration_entry_rolls_back_to_the_previous_one() {
    let (mut cluster, old) = elected(5, 5);
    let all = [1, 2, 3, 4, 5];
    let rest = others(&[old], &all);
    let (f, others_of_f) = (rest[0], rest[1..].to_vec());
    // Every server holds the leader's entries so far, f among them.
    let caught_up = cluster.run_until(SECOND, |c| {
        all.iter()
            .all(|&id| c.value(id, "boot").as_deref() == Some("1"))
    });
    assert!(caught_up.is_some(), "every server applied the first entry");
    let (before, before_index) = cluster.configuration(f).expect("f runs");
    // Only f hears from the leader from now on.
    cluster.cut(&[old], &others_of_f);
    let gone = others_of_f[2];
    cluster.remove(old, gone).expect("accepted");
    let received = cluster.run_until(SECOND, |c| !voters(c, f).contains(&gone));
    assert!(received.is_some(), "f received the new configuration");
    // The leader dies before it commits; f is cut off while the others elect
    // a leader that never had the entry.
    cluster.crash(old);
    cluster.isolate(f);
    let new = cluster
        .run_until(10 * SECOND, |c| {
            c.leader().is_some_and(|l| others_of_f.contains(&l))
        })
        .and_then(|_| cluster.leader())
        .expect("the others elect a leader");
    commit(&mut cluster, new, "k", "v", &[new]);
    cluster.heal();
    let rolled_back = cluster.run_until(2 * SECOND, |c| {
        c.configuration(f).is_some_and(|(c, _)| c == before)
    });
    assert!(
        rolled_back.is_some(),
        "f fell back to the previous configuration"
    );
    let (_, index) = cluster.configuration(f).expect("f runs");
    assert_eq!(index, before_index);
    assert_eq!(cluster.configuration(f), cluster.configuration(new));
}

/// Reference: thesis §4.1 — one change at a time: while one runs, or its
/// configuration is not committed, another is refused (and may be retried).
#[test]
fn one_change_at_a_time() {
    let (mut cluster, leader) = elected(3, 6);
    cluster.add(leader, 4).expect("accepted");
    cluster.join(5);
    assert_eq!(
        cluster.add(leader, 5),
        Err(MembershipError::ChangeInProgress)
    );
    assert_eq!(
        cluster.remove(leader, 4),
        Err(MembershipError::ChangeInProgress)
    );
    assert_eq!(
        finished(&mut cluster, leader, 5 * SECOND),
        ChangeStage::Done
    );
    cluster.add(leader, 5).expect("the next change");
    assert_eq!(
        finished(&mut cluster, leader, 5 * SECOND),
        ChangeStage::Done
    );
    assert_eq!(voters(&cluster, leader), vec![1, 2, 3, 4, 5]);
}

/// Reference: thesis §4.1 and §7 — the configuration survives two
/// compactions (the second drops the entries the first snapshot was taken
/// near) and a restart of every server from its snapshot, and a server added
/// afterwards learns it from the snapshot it is sent.
#[test]
fn the_configuration_survives_two_compactions_and_a_restart_from_snapshot() {
    let (mut cluster, leader) = elected(3, 7);
    cluster.snapshot_past(8 * ENTRY_COST);
    cluster.add(leader, 4).expect("accepted");
    assert_eq!(
        finished(&mut cluster, leader, 5 * SECOND),
        ChangeStage::Done
    );
    let removed = leader % 3 + 1;
    cluster.remove(leader, removed).expect("accepted");
    assert_eq!(
        finished(&mut cluster, leader, 5 * SECOND),
        ChangeStage::Done
    );
    let members = voters(&cluster, leader);
    for i in 0..40 {
        commit(&mut cluster, leader, &format!("k{i}"), "v", &members);
    }
    let (configuration, index) = cluster.configuration(leader).expect("leader");
    for &id in &members {
        let status = cluster.status(id).expect("running");
        assert!(
            status.snapshot_index > index + 16,
            "server {id} compacted past the configuration twice"
        );
    }
    for &id in &members {
        cluster.crash(id);
    }
    for &id in &members {
        cluster.restart(id);
        assert_eq!(
            cluster.configuration(id),
            Some((configuration.clone(), index)),
            "server {id} restored its configuration from its snapshot"
        );
    }
    let leader = cluster.wait_for_leader(10 * SECOND).expect("a leader");
    commit(&mut cluster, leader, "after", "restart", &members);
    cluster.add(leader, 5).expect("accepted");
    assert_eq!(
        finished(&mut cluster, leader, 5 * SECOND),
        ChangeStage::Done
    );
    let with_5: Configuration = cluster.configuration(leader).expect("leader").0;
    let learned = cluster.run_until(SECOND, |c| {
        c.configuration(5).is_some_and(|(c, _)| c == with_5)
    });
    assert!(learned.is_some(), "5 learned the configuration");
    assert!(cluster.status(5).expect("5 runs").snapshot_index > index);
}

/// Reference: thesis §4.1 — a server promoted to voter that has not yet
/// received its promotion still votes when asked (RPCs never consult the
/// configuration), and its vote is the one that elects the next leader.
#[test]
fn a_new_voter_that_has_not_learned_of_its_promotion_still_votes() {
    let (mut cluster, leader) = elected(3, 8);
    cluster.add(leader, 4).expect("accepted");
    let promoted = cluster.run_until(5 * SECOND, |c| voters(c, leader).contains(&4));
    assert!(promoted.is_some());
    // The promotion never reaches 4; it commits with the three others.
    cluster.cut(&[leader], &[4]);
    let rest = others(&[leader], &[1, 2, 3]);
    assert_eq!(
        finished(&mut cluster, leader, 2 * SECOND),
        ChangeStage::Done
    );
    cluster.run_for(100 * MS);
    assert!(!voters(&cluster, 4).contains(&4), "4 does not know");
    // The leader dies: of the four voters, two others are left, and they
    // need 4's vote for a majority of three.
    cluster.crash(leader);
    let new = cluster
        .run_until(10 * SECOND, |c| {
            c.leader().is_some_and(|l| rest.contains(&l))
        })
        .and_then(|_| cluster.leader())
        .expect("elected with 4's vote");
    commit(&mut cluster, new, "k", "v", &[new, 4]);
    assert!(voters(&cluster, 4).contains(&4), "now 4 knows");
}
