//! The executor's order of effects, asserted exactly with a recording fake:
//! every effect a `Ready` asks for, in the order the executor performs it.

use std::io;

use super::bugs::Bug;
use super::configuration::Configuration;
use super::core::{Config, InitialState, Raft, Role};
use super::executor::{execute, start_ready, Effects};
use super::messages::*;
use super::ready::{ApplyMsg, Outbound, Persist};

/// Effects that only write down what they are asked to do.
struct Recorder {
    raft: Raft,
    /// Replies to the RPCs handled, held until released.
    held: Vec<Response>,
    /// What the executor did, in order.
    done: Vec<String>,
    /// The requests sent, for the test to answer.
    sent: Vec<Outbound>,
    /// The disk fails: `persist` returns a storage error.
    disk_fails: bool,
}

impl Recorder {
    fn new(id: NodeId, n: u64, bug: Option<Bug>) -> Self {
        let mut config = Config::new(id, (1..=n).collect());
        config.election_ticks = 10;
        config.heartbeat_ticks = 3;
        config.pre_vote = false;
        config.check_quorum = false;
        config.bug = bug;
        let raft = Raft::new(config, InitialState::default());
        Recorder {
            raft,
            held: Vec::new(),
            done: Vec::new(),
            sent: Vec::new(),
            disk_fails: false,
        }
    }

    /// Handles `request` from `from` and holds the reply, as a runtime does.
    fn handle(&mut self, from: NodeId, request: Request) {
        let response = self.raft.handle_request(from, request);
        self.held.push(response);
    }

    /// Executes, and returns what was done and how it ended.
    fn execute(&mut self) -> (Vec<String>, Result<(), &'static str>) {
        let result = execute(self);
        (std::mem::take(&mut self.done), result)
    }

    /// Ticks until the election timeout fires (a sole voter wins at once).
    /// Answers every AppendEntries sent so far as a follower that accepts it.
    fn ack_appends(&mut self) {
        for Outbound { to, request } in std::mem::take(&mut self.sent) {
            if let Request::AppendEntries(args) = &request {
                let ack = Response::AppendEntries(AppendEntriesReply {
                    term: args.term,
                    success: true,
                    conflict_term: None,
                    conflict_index: 0,
                });
                self.raft.handle_response(to, &request, ack);
            }
        }
    }

    fn tick_until_candidate(&mut self) {
        for _ in 0..20 {
            self.raft.tick();
            if self.raft.role != Role::Follower {
                return;
            }
        }
        panic!("no election after 20 ticks");
    }
}

impl Effects for Recorder {
    type Halt = &'static str;

    fn core(&mut self) -> &mut Raft {
        &mut self.raft
    }

    fn holds_replies(&self) -> bool {
        !self.held.is_empty()
    }

    fn configure(&mut self, configuration: &Configuration) -> Result<(), &'static str> {
        let members = configuration.members().count();
        self.done.push(format!("configure {members} members"));
        Ok(())
    }

    fn persist(&mut self, persist: &Persist) -> Result<io::Result<()>, &'static str> {
        let mut what = Vec::new();
        if let Some(hs) = persist.hard_state {
            what.push(format!("term={} vote={:?}", hs.current_term, hs.voted_for));
        }
        if let Some(write) = &persist.log {
            let last = write.first_index + write.entries.len() as Index - 1;
            what.push(format!("log={}..={last}", write.first_index));
        }
        self.done.push(format!("persist {}", what.join(" ")));
        if self.disk_fails {
            let full = io::Error::new(io::ErrorKind::StorageFull, "write log: disk full");
            return Ok(Err(full));
        }
        Ok(Ok(()))
    }

    fn fail_stop(&mut self, error: io::Error) -> &'static str {
        self.done.push(format!("fail-stop ({error})"));
        "the disk failed"
    }

    fn release_replies(&mut self) -> Result<(), &'static str> {
        for response in self.held.drain(..) {
            self.done.push(match response {
                Response::AppendEntries(r) => format!("reply append success={}", r.success),
                Response::RequestVote(r) => format!("reply vote granted={}", r.vote_granted),
                other => format!("reply {other:?}"),
            });
        }
        Ok(())
    }

    fn send(&mut self, messages: Vec<Outbound>) -> Result<(), &'static str> {
        self.sent.extend(messages.iter().cloned());
        for Outbound { to, request } in messages {
            self.done.push(match request {
                Request::RequestVote(_) => format!("send vote request to {to}"),
                Request::AppendEntries(a) => {
                    format!("send append of {} entries to {to}", a.entries.len())
                }
                other => format!("send {other:?} to {to}"),
            });
        }
        Ok(())
    }

    fn apply(&mut self, apply: Vec<ApplyMsg>) -> Result<(), &'static str> {
        for msg in apply {
            self.done.push(match msg {
                ApplyMsg::Command { index, .. } => format!("apply {index}"),
                other => format!("apply {other:?}"),
            });
        }
        Ok(())
    }
}

