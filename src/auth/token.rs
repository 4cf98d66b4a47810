//! The client token check: one function for every front door.
//!
//! With `-client-token-file`, a connection is authorized once it presents the
//! token: `AUTH <token>` in the text protocol; an HTTP interface on the same
//! port would call [`ClientAuth::check_bearer`] with the `Authorization`
//! header. Until then only [`ClientAuth::is_exempt`] commands are answered.
//! Tokens are compared as SHA-256 digests in constant time (so neither the
//! content nor the length leaks through timing), and each remote address may
//! fail only a few times before its attempts are refused unchecked.

use std::net::IpAddr;
use std::time::Duration;

use super::hmac::ct_eq;
use super::limit::{FailureLimiter, LogThrottle};
use super::sha256::{sha256, DIGEST_LEN};

/// Wrong tokens an address may present at once before being throttled.
const FAILURE_BURST: u32 = 5;
/// After the burst, one more attempt per this interval.
const FAILURE_REFILL: Duration = Duration::from_secs(1);
/// Addresses whose failures are tracked at once.
const TRACKED_ADDRESSES: usize = 4096;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Missing or not the configured token.
    Wrong,
    /// Too many recent failures from this address: not even checked.
    Throttled,
}

/// The configured client token (if any) and the failure limits.
#[derive(Debug)]
pub struct ClientAuth {
    /// SHA-256 of the token; `None` means every connection is authorized.
    digest: Option<[u8; DIGEST_LEN]>,
    failures: FailureLimiter,
    log: LogThrottle,
}

impl ClientAuth {
    /// No token: every connection is authorized and `AUTH` is a no-op.
    pub fn open() -> Self {
        Self::new(None)
    }

    /// Connections must present `token` (or nothing is required if `None`).
    pub fn new(token: Option<&str>) -> Self {
        ClientAuth {
            digest: token.map(|t| sha256(t.as_bytes())),
            failures: FailureLimiter::new(FAILURE_BURST, FAILURE_REFILL, TRACKED_ADDRESSES),
            log: LogThrottle::new(Duration::from_secs(1)),
        }
    }

    /// Whether a token is configured.
    pub fn required(&self) -> bool {
        self.digest.is_some()
    }

    /// Checks a presented token for a connection from `from`. Always `Ok` when
    /// no token is configured.
    pub fn check(&self, from: IpAddr, presented: &str) -> Result<(), TokenError> {
        let Some(want) = &self.digest else {
            return Ok(());
        };
        if !self.failures.allows(from) {
            return Err(TokenError::Throttled);
        }
        if ct_eq(&sha256(presented.as_bytes()), want) {
            Ok(())
        } else {
            self.failures.record_failure(from);
            Err(TokenError::Wrong)
        }
    }

    /// Checks an HTTP `Authorization` header value (`Bearer <token>`); a
    /// malformed header is a wrong token. A missing header is refused too, but
    /// is not counted as a failed attempt (it is no guess).
    pub fn check_bearer(&self, from: IpAddr, header: Option<&str>) -> Result<(), TokenError> {
        if !self.required() {
            return Ok(());
        }
        let Some(header) = header else {
            return Err(TokenError::Wrong);
        };
        let token = Some(header.trim())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        self.check(from, token.unwrap_or(""))
    }

    /// Text-protocol commands answered before authentication: `PING`, `HELP`,
    /// `QUIT` (and `AUTH` itself).
    pub fn is_exempt(command_word: &str) -> bool {
        ["PING", "HELP", "QUIT", "AUTH"]
            .iter()
            .any(|w| w.eq_ignore_ascii_case(command_word))
    }

    /// Whether a log line about a refused token may be written now, and how
    /// many were held back since the last one.
    pub fn admit_log_line(&self) -> Option<u64> {
        self.log.admit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn without_a_token_everything_is_authorized() {
        let auth = ClientAuth::open();
        assert!(!auth.required());
        assert_eq!(auth.check(IP, "anything"), Ok(()));
        assert_eq!(auth.check_bearer(IP, None), Ok(()));
    }

    #[test]
    fn only_the_exact_token_is_accepted_and_wrong_ones_are_throttled() {
        let auth = ClientAuth::new(Some("s3cret-token-0123"));
        assert_eq!(auth.check(IP, "s3cret-token-0123"), Ok(()));
        for wrong in [
            "",
            "s3cret-token-012",
            "s3cret-token-01234",
            "S3cret-token-0123",
        ] {
            assert_eq!(auth.check(IP, wrong), Err(TokenError::Wrong), "{wrong:?}");
        }
        assert_eq!(auth.check(IP, "x"), Err(TokenError::Wrong));
        // Five failures used the burst: even the right token is not checked now.
        assert_eq!(
            auth.check(IP, "s3cret-token-0123"),
            Err(TokenError::Throttled)
        );
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(auth.check(other, "s3cret-token-0123"), Ok(()));
    }

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        let auth = ClientAuth::new(Some("tok-tok-tok-tok-1"));
        assert_eq!(
            auth.check_bearer(IP, Some("Bearer tok-tok-tok-tok-1")),
            Ok(())
        );
        assert_eq!(
            auth.check_bearer(IP, Some("bearer  tok-tok-tok-tok-1 ")),
            Ok(())
        );
        assert_eq!(
            auth.check_bearer(IP, Some("Basic tok-tok-tok-tok-1")),
            Err(TokenError::Wrong)
        );
        assert_eq!(auth.check_bearer(IP, None), Err(TokenError::Wrong));
    }

    #[test]
    fn only_ping_help_quit_and_auth_are_exempt() {
        for w in ["PING", "help", "Quit", "AUTH"] {
            assert!(ClientAuth::is_exempt(w), "{w}");
        }
        for w in ["STATUS", "GET", "CLIENT", "REGISTER", "RAFT", "FWD"] {
            assert!(!ClientAuth::is_exempt(w), "{w}");
        }
    }
}
