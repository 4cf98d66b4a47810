//! End-to-end tests: real `raftkv` processes over loopback TCP, killed with
//! SIGKILL, restarted from disk, fed garbage.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use raftkv::client::Client;
use raftkv::server::MAX_CLIENT_LINE;

/// The protocol table, line for line, as sent to one node.
const SCRIPT: &[(&str, &str)] = &[
    ("PUT greeting hello big world", "OK"),
    ("GET greeting", "VALUE hello big world"),
    ("append greeting !", "OK"),
    ("Get greeting", "VALUE hello big world!"),
    ("DEL greeting", "OK"),
    ("GET greeting", "NOT_FOUND"),
    ("OPEN alice 900.5", "OK"),
    ("OPEN alice 1", "ERR EXISTS account alice already exists"),
    ("OPEN bob 0", "OK"),
    ("TRANSFER t1 alice bob 100.25", "OK"),
    ("TRANSFER t1 alice bob 100.25", "OK"),
    (
        "TRANSFER t1 alice bob 1",
        "ERR TXID_REUSED txid t1 was used for a different transfer",
    ),
    (
        "TRANSFER t2 bob alice 5000",
        "ERR INSUFFICIENT_FUNDS bob has 100.25, needs 5000.00",
    ),
    (
        "TRANSFER t3 alice zed 1",
        "ERR NO_ACCOUNT no such account: zed",
    ),
    ("BALANCE alice", "BALANCE 800.25"),
    ("BALANCE bob", "BALANCE 100.25"),
    ("BALANCE carol", "NOT_FOUND"),
    ("AUDIT", "AUDIT accounts=2 total=900.50"),
    ("PING", "PONG"),
    (
        "FROB x",
        "ERR UNKNOWN_COMMAND unknown command 'FROB' (try HELP)",
    ),
    ("GET", "ERR BAD_REQUEST usage: GET k"),
    (
        "OPEN x 1.234",
        "ERR BAD_REQUEST invalid amount '1.234': use digits with up to 2 decimals",
    ),
];

/// Renames the script's names so a second run does not collide with the first.
fn run_script(cluster: &ProcCluster, node: usize, suffix: &str) {
    let rename = |s: &str| {
        s.replace("alice", &format!("alice{suffix}"))
            .replace("bob", &format!("bob{suffix}"))
            .replace("TRANSFER t", &format!("TRANSFER {suffix}t"))
            .replace("txid t", &format!("txid {suffix}t"))
            .replace("greeting", &format!("greeting{suffix}"))
    };
    let lines: Vec<String> = SCRIPT.iter().map(|(l, _)| rename(l)).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let replies = cluster.request(node, &refs);
    for ((line, want), got) in SCRIPT.iter().zip(&replies) {
        let want = rename(want);
        // AUDIT counts every account in the cluster; the first run sees only its own.
        if line.starts_with("AUDIT") && suffix != "a" {
            assert!(
                got.starts_with("AUDIT accounts=4 total=1801.00"),
                "{line}: {got}"
            );
            continue;
        }
        assert_eq!(got, &want, "node {} answering {line}", node + 1);
    }
}

/// Every command of the protocol gives the documented reply, on the leader and
/// (forwarded) on a follower.
#[test]
fn every_command_works_on_the_leader_and_on_a_follower() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    run_script(&cluster, leader, "a");
    run_script(&cluster, (leader + 1) % 3, "b");
    let help = cluster.request(leader, &["HELP"]);
    assert!(help[0].starts_with("commands: PUT k v"), "{help:?}");
    let status = cluster.status((leader + 1) % 3);
    assert_eq!(status.get("role").map(String::as_str), Some("follower"));
    assert_eq!(
        status.get("leader").map(String::as_str),
        Some((leader + 1).to_string().as_str())
    );
    assert_eq!(cluster.request(leader, &["QUIT"]), vec!["BYE"]);
}

