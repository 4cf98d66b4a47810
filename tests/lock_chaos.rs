//! The lock under chaos: 8 contenders take the lock of `examples/lock` in
//! turn for 30 s while the nemesis kills, pauses and isolates nodes; each
//! holder writes the guarded resource through the fence. Checked after:
//! - the successful guarded writes, in revision order, carry tokens that
//!   never go down: no two holders' writes interleave (a refused write is
//!   the fence doing its job, not a failure);
//! - watchers of the resource, reconnecting to random nodes from the
//!   revision after the last one they saw, saw exactly the committed
//!   sequence of its writes: in order, no gap, no duplicate.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "../examples/lock/recipe.rs"]
mod recipe;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::nemesis::{ChaosCluster, Fault, Nemesis};
use raftkv::client::Client;
use raftkv::service::watch::WatchFilter;
use raftkv::watch_client::{WatchMessage, WatchStream};
use recipe::{acquire, ensure_fence, guarded_write, Guarded};

const CONTENDERS: usize = 8;
const WATCHERS: usize = 2;
const RUN: Duration = Duration::from_secs(30);
const NAME: &str = "locks/chaos";
const FENCE: &[u8] = b"locks/chaos.fence";
const RESOURCE: &[u8] = b"locks/chaos.data";

/// A small seeded generator (xorshift), one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What happened, for the checker.
#[derive(Default)]
struct Record {
    /// Successful guarded writes: revision → (token, value).
    wrote: BTreeMap<u64, (u64, String)>,
    /// Values of writes whose outcome is unknown (a client error).
    unknown: Vec<String>,
    refused: u64,
    acquired: u64,
}

struct Shared {
    servers: Vec<String>,
    stop: AtomicBool,
    record: Mutex<Record>,
    reconnects: AtomicU64,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Record> {
    shared.record.lock().unwrap_or_else(|e| e.into_inner())
}

fn contend(c: usize, seed: u64, shared: &Shared) {
    let mut rng = Rng(seed | 1);
    let mut client = Client::new(shared.servers.clone());
    let mut n = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let held = acquire(&shared.servers, &mut client, NAME, 2, &mut || {
            rng.below(64) as usize
        });
        let Ok(held) = held else { continue };
        lock(shared).acquired += 1;
        for _ in 0..2 {
            let value = format!("c{c}-{n}");
            n += 1;
            match guarded_write(&mut client, FENCE, RESOURCE, held.token, value.as_bytes()) {
                Ok(Guarded::Wrote(revision)) => {
                    lock(shared).wrote.insert(revision, (held.token, value));
                }
                Ok(Guarded::Refused(_)) => lock(shared).refused += 1,
                Err(_) => lock(shared).unknown.push(value),
            }
            thread::sleep(Duration::from_millis(20));
        }
        held.release(&mut client);
    }
}

