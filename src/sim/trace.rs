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

use super::{format_time, Time};
use crate::logger::{self, Level};

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
