//! Watches over HTTP: a Server-Sent Events stream, and a Consul-style long
//! poll of one key.
//!
//! ```text
//! GET /watch?key=k | prefix=p [&from=rev]   text/event-stream, one event per change:
//!     event: put                  data: {"key":"k","value":"v","revision":7}
//!     event: delete               data: {"key":"k","revision":8}
//!     id: 8                       (on the last change of each revision)
//! GET /kv/<key>?index=<rev>&wait=30s        the key, once its mod_revision passes <rev>
//! ```
//!
//! An event's `id:` is its revision, written once a revision's changes are
//! all sent, so a browser's `Last-Event-ID` (sent on reconnect) resumes at
//! the next revision, on any server. `from` older than the history kept is
//! 410 `COMPACTED`; too many watches, 503 `BUSY`. A watcher that falls too
//! far behind gets `event: canceled` with `{"resume":<rev>}`, and the
//! stream ends (see [`crate::service::watch`]).
//!
//! The long poll (Consul's blocking query) answers as soon as the key's
//! `mod_revision` is past `index` (a delete past it answers 404), or after
//! `wait` (at most 5 minutes) with the key as it is; `X-Raftkv-Index` says
//! the revision to pass as the next `index`.

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime};

use super::json::Json;
use super::kv::query;
use super::request::Head;
use super::response::{http_date, Response};
use crate::service::kv::Change;
use crate::service::kv_json::bytes_member;
use crate::service::reply::{Code, Error};
use crate::service::txn::check_key;
use crate::service::watch::{WatchEnd, WatchFilter, WatchHub};

/// Quiet time after which a comment line goes out (so a dead reader is noticed).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Longest `wait` of a long poll.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Whether `head` asks for a watch stream.
pub fn wants_stream(head: &Head) -> bool {
    head.path == "/watch"
}

/// A watch's filter and first revision from the query and `Last-Event-ID`.
fn parse(head: &Head) -> Result<(WatchFilter, Option<u64>), Error> {
    let bad = |m: String| Error::new(Code::BadRequest, m);
    let options = query(&head.query, &["key", "prefix", "from"])
        .map_err(|_| bad("use key=, prefix= and from=".into()))?;
    let mut filter = None;
    let mut from = None;
    for (name, value) in options {
        match name.as_str() {
            "key" | "prefix" => {
                check_key(&value)?;
                if filter.is_some() {
                    return Err(bad("give one key= or prefix=".into()));
                }
                filter = Some(match name.as_str() {
                    "key" => WatchFilter::Key(value),
                    _ => WatchFilter::Prefix(value),
                });
            }
            _ => {
                let text = String::from_utf8_lossy(&value).to_string();
                from = Some(
                    text.parse::<u64>()
                        .ok()
                        .filter(|&r| r > 0)
                        .ok_or_else(|| bad(format!("from={text}: a revision is 1 or more")))?,
                );
            }
        }
    }
    // A reconnecting browser resumes after the last revision it saw.
    if let Some(last) = head.header("last-event-id") {
        let last: u64 = last
            .trim()
            .parse()
            .map_err(|_| bad(format!("Last-Event-ID {last:?} is not a revision")))?;
        from = Some(last + 1);
    }
    let filter = filter.ok_or_else(|| bad("give key= or prefix=".into()))?;
    Ok((filter, from))
}

/// One change as an SSE event; with `id` its revision (the last change of
/// a revision).
fn frame(out: &mut String, change: &Change, id: bool) {
    let mut members = vec![bytes_member("key", &change.key)];
    if let Some(value) = &change.value {
        members.push(bytes_member("value", value));
    }
    members.push(("revision".into(), Json::from(change.revision)));
    let kind = if change.value.is_some() {
        "put"
    } else {
        "delete"
    };
    out.push_str(&format!("event: {kind}\n"));
    if id {
        out.push_str(&format!("id: {}\n", change.revision));
    }
    out.push_str(&format!("data: {}\n\n", Json::Object(members)));
}

