//! `/status`, `/cluster` and `/health`: what this server, and every member it
//! can reach, say about the cluster.
//!
//! `/status` is this server alone: its Raft state, the configuration it uses
//! (`members`, with each one's role: voter or learner; thesis §4), when it last
//! heard from each peer, and its recent changes of term, role and leader
//! (`history`, as "milliseconds ago" so that clocks need not agree). `/cluster`
//! adds every other member's `/status`, fetched over HTTP in parallel with a short
//! deadline; a member that does not answer is listed as unreachable with the
//! reason. It asks over the real network, so the cluster example's simulated
//! partition (which cuts only Raft and forwarding) does not hide anyone: each
//! member's own status shows what the partition did to it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use super::json::{self, Json};
use super::response::Response;
use super::Context;
use crate::raft::{NodeId, Role};

/// How far back `/status` reports changes of term, role and leader.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(600);
/// How long `/cluster` waits for a member's `/status`.
pub const PEER_DEADLINE: Duration = Duration::from_millis(800);
/// A healthy leader has heard from a majority within this long.
pub const LEADER_CONTACT: Duration = Duration::from_secs(1);
/// A healthy server has applied to within this many entries of its commit index.
pub const MAX_APPLY_LAG: u64 = 1000;
/// Largest `/status` body `/cluster` accepts from a member.
const MAX_STATUS_BYTES: u64 = 256 * 1024;

/// `GET /status`.
pub fn status(ctx: &Context) -> Response {
    Response::json(200, &status_json(ctx))
}

/// This server's status as JSON.
pub fn status_json(ctx: &Context) -> Json {
    let node = ctx.frontend.replica().node();
    let (s, m) = (node.status(), node.metrics());
    let configuration = &s.configuration;
    let members = configuration.members().map(|(id, addr)| {
        let role = if configuration.is_voter(id) {
            "voter"
        } else {
            "learner"
        };
        Json::object([
            ("id", Json::from(id)),
            ("addr", Json::from(addr)),
            ("role", Json::from(role)),
        ])
    });
    let peers = m.peers().into_iter().map(|(id, _)| {
        let ago = m.last_contact(id).map(|d| d.as_millis() as u64);
        Json::object([("id", Json::from(id)), ("last_contact_ms", Json::from(ago))])
    });
    let history = m.changes(HISTORY_WINDOW).into_iter().map(|c| {
        Json::object([
            ("ago_ms", Json::from(c.at.elapsed().as_millis() as u64)),
            ("term", Json::from(c.term)),
            ("role", Json::from(c.role.to_string())),
            ("leader", Json::from(c.leader)),
        ])
    });
    Json::object([
        ("id", Json::from(s.id)),
        ("addr", Json::from(addr(ctx, s.id))),
        ("configuration_index", Json::from(s.configuration_index)),
        ("role", Json::from(s.role.to_string())),
        ("term", Json::from(s.term)),
        ("leader", Json::from(s.leader_id)),
        ("commit_index", Json::from(s.commit_index)),
        ("applied_index", Json::from(s.last_applied)),
        ("snapshot_index", Json::from(s.snapshot_index)),
        ("last_log_index", Json::from(s.last_log_index)),
        ("members", Json::Array(members.collect())),
        (
            "uptime_ms",
            Json::from(m.started().elapsed().as_millis() as u64),
        ),
        ("peers", Json::Array(peers.collect())),
        ("history", Json::Array(history.collect())),
        ("storage", Json::from(ctx.frontend.storage_state())),
        (
            "storage_failure",
            Json::from(node.failure().map(|f| f.message)),
        ),
        (
            "disk_free_bytes",
            Json::from(ctx.frontend.disk_space().and_then(|d| d.free_bytes())),
        ),
    ])
}

/// Member `id`'s address, as this server's configuration says.
fn addr(ctx: &Context, id: NodeId) -> String {
    let status = ctx.frontend.replica().node().status();
    status
        .configuration
        .address(id)
        .unwrap_or_default()
        .to_string()
}

