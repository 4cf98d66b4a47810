//! A client connection: `AUTH` first when a token is configured, then request
//! lines answered by the frontend. Peer traffic on a client connection (a
//! `RAFT` or `FWD` line without the handshake) is refused and logged.

use std::net::SocketAddr;

use super::{peer, Shared, MAX_CLIENT_LINE};
use crate::auth::limit::held_back_note;
use crate::auth::token::{ClientAuth, TokenError};
use crate::info;
use crate::service::reply::{Code, Reply};
use crate::service::watch::{parse_watch, WatchRequest};

/// Longest line accepted before `AUTH` succeeds (a token is at most 256
/// bytes): unauthenticated clients cannot make the server buffer much.
const MAX_UNAUTHENTICATED_LINE: usize = 4096;

/// One client connection's state.
pub(super) struct ClientConn {
    remote: SocketAddr,
    /// Whether the connection may send commands (always, without a token).
    authorized: Option<bool>,
}

impl ClientConn {
    /// A connection from `remote`.
    pub(super) fn new(remote: SocketAddr) -> Self {
        ClientConn {
            remote,
            authorized: None,
        }
    }

    fn authorized(&mut self, shared: &Shared) -> bool {
        *self
            .authorized
            .get_or_insert_with(|| !shared.clients.required())
    }

    /// The longest line this connection may send next.
    pub(super) fn line_limit(&mut self, shared: &Shared) -> usize {
        if self.authorized(shared) {
            MAX_CLIENT_LINE
        } else {
            MAX_UNAUTHENTICATED_LINE
        }
    }

    /// Answers one line: the reply (none for a blank line) and whether to close.
    pub(super) fn answer(&mut self, line: &[u8], shared: &Shared) -> (Option<Reply>, bool) {
        let Ok(text) = std::str::from_utf8(line) else {
            let e = Reply::error(Code::BadRequest, "line is not valid UTF-8");
            return (Some(e), false);
        };
        let text = text.trim_start();
        let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        if word.is_empty() {
            return (None, false);
        }
        let upper = word.to_ascii_uppercase();
        if matches!(upper.as_str(), "RAFT" | "FWD" | "PEER") {
            self.refuse_peer_traffic(&upper, shared);
            let reply = Reply::error(
                Code::Auth,
                format!(
                    "{upper} is peer traffic: peers open their connection with the cluster-key \
                     handshake"
                ),
            );
            return (Some(reply), true);
        }
        if upper == "AUTH" {
            return (Some(self.check_token(rest.trim(), shared)), false);
        }
        if !self.authorized(shared) && !ClientAuth::is_exempt(word) {
            let reply = Reply::error(
                Code::NoAuth,
                "authentication required: send AUTH <token> first",
            );
            return (Some(reply), false);
        }
        let (reply, close) = shared.frontend.answer(text, &|l| peer::forward(l, shared));
        (Some(reply), close)
    }

    /// A `WATCH` line's request (`None` for any other line), or the reply
    /// refusing it.
    pub(super) fn watch_request(
        &mut self,
        line: &[u8],
        shared: &Shared,
    ) -> Option<Result<WatchRequest, Reply>> {
        let text = std::str::from_utf8(line).ok()?.trim_start();
        let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let parsed = parse_watch(&word.to_ascii_uppercase(), rest)?;
        if !self.authorized(shared) {
            let reply = Reply::error(
                Code::NoAuth,
                "authentication required: send AUTH <token> first",
            );
            return Some(Err(reply));
        }
        Some(parsed.map_err(Reply::from))
    }

    fn check_token(&mut self, token: &str, shared: &Shared) -> Reply {
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Reply::error(Code::BadRequest, "usage: AUTH <token>");
        }
        let reply = match shared.clients.check(self.remote.ip(), token) {
            Ok(()) => {
                self.authorized = Some(true);
                return Reply::Ok;
            }
            Err(TokenError::Wrong) => Reply::error(Code::Auth, "wrong token"),
            Err(TokenError::Throttled) => Reply::error(
                Code::Auth,
                format!(
                    "too many wrong tokens from {}; retry later",
                    self.remote.ip()
                ),
            ),
        };
        if let Some(held_back) = shared.clients.admit_log_line() {
            let status = shared.frontend.replica().node().status();
            info!(
                status.id,
                status.term,
                "refused a client token from {}: {reply}{}",
                self.remote,
                held_back_note(held_back)
            );
        }
        reply
    }

    fn refuse_peer_traffic(&self, word: &str, shared: &Shared) {
        if let Some(held_back) = shared.stray_peer_lines.admit() {
            let status = shared.frontend.replica().node().status();
            info!(
                status.id,
                status.term,
                "refused a {word} line from {} on a client connection: peers must \
                 authenticate{}",
                self.remote,
                held_back_note(held_back)
            );
        }
    }
}
