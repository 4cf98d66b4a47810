//! How peer RPCs travel: the [`Transporter`] trait, and its TCP implementation
//! on authenticated links.
//!
//! Raft's runtime sends every peer request through a `Transporter` and feeds the
//! reply back to the core. Tests substitute an in-process network that drops,
//! delays, reorders and partitions (see `tests/common/network.rs`).
//!
//! The files: [`tcp`] is the TCP `Transporter` (a pool of links per peer,
//! timeouts, backoff), [`link`] one authenticated connection to a peer, and
//! [`line`](mod@line) the line framing and base64 that peers and clients share.

pub mod line;
pub mod link;
pub mod tcp;

use std::collections::BTreeMap;
use std::fmt;

use crate::raft::messages::{NodeId, Request, Response};

/// Why a call produced no reply. The request may or may not have been handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The peer could not be reached (no route, refused, dropped, crashed).
    Unreachable(String),
    /// No reply arrived in time.
    Timeout,
    /// The reply arrived but could not be decoded.
    BadReply(String),
    /// This transport has been shut down.
    Closed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Unreachable(why) => write!(f, "peer unreachable: {why}"),
            TransportError::Timeout => write!(f, "timed out waiting for a reply"),
            TransportError::BadReply(why) => write!(f, "bad reply: {why}"),
            TransportError::Closed => write!(f, "transport closed"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Carries one peer request to its destination and brings back the reply.
///
/// # Correctness
/// Raft tolerates any failure here: a call may fail after the peer handled the
/// request, and replies may arrive late or out of order relative to other calls.
/// What a transport must never do is deliver a reply to the wrong request, or
/// alter a message. Calls may block (each runs on a per-peer sender thread,
/// never on the node thread) but should give up within a few seconds.
pub trait Transporter: Send + Sync {
    /// Sends `request` to peer `to` and waits for its reply.
    fn call(&self, to: NodeId, request: &Request) -> Result<Response, TransportError>;

    /// The cluster's configuration changed (thesis §4): from now on, peer
    /// `id` is reached at `addresses[id]`. The configuration is the source
    /// of truth for addresses. Transports that route by id ignore this.
    fn set_addresses(&self, _addresses: &BTreeMap<NodeId, String>) {}
}
