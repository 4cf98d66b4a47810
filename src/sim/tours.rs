//! Guided tours: short scripted runs of the simulator that tell a story, and are tests.
//!
//! A tour is a seed, options and a script of steps. Each step says what is
//! about to happen (a narration, shown on the page), does something to the
//! cluster (crash the leader, cut a link, propose a command, ...), then runs
//! until every event it expects has happened, each named by its kind and
//! the words of its caption ("role" whose caption says "won votes from a
//! majority"). The events are the ones the page shows, captions included,
//! so a tour that passes `cargo test` (`tests/tours.rs`) shows what it
//! promises. Which server plays which part is found as the run goes (the
//! leader is whoever won), never assumed; the seed makes it the same every
//! time.
//!
//! Reference: etcd's datadriven interaction scripts and toydb's goldenscripts
//! (stories that are regression tests); The Secret Lives of Data (narration
//! that waits for state changes, not the clock).

use super::invariants::Violation;
use super::scenario::{Scenario, ELECTION_TIMEOUT};
use super::{Time, MS, SECOND};
use crate::events::caption::caption;
use crate::events::json::{write_event, Object};
use crate::events::Event;
use crate::raft::{Bug, MembershipChange, NodeId};
use crate::service::snapshot_policy::ENTRY_COST;

/// One tour.
#[derive(Debug, Clone, Copy)]
pub struct Tour {
    /// Its name in URLs (`figure8`).
    pub name: &'static str,
    /// Its title in the page's menu.
    pub title: &'static str,
    /// Servers at the start.
    pub nodes: usize,
    /// The seed (election timeouts, message delays).
    pub seed: u64,
    /// A rule switched off, if the tour shows what it prevents; the page
    /// then shows the same script without the bug beside it.
    pub bug: Option<Bug>,
    /// The new leader's no-op (§8): on, as the server runs, unless the tour
    /// needs it off.
    pub noop: bool,
    script: fn(&mut Guide) -> Result<(), Stop>,
}

/// Every tour, in the menu's order.
pub const TOURS: [Tour; 8] = [
    Tour {
        name: "election",
        title: "Leader election",
        nodes: 3,
        seed: 1,
        bug: None,
        noop: true,
        script: election,
    },
    Tour {
        name: "leader-crash",
        title: "The leader crashes",
        nodes: 3,
        seed: 2,
        bug: None,
        noop: true,
        script: leader_crash,
    },
    Tour {
        name: "partition",
        title: "A partition, and healing it",
        nodes: 5,
        seed: 3,
        bug: None,
        noop: true,
        script: partition,
    },
    Tour {
        name: "figure8",
        title: "Figure 8: committing an old term's entry (bug on, and off beside it)",
        nodes: 5,
        seed: 4,
        bug: Some(Bug::Figure8),
        noop: false,
        script: figure8,
    },
    Tour {
        name: "snapshot",
        title: "A snapshot catches up a wiped follower",
        nodes: 3,
        seed: 5,
        bug: None,
        noop: true,
        script: snapshot,
    },
    Tour {
        name: "membership",
        title: "Adding and removing a server",
        nodes: 3,
        seed: 6,
        bug: None,
        noop: true,
        script: membership,
    },
    Tour {
        name: "transfer",
        title: "Leadership transfer",
        nodes: 3,
        seed: 7,
        bug: None,
        noop: true,
        script: transfer,
    },
    Tour {
        name: "read-index",
        title: "A stale read, prevented by ReadIndex",
        nodes: 5,
        seed: 8,
        bug: None,
        noop: true,
        script: read_index,
    },
];

/// The tour called `name`.
pub fn find(name: &str) -> Option<Tour> {
    TOURS.into_iter().find(|t| t.name == name)
}

/// An event a step waits for: its kind, words of its caption, and
/// optionally the server it happens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The event's kind (`role`, `reply`, `commit`, ...).
    pub kind: &'static str,
    /// Words its caption contains ("" for any).
    pub caption: &'static str,
    /// The server it must happen on, if it matters.
    pub node: Option<NodeId>,
}

/// An event of `kind` whose caption contains `caption`.
pub const fn saw(kind: &'static str, caption: &'static str) -> Expect {
    Expect {
        kind,
        caption,
        node: None,
    }
}

impl Expect {
    /// The same, on server `node`.
    pub const fn on(self, node: NodeId) -> Expect {
        Expect {
            node: Some(node),
            ..self
        }
    }

    fn matches(&self, event: &Event) -> bool {
        event.what.name() == self.kind
            && self.node.is_none_or(|n| n == event.node)
            && (self.caption.is_empty() || caption(event).is_some_and(|c| c.contains(self.caption)))
    }
}

