//! HTTP/1.1 on the server's one port: a JSON API, `/metrics`, and a live
//! cluster page, beside the text protocol.
//!
//! The server reads a connection's first line; if it is an HTTP request line
//! ([`request::is_request_line`]) the connection is handed to [`serve`] for
//! good, otherwise it stays the text protocol. [`serve`] answers requests in
//! order (keep-alive and pipelining need nothing more than reading from one
//! buffered reader for the connection's whole life) until the client closes,
//! asks to close, or breaks a rule.
//!
//! Every API request becomes a text-protocol line and goes through the same
//! [`Frontend`] as `nc` would, forwarding to the leader included: there is one
//! execution path. The files: [`request`] parses, [`response`] writes,
//! [`json`] (the crate's JSON) encodes and parses bodies, [`api`] routes,
//! [`kv`] serves keys, ranges and transactions, [`watch`] streams changes
//! (Server-Sent Events) and long-polls a key, [`lease`] grants and keeps
//! leases, [`cluster`] answers
//! `/status`, `/cluster` and `/health`, [`events`] serves `/events` (and holds
//! it open as a stream), [`metrics`] writes `/metrics`, [`page`] is the
//! cluster page, [`reply`] turns typed replies into statuses and error
//! bodies.
//!
//! Deadlines, not just read timeouts, bound each phase (a client sending one
//! byte a second never trips a per-read timeout): [`IDLE_TIMEOUT`] between
//! requests, then the server's `http_read_timeout` for one request's headers
//! and body (408 when it passes), [`WRITE_TIMEOUT`] per write.

pub mod api;
pub mod cluster;
pub mod events;
pub mod kv;
pub mod lease;
pub mod metrics;
pub mod page;
pub mod reply;
pub mod request;
pub mod response;
pub mod watch;

use std::io::{self, BufReader, BufWriter, Cursor, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant, SystemTime};

/// The JSON bodies' encoder and parser (shared with the text protocol's
/// structured replies).
pub use crate::json;

use crate::auth::token::ClientAuth;
use crate::metrics::CounterVec;
use crate::raft::NodeId;
use crate::service::frontend::Frontend;
use crate::service::reply::Reply;
use request::{ReadError, Rejection};
use response::Response;

/// How long a keep-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write of a response may block.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// When closing, how long to drain what the client still sends (so that
/// closing with unread input does not reset the connection and destroy the
/// response in flight; RFC 9112 §9.6).
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes drained when closing.
const LINGER_BYTES: u64 = 256 * 1024;

/// What the HTTP side needs from the server it runs in.
pub struct Context<'a> {
    /// This server's id. (The members and their addresses are the
    /// configuration's, from the node's status: thesis §4.)
    pub id: NodeId,
    /// Answers text-protocol lines: the one execution path.
    pub frontend: &'a Frontend,
    /// Relays a line to the leader (the text protocol's forwarding).
    pub forward: &'a dyn Fn(&str) -> Reply,
    /// Connections open right now (peers, text and HTTP clients).
    pub open_connections: &'a AtomicUsize,
    /// HTTP requests answered, by method, route template and status.
    pub requests: &'a CounterVec,
    /// When the server started.
    pub started: SystemTime,
    /// How long one request's headers and body may take to arrive.
    pub read_timeout: Duration,
    /// The client token check, shared with the text protocol's `AUTH`.
    pub clients: &'a ClientAuth,
    /// The client's address (for throttling wrong tokens, and logs).
    pub remote: IpAddr,
}

/// A socket whose reads fail with `TimedOut` once a deadline has passed.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Option<Instant>,
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // A zero timeout means "block forever" to the OS: check first.
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
        };
        self.stream.set_read_timeout(timeout)?;
        self.stream.read(buf)
    }
}

type Reader = BufReader<io::Chain<Cursor<Vec<u8>>, DeadlineStream>>;

fn set_deadline(reader: &mut Reader, after: Option<Duration>) {
    reader.get_mut().get_mut().1.deadline = after.map(|d| Instant::now() + d);
}

