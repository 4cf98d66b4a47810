//! The load generator: closed-loop clients, each a thread with one
//! connection and one session, sending one command at a time.
//!
//! Its cost matters because it runs on the servers' cores: a client builds
//! each command in a reused buffer, picks keys with a few multiplications,
//! checks replies as bytes and stores latencies in a vector allocated up
//! front; between commands it only blocks in `read`. Rows print the bench's
//! own CPU next to the servers'.

use std::io::{self, Write};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::cpu_time;
use crate::options::{Mode, Reads};
use crate::protocol::{random_u64, unexpected, Session, Target};

/// Accounts `transfer` mode moves money between.
const ACCOUNTS: u64 = 64;
/// A 64-byte value.
const VALUE: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";

/// What a row sends.
#[derive(Clone, Copy)]
pub struct Workload {
    /// The command mix.
    pub mode: Mode,
    /// Mixed mode: percentage of GETs.
    pub read_pct: u32,
    /// Keys `get` and `mixed` choose from (preloaded).
    pub keys: usize,
    /// How GETs are sent.
    pub reads: Reads,
}

/// Keys in one `range` prefix.
const RANGE_KEYS: u64 = 100;

/// How many 100-key prefixes `range` reads from: `-keys` / 100, at least one.
pub fn range_groups(keys: usize) -> u64 {
    (keys as u64 / RANGE_KEYS).max(1)
}

/// A `cas` client's counter: its value and mod revision as last seen (0:
/// not created yet).
#[derive(Default)]
struct Counter {
    value: u64,
    revision: u64,
}

