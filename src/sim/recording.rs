//! A schedule's events, recorded for the cluster page: the structured twin of the text trace.
//!
//! When asked, the world records every [`crate::events::Event`] as it runs,
//! stamped with virtual time and the number of the step it happened in (one
//! step is one handled event of the queue: a tick, a delivery, a fault).
//! Nothing is recorded otherwise. [`record_schedule`] runs one seed so, and
//! [`Recording::to_json_lines`] writes the trace file `sim -trace-json`
//! writes: a header line (seed, options, knobs, servers), one line per event,
//! and an `end` line with the outcome (the violation, its step and
//! evidence; the linearizability verdict). The page replays it offline.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use super::knobs::{Knobs, Options};
use super::runner::{option_flags, Outcome, Violation};
use super::trace::{Trace, TraceMode};
use super::world::World;
use super::{Time, MS};
use crate::events::json::{escape_into, write_event, Object};
use crate::events::{Event, Sink, What};
use crate::raft::{NodeId, Term};

/// The events of a run so far.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    on: bool,
    now: Time,
    step: u64,
    seqs: BTreeMap<NodeId, u64>,
    events: Vec<(u64, Event)>,
}

impl Collector {
    /// A collector that records (`on`) or ignores everything.
    pub(crate) fn new(on: bool) -> Self {
        Collector {
            on,
            ..Collector::default()
        }
    }

    /// The clock and step the next events happen at.
    pub(crate) fn set_step(&mut self, now: Time, step: u64) {
        self.now = now;
        self.step = step;
    }

    /// The events recorded, each with its step.
    pub(crate) fn events(&self) -> &[(u64, Event)] {
        &self.events
    }

    /// Takes the events recorded.
    pub(crate) fn take(&mut self) -> Vec<(u64, Event)> {
        std::mem::take(&mut self.events)
    }
}

impl Sink for Collector {
    fn enabled(&self) -> bool {
        self.on
    }

    fn record(&mut self, node: NodeId, term: Term, what: What) {
        if !self.on {
            return;
        }
        let seq = self.seqs.entry(node).or_insert(0);
        *seq += 1;
        let event = Event {
            seq: *seq,
            time: self.now,
            node,
            term,
            what,
        };
        self.events.push((self.step, event));
    }
}

/// One schedule with its events.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The seed.
    pub seed: u64,
    /// The options it ran with.
    pub options: Options,
    /// What the seed drew.
    pub knobs: Knobs,
    /// How it ended.
    pub outcome: Outcome,
    /// The step the violation happened in, if there was one.
    pub violation_step: Option<u64>,
    /// Every event, with the step it happened in.
    pub events: Vec<(u64, Event)>,
}

/// Runs the schedule of `seed` under `options` and records its events. A
/// violation is the last event (node 0), in the step it happened in.
pub fn record_schedule(seed: u64, options: &Options) -> Recording {
    let mut world = World::new(seed, options, Trace::new(TraceMode::Off, false));
    world.events = Collector::new(true);
    let result = panic::catch_unwind(AssertUnwindSafe(|| world.run()));
    let result = result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(Violation {
            invariant: "no_panic",
            rule: "the code under test must not panic",
            evidence: message,
        })
    });
    let stats = world.stats;
    let (outcome, violation_step) = match result {
        Ok(()) => (Outcome::Pass(stats), None),
        Err(violation) => {
            world.record_violation(&violation);
            let at = world.now();
            let step = stats.steps;
            (
                Outcome::Fail {
                    violation,
                    at,
                    stats,
                },
                Some(step),
            )
        }
    };
    Recording {
        seed,
        options: options.clone(),
        knobs: world.knobs.clone(),
        outcome,
        violation_step,
        events: world.events.take(),
    }
}

impl Recording {
    /// The servers that ever existed in the run, by id.
    pub fn servers(&self) -> Vec<NodeId> {
        let n = self.knobs.nodes + self.knobs.spare_nodes;
        (1..=n as NodeId).collect()
    }

