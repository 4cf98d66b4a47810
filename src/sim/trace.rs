//! The simulator's trace: every event as one line, in the server log's format.
//!
//! `  12.345s node 2 [term 5] became leader (votes from 1,3)`: the core's own
//! log lines (captured through [`crate::logger::capture`]) interleaved with the
//! simulator's (messages, faults, persists, applies, client replies), stamped
//! with virtual time. When tracing is off nothing is formatted at all: a
//! failing schedule is traced by running its seed again, which reproduces it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use super::network::Endpoint;
use super::{format_time, Time};
use crate::logger::{self, Level};
use crate::raft::messages::Request;
use crate::raft::Persist;
use crate::service::command::{to_line, Command};
use crate::service::state_machine::Op;

/// Where trace lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// Nowhere (and nothing is formatted).
    Off,
    /// Printed to stdout as they happen.
    Print,
    /// The last this many lines are kept (for a violation report).
    Ring(usize),
}

struct Inner {
    now: Time,
    mode: TraceMode,
    ring: VecDeque<String>,
}

impl Inner {
    fn push(&mut self, line: String) {
        match self.mode {
            TraceMode::Off => {}
            TraceMode::Print => println!("{line}"),
            TraceMode::Ring(n) => {
                if self.ring.len() == n {
                    self.ring.pop_front();
                }
                self.ring.push_back(line);
            }
        }
    }
}

/// A schedule's trace. Creating one redirects this thread's log lines into it;
/// dropping it restores them.
pub(crate) struct Trace {
    inner: Rc<RefCell<Inner>>,
    on: bool,
}

impl Trace {
    /// A trace in `mode`, capturing this thread's log lines (at detail level
    /// when `verbose`).
    pub(crate) fn new(mode: TraceMode, verbose: bool) -> Trace {
        let inner = Rc::new(RefCell::new(Inner {
            now: 0,
            mode,
            ring: VecDeque::new(),
        }));
        let on = mode != TraceMode::Off;
        if on {
            let sink_inner = Rc::clone(&inner);
            let level = if verbose { Level::Debug } else { Level::Info };
            logger::capture(
                level,
                Some(Box::new(move |id, term, message| {
                    let mut inner = sink_inner.borrow_mut();
                    let line = format!(
                        "{:>10} node {id} [term {term}] {message}",
                        format_time(inner.now)
                    );
                    inner.push(line);
                })),
            );
        } else {
            logger::capture(Level::Quiet, Some(Box::new(|_, _, _| {})));
        }
        Trace { inner, on }
    }

    /// Whether lines are recorded (callers skip formatting when not).
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// Sets the virtual time stamped on the following lines.
    pub(crate) fn set_now(&self, now: Time) {
        if self.on {
            self.inner.borrow_mut().now = now;
        }
    }

    /// Records a line about server `id` in `term`.
    pub(crate) fn node(&self, id: u64, term: u64, message: fmt::Arguments<'_>) {
        if self.on {
            let mut inner = self.inner.borrow_mut();
            let line = format!(
                "{:>10} node {id} [term {term}] {message}",
                format_time(inner.now)
            );
            inner.push(line);
        }
    }

    /// Records a line about the simulation itself (faults, phases) or a client.
    pub(crate) fn sim(&self, who: &str, message: fmt::Arguments<'_>) {
        if self.on {
            let mut inner = self.inner.borrow_mut();
            let line = format!("{:>10} {who} {message}", format_time(inner.now));
            inner.push(line);
        }
    }

    /// The lines kept in [`TraceMode::Ring`] mode, oldest first.
    pub(crate) fn recent(&self) -> Vec<String> {
        self.inner.borrow().ring.iter().cloned().collect()
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        logger::capture(Level::Quiet, None);
    }
}

pub(super) fn show_endpoint(e: Endpoint) -> String {
    match e {
        Endpoint::Node(i) => format!("node {}", i + 1),
        Endpoint::Client(c) => format!("client {c}"),
    }
}

/// A command as the text protocol writes it.
pub(super) fn show(op: &Op) -> String {
    match &op.command {
        Command::Append(k, v) => format!(
            "APPEND {} {}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(v)
        ),
        kv @ (Command::Put(..)
        | Command::Del(_)
        | Command::Get(_)
        | Command::Range(_)
        | Command::Txn(_)
        | Command::Leased(..)) => to_line(kv),
        Command::Lease(l) => format!("LEASE {l:?}"),
        Command::Open(a, c) => format!("OPEN {a} {c}"),
        Command::Transfer(t) => format!("TRANSFER {} {} {} {}", t.txid, t.from, t.to, t.cents),
        Command::Balance(a) => format!("BALANCE {a}"),
        Command::Audit => "AUDIT".into(),
        Command::Register => "REGISTER".into(),
        Command::SetQuota(q) => format!("SET_QUOTA {q}"),
    }
}

pub(super) fn show_request(request: &Request) -> String {
    match request {
        Request::RequestVote(a) => format!(
            "{}RequestVote term={} last={}@{}{}",
            if a.pre_vote { "Pre" } else { "" },
            a.term,
            a.last_log_index,
            a.last_log_term,
            if a.leadership_transfer {
                " (leadership transfer)"
            } else {
                ""
            }
        ),
        Request::TimeoutNow(a) => format!("TimeoutNow term={}", a.term),
        Request::AppendEntries(a) => format!(
            "AppendEntries term={} prev={}@{} entries={} commit={}",
            a.term,
            a.prev_log_index,
            a.prev_log_term,
            a.entries.len(),
            a.leader_commit
        ),
        Request::InstallSnapshot(a) => format!(
            "InstallSnapshot term={} last={}@{} bytes {}..{} of {}{}",
            a.term,
            a.last_included_index,
            a.last_included_term,
            a.offset,
            a.offset + a.data.len() as u64,
            a.size,
            if a.done { " (done)" } else { "" }
        ),
    }
}

pub(super) fn show_persist(p: &Persist) -> String {
    let mut parts = Vec::new();
    if let Some(hs) = p.hard_state {
        parts.push(format!("term={} vote={:?}", hs.current_term, hs.voted_for));
    }
    if let Some(s) = &p.snapshot {
        parts.push(format!("snapshot through {}", s.last_included_index));
    }
    if let Some(w) = &p.log {
        parts.push(format!(
            "log from {} ({} entries)",
            w.first_index,
            w.entries.len()
        ));
    }
    parts.join(", ")
}
