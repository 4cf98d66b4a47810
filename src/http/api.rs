//! Routes: each API request becomes one text-protocol command, executed by the
//! frontend like any `nc` line, and its reply line becomes a JSON response.
//!
//! ```text
//! GET    /kv/<key>          GET key          200 {"key","value"} | 404
//! PUT    /kv/<key>  body    PUT key body     200 {"ok":true}
//! DELETE /kv/<key>          DEL key          200 {"ok":true}
//! POST   /accounts  json    OPEN id balance  201 {"id","balance"} | 409 EXISTS
//! GET    /accounts/<id>     BALANCE id       200 {"id","balance"} | 404
//! POST   /transfers json    TRANSFER ...     200 {"ok":true,"txid"} | 404 | 409 | 422
//! GET    /audit             AUDIT            200 {"accounts","total"}
//! POST   /command   line    the line itself  {"reply": "..."} (the page's command box)
//! ```
//!
//! `<key>` is everything after `/kv/`, percent-decoded (`/kv/a%20b` and
//! `/kv/a/b` are the keys `a b` and `a/b`); keys and values are UTF-8 without
//! line breaks. Errors are `{"error":"CODE","message":"..."}` with the text
//! protocol's code and a status to match ([`status_for`]); `NO_LEADER` is 503
//! with `Retry-After: 1` (nothing was applied: retry), `TIMEOUT` is 504 (the
//! outcome is unknown). Money is a decimal string, never a JSON number.
//!
//! With a client token configured (`-client-token-file`), every request but
//! `GET /` (the page), `GET /health` and CORS preflights must carry
//! `Authorization: Bearer <token>`: 401 `NOAUTH` without it or with a wrong
//! one, 429 once an address has sent too many wrong ones. It is the text
//! protocol's `AUTH` check, [`crate::auth::token::ClientAuth`].
//!
//! Retries: HTTP requests carry no client session. `PUT` and `DELETE` are
//! idempotent and a transfer applies once per txid (within the txid window,
//! README "Exactly once"), so retrying those after a 504 is safe; retrying `POST /accounts` after a 504 may answer 409 EXISTS if
//! the first attempt was applied.

use super::cluster;
use super::json::{self, Json};
use super::page;
use super::request::{Head, Method};
use super::response::Response;
use super::Context;
use crate::auth::limit::held_back_note;
use crate::auth::token::TokenError;
use crate::info;
use crate::service::command::{self, format_cents, parse_cents, Command, Transfer};

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
        _ => match (path.strip_prefix("/kv/"), path.strip_prefix("/accounts/")) {
            (Some(key), _) => ("/kv/{key}", kv(m, key, body, ctx)),
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
    let cross_origin = matches!(route, "/status" | "/cluster" | "/health" | "/command");
    if cross_origin && response.header("Access-Control-Allow-Origin").is_none() {
        // The page polls every member directly, which is another origin.
        return (route, response.with("Access-Control-Allow-Origin", "*"));
    }
    (route, response)
}

