//! The client library: talks to any server, retries until it gets an answer,
//! and makes every command take effect exactly once.
//!
//! A [`Client`] opens a session before its first command (`REGISTER` →
//! `SESSION <id>`; the state machine assigns the id) and numbers its commands:
//! it sends `CLIENT <id> <seq> <command>`. If a server is unreachable, has no
//! leader, or cannot tell the outcome (`ERR TIMEOUT`), the client retries the
//! same `(id, seq)` — on another server if need be — and the state machine's
//! session table answers a retry of an already-applied command with its first
//! reply. If the session expired meanwhile (the table keeps the most recently
//! used sessions), the command is not run again: [`Client::call`] reports the
//! outcome as unknown, and the next command opens a new session. Any server
//! accepts any command (followers forward to the leader), so leader discovery
//! is just "try the next server".
//!
//! With a client token ([`TcpConnector::with_token`], or the `RAFTKV_TOKEN`
//! environment variable in the examples), every new connection starts with
//! `AUTH <token>`.
//!
//! Besides lines ([`Client::call`]), it speaks the KV store typed: any bytes
//! ([`Client::get_bytes`], [`Client::put_bytes`]), a key's revisions
//! ([`Client::get_meta`]), pages ([`Client::range`]), transactions
//! ([`Client::txn`]) and compare-and-swap ([`Client::cas`]); each reply line
//! is read back into a [`Reply`] in one place.
//!
//! Leases: [`Client::lease_grant`], [`Client::lease_keepalive`],
//! [`Client::lease_revoke`], [`Client::lease_ttl`], and puts and
//! transactions that attach their keys to one ([`Client::put_leased`],
//! [`Client::txn_leased`]). Watches hold a connection of their own:
//! [`crate::watch_client::WatchStream`].

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::server::MAX_REPLY_LINE;
use crate::service::command::{to_line, Command};
use crate::service::lease::{LeaseCommand, LeaseInfo};
use crate::service::range::{KeyValue, RangeRequest, RangeResult};
use crate::service::reply::{Code, Reply};
use crate::service::txn::{Compare, CompareOp, OpResult, Target, Txn, TxnOp, TxnResult};
use crate::transport::line::{read_line, LineError};
use crate::transport::tcp::dial;

/// How a client reaches servers: one request line to server `i`, one reply
/// line back.
pub trait Connector {
    /// How many servers there are.
    fn servers(&self) -> usize;
    /// Sends `line` (ending in `\n`) to server `server` and returns its reply
    /// line (without the line ending).
    fn call(&mut self, server: usize, line: &str) -> io::Result<String>;
}

/// The environment variable the examples read a client token from.
pub const TOKEN_ENV: &str = "RAFTKV_TOKEN";

/// Reaches servers over TCP, keeping one connection to the current server.
pub struct TcpConnector {
    addrs: Vec<String>,
    token: Option<String>,
    conn: Option<(usize, BufReader<TcpStream>)>,
}

impl TcpConnector {
    /// A connector for the servers at `addrs`.
    pub fn new(addrs: Vec<String>) -> Self {
        Self {
            addrs,
            token: None,
            conn: None,
        }
    }

    /// Presents `token` (`AUTH <token>`) on every new connection.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// A new connection to `server`, authorized if a token is set. A refused
    /// token is a `PermissionDenied` error.
    fn connect(&self, server: usize) -> io::Result<BufReader<TcpStream>> {
        let addr = self
            .addrs
            .get(server)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such server"))?;
        let stream = dial(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = BufReader::new(stream);
        if let Some(token) = &self.token {
            let reply = parse(send_line(&mut conn, &format!("AUTH {token}\n"))?)?;
            if reply != Reply::Ok {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{addr} refused the client token: {reply}"),
                ));
            }
        }
        Ok(conn)
    }
}

impl Connector for TcpConnector {
    fn servers(&self) -> usize {
        self.addrs.len()
    }