/// Why a tour stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A step's expected events did not all happen in time.
    Missing(String),
    /// A safety property failed (what a tour with a bug may expect).
    Violation(Violation),
}

/// What a tour's script drives: the scenario, and the events seen so far.
pub struct Guide {
    scenario: Scenario,
    /// Events before this index belong to earlier steps.
    mark: usize,
    /// The narrations so far, in order (the steps).
    pub steps: Vec<String>,
    /// The rule switched off in this run, if any.
    pub bug: Option<Bug>,
}

impl Guide {
    fn new(tour: &Tour, bug: Option<Bug>) -> Guide {
        let mut scenario = Scenario::with_options(tour.nodes, tour.seed, bug, tour.noop);
        scenario.record_events();
        Guide {
            scenario,
            mark: 0,
            steps: Vec::new(),
            bug,
        }
    }

    /// The scenario, for actions (`crash`, `cut`, `propose`, ...).
    pub fn cluster(&mut self) -> &mut Scenario {
        &mut self.scenario
    }

    /// Begins a step: its narration, shown on the page until the next.
    pub fn say(&mut self, text: &str) {
        self.steps.push(text.to_string());
        self.scenario.narrate(text);
        self.mark = self.scenario.events().len() - 1;
    }

    /// Lets time pass until every event of `wanted` has happened since the
    /// step began (`limit` at most). A violation stops the tour (recorded as
    /// the last event) unless `wanted` names one.
    pub fn expect(&mut self, limit: Time, wanted: &[Expect]) -> Result<(), Stop> {
        let mark = self.mark;
        let done = |s: &Scenario| {
            let events = &s.events()[mark..];
            wanted
                .iter()
                .all(|w| events.iter().any(|(_, e)| w.matches(e)))
        };
        match self.scenario.try_run_until(limit, done) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|w| {
                        !self.scenario.events()[mark..]
                            .iter()
                            .any(|(_, e)| w.matches(e))
                    })
                    .map(|w| format!("{} \"{}\"", w.kind, w.caption))
                    .collect();
                Err(Stop::Missing(format!(
                    "step {:?}: no {} within {} ms",
                    self.steps.last().map_or("", String::as_str),
                    missing.join(", "),
                    limit / MS
                )))
            }
            Err(violation) => {
                self.scenario.world_mut().record_violation(&violation);
                if wanted.iter().any(|w| w.kind == "violation") {
                    Ok(())
                } else {
                    Err(Stop::Violation(violation))
                }
            }
        }
    }

    /// The leader, once there is one (within `limit`).
    pub fn leader(&mut self, limit: Time) -> Result<NodeId, Stop> {
        self.scenario
            .wait_for_leader(limit)
            .ok_or(Stop::Missing("no leader".into()))
    }

    /// The servers `1..=n` but `but`.
    pub fn others(&self, n: usize, but: &[NodeId]) -> Vec<NodeId> {
        (1..=n as NodeId).filter(|id| !but.contains(id)).collect()
    }
}

/// A tour's run: its events, and whether every step happened.
#[derive(Debug)]
pub struct TourRun {
    /// The tour.
    pub tour: Tour,
    /// The bug it ran with.
    pub bug: Option<Bug>,
    /// Every event, with its step.
    pub events: Vec<(u64, Event)>,
    /// The narrations, in order.
    pub steps: Vec<String>,
    /// `Ok` if every step's events happened.
    pub result: Result<(), Stop>,
}

impl Tour {
    /// Runs the script with the tour's bug (or, `without_bug`, with none).
    pub fn run(&self, without_bug: bool) -> TourRun {
        let bug = if without_bug { None } else { self.bug };
        let mut guide = Guide::new(self, bug);
        let result = (self.script)(&mut guide);
        TourRun {
            tour: *self,
            bug,
            events: guide.scenario.events().to_vec(),
            steps: guide.steps,
            result,
        }
    }
}

impl TourRun {
    /// The trace file the page replays (see `recording.rs`).
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let servers: Vec<u64> = (1..=self.tour.nodes as u64 + 1).collect();
        Object::new(&mut out)
            .text("trace", "raftkv")
            .text("source", "tour")
            .text("clock", "virtual")
            .text("name", self.tour.name)
            .text("title", self.tour.title)
            .num("seed", self.tour.seed)
            .text("bug", &self.bug.map_or(String::new(), |b| b.to_string()))
            .num("nodes", self.tour.nodes as u64)
            .nums("servers", &servers)
            .num("tick", 10 * MS)
            .flag("noop", self.tour.noop)
            .close();
        out.push('\n');
        for (step, event) in &self.events {
            write_event(&mut out, event, Some(*step));
            out.push('\n');
        }
        let mut end = Object::new(&mut out);
        end.text("kind", "end");
        match &self.result {
            Ok(()) => {
                end.text("outcome", "pass");
            }
            Err(Stop::Missing(why)) => {
                end.text("outcome", "incomplete").text("why", why);
            }
            Err(Stop::Violation(v)) => {
                end.text("outcome", "fail")
                    .text("invariant", v.invariant)
                    .text("evidence", &v.evidence);
            }
        }
        end.close();
        out.push('\n');
        out
    }
}

