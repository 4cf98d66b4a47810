//! Real `raftkv` processes on file systems that really fill up (one tmpfs
//! per node, mounted by the test; skipped, saying why, where mounting is not
//! permitted): a node whose disk fails stops at once (fail-stop, exit 74)
//! saying what failed and what to do; nothing acknowledged is lost; after
//! space returns, a restart recovers with no manual repair; and the
//! free-space guard refuses writes before the disk is full.

#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::tmpfs::Disks;

const MIB: u64 = 1 << 20;
/// The exit status of a node whose storage failed (`node::EXIT_STORAGE_FAILED`).
const EXIT_STORAGE_FAILED: i32 = 74;

/// Mounts `n` tmpfs of `bytes`, or prints why the test is skipped.
fn disks_or_skip(n: usize, bytes: u64) -> Option<Disks> {
    match Disks::mount(n, bytes) {
        Ok(disks) => Some(disks),
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here ({why}); run as root to test full disks");
            None
        }
    }
}

/// A value of about `len` bytes that names its key.
fn value(i: usize, len: usize) -> String {
    let tag = format!("v{i}-");
    format!("{tag}{}", "x".repeat(len.saturating_sub(tag.len())))
}

/// Sends `line` to the first running node that answers, from `first` on.
fn to_any(c: &mut ProcCluster, first: usize, line: &str) -> Result<String, String> {
    let n = c.addrs().len();
    let mut last = "no node is running".to_string();
    for k in 0..n {
        let i = (first + k) % n;
        if !c.is_running(i) {
            continue;
        }
        match c.try_request(i, &[line]) {
            // An empty reply: the connection closed (the process exited).
            Ok(replies) if replies.concat().is_empty() => {
                last = format!("node {}: connection closed", i + 1);
            }
            Ok(replies) => return Ok(replies.concat()),
            Err(e) => last = format!("node {}: {e}", i + 1),
        }
    }
    Err(last)
}

/// The lines of node `i`'s log that report a storage failure.
fn failure_lines(c: &ProcCluster, i: usize) -> Vec<String> {
    c.log(i)
        .lines()
        .filter(|l| l.contains("storage failed"))
        .map(str::to_string)
        .collect()
}

/// Node `i`'s STATUS field `key` as a number (0 if absent).
fn status_number(c: &ProcCluster, i: usize, key: &str) -> u64 {
    c.status(i)
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One follower's disk fills while the leader's and the other follower's do
/// not: the other two keep taking writes, the full node exits (fail-stop)
/// with one line naming the file and saying what to do, and once its disk
/// is grown and it is restarted, it catches up. Reference: §5.3 (a majority
/// suffices to commit).
#[test]
fn a_follower_whose_disk_fills_stops_and_catches_up_once_space_returns() {
    let Some(disks) = disks_or_skip(3, 64 * MIB) else {
        return;
    };
    let mut c =
        ProcCluster::start_with_node_flags(3, &["-min-free-bytes", "0"], &disks.data_flags());
    let leader = c.wait_for_leader();
    let full = (leader + 1) % 3;
    let (used, _) = disks.disks[full].usage();
    disks.disks[full].resize(used + MIB / 2);

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acknowledged = 0;
    while c.exit_code(full).is_none() {
        assert!(c.is_running(full), "node {} was killed", full + 1);
        assert!(
            Instant::now() < deadline,
            "the follower's disk never filled"
        );
        let reply = c.request(
            leader,
            &[&format!(
                "PUT k{acknowledged} {}",
                value(acknowledged, 2048)
            )],
        );
        assert_eq!(reply, ["OK"], "write {acknowledged}");
        acknowledged += 1;
    }
    assert_eq!(c.exit_code(full), Some(EXIT_STORAGE_FAILED));
    let lines = failure_lines(&c, full);
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let line = &lines[0];
    let data_dir = disks.disks[full].path.display().to_string();
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains(&data_dir), "names the file: {line}");
    assert!(line.contains("free space"), "says what to do: {line}");

    // The other two are a majority: writes go on.
    for i in acknowledged..acknowledged + 50 {
        let reply = c.request(leader, &[&format!("PUT k{i} {}", value(i, 2048))]);
        assert_eq!(reply, ["OK"], "write {i} with one follower down");
    }
    acknowledged += 50;

    disks.disks[full].resize(64 * MIB);
    c.spawn(full);
    c.wait_until_up(full);
    let commit = status_number(&c, leader, "commit");
    c.wait_for(
        "the restarted follower to catch up",
        Duration::from_secs(60),
        || status_number(&c, full, "applied") >= commit,
    );
    eprintln!(
        "one full follower: {acknowledged} writes acknowledged, the follower stopped at its \
         full disk and caught up to {commit} after a restart"
    );
}

