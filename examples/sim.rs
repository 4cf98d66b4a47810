//! Runs the deterministic cluster simulator over many seeds, or replays one.
//!
//! ```text
//! cargo run --release --example sim -- -seeds 1000          # seeds 1..=1000 on every core
//! cargo run --release --example sim -- -seed 42 -trace      # one schedule, every event
//! cargo run --release --example sim -- -bug figure8 -seeds 500
//! cargo run --release --example sim -- -seed 42 -trace-json run.jsonl  # the events, for the page
//! cargo run --release --example sim -- -seed 42 -bug figure8 -noop off -html replay.html
//! ```
//!
//! A violation prints the seed, the invariant and its evidence, the last events
//! before it, and the command that replays it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use raftkv::http::page::{replay_page, tours_page};
use raftkv::raft::Bug;
use raftkv::sim::recording::{record_schedule, Recording};
use raftkv::sim::runner::{shrink, Failure, Search};
use raftkv::sim::tours::{self, Tour, TOURS};
use raftkv::sim::{run_schedule, FaultKind, Options, Outcome, TraceMode, MS};

const USAGE: &str = "\
usage: sim [flags]

  -seeds N          run seeds FIRST..FIRST+N-1 (default 100)
  -first N          the first seed (default 1)
  -seed N           run only seed N (with -trace: print every event)
  -trace            print every event of the -seed run (-v adds the core's detail)
  -v                with -trace, the core's detail lines too
  -trace-json FILE  write the -seed run's events as JSON lines (the cluster page's trace format)
  -tour NAME        with -trace-json or -html: a guided tour instead of a seed (election,
                    leader-crash, partition, figure8, snapshot, membership, transfer,
                    read-index; 'all' with -html: every tour in one file)
  -html FILE        write one self-contained HTML file that replays the -seed run offline (with
                    -bug, the same seed without the bug beside it)
  -threads N        threads for many seeds (default: every core)
  -nodes N          3, 5 or 7 servers (default: drawn per seed)
  -clients N        clients (default: drawn per seed, 1..=6)
  -fault-ms N       virtual milliseconds of faults (default 20000)
  -liveness-ms N    virtual milliseconds allowed to recover afterwards (default 20000)
  -faults a,b       fault kinds allowed: crash,partition,one-way,bridge,pause,fast-clock,
                    transfer,membership (default all; a seed switches some off); 'none'
  -lossless         never drop or duplicate messages
  -noop on|off      the leader's no-op at election and ReadIndex reads (default: drawn
                    per seed, on in three of four; figure8 hides behind the no-op)
  -bug NAME         break one rule on purpose: figure8, no-election-restriction,
                    unpersisted-vote, truncate-without-conflict, read-index-any-term,
                    membership-2015, reply-before-persist, unpersisted-term,
                    snapshot-discards-log, ignore-failed-save
  -shrink           after a violation, look for fewer faults that still fail
  -keep-going       report every failing seed instead of stopping at the first
  -h                print this help";

struct Flags {
    seeds: u64,
    first: u64,
    seed: Option<u64>,
    trace: bool,
    verbose: bool,
    trace_json: Option<String>,
    html: Option<String>,
    tour: Option<String>,
    threads: usize,
    shrink: bool,
    keep_going: bool,
    options: Options,
}

fn parse(args: &[String]) -> Result<Flags, String> {
    let mut flags = Flags {
        seeds: 100,
        first: 1,
        seed: None,
        trace: false,
        verbose: false,
        trace_json: None,
        html: None,
        tour: None,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        shrink: false,
        keep_going: false,
        options: Options::default(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let name = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .ok_or(format!("unexpected argument '{arg}'"))?;
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        match name {
            "trace" => flags.trace = true,
            "v" => flags.verbose = true,
            "shrink" => flags.shrink = true,
            "keep-going" => flags.keep_going = true,
            "lossless" => flags.options.lossy = false,
            "h" | "help" => return Err(String::new()),
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).ok_or(format!("-{name} needs a value"))?.clone();
                        i += 1;
                        v
                    }
                };
                let number = || {
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("-{name}: '{value}' is not a number"))
                };
                match name {
                    "trace-json" => flags.trace_json = Some(value.clone()),
                    "html" => flags.html = Some(value.clone()),
                    "tour" => flags.tour = Some(value.clone()),
                    "seeds" => flags.seeds = number()?,
                    "first" => flags.first = number()?,
                    "seed" => flags.seed = Some(number()?),
                    "threads" => flags.threads = number()?.max(1) as usize,
                    "nodes" => {
                        let n = number()? as usize;
                        if ![3, 5, 7].contains(&n) {
                            return Err("-nodes must be 3, 5 or 7".into());
                        }
                        flags.options.nodes = Some(n);
                    }
                    "clients" => flags.options.clients = Some(number()?.clamp(1, 64) as usize),
                    "fault-ms" => flags.options.fault_time = number()? * MS,
                    "liveness-ms" => flags.options.liveness_time = number()? * MS,
                    "faults" => {
                        flags.options.faults = if value == "none" {
                            Vec::new()
                        } else {
                            value
                                .split(',')
                                .map(|k| FaultKind::parse(k).ok_or(format!("unknown fault '{k}'")))
                                .collect::<Result<_, _>>()?
                        }
                    }
                    "noop" => {
                        flags.options.noop_on_election = Some(match value.as_str() {
                            "on" => true,
                            "off" => false,
                            _ => return Err("-noop takes on or off".into()),
                        })
                    }
                    "bug" => {
                        flags.options.bug =
                            Some(Bug::parse(&value).ok_or(format!("unknown bug '{value}'"))?)
                    }
                    _ => return Err(format!("unknown flag -{name}")),
                }
            }
        }
    }
    Ok(flags)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse(&args) {
        Ok(f) => f,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sim: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(bug) = flags.options.bug {
        println!("bug switched on: {bug} (breaks {})", bug.rule());
    }
    let wants_files = flags.trace_json.is_some() || flags.html.is_some();
    if let Some(name) = &flags.tour {
        return write_tour(name, &flags);
    }
    match flags.seed {
        Some(seed) if wants_files => write_files(seed, &flags),
        Some(seed) => replay(seed, &flags),
        None if wants_files => {
            eprintln!("sim: -trace-json and -html need -seed N");
            ExitCode::from(2)
        }
        None => explore(&flags),
    }
}

