//! Watches and leases over HTTP: an SSE stream whose `id:` is the revision
//! and which `Last-Event-ID` resumes; a Consul-style long poll; the lease
//! routes and `PUT /kv/<k>?lease=<id>`.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::http::Conn;
use common::procs::ProcCluster;
use raftkv::http::json::Json;

/// Opens `GET /watch...` with extra header lines; the reader, past the
/// response head.
fn sse(addr: &str, path: &str, headers: &str) -> (u16, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return (status, reader);
        }
    }
}

/// The next event's fields (`event`, `id`, `data`), skipping comments.
fn next_event(reader: &mut BufReader<TcpStream>) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        let line = line.trim_end_matches('\n');
        if line.is_empty() {
            if !fields.is_empty() {
                return fields;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(": ").unwrap_or((line, ""));
        fields.push((name.to_string(), value.to_string()));
    }
}

fn field<'a>(event: &'a [(String, String)], name: &str) -> Option<&'a str> {
    event
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn put(c: &mut Conn, path: &str, body: &str) -> u16 {
    c.request("PUT", path, Some(body.as_bytes())).status
}

#[test]
fn an_sse_watch_gives_revisions_as_ids_and_last_event_id_resumes_after_them() {
    let cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    let addr = cluster.addr(0);
    let mut c = Conn::open(&addr);
    let (status, mut stream) = sse(&addr, "/watch?prefix=cfg/&from=1", "");
    assert_eq!(status, 200);
    assert_eq!(field(&next_event(&mut stream), "event"), Some("watching"));
    for v in ["1", "2", "3"] {
        assert_eq!(put(&mut c, "/kv/cfg/a", v), 200);
    }
    assert_eq!(c.request("DELETE", "/kv/cfg/a", None).status, 200);
    let mut ids = Vec::new();
    for expected in ["put", "put", "put", "delete"] {
        let event = next_event(&mut stream);
        assert_eq!(field(&event, "event"), Some(expected), "{event:?}");
        ids.push(field(&event, "id").unwrap().parse::<u64>().unwrap());
    }
    assert_eq!(ids, vec![1, 2, 3, 4]);
    drop(stream);
    // A browser reconnecting after id 2 gets 3 and 4 again, nothing else.
    let (_, mut resumed) = sse(&addr, "/watch?prefix=cfg/", "Last-Event-ID: 2\r\n");
    assert_eq!(
        field(&next_event(&mut resumed), "data"),
        Some("{\"from\":3}")
    );
    let third = next_event(&mut resumed);
    assert_eq!(
        field(&third, "data"),
        Some("{\"key\":\"cfg/a\",\"value\":\"3\",\"revision\":3}")
    );
    assert_eq!(field(&next_event(&mut resumed), "id"), Some("4"));
}

#[test]
fn a_from_older_than_the_history_is_410_compacted() {
    let cluster = ProcCluster::start(1, &["-watch-history-bytes", "500"]);
    cluster.wait_for_leader();
    let addr = cluster.addr(0);
    let mut c = Conn::open(&addr);
    for i in 0..20 {
        assert_eq!(put(&mut c, "/kv/k", &format!("{i:050}")), 200);
    }
    let mut fresh = Conn::open(&addr);
    let refused = fresh.request("GET", "/watch?key=k&from=1", None);
    assert_eq!(refused.status, 410);
    assert_eq!(refused.error_code(), "COMPACTED");
}

/// Reference: Consul's blocking queries (`?index=&wait=`).
#[test]
fn a_long_poll_returns_once_the_key_changes_past_its_index() {
    let cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    let addr = cluster.addr(0);
    let mut c = Conn::open(&addr);
    assert_eq!(put(&mut c, "/kv/flag", "off"), 200);
    let first = c.request("GET", "/kv/flag", None);
    let index: u64 = first.header("x-raftkv-index").unwrap().parse().unwrap();
    let writer = {
        let addr = addr.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let mut c = Conn::open(&addr);
            put(&mut c, "/kv/flag", "on")
        })
    };
    let asked = Instant::now();
    let polled = c.request("GET", &format!("/kv/flag?index={index}&wait=20s"), None);
    assert_eq!(writer.join().unwrap(), 200);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "returned on the change"
    );
    assert_eq!(polled.status, 200);
    assert_eq!(
        polled.json().get("value").and_then(Json::as_str),
        Some("on")
    );
    let next: u64 = polled.header("x-raftkv-index").unwrap().parse().unwrap();
    assert!(next > index);
    // Nothing changes: the poll returns the key as it is after `wait`.
    let quiet = c.request("GET", &format!("/kv/flag?index={next}&wait=300ms"), None);
    assert_eq!(quiet.status, 200);
    assert_eq!(
        quiet.header("x-raftkv-index"),
        Some(next.to_string().as_str())
    );
}

#[test]
fn lease_routes_grant_keep_read_and_revoke_and_a_leased_key_goes_with_its_lease() {
    let cluster = ProcCluster::start(1, &[]);
    cluster.wait_for_leader();
    let mut c = Conn::open(&cluster.addr(0));
    let granted = c.request("POST", "/lease", Some(b"{\"ttl\":60}"));
    assert_eq!(granted.status, 200, "{}", granted.text());
    let id = granted.json().get("id").and_then(Json::as_u64).unwrap();
    assert_eq!(
        put(&mut c, &format!("/kv/svc/web?lease={id}"), "10.0.0.1"),
        200
    );
    assert_eq!(put(&mut c, "/kv/svc/db?lease=999", "x"), 404);
    let kept = c.request("PUT", &format!("/lease/{id}"), Some(b""));
    assert_eq!(kept.status, 200);
    let read = c.request("GET", &format!("/lease/{id}"), None).json();
    assert_eq!(read.get("keys").and_then(Json::as_u64), Some(1));
    let left = read.get("remaining").and_then(Json::as_u64).unwrap();
    assert!((1..=60).contains(&left), "{left}");
    assert_eq!(
        c.request("DELETE", &format!("/lease/{id}"), None).status,
        200
    );
    assert_eq!(c.request("GET", "/kv/svc/web", None).status, 404);
    let gone = c.request("GET", &format!("/lease/{id}"), None);
    assert_eq!(
        (gone.status, gone.error_code().as_str()),
        (404, "LEASE_NOT_FOUND")
    );
    let too_long = c.request("POST", "/lease", Some(b"{\"ttl\":86401}"));
    assert_eq!(too_long.status, 400);
}