/// Writes acknowledged to a client survive SIGKILL of the leader mid-stream and
/// then of every node at once.
#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop, addrs) = (Arc::clone(&acked), Arc::clone(&stop), cluster.addrs());
            thread::spawn(move || {
                let mut client = Client::new(addrs);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{w}k{n}");
                    if client.put(&key, &format!("v{n}")).is_ok() {
                        acked.lock().unwrap().push((key, format!("v{n}")));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let acked_count = || acked.lock().unwrap().len();
    cluster.wait_for("40 acknowledged writes", Duration::from_secs(20), || {
        acked_count() >= 40
    });
    cluster.kill9(leader);
    let before = acked_count();
    cluster.wait_for(
        "writes to continue after the leader died",
        Duration::from_secs(20),
        || acked_count() >= before + 40,
    );
    cluster.spawn(leader);
    cluster.wait_until_up(leader);
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_until_up(i);
    }
    let acked = acked.lock().unwrap().clone();
    let mut client = Client::new(cluster.addrs());
    for (key, value) in &acked {
        assert_eq!(
            client.get(key).unwrap().as_deref(),
            Some(value.as_str()),
            "{key}"
        );
    }
}

/// A checksum failure in the middle of the log refuses to start, naming the file.
#[test]
fn a_corrupted_log_is_refused_with_the_file_named() {
    let mut cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    for i in 0..5 {
        assert_eq!(
            cluster.request(0, &[&format!("PUT key{i} marker{i}")]),
            ["OK"]
        );
    }
    cluster.kill9(0);
    let log = cluster.data_dir(0).join("log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes
        .windows(7)
        .position(|w| w == b"marker1")
        .expect("entry on disk");
    bytes[at] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let output = cluster.command(0).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("log is corrupt"), "{stderr}");
    assert!(stderr.contains(&log.display().to_string()), "{stderr}");
}

/// A torn final record (crash mid-append) is cut off; everything before it stays.
#[test]
fn a_torn_log_tail_is_tolerated() {
    let mut cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    assert_eq!(cluster.request(0, &["PUT kept yes"]), ["OK"]);
    cluster.kill9(0);
    let log = cluster.data_dir(0).join("log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // A record header promising 100 bytes, followed by only three.
    f.write_all(&[100, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]).unwrap();
    drop(f);
    cluster.spawn(0);
    cluster.wait_until_up(0);
    cluster.wait_for_leader();
    assert_eq!(cluster.request(0, &["GET kept"]), ["VALUE yes"]);
    assert_eq!(cluster.request(0, &["PUT after torn"]), ["OK"]);
}

/// A follower whose disk is wiped is brought back by InstallSnapshot.
#[test]
fn a_wiped_follower_catches_up_by_snapshot() {
    let mut cluster = ProcCluster::start(3, &["-snapshot-bytes", "500"]);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    let mut client = Client::new(cluster.addrs());
    for i in 0..60 {
        client.put(&format!("k{i}"), &format!("value-{i}")).unwrap();
    }
    cluster.kill9(follower);
    std::fs::remove_dir_all(cluster.data_dir(follower)).unwrap();
    for i in 60..80 {
        client.put(&format!("k{i}"), &format!("value-{i}")).unwrap();
    }
    let leader_status = cluster.status(leader);
    let commit: u64 = leader_status["commit"].parse().unwrap();
    assert!(
        leader_status["snapshot"].parse::<u64>().unwrap() > 0,
        "leader snapshotted"
    );
    cluster.spawn(follower);
    cluster.wait_for(
        "the wiped follower to catch up",
        Duration::from_secs(20),
        || {
            let s = cluster.status(follower);
            let applied: u64 = s.get("applied").and_then(|v| v.parse().ok()).unwrap_or(0);
            let snapshot: u64 = s.get("snapshot").and_then(|v| v.parse().ok()).unwrap_or(0);
            applied >= commit && snapshot > 0
        },
    );
    // The rebuilt follower can lead: isolate it as the only survivor with the leader.
    cluster.kill9(leader);
    let mut client = Client::new(vec![cluster.addr(follower)]);
    assert_eq!(client.get("k5").unwrap().as_deref(), Some("value-5"));
    assert_eq!(client.get("k79").unwrap().as_deref(), Some("value-79"));
}

/// A wiped follower is rebuilt from a snapshot of many pieces (12 MiB of
/// values, 1 MiB pieces): Figure 13's chunked transfer between real processes.
#[test]
fn a_wiped_follower_is_rebuilt_from_a_snapshot_of_many_pieces() {
    let mut cluster = ProcCluster::start(3, &["-snapshot-bytes", "1000000"]);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    std::fs::remove_dir_all(cluster.data_dir(follower)).unwrap();
    let mut client = Client::new(cluster.addrs());
    let value = |i: usize| format!("{i:04}-{}", "v".repeat(512 * 1024));
    for i in 0..24 {
        client.put(&format!("big{i}"), &value(i)).unwrap();
    }
    cluster.wait_for("the leader to snapshot", Duration::from_secs(20), || {
        cluster.status(leader)["snapshot"].parse::<u64>().unwrap() > 0
    });
    let commit: u64 = cluster.status(leader)["commit"].parse().unwrap();
    cluster.spawn(follower);
    cluster.wait_for(
        "the wiped follower to catch up",
        Duration::from_secs(60),
        || {
            let s = cluster.status(follower);
            let applied: u64 = s.get("applied").and_then(|v| v.parse().ok()).unwrap_or(0);
            applied >= commit
        },
    );
    let installed = cluster
        .log(follower)
        .lines()
        .find_map(|l| {
            let rest = l.split("installed snapshot through index ").nth(1)?;
            let bytes = rest.split(" (").nth(1)?.split(' ').next()?;
            bytes.parse::<u64>().ok()
        })
        .expect("the follower logs the snapshot it installed");
    assert!(
        installed > 4 << 20,
        "a snapshot of {installed} bytes is several pieces"
    );
    // The rebuilt follower serves every value alone with one other node.
    cluster.kill9(leader);
    let mut client = Client::new(vec![cluster.addr(follower)]);
    for i in [0, 11, 23] {
        assert_eq!(client.get(&format!("big{i}")).unwrap(), Some(value(i)));
    }
}

/// Garbage, invalid UTF-8, oversized lines, half lines and hang-ups get clear
/// errors and never crash the node.
#[test]
fn bad_input_never_crashes_a_node() {
    let mut cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    let addr = cluster.addr(0);
    let exchange = |bytes: &[u8]| -> String {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        while !reply.ends_with(b"\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    };
    assert_eq!(
        exchange(b"\xff\xfe\xfd\n"),
        "ERR BAD_REQUEST line is not valid UTF-8"
    );
    assert!(exchange(b"RAFT 2 !!!!\n").starts_with("ERR AUTH RAFT is peer traffic"));
    assert!(exchange(b"RAFT x y\n").starts_with("ERR AUTH"));
    // Any other id may dial (membership changes), but not this node's own.
    assert!(exchange(b"PEER raftkv 1 1 xyz\n").starts_with("ERR AUTH node 1 is not a peer"));
    assert!(exchange(b"PEER raftkv 2 1 xyz\n").starts_with("ERR AUTH usage: PEER"));
    assert!(exchange(b"CLIENT 0 0 GET k\n").starts_with("ERR BAD_REQUEST usage: CLIENT"));
    assert!(exchange(b"\x00\x01\x02 garbage\n").starts_with("ERR UNKNOWN_COMMAND"));
    let mut huge = vec![b'a'; MAX_CLIENT_LINE + 10];
    huge.push(b'\n');
    assert_eq!(
        exchange(&huge),
        format!("ERR TOO_LONG line exceeds {MAX_CLIENT_LINE} bytes")
    );
    // Half a line, then hang up.
    drop(TcpStream::connect(&addr).and_then(|mut s| s.write_all(b"PUT half")));
    // Connect and hang up without a byte.
    drop(TcpStream::connect(&addr));
    assert!(cluster.is_running(0), "node crashed");
    assert_eq!(
        cluster.request(0, &["PING", "PUT still alive"]),
        ["PONG", "OK"]
    );
}

/// Peer RPC lines sent without the handshake, well-formed or not, are refused
/// without reaching Raft, and the connection is closed.
#[test]
fn malformed_peer_rpcs_are_refused() {
    let mut cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let from = (leader + 1) % 3 + 1;
    for line in [
        format!("RAFT {from} AAAA"),
        format!("RAFT {from} QUJD"),
        format!("RAFT {from} ====="),
        format!("RAFT {from}"),
        format!("RAFT 1 {} {}", "QUJD", "00".repeat(32)),
        format!("PEER raftkv {from} {} {}", leader + 1, "zz"),
        format!(
            "PEER other-cluster {from} {} {}",
            leader + 1,
            "00".repeat(16)
        ),
    ] {
        // The server answers and closes: reading to the end returns.
        let mut s = TcpStream::connect(cluster.addr(leader)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("ERR AUTH"), "{line}: {reply}");
        assert_eq!(reply.lines().count(), 1, "{line}: {reply}");
    }
    assert!(cluster.is_running(leader));
    assert_eq!(cluster.request(leader, &["PUT k v"]), ["OK"]);
}

/// Connections beyond `-max-conns` are told `ERR BUSY` and closed.
#[test]
fn connections_beyond_the_limit_are_refused_busy() {
    let cluster = ProcCluster::start(1, &["-max-conns", "2"]);
    let ping = || {
        let mut s = TcpStream::connect(cluster.addr(0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"PING\n").unwrap();
        let mut reply = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut reply)
            .unwrap();
        (s, reply)
    };
    // The start-up probe's connection counts until its server thread has
    // seen it close: until then one of two new ones may be refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let open = loop {
        let (a, b) = (ping(), ping());
        if a.1 == "PONG\n" && b.1 == "PONG\n" {
            break [a.0, b.0];
        }
        assert!(
            Instant::now() < deadline,
            "two connections never fit: {a:?} {b:?}"
        );
        drop((a, b));
        thread::sleep(Duration::from_millis(10));
    };
    let mut extra = TcpStream::connect(cluster.addr(0)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    extra.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "ERR BUSY too many connections; try later\n");
    drop(open);
}

/// Bad flags print usage and exit with status 2.
#[test]
fn bad_flags_exit_2_with_usage() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["-bogus", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown flag -bogus") && stderr.contains("usage: raftkv"),
        "{stderr}"
    );
}
