//! `GET /events?since=SEQ`: this server's recent events as JSON lines, or held open as a stream.
//!
//! ```text
//! GET /events?since=120            {"kind":"hello",...}\n then events 121.. (≤ 1000), one per line
//! GET /events?since=120&stream=1   text/event-stream: "id: 121\ndata: {...}\n\n" as they happen
//! ```
//!
//! Both start with a `hello` line: this server's id, its clock now (events'
//! `t` is microseconds on the same monotonic clock, so a reader can place
//! them in its own time) and the `seq` the next event will get. A reader
//! that asked for events the ring has dropped gets a `resync` line first
//! (`missed`: how many), then what the ring still holds: it must read
//! `/status` again rather than trust a history with a hole.
//!
//! The stream uses server-sent-events framing so that `EventSource` could
//! read it, but the cluster page reads it with `fetch` (which, unlike
//! `EventSource`, can send `Authorization`). The response has no
//! `Content-Length` and ends when the connection closes. A comment line
//! (`: ping`) goes out after [`HEARTBEAT`] of quiet, so a reader that went
//! away is noticed when a write times out ([`super::WRITE_TIMEOUT`]) instead
//! of holding the connection's thread forever. The stream's thread only
//! reads the ring ([`crate::events::ring`]): a slow reader falls behind and
//! is told to resync, and never slows the node.

use std::io::{self, Write};
use std::time::Duration;

use super::request::Head;
use super::response::{http_date, Response};
use crate::events::json::{write_event, Object};
use crate::events::ring::{now_micros, EventRing, Since};

/// Most events in one plain answer.
pub const MAX_EVENTS: usize = 1000;
/// Most events written to a stream at once.
const STREAM_BATCH: usize = 256;
/// After this long without an event, a stream sends a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// What a request asks for: events after `since`; streamed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The last `seq` the reader has.
    pub since: u64,
    /// Hold the connection open and send events as they happen.
    pub stream: bool,
}

