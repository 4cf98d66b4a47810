//! Typed replies as HTTP: the one place an error code becomes a status, and
//! an error becomes a JSON body.
//!
//! Errors are `{"error":"CODE","message":"..."}` with the text protocol's
//! code. `NO_LEADER` and `BUSY` are 503 with `Retry-After: 1` (nothing was
//! applied: retry); `TIMEOUT` is 504 (the outcome is unknown); `NOSPACE` (the
//! quota), `NOSPACE_DISK` (the free-space guard) and `STORAGE` (a failed
//! disk) are 507, Insufficient Storage.

use super::response::Response;
use crate::service::reply::{Code, Error, Reply};

/// The status for an error code.
pub fn status(code: Code) -> u16 {
    match code {
        Code::BadRequest | Code::UnknownCommand => 400,
        Code::NoAuth => 401,
        Code::Auth => 403,
        Code::NoAccount | Code::LeaseNotFound => 404,
        Code::Compacted => 410,
        Code::TooManyLeases => 429,
        Code::Exists | Code::TxidReused => 409,
        Code::TooLong | Code::TooLarge => 413,
        Code::InsufficientFunds => 422,
        Code::NoLeader | Code::Busy => 503,
        Code::Timeout => 504,
        Code::NoSpace | Code::NoSpaceDisk | Code::Storage => 507,
        Code::SessionExpired
        | Code::SessionUnknown
        | Code::ChangeInProgress
        | Code::IdInUse
        | Code::NotMember
        | Code::Unreachable
        | Code::CatchUp
        | Code::ReplyNotKept => 500,
    }
}

/// An error as a response: its status, `{"error","message"}`.
pub fn error(e: &Error) -> Response {
    Response::error(status(e.code), e.code.as_str(), &e.message)
}

/// A reply that is not the success a route expects, as an error response:
/// an error keeps its code and message; `NOT_FOUND` says `not_found`;
/// anything else is a 500.
pub fn failure(reply: &Reply, not_found: &str) -> Response {
    match reply {
        Reply::Error(e) => error(e),
        Reply::NotFound => Response::error(404, "NOT_FOUND", not_found),
        other => Response::error(500, "INTERNAL", &format!("unexpected reply: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_statuses() {
        for (code, status) in [
            (Code::NoLeader, 503),
            (Code::Timeout, 504),
            (Code::Exists, 409),
            (Code::TxidReused, 409),
            (Code::InsufficientFunds, 422),
            (Code::NoAccount, 404),
            (Code::BadRequest, 400),
            (Code::NoSpace, 507),
            (Code::NoSpaceDisk, 507),
            (Code::Storage, 507),
            (Code::Compacted, 410),
            (Code::TooManyLeases, 429),
            (Code::LeaseNotFound, 404),
        ] {
            assert_eq!(super::status(code), status, "{code}");
        }
        let r = failure(&Reply::error(Code::NoLeader, "no leader known; retry"), "");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"error\":\"NO_LEADER\",\"message\":\"no leader known; retry\"}\n"
        );
    }
}
