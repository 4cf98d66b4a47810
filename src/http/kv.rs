//! The KV routes: keys and values as bytes, revisions as entity tags,
//! ranges and transactions.
//!
//! ```text
//! GET    /kv/<key>[?meta][&raw][&serializable]  200 {"key","value"} (+ revisions with meta) | 404
//!        [&index=<rev>&wait=30s]                 a long poll (see `http::watch`)
//! PUT    /kv/<key>[?lease=<id>]  body: the value 200 {"ok":true} | 412 | 413 | 404 no lease
//! DELETE /kv/<key>                               200 {"ok":true} | 412
//! GET    /kv?prefix=p | start=a&end=b, limit=n, keys, count, serializable
//!                                                200 a range page
//! POST   /txn    {"compare":[..],"then":[..],"else":[..]}   200 what it did
//! POST   /batch  {"ops":[..]}                    200 what it did (a transaction without compares)
//! ```
//!
//! A value is any bytes: JSON carries it as `"value"` when it is UTF-8 and
//! as `"value_base64"` otherwise (keys likewise). `?raw`, or `Accept:
//! application/octet-stream`, answers with exactly the stored bytes. Every
//! `GET` of a key answers `ETag: "<mod_revision>"`; a `PUT` or `DELETE` with
//! `If-Match: "<mod_revision>"` (or `*`: the key exists) or `If-None-Match: *`
//! (create only) is a compare-and-swap: a transaction that writes only if the
//! condition holds, else answers 412 `PRECONDITION_FAILED` with the key's
//! current `mod_revision` (0: absent) and the new `ETag` on success. Query
//! values and the key in the path are percent-decoded bytes. The JSON forms
//! of ranges and transactions are `service::kv_json`'s, the same as the
//! text protocol's `RANGE` and `TXN` replies.

use super::api::{execute, percent_decode_bytes, utf8};
use super::json::{self, Json};
use super::reply::failure;
use super::request::{Head, Method};
use super::response::Response;
use super::Context;
use crate::service::command::Command;
use crate::service::kv_json::{batch_from, bytes_member, txn_from, RangeJson, TxnResultJson};
use crate::service::range::{KeyValue, RangeRequest, RangeResult};
use crate::service::reply::{Code, Error, Reply};
use crate::service::txn::{check_key, Compare, CompareOp, OpResult, Target, Txn, TxnOp, TxnResult};

/// `/kv/<key>`: one key.
pub fn key(head: &Head, raw_key: &str, body: &[u8], ctx: &Context) -> Response {
    let key = match percent_decode_bytes(raw_key) {
        Ok(key) => key,
        Err(response) => return response,
    };
    if let Err(e) = check_key(&key) {
        return super::reply::error(&e);
    }
    let shown = format!("{:?}", String::from_utf8_lossy(&key));
    match head.method {
        Method::Put | Method::Delete => write(head, key, body, ctx),
        _ => {
            let names = ["meta", "raw", "serializable", "index", "wait"];
            let options = match query(&head.query, &names) {
                Ok(options) => options,
                Err(response) => return response,
            };
            let poll = match super::watch::long_poll(&options) {
                Ok(poll) => poll,
                Err(e) => return super::reply::error(&e),
            };
            let has = |name: &str| options.iter().any(|(n, _)| n == name);
            let raw = has("raw")
                || head
                    .header("accept")
                    .is_some_and(|a| a.contains("application/octet-stream"));
            let request = RangeRequest {
                serializable: has("serializable"),
                ..RangeRequest::key(&key)
            };
            let read = || execute(ctx, Command::Range(request.clone()));
            let mut reply = read();
            // A long poll (Consul's blocking query): wait for a change past `index`.
            if let (Some((index, wait)), Reply::Range(page)) = (poll, &reply) {
                let at = page.kvs.first().map(|kv| kv.mod_revision);
                if at.is_none_or(|at| at <= index) {
                    let deadline = std::time::Instant::now() + wait;
                    let hub = ctx.frontend.replica().watch();
                    if super::watch::wait_for_change(hub, &key, index, deadline) {
                        reply = read();
                    }
                }
            }
            match reply {
                Reply::Range(page) => {
                    let response = match page.kvs.first() {
                        Some(kv) => found(kv, &page, raw, has("meta")),
                        None => Response::error(404, "NOT_FOUND", &format!("no key {shown}")),
                    };
                    let index = page.kvs.first().map_or(page.revision, |kv| kv.mod_revision);
                    super::watch::index_header(response, index)
                }
                other => failure(&other, ""),
            }
        }
    }
}