// ---- The scripts ----

const ELECTION: Time = 4 * ELECTION_TIMEOUT;

fn election(g: &mut Guide) -> Result<(), Stop> {
    g.say("Three servers start as followers, each with an election timer set to a random timeout (the arc around it). None has heard from a leader.");
    g.expect(
        ELECTION,
        &[
            saw("role", "asks for pre-votes"),
            saw("reply", "would vote for"),
        ],
    )?;
    g.say("The first whose timer runs out asks the others whether they would vote for it (a pre-vote, thesis §9.6), so that a server cut off from the rest never raises the term. A majority says yes: it becomes a candidate for the next term and asks for real votes.");
    g.expect(
        ELECTION,
        &[saw("role", "became a candidate"), saw("reply", "voted for")],
    )?;
    g.say("Each server votes at most once per term, and only for a candidate whose log is at least as up to date as its own. With a majority of votes, the candidate leads.");
    g.expect(ELECTION, &[saw("role", "won votes from a majority")])?;
    let leader = g.leader(ELECTION)?;
    g.say("The leader sends AppendEntries at once and then every heartbeat interval; each one resets the followers' timers, so no one else starts an election. It also appends a no-op entry of its term and commits it (§8).");
    g.expect(
        SECOND,
        &[
            saw("role", "follows node"),
            saw("commit", "a majority stores the entry").on(leader),
        ],
    )
}

fn leader_crash(g: &mut Guide) -> Result<(), Stop> {
    g.say("A three-server cluster elects a leader and commits a command.");
    let old = g.leader(ELECTION)?;
    g.cluster()
        .propose(old, "x", "1")
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(
        SECOND,
        &[saw("commit", "a majority stores the entry").on(old)],
    )?;
    g.say(
        "The leader crashes. Its followers stop hearing heartbeats; their election timers run out.",
    );
    g.cluster().crash(old);
    g.expect(ELECTION, &[saw("role", "asks for pre-votes")])?;
    g.say("One of the two that remain becomes a candidate in the next term. Two of three servers are a majority, so it can win, and it has every committed entry (§5.4.1).");
    g.expect(ELECTION, &[saw("role", "won votes from a majority")])?;
    g.say("The old leader restarts from its disk as a follower, hears the new leader's higher term, and follows it (§5.1).");
    g.cluster().restart(old);
    g.expect(ELECTION, &[saw("role", "follows node").on(old)])
}

fn partition(g: &mut Guide) -> Result<(), Stop> {
    g.say("Five servers with a leader.");
    let old = g.leader(ELECTION)?;
    let buddy = old % 5 + 1;
    let minority = [old, buddy];
    let majority = g.others(5, &minority);
    g.say("A partition cuts the leader and one follower off from the other three. The three cannot hear the leader: they elect a new one in a higher term. The leader, no longer hearing from a majority, steps down (check-quorum, thesis §6.2).");
    g.cluster().cut(&minority, &majority);
    g.cluster().cut(&majority, &minority);
    g.expect(
        2 * ELECTION,
        &[
            saw("role", "won votes from a majority"),
            saw("role", "stepped down").on(old),
        ],
    )?;
    g.say("The two on the minority side keep timing out, but a pre-vote needs a majority of yeses, which they cannot get: they never raise the term (thesis §9.6). The partition heals: they hear the new leader and follow it.");
    g.cluster().heal();
    g.expect(
        ELECTION,
        &[
            saw("role", "follows node").on(old),
            saw("role", "follows node").on(buddy),
        ],
    )
}

