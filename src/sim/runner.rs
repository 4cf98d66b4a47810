//! Running schedules: one seed, many seeds on all cores, replay and shrinking.
//!
//! A schedule is a pure function of its seed and [`Options`], so a failure is
//! reported as the command that replays it. Each run is untraced (nothing is
//! formatted); to show the last events before a violation the runner simply
//! runs the seed again with a trace, and checks it fails the same way.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::invariants::Violation as InvariantViolation;
use super::knobs::{FaultKind, Knobs, Options};
use super::trace::{Trace, TraceMode};
use super::world::World;
use super::{format_time, Time, SECOND};

pub use super::invariants::Violation;

/// Counters of one schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events handled.
    pub steps: u64,
    /// Virtual time when the schedule ended.
    pub virtual_time: Time,
    /// Virtual time when the faults stopped.
    pub fault_time: Time,
    /// Faults drawn (some are no-ops: crashing a server that is down).
    pub faults: u64,
    /// Servers crashed.
    pub crashes: u64,
    /// Client operations with a definite reply.
    pub ops_ok: u64,
    /// Client operations still pending when the schedule ended.
    pub ops_unknown: u64,
    /// Events the simulated watchers read and checked.
    pub watch_events: u64,
    /// Times a watcher resumed on another server (its own crashed or restarted).
    pub watch_resumes: u64,
    /// Times a watcher's resume revision was compacted and it re-read.
    pub watch_compactions: u64,
}

/// How one schedule ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass(RunStats),
    /// A check failed at virtual time `at`.
    Fail {
        /// What broke.
        violation: InvariantViolation,
        /// When.
        at: Time,
        /// Counters up to then.
        stats: RunStats,
    },
}

impl Outcome {
    /// The counters, whatever the outcome.
    pub fn stats(&self) -> RunStats {
        match self {
            Outcome::Pass(s) | Outcome::Fail { stats: s, .. } => *s,
        }
    }

    /// The violation, if the schedule failed.
    pub fn violation(&self) -> Option<&InvariantViolation> {
        match self {
            Outcome::Pass(_) => None,
            Outcome::Fail { violation, .. } => Some(violation),
        }
    }
}

/// Runs the schedule of `seed` with `trace` deciding where its events go.
/// A panic in the code under test is reported as a violation.
pub fn run_schedule(seed: u64, options: &Options, trace: TraceMode, verbose: bool) -> Outcome {
    run_traced(seed, options, trace, verbose).0
}

fn run_traced(
    seed: u64,
    options: &Options,
    mode: TraceMode,
    verbose: bool,
) -> (Outcome, Vec<String>) {
    let mut world = World::new(seed, options, Trace::new(mode, verbose));
    let result = panic::catch_unwind(AssertUnwindSafe(|| world.run()));
    let result = result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(InvariantViolation {
            invariant: "no_panic",
            rule: "the code under test must not panic",
            evidence: message,
        })
    });
    let stats = world.stats;
    let outcome = match result {
        Ok(()) => Outcome::Pass(stats),
        Err(violation) => Outcome::Fail {
            violation,
            at: world.now(),
            stats,
        },
    };
    let lines = world.trace.recent();
    (outcome, lines)
}

/// Everything to report about a failed schedule.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The options it ran with (after shrinking, if asked).
    pub options: Options,
    /// What broke, when.
    pub outcome: Outcome,
    /// The knobs the seed drew.
    pub knobs: Knobs,
    /// The last events before the violation.
    pub last_events: Vec<String>,
}

impl Failure {
    /// Runs `seed` again with a trace to collect its last `events` lines.
    pub fn explain(seed: u64, options: &Options, events: usize) -> Failure {
        let (outcome, last_events) = run_traced(seed, options, TraceMode::Ring(events), false);
        Failure {
            seed,
            options: options.clone(),
            knobs: Knobs::draw(seed, options),
            outcome,
            last_events,
        }
    }

    /// The one-line command that replays this schedule with a full trace.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release --example sim -- -seed {}{} -trace",
            self.seed,
            option_flags(&self.options)
        )
    }

    /// A multi-line report: seed, knobs, violation, last events, replay.
    pub fn report(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("VIOLATION in seed {}\n", self.seed));
        out.push_str(&format!("  knobs: {}\n", self.knobs));
        if let Outcome::Fail { violation, at, .. } = &self.outcome {
            out.push_str(&format!(
                "  at {}: {} ({})\n  evidence: {}\n",
                format_time(*at),
                violation.invariant,
                violation.rule,
                violation.evidence
            ));
        }
        out.push_str(&format!("  last {} events:\n", self.last_events.len()));
        for line in &self.last_events {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("  replay: {}\n", self.replay_command()));
        out
    }
}

/// The command-line flags that reproduce `options` (beyond the defaults).
pub fn option_flags(options: &Options) -> String {
    let defaults = Options::default();
    let mut flags = String::new();
    if let Some(n) = options.nodes {
        flags.push_str(&format!(" -nodes {n}"));
    }
    if let Some(c) = options.clients {
        flags.push_str(&format!(" -clients {c}"));
    }
    if options.fault_time != defaults.fault_time {
        flags.push_str(&format!(" -fault-ms {}", options.fault_time / 1000));
    }
    if options.liveness_time != defaults.liveness_time {
        flags.push_str(&format!(" -liveness-ms {}", options.liveness_time / 1000));
    }
    if options.faults != defaults.faults {
        let names: Vec<&str> = options.faults.iter().map(|k| k.name()).collect();
        let list = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(",")
        };
        flags.push_str(&format!(" -faults {list}"));
    }
    if !options.lossy {
        flags.push_str(" -lossless");
    }
    if let Some(noop) = options.noop_on_election {
        flags.push_str(if noop { " -noop on" } else { " -noop off" });
    }
    if let Some(bug) = options.bug {
        flags.push_str(&format!(" -bug {bug}"));
    }
    flags
}