    fn call(&mut self, server: usize, line: &str) -> io::Result<String> {
        let mut reused = false;
        loop {
            match self.conn.take() {
                Some((s, conn)) if s == server => {
                    self.conn = Some((s, conn));
                    reused = true;
                }
                _ => self.conn = Some((server, self.connect(server)?)),
            }
            let result = match self.conn.as_mut() {
                Some((_, conn)) => send_line(conn, line),
                None => Err(io::Error::other("not connected")),
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    self.conn = None;
                    // The server closed a kept connection (idle timeout, or a
                    // restart): try once more on a new one. Retrying is safe:
                    // a session's retry is answered without running twice.
                    let closed = matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                    );
                    if reused && closed {
                        reused = false;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// A client session with a cluster.
pub struct Client<C: Connector = TcpConnector> {
    connector: C,
    /// The session id, once registered.
    session: Option<u64>,
    /// The last sequence number used in the session.
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

    /// A client that presents `token` to servers started with
    /// `-client-token-file`.
    pub fn with_token(addrs: Vec<String>, token: Option<String>) -> Self {
        Client::with_connector(TcpConnector::new(addrs).with_token(token))
    }
}

impl<C: Connector> Client<C> {
    /// A client reaching its servers through `connector`. Its session is opened
    /// with its first command.
    pub fn with_connector(connector: C) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let current = ((nanos ^ unique) % connector.servers().max(1) as u64) as usize;
        Client {
            connector,
            session: None,
            seq: 0,
            current,
            deadline: Duration::from_secs(30),
        }
    }

    /// This client's session id, once it has one.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// Sends the next commands to server `i` first (e.g. the known leader).
    pub fn prefer(&mut self, i: usize) {
        self.current = i % self.connector.servers().max(1);
    }

    /// Sends one command line (e.g. `PUT k v`) and returns the reply.
    /// Retries until a definite reply or the deadline; the command is applied at
    /// most once, and exactly once if this returns `Ok`.
    pub fn call(&mut self, command: &str) -> io::Result<Reply> {
        if command.contains('\n') || command.contains('\r') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a command is one line",
            ));
        }
        let give_up = Instant::now() + self.deadline;
        let session = match self.session {
            Some(id) => id,
            None => {
                let id = self.register(give_up)?;
                self.session = Some(id);
                self.seq = 0;
                id
            }
        };
        self.seq += 1;
        let line = format!("CLIENT {session} {} {command}\n", self.seq);
        let reply = self.send_until_definite(&line, command, give_up)?;
        if matches!(
            reply.code(),
            Some(Code::SessionExpired | Code::SessionUnknown)
        ) {
            // An earlier attempt may have been applied before the session
            // expired: the outcome is unknown, and running it again could
            // apply it twice. The next command opens a new session.
            self.session = None;
            return Err(io::Error::other(format!(
                "outcome of '{command}' unknown: {reply}"
            )));
        }
        Ok(reply)
    }

