//! Routes: each API request becomes one text-protocol command, executed by the
//! frontend like any `nc` line, and its reply line becomes a JSON response.
//!
//! ```text
//! GET    /kv/<key>          GET key meta     200 {"key","value"} | 404   (see `kv`)
//! PUT    /kv/<key>  body    PUT key body     200 {"ok":true} | 412 | 413
//! DELETE /kv/<key>          DEL key          200 {"ok":true} | 412
//! GET    /kv?prefix=..      RANGE ...        200 a range page
//! POST   /txn, /batch json  TXN {...}        200 what it did
//! POST   /accounts  json    OPEN id balance  201 {"id","balance"} | 409 EXISTS
//! GET    /accounts/<id>     BALANCE id       200 {"id","balance"} | 404
//! POST   /transfers json    TRANSFER ...     200 {"ok":true,"txid"} | 404 | 409 | 422
//! GET    /audit             AUDIT            200 {"accounts","total"}
//! POST   /command   line    the line itself  {"reply": "..."} (the page's command box)
//! GET    /events?since=SEQ  (no command)     JSON lines; &stream=1 holds it open (see `events`)
//! ```
//!
//! `<key>` is everything after `/kv/`, percent-decoded to bytes (`/kv/a%20b`
//! and `/kv/a/b` are the keys `a b` and `a/b`); the KV routes are in
//! [`super::kv`]. Each route builds its JSON from the typed [`Reply`]; errors
//! are made in [`super::reply`] (`{"error":"CODE","message":"..."}` and a
//! status to match). Money is a decimal string, never a JSON number.
//!
//! With a client token configured (`-client-token-file`), every request but
//! `GET /` (the page), `GET /health` and CORS preflights must carry
//! `Authorization: Bearer <token>`: 401 `NOAUTH` without it or with a wrong
//! one, 429 once an address has sent too many wrong ones. It is the text
//! protocol's `AUTH` check, [`crate::auth::token::ClientAuth`].
//!
//! Retries: HTTP requests carry no client session. `PUT` and `DELETE` are
//! idempotent and a transfer applies once per txid (within the txid window,
//! NOTES.md "Exactly once, and for how long"), so retrying those after a 504 is safe; retrying `POST /accounts` after a 504 may answer 409 EXISTS if
//! the first attempt was applied.

use super::cluster;
use super::events;
use super::json::{self, Json};
use super::kv;
use super::page;
use super::reply::{self, failure};
use super::request::{Head, Method};
use super::response::Response;
use super::Context;
use crate::auth::limit::held_back_note;
use crate::auth::token::TokenError;
use crate::info;
use crate::service::command::{self, format_cents, parse_cents, Command, Transfer};
use crate::service::reply::Reply;

/// Answers one request; also returns its route template, for metrics.
pub fn handle(head: &Head, body: &[u8], ctx: &Context) -> (&'static str, Response) {
    if let Some(denied) = authorize(head, ctx) {
        return ("denied", denied.with("Access-Control-Allow-Origin", "*"));
    }
    let path = head.path.as_str();
    let m = head.method;
    let (route, response) = match path {
        "/" => ("/", only(m, &[Method::Get], page::response)),
        "/status" => ("/status", only(m, &[Method::Get], || cluster::status(ctx))),
        "/cluster" => (
            "/cluster",
            only(m, &[Method::Get], || {
                cluster::cluster(ctx, head.header("authorization"))
            }),
        ),
        "/health" => ("/health", only(m, &[Method::Get], || cluster::health(ctx))),
        "/events" => (
            "/events",
            only(m, &[Method::Get], || {
                let ring = ctx.frontend.replica().node().events();
                events::response(ring.map(|r| r.as_ref()), &head.query)
            }),
        ),
        "/metrics" => (
            "/metrics",
            only(m, &[Method::Get], || super::metrics::response(ctx)),
        ),
        "/audit" => ("/audit", only(m, &[Method::Get], || audit(ctx))),
        "/accounts" => (
            "/accounts",
            only(m, &[Method::Post], || open_account(body, ctx)),
        ),
        "/transfers" => (
            "/transfers",
            only(m, &[Method::Post], || transfer(body, ctx)),
        ),
        "/command" => ("/command", only(m, &[Method::Post], || command(body, ctx))),
        "/kv" => ("/kv", only(m, &[Method::Get], || kv::range(head, ctx))),
        "/txn" => (
            "/txn",
            only(m, &[Method::Post], || kv::txn(body, false, ctx)),
        ),
        "/batch" => (
            "/batch",
            only(m, &[Method::Post], || kv::txn(body, true, ctx)),
        ),
        "/lease" => (
            "/lease",
            only(m, &[Method::Post], || super::lease::grant(body, ctx)),
        ),
        _ if path.starts_with("/lease/") => {
            let id = path.strip_prefix("/lease/").unwrap_or_default();
            let allowed = [Method::Get, Method::Put, Method::Delete];
            (
                "/lease/{id}",
                only(m, &allowed, || super::lease::one(head, id, ctx)),
            )
        }
        _ => match (path.strip_prefix("/kv/"), path.strip_prefix("/accounts/")) {
            (Some(key), _) => {
                let allowed = [Method::Get, Method::Put, Method::Delete];
                (
                    "/kv/{key}",
                    only(m, &allowed, || kv::key(head, key, body, ctx)),
                )
            }
            (_, Some(id)) => (
                "/accounts/{id}",
                only(m, &[Method::Get], || balance(id, ctx)),
            ),
            _ => (
                "other",
                Response::error(404, "NOT_FOUND", &format!("no route {path}")),
            ),
        },
    };
    let cross_origin = matches!(
        route,
        "/status" | "/cluster" | "/health" | "/command" | "/events"
    );
    if cross_origin && response.header("Access-Control-Allow-Origin").is_none() {
        // The page polls every member directly, which is another origin.
        return (route, response.with("Access-Control-Allow-Origin", "*"));
    }
    (route, response)
}

