//! `GET /events` on real server processes: what the ring records, `since`,
//! the stream, and `-events=false`.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{get, request};
use common::procs::ProcCluster;
use raftkv::http::json::{self, Json};

/// The lines of a `/events` answer, parsed.
fn events(addr: &str, since: u64) -> Vec<Json> {
    let reply = get(addr, &format!("/events?since={since}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    reply
        .text()
        .lines()
        .map(|l| json::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn field<'a>(j: &'a Json, key: &str) -> &'a str {
    j.get(key).and_then(Json::as_str).unwrap_or("")
}

fn number(j: &Json, key: &str) -> u64 {
    j.get(key).and_then(Json::as_u64).unwrap_or(0)
}

/// The leader's ring holds its election, the entries it wrote and sent, the
/// client's request and reply, in `seq` order; `since` returns what follows.
#[test]
fn the_leader_records_its_election_replication_and_client_requests() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let addr = cluster.addr(leader);
    let put = request(&addr, "PUT", "/kv/colour", Some(b"blue"));
    assert_eq!(put.status, 200);
    let all = events(&addr, 0);
    let hello = &all[0];
    assert_eq!(field(hello, "kind"), "hello");
    assert_eq!(number(hello, "node"), leader as u64 + 1);
    let seqs: Vec<u64> = all[1..].iter().map(|e| number(e, "seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let kinds: Vec<&str> = all[1..].iter().map(|e| field(e, "kind")).collect();
    let has = |pred: &dyn Fn(&Json) -> bool| all.iter().any(pred);
    assert!(
        has(&|e| field(e, "kind") == "role" && field(e, "role") == "leader"),
        "{kinds:?}"
    );
    assert!(has(
        &|e| field(e, "kind") == "persist" && e.get("runs").is_some()
    ));
    assert!(has(
        &|e| field(e, "kind") == "send" && field(e, "rpc") == "AppendEntries"
    ));
    assert!(has(&|e| field(e, "kind") == "reply_received"));
    assert!(has(
        &|e| field(e, "kind") == "commit" && field(e, "caption").contains("§5.4.2")
    ));
    assert!(has(
        &|e| field(e, "kind") == "client_request" && field(e, "op") == "put"
    ));
    assert!(has(
        &|e| field(e, "kind") == "client_reply" && field(e, "result") == "OK"
    ));
    // `since` returns exactly what follows.
    let middle = seqs[seqs.len() / 2];
    let after = events(&addr, middle);
    assert_eq!(number(&after[1], "seq"), middle + 1);
    assert!(after.iter().all(|e| field(e, "kind") != "resync"));
    // The ring's size is in /metrics.
    let metrics = get(&addr, "/metrics").text();
    assert!(metrics.contains("\nraftkv_events_ring_bytes "), "{metrics}");
    assert!(metrics.contains("\nraftkv_events_recorded_total "));
}

/// A follower's replies carry the rule that decided them.
#[test]
fn a_follower_records_its_replies_with_the_rule_that_decided_them() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let follower = cluster.addr((leader + 1) % 3);
    let all = events(&follower, 0);
    let appended = all.iter().find(|e| {
        field(e, "kind") == "reply"
            && field(e, "rpc") == "AppendEntries"
            && field(e, "why") == "appended"
    });
    assert!(appended.is_some(), "{all:?}");
    assert!(all
        .iter()
        .any(|e| field(e, "kind") == "receive" && number(e, "from") == leader as u64 + 1));
}

/// `stream=1` holds the connection open and sends what happens after it
/// connected, framed as server-sent events.
#[test]
fn a_stream_sends_events_as_they_happen() {
    let cluster = ProcCluster::start(3, &[]);
    let leader = cluster.wait_for_leader();
    let addr = cluster.addr(leader);
    let next = number(&events(&addr, 0)[0], "next_seq");
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let ask = format!(
        "GET /events?since={}&stream=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        next - 1
    );
    stream.write_all(ask.as_bytes()).unwrap();
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next().unwrap().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        request(&addr, "PUT", "/kv/streamed", Some(b"yes")).status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_content_type = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "the PUT never came down the stream"
        );
        let line = lines
            .next()
            .expect("the stream stays open")
            .expect("a line");
        saw_content_type |= line == "Content-Type: text/event-stream";
        if let Some(data) = line.strip_prefix("data: ") {
            let event = json::parse(data).expect("JSON");
            if field(&event, "kind") == "client_request" {
                assert!(number(&event, "seq") >= next, "only events after since");
                break;
            }
        }
    }
    assert!(saw_content_type);
}

/// With `-events=false` there is no ring: `/events` says so and `/metrics`
/// has no ring metrics.
#[test]
fn events_can_be_switched_off() {
    let cluster = ProcCluster::start(1, &["-events=false"]);
    let addr = cluster.addr(0);
    cluster.wait_for_leader();
    let reply = get(&addr, "/events");
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert!(!get(&addr, "/metrics").text().contains("raftkv_events_"));
}
