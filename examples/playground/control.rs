//! The playground's own HTTP server, on loopback only: the page, the controls, the operator's events, the tours.
//!
//! ```text
//! GET  /                  the cluster page (the same file every server serves)
//! GET  /playground        the servers the operator can act on, and their state
//! POST /control           {"action":"kill","node":2}, {"action":"partition","a":[1],"b":[2,3]}, ...
//! GET  /events?since=SEQ  the operator's actions as events (node 0); &stream=1 holds it open
//! GET  /cluster           a running server's /cluster (the page's first question)
//! GET  /tours             the guided tours; GET /tour/NAME one as a trace (?counterpart=1: without its bug)
//! ```
//!
//! One thread per connection, blocking I/O, as the servers do. The
//! controls exist only here: a plain server has no endpoint that kills,
//! pauses or partitions anything.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use raftkv::events::ring::EventRing;
use raftkv::events::{Action, Actor, Intervention, What};
use raftkv::http::json::{self, Json};
use raftkv::http::request::{self, Method};
use raftkv::http::response::Response;
use raftkv::http::{events, page};
use raftkv::sim::tours;

use super::cluster::Cluster;
use super::load::Load;

/// What the connection threads share.
pub struct Playground {
    /// The servers.
    pub cluster: Mutex<Cluster>,
    /// The operator's actions, as events.
    pub ring: Arc<EventRing>,
    /// The load running, if any.
    pub load: Mutex<Option<Load>>,
}

impl Playground {
    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves `listener` (bound to loopback) until the process ends.
pub fn serve(listener: TcpListener, playground: Arc<Playground>) {
    for stream in listener.incoming().flatten() {
        let playground = Arc::clone(&playground);
        thread::spawn(move || {
            let _ = handle(stream, &playground);
        });
    }
}

fn handle(stream: TcpStream, playground: &Playground) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    loop {
        let Ok(line) = request::read_request_line(&mut reader) else {
            return Ok(());
        };
        let Ok(head) = request::read_head(&mut reader, &line) else {
            return Ok(());
        };
        let Ok(body) = request::read_body(&mut reader, &head) else {
            return Ok(());
        };
        if head.method == Method::Get && events::wants_stream(&head) {
            return events::stream(
                &playground.ring,
                &head.query,
                &mut writer,
                events::HEARTBEAT,
            );
        }
        let response = route(&head, &body, playground);
        let close = !head.keep_alive();
        response.write_to(&mut writer, head.method == Method::Head, close)?;
        if close {
            return Ok(());
        }
    }
}

fn route(head: &request::Head, body: &[u8], playground: &Playground) -> Response {
    let path = head.path.as_str();
    match (head.method, path) {
        (Method::Get, "/") => page::response(),
        (Method::Get, "/playground") => Response::json(200, &playground.cluster().describe()),
        (Method::Post, "/control") => control(body, playground),
        (Method::Get, "/events") => events::response(Some(&playground.ring), &head.query),
        (Method::Get, "/cluster") => cluster(playground),
        (Method::Get, "/tours") => {
            let list = tours::TOURS.iter().map(|t| {
                let mut fields = vec![
                    ("name", Json::from(t.name)),
                    ("title", Json::from(t.title)),
                    ("url", Json::from(format!("/tour/{}", t.name))),
                ];
                if t.bug.is_some() {
                    let url = format!("/tour/{}?counterpart=1", t.name);
                    fields.push(("counterpart_url", Json::from(url)));
                }
                Json::object(fields)
            });
            Response::json(200, &Json::Array(list.collect()))
        }
        (Method::Get, _) if path.starts_with("/tour/") => {
            match tours::find(&path["/tour/".len()..]) {
                Some(tour) => {
                    let run = tour.run(head.query.contains("counterpart=1"));
                    Response::new(200, "application/x-ndjson", run.to_json_lines())
                }
                None => Response::error(404, "NOT_FOUND", "no such tour"),
            }
        }
        _ => Response::error(404, "NOT_FOUND", &format!("no route {path}")),
    }
}