/// Serves `GET /watch` until the reader goes away, the watcher is
/// cancelled, or (`Err`) a write fails. A refusal is an ordinary response.
pub fn stream(hub: &WatchHub, head: &Head, w: &mut impl Write) -> io::Result<u16> {
    fn refuse(w: &mut impl Write, e: &Error) -> io::Result<u16> {
        super::reply::error(e)
            .with("Access-Control-Allow-Origin", "*")
            .write_to(w, false, true)
            .map(|_| super::reply::status(e.code))
    }
    let (filter, from) = match parse(head) {
        Ok(parsed) => parsed,
        Err(e) => return refuse(w, &e),
    };
    let _slot = match hub.register() {
        Ok(slot) => slot,
        Err(e) => return refuse(w, &e),
    };
    let compacted = |oldest| Error::new(Code::Compacted, format!("oldest={oldest}"));
    let mut next = match hub.start(from) {
        Ok(next) => next,
        Err(WatchEnd::Compacted(oldest)) => return refuse(w, &compacted(oldest)),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         Access-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\nDate: {}\r\n\
         Connection: close\r\n\r\n",
        http_date(SystemTime::now())
    );
    w.write_all(head.as_bytes())?;
    w.write_all(format!("event: watching\ndata: {{\"from\":{next}}}\n\n").as_bytes())?;
    w.flush()?;
    let limit = hub.limits().lag_bytes;
    let mut quiet_since = Instant::now();
    let mut out = String::new();
    loop {
        let (changes, after, lag_before) = match hub.next(next, &filter, Duration::from_secs(1)) {
            Ok(batch) => batch,
            Err(WatchEnd::Compacted(oldest)) => {
                let data = format!("{{\"error\":\"COMPACTED\",\"oldest\":{oldest}}}");
                w.write_all(format!("event: error\ndata: {data}\n\n").as_bytes())?;
                w.flush()?;
                return Ok(200);
            }
        };
        out.clear();
        for (i, change) in changes.iter().enumerate() {
            let last_of_revision = changes
                .get(i + 1)
                .is_none_or(|c| c.revision != change.revision);
            frame(&mut out, change, last_of_revision);
        }
        if changes.is_empty() && quiet_since.elapsed() >= HEARTBEAT {
            out.push_str(": ping\n\n");
        }
        if !out.is_empty() {
            quiet_since = Instant::now();
            w.write_all(out.as_bytes())?;
            w.flush()?;
        }
        next = after;
        let lag = hub.lag(next);
        if lag > limit && lag > lag_before {
            let canceled = format!("event: canceled\ndata: {{\"resume\":{next}}}\n\n");
            w.write_all(canceled.as_bytes())?;
            w.flush()?;
            return Ok(200);
        }
    }
}

/// A long poll's `index` and `wait`, if the query has an `index`.
pub fn long_poll(options: &[(String, Vec<u8>)]) -> Result<Option<(u64, Duration)>, Error> {
    let get = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
    };
    let Some(index) = get("index") else {
        return Ok(None);
    };
    let bad = |m: String| Error::new(Code::BadRequest, m);
    let index = index
        .parse()
        .map_err(|_| bad(format!("index={index} is not a revision")))?;
    let wait = match get("wait") {
        None => MAX_WAIT,
        Some(w) => parse_wait(&w).ok_or_else(|| bad(format!("wait={w}: use 30s, 500ms or 5m")))?,
    };
    Ok(Some((index, wait.min(MAX_WAIT))))
}

fn parse_wait(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// Waits (up to `deadline`) until this server has applied a change to
/// `key` after revision `index`; whether one came.
pub fn wait_for_change(hub: &WatchHub, key: &[u8], index: u64, deadline: Instant) -> bool {
    let filter = WatchFilter::Key(key.to_vec());
    let mut next = index + 1;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match hub.next(next, &filter, left.min(Duration::from_secs(1))) {
            // Compacted past it: the caller reads the key as it is now.
            Err(WatchEnd::Compacted(_)) => return true,
            Ok((changes, _, _)) if !changes.is_empty() => return true,
            Ok((_, after, _)) => next = after,
        }
        if left.is_zero() {
            return false;
        }
    }
}

/// The `X-Raftkv-Index` header's value for a key read at store revision
/// `revision`: its mod revision, or the store's when it is absent.
pub fn index_header(response: Response, index: u64) -> Response {
    response.with("X-Raftkv-Index", index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_revisions_id_goes_on_its_last_change() {
        let change = |revision, key: &str| Change {
            revision,
            key: Arc::from(key.as_bytes()),
            value: Some(Arc::new(b"v".to_vec())),
        };
        let mut out = String::new();
        frame(&mut out, &change(4, "a"), false);
        frame(&mut out, &change(4, "b"), true);
        assert_eq!(
            out,
            "event: put\ndata: {\"key\":\"a\",\"value\":\"v\",\"revision\":4}\n\n\
             event: put\nid: 4\ndata: {\"key\":\"b\",\"value\":\"v\",\"revision\":4}\n\n"
        );
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("5"), None);
        assert_eq!(parse_wait("x"), None);
    }
}
