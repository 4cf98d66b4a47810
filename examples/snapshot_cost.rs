//! What a snapshot of a large state costs: copying the state (what the apply
//! loop pays, under its lock) and encoding it (what a background thread pays).
//!
//! ```text
//! cargo run --release --example snapshot_cost                  # 280 values of 900 KB
//! cargo run --release --example snapshot_cost -- 1000000 16    # 1M keys, 16-byte values
//! ```
//!
//! Prints the best of three runs of each step: cloning the state machine,
//! encoding it into memory (`snapshot`), streaming it to nowhere
//! (`write_snapshot` into `io::sink`), to a snapshot file through
//! `FileStorage` (fsync included) and back from it, and decoding it from
//! memory (`restore`).

use std::io;
use std::time::{Duration, Instant};

use raftkv::raft::Snapshot;
use raftkv::service::command::Command;
use raftkv::service::state_machine::{Op, StateMachine};
use raftkv::storage::file::FileStorage;
use raftkv::storage::{SnapshotFill, Storage};

/// Runs `step` three times and returns the fastest run and its result.
fn best_of_three<T>(mut step: impl FnMut() -> T) -> (Duration, T) {
    let mut best = None;
    for _ in 0..3 {
        let started = Instant::now();
        let out = step();
        let took = started.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, out));
        }
    }
    best.unwrap_or_else(|| unreachable!("three runs"))
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map_or(280, |a| a.parse().expect("key count"));
    let value_len: usize = args
        .next()
        .map_or(900 * 1024, |a| a.parse().expect("value bytes"));

    let mut sm = StateMachine::default();
    let value = "v".repeat(value_len);
    for i in 0..keys {
        let command = Command::Put(format!("key-{i:012}").into(), value.clone().into());
        sm.apply(&Op {
            client_id: 0,
            seq: 0,
            command,
        });
    }
    let stats = sm.stats();
    println!(
        "state: {} keys, {:.1} MB of keys and values",
        stats.keys,
        stats.kv_bytes as f64 / 1e6
    );

    let (took, _) = best_of_three(|| sm.clone());
    println!("clone:                {took:>10.2?}");
    let (took, bytes) = best_of_three(|| sm.snapshot());
    println!(
        "snapshot (to a Vec):  {took:>10.2?}  {:.1} MB",
        bytes.len() as f64 / 1e6
    );
    let (took, _) = best_of_three(|| sm.write_snapshot(&mut io::sink()));
    println!("write_snapshot(sink): {took:>10.2?}");
    let (took, restored) = best_of_three(|| StateMachine::restore(&bytes));
    println!("restore (from a Vec): {took:>10.2?}");
    assert_eq!(restored.map(|r| r.stats()), Ok(stats));
    drop(bytes);

    let dir = std::env::temp_dir().join(format!("snapshot_cost-{}", std::process::id()));
    let storage = FileStorage::open(&dir)?;
    let point = Snapshot {
        last_included_index: 7,
        last_included_term: 1,
        ..Snapshot::default()
    };
    let (took, written) = best_of_three(|| {
        let fill: SnapshotFill<'_> = &mut |w| sm.write_snapshot(&mut &mut *w).map(drop);
        storage.write_snapshot(point.clone(), fill)
    });
    let snapshot = written?;
    println!(
        "snapshot file:        {took:>10.2?}  {:.1} MB (fsync included)",
        snapshot.size as f64 / 1e6
    );
    let (took, read) = best_of_three(|| {
        storage
            .open_snapshot(&snapshot)
            .and_then(|mut r| StateMachine::read_snapshot(&mut r))
    });
    println!("read from the file:   {took:>10.2?}");
    assert_eq!(read?.stats(), stats);
    drop(storage);
    std::fs::remove_dir_all(&dir)
}
