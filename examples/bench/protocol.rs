//! The client side of the protocol, as the load generator speaks it: one
//! connection that retries like the client library, and sessions on it.
//!
//! It does not use `raftkv::client`, for two reasons. It must talk to
//! servers from before `REGISTER` existed (their clients chose their own
//! session ids), and it shares the 2 cores with the servers, so each command
//! should cost it little: the request line is built in a reused buffer and
//! sent with one `write`, and the reply is read into a reused buffer and
//! handed back as bytes, never parsed into a `String`. Retries mirror the
//! client library's: the same `(id, seq)` again, on the next server, after a
//! pause that doubles.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use raftkv::service::reply::Code;

/// Give up on a command (and count an error) after this long.
const DEADLINE: Duration = Duration::from_secs(10);

/// How a server hands out session ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// `REGISTER` → `SESSION <id>` (today's servers).
    Register,
    /// No `REGISTER` (`ERR UNKNOWN_COMMAND`, an older server): the client
    /// picks a random id, as clients of such servers did.
    SelfChosen,
}

impl SessionKind {
    /// How the run's footer names it.
    pub fn describe(self) -> &'static str {
        match self {
            SessionKind::Register => "sessions opened with REGISTER",
            SessionKind::SelfChosen => "no REGISTER, sessions with self-chosen ids",
        }
    }
}

/// Where and how clients reach the cluster.
pub struct Target {
    /// The servers' addresses.
    pub addrs: Vec<String>,
    /// The one to send to first (the leader).
    pub leader: usize,
    /// `AUTH <token>` on every connection, if set.
    pub token: Option<String>,
    /// How sessions get their ids.
    pub sessions: SessionKind,
}

/// One connection to the cluster that retries until a definite reply.
struct Conn {
    target: Arc<Target>,
    server: usize,
    stream: Option<(TcpStream, BufReader<TcpStream>)>,
    /// The last reply, without its line ending.
    reply: Vec<u8>,
    /// Attempts beyond the first, over the connection's life.
    retries: u64,
}

impl Conn {
    /// A connection that sends to `server` first.
    fn new(target: Arc<Target>, server: usize) -> Conn {
        Conn {
            target,
            server,
            stream: None,
            reply: Vec::with_capacity(256),
            retries: 0,
        }
    }

    /// Sends `request` (one line with its `\n`) until a reply that is not
    /// "no outcome yet" (`ERR NO_LEADER`, `ERR TIMEOUT`, `ERR BUSY`) or an
    /// I/O error; returns the reply.
    fn call(&mut self, request: &[u8]) -> io::Result<&[u8]> {
        let give_up = Instant::now() + DEADLINE;
        let mut pause = Duration::from_millis(10);
        loop {
            match self.exchange(request) {
                Ok(()) if !is_retryable(&self.reply) => return Ok(&self.reply),
                Ok(()) => {}
                // A refused client token will not be accepted on a retry.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
                Err(e) if Instant::now() >= give_up => return Err(e),
                Err(_) => self.stream = None,
            }
            if Instant::now() >= give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    String::from_utf8_lossy(&self.reply).into_owned(),
                ));
            }
            self.retries += 1;
            self.stream = None;
            self.server = (self.server + 1) % self.target.addrs.len();
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// One attempt: connects if need be, writes `request`, reads one line.
    fn exchange(&mut self, request: &[u8]) -> io::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.target.addrs[self.server])?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(DEADLINE))?;
            let writer = stream.try_clone()?;
            self.stream = Some((writer, BufReader::new(stream)));
            if let Some(token) = self.target.token.clone() {
                self.exchange(format!("AUTH {token}\n").as_bytes())?;
                if self.reply != b"OK" {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        String::from_utf8_lossy(&self.reply).into_owned(),
                    ));
                }
            }
        }
        let Some((writer, reader)) = self.stream.as_mut() else {
            return Err(io::Error::other("not connected"));
        };
        writer.write_all(request)?;
        self.reply.clear();
        if reader.read_until(b'\n', &mut self.reply)? == 0 {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        while matches!(self.reply.last(), Some(b'\n' | b'\r')) {
            self.reply.pop();
        }
        Ok(())
    }
}

/// Replies that mean "no outcome yet" ([`Code::is_retryable`]): send the
/// same request again. Read from the bytes, without building a `Reply`.
fn is_retryable(reply: &[u8]) -> bool {
    let code = reply
        .strip_prefix(b"ERR ")
        .and_then(|rest| rest.split(|&b| b == b' ').next())
        .and_then(|name| std::str::from_utf8(name).ok())
        .and_then(Code::from_name);
    code.is_some_and(Code::is_retryable)
}

/// A client session: `CLIENT <id> <seq> <command>` lines on one connection.
pub struct Session {
    conn: Conn,
    id: u64,
    seq: u64,
    line: Vec<u8>,
}

impl Session {
    /// Connects to `server` and opens a session (`REGISTER`, or a random id).
    pub fn open(target: &Arc<Target>, server: usize) -> io::Result<Session> {
        let mut conn = Conn::new(Arc::clone(target), server);
        let id = match target.sessions {
            SessionKind::Register => {
                let reply = conn.call(b"REGISTER\n")?;
                std::str::from_utf8(reply)
                    .ok()
                    .and_then(|r| r.strip_prefix("SESSION "))
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| unexpected("REGISTER", reply))?
            }
            SessionKind::SelfChosen => {
                conn.call(b"PING\n")?;
                random_u64()? | 1
            }
        };
        Ok(Session {
            conn,
            id,
            seq: 0,
            line: Vec::with_capacity(256),
        })
    }

    /// Sends `command` in the session; returns the reply.
    pub fn call(&mut self, command: &[u8]) -> io::Result<&[u8]> {
        self.seq += 1;
        self.line.clear();
        let _ = write!(self.line, "CLIENT {} {} ", self.id, self.seq);
        self.line.extend_from_slice(command);
        self.line.push(b'\n');
        self.conn.call(&self.line)
    }

    /// Attempts beyond the first so far (each a retry after "no outcome
    /// yet" or a lost connection).
    pub fn retries(&self) -> u64 {
        self.conn.retries
    }

    /// Sends `command` as a plain line, outside the session.
    pub fn call_plain(&mut self, command: &[u8]) -> io::Result<&[u8]> {
        self.line.clear();
        self.line.extend_from_slice(command);
        self.line.push(b'\n');
        self.conn.call(&self.line)
    }
}

/// Finds out how the cluster at `addrs` hands out sessions: `REGISTER` if it
/// knows the command, self-chosen ids if it answers `ERR UNKNOWN_COMMAND`.
pub fn detect_sessions(
    addrs: &[String],
    leader: usize,
    token: Option<String>,
) -> io::Result<SessionKind> {
    let target = Arc::new(Target {
        addrs: addrs.to_vec(),
        leader,
        token,
        sessions: SessionKind::Register,
    });
    let mut conn = Conn::new(target, leader);
    let reply = conn.call(b"REGISTER\n")?;
    if reply.starts_with(b"SESSION ") {
        Ok(SessionKind::Register)
    } else if reply.starts_with(b"ERR UNKNOWN_COMMAND") {
        Ok(SessionKind::SelfChosen)
    } else {
        Err(unexpected("REGISTER", reply))
    }
}

/// An error for an unexpected reply to `command`.
pub fn unexpected(command: &str, reply: &[u8]) -> io::Error {
    io::Error::other(format!(
        "unexpected reply to {command}: {}",
        String::from_utf8_lossy(reply)
    ))
}

/// 8 bytes from `/dev/urandom`.
pub fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}