/// `GET /cluster`: every member, this one first-hand and the others by
/// asking them (passing on the request's `Authorization`, if any, for members
/// that require a client token).
pub fn cluster(ctx: &Context, authorization: Option<&str>) -> Response {
    let configuration = ctx.frontend.replica().node().status().configuration;
    let fetched: Vec<(NodeId, Result<Json, String>)> = thread::scope(|scope| {
        let asks: Vec<_> = configuration
            .members()
            .filter(|&(id, _)| id != ctx.id)
            .map(|(id, addr)| {
                let addr = addr.to_string();
                (id, scope.spawn(move || fetch_status(&addr, authorization)))
            })
            .collect();
        asks.into_iter()
            .map(|(id, ask)| (id, ask.join().unwrap_or_else(|_| Err("panicked".into()))))
            .collect()
    });
    let mut members = vec![(ctx.id, Ok(status_json(ctx)))];
    members.extend(fetched);
    members.sort_by_key(|(id, _)| *id);
    let members = members.into_iter().map(|(id, answer)| {
        let mut fields = vec![
            ("id", Json::from(id)),
            ("addr", Json::from(addr(ctx, id))),
            ("reachable", Json::from(answer.is_ok())),
        ];
        match answer {
            Ok(status) => fields.push(("status", status)),
            Err(why) => fields.push(("error", Json::from(why))),
        }
        Json::object(fields)
    });
    let body = Json::object([
        ("from", Json::from(ctx.id)),
        ("members", Json::Array(members.collect())),
    ]);
    Response::json(200, &body)
}

/// Asks the member at `addr` for its `/status`, within [`PEER_DEADLINE`].
fn fetch_status(addr: &str, authorization: Option<&str>) -> Result<Json, String> {
    let deadline = Instant::now() + PEER_DEADLINE;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err("no answer in time".to_string())
        } else {
            Ok(left)
        }
    };
    let socket = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("address resolves to nothing")?;
    let mut stream = TcpStream::connect_timeout(&socket, left()?).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    // A header value as parsed holds no line break, so it cannot split the request.
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
        if reply.len() as u64 > MAX_STATUS_BYTES {
            return Err("status too large".into());
        }
    }
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed reply")?;
    if !reply.starts_with(b"HTTP/1.1 200 ") {
        let line = reply.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(format!("answered {}", String::from_utf8_lossy(line)));
    }
    let body = std::str::from_utf8(&reply[split + 4..]).map_err(|_| "reply is not UTF-8")?;
    json::parse(body).map_err(|e| e.to_string())
}

/// `GET /health`: 200 when this server knows a leader (a leader: has heard
/// from a majority within [`LEADER_CONTACT`]), has applied to within
/// [`MAX_APPLY_LAG`] of its commit index, and its disk is sound and not low
/// on space; 503 with the reason otherwise: `STORAGE` (storage failed, the
/// node has stopped), `NOSPACE_DISK` (the free-space guard refuses writes, like
/// etcd's NOSPACE alarm), `NO_LEADER`, `NO_QUORUM`, `APPLY_LAG` (etcd's
/// `/health` is the model).
pub fn health(ctx: &Context) -> Response {
    let node = ctx.frontend.replica().node();
    let (s, m) = (node.status(), node.metrics());
    let sick = |reason: &str, message: String| {
        let body = Json::object([
            ("health", Json::from(false)),
            ("reason", Json::from(reason)),
            ("message", Json::from(message)),
        ]);
        Response::json(503, &body).with("Retry-After", "1")
    };
    if let Some(failure) = node.failure() {
        return sick("STORAGE", format!("node {} has stopped: {failure}", s.id));
    }
    if let Some(disk) = ctx.frontend.disk_space().filter(|d| d.is_low()) {
        let message = format!(
            "node {} has {} bytes free in {}, below the {} it keeps for compaction: writes \
             that grow the state are refused until DEL and compaction, or a bigger disk, make room",
            s.id,
            disk.free_bytes().unwrap_or(0),
            disk.dir().display(),
            disk.threshold()
        );
        return sick("NOSPACE_DISK", message);
    }
    let Some(leader) = s.leader_id else {
        return sick("NO_LEADER", format!("node {} knows no leader", s.id));
    };
    if s.role == Role::Leader {
        let heard = m
            .peers()
            .into_iter()
            .filter(|(id, _)| s.configuration.is_voter(*id))
            .filter(|(id, _)| m.last_contact(*id).is_some_and(|d| d <= LEADER_CONTACT))
            .count();
        let members = s.configuration.voters.len().max(1);
        if (heard + 1) * 2 <= members {
            let message = format!(
                "leader {leader} heard from only {heard} of {} voters in the last {:?}",
                members - 1,
                LEADER_CONTACT
            );
            return sick("NO_QUORUM", message);
        }
    }
    let lag = s.commit_index.saturating_sub(s.last_applied);
    if lag > MAX_APPLY_LAG {
        let message = format!(
            "applied {} is {lag} behind commit {}",
            s.last_applied, s.commit_index
        );
        return sick("APPLY_LAG", message);
    }
    let body = Json::object([
        ("health", Json::from(true)),
        ("leader", Json::from(leader)),
        ("term", Json::from(s.term)),
    ]);
    Response::json(200, &body)
}