/// One seed, traced or not.
fn replay(seed: u64, flags: &Flags) -> ExitCode {
    let started = Instant::now();
    let mode = if flags.trace {
        TraceMode::Print
    } else {
        TraceMode::Off
    };
    let outcome = run_schedule(seed, &flags.options, mode, flags.verbose);
    let stats = outcome.stats();
    match &outcome {
        Outcome::Pass(_) => {
            println!(
                "seed {seed}: ok ({} steps, {} virtual ms, {} ops, {} crashes) in {:.2}s",
                stats.steps,
                stats.virtual_time / MS,
                stats.ops_ok,
                stats.crashes,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Outcome::Fail { .. } => {
            report(seed, flags);
            ExitCode::from(1)
        }
    }
}

/// One seed, recorded: its events as JSON lines, or the page replaying them.
fn write_files(seed: u64, flags: &Flags) -> ExitCode {
    let recording = record_schedule(seed, &flags.options);
    let trace = recording.to_json_lines();
    let mut ok = true;
    if let Some(path) = &flags.trace_json {
        ok &= write(path, &trace);
    }
    if let Some(path) = &flags.html {
        // With a bug switched on, the same seed without it runs beside it.
        let counterpart = flags.options.bug.map(|_| {
            let options = Options {
                bug: None,
                ..flags.options.clone()
            };
            record_schedule(seed, &options).to_json_lines()
        });
        ok &= write(path, &replay_page(&trace, counterpart.as_deref()));
    }
    println!("{}", describe(&recording));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A guided tour (or every tour), as a trace or a page.
fn write_tour(name: &str, flags: &Flags) -> ExitCode {
    let chosen: Vec<Tour> = if name == "all" {
        TOURS.to_vec()
    } else {
        match tours::find(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("sim: no tour {name}");
                return ExitCode::from(2);
            }
        }
    };
    let mut ok = true;
    let mut runs = Vec::new();
    for tour in &chosen {
        let run = tour.run(false);
        match &run.result {
            Ok(()) => println!(
                "tour {}: {} steps, {} events",
                tour.name,
                run.steps.len(),
                run.events.len()
            ),
            Err(stop) => {
                println!("tour {} stopped: {stop}", tour.name);
                ok = false;
            }
        }
        let counterpart = tour.bug.map(|_| tour.run(true).to_json_lines());
        runs.push((*tour, run.to_json_lines(), counterpart));
    }
    if let Some(path) = &flags.trace_json {
        ok &= write(path, &runs[0].1);
    }
    if let Some(path) = &flags.html {
        let page = match runs.as_slice() {
            [(_, trace, counterpart)] if name != "all" => {
                replay_page(trace, counterpart.as_deref())
            }
            _ => {
                let listed: Vec<(&str, &str, &str, Option<&str>)> = runs
                    .iter()
                    .map(|(t, trace, c)| (t.name, t.title, trace.as_str(), c.as_deref()))
                    .collect();
                tours_page(&listed)
            }
        };
        ok &= write(path, &page);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn write(path: &str, contents: &str) -> bool {
    match std::fs::write(path, contents) {
        Ok(()) => {
            println!("wrote {path} ({} bytes)", contents.len());
            true
        }
        Err(e) => {
            eprintln!("sim: cannot write {path}: {e}");
            false
        }
    }
}

/// One line about a recorded run.
fn describe(recording: &Recording) -> String {
    let events = recording.events.len();
    match (&recording.outcome, recording.violation_step) {
        (Outcome::Fail { violation, at, .. }, Some(step)) => format!(
            "seed {}: {} at step {step} ({}), {events} events; evidence: {}",
            recording.seed,
            violation.invariant,
            raftkv::sim::format_time(*at),
            violation.evidence
        ),
        (outcome, _) => format!(
            "seed {}: ok ({} steps), {events} events",
            recording.seed,
            outcome.stats().steps
        ),
    }
}

/// Many seeds, in parallel.
fn explore(flags: &Flags) -> ExitCode {
    let done = AtomicU64::new(0);
    let total = flags.seeds;
    let step = (total / 20).max(1);
    let progress = |_seed: u64, _outcome: &Outcome| {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(step) || n == total {
            eprintln!("  {n}/{total} schedules");
        }
    };
    let search = Search {
        first: flags.first,
        count: total,
        threads: flags.threads,
        stop_at_first: !flags.keep_going,
    };
    let summary = search.run(&flags.options, &progress);
    for (seed, _) in &summary.failures {
        report(*seed, flags);
    }
    println!("{}", summary.line());
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn report(seed: u64, flags: &Flags) {
    let options = if flags.shrink {
        eprintln!("shrinking seed {seed}...");
        shrink(seed, &flags.options, 40)
    } else {
        flags.options.clone()
    };
    print!("{}", Failure::explain(seed, &options, 40).report());
}
