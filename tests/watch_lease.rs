//! Watches and leases on real `raftkv` processes: a watch resumed on another
//! node after the leader dies sees every change once, in order; old `FROM`
//! revisions are compacted; a reader that stops reading is cancelled with
//! the revision to resume from; a lease's expiry deletes its keys at one
//! revision on every replica, never before its TTL; keepalives carry a lease
//! across a leader's death; a client that stops renewing loses its keys.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use raftkv::client::Client;
use raftkv::service::watch::{WatchEvent, WatchFilter};
use raftkv::watch_client::{WatchMessage, WatchStream};

/// Generous: the machine is shared and noisy.
const PATIENCE: Duration = Duration::from_secs(30);

fn open(addr: &str, filter: &WatchFilter, from: Option<u64>) -> WatchStream {
    let mut stream = WatchStream::open(addr, None, filter, from)
        .unwrap_or_else(|e| panic!("watch on {addr}: {e}"))
        .unwrap_or_else(|refused| panic!("watch on {addr} refused: {refused}"));
    stream.set_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn event(stream: &mut WatchStream) -> WatchEvent {
    match stream.receive() {
        Ok(WatchMessage::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reference: etcd's watch guarantees (ordered, reliable, resumable).
#[test]
fn a_watch_resumed_on_another_node_after_the_leader_dies_misses_nothing_and_repeats_nothing() {
    let mut cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let filter = WatchFilter::Prefix(b"w/".to_vec());
    let mut watch = open(&cluster.addr(leader), &filter, None);
    let start = watch.next_revision();
    let mut client = Client::new(cluster.addrs());
    let total = 60;
    let mut seen = Vec::new();
    for i in 0..total {
        client.put("w/k", &i.to_string()).unwrap();
        if i == 20 {
            while seen.len() < 10 {
                seen.push(event(&mut watch));
            }
            cluster.kill9(leader);
        }
    }
    // Resume on another node, from the revision after the last one seen.
    let other = (leader + 1) % 3;
    let mut resumed = open(&cluster.addr(other), &filter, Some(watch.next_revision()));
    drop(watch);
    while seen.len() < total {
        seen.push(event(&mut resumed));
    }
    let values: Vec<String> = seen
        .iter()
        .map(|e| String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()).into())
        .collect();
    let expected: Vec<String> = (0..total).map(|i| i.to_string()).collect();
    assert_eq!(values, expected, "every put once, in order");
    let revisions: Vec<u64> = seen.iter().map(|e| e.revision).collect();
    assert!(revisions[0] >= start);
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions increase: {revisions:?}"
    );
}

#[test]
fn a_from_older_than_the_history_kept_is_compacted_and_the_oldest_kept_still_serves() {
    let cluster = ProcCluster::start(1, &["-watch-history-bytes", "2000"]);
    cluster.wait_for_leader();
    let mut client = Client::new(cluster.addrs());
    for i in 0..50 {
        client.put("k", &format!("{i:0100}")).unwrap();
    }
    let filter = WatchFilter::Key(b"k".to_vec());
    let refused = WatchStream::open(&cluster.addr(0), None, &filter, Some(1)).unwrap();
    let Err(reply) = refused else {
        panic!("FROM 1 was served from a 2000-byte history");
    };
    let line = reply.to_string();
    let oldest: u64 = line
        .strip_prefix("ERR COMPACTED oldest=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(oldest > 1 && oldest <= 50, "{line}");
    let mut watch = open(&cluster.addr(0), &filter, Some(oldest));
    assert_eq!(event(&mut watch).revision, oldest);
    let replies = cluster.request(0, &["WATCH k FROM 1"]);
    assert_eq!(replies[0], format!("ERR COMPACTED oldest={oldest}"));
}

/// A watcher whose client stops reading never slows the writes; once it is
/// too far behind it gets `CANCELED resume=<rev>`, after every event before
/// that revision, and the connection serves requests again.
#[test]
fn a_watcher_that_stops_reading_is_cancelled_with_the_revision_to_resume_from() {
    let cluster = ProcCluster::start(
        1,
        &[
            "-watch-lag-bytes",
            "65536",
            "-watch-history-bytes",
            "100000000",
        ],
    );
    cluster.wait_for_leader();
    let stream = TcpStream::connect(cluster.addr(0)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(b"WATCH big\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("WATCHING from="), "{line}");
    // Far more than the socket buffers hold, while this client reads nothing.
    let mut client = Client::new(cluster.addrs());
    let value = "x".repeat(200_000);
    let started = Instant::now();
    for _ in 0..125 {
        client.put("big", &value).unwrap();
    }
    eprintln!("25 MB written in {:?}", started.elapsed());
    let mut last = None;
    let resume = loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
        let text = line.trim_end();
        if let Some(resume) = text.strip_prefix("CANCELED resume=") {
            break resume.parse::<u64>().unwrap();
        }
        let e = WatchEvent::parse_line(text).unwrap_or_else(|| panic!("{text:.80}"));
        if let Some(last) = last {
            assert_eq!(e.revision, last + 1, "no gap");
        }
        last = Some(e.revision);
    };
    let last = last.expect("some events came before the cancel");
    assert_eq!(resume, last + 1, "resume right after the last event");
    assert!(resume <= 125, "cancelled before the end");
    writer
        .write_all(format!("WATCH big FROM {resume}\n").as_bytes())
        .unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), format!("WATCHING from={resume}"));
}

/// Waits for a delete of `key` on `stream`; returns its revision.
fn delete_of(stream: &mut WatchStream, key: &[u8]) -> u64 {
    loop {
        let e = event(stream);
        if e.key == key && e.value.is_none() {
            return e.revision;
        }
    }
}

/// Time enters only through the log: every replica deletes the lease's
/// keys at the same revision, and no earlier than the TTL.
/// Reference: thesis §6.4.1.
#[test]
fn a_lease_expiry_deletes_its_keys_at_one_revision_on_every_replica_never_before_its_ttl() {
    let cluster = ProcCluster::start(3, &[]);
    cluster.wait_for_leader();
    let filter = WatchFilter::Prefix(b"svc/".to_vec());
    let mut watches: Vec<_> = (0..3)
        .map(|i| open(&cluster.addr(i), &filter, None))
        .collect();
    let mut client = Client::new(cluster.addrs());
    let lease = client.lease_grant(1).unwrap();
    let granted = Instant::now();
    client.put_leased(b"svc/a", b"10.0.0.1", lease).unwrap();
    client.put_leased(b"svc/b", b"10.0.0.2", lease).unwrap();
    let revisions: Vec<(u64, u64)> = watches
        .iter_mut()
        .map(|w| (delete_of(w, b"svc/a"), delete_of(w, b"svc/b")))
        .collect();
    let elapsed = granted.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "expired after {elapsed:?}"
    );
    assert!(
        revisions.iter().all(|r| *r == revisions[0]),
        "{revisions:?}"
    );
    assert_eq!(revisions[0].0, revisions[0].1, "one revision for both keys");
    let gone = client.lease_ttl(lease).unwrap_err().to_string();
    assert!(gone.contains("LEASE_NOT_FOUND"), "{gone}");
}

/// A keepalive is a log entry: the next leader has it, and gives the lease
/// an election timeout of grace besides.
#[test]
fn keepalives_carry_a_lease_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let mut client = Client::new(cluster.addrs());
    let lease = client.lease_grant(3).unwrap();
    client.put_leased(b"lock", b"me", lease).unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        client.lease_keepalive(lease).unwrap();
        thread::sleep(Duration::from_millis(300));
    }
    cluster.kill9(leader);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        // Retried through the election until some node takes it.
        let kept = client.lease_keepalive(lease).unwrap();
        assert_eq!(kept.id, lease);
        thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(client.get("lock").unwrap().as_deref(), Some("me"));
    let ttl = client.lease_ttl(lease).unwrap();
    assert!(ttl.remaining >= 1 && ttl.keys == 1, "{ttl:?}");
}

/// A client that stops renewing (paused, cut off) loses its keys, once the
/// TTL has passed since its last keepalive.
#[test]
fn a_client_that_stops_renewing_loses_its_keys_after_the_ttl() {
    let cluster = ProcCluster::start(3, &[]);
    cluster.wait_for_leader();
    let mut client = Client::new(cluster.addrs());
    let lease = client.lease_grant(2).unwrap();
    client.put_leased(b"member/3", b"up", lease).unwrap();
    for _ in 0..3 {
        client.lease_keepalive(lease).unwrap();
        thread::sleep(Duration::from_millis(500));
    }
    client.lease_keepalive(lease).unwrap();
    let last_renewal = Instant::now();
    let mut watch = open(
        &cluster.addr(1),
        &WatchFilter::Key(b"member/3".to_vec()),
        None,
    );
    delete_of(&mut watch, b"member/3");
    let silent = last_renewal.elapsed();
    assert!(silent >= Duration::from_secs(2), "gone after {silent:?}");
    let mut other = Client::new(cluster.addrs());
    assert_eq!(other.get("member/3").unwrap(), None);
}