/// With a client token configured, refuses a request that lacks it (see the
/// module docs for what is open).
pub fn authorize(head: &Head, ctx: &Context) -> Option<Response> {
    let read = matches!(head.method, Method::Get | Method::Head);
    let open =
        head.method == Method::Options || (read && matches!(head.path.as_str(), "/" | "/health"));
    if open {
        return None;
    }
    let presented = head.header("authorization");
    let refused = match ctx.clients.check_bearer(ctx.remote, presented) {
        Ok(()) => return None,
        Err(TokenError::Wrong) if presented.is_none() => {
            return Some(
                Response::error(401, "NOAUTH", "send Authorization: Bearer <token>")
                    .with("WWW-Authenticate", "Bearer realm=\"raftkv\""),
            );
        }
        Err(TokenError::Wrong) => Response::error(401, "NOAUTH", "wrong token").with(
            "WWW-Authenticate",
            "Bearer realm=\"raftkv\", error=\"invalid_token\"",
        ),
        Err(TokenError::Throttled) => Response::error(
            429,
            "AUTH",
            "too many wrong tokens from this address; retry later",
        )
        .with("Retry-After", "1"),
    };
    if let Some(held_back) = ctx.clients.admit_log_line() {
        let term = ctx.frontend.replica().node().status().term;
        info!(
            ctx.id,
            term,
            "refused an HTTP client token from {}: {}{}",
            ctx.remote,
            if refused.status == 429 {
                "too many wrong tokens"
            } else {
                "wrong token"
            },
            held_back_note(held_back)
        );
    }
    Some(refused)
}

/// Answers with `f` if the method is one of `allowed` (HEAD goes with GET),
/// answers a CORS preflight, or refuses with 405 and `Allow`.
fn only(method: Method, allowed: &[Method], f: impl FnOnce() -> Response) -> Response {
    let get = allowed.contains(&Method::Get);
    if allowed.contains(&method) || (get && method == Method::Head) {
        return f();
    }
    let mut names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
    if get {
        names.push("HEAD");
    }
    let allow = names.join(", ");
    if method == Method::Options {
        return Response::new(204, "text/plain", "")
            .with("Allow", allow.clone())
            .with("Access-Control-Allow-Origin", "*")
            .with("Access-Control-Allow-Methods", allow)
            .with(
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type",
            )
            .with("Access-Control-Max-Age", "600");
    }
    let message = format!("{} is not allowed here; use {allow}", method.as_str());
    Response::error(405, "METHOD_NOT_ALLOWED", &message).with("Allow", allow)
}

fn open_account(body: &[u8], ctx: &Context) -> Response {
    let [id, balance] = match fields(body, ["id", "balance"]) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let cents = match parse_cents(&balance) {
        Ok(cents) => cents,
        Err(e) => return reply::error(&e),
    };
    let reply = execute(ctx, Command::Open(id.clone(), cents));
    if reply != Reply::Ok {
        return failure(&reply, "");
    }
    let account = Json::object([
        ("id", Json::from(id)),
        ("balance", Json::from(format_cents(cents))),
    ]);
    Response::json(201, &account)
}

