//! The lease routes (see [`crate::service::lease`]).
//!
//! ```text
//! POST   /lease        {"ttl":10}   200 {"id":1,"ttl":10,"remaining":10,"keys":0} | 429 TOO_MANY_LEASES
//! PUT    /lease/<id>                200 the lease (a keepalive: its clock starts over) | 404
//! GET    /lease/<id>                200 the lease, with the seconds left by the leader's clock | 404
//! DELETE /lease/<id>                200 {"ok":true} (its keys are deleted) | 404
//! ```

use super::api::{execute, utf8};
use super::json::{self, Json};
use super::reply::failure;
use super::request::{Head, Method};
use super::response::Response;
use super::Context;
use crate::service::command::Command;
use crate::service::lease::{LeaseCommand, LeaseInfo};
use crate::service::reply::Reply;

fn lease_json(info: &LeaseInfo) -> Response {
    Response::json(
        200,
        &Json::object([
            ("id", Json::from(info.id)),
            ("ttl", Json::from(info.ttl)),
            ("remaining", Json::Number(info.remaining.to_string())),
            ("keys", Json::from(info.keys)),
        ]),
    )
}

fn answer(reply: Reply, id: Option<u64>) -> Response {
    let not_found = id.map_or(String::new(), |id| format!("no lease {id}"));
    match reply {
        Reply::Lease(info) => lease_json(&info),
        Reply::Ok => Response::json(200, &Json::object([("ok", Json::from(true))])),
        other => failure(&other, &not_found),
    }
}

/// `POST /lease`: grants a lease of `{"ttl": seconds}`.
pub fn grant(body: &[u8], ctx: &Context) -> Response {
    let usage = || Response::error(400, "BAD_REQUEST", "send {\"ttl\": <seconds>}");
    let text = match utf8(body, "the body") {
        Ok(text) => text,
        Err(response) => return response,
    };
    let Ok(Json::Object(members)) = json::parse(text) else {
        return usage();
    };
    let ttl = match &members[..] {
        [(name, value)] if name == "ttl" => value.as_u64(),
        _ => None,
    };
    match ttl {
        Some(ttl) => answer(execute(ctx, Command::Lease(LeaseCommand::Grant(ttl))), None),
        None => usage(),
    }
}

/// `/lease/<id>`: keepalive (`PUT`), read (`GET`) or revoke (`DELETE`).
pub fn one(head: &Head, id: &str, ctx: &Context) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return Response::error(400, "BAD_REQUEST", &format!("{id:?} is not a lease id"));
    };
    let command = match head.method {
        Method::Put => LeaseCommand::KeepAlive(id),
        Method::Delete => LeaseCommand::Revoke(id),
        _ => LeaseCommand::Ttl(id),
    };
    answer(execute(ctx, Command::Lease(command)), Some(id))
}