impl Query {
    /// Parses `since=N&stream=1` (anything else is ignored; a bad number is
    /// an error).
    pub fn parse(query: &str) -> Result<Query, String> {
        let mut q = Query {
            since: 0,
            stream: false,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "since" => {
                    q.since = value
                        .parse()
                        .map_err(|_| format!("since must be a number, got {value:?}"))?
                }
                "stream" => q.stream = !matches!(value, "0" | "false"),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// The first line of every answer.
fn hello(ring: &EventRing, since: &Since) -> String {
    let limits = ring.limits();
    let mut out = String::new();
    Object::new(&mut out)
        .text("kind", "hello")
        .num("node", ring.node())
        .text("clock", "monotonic")
        .num("now", now_micros())
        .num("next_seq", since.next_seq)
        .num("limit_events", limits.events as u64)
        .num("limit_bytes", limits.bytes as u64)
        .close();
    out
}

/// The line that tells a reader it missed events.
fn resync(missed: u64) -> String {
    let mut out = String::new();
    Object::new(&mut out)
        .text("kind", "resync")
        .num("missed", missed)
        .close();
    out
}

/// `GET /events` without `stream`: everything after `since`, as JSON lines.
pub fn response(ring: Option<&EventRing>, query: &str) -> Response {
    let Some(ring) = ring else {
        return Response::error(
            404,
            "NOT_FOUND",
            "events are off on this server (-events=false)",
        );
    };
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(e) => return Response::error(400, "BAD_REQUEST", &e),
    };
    let since = ring.since(q.since, MAX_EVENTS);
    let mut body = hello(ring, &since);
    body.push('\n');
    if since.missed > 0 {
        body.push_str(&resync(since.missed));
        body.push('\n');
    }
    for event in &since.events {
        write_event(&mut body, event, None);
        body.push('\n');
    }
    Response::new(200, "application/x-ndjson", body).with("Cache-Control", "no-store")
}

/// Whether `head` asks for a stream of events.
pub fn wants_stream(head: &Head) -> bool {
    head.path == "/events" && Query::parse(&head.query).is_ok_and(|q| q.stream)
}

/// Streams events after `query`'s `since` until a write fails (the reader
/// went away, or stopped reading for the write timeout); `heartbeat` is the
/// quiet time after which a comment line goes out.
pub fn stream(
    ring: &EventRing,
    query: &str,
    w: &mut impl Write,
    heartbeat: Duration,
) -> io::Result<()> {
    let mut seq = Query::parse(query).map_or(0, |q| q.since);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         Access-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\nDate: {}\r\n\
         Connection: close\r\n\r\n",
        http_date(std::time::SystemTime::now())
    );
    w.write_all(head.as_bytes())?;
    let first = ring.since(seq, 0);
    w.write_all(format!("event: hello\ndata: {}\n\n", hello(ring, &first)).as_bytes())?;
    w.flush()?;
    let mut frame = String::new();
    loop {
        let since = ring.wait_since(seq, STREAM_BATCH, heartbeat);
        frame.clear();
        if since.missed > 0 {
            frame.push_str("event: resync\ndata: ");
            frame.push_str(&resync(since.missed));
            frame.push_str("\n\n");
        }
        for event in &since.events {
            frame.push_str(&format!("id: {}\ndata: ", event.seq));
            write_event(&mut frame, event, None);
            frame.push_str("\n\n");
            seq = event.seq;
        }
        if since.events.is_empty() && since.missed == 0 {
            frame.push_str(": ping\n\n");
            // A reader from before a restart catches up with this run.
            seq = seq.min(since.next_seq - 1);
        }
        w.write_all(frame.as_bytes())?;
        w.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ring::Limits;
    use crate::events::What;

    fn ring_with(n: u64) -> EventRing {
        let ring = EventRing::new(1, Limits::default());
        for index in 1..=n {
            let what = What::Apply { index };
            ring.push(2, what);
        }
        ring
    }

    #[test]
    fn queries_parse_and_bad_numbers_are_refused() {
        let q = Query::parse("since=12&stream=1&x=y").unwrap();
        assert_eq!((q.since, q.stream), (12, true));
        assert_eq!(Query::parse("").unwrap().since, 0);
        assert!(!Query::parse("stream=0").unwrap().stream);
        assert!(Query::parse("since=-1").is_err());
    }

    #[test]
    fn a_plain_answer_is_a_hello_then_the_events_after_since() {
        let ring = ring_with(5);
        let r = response(Some(&ring), "since=3");
        assert_eq!(r.status, 200);
        let body = String::from_utf8(r.body).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines[0].contains("\"kind\":\"hello\"") && lines[0].contains("\"next_seq\":6"));
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("{\"seq\":4,") && lines[2].starts_with("{\"seq\":5,"));
        assert_eq!(response(None, "").status, 404);
        assert_eq!(response(Some(&ring), "since=x").status, 400);
    }

    /// A writer that accepts `left` writes, then fails as a timed-out socket does.
    struct Reader {
        written: Vec<u8>,
        left: usize,
    }

    impl Write for Reader {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.left -= 1;
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stream_frames_events_heartbeats_when_quiet_and_ends_when_writes_fail() {
        let ring = ring_with(3);
        let mut reader = Reader {
            written: Vec::new(),
            left: 4,
        };
        let ended = stream(
            &ring,
            "since=1&stream=1",
            &mut reader,
            Duration::from_millis(20),
        );
        assert!(ended.is_err(), "a failed write ends the stream");
        let text = String::from_utf8(reader.written).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
        assert!(text.contains("event: hello\ndata: {\"kind\":\"hello\""));
        assert!(text.contains("id: 2\ndata: {\"seq\":2,") && text.contains("id: 3\ndata: "));
        assert!(!text.contains("id: 1\n"), "only events after since");
        assert!(text.ends_with(": ping\n\n"), "{text}");
    }

    #[test]
    fn a_stream_reader_behind_the_ring_is_told_to_resync() {
        let ring = EventRing::new(
            1,
            Limits {
                events: 2,
                bytes: 1 << 20,
            },
        );
        for index in 1..=5 {
            ring.push(1, What::Apply { index });
        }
        let mut reader = Reader {
            written: Vec::new(),
            left: 3,
        };
        let _ = stream(&ring, "since=0", &mut reader, Duration::from_millis(20));
        let text = String::from_utf8(reader.written).unwrap();
        assert!(
            text.contains("event: resync\ndata: {\"kind\":\"resync\",\"missed\":3}"),
            "{text}"
        );
        assert!(text.contains("id: 4\n") && text.contains("id: 5\n"));
    }
}