/// An AppendEntries from leader 1 of term 1 carrying entry 1, committed.
fn append_committing_entry_1() -> Request {
    Request::AppendEntries(AppendEntriesArgs {
        term: 1,
        leader_id: 1,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![Entry::command(1, b"x".to_vec())],
        leader_commit: 1,
        read_seq: 0,
    })
}

/// Server 2 of 3, started and executed once (its configuration is learned).
fn follower(bug: Option<Bug>) -> Recorder {
    let mut follower = Recorder::new(2, 3, bug);
    assert_eq!(
        follower.execute(),
        (vec!["configure 3 members".into()], Ok(()))
    );
    follower
}

/// Server 1 of `n`, elected in term 1, streaming to its followers, its
/// output executed.
fn leader(n: u64) -> Recorder {
    let mut leader = Recorder::new(1, n, None);
    leader.tick_until_candidate();
    assert_eq!(leader.execute().1, Ok(()));
    for Outbound { to, request } in std::mem::take(&mut leader.sent) {
        let granted = Response::RequestVote(RequestVoteReply {
            term: 1,
            vote_granted: true,
        });
        leader.raft.handle_response(to, &request, granted);
    }
    assert_eq!(leader.raft.role, Role::Leader);
    assert_eq!(leader.execute().1, Ok(()));
    // The followers accept the leader's first AppendEntries: it streams to them.
    leader.ack_appends();
    assert_eq!(leader.execute().1, Ok(()));
    leader.sent.clear();
    leader
}

/// What a follower does with `append_committing_entry_1`, in order.
const FOLLOWER_APPENDS: [&str; 3] = [
    "persist term=1 vote=None log=1..=1",
    "reply append success=true",
    "apply 1",
];

/// Reference: Figure 2, "respond to RPCs only after updating stable
/// storage" — a follower makes its new term and entry durable, then answers
/// the leader, then applies.
#[test]
fn a_follower_persists_then_replies_then_applies() {
    let mut follower = follower(None);
    follower.handle(1, append_committing_entry_1());
    let (done, result) = follower.execute();
    assert_eq!(done, FOLLOWER_APPENDS);
    assert_eq!(result, Ok(()));
}

/// Reference: §5.2 and Figure 2 — a candidate's term and self-vote are
/// durable before any RequestVote leaves; thesis §4.1: the configuration is
/// learned before the first message.
#[test]
fn a_candidate_persists_its_term_and_vote_then_asks_for_votes() {
    let mut candidate = Recorder::new(1, 3, None);
    candidate.tick_until_candidate();
    let (done, result) = candidate.execute();
    assert_eq!(
        done,
        [
            "configure 3 members",
            "persist term=1 vote=Some(1)",
            "send vote request to 2",
            "send vote request to 3",
        ]
    );
    assert_eq!(result, Ok(()));
}

/// Reference: thesis §10.2.1 — a leader sends its new entry before its own
/// write, and counts itself toward a majority only once the write is durable.
#[test]
fn a_leader_sends_before_its_own_write_and_commits_after_it() {
    let mut leader = leader(3);
    let (index, _) = leader.raft.propose(b"x".to_vec()).unwrap();
    let (done, result) = leader.execute();
    assert_eq!(
        done,
        [
            "send append of 1 entries to 2".to_string(),
            "send append of 1 entries to 3".to_string(),
            format!("persist log={index}..={index}"),
        ]
    );
    assert_eq!(result, Ok(()));
    // One follower's acknowledgement and the leader's own durable write
    // make a majority of three.
    leader.sent.retain(|m| m.to == 2);
    leader.ack_appends();
    let (done, result) = leader.execute();
    assert_eq!(done, [format!("apply {index}")]);
    assert_eq!(result, Ok(()));
}

/// Reference: thesis §10.2.1 — the write the executor reports durable is what
/// lets a sole server commit: persist, then (once `persisted` is reported,
/// within the same execution) apply.
#[test]
fn a_sole_leader_commits_once_its_write_is_reported_durable() {
    let mut leader = leader(1);
    let (index, _) = leader.raft.propose(b"x".to_vec()).unwrap();
    let (done, result) = leader.execute();
    assert_eq!(
        done,
        [
            format!("persist log={index}..={index}"),
            format!("apply {index}")
        ]
    );
    assert_eq!(result, Ok(()));
}