/// Looks for smaller options under which `seed` still fails with the same
/// invariant: fewer fault kinds, fewer clients, a lossless network, a shorter
/// fault phase. Each candidate is a full rerun; `budget` bounds the reruns.
pub fn shrink(seed: u64, options: &Options, budget: usize) -> Options {
    let Some(target) = run_schedule(seed, options, TraceMode::Off, false)
        .violation()
        .map(|v| v.invariant)
    else {
        return options.clone();
    };
    let mut best = options.clone();
    let mut runs = 0;
    let still_fails = |candidate: &Options, runs: &mut usize| {
        *runs += 1;
        run_schedule(seed, candidate, TraceMode::Off, false)
            .violation()
            .is_some_and(|v| v.invariant == target)
    };
    let knobs = Knobs::draw(seed, &best);
    // Fault kinds this seed actually injects, one at a time.
    best.faults.retain(|k| knobs.faults.contains(k));
    for kind in FaultKind::ALL {
        if runs >= budget || !best.faults.contains(&kind) {
            continue;
        }
        let mut candidate = best.clone();
        candidate.faults.retain(|&k| k != kind);
        if still_fails(&candidate, &mut runs) {
            best = candidate;
        }
    }
    if runs < budget && best.lossy {
        let mut candidate = best.clone();
        candidate.lossy = false;
        if still_fails(&candidate, &mut runs) {
            best = candidate;
        }
    }
    let clients = best.clients.unwrap_or(knobs.clients);
    for fewer in 1..clients {
        if runs >= budget {
            break;
        }
        let mut candidate = best.clone();
        candidate.clients = Some(fewer);
        if still_fails(&candidate, &mut runs) {
            best = candidate;
            break;
        }
    }
    // A shorter fault phase: halve while it still fails.
    while runs < budget && best.fault_time > SECOND {
        let mut candidate = best.clone();
        candidate.fault_time = best.fault_time / 2;
        if !still_fails(&candidate, &mut runs) {
            break;
        }
        best = candidate;
    }
    best
}

/// The result of running many seeds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Events handled, in all.
    pub steps: u64,
    /// Virtual time simulated, in all.
    pub virtual_time: Time,
    /// Client operations completed, in all.
    pub ops: u64,
    /// Seeds that failed, with their outcome, in seed order.
    pub failures: Vec<(u64, Outcome)>,
    /// Wall-clock time taken.
    pub wall: Duration,
}

impl Summary {
    /// The one-line summary.
    pub fn line(&self) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        format!(
            "schedules={} steps={} virtual={}s ops={} violations={} wall={:.1}s \
             ({:.0} schedules/s, {:.0} steps/s)",
            self.schedules,
            self.steps,
            self.virtual_time / SECOND,
            self.ops,
            self.failures.len(),
            secs,
            self.schedules as f64 / secs,
            self.steps as f64 / secs
        )
    }
}

/// Which seeds to run and how: seeds `first..first + count` on `threads`
/// threads; with `stop_at_first`, no new seed starts once one has failed.
/// `Search { count: 300, ..Search::default() }.run(&options, &|_, _| {})`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// The first seed.
    pub first: u64,
    /// How many seeds.
    pub count: u64,
    /// Threads running schedules (at least one).
    pub threads: usize,
    /// Stop handing out seeds once one fails.
    pub stop_at_first: bool,
}

impl Default for Search {
    /// Seeds 1..=100 on every core, all of them run.
    fn default() -> Search {
        Search {
            first: 1,
            count: 100,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop_at_first: false,
        }
    }
}

impl Search {
    /// Runs the seeds, calling `progress` after each (from whichever thread
    /// ran it).
    pub fn run(&self, options: &Options, progress: &(dyn Fn(u64, &Outcome) + Sync)) -> Summary {
        let Search {
            first,
            count,
            threads,
            stop_at_first,
        } = *self;
        let started = Instant::now();
        let next = AtomicU64::new(first);
        let stop = AtomicBool::new(false);
        let results: Mutex<Vec<(u64, Outcome)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| loop {
                    if stop.load(AtomicOrdering::Relaxed) {
                        return;
                    }
                    let seed = next.fetch_add(1, AtomicOrdering::Relaxed);
                    if seed >= first + count {
                        return;
                    }
                    let outcome = run_schedule(seed, options, TraceMode::Off, false);
                    if stop_at_first && outcome.violation().is_some() {
                        stop.store(true, AtomicOrdering::Relaxed);
                    }
                    progress(seed, &outcome);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((seed, outcome));
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        results.sort_by_key(|(seed, _)| *seed);
        let mut summary = Summary {
            schedules: results.len() as u64,
            steps: 0,
            virtual_time: 0,
            ops: 0,
            failures: Vec::new(),
            wall: started.elapsed(),
        };
        for (seed, outcome) in results {
            let stats = outcome.stats();
            summary.steps += stats.steps;
            summary.virtual_time += stats.virtual_time;
            summary.ops += stats.ops_ok;
            if outcome.violation().is_some() {
                summary.failures.push((seed, outcome));
            }
        }
        summary
    }
}