/// Watches the resource, hopping to a random node now and then; returns
/// the `(revision, value)` of every event, once `until` says the watch has
/// caught up with the final revision.
fn watch(seed: u64, shared: &Shared, until: &AtomicU64) -> Vec<(u64, String)> {
    let mut rng = Rng(seed | 1);
    let filter = WatchFilter::Key(RESOURCE.to_vec());
    let mut seen = Vec::new();
    let mut next = 1;
    let mut refusals = 0;
    loop {
        let addr = &shared.servers[rng.below(shared.servers.len() as u64) as usize];
        let mut stream = match WatchStream::open(addr, None, &filter, Some(next)) {
            Ok(Ok(stream)) => stream,
            // A node restarted from a snapshot keeps no history before it:
            // another node serves the watch.
            Ok(Err(refused)) => {
                refusals += 1;
                assert!(refusals < 200, "no node serves {next} any more: {refused}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        refusals = 0;
        shared.reconnects.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_timeout(Some(Duration::from_millis(500)));
        let hop_at = Instant::now() + Duration::from_millis(300 + rng.below(1500));
        while Instant::now() < hop_at {
            let done = until.load(Ordering::SeqCst);
            if done > 0 && next > done {
                return seen;
            }
            match stream.receive() {
                Ok(WatchMessage::Event(e)) => {
                    let value = String::from_utf8_lossy(e.value.as_deref().unwrap_or_default());
                    seen.push((e.revision, value.to_string()));
                    next = e.revision + 1;
                }
                Ok(other) => panic!("the watch ended: {other:?}"),
                // A quiet spell, a paused or killed node: hop on.
                Err(_) => break,
            }
        }
    }
}

/// Reference: Kleppmann, "How to do distributed locking"; etcd's watch
/// guarantees.
#[test]
fn contenders_under_chaos_never_interleave_guarded_writes_and_watchers_see_every_write_once() {
    let chaos = ChaosCluster::start(3, &[]);
    let servers = chaos.addrs();
    let mut setup = Client::new(servers.clone());
    ensure_fence(&mut setup, FENCE).unwrap();
    let seed = std::env::var("RAFTKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("seed {seed} (RAFTKV_SEED={seed} replays the nemesis's schedule)");
    let shared = Arc::new(Shared {
        servers: servers.clone(),
        stop: AtomicBool::new(false),
        record: Mutex::new(Record::default()),
        reconnects: AtomicU64::new(0),
    });
    let until = Arc::new(AtomicU64::new(0));
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|w| {
            let (shared, until) = (Arc::clone(&shared), Arc::clone(&until));
            thread::spawn(move || watch(seed + 100 + w as u64, &shared, &until))
        })
        .collect();
    let nemesis = Nemesis::start(chaos, seed, &Fault::ALL);
    let contenders: Vec<_> = (0..CONTENDERS)
        .map(|c| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || contend(c, seed + c as u64, &shared))
        })
        .collect();
    thread::sleep(RUN);
    let (_chaos, faults) = nemesis.stop();
    shared.stop.store(true, Ordering::SeqCst);
    for c in contenders {
        c.join().expect("a contender panicked");
    }
    // The resource's last revision: the watchers stop once past it.
    let last = setup
        .get_meta(RESOURCE, false)
        .unwrap()
        .map_or(0, |kv| kv.mod_revision);
    until.store(last.max(1), Ordering::SeqCst);
    let seen: Vec<Vec<(u64, String)>> = watchers
        .into_iter()
        .map(|w| w.join().expect("a watcher panicked"))
        .collect();

    let record = lock(&shared);
    // The fence: tokens of successful writes never go down in revision order.
    let tokens: Vec<u64> = record.wrote.values().map(|(t, _)| *t).collect();
    for pair in tokens.windows(2) {
        assert!(
            pair[0] <= pair[1],
            "holder {} wrote after {}",
            pair[0],
            pair[1]
        );
    }
    let hand_offs = tokens.windows(2).filter(|p| p[0] != p[1]).count();
    // The watchers: exactly the committed writes, in order, once each.
    for events in &seen {
        let revisions: Vec<u64> = events.iter().map(|(r, _)| *r).collect();
        assert!(
            revisions.windows(2).all(|p| p[0] < p[1]),
            "order or duplicate"
        );
        for (revision, value) in events {
            match record.wrote.get(revision) {
                Some((_, written)) => assert_eq!(written, value, "at {revision}"),
                None => assert!(
                    record.unknown.contains(value),
                    "{value} at {revision} was never written"
                ),
            }
        }
        for (revision, (_, value)) in &record.wrote {
            assert!(
                events.iter().any(|(r, v)| r == revision && v == value),
                "a watcher missed {value} at {revision}"
            );
        }
    }
    let checked: usize = seen.iter().map(Vec::len).sum();
    eprintln!(
        "lock chaos: {} faults, {} acquisitions, {hand_offs} hand-offs between writers, {} guarded \
         writes, {} refused by the fence, {} unknown, {checked} events checked by {WATCHERS} \
         watchers over {} reconnects",
        faults.len(),
        record.acquired,
        record.wrote.len(),
        record.refused,
        record.unknown.len(),
        shared.reconnects.load(Ordering::SeqCst)
    );
    assert!(faults.len() >= 10, "the nemesis hardly ran: {faults:?}");
    assert!(hand_offs >= 5, "the lock hardly changed hands");
}
