//! Throughput and latency of a 3-node cluster of real processes on loopback,
//! with fsync on (the servers' normal mode).
//!
//! ```text
//! cargo build --release && cargo run --release --example bench
//! cargo run --release --example bench -- -clients 1,64 -ops 20000 -mode transfer
//! cargo run --release --example bench -- -target :8001,:8002,:8003   # an existing cluster
//! ```
//!
//! Each of C clients (threads, each with its own connection and session) sends
//! its share of N commands one at a time, starting at the leader: `PUT` of a
//! 16-byte key and a 64-byte value, or, in `transfer` mode, `TRANSFER` between
//! 64 accounts. Prints ops/s and latency percentiles per client count.
//! The cluster it starts authenticates peers with a fresh key file; against a
//! `-target` cluster started with `-client-token-file`, set `RAFTKV_TOKEN`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use raftkv::auth::keyfile::os_random;
use raftkv::client::{Client, TOKEN_ENV};

struct Options {
    clients: Vec<usize>,
    ops: usize,
    transfer: bool,
    target: Option<Vec<String>>,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        clients: vec![1, 16, 64, 256],
        ops: 20_000,
        transfer: false,
        target: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].trim_start_matches('-');
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                i += 1;
                let v = args.get(i).ok_or(format!("-{flag} needs a value"))?;
                (flag.to_string(), v.clone())
            }
        };
        i += 1;
        match name.as_str() {
            "clients" => {
                o.clients = value
                    .split(',')
                    .map(|c| c.parse().map_err(|_| format!("bad client count {c}")))
                    .collect::<Result<_, _>>()?
            }
            "ops" => o.ops = value.parse().map_err(|_| "bad -ops")?,
            "mode" => o.transfer = value == "transfer",
            "target" => {
                o.target = Some(
                    value
                        .split(',')
                        .map(|a| {
                            if a.starts_with(':') {
                                format!("127.0.0.1{a}")
                            } else {
                                a.to_string()
                            }
                        })
                        .collect(),
                )
            }
            _ => return Err(format!("unknown flag -{name}")),
        }
    }
    Ok(o)
}

/// Three `raftkv` processes in a temporary directory, killed on drop.
struct LocalCluster {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster() -> Result<(LocalCluster, Vec<String>), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("raftkv"))
        .filter(|p| p.exists())
        .ok_or("raftkv binary not found next to the examples: run `cargo build --release` first")?;
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let dir = std::env::temp_dir().join(format!("raftkv-bench-{}", std::process::id()));
    let mut cluster = LocalCluster {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let mut key = [0u8; 32];
    os_random(&mut key).map_err(|e| e.to_string())?;
    let key_file = dir.join("cluster.key");
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&key_file, key))
        .map_err(|e| e.to_string())?;
    for id in 1..=3 {
        let child = Command::new(&bin)
            .args(["-id", &id.to_string(), "-peers", &addrs.join(",")])
            .arg("-cluster-key-file")
            .arg(&key_file)
            .arg("-data")
            .arg(dir.join(format!("n{id}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        cluster.children.push(child);
    }
    Ok((cluster, addrs))
}

/// Asks every server for STATUS until one says it leads.
fn find_leader(addrs: &[String]) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for (i, addr) in addrs.iter().enumerate() {
            let Ok(mut s) = TcpStream::connect(addr) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let request = match token() {
                Some(t) => format!("AUTH {t}\nSTATUS\n"),
                None => "STATUS\n".to_string(),
            };
            let mut reader = BufReader::new(s.try_clone().ok()?);
            let mut line = String::new();
            if s.write_all(request.as_bytes()).is_ok()
                && (0..request.lines().count()).all(|_| {
                    line.clear();
                    reader.read_line(&mut line).is_ok()
                })
                && line.contains("role=leader")
            {
                return Some(i);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The client token from `RAFTKV_TOKEN`, if set.
fn token() -> Option<String> {
    std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Runs one load level; returns (ops/s, sorted latencies, errors).
fn run_level(
    addrs: &[String],
    leader: usize,
    clients: usize,
    ops: usize,
    transfer: bool,
    level: usize,
) -> (f64, Vec<Duration>, usize) {
    let per_client = (ops / clients).max(20);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (addrs, barrier) = (addrs.to_vec(), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut client = Client::with_token(addrs, token());
                client.prefer(leader);
                // One unmeasured command opens the connection and the session.
                let _ = client.call("PING");
                let value = "v".repeat(64);
                let mut latencies = Vec::with_capacity(per_client);
                let mut errors = 0;
                barrier.wait();
                for n in 0..per_client {
                    let command = if transfer {
                        let from = (c * 7 + n) % 64;
                        let to = (from + 1 + n % 63) % 64;
                        format!("TRANSFER b{level}c{c}n{n} a{from} a{to} 0.01")
                    } else {
                        format!("PUT k{:015} {value}", (c * per_client + n) % 1_000_000)
                    };
                    let started = Instant::now();
                    match client.call(&command) {
                        Ok(r) if r == "OK" || r.starts_with("ERR INSUFFICIENT") => {
                            latencies.push(started.elapsed())
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((l, e)) = w.join() {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
        errors,
    )
}

fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            eprintln!(
                "usage: bench [-clients 1,16,64,256] [-ops N] [-mode put|transfer] [-target A,B,C]"
            );
            std::process::exit(2);
        }
    };
    let (_cluster, addrs) = match &options.target {
        Some(addrs) => (None, addrs.clone()),
        None => match start_cluster() {
            Ok((c, a)) => (Some(c), a),
            Err(e) => {
                eprintln!("bench: {e}");
                std::process::exit(1);
            }
        },
    };
    let Some(leader) = find_leader(&addrs) else {
        eprintln!("bench: no leader among {}", addrs.join(","));
        std::process::exit(1);
    };
    if options.transfer {
        let mut client = Client::with_token(addrs.clone(), token());
        for a in 0..64 {
            let _ = client.call(&format!("OPEN a{a} 1000000"));
        }
    }
    let mode = if options.transfer {
        "TRANSFER"
    } else {
        "PUT (16 B key, 64 B value)"
    };
    println!(
        "3 nodes on loopback, fsync on; {mode}; leader {}",
        addrs[leader]
    );
    println!("| clients | ops | ops/s | p50 ms | p95 ms | p99 ms | max ms | errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (level, &clients) in options.clients.iter().enumerate() {
        let (rate, lat, errors) = run_level(
            &addrs,
            leader,
            clients,
            options.ops,
            options.transfer,
            level,
        );
        println!(
            "| {clients} | {} | {:.0} | {} | {} | {} | {} | {errors} |",
            lat.len(),
            rate,
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.95)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
        );
    }
}
