//! The client library: talks to any server, retries until it gets an answer,
//! and makes every command take effect exactly once.
//!
//! Each [`Client`] has a random session id and numbers its commands; it sends
//! `CLIENT <id> <seq> <command>`. If a server is unreachable, has no leader, or
//! cannot tell the outcome (`ERR TIMEOUT`), the client retries the same
//! `(id, seq)` — on another server if need be — and the state machine's session
//! table answers a retry of an already-applied command with its first reply.
//! Any server accepts any command (followers forward to the leader), so leader
//! discovery is just "try the next server".

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::server::MAX_CLIENT_LINE;
use crate::transport::line::{read_line, LineError};
use crate::transport::tcp::dial;

/// How a client reaches servers: one request line to server `i`, one reply back.
pub trait Connector {
    /// How many servers there are.
    fn servers(&self) -> usize;
    /// Sends `line` (ending in `\n`) to server `server` and returns its reply.
    fn call(&mut self, server: usize, line: &str) -> io::Result<String>;
}

/// Reaches servers over TCP, keeping one connection to the current server.
pub struct TcpConnector {
    addrs: Vec<String>,
    conn: Option<(usize, BufReader<TcpStream>)>,
}

impl TcpConnector {
    /// A connector for the servers at `addrs`.
    pub fn new(addrs: Vec<String>) -> Self {
        Self { addrs, conn: None }
    }
}

impl Connector for TcpConnector {
    fn servers(&self) -> usize {
        self.addrs.len()
    }

    fn call(&mut self, server: usize, line: &str) -> io::Result<String> {
        if self.conn.as_ref().map(|(s, _)| *s) != Some(server) {
            let addr = self
                .addrs
                .get(server)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such server"))?;
            let stream = dial(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some((server, BufReader::new(stream)));
        }
        let result = match self.conn.as_mut() {
            Some((_, conn)) => send_line(conn, line),
            None => Err(io::Error::other("not connected")),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// A client session with a cluster.
pub struct Client<C: Connector = TcpConnector> {
    connector: C,
    id: u64,
    seq: u64,
    current: usize,
    /// Give up on a command after this long.
    pub deadline: Duration,
}

impl Client<TcpConnector> {
    /// A client of the servers at `addrs` (any order; any of them may be down).
    pub fn new(addrs: Vec<String>) -> Self {
        Client::with_connector(TcpConnector::new(addrs))
    }
}

impl<C: Connector> Client<C> {
    /// A client reaching its servers through `connector`, with a fresh session id.
    pub fn with_connector(connector: C) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = (nanos ^ (u64::from(std::process::id()) << 32) ^ unique.rotate_left(17)) | 1;
        let current = ((nanos ^ unique) % connector.servers().max(1) as u64) as usize;
        Client {
            connector,
            id,
            seq: 0,
            current,
            deadline: Duration::from_secs(30),
        }
    }

    /// This client's session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the next commands to server `i` first (e.g. the known leader).
    pub fn prefer(&mut self, i: usize) {
        self.current = i % self.connector.servers().max(1);
    }

    /// Sends one command line (e.g. `PUT k v`) and returns the reply line.
    /// Retries until a definite reply or the deadline; the command is applied at
    /// most once, and exactly once if this returns `Ok`.
    pub fn call(&mut self, command: &str) -> io::Result<String> {
        if command.contains('\n') || command.contains('\r') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a command is one line",
            ));
        }
        self.seq += 1;
        let line = format!("CLIENT {} {} {}\n", self.id, self.seq, command);
        let give_up = Instant::now() + self.deadline;
        let mut pause = Duration::from_millis(10);
        loop {
            match self.connector.call(self.current, &line) {
                // The server we tried may be a deposed leader in a minority:
                // try the next one (a follower forwards to the leader anyway).
                Ok(reply) if is_retryable(&reply) => self.next_server(),
                Ok(reply) => return Ok(reply),
                Err(_) => self.next_server(),
            }
            if Instant::now() >= give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no definite reply to '{command}' within {:?}",
                        self.deadline
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// `GET key`: `Some(value)` or `None` if absent.
    pub fn get(&mut self, key: &str) -> io::Result<Option<String>> {
        let reply = self.call(&format!("GET {key}"))?;
        if reply == "NOT_FOUND" {
            return Ok(None);
        }
        reply
            .strip_prefix("VALUE ")
            .map(|v| Some(v.to_string()))
            .ok_or_else(|| unexpected(&reply))
    }

    /// `PUT key value`.
    pub fn put(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.expect_ok(&format!("PUT {key} {value}"))
    }

    /// `APPEND key value`.
    pub fn append(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.expect_ok(&format!("APPEND {key} {value}"))
    }

    fn expect_ok(&mut self, command: &str) -> io::Result<()> {
        let reply = self.call(command)?;
        if reply == "OK" {
            Ok(())
        } else {
            Err(unexpected(&reply))
        }
    }

    fn next_server(&mut self) {
        self.current = (self.current + 1) % self.connector.servers().max(1);
    }
}

fn send_line(conn: &mut BufReader<TcpStream>, line: &str) -> io::Result<String> {
    conn.get_mut().write_all(line.as_bytes())?;
    match read_line(conn, |_| MAX_CLIENT_LINE * 2) {
        Ok(reply) => String::from_utf8(reply).map_err(|_| unexpected("non-UTF-8 reply")),
        Err(LineError::Io(e)) => Err(e),
        Err(LineError::Closed) => Err(io::ErrorKind::ConnectionAborted.into()),
        Err(LineError::TooLong) => Err(unexpected("reply too long")),
    }
}

/// Replies that mean "no outcome yet": retry the same (id, seq).
fn is_retryable(reply: &str) -> bool {
    reply.starts_with("ERR NO_LEADER")
        || reply.starts_with("ERR TIMEOUT")
        || reply.starts_with("ERR BUSY")
}

fn unexpected(reply: &str) -> io::Error {
    io::Error::other(format!("unexpected reply: {reply}"))
}
