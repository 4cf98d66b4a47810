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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::server::MAX_CLIENT_LINE;
use crate::transport::line::{read_line, LineError};
use crate::transport::tcp::dial;

/// A client session with a cluster.
pub struct Client {
    addrs: Vec<String>,
    id: u64,
    seq: u64,
    current: usize,
    conn: Option<BufReader<TcpStream>>,
    /// Give up on a command after this long.
    pub deadline: Duration,
}

impl Client {
    /// A client of the servers at `addrs` (any order; any of them may be down).
    pub fn new(addrs: Vec<String>) -> Client {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let id = (nanos ^ (u64::from(std::process::id()) << 32)) | 1;
        let current = (nanos % addrs.len().max(1) as u64) as usize;
        Client {
            addrs,
            id,
            seq: 0,
            current,
            conn: None,
            deadline: Duration::from_secs(30),
        }
    }

    /// This client's session id.
    pub fn id(&self) -> u64 {
        self.id
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
        let mut pause = Duration::from_millis(20);
        loop {
            match self.try_once(&line) {
                Ok(reply) if is_retryable(&reply) => {
                    if reply.starts_with("ERR NO_LEADER") || reply.starts_with("ERR BUSY") {
                        self.next_server();
                    }
                }
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
            pause = (pause * 2).min(Duration::from_millis(500));
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
        self.conn = None;
        self.current = (self.current + 1) % self.addrs.len().max(1);
    }

    fn try_once(&mut self, line: &str) -> io::Result<String> {
        if self.conn.is_none() {
            let addr = self
                .addrs
                .get(self.current)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no servers"))?;
            let stream = dial(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(BufReader::new(stream));
        }
        let result = match self.conn.as_mut() {
            Some(conn) => send_line(conn, line),
            None => Err(io::Error::other("not connected")),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
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