/// With a client token configured, refuses a request that lacks it (see the
/// module docs for what is open).
fn authorize(head: &Head, ctx: &Context) -> Option<Response> {
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

fn kv(method: Method, raw_key: &str, body: &[u8], ctx: &Context) -> Response {
    let allowed = [Method::Get, Method::Put, Method::Delete];
    let key = match percent_decode(raw_key) {
        Ok(key) => key,
        Err(response) => return only(method, &allowed, || response),
    };
    only(method, &allowed, || match method {
        Method::Put => match utf8(body, "the value") {
            Ok(value) => ok_or_error(&execute(ctx, Command::Put(key, value.into()))),
            Err(response) => response,
        },
        Method::Delete => ok_or_error(&execute(ctx, Command::Del(key))),
        _ => {
            let reply = execute(ctx, Command::Get(key.clone()));
            match reply.strip_prefix("VALUE ") {
                Some(value) => Response::json(
                    200,
                    &Json::object([("key", Json::from(key)), ("value", Json::from(value))]),
                ),
                None => error(&reply, &format!("no key {key:?}")),
            }
        }
    })
}

fn open_account(body: &[u8], ctx: &Context) -> Response {
    let [id, balance] = match fields(body, ["id", "balance"]) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let cents = match parse_cents(&balance) {
        Ok(cents) => cents,
        Err(e) => return Response::error(400, e.code, &e.message),
    };
    let reply = execute(ctx, Command::Open(id.clone(), cents));
    if reply != "OK" {
        return error(&reply, "");
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
    let reply = execute(ctx, Command::Balance(id.clone()));
    match reply.strip_prefix("BALANCE ") {
        Some(balance) => Response::json(
            200,
            &Json::object([("id", Json::from(id)), ("balance", Json::from(balance))]),
        ),
        None => error(&reply, &format!("no account {id:?}")),
    }
}

fn transfer(body: &[u8], ctx: &Context) -> Response {
    let [txid, from, to, amount] = match fields(body, ["txid", "from", "to", "amount"]) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let cents = match parse_cents(&amount) {
        Ok(cents) => cents,
        Err(e) => return Response::error(400, e.code, &e.message),
    };
    let transfer = Transfer {
        txid: txid.clone(),
        from,
        to,
        cents,
    };
    let reply = execute(ctx, Command::Transfer(transfer));
    if reply != "OK" {
        return error(&reply, "");
    }
    Response::json(
        200,
        &Json::object([("ok", Json::from(true)), ("txid", Json::from(txid))]),
    )
}

fn audit(ctx: &Context) -> Response {
    let reply = execute(ctx, Command::Audit);
    let parsed = reply.strip_prefix("AUDIT accounts=").and_then(|rest| {
        let (accounts, total) = rest.split_once(" total=")?;
        Some((accounts.parse::<u64>().ok()?, total))
    });
    match parsed {
        Some((accounts, total)) => Response::json(
            200,
            &Json::object([
                ("accounts", Json::from(accounts)),
                ("total", Json::from(total)),
            ]),
        ),
        None => error(&reply, ""),
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
    let status = match reply.strip_prefix("ERR ") {
        Some(rest) => status_for(rest.split(' ').next().unwrap_or("")),
        None => 200,
    };
    let response = Response::json(status, &Json::object([("reply", Json::from(reply))]));
    match status {
        503 => response.with("Retry-After", "1"),
        _ => response,
    }
}

/// Runs `command` as the text protocol would (forwarding included) and returns
/// the reply line.
fn execute(ctx: &Context, command: Command) -> String {
    ctx.frontend
        .answer(&command::to_line(&command), ctx.forward)
        .0
}

/// `{"ok":true}` for an `OK` reply, else the reply as an error.
fn ok_or_error(reply: &str) -> Response {
    match reply {
        "OK" => Response::json(200, &Json::object([("ok", Json::from(true))])),
        _ => error(reply, ""),
    }
}

/// The status for a text-protocol error code.
pub fn status_for(code: &str) -> u16 {
    match code {
        "BAD_REQUEST" | "UNKNOWN_COMMAND" => 400,
        "NOAUTH" => 401,
        "AUTH" => 403,
        "NOT_FOUND" | "NO_ACCOUNT" => 404,
        "EXISTS" | "TXID_REUSED" => 409,
        "TOO_LONG" => 413,
        "INSUFFICIENT_FUNDS" => 422,
        "NO_LEADER" | "BUSY" => 503,
        "TIMEOUT" => 504,
        "NOSPACE" | "STORAGE" => 507,
        _ => 500,
    }
}

/// A reply that is not the expected success, as an error response:
/// `ERR CODE message` keeps its code and message; `NOT_FOUND` says
/// `not_found`; anything else is a 500.
fn error(reply: &str, not_found: &str) -> Response {
    if reply == "NOT_FOUND" {
        return Response::error(404, "NOT_FOUND", not_found);
    }
    match reply.strip_prefix("ERR ") {
        Some(rest) => {
            let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
            Response::error(status_for(code), code, message)
        }
        None => Response::error(500, "INTERNAL", &format!("unexpected reply: {reply}")),
    }
}

fn utf8<'a>(body: &'a [u8], what: &str) -> Result<&'a str, Response> {
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

/// Decodes `%XX` escapes (RFC 3986 §2.1); `+` stays `+`. The result must be
/// UTF-8; a bad escape is a 400.
pub fn percent_decode(raw: &str) -> Result<String, Response> {
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
    String::from_utf8(out).map_err(|_| bad("the path decodes to bytes that are not UTF-8"))
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
    fn error_codes_map_to_statuses() {
        for (code, status) in [
            ("NO_LEADER", 503),
            ("TIMEOUT", 504),
            ("EXISTS", 409),
            ("TXID_REUSED", 409),
            ("INSUFFICIENT_FUNDS", 422),
            ("NO_ACCOUNT", 404),
            ("BAD_REQUEST", 400),
        ] {
            assert_eq!(status_for(code), status, "{code}");
        }
        let r = error("ERR NO_LEADER no leader known; retry", "");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"error\":\"NO_LEADER\",\"message\":\"no leader known; retry\"}\n"
        );
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
