//! `-catchup MB`: a follower whose disk was wiped rebuilds itself from a large
//! state while the leader keeps serving writes.
//!
//! 1. Start a fresh cluster and load MB megabytes of state: PUTs of
//!    `-value-kb` values, four loaders at a time.
//! 2. Wait until every server has applied all of it.
//! 3. Kill a follower (SIGKILL), delete its data directory, start it again.
//! 4. Meanwhile `-clients` writers (the first count given) PUT small values
//!    through the leader in a closed loop.
//! 5. Done when the follower has applied everything committed when it
//!    restarted. Reported: the time, the snapshot it installed (from its
//!    log), the writes served meanwhile with their latencies, and the
//!    leader's memory: its peak RSS during the catch-up (sampled every 50 ms)
//!    and over its life (`VmHWM`, loading included).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raftkv::client::Client;

use crate::cluster::{find_leader, status, Binary, LocalCluster};
use crate::report::ms;

/// What the catch-up run is asked to do.
pub struct Catchup {
    /// Megabytes of state to load.
    pub state_mb: usize,
    /// Size of each loaded value, in KiB.
    pub value_kb: usize,
    /// Writers during the catch-up.
    pub writers: usize,
}

/// Runs the experiment on a fresh cluster of `bin` in `dir`.
pub fn run(bin: &Binary, dir: &Path, c: &Catchup) -> Result<(), String> {
    let mut cluster = LocalCluster::start(bin, dir)?;
    find_leader(&cluster.addrs, None)
        .ok_or_else(|| format!("no leader within 10 s{}", cluster.diagnose()))?;
    let addrs = cluster.addrs.clone();
    println!(
        "catch-up: {} MB in values of {} KiB",
        c.state_mb, c.value_kb
    );

    // 1. Load.
    let values = (c.state_mb * 1024).div_ceil(c.value_kb);
    let started = Instant::now();
    load(&addrs, values, c.value_kb * 1024)?;
    println!(
        "loaded {values} values in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. Everyone has it.
    let leader = find_leader(&addrs, None).ok_or("no leader after loading")?;
    let follower = (leader + 1) % 3;
    let commit = field(&addrs[leader], "commit")?;
    wait_until(
        Duration::from_secs(300),
        "every server to apply the load",
        || {
            addrs
                .iter()
                .all(|a| field(a, "applied").is_ok_and(|x| x >= commit))
        },
    )?;
    let leader_pid = cluster.pids()[leader];
    println!("leader n{}; wiping follower n{}", leader + 1, follower + 1);
    let logged: Vec<usize> = (1..=3).map(|id| cluster.log(id).len()).collect();

    // 3 and 4. Wipe, restart, write meanwhile.
    cluster.kill(follower + 1);
    let data = cluster.data_dir(follower + 1);
    fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..c.writers)
        .map(|w| {
            let (stop, latencies, addrs) = (stop.clone(), latencies.clone(), addrs.clone());
            thread::spawn(move || write_until(&addrs, w, &stop, &latencies))
        })
        .collect();
    let commit = field(&addrs[leader], "commit")?;
    let started = Instant::now();
    cluster.restart(follower + 1)?;
    let mut peak_rss = 0;
    let caught_up = wait_until(Duration::from_secs(600), "the follower to catch up", || {
        peak_rss = peak_rss.max(memory_kb(leader_pid, "VmRSS").unwrap_or(0));
        field(&addrs[follower], "applied").is_ok_and(|x| x >= commit)
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    // Keep the servers' logs: the run's directory is removed at the end.
    let kept = std::env::temp_dir().join("raftkv-catchup-logs");
    let _ = fs::create_dir_all(&kept);
    for id in 1..=3 {
        let _ = fs::write(kept.join(format!("n{id}.log")), cluster.log(id));
    }
    println!("the servers' logs are kept in {}", kept.display());
    caught_up?;

    // 5. Report: first what the servers logged meanwhile (not -v: only the
    //    events that matter).
    for (id, from) in (1..=3).zip(logged) {
        let log = cluster.log(id);
        for line in log.get(from..).unwrap_or_default().lines() {
            println!("  n{id}: {line}");
        }
    }
    let log = cluster.log(follower + 1);
    let installed = log
        .lines()
        .filter_map(|l| l.split("installed snapshot through index ").nth(1))
        .next_back()
        .unwrap_or("(none)");
    println!(
        "the wiped follower applied index {commit} after {:.1} s; it installed the snapshot through index {installed}",
        took.as_secs_f64()
    );
    let mut latencies = latencies.lock().map_err(|_| "a writer panicked")?.clone();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "meanwhile {} writers did {} PUTs ({:.0}/s): p50 {} ms, p99 {} ms, max {} ms",
        c.writers,
        latencies.len(),
        latencies.len() as f64 / took.as_secs_f64(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(latencies.last().copied().unwrap_or(0))
    );
    println!(
        "leader memory: peak RSS during the catch-up {} MB; VmHWM (its whole life, loading included) {} MB",
        peak_rss / 1024,
        memory_kb(leader_pid, "VmHWM").unwrap_or(0) / 1024
    );
    Ok(())
}

/// PUTs `values` values of `bytes` bytes, four loaders at a time.
fn load(addrs: &[String], values: usize, bytes: usize) -> Result<(), String> {
    let loaders: Vec<_> = (0..4)
        .map(|l| {
            let addrs = addrs.to_vec();
            thread::spawn(move || -> Result<(), String> {
                let mut client = Client::new(addrs);
                for i in (l..values).step_by(4) {
                    let value = format!("{i:08}{}", "v".repeat(bytes.saturating_sub(8)));
                    client
                        .put(&format!("big{i:06}"), &value)
                        .map_err(|e| format!("loading value {i}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for l in loaders {
        l.join().map_err(|_| "a loader panicked")??;
    }
    Ok(())
}

/// PUTs small values until `stop`, recording each latency in nanoseconds.
fn write_until(addrs: &[String], writer: usize, stop: &AtomicBool, latencies: &Mutex<Vec<u64>>) {
    let mut client = Client::new(addrs.to_vec());
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if client.put(&format!("w{writer}-{i}"), "x").is_ok() {
            let took = started.elapsed().as_nanos() as u64;
            if let Ok(mut l) = latencies.lock() {
                l.push(took);
            }
        }
        i += 1;
    }
}

/// A number from a server's `STATUS` line.
fn field(addr: &str, name: &str) -> Result<u64, String> {
    let line = status(addr, None).ok_or_else(|| format!("{addr}: no STATUS"))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{addr}: no {name} in {line}"))
}

/// A `/proc/<pid>/status` memory field, in KiB.
fn memory_kb(pid: u32, name: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `done` every 50 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("gave up waiting {} s for {what}", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
