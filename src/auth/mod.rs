//! Who may talk to a server: peers prove they hold the cluster key, clients
//! present a token.
//!
//! - [`sha256`] and [`hmac`]: the primitives, written here (std only) and
//!   tested against FIPS 180-4 and RFC 4231.
//! - [`peer`]: the peer handshake and the HMAC tag on every peer request and
//!   reply (the wire protocol is in NOTES.md, "Peer authentication").
//! - [`token`]: the client token check, one function any front door calls
//!   (`AUTH <token>` in the text protocol; an HTTP interface would pass the
//!   `Authorization: Bearer` value).
//! - [`limit`]: rate limits for failed attempts and for the log lines they cause.
//! - [`keyfile`]: reading the key and token files.

pub mod hmac;
pub mod keyfile;
pub mod limit;
pub mod peer;
pub mod sha256;
pub mod token;