/// Serves a connection whose first line, `first_line`, was an HTTP request
/// line. `reader` is the buffered reader that line came from (it may hold
/// pipelined bytes already); `writer` writes to the same socket.
pub fn serve(
    first_line: Vec<u8>,
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    ctx: &Context<'_>,
) {
    let buffered = reader.buffer().to_vec();
    let stream = DeadlineStream {
        stream: reader.into_inner(),
        deadline: None,
    };
    let mut reader = BufReader::new(Cursor::new(buffered).chain(stream));
    let mut writer = writer;
    let _ = writer.get_ref().set_write_timeout(Some(WRITE_TIMEOUT));
    let mut next_line = Some(first_line);
    loop {
        let line = match next_line.take() {
            Some(line) => line,
            None => {
                set_deadline(&mut reader, Some(IDLE_TIMEOUT));
                match request::read_request_line(&mut reader) {
                    Ok(line) => line,
                    Err(ReadError::Reject(r)) => return reject(&mut reader, &mut writer, r, ctx),
                    // Idle too long, or the client went away: close quietly.
                    Err(_) => return,
                }
            }
        };
        set_deadline(&mut reader, Some(ctx.read_timeout));
        let head = match request::read_head(&mut reader, &line) {
            Ok(head) => head,
            Err(e) => return fail(&mut reader, &mut writer, e, ctx),
        };
        if head.expects_continue() && head.content_length > 0 {
            let sent = writer
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|_| writer.flush());
            if sent.is_err() {
                return;
            }
        }
        let body = match request::read_body(&mut reader, &head) {
            Ok(body) => body,
            Err(e) => return fail(&mut reader, &mut writer, e, ctx),
        };
        set_deadline(&mut reader, None);
        if head.method == request::Method::Get && events::wants_stream(&head) {
            if let Some(ring) = ctx.frontend.replica().node().events() {
                let denied = api::authorize(&head, ctx);
                let status = denied.as_ref().map_or(200, |r| r.status).to_string();
                ctx.requests.inc(&["GET", "/events", &status]);
                if let Some(denied) = denied {
                    let denied = denied.with("Access-Control-Allow-Origin", "*");
                    let _ = denied.write_to(&mut writer, false, true);
                    return;
                }
                // Held open until the reader goes away; then the connection closes.
                let _ = events::stream(ring, &head.query, &mut writer, events::HEARTBEAT);
                return;
            }
        }
        if head.method == request::Method::Get && watch::wants_stream(&head) {
            let denied = api::authorize(&head, ctx);
            if let Some(denied) = denied {
                ctx.requests
                    .inc(&["GET", "/watch", &denied.status.to_string()]);
                let denied = denied.with("Access-Control-Allow-Origin", "*");
                let _ = denied.write_to(&mut writer, false, true);
                return;
            }
            let hub = ctx.frontend.replica().watch();
            let status = watch::stream(hub, &head, &mut writer).unwrap_or(200);
            ctx.requests.inc(&["GET", "/watch", &status.to_string()]);
            return;
        }
        let (route, response) = api::handle(&head, &body, ctx);
        let status = response.status.to_string();
        ctx.requests.inc(&[head.method.as_str(), route, &status]);
        let close = !head.keep_alive();
        let head_only = head.method == request::Method::Head;
        if response.write_to(&mut writer, head_only, close).is_err() {
            return;
        }
        if close {
            return linger(&mut reader, &writer);
        }
    }
}

/// Answers a request that could not be read, if it deserves an answer, and closes.
fn fail(reader: &mut Reader, writer: &mut BufWriter<TcpStream>, e: ReadError, ctx: &Context) {
    match e {
        ReadError::Reject(r) => reject(reader, writer, r, ctx),
        ReadError::TimedOut => {
            let r = Rejection {
                status: 408,
                message: "the request did not arrive in time".into(),
            };
            reject(reader, writer, r, ctx);
        }
        ReadError::Closed | ReadError::Io(_) => {}
    }
}

fn reject(reader: &mut Reader, writer: &mut BufWriter<TcpStream>, r: Rejection, ctx: &Context) {
    let code = match r.status {
        408 => "TIMEOUT",
        411 => "LENGTH_REQUIRED",
        413 | 414 | 431 => "TOO_LARGE",
        417 | 501 => "NOT_IMPLEMENTED",
        _ => "BAD_REQUEST",
    };
    ctx.requests
        .inc(&["invalid", "invalid", &r.status.to_string()]);
    let response = Response::error(r.status, code, &r.message);
    if response.write_to(writer, false, true).is_ok() {
        linger(reader, writer);
    }
}

/// Closes our side, then drains what the client still sends for a moment, so
/// the response is not destroyed by a reset (RFC 9112 §9.6).
fn linger(reader: &mut Reader, writer: &BufWriter<TcpStream>) {
    let _ = writer.get_ref().shutdown(Shutdown::Write);
    set_deadline(reader, Some(LINGER));
    let _ = io::copy(&mut reader.take(LINGER_BYTES), &mut io::sink());
}
