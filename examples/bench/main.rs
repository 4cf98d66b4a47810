//! Throughput, latency and server CPU of 3-node clusters of real `raftkv`
//! processes on loopback, with fsync on (the servers' normal mode); two
//! server binaries side by side if asked.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench
//! cargo run --release --example bench -- -mode get,mixed -clients 1,64 -ops 20000
//! cargo run --release --example bench -- -target :8001,:8002,:8003 -mode get   # a running cluster
//! ```
//!
//! `README.md` beside this file is the reference: every mode and flag, the
//! floors, how to read the table, comparing two builds, and the catch-up run.
//!
//! The files: `options.rs` (flags), `floors.rs` (what loopback and the disk
//! cost at the least), `cluster.rs` (starting and watching a local cluster),
//! `protocol.rs` (talking to a server, whichever way it hands out sessions),
//! `load.rs` (the clients and their workloads), `report.rs` (summaries and
//! the table), `catchup.rs` (`-catchup`: a wiped follower's rebuild).

mod catchup;
mod cluster;
mod floors;
mod load;
mod options;
mod protocol;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cluster::{find_leader, Binary, LocalCluster};
use floors::Floors;
use load::{prepare, range_groups, run_row, RowResult, Workload};
use options::{Mode, Options, Reads, USAGE};
use protocol::{detect_sessions, Target};
use raftkv::client::TOKEN_ENV;
use report::{ms, Stats, HEADER};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The run's data directory; removed at the end.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(o: &Options) -> Result<(), String> {
    let dir = RunDir(o.dir.join(format!("raftkv-bench-{}", std::process::id())));
    fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    // Ask for the clock tick now: it runs `getconf`, which a row should not pay for.
    let ticks = cluster::clock_ticks();
    let floors = Floors::measure(&dir.0).map_err(|e| format!("measuring the floors: {e}"))?;
    let what = match &o.target {
        Some(addrs) => format!("the running cluster {}", addrs.join(",")),
        None => "3 servers on loopback, fsync on".into(),
    };
    println!("raftkv bench: {what}; data under {}", dir.0.display());
    println!("{}", floors.describe());
    if o.catchup_mb.is_none() {
        for &mode in &o.modes {
            println!("{}: {}", mode.name(), describe(o, mode));
        }
    }
    match (&o.target, o.catchup_mb) {
        (Some(addrs), _) => run_target(o, addrs)?,
        (None, Some(state_mb)) => {
            let path = o
                .binaries
                .first()
                .cloned()
                .map_or_else(Binary::default_path, Ok)?;
            let bin = Binary::probe("A", path)?;
            println!("{}", bin.describe());
            let experiment = catchup::Catchup {
                state_mb,
                value_kb: o.value_kb,
                writers: o.clients.first().copied().unwrap_or(1),
            };
            catchup::run(&bin, &dir.0.join("catchup"), &experiment)?;
        }
        (None, None) => run_local(o, &dir.0, &floors)?,
    }
    // Other load on the machine (a disk shared with other work, above all)
    // moves the floors; a second measurement shows whether they held.
    let after = Floors::measure(&dir.0).map_err(|e| format!("measuring the floors: {e}"))?;
    println!("floors again after the run: {}", after.summary());
    println!(
        "CPU: utime + stime from /proc/<pid>/stat in ticks of 1/{ticks} s, each rounded, so \
         ±{} s per process and row; per 1,000 successful ops. The bench's own CPU is on the \
         same cores.",
        2.0 / ticks as f64
    );
    Ok(())
}

/// What one command of `mode` is.
fn describe(o: &Options, mode: Mode) -> String {
    let reads = match o.reads {
        Reads::Plain => "as plain lines",
        Reads::Session => "inside the session",
        Reads::Serializable => {
            "serializable (any server answers; client i talks to server i mod 3)"
        }
    };
    match mode {
        Mode::Put => "PUT of a new 16-byte key with a 64-byte value".into(),
        Mode::Get => format!("GET of one of {} preloaded keys at random, {reads}", o.keys),
        Mode::Mixed => format!(
            "{}% GETs ({reads}), {}% PUTs, over {} preloaded keys",
            o.read_pct,
            100 - o.read_pct,
            o.keys
        ),
        Mode::Transfer => "TRANSFER of 0.01 between two of 64 accounts".into(),
        Mode::Cas => "TXN: CAS-increment of the client's own counter (compare its mod revision, \
                      put one higher)"
            .into(),
        Mode::Range => format!(
            "RANGE of one of {} 100-key prefixes at random (64-byte values), {reads}",
            range_groups(o.keys)
        ),
    }
}

fn workload(o: &Options, mode: Mode) -> Workload {
    Workload {
        mode,
        read_pct: o.read_pct,
        keys: o.keys,
        reads: o.reads,
    }
}