fn balance(raw_id: &str, ctx: &Context) -> Response {
    let id = match percent_decode(raw_id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match execute(ctx, Command::Balance(id.clone())) {
        Reply::Balance(cents) => Response::json(
            200,
            &Json::object([
                ("id", Json::from(id)),
                ("balance", Json::from(format_cents(cents))),
            ]),
        ),
        other => failure(&other, &format!("no account {id:?}")),
    }
}

fn transfer(body: &[u8], ctx: &Context) -> Response {
    let [txid, from, to, amount] = match fields(body, ["txid", "from", "to", "amount"]) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let cents = match parse_cents(&amount) {
        Ok(cents) => cents,
        Err(e) => return reply::error(&e),
    };
    let transfer = Transfer {
        txid: txid.clone(),
        from,
        to,
        cents,
    };
    let reply = execute(ctx, Command::Transfer(transfer));
    if reply != Reply::Ok {
        return failure(&reply, "");
    }
    Response::json(
        200,
        &Json::object([("ok", Json::from(true)), ("txid", Json::from(txid))]),
    )
}

fn audit(ctx: &Context) -> Response {
    match execute(ctx, Command::Audit) {
        Reply::Audit {
            accounts,
            total_cents,
        } => {
            // As the text protocol shows it (whole cents beyond `i64`).
            let total =
                i64::try_from(total_cents).map_or_else(|_| total_cents.to_string(), format_cents);
            Response::json(
                200,
                &Json::object([
                    ("accounts", Json::from(accounts)),
                    ("total", Json::from(total)),
                ]),
            )
        }
        other => failure(&other, ""),
    }
}

/// `POST /command`: one text-protocol line, answered as `nc` would be.
fn command(body: &[u8], ctx: &Context) -> Response {
    let line = match utf8(body, "the command") {
        Ok(line) => line,
        Err(response) => return response,
    };
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.contains(['\r', '\n']) {
        return Response::error(400, "BAD_REQUEST", "send one command line");
    }
    let first = line.split_whitespace().next().unwrap_or("");
    if first.eq_ignore_ascii_case("FWD") || first.eq_ignore_ascii_case("RAFT") {
        return Response::error(400, "BAD_REQUEST", "peer lines are not commands");
    }
    let (reply, _) = ctx.frontend.answer(line, ctx.forward);
    let status = reply.code().map_or(200, reply::status);
    let body = Json::object([("reply", Json::from(reply.to_string()))]);
    let response = Response::json(status, &body);
    match status {
        503 => response.with("Retry-After", "1"),
        _ => response,
    }
}

/// Runs `command` as the text protocol would (forwarding included) and returns
/// the reply.
pub(super) fn execute(ctx: &Context, command: Command) -> Reply {
    ctx.frontend
        .answer(&command::to_line(&command), ctx.forward)
        .0
}

pub(super) fn utf8<'a>(body: &'a [u8], what: &str) -> Result<&'a str, Response> {
    std::str::from_utf8(body)
        .map_err(|_| Response::error(400, "BAD_REQUEST", &format!("{what} is not UTF-8")))
}

/// A JSON object body with exactly the string members `names`, in that order.
fn fields<const N: usize>(body: &[u8], names: [&str; N]) -> Result<[String; N], Response> {
    let usage = || {
        let list = names.map(|n| format!("\"{n}\":\"...\"")).join(",");
        format!("send a JSON object {{{list}}}; money is a decimal string")
    };
    let bad = |message: String| Response::error(400, "BAD_REQUEST", &message);
    let text = utf8(body, "the body")?;
    let value = json::parse(text).map_err(|e| bad(format!("{e}; {}", usage())))?;
    let Json::Object(members) = &value else {
        return Err(bad(usage()));
    };
    if let Some((extra, _)) = members.iter().find(|(k, _)| !names.contains(&k.as_str())) {
        return Err(bad(format!("unknown field {extra:?}; {}", usage())));
    }
    let mut out = names.map(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        match value.get(name) {
            Some(Json::String(s)) => *slot = s.clone(),
            Some(_) => return Err(bad(format!("{name} must be a string; {}", usage()))),
            None => return Err(bad(format!("missing field {name}; {}", usage()))),
        }
    }
    Ok(out)
}

/// Decodes `%XX` escapes (RFC 3986 §2.1) into bytes; `+` stays `+`. A bad
/// escape is a 400.
pub fn percent_decode_bytes(raw: &str) -> Result<Vec<u8>, Response> {
    let bad = |m: &str| Response::error(400, "BAD_REQUEST", m);
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
        match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => return Err(bad("bad percent-escape in the path")),
        }
        i += 3;
    }
    Ok(out)
}

/// [`percent_decode_bytes`], for names that must be UTF-8 (accounts).
pub fn percent_decode(raw: &str) -> Result<String, Response> {
    String::from_utf8(percent_decode_bytes(raw)?).map_err(|_| {
        Response::error(
            400,
            "BAD_REQUEST",
            "the path decodes to bytes that are not UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_any_utf8_and_refuses_broken_escapes() {
        let ok = |s: &str| percent_decode(s).ok();
        assert_eq!(ok("a%20b%2Fc+d"), Some("a b/c+d".into()));
        assert_eq!(ok("%C3%BC%25"), Some("ü%".into()));
        assert_eq!(ok("a/b"), Some("a/b".into()));
        for bad in ["%", "%4", "%G1", "%ff", "a%2"] {
            assert_eq!(percent_decode(bad).map_err(|r| r.status), Err(400), "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_objects_of_exactly_the_named_strings() {
        let f = |body: &str| fields(body.as_bytes(), ["id", "balance"]).map_err(|r| r.status);
        assert_eq!(
            f(r#"{"balance":"1.50","id":"a b"}"#),
            Ok(["a b".to_string(), "1.50".to_string()])
        );
        for bad in [
            r#"{"id":"a","balance":1.5}"#,
            r#"{"id":"a"}"#,
            r#"{"id":"a","balance":"1","x":"y"}"#,
            r#"["a","1"]"#,
            r#"{"id":"a","balance":"1",}"#,
            "\u{ff}",
        ] {
            assert_eq!(f(bad), Err(400), "{bad}");
        }
    }
}