/// The answer to a `GET` of a key that is there.
fn found(kv: &KeyValue, page: &RangeResult, raw: bool, meta: bool) -> Response {
    let etag = format!("\"{}\"", kv.mod_revision);
    let value = kv.value.as_deref().map_or(&[][..], |v| v.as_slice());
    if raw {
        let response = Response::new(200, "application/octet-stream", value.to_vec());
        return response
            .with("Cache-Control", "no-store")
            .with("ETag", etag);
    }
    let mut members = vec![bytes_member("key", &kv.key), bytes_member("value", value)];
    if meta {
        members.extend([
            ("create_revision".into(), Json::from(kv.create_revision)),
            ("mod_revision".into(), Json::from(kv.mod_revision)),
            ("version".into(), Json::from(kv.version)),
            ("revision".into(), Json::from(page.revision)),
        ]);
    }
    Response::json(200, &Json::Object(members)).with("ETag", etag)
}

/// What a `PUT` or `DELETE` asks for: unconditional, or only if the key is
/// at a revision, exists, or does not.
enum Condition {
    /// No condition.
    Always,
    /// `If-Match: "<n>"`: the key's mod revision is `n`.
    At(u64),
    /// `If-Match: *`: the key exists.
    Exists,
    /// `If-None-Match: *`: the key does not exist.
    Absent,
}

fn condition(head: &Head) -> Result<Condition, Response> {
    let bad = |m: &str| Response::error(400, "BAD_REQUEST", m);
    match (head.header("if-match"), head.header("if-none-match")) {
        (Some(_), Some(_)) => Err(bad("send If-Match or If-None-Match, not both")),
        (None, Some("*")) => Ok(Condition::Absent),
        (None, Some(_)) => Err(bad("If-None-Match takes * (create only)")),
        (Some("*"), None) => Ok(Condition::Exists),
        (Some(tag), None) => tag
            .trim()
            .trim_matches('"')
            .parse()
            .map(Condition::At)
            .map_err(|_| bad("If-Match takes one ETag, \"<mod_revision>\", or *")),
        (None, None) => Ok(Condition::Always),
    }
}

/// `PUT` or `DELETE` of a key, plain or conditional.
fn write(head: &Head, key: Vec<u8>, body: &[u8], ctx: &Context) -> Response {
    let condition = match condition(head) {
        Ok(condition) => condition,
        Err(response) => return response,
    };
    // `?lease=<id>` attaches the key to a lease (a PUT only).
    let lease = match query(&head.query, &["lease"]) {
        Ok(options) => match options.first() {
            Some((_, id)) if head.method == Method::Put => {
                match String::from_utf8_lossy(id).parse::<u64>() {
                    Ok(id) => Some(id),
                    Err(_) => return Response::error(400, "BAD_REQUEST", "lease= takes an id"),
                }
            }
            Some(_) => return Response::error(400, "BAD_REQUEST", "only a PUT takes a lease"),
            None => None,
        },
        Err(response) => return response,
    };
    let op = match head.method {
        Method::Put => TxnOp::Put(key.clone(), body.to_vec()),
        _ => TxnOp::Delete(key.clone()),
    };
    let target = match condition {
        Condition::Always => {
            let mut command = match op {
                TxnOp::Put(k, v) => Command::Put(k, v),
                _ => Command::Del(key),
            };
            if let Some(lease) = lease {
                command = Command::Leased(lease, Box::new(command));
            }
            return match execute(ctx, command) {
                Reply::Ok => ok(),
                other => failure(&other, ""),
            };
        }
        Condition::At(n) => (Target::ModRevision(n), CompareOp::Equal),
        Condition::Exists => (Target::Exists(true), CompareOp::Equal),
        Condition::Absent => (Target::Exists(false), CompareOp::Equal),
    };
    let txn = Txn {
        compares: vec![Compare {
            key: key.clone(),
            target: target.0,
            op: target.1,
        }],
        then: vec![op],
        otherwise: vec![TxnOp::Get(key)],
    };
    let command = match lease {
        Some(lease) => Command::Leased(lease, Box::new(Command::Txn(txn))),
        None => Command::Txn(txn),
    };
    match execute(ctx, command) {
        Reply::Txn(result) if result.succeeded => match head.method {
            Method::Put => ok().with("ETag", format!("\"{}\"", result.revision)),
            _ => ok(),
        },
        Reply::Txn(result) => precondition_failed(&result),
        other => failure(&other, ""),
    }
}