impl Counter {
    /// Takes the reply to a CAS: on success the new revision (the
    /// transaction's); after a lost race, the revision and value the else
    /// branch read. Returns whether the swap succeeded. Read from the bytes
    /// (`"revision":N` is the first revision in either reply's JSON).
    fn update(&mut self, reply: &[u8]) -> bool {
        let number = |after: &[u8]| -> Option<u64> {
            let at = reply.windows(after.len()).position(|w| w == after)? + after.len();
            let digits = reply[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            std::str::from_utf8(&reply[at..at + digits])
                .ok()?
                .parse()
                .ok()
        };
        if reply.starts_with(b"TXN {\"succeeded\":true") {
            self.value += 1;
            self.revision = number(b"\"revision\":").unwrap_or(0);
            return true;
        }
        if let (Some(revision), Some(value)) =
            (number(b"\"mod_revision\":"), number(b"\"value\":\""))
        {
            (self.revision, self.value) = (revision, value);
        }
        false
    }
}

impl Workload {
    /// Writes client `c`'s command number `n` into `out` (cleared first);
    /// returns whether it is a read. `nonce` makes txids unique to the row.
    fn command(
        &self,
        (c, n, nonce): (usize, usize, u64),
        counter: &Counter,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let read = match self.mode {
            Mode::Get | Mode::Range => true,
            Mode::Mixed => rng.below(100) < u64::from(self.read_pct),
            Mode::Put | Mode::Transfer | Mode::Cas => false,
        };
        let serializable = match self.reads {
            Reads::Serializable => " serializable",
            Reads::Session | Reads::Plain => "",
        };
        let keys = self.keys as u64;
        // Writing to a Vec cannot fail.
        let _ = match self.mode {
            // A new key each time (unique per client within a row).
            Mode::Put => write!(out, "PUT {} {VALUE}", Key(((c << 20) + n) as u64)),
            Mode::Get | Mode::Mixed if read => {
                write!(out, "GET {}{serializable}", Key(rng.below(keys)))
            }
            Mode::Get | Mode::Mixed => write!(out, "PUT {} {VALUE}", Key(rng.below(keys))),
            Mode::Transfer => {
                let from = rng.below(ACCOUNTS);
                let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                write!(out, "TRANSFER t{nonce:x}c{c}n{n} a{from} a{to} 0.01")
            }
            Mode::Range => write!(
                out,
                "RANGE prefix=r{:04}/{serializable}",
                rng.below(range_groups(self.keys))
            ),
            Mode::Cas => {
                let (compare, target) = match counter.revision {
                    0 => ("exists", "false".to_string()),
                    r => ("mod_revision", r.to_string()),
                };
                write!(
                    out,
                    r#"TXN {{"compare":[{{"key":"cas{nonce:x}c{c}","target":"{compare}","op":"=","value":{target}}}],"then":[{{"op":"put","key":"cas{nonce:x}c{c}","value":"{}"}}],"else":[{{"op":"get","key":"cas{nonce:x}c{c}"}}]}}"#,
                    counter.value + 1
                )
            }
        };
        read
    }
}

/// Puts what `work` reads in place: the keys for `get` and `mixed`, the
/// accounts for `transfer`. Four sessions share the work.
pub fn prepare(target: &Arc<Target>, work: &Workload) -> io::Result<()> {
    let commands: Vec<String> = match work.mode {
        Mode::Put | Mode::Cas => Vec::new(),
        Mode::Range => (0..range_groups(work.keys) * RANGE_KEYS)
            .map(|k| format!("PUT r{:04}/{:03} {VALUE}", k / RANGE_KEYS, k % RANGE_KEYS))
            .collect(),
        Mode::Get | Mode::Mixed => (0..work.keys as u64)
            .map(|k| format!("PUT {} {VALUE}", Key(k)))
            .collect(),
        Mode::Transfer => (0..ACCOUNTS)
            .map(|a| format!("OPEN a{a} 1000000"))
            .collect(),
    };
    let commands = Arc::new(commands);
    let loaders: Vec<_> = (0..4)
        .map(|w| {
            let (target, commands) = (Arc::clone(target), Arc::clone(&commands));
            thread::spawn(move || -> io::Result<()> {
                let mut session = Session::open(&target, target.leader)?;
                for command in commands.iter().skip(w).step_by(4) {
                    let reply = session.call(command.as_bytes())?;
                    // An account left by an earlier run on a -target cluster is fine.
                    if reply != b"OK" && !reply.starts_with(b"ERR EXISTS") {
                        return Err(unexpected(command, reply));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for loader in loaders {
        loader
            .join()
            .map_err(|_| io::Error::other("loader panicked"))??;
    }
    Ok(())
}

/// What one row measured.
pub struct RowResult {
    /// Latency of each successful command, ns, sorted.
    pub latencies: Vec<u64>,
    /// From the start signal until the last client finished.
    pub elapsed: Duration,
    /// Commands without a successful reply.
    pub errors: u64,
    /// The first failed command's error, if any.
    pub first_error: Option<String>,
    /// Attempts beyond the first (retries on another server or connection).
    pub retries: u64,
    /// CPU the server processes used during the row (`None`: not measured).
    pub server_cpu: Option<Duration>,
    /// CPU this process used during the row.
    pub bench_cpu: Option<Duration>,
}

/// Runs one row: `clients` threads share `ops` commands of `work` (at least
/// 20 each). The server processes `pids` (empty for a cluster we did not
/// start) and this one are charged the CPU they use from the start signal
/// until the last client is done.
pub fn run_row(
    target: &Arc<Target>,
    work: &Workload,
    clients: usize,
    ops: usize,
    pids: &[u32],
) -> io::Result<RowResult> {
    let per_client = (ops / clients).max(20);
    // Each client connects and opens its session, then waits at `ready`;
    // `go` starts the clock.
    let ready = Arc::new(Barrier::new(clients + 1));
    let go = Arc::new(Barrier::new(clients + 1));
    let nonce = random_u64()?;
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (target, ready, go) = (Arc::clone(target), Arc::clone(&ready), Arc::clone(&go));
            let work = *work;
            thread::spawn(move || {
                // Serializable reads spread over every server.
                let server = match work.reads {
                    Reads::Serializable => (target.leader + c) % target.addrs.len(),
                    Reads::Session | Reads::Plain => target.leader,
                };
                let session = Session::open(&target, server);
                ready.wait();
                go.wait();
                match session {
                    Ok(session) => client(session, &work, c, per_client, nonce),
                    Err(e) => RowResult {
                        errors: per_client as u64,
                        first_error: Some(format!("opening a session: {e}")),
                        ..RowResult::empty(0)
                    },
                }
            })
        })
        .collect();
    ready.wait();
    let cpu = |pids: &[u32]| -> Option<Duration> { pids.iter().map(|&p| cpu_time(p)).sum() };
    let me = [std::process::id()];
    let (server_before, bench_before) = (cpu(pids), cpu(&me));
    let started = Instant::now();
    go.wait();
    let mut row = RowResult::empty(per_client * clients);
    for worker in workers {
        let out = worker
            .join()
            .map_err(|_| io::Error::other("client thread panicked"))?;
        row.latencies.extend(out.latencies);
        row.errors += out.errors;
        row.retries += out.retries;
        row.first_error = row.first_error.or(out.first_error);
    }
    row.elapsed = started.elapsed();
    let used = |before: Option<Duration>, after: Option<Duration>| {
        before.zip(after).map(|(b, a)| a.saturating_sub(b))
    };
    if !pids.is_empty() {
        row.server_cpu = used(server_before, cpu(pids));
    }
    row.bench_cpu = used(bench_before, cpu(&me));
    row.latencies.sort_unstable();
    Ok(row)
}

/// Client `c`'s loop: `count` commands, one at a time. Returns its latencies
/// (unsorted), errors and retries.
fn client(mut session: Session, work: &Workload, c: usize, count: usize, nonce: u64) -> RowResult {
    let mut rng = Rng::new(nonce ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = RowResult::empty(count);
    let mut command = Vec::with_capacity(256);
    let mut counter = Counter::default();
    for n in 0..count {
        let read = work.command((c, n, nonce), &counter, &mut rng, &mut command);
        let started = Instant::now();
        let reply = if read && work.reads == Reads::Plain {
            session.call_plain(&command)
        } else {
            session.call(&command)
        };
        let ok = match &reply {
            Ok(r) if work.mode == Mode::Cas => counter.update(r),
            Ok(r) if read => r.starts_with(b"VALUE ") || r.starts_with(b"RANGE {"),
            Ok(r) => *r == b"OK" || r.starts_with(b"ERR INSUFFICIENT"),
            Err(_) => false,
        };
        if ok {
            out.latencies.push(started.elapsed().as_nanos() as u64);
        } else {
            out.errors += 1;
            if out.first_error.is_none() {
                out.first_error = Some(match reply {
                    Ok(r) => String::from_utf8_lossy(r).into_owned(),
                    Err(e) => e.to_string(),
                });
            }
        }
    }
    out.retries = session.retries();
    out
}

impl RowResult {
    /// Nothing measured yet, with room for `capacity` latencies.
    fn empty(capacity: usize) -> RowResult {
        RowResult {
            latencies: Vec::with_capacity(capacity),
            elapsed: Duration::ZERO,
            errors: 0,
            first_error: None,
            retries: 0,
            server_cpu: None,
            bench_cpu: None,
        }
    }
}

/// Key number `k`: `k` and 15 digits, 16 bytes, formatted without allocating.
struct Key(u64);

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "k{:015}", self.0)
    }
}

/// xorshift64*: cheap, and good enough to pick keys and accounts.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}
