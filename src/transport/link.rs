//! An authenticated connection to one peer: the dialing end of
//! [`crate::auth::peer`]'s protocol, over TCP.
//!
//! [`PeerLink::open`] dials and does the handshake (`PEER` → `CHALLENGE`);
//! [`PeerLink::call`] sends one tagged request and checks the tagged reply.
//! The Raft transport carries RPCs on links; a follower forwards client lines
//! to the leader on them too.

use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::line::{read_line, LineError};
use super::tcp::{dial, MAX_PEER_LINE};
use crate::auth::peer::{Dialer, Kind, PeerAuth, ReplyError};
use crate::raft::messages::NodeId;

/// Why a call on a link produced no reply.
#[derive(Debug)]
pub enum LinkError {
    /// The connection failed or closed; the request may or may not have arrived.
    Io(io::Error),
    /// No reply in time.
    Timeout,
    /// The peer answered with an error line (`ERR AUTH ...`, `ERR NO_LEADER ...`).
    Refused(String),
    /// A reply whose tag or sequence number is wrong.
    Forged(String),
}

impl LinkError {
    /// Whether the peer refused our authentication (`ERR AUTH`).
    pub fn is_auth_refusal(&self) -> bool {
        matches!(self, LinkError::Refused(line) if line.starts_with("ERR AUTH"))
    }

    /// Whether the connection was found closed: a pooled link the peer closed
    /// while idle. The request never arrived, so a retry on a new link is safe.
    pub fn is_closed(&self) -> bool {
        matches!(self, LinkError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ))
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Timeout => write!(f, "timed out waiting for a reply"),
            LinkError::Refused(line) => write!(f, "refused: {line}"),
            LinkError::Forged(why) => write!(f, "reply failed authentication: {why}"),
        }
    }
}

fn from_line_error(e: LineError) -> LinkError {
    match e {
        e if e.is_timeout() => LinkError::Timeout,
        LineError::Io(e) => LinkError::Io(e),
        LineError::Closed => LinkError::Io(io::ErrorKind::UnexpectedEof.into()),
        LineError::TooLong => LinkError::Forged("reply line too long".into()),
    }
}

fn from_reply_error(e: ReplyError) -> LinkError {
    match e {
        ReplyError::Refused(line) => LinkError::Refused(line),
        ReplyError::Forged(why) => LinkError::Forged(why),
    }
}

/// One authenticated connection, used for one request at a time.
pub struct PeerLink {
    conn: BufReader<TcpStream>,
    dialer: Dialer,
    auth: Arc<PeerAuth>,
    last_used: Instant,
}

impl PeerLink {
    /// Dials `addr` (node `to`) as node `from` and completes the handshake.
    pub fn open(
        addr: &str,
        auth: Arc<PeerAuth>,
        from: NodeId,
        to: NodeId,
    ) -> Result<PeerLink, LinkError> {
        let stream = dial(addr).map_err(LinkError::Io)?;
        let mut conn = BufReader::new(stream);
        let (mut dialer, hello) = Dialer::hello(&auth, from, to);
        send(&mut conn, hello)?;
        let challenge = read_line(&mut conn, |_| 256).map_err(from_line_error)?;
        dialer
            .accept_challenge(&challenge)
            .map_err(from_reply_error)?;
        Ok(PeerLink {
            conn,
            dialer,
            auth,
            last_used: Instant::now(),
        })
    }

    /// Sends one request and returns the reply's payload once its tag checks.
    /// After an error the link must be dropped.
    pub fn call(&mut self, kind: Kind, payload: &[u8]) -> Result<Vec<u8>, LinkError> {
        let line = self.dialer.seal_request(&self.auth, kind, payload);
        send(&mut self.conn, line)?;
        let reply = read_line(&mut self.conn, |_| MAX_PEER_LINE).map_err(from_line_error)?;
        self.last_used = Instant::now();
        self.dialer
            .open_reply(&self.auth, kind, &reply)
            .map_err(from_reply_error)
    }

    /// Sets how long a reply may take.
    pub fn set_reply_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.conn.get_ref().set_read_timeout(Some(timeout))
    }

    /// How long since the link was last used.
    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }
}

/// Writes `line` and its `\n` in one call (one segment with Nagle off).
fn send(conn: &mut BufReader<TcpStream>, mut line: String) -> Result<(), LinkError> {
    line.push('\n');
    conn.get_mut()
        .write_all(line.as_bytes())
        .map_err(LinkError::Io)
}