fn ok() -> Response {
    Response::json(200, &Json::object([("ok", Json::from(true))]))
}

/// 412: the condition did not hold; says the key's current mod revision.
fn precondition_failed(result: &TxnResult) -> Response {
    let current = match result.results.first() {
        Some(OpResult::Get(page)) => page.kvs.first().map_or(0, |kv| kv.mod_revision),
        _ => 0,
    };
    let message = match current {
        0 => "the key does not exist".to_string(),
        n => format!("the key is at mod_revision {n}"),
    };
    let body = Json::object([
        ("error", Json::from("PRECONDITION_FAILED")),
        ("message", Json::from(message)),
        ("mod_revision", Json::from(current)),
    ]);
    let response = Response::json(412, &body);
    match current {
        0 => response,
        n => response.with("ETag", format!("\"{n}\"")),
    }
}

/// `GET /kv?...`: a range page.
pub fn range(head: &Head, ctx: &Context) -> Response {
    let names = [
        "start",
        "end",
        "prefix",
        "limit",
        "keys",
        "count",
        "serializable",
    ];
    let options = match query(&head.query, &names) {
        Ok(options) => options,
        Err(response) => return response,
    };
    let mut request = RangeRequest::default();
    let (mut start, mut end) = (None, None);
    for (name, value) in options {
        match name.as_str() {
            "prefix" => {
                let prefix = RangeRequest::prefix(&value);
                request.start = prefix.start;
                request.end = prefix.end;
            }
            "start" => start = Some(value),
            "end" => end = Some(value),
            "limit" => match std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(limit) => request.limit = limit,
                None => return Response::error(400, "BAD_REQUEST", "limit is a number"),
            },
            "keys" => request.keys_only = true,
            "count" => request.count_only = true,
            _ => request.serializable = true,
        }
    }
    if let Some(start) = start {
        request.start = start;
    }
    request.end = end.or(request.end);
    match execute(ctx, Command::Range(request)) {
        Reply::Range(page) => json_text(&RangeJson(&page)),
        other => failure(&other, ""),
    }
}

/// `POST /txn` (`batch`: `POST /batch`): a transaction.
pub fn txn(body: &[u8], batch: bool, ctx: &Context) -> Response {
    let parsed = utf8(body, "the body").and_then(|text| {
        let value =
            json::parse(text).map_err(|e| Response::error(400, "BAD_REQUEST", &format!("{e}")))?;
        let txn = if batch {
            batch_from(&value)
        } else {
            txn_from(&value)
        };
        txn.map_err(|e| super::reply::error(&e))
    });
    let txn = match parsed {
        Ok(txn) => txn,
        Err(response) => return response,
    };
    match execute(ctx, Command::Txn(txn)) {
        Reply::Txn(result) => json_text(&TxnResultJson(&result)),
        other => failure(&other, ""),
    }
}

/// A 200 with JSON written by `body` (as [`Response::json`] answers).
fn json_text(body: &dyn std::fmt::Display) -> Response {
    Response::new(200, "application/json", format!("{body}\n")).with("Cache-Control", "no-store")
}

/// A query string's parameters, percent-decoded, each one of `names` (a
/// parameter without `=` has an empty value).
pub(super) fn query(q: &str, names: &[&str]) -> Result<Vec<(String, Vec<u8>)>, Response> {
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if !names.contains(&name) {
            let e = Error::new(
                Code::BadRequest,
                format!("unknown parameter {name:?}; use {}", names.join(", ")),
            );
            return Err(super::reply::error(&e));
        }
        out.push((name.to_string(), percent_decode_bytes(value)?));
    }
    Ok(out)
}