/// Reference: thesis §10.2.1 — with its write left in progress after
/// `start_ready`, a leader has sent its entry, hears a follower store it, and
/// still does not commit; `finish` reports the write durable, which commits,
/// and the executor's next `Ready` applies.
#[test]
fn a_write_in_progress_holds_back_everything_after_it_until_finish() {
    let mut leader = leader(3);
    let (index, _) = leader.raft.propose(b"x".to_vec()).unwrap();
    let after_write = start_ready(&mut leader)
        .unwrap()
        .expect("a Ready with the new entry");
    assert_eq!(
        std::mem::take(&mut leader.done),
        [
            "send append of 1 entries to 2".to_string(),
            "send append of 1 entries to 3".to_string(),
            format!("persist log={index}..={index}"),
        ]
    );
    leader.sent.retain(|m| m.to == 2);
    leader.ack_appends();
    assert_eq!(
        leader.raft.status().commit_index,
        index - 1,
        "not durable here"
    );
    assert_eq!(after_write.finish(&mut leader), Ok(()));
    assert_eq!(leader.raft.status().commit_index, index);
    let (done, result) = leader.execute();
    assert_eq!(done, [format!("apply {index}")]);
    assert_eq!(result, Ok(()));
}

/// A follower's reply waits for `finish`, and so does its apply.
#[test]
fn a_reply_waits_for_the_write_in_progress() {
    let mut follower = follower(None);
    follower.handle(1, append_committing_entry_1());
    let after_write = start_ready(&mut follower).unwrap().expect("a Ready");
    assert_eq!(std::mem::take(&mut follower.done), FOLLOWER_APPENDS[..1]);
    assert!(follower.holds_replies());
    assert_eq!(after_write.finish(&mut follower), Ok(()));
    assert_eq!(follower.done, FOLLOWER_APPENDS[1..]);
    assert!(
        start_ready(&mut follower).unwrap().is_none(),
        "nothing left"
    );
}

/// Fail-stop: a save the storage refuses stops the server at once, and
/// everything after the write with it: no reply leaves, nothing is applied,
/// the reply stays held.
#[test]
fn a_failed_save_stops_the_server_and_everything_after_it() {
    let mut follower = follower(None);
    follower.disk_fails = true;
    follower.handle(1, append_committing_entry_1());
    let (done, result) = follower.execute();
    assert_eq!(
        done,
        [
            "persist term=1 vote=None log=1..=1",
            "fail-stop (write log: disk full)"
        ]
    );
    assert_eq!(result, Err("the disk failed"));
    assert!(follower.holds_replies());
}

/// With `Bug::IgnoreFailedSave` the server carries on after a failed save:
/// it acknowledges and applies an entry that is not durable.
#[test]
fn the_ignore_failed_save_bug_acknowledges_what_is_not_durable() {
    let mut buggy = follower(Some(Bug::IgnoreFailedSave));
    buggy.disk_fails = true;
    buggy.handle(1, append_committing_entry_1());
    let (done, result) = buggy.execute();
    assert_eq!(done, FOLLOWER_APPENDS);
    assert_eq!(result, Ok(()));
}

/// With `Bug::ReplyBeforePersist` the order of the first test breaks: the
/// reply leaves before the write, and a failed write can no longer hold it back.
#[test]
fn the_reply_before_persist_bug_breaks_the_order() {
    let mut buggy = follower(Some(Bug::ReplyBeforePersist));
    buggy.handle(1, append_committing_entry_1());
    let (done, result) = buggy.execute();
    assert_ne!(done, FOLLOWER_APPENDS, "the order test would pass");
    assert_eq!(
        done,
        [
            "reply append success=true",
            "persist term=1 vote=None log=1..=1",
            "apply 1"
        ]
    );
    assert_eq!(result, Ok(()));

    let mut buggy = follower(Some(Bug::ReplyBeforePersist));
    buggy.disk_fails = true;
    buggy.handle(1, append_committing_entry_1());
    let (done, result) = buggy.execute();
    assert_eq!(
        done,
        [
            "reply append success=true",
            "persist term=1 vote=None log=1..=1",
            "fail-stop (write log: disk full)"
        ]
    );
    assert_eq!(result, Err("the disk failed"));
}