    /// The trace file: a header line, one line per event, an `end` line.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.text("trace", "raftkv")
            .text("source", "simulator")
            .text("clock", "virtual")
            .num("seed", self.seed)
            .text("flags", option_flags(&self.options).trim())
            .text(
                "bug",
                &self.options.bug.map_or(String::new(), |b| b.to_string()),
            )
            .text("knobs", &self.knobs.to_string())
            .num("nodes", self.knobs.nodes as u64)
            .nums("servers", &self.servers())
            .num("tick", 10 * MS)
            .flag("noop", self.knobs.noop_on_election);
        o.close();
        out.push('\n');
        for (step, event) in &self.events {
            write_event(&mut out, event, Some(*step));
            out.push('\n');
        }
        let stats = self.outcome.stats();
        let mut o = Object::new(&mut out);
        o.text("kind", "end")
            .num("steps", stats.steps)
            .num("ops", stats.ops_ok);
        match &self.outcome {
            Outcome::Pass(stats) => {
                o.text("outcome", "pass")
                    .num("t", stats.virtual_time)
                    .flag("linearizable", true);
            }
            Outcome::Fail { violation, at, .. } => {
                o.text("outcome", "fail")
                    .num("t", *at)
                    .opt("step", self.violation_step)
                    .text("invariant", violation.invariant)
                    .text("rule", violation.rule)
                    .text("evidence", &violation.evidence);
                if violation.invariant == "linearizability" {
                    o.flag("linearizable", false);
                }
            }
        }
        o.close();
        out.push('\n');
        out
    }
}

/// The ids of the servers a violation's evidence names (`node 3`, `nodes 1,2`).
pub(crate) fn nodes_named(evidence: &str) -> Vec<NodeId> {
    let mut ids = Vec::new();
    let words: Vec<&str> = evidence.split_whitespace().collect();
    for pair in words.windows(2) {
        if pair[0] == "node" || pair[0] == "nodes" {
            for part in pair[1].split(',') {
                let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(id) = digits.parse::<NodeId>() {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids
}

/// `text` as a JSON string (for writers that embed one).
pub fn json_string(text: &str) -> String {
    let mut out = String::new();
    escape_into(&mut out, text);
    out
}

impl World {
    /// One more step begins now: events recorded from here on belong to it.
    pub(super) fn begin_step(&mut self) {
        self.stats.steps += 1;
        self.events.set_step(self.now, self.stats.steps);
    }

    /// Whether events are being recorded (callers skip building them if not).
    pub(super) fn recording(&self) -> bool {
        self.events.enabled()
    }

    /// Records `what` on server `node` (an index), in its current term.
    pub(super) fn record(&mut self, node: usize, what: What) {
        if !self.events.enabled() {
            return;
        }
        let term = self.nodes[node]
            .running
            .as_ref()
            .map_or(0, |r| r.raft.hard_state().current_term);
        self.events.record(node as NodeId + 1, term, what);
    }

    /// Records something done to the cluster from outside (node 0).
    pub(super) fn record_fault(&mut self, fault: crate::events::Intervention) {
        self.events.record(0, 0, What::Intervention(fault));
    }

    /// Records a violation as the run's last event.
    pub(crate) fn record_violation(&mut self, violation: &Violation) {
        self.events.set_step(self.now, self.stats.steps);
        let what = What::Violation {
            invariant: violation.invariant,
            rule: violation.rule,
            evidence: violation.evidence.as_str().into(),
            nodes: nodes_named(&violation.evidence).into(),
        };
        self.events.record(0, 0, what);
    }

    /// A fresh message id.
    pub(super) fn next_msg(&mut self) -> u64 {
        self.messages_sent += 1;
        self.messages_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sim::{run_schedule, SECOND};

    #[test]
    fn recording_a_schedule_changes_nothing_and_pairs_every_delivery_with_its_send() {
        let options = Options {
            fault_time: 3 * SECOND,
            liveness_time: 10 * SECOND,
            ..Options::default()
        };
        for seed in [3, 4] {
            let recording = record_schedule(seed, &options);
            let plain = run_schedule(seed, &options, TraceMode::Off, false);
            assert_eq!(recording.outcome, plain, "seed {seed}");
            let mut sent = std::collections::BTreeSet::new();
            let mut steps = 0;
            for (step, event) in &recording.events {
                assert!(*step >= steps, "steps only move forward");
                steps = *step;
                match event.what {
                    What::Send { msg, .. } => assert!(sent.insert(msg), "one send per id"),
                    What::Receive { msg, .. } | What::Lost { msg, .. } => {
                        assert!(sent.contains(&msg), "seed {seed}: msg {msg} was never sent")
                    }
                    _ => {}
                }
            }
            assert!(!sent.is_empty());
            let lines = recording.to_json_lines();
            assert_eq!(lines.lines().count(), recording.events.len() + 2);
            assert!(lines.lines().last().unwrap().contains("\"kind\":\"end\""));
        }
    }

    #[test]
    fn evidence_names_its_servers() {
        let evidence = "node 3 applied 5 at index 7, but node 1 applied 4; nodes 2,5 agree";
        assert_eq!(nodes_named(evidence), [3, 1, 2, 5]);
        assert_eq!(nodes_named("no servers here"), Vec::<NodeId>::new());
    }
}