/// Figure 8, scripted: an entry of an old term, stored on a majority,
/// committed by counting replicas (the bug), then overwritten.
fn figure8(g: &mut Guide) -> Result<(), Stop> {
    g.say("Figure 8 of the paper, with no no-op at election (§8). A leader, call it A, commits a first entry on all five servers.");
    let a = g.leader(ELECTION)?;
    g.cluster()
        .propose(a, "x", "1")
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(
        SECOND,
        &[saw("commit", "a majority stores the entry").on(a)],
    )?;
    g.cluster().run_for(300 * MS);
    let b = a % 5 + 1;
    let rest = g.others(5, &[a, b]);
    g.say("A is cut off from all but B, takes a second entry, and gets it to B only: entry 2 of A's term is on two servers, not committed. Then A crashes.");
    g.cluster().cut(&[a], &rest);
    g.cluster().cut(&rest, &[a]);
    g.cluster()
        .propose(a, "y", "2")
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(SECOND, &[saw("reply", "appended entries 2..=2").on(b)])?;
    g.cluster().crash(a);
    // A's messages still in flight meet the cut links, and are lost.
    g.cluster().run_for(50 * MS);
    g.cluster().heal();
    g.say("B is cut off too. The other three elect a leader, call it E, in a newer term; E takes an entry at index 2 of its own term, alone (cut off at once), and crashes.");
    g.cluster().cut(&[b], &rest);
    g.cluster().cut(&rest, &[b]);
    g.expect(2 * ELECTION, &[saw("role", "won votes from a majority")])?;
    let e = g
        .cluster()
        .leader()
        .filter(|l| rest.contains(l))
        .ok_or(Stop::Missing("no leader among the three".into()))?;
    let others = g.others(5, &[e]);
    g.cluster().cut(&[e], &others);
    g.cluster().cut(&others, &[e]);
    g.cluster()
        .propose(e, "z", "3")
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.cluster().run_for(50 * MS);
    g.cluster().crash(e);
    g.say("A restarts and the links heal (E stays down). A or B, whose logs are longest, wins a newer term, and sends entry 2 of A's old term to the others. Now a majority stores it. With §5.4.2 switched off, the leader commits it by counting replicas, although it is not from the leader's term.");
    g.cluster().heal();
    g.cluster().restart(a);
    g.expect(
        3 * ELECTION,
        &[
            saw("role", "won votes from a majority"),
            saw("reply", "appended entries 2..=2"),
        ],
    )?;
    g.cluster().run_for(ELECTION_TIMEOUT);
    let l = g
        .cluster()
        .leader()
        .ok_or(Stop::Missing("no leader of A and B".into()))?;
    g.say("The leader crashes. E restarts: its last entry is from a newer term than anyone's, so its log is the most up to date (§5.4.1). The other three are cut off from each other, so only E can gather votes.");
    g.cluster().crash(l);
    let voters: Vec<NodeId> = g.others(5, &[e, l]);
    for &v in &voters {
        let rest: Vec<NodeId> = voters.iter().copied().filter(|&w| w != v).collect();
        g.cluster().cut(&[v], &rest);
    }
    g.cluster().restart(e);
    if g.bug.is_some() {
        g.say("With §5.4.2 switched off, entry 2 was committed, yet E wins without it: leader completeness is broken, and E would overwrite a committed entry on the others (Figure 8).");
        g.expect(
            4 * ELECTION,
            &[
                saw("role", "won votes from a majority").on(e),
                saw("violation", "leader_completeness"),
            ],
        )
    } else {
        g.say("Without the bug, entry 2 was never committed (it is not from the leader's term): E wins, and replacing entry 2 on the others is safe (§5.4.2).");
        g.expect(
            4 * ELECTION,
            &[
                saw("role", "won votes from a majority").on(e),
                saw("reply", "deleted its entries from 2"),
            ],
        )
    }
}

fn snapshot(g: &mut Guide) -> Result<(), Stop> {
    g.say("Three servers; each snapshots its state once it has applied five entries' worth of log, and discards the log up to it (§7).");
    g.cluster().snapshot_past(5 * ENTRY_COST);
    let leader = g.leader(ELECTION)?;
    for i in 0..12 {
        g.cluster()
            .propose(leader, &format!("k{i}"), "v")
            .map_err(|e| Stop::Missing(e.to_string()))?;
        g.cluster().run_for(20 * MS);
    }
    g.expect(
        SECOND,
        &[saw("snapshot_taken", "took a snapshot").on(leader)],
    )?;
    let follower = leader % 3 + 1;
    g.say("A follower's disk is replaced by an empty one. The leader's next heartbeat is rejected: the follower has lost entries it had acknowledged. The entries it needs are gone from the leader's log, compacted into the snapshot.");
    g.cluster().wipe(follower);
    g.expect(SECOND, &[saw("reply", "rejected node").on(follower)])?;
    g.say("So the leader sends its snapshot instead (InstallSnapshot, §7), then the entries after it.");
    g.expect(
        2 * SECOND,
        &[
            saw("send", "sends node"),
            saw("snapshot_installed", "installed the leader's snapshot").on(follower),
        ],
    )
}

