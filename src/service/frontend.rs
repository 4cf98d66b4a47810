//! The client-facing side of a server: answers one request line at a time.
//!
//! Shared by the TCP server and the simulated-network test harness, so both run
//! exactly the same request handling. A line is an optional `FWD ` (forwarded by
//! a follower; never forwarded again), an optional `CLIENT <id> <seq> ` session
//! prefix, then a command (see [`super::command`]).
//!
//! It also counts the requests it answers by command and result, for
//! `/metrics`; a forwarded request is counted by the server the client talked to.

use std::time::Duration;

use super::command::{self, Local, HELP};
use super::replica::{ExecError, Replica};
use super::state_machine::Op;
use crate::metrics::CounterVec;

/// Answers client lines for one server.
pub struct Frontend {
    replica: Replica,
    request_timeout: Duration,
    peers: usize,
    /// Requests answered, by command word and result code.
    requests: CounterVec,
}

impl Frontend {
    /// A frontend for `replica` in a cluster of `peers` servers; requests wait
    /// at most `request_timeout` for their outcome.
    pub fn new(replica: Replica, request_timeout: Duration, peers: usize) -> Self {
        Self {
            replica,
            request_timeout,
            peers,
            requests: CounterVec::default(),
        }
    }

    /// Requests answered so far, by command word (`put`, `ping`, ...,
    /// `invalid`) and result (`OK`, `NOT_FOUND`, or the error code).
    pub fn requests(&self) -> &CounterVec {
        &self.requests
    }

    /// The replica behind this frontend.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Answers one request line; the flag says whether to close the connection.
    /// `forward` relays a command this server cannot execute (not the leader)
    /// and returns the leader's reply.
    pub fn answer(&self, line: &str, forward: &dyn Fn(&str) -> String) -> (String, bool) {
        let (forwarded, line) = match strip_word(line, "FWD") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (reply, close, word) = self.respond(line, forwarded, forward);
        if !forwarded {
            self.requests.inc(&[word, result_code(&reply)]);
        }
        (reply, close)
    }

    /// Answers a line without its `FWD` prefix; also names the command, for
    /// the request counters.
    fn respond(
        &self,
        line: &str,
        forwarded: bool,
        forward: &dyn Fn(&str) -> String,
    ) -> (String, bool, &'static str) {
        let (client_id, seq, command_line) = match strip_word(line, "CLIENT") {
            Some(rest) => match parse_session(rest) {
                Some(parsed) => parsed,
                None => {
                    let e = "ERR BAD_REQUEST usage: CLIENT <id> <seq> <command>";
                    return (e.into(), false, "invalid");
                }
            },
            None => (0, 0, line),
        };
        match command::parse(command_line) {
            Err(e) => (e.to_string(), false, "invalid"),
            Ok(command::Request::Local(Local::Ping)) => ("PONG".into(), false, "ping"),
            Ok(command::Request::Local(Local::Help)) => (HELP.into(), false, "help"),
            Ok(command::Request::Local(Local::Quit)) => ("BYE".into(), true, "quit"),
            Ok(command::Request::Local(Local::Status)) => (self.status_line(), false, "status"),
            Ok(command::Request::Command(command)) => {
                let word = command::word(&command);
                let op = Op {
                    client_id,
                    seq,
                    command,
                };
                let reply = match self.replica.execute(&op, self.request_timeout) {
                    Ok(reply) => reply,
                    Err(ExecError::NotLeader) if !forwarded => forward(line),
                    Err(ExecError::NotLeader) => "ERR NO_LEADER not the leader; retry".into(),
                    Err(ExecError::Timeout) => "ERR TIMEOUT outcome unknown".into(),
                };
                (reply, false, word)
            }
        }
    }

    /// The `STATUS` reply.
    pub fn status_line(&self) -> String {
        let s = self.replica.node().status();
        format!(
            "STATUS id={} role={} term={} leader={} commit={} applied={} snapshot={} last_log={} peers={}",
            s.id,
            s.role,
            s.term,
            s.leader_id.unwrap_or(0),
            s.commit_index,
            s.last_applied,
            s.snapshot_index,
            s.last_log_index,
            self.peers
        )
    }
}

/// `OK` for a success, `NOT_FOUND`, or the code of an `ERR <CODE> ...` reply.
fn result_code(reply: &str) -> &str {
    match reply.strip_prefix("ERR ") {
        Some(rest) => rest.split(' ').next().unwrap_or("ERR"),
        None if reply == "NOT_FOUND" => "NOT_FOUND",
        None => "OK",
    }
}

/// If `line` starts with `word` (any case) and a space, the rest.
fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let (first, rest) = line.split_once(' ')?;
    first.eq_ignore_ascii_case(word).then_some(rest)
}

/// `<id> <seq> <command>` → the parts; ids and sequence numbers are nonzero.
fn parse_session(rest: &str) -> Option<(u64, u64, &str)> {
    let mut parts = rest.splitn(3, ' ');
    let id: u64 = parts.next()?.parse().ok().filter(|&v| v != 0)?;
    let seq: u64 = parts.next()?.parse().ok().filter(|&v| v != 0)?;
    Some((id, seq, parts.next()?))
}