/// Every disk fills while the log is appended to (no snapshot is due): the
/// nodes stop as their log writes fail, and no acknowledged write is lost.
/// Reference: Figure 2 (persistent state is updated on stable storage
/// before responding to RPCs).
#[test]
fn when_every_disk_fills_with_log_no_acknowledged_write_is_lost() {
    fill_every_disk("log appends", 64 * MIB);
}

/// Every disk fills while a snapshot is written (one is due every MiB of
/// log): the nodes stop as their snapshot writes fail, and no acknowledged
/// write is lost. Reference: §7.
#[test]
fn when_every_disk_fills_with_a_snapshot_no_acknowledged_write_is_lost() {
    fill_every_disk("snapshots", MIB);
}

/// Every disk fills: the nodes stop one by one as their writes fail, writes
/// then fail with clear errors (or time out), and once every disk is grown
/// and the stopped nodes restarted, every acknowledged write is there.
fn fill_every_disk(what: &str, snapshot_bytes: u64) {
    let Some(disks) = disks_or_skip(3, 4 * MIB) else {
        return;
    };
    let snapshot_bytes = snapshot_bytes.to_string();
    let mut c = ProcCluster::start_with_node_flags(
        3,
        &[
            "-min-free-bytes",
            "0",
            "-snapshot-bytes",
            &snapshot_bytes,
            "-timeout-ms",
            "2000",
        ],
        &disks.data_flags(),
    );
    c.wait_for_leader();

    let mut acknowledged = Vec::new();
    let mut failures: HashMap<String, usize> = HashMap::new();
    let mut consecutive_failures = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut i = 0;
    loop {
        let stopped = (0..3).filter(|&n| !c.is_running(n)).count();
        if stopped >= 2 && consecutive_failures >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the disks did not fill: {stopped} stopped, {failures:?}"
        );
        match to_any(&mut c, i, &format!("PUT k{i} {}", value(i, 2048))) {
            Ok(reply) if reply == "OK" => {
                acknowledged.push(i);
                consecutive_failures = 0;
            }
            Ok(reply) => {
                let code = reply.split(' ').take(2).collect::<Vec<_>>().join(" ");
                // STORAGE: a node answering in the moment between its
                // failure and its exit.
                let clear = ["ERR NO_LEADER", "ERR TIMEOUT", "ERR STORAGE"];
                assert!(clear.contains(&code.as_str()), "an unclear error: {reply}");
                *failures.entry(code).or_default() += 1;
                consecutive_failures += 1;
            }
            Err(_) => {
                *failures.entry("connection lost".into()).or_default() += 1;
                consecutive_failures += 1;
            }
        }
        i += 1;
    }
    let mut stopped = Vec::new();
    for n in 0..3 {
        if let Some(code) = c.exit_code(n) {
            assert_eq!(code, EXIT_STORAGE_FAILED, "node {}", n + 1);
            let lines = failure_lines(&c, n);
            assert_eq!(lines.len(), 1, "node {}: {lines:?}", n + 1);
            stopped.push(lines[0].clone());
        }
    }

    // Space returns; restart what stopped. No repair, just a restart.
    for disk in &disks.disks {
        disk.resize(64 * MIB);
    }
    for n in 0..3 {
        if !c.is_running(n) {
            c.spawn(n);
            c.wait_until_up(n);
        }
    }
    c.wait_for_leader();
    for &k in &acknowledged {
        let reply = to_any(&mut c, k, &format!("GET k{k}")).expect("a node answers");
        assert_eq!(
            reply,
            format!("VALUE {}", value(k, 2048)),
            "acknowledged write {k}"
        );
    }
    let reply = to_any(&mut c, 0, "PUT after recovery").expect("a node answers");
    assert_eq!(reply, "OK", "writes work again");
    eprintln!(
        "every disk full ({what}): {} writes acknowledged before the disks filled, all {} found \
         after recovery; {} attempts failed ({failures:?}); stopped: {stopped:#?}",
        acknowledged.len(),
        acknowledged.len(),
        i - acknowledged.len()
    );
}