fn membership(g: &mut Guide) -> Result<(), Stop> {
    g.say("Three servers with a leader. A fourth server starts empty, waiting to be added.");
    let leader = g.leader(ELECTION)?;
    g.cluster().run_for(200 * MS);
    g.say("The leader adds it as a learner first (thesis §4.2.1): it receives the log but does not vote, so it cannot slow down commits while it catches up. The configuration takes effect on each server as soon as it is in its log.");
    g.cluster()
        .add(leader, 4)
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(2 * SECOND, &[saw("configuration", "learners {4}")])?;
    g.say("Once it has caught up, the leader promotes it to a voter: now four servers, and a majority is three.");
    g.expect(5 * SECOND, &[saw("configuration", "voters {1,2,3,4}")])?;
    let committed = |c: &Scenario| {
        c.status(leader)
            .is_some_and(|s| s.commit_index >= s.configuration_index)
    };
    g.cluster().run_until(5 * SECOND, committed);
    let gone = leader % 3 + 1;
    g.say("Then the leader removes another server. One change at a time keeps every majority of the old configuration overlapping every majority of the new (thesis §4.1).");
    g.cluster()
        .change(leader, MembershipChange::Remove { id: gone })
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(5 * SECOND, &[saw("configuration", "voters {")])?;
    g.cluster().run_for(SECOND);
    match g.cluster().configuration(leader) {
        Some((c, _)) if !c.is_member(gone) && c.is_voter(4) => Ok(()),
        other => Err(Stop::Missing(format!("the configuration is {other:?}"))),
    }
}

fn transfer(g: &mut Guide) -> Result<(), Stop> {
    g.say("Three servers with a leader. The operator asks it to hand leadership to another server (thesis §3.10).");
    let old = g.leader(ELECTION)?;
    let target = old % 3 + 1;
    g.cluster()
        .transfer(old, target)
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.say("The leader stops taking commands, makes sure the target's log is up to date, then sends it TimeoutNow: the target starts an election at once, flagged as a transfer so that voters who still hear the old leader vote anyway.");
    g.expect(
        2 * SECOND,
        &[
            saw("send", "TimeoutNow makes it start an election"),
            saw("role", "won votes from a majority").on(target),
        ],
    )?;
    g.say("The old leader sees the newer term and follows the new one.");
    g.expect(SECOND, &[saw("role", "follows node").on(old)])
}

fn read_index(g: &mut Guide) -> Result<(), Stop> {
    g.say("Five servers; the leader commits x = 1.");
    let old = g.leader(ELECTION)?;
    g.cluster()
        .propose(old, "x", "1")
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(
        SECOND,
        &[saw("commit", "a majority stores the entry").on(old)],
    )?;
    let minority = [old, old % 5 + 1];
    let majority = g.others(5, &minority);
    g.say("A partition leaves the leader with one follower. The other three elect a new leader and write x = 2.");
    g.cluster().cut(&minority, &majority);
    g.cluster().cut(&majority, &minority);
    g.expect(2 * ELECTION, &[saw("role", "won votes from a majority")])?;
    let new = g
        .cluster()
        .leader()
        .filter(|l| majority.contains(l))
        .ok_or(Stop::Missing("no leader in the majority".into()))?;
    g.cluster()
        .propose(new, "x", "2")
        .map_err(|e| Stop::Missing(e.to_string()))?;
    g.expect(
        SECOND,
        &[saw("commit", "a majority stores the entry").on(new)],
    )?;
    g.say("A client asks the old side for x. Serving it from the old leader's state would return 1, a stale value. With ReadIndex (thesis §6.4) a leader answers a read only after a round of heartbeats acknowledged by a majority, which the old side cannot get: the read fails or times out, and never returns 1.");
    let ticket = g.cluster().get(old, "x");
    g.expect(4 * SECOND, &[saw("client_request", "").on(old)])?;
    g.cluster().run_for(3 * SECOND);
    if g.cluster()
        .reply(ticket)
        .is_some_and(|r| r.starts_with("VALUE"))
    {
        return Err(Stop::Missing(format!(
            "the old side answered {:?}",
            g.cluster().reply(ticket)
        )));
    }
    g.say("The same read at the new leader sees x = 2.");
    let fresh = g.cluster().get(new, "x");
    g.cluster().run_for(200 * MS);
    match g.cluster().reply(fresh) {
        Some("VALUE 2") => Ok(()),
        other => Err(Stop::Missing(format!("the new leader answered {other:?}"))),
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Missing(why) => f.write_str(why),
            Stop::Violation(v) => write!(f, "{v}"),
        }
    }
}