/// `POST /control`: one action on the cluster.
fn control(body: &[u8], playground: &Playground) -> Response {
    let parsed = std::str::from_utf8(body)
        .map_err(|_| "the body is not UTF-8".to_string())
        .and_then(|text| json::parse(text).map_err(|e| e.to_string()));
    let request = match parsed {
        Ok(j) => j,
        Err(e) => return Response::error(400, "BAD_REQUEST", &e),
    };
    let action = request.get("action").and_then(Json::as_str).unwrap_or("");
    let node = request.get("node").and_then(Json::as_u64).unwrap_or(0);
    let ids = |key: &str| -> Vec<u64> {
        match request.get(key) {
            Some(Json::Array(items)) => items.iter().filter_map(Json::as_u64).collect(),
            _ => Vec::new(),
        }
    };
    let via = request.get("via").and_then(Json::as_u64);
    let done = match action {
        "kill" => playground.cluster().kill(node),
        "restart" => playground.cluster().restart(node),
        "pause" => playground.cluster().pause(node, true),
        "resume" => playground.cluster().pause(node, false),
        "partition" => playground
            .cluster()
            .partition(&ids("a"), &ids("b"), false, None),
        "one-way" => playground
            .cluster()
            .partition(&ids("a"), &ids("b"), true, None),
        "bridge" => match via {
            Some(via) => playground
                .cluster()
                .partition(&ids("a"), &ids("b"), false, Some(via)),
            None => Err("a bridge needs a server in the middle: 1,2 | 4,5 via 3".into()),
        },
        "heal" => playground.cluster().heal(),
        "transfer" => playground.cluster().transfer(node),
        "add" => playground.cluster().add(),
        "remove" => playground.cluster().remove(node),
        "load-start" => start_load(playground, request.get("clients").and_then(Json::as_u64)),
        "load-stop" => stop_load(playground),
        _ => Err(format!("unknown action {action:?}")),
    };
    let (status, ok, message) = match done {
        Ok(m) => (200, true, m),
        Err(m) => (400, false, m),
    };
    let answer = Json::object([("ok", Json::from(ok)), ("message", Json::from(message))]);
    Response::json(status, &answer)
}

fn start_load(playground: &Playground, clients: Option<u64>) -> Result<String, String> {
    let k = clients.unwrap_or(4).clamp(1, 64) as usize;
    let mut load = playground.load.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = load.take() {
        old.stop();
    }
    // The servers running now; one that stops answering is skipped.
    let running = playground.cluster().running_addrs();
    let addrs: super::load::Servers = Arc::new(move || running.clone());
    *load = Some(Load::start(k, addrs));
    let ids: Vec<u64> = (1..=k as u64).collect();
    playground.ring.push(
        0,
        What::Intervention(Intervention {
            others: ids.into(),
            ..Intervention::on(Actor::Operator, Action::LoadStart, &[])
        }),
    );
    Ok(format!("{k} clients are writing"))
}

fn stop_load(playground: &Playground) -> Result<String, String> {
    let stopped = playground
        .load
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    match stopped {
        Some(load) => {
            let k = load.clients();
            load.stop();
            let what = What::Intervention(Intervention::on(Actor::Operator, Action::LoadStop, &[]));
            playground.ring.push(0, what);
            Ok(format!("stopped {k} clients"))
        }
        None => Err("no load is running".into()),
    }
}

/// `GET /cluster`, asked of the first server that answers.
fn cluster(playground: &Playground) -> Response {
    let addrs = playground.cluster().running_addrs();
    for addr in addrs {
        if let Ok(body) = http_get(&addr, "/cluster") {
            return Response::new(200, "application/json", body).with("Cache-Control", "no-store");
        }
    }
    Response::error(503, "NO_LEADER", "no server answers")
}

/// A plain `GET` over HTTP/1.1 with `Connection: close`; the body if 200.
fn http_get(addr: &str, path: &str) -> io::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let socket = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(deadline - Instant::now()))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.take(1 << 20).read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("malformed reply"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_string())
}