/// The free-space guard refuses writes that grow the state (`ERR NOSPACE_DISK`,
/// `/health` 503 `NOSPACE_DISK`) while the disk still has room, keeps serving
/// reads and `DEL`, and accepts writes again once the `DEL`s and the
/// compaction they trigger have freed space. No node stops.
#[test]
fn the_free_space_guard_refuses_writes_before_the_disk_is_full_and_resumes_after_deletes() {
    let Some(disks) = disks_or_skip(3, 8 * MIB) else {
        return;
    };
    let mut c = ProcCluster::start_with_node_flags(
        3,
        &["-min-free-bytes", "2097152", "-snapshot-bytes", "262144"],
        &disks.data_flags(),
    );
    let leader = c.wait_for_leader();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut written = 0;
    let refusal = loop {
        assert!(Instant::now() < deadline, "never refused");
        let reply = c.request(
            leader,
            &[&format!("PUT k{written} {}", value(written, 4096))],
        );
        if reply != ["OK"] {
            break reply.concat();
        }
        written += 1;
    };
    assert!(refusal.starts_with("ERR NOSPACE_DISK "), "{refusal}");
    assert!(refusal.contains("DEL"), "says what still works: {refusal}");
    let (_, available) = disks.disks[leader].usage();
    assert!(
        available >= MIB,
        "refused with {available} bytes still free"
    );
    assert!((0..3).all(|n| c.is_running(n)), "no node stopped");
    // While low the server compacts after every entry, and deleting the older
    // snapshot can free enough to lift the guard again (it has a tenth of
    // hysteresis). So keep writing until the guard is low and stays so:
    // STATUS says `low`, a write is refused, and `/health` says why. Every
    // write accepted meanwhile brings the disk closer to that.
    c.wait_for(
        "the guard to stay low in STATUS, a refusal and /health",
        Duration::from_secs(60),
        || {
            if c.status(leader).get("storage").map(String::as_str) != Some("low") {
                return false;
            }
            let reply = c.request(
                leader,
                &[&format!("PUT k{written} {}", value(written, 4096))],
            );
            if reply == ["OK"] {
                written += 1;
                return false;
            }
            let health = common::http::get(&c.addr(leader), "/health");
            reply.concat().starts_with("ERR NOSPACE_DISK ")
                && health.status == 503
                && health.text().contains("\"NOSPACE_DISK\"")
        },
    );

    // Reads and DEL still work, and free room.
    let reply = c.request(leader, &["GET k0"]);
    assert_eq!(reply, [format!("VALUE {}", value(0, 4096))]);
    for k in 1..written {
        assert_eq!(
            c.request(leader, &[&format!("DEL k{k}")]),
            ["OK"],
            "DEL k{k}"
        );
    }
    let resumed = Instant::now();
    c.wait_for("writes to resume", Duration::from_secs(30), || {
        c.request(leader, &["PUT again yes"]) == ["OK"]
    });
    let took = resumed.elapsed();
    assert_eq!(
        c.status(leader).get("storage").map(String::as_str),
        Some("ok")
    );
    assert!((0..3).all(|n| c.is_running(n)), "no node stopped");
    eprintln!(
        "free-space guard: {written} writes of 4 KiB accepted, then NOSPACE_DISK with {available} \
         bytes free; writes resumed {took:?} after the DELs"
    );
}
