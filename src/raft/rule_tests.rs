//! The rule tests that loop or count, in Rust, on the script runner's
//! servers (`script::Env`); every other rule test is a script in
//! `src/raft/testdata/`.

use super::membership::{AbortReason, ChangeStage, MAX_CATCH_UP_ROUNDS};
use super::messages::{NodeId, Request};
use super::script::{run_command, Env, Message, Out, Pick};

/// Runs one script command, which must be well formed.
fn run(env: &mut Env, command: &str) -> String {
    run_command(env, command).unwrap_or_else(|e| panic!("{command}: {e}"))
}

/// Reference: §5.2 — election timeouts are drawn at random from [T, 2T), so
/// servers rarely time out together.
#[test]
fn election_timeouts_are_randomized_within_range() {
    let mut env = Env::default();
    run(&mut env, "add-nodes 20 voters=1,2,3 election=10");
    let timeouts: Vec<u32> = (1..=20)
        .map(|id| env.raft(id).expect("running").election_timeout)
        .collect();
    assert!(
        timeouts.iter().all(|t| (10..20).contains(t)),
        "{timeouts:?}"
    );
    let first = timeouts[0];
    assert!(
        timeouts.iter().any(|&t| t != first),
        "every server drew the same timeout"
    );
}

/// Reference: thesis §10.2.1 — the runtime reports a write durable with the
/// index and term of its last entry; a report about an entry no longer in
/// the log (or never there) changes nothing.
#[test]
fn a_durability_report_for_an_entry_not_in_the_log_changes_nothing() {
    let mut env = Env::default();
    for command in ["add-nodes 1", "campaign 1", "propose 1 x", "ready 1"] {
        run(&mut env, command);
    }
    let raft = env.raft(1).expect("running");
    assert_eq!((raft.persisted_index, raft.commit_index), (1, 1));
    raft.persisted(9, 1);
    raft.persisted(1, 7);
    assert_eq!(raft.persisted_index, 1);
}

/// Reference: thesis §6.4 — concurrent reads share a round: 200 reads that
/// arrive together cost one heartbeat per follower, and two answers (a
/// majority of 5 with the leader) confirm them all.
#[test]
fn two_hundred_concurrent_reads_share_one_heartbeat_round() {
    let mut env = Env::default();
    for command in [
        "add-nodes 5 noop=true pre-vote=false",
        "campaign 1",
        "stabilize",
    ] {
        run(&mut env, command);
    }
    for id in 0..200 {
        run(&mut env, &format!("read 1 {id}"));
    }
    let round = run(&mut env, "ready 1");
    assert_eq!(
        round.lines().count(),
        4,
        "one AppendEntries per follower:\n{round}"
    );
    assert!(round.lines().all(|l| l.ends_with("read_seq=1")), "{round}");
    for command in ["deliver 2", "deliver 3", "ready 2", "ready 3", "deliver 1"] {
        run(&mut env, command);
    }
    let confirmed = run(&mut env, "ready 1");
    let reads: Vec<&str> = confirmed
        .lines()
        .filter(|l| l.starts_with("apply read "))
        .collect();
    assert_eq!(reads.len(), 200, "{confirmed}");
    assert!(reads.iter().all(|l| l.ends_with("index=1")), "{confirmed}");
    assert_eq!(run(&mut env, "ready 1"), "ok", "no second round was needed");
}

/// Whether `message` carries data (entries or a snapshot piece) rather than
/// being a heartbeat or a reply.
fn carries_data(message: &Message) -> bool {
    message.response.is_none()
        && match &message.request {
            Request::AppendEntries(args) => !args.entries.is_empty(),
            Request::InstallSnapshot(_) => true,
            _ => false,
        }
}

/// Executes every Ready and delivers every message among servers 1-3, and to
/// the learner (4) its heartbeats; data for the learner is held in `held`.
fn exchange(env: &mut Env, held: &mut Vec<Message>) {
    let mut out = Out::default();
    loop {
        let mut busy = false;
        for id in 1..=4 {
            busy |= env.ready(id, false, &mut out).expect("ready");
        }
        for id in 1..=3 {
            busy |= env.deliver_all(id, &mut out).expect("deliver");
        }
        for message in env.take(4, Pick::all()) {
            busy = true;
            if carries_data(&message) {
                held.push(message);
            } else {
                env.deliver(message, &mut out).expect("deliver");
            }
        }
        if !busy {
            return;
        }
    }
}

fn stage(env: &mut Env, leader: NodeId) -> ChangeStage {
    let status = env.raft(leader).expect("running").status();
    status.membership_change.expect("a change").stage
}

/// Reference: thesis §4.2.1 — catch-up rounds that each take longer than an
/// election timeout (the learner copies the log slower than it grows) call
/// the change off after `MAX_CATCH_UP_ROUNDS`: the learner is removed again
/// and the voters are as they were.
#[test]
fn a_learner_too_slow_for_ten_rounds_is_called_off() {
    let mut env = Env::default();
    let options = "noop=true pre-vote=false check-quorum=false";
    for command in [
        format!("add-nodes 3 {options}"),
        format!("add-nodes 1 voters=none {options}"),
        "campaign 1".into(),
        "stabilize".into(),
        "add-server 1 4".into(),
    ] {
        run(&mut env, &command);
    }
    let mut held = Vec::new();
    exchange(&mut env, &mut held);
    for round in 1..=MAX_CATCH_UP_ROUNDS {
        // An election timeout passes: the learner answers heartbeats (so it
        // is not unreachable), but the entries it needs are slow to arrive.
        for _ in 0..10 {
            run(&mut env, "tick 1");
            exchange(&mut env, &mut held);
        }
        let late = std::mem::take(&mut held);
        // The log grows; then the entries sent before that arrive, and the
        // learner reaches the end of the round, one entry behind again.
        run(&mut env, &format!("propose 1 {round}"));
        exchange(&mut env, &mut held);
        let mut out = Out::default();
        for message in late {
            env.deliver(message, &mut out).expect("deliver");
        }
        exchange(&mut env, &mut held);
        if round < MAX_CATCH_UP_ROUNDS {
            assert_eq!(stage(&mut env, 1), ChangeStage::CatchingUp { round });
        }
    }
    exchange(&mut env, &mut held);
    assert_eq!(
        stage(&mut env, 1),
        ChangeStage::Aborted(AbortReason::TooSlow)
    );
    let (configuration, _) = env.raft(1).expect("running").configuration();
    assert_eq!(
        configuration.voters.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(configuration.learners.is_empty());
}