    /// Opens a session; returns its id. A retried `REGISTER` may open a second
    /// session, which is harmless: the unused one is evicted in time.
    fn register(&mut self, give_up: Instant) -> io::Result<u64> {
        match self.send_until_definite("REGISTER\n", "REGISTER", give_up)? {
            Reply::Session(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends `line` until a definite reply, trying the servers in turn.
    fn send_until_definite(
        &mut self,
        line: &str,
        command: &str,
        give_up: Instant,
    ) -> io::Result<Reply> {
        let mut pause = Duration::from_millis(10);
        loop {
            match self.connector.call(self.current, line).and_then(parse) {
                // The server we tried may be a deposed leader in a minority:
                // try the next one (a follower forwards to the leader anyway).
                Ok(reply) if reply.is_retryable() => self.next_server(),
                Ok(reply) => return Ok(reply),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
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

    /// Runs `command` ([`Client::call`] with its line, [`to_line`]).
    pub fn execute(&mut self, command: &Command) -> io::Result<Reply> {
        self.call(&to_line(command))
    }

    /// `GET key`: `Some(value)` or `None` if absent. A value that is not
    /// UTF-8 is an error here: read it with [`Client::get_bytes`].
    pub fn get(&mut self, key: &str) -> io::Result<Option<String>> {
        match self.get_bytes(key.as_bytes())? {
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| io::Error::other(format!("the value of {key} is not UTF-8"))),
            None => Ok(None),
        }
    }

    /// `PUT key value`.
    pub fn put(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.put_bytes(key.as_bytes(), value.as_bytes())
    }

    /// `APPEND key value`.
    pub fn append(&mut self, key: &str, value: &str) -> io::Result<()> {
        let command = Command::Append(key.into(), value.into());
        self.expect_ok(&command)
    }

    /// Any key's value, any bytes: `Some(value)` or `None` if absent.
    pub fn get_bytes(&mut self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.execute(&Command::Get(key.to_vec()))? {
            Reply::Value(v) => Ok(Some(v.to_vec())),
            Reply::NotFound => Ok(None),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets any key to any value.
    pub fn put_bytes(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.expect_ok(&Command::Put(key.to_vec(), value.to_vec()))
    }

    /// Removes a key (removing a missing key is not an error).
    pub fn delete(&mut self, key: &[u8]) -> io::Result<()> {
        self.expect_ok(&Command::Del(key.to_vec()))
    }

    /// A key with its revisions (`GET k meta`), or `None` if absent;
    /// `serializable` reads whichever server answers, possibly stale.
    pub fn get_meta(&mut self, key: &[u8], serializable: bool) -> io::Result<Option<KeyValue>> {
        let request = RangeRequest {
            serializable,
            ..RangeRequest::key(key)
        };
        Ok(self.range(&request)?.kvs.into_iter().next())
    }

    /// One page of a range; follow `next` for the next page.
    pub fn range(&mut self, request: &RangeRequest) -> io::Result<RangeResult> {
        match self.execute(&Command::Range(request.clone()))? {
            Reply::Range(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a transaction (exactly once, as every command of a session).
    pub fn txn(&mut self, txn: &Txn) -> io::Result<TxnResult> {
        match self.execute(&Command::Txn(txn.clone()))? {
            Reply::Txn(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// Compare-and-swap: sets `key` to `value` only if its mod revision is
    /// `expected` (0: only if it does not exist). `Ok(Ok(revision))`: it was
    /// set, at that revision; `Ok(Err(current))`: it was not, and this is
    /// the key as it is (`None`: absent).
    pub fn cas(
        &mut self,
        key: &[u8],
        expected: u64,
        value: &[u8],
    ) -> io::Result<Result<u64, Option<KeyValue>>> {
        let target = match expected {
            0 => Target::Exists(false),
            n => Target::ModRevision(n),
        };
        let txn = Txn {
            compares: vec![Compare {
                key: key.to_vec(),
                target,
                op: CompareOp::Equal,
            }],
            then: vec![TxnOp::Put(key.to_vec(), value.to_vec())],
            otherwise: vec![TxnOp::Get(key.to_vec())],
        };
        let result = self.txn(&txn)?;
        if result.succeeded {
            return Ok(Ok(result.revision));
        }
        match result.results.into_iter().next() {
            Some(OpResult::Get(page)) => Ok(Err(page.kvs.into_iter().next())),
            other => Err(io::Error::other(format!("unexpected result: {other:?}"))),
        }
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub fn lease_grant(&mut self, ttl: u64) -> io::Result<u64> {
        self.lease(LeaseCommand::Grant(ttl)).map(|info| info.id)
    }

    /// Keeps lease `id` alive (its clock starts over on the leader). A lease
    /// that ended is an error whose text has `LEASE_NOT_FOUND`.
    pub fn lease_keepalive(&mut self, id: u64) -> io::Result<LeaseInfo> {
        self.lease(LeaseCommand::KeepAlive(id))
    }

    /// Ends lease `id` now, deleting its keys.
    pub fn lease_revoke(&mut self, id: u64) -> io::Result<()> {
        self.expect_ok(&Command::Lease(LeaseCommand::Revoke(id)))
    }

    /// Lease `id`'s TTL, seconds left by the leader's clock, and keys.
    pub fn lease_ttl(&mut self, id: u64) -> io::Result<LeaseInfo> {
        self.lease(LeaseCommand::Ttl(id))
    }

    fn lease(&mut self, command: LeaseCommand) -> io::Result<LeaseInfo> {
        match self.execute(&Command::Lease(command))? {
            Reply::Lease(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets `key` to `value`, attached to lease `lease`: the key is deleted
    /// when the lease ends.
    pub fn put_leased(&mut self, key: &[u8], value: &[u8], lease: u64) -> io::Result<()> {
        let put = Command::Put(key.to_vec(), value.to_vec());
        self.expect_ok(&Command::Leased(lease, Box::new(put)))
    }

    /// Runs a transaction whose puts attach their keys to lease `lease`.
    pub fn txn_leased(&mut self, txn: &Txn, lease: u64) -> io::Result<TxnResult> {
        let command = Command::Leased(lease, Box::new(Command::Txn(txn.clone())));
        match self.execute(&command)? {
            Reply::Txn(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    fn expect_ok(&mut self, command: &Command) -> io::Result<()> {
        match self.execute(command)? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn next_server(&mut self) {
        self.current = (self.current + 1) % self.connector.servers().max(1);
    }
}

/// Sends one line and reads the reply line back.
fn send_line(conn: &mut BufReader<TcpStream>, line: &str) -> io::Result<String> {
    conn.get_mut().write_all(line.as_bytes())?;
    match read_line(conn, |_| MAX_REPLY_LINE) {
        Ok(reply) => {
            String::from_utf8(reply).map_err(|_| io::Error::other("unexpected reply: not UTF-8"))
        }
        Err(LineError::Io(e)) => Err(e),
        Err(LineError::Closed) => Err(io::ErrorKind::ConnectionAborted.into()),
        Err(LineError::TooLong) => Err(io::Error::other("unexpected reply: too long")),
    }
}

/// A reply line as a [`Reply`]: the one place the client reads protocol text.
fn parse(line: String) -> io::Result<Reply> {
    Reply::parse_line(&line).ok_or_else(|| io::Error::other(format!("unexpected reply: {line}")))
}

fn unexpected(reply: &Reply) -> io::Error {
    io::Error::other(format!("unexpected reply: {reply}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{parse, Request};
    use crate::service::state_machine::{Op, StateMachine};

    /// One server that is a bare state machine: each line is parsed and
    /// applied as a server would, and answered with its reply line.
    struct Local(StateMachine);

    impl Connector for Local {
        fn servers(&self) -> usize {
            1
        }

        fn call(&mut self, _: usize, line: &str) -> io::Result<String> {
            let line = line.trim_end();
            let (client_id, seq, line) = match line.strip_prefix("CLIENT ") {
                Some(rest) => {
                    let mut parts = rest.splitn(3, ' ');
                    let mut number = || parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    let (id, seq) = (number(), number());
                    (id, seq, parts.next().unwrap_or(""))
                }
                None => (0, 0, line),
            };
            let reply = match parse(line) {
                Ok(Request::Command(command)) => self.0.apply(&Op {
                    client_id,
                    seq,
                    command,
                }),
                Ok(Request::Local(_)) => Reply::Pong,
                Err(e) => e.into(),
            };
            Ok(reply.to_string())
        }
    }

    /// The client library's KV calls, through real reply lines: any bytes,
    /// revisions, pages, transactions and compare-and-swap.
    #[test]
    fn kv_calls_carry_any_bytes_pages_transactions_and_swaps() {
        let mut client = Client::with_connector(Local(StateMachine::default()));
        let key: Vec<u8> = vec![0, b' ', b'\n', 0xff];
        let value: Vec<u8> = (0..=255).collect();
        client.put_bytes(&key, &value).unwrap();
        assert_eq!(client.get_bytes(&key).unwrap(), Some(value.clone()));
        client.put("text", "two words").unwrap();
        assert_eq!(client.get("text").unwrap().as_deref(), Some("two words"));
        client.put_bytes(b"bin", &[0xff]).unwrap();
        assert!(client.get("bin").is_err(), "not UTF-8: read it as bytes");
        let meta = client.get_meta(&key, false).unwrap().expect("the key");
        assert_eq!(
            (meta.create_revision, meta.mod_revision, meta.version),
            (1, 1, 1)
        );

        for i in 0..5 {
            client.put(&format!("p/{i}"), "v").unwrap();
        }
        let mut request = RangeRequest {
            limit: 2,
            ..RangeRequest::prefix(b"p/")
        };
        let mut keys = Vec::new();
        loop {
            let page = client.range(&request).unwrap();
            keys.extend(page.kvs.iter().map(|kv| kv.key.to_vec()));
            match page.next {
                Some(next) if page.more => request.start = next,
                _ => break,
            }
        }
        let wanted: Vec<Vec<u8>> = (0..5).map(|i| format!("p/{i}").into_bytes()).collect();
        assert_eq!(keys, wanted);

        let created = client.cas(b"lock", 0, b"me").unwrap().expect("created");
        let lost = client.cas(b"lock", 0, b"you").unwrap().expect_err("taken");
        assert_eq!(lost.map(|kv| kv.mod_revision), Some(created));
        let swapped = client.cas(b"lock", created, b"next").unwrap();
        assert_eq!(swapped, Ok(created + 1));
        let stale = client
            .cas(b"lock", created, b"late")
            .unwrap()
            .expect_err("stale");
        assert_eq!(
            stale.and_then(|kv| kv.value).as_deref(),
            Some(&b"next".to_vec())
        );

        let txn = Txn {
            compares: Vec::new(),
            then: vec![
                TxnOp::Delete(b"lock".to_vec()),
                TxnOp::Get(b"lock".to_vec()),
            ],
            otherwise: Vec::new(),
        };
        let result = client.txn(&txn).unwrap();
        assert!(result.succeeded);
        assert_eq!(result.results[0], OpResult::Delete(true));
        client.delete(b"text").unwrap();
        assert_eq!(client.get("text").unwrap(), None);
    }
}
