//! One-line event logs on stderr, prefixed with time, node id and term.
//!
//! `node 2 [term 5] became leader (votes from 1,3)`: every line names the node and
//! its term, as etcd's raft logger does, so interleaved logs from a cluster read
//! as a story. Two levels: events that matter (elections, leadership, snapshots,
//! faults) always print; detail prints only after [`set_verbose`]`(true)` (`-v`).
//! Logging can be silenced entirely with [`set_quiet`] (tests with many nodes).
//!
//! The simulator runs a whole cluster on one thread with a virtual clock: it
//! redirects that thread's lines with [`capture`], so the core's own log lines
//! become its trace, stamped with virtual time instead of the wall clock.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const QUIET: u8 = 0;
const INFO: u8 = 1;
const DEBUG: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(INFO);

/// How much a thread that [`capture`]s its lines wants to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Nothing (and no formatting cost).
    Quiet,
    /// Events that matter.
    Info,
    /// Events and detail.
    Debug,
}

/// Receives one captured line: node id, term, message.
pub type Sink = Box<dyn FnMut(u64, u64, fmt::Arguments<'_>)>;

thread_local! {
    /// This thread's level, if it captures its lines.
    static THREAD_LEVEL: Cell<Option<u8>> = const { Cell::new(None) };
    /// Where this thread's lines go, if it captures them.
    static THREAD_SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Sends this thread's log lines at `level` to `sink` instead of stderr;
/// `None` restores the process-wide behaviour.
pub fn capture(level: Level, sink: Option<Sink>) {
    let captured = sink.is_some();
    THREAD_SINK.with(|s| *s.borrow_mut() = sink);
    let level = match level {
        Level::Quiet => QUIET,
        Level::Info => INFO,
        Level::Debug => DEBUG,
    };
    THREAD_LEVEL.with(|l| l.set(captured.then_some(level)));
}

fn level() -> u8 {
    THREAD_LEVEL
        .with(Cell::get)
        .unwrap_or_else(|| LEVEL.load(Ordering::Relaxed))
}

/// Turns detail logging on or off.
pub fn set_verbose(on: bool) {
    LEVEL.store(if on { DEBUG } else { INFO }, Ordering::Relaxed);
}

/// Silences all logging (or restores the default level).
pub fn set_quiet(on: bool) {
    LEVEL.store(if on { QUIET } else { INFO }, Ordering::Relaxed);
}

/// Whether detail lines are printed.
pub fn verbose() -> bool {
    level() >= DEBUG
}

/// Whether event lines are printed.
pub fn enabled() -> bool {
    level() >= INFO
}

/// Prints one line: `<time> node <id> [term <term>] <message>`, or hands it to
/// this thread's sink.
pub fn line(id: u64, term: u64, message: fmt::Arguments<'_>) {
    let captured = THREAD_SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(sink) => {
            sink(id, term, message);
            true
        }
        None => false,
    });
    if !captured {
        eprintln!("{} node {id} [term {term}] {message}", timestamp());
    }
}

/// UTC wall-clock time as `2026-11-22T20:41:03.123Z`.
pub fn timestamp() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a (year, month, day) date; Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Logs an event that matters: `info!(id, term, "became leader")`.
#[macro_export]
macro_rules! info {
    ($id:expr, $term:expr, $($arg:tt)*) => {
        if $crate::logger::enabled() {
            $crate::logger::line($id, $term, format_args!($($arg)*));
        }
    };
}

/// Logs detail, printed only with `-v`.
#[macro_export]
macro_rules! debug {
    ($id:expr, $term:expr, $($arg:tt)*) => {
        if $crate::logger::verbose() {
            $crate::logger::line($id, $term, format_args!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_capture_its_lines() {
        let lines = std::rc::Rc::new(RefCell::new(Vec::new()));
        let seen = std::rc::Rc::clone(&lines);
        capture(
            Level::Info,
            Some(Box::new(move |id, term, m| {
                seen.borrow_mut().push(format!("{id}@{term} {m}"))
            })),
        );
        crate::info!(2, 5, "became leader");
        crate::debug!(2, 5, "detail is below the captured level");
        capture(Level::Quiet, None);
        assert_eq!(*lines.borrow(), vec!["2@5 became leader".to_string()]);
    }

    #[test]
    fn civil_dates_are_right_around_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }
}