/// Rows on fresh clusters of each binary.
fn run_local(o: &Options, dir: &Path, floors: &Floors) -> Result<(), String> {
    let paths = match o.binaries.is_empty() {
        true => vec![Binary::default_path()?],
        false => o.binaries.clone(),
    };
    let bins: Vec<Binary> = ["A", "B"]
        .into_iter()
        .zip(paths)
        .map(|(label, path)| Binary::probe(label, path))
        .collect::<Result<_, _>>()?;
    for bin in &bins {
        println!("{}", bin.describe());
    }
    println!(
        "each row: a fresh cluster, {} ops shared by the clients, run {} time(s) per binary{}\n",
        o.ops,
        o.repeat,
        if bins.len() > 1 {
            ", A and B in turn"
        } else {
            ""
        }
    );
    println!("{HEADER}");
    let mut notes = Vec::new();
    let mut clusters = 0;
    for &mode in &o.modes {
        let work = workload(o, mode);
        for &clients in &o.clients {
            let mut runs: Vec<Vec<RowResult>> = bins.iter().map(|_| Vec::new()).collect();
            for round in 1..=o.repeat {
                for (bin, runs) in bins.iter().zip(&mut runs) {
                    clusters += 1;
                    let progress = format!(
                        "{} × {clients} clients on {} ({round}/{})",
                        mode.name(),
                        bin.label,
                        o.repeat
                    );
                    let cluster_dir = dir.join(format!("cluster{clusters}"));
                    runs.push(run_fresh(
                        bin,
                        &cluster_dir,
                        &work,
                        clients,
                        o.ops,
                        &progress,
                    )?);
                }
            }
            let stats: Vec<Stats> = runs.iter().map(|r| Stats::merge(r)).collect();
            for (bin, s) in bins.iter().zip(&stats) {
                println!("{}", report::line(mode.name(), clients, bin.label, s));
                if let Some(e) = &s.first_error {
                    notes.push(format!(
                        "{} {} × {clients}: first error: {e}",
                        bin.label,
                        mode.name()
                    ));
                }
                if mode == Mode::Put && clients == 1 {
                    notes.push(format!(
                        "{}: PUT p50 at 1 client {} ms = {:.2} × the PUT floor (target ≤ 1.30)",
                        bin.label,
                        ms(s.p50),
                        s.p50 as f64 / floors.put_floor() as f64
                    ));
                }
            }
            if let [a, b] = &stats[..] {
                println!("{}", report::ratio_line(mode.name(), clients, a, b));
            }
        }
    }
    println!();
    for bin in &bins {
        if let Some(kind) = bin.sessions.get() {
            println!("{}: {}", bin.label, kind.describe());
        }
    }
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

/// One row on a fresh cluster of `bin` with its data in `dir`; `progress`
/// says which, on stderr.
fn run_fresh(
    bin: &Binary,
    dir: &Path,
    work: &Workload,
    clients: usize,
    ops: usize,
    progress: &str,
) -> Result<RowResult, String> {
    let mut cluster = LocalCluster::start(bin, dir)?;
    // The servers outlive an interrupted bench (std cannot catch SIGINT):
    // name them, so they can be killed by pid.
    let pids: Vec<String> = cluster.pids().iter().map(u32::to_string).collect();
    eprintln!("bench: {progress}, servers {}", pids.join(","));
    let Some(leader) = find_leader(&cluster.addrs, None) else {
        return Err(format!(
            "no leader among {}'s servers within 10 s{}",
            bin.label,
            cluster.diagnose()
        ));
    };
    let sessions = match bin.sessions.get() {
        Some(kind) => kind,
        None => {
            let kind = detect_sessions(&cluster.addrs, leader, None)
                .map_err(|e| format!("{}: detecting sessions: {e}", bin.label))?;
            bin.sessions.set(Some(kind));
            kind
        }
    };
    let target = Arc::new(Target {
        addrs: cluster.addrs.clone(),
        leader,
        token: None,
        sessions,
    });
    prepare(&target, work).map_err(|e| format!("{}: preloading: {e}", bin.label))?;
    run_row(&target, work, clients, ops, &cluster.pids()).map_err(|e| format!("{}: {e}", bin.label))
}

/// Rows on a running cluster.
fn run_target(o: &Options, addrs: &[String]) -> Result<(), String> {
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    let leader = find_leader(addrs, token.as_deref())
        .ok_or_else(|| format!("no leader among {}", addrs.join(",")))?;
    let sessions = detect_sessions(addrs, leader, token.clone())
        .map_err(|e| format!("detecting sessions: {e}"))?;
    println!(
        "target = {} (leader {}; {})\n",
        addrs.join(","),
        addrs[leader],
        sessions.describe()
    );
    println!("{HEADER}");
    let target = Arc::new(Target {
        addrs: addrs.to_vec(),
        leader,
        token,
        sessions,
    });
    let mut notes = Vec::new();
    for &mode in &o.modes {
        let work = workload(o, mode);
        prepare(&target, &work).map_err(|e| format!("preloading: {e}"))?;
        for &clients in &o.clients {
            let runs = (0..o.repeat)
                .map(|_| run_row(&target, &work, clients, o.ops, &[]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let s = Stats::merge(&runs);
            println!("{}", report::line(mode.name(), clients, "target", &s));
            if let Some(e) = &s.first_error {
                notes.push(format!("{} × {clients}: first error: {e}", mode.name()));
            }
        }
    }
    println!();
    for note in notes {
        println!("{note}");
    }
    Ok(())
}
