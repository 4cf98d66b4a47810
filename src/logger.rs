//! One-line event logs on stderr, prefixed with time, node id and term.
//!
//! `node 2 [term 5] became leader (votes from 1,3)`: every line names the node and
//! its term, as etcd's raft logger does, so interleaved logs from a cluster read
//! as a story. Two levels: events that matter (elections, leadership, snapshots,
//! faults) always print; detail prints only after [`set_verbose`]`(true)` (`-v`).
//! Logging can be silenced entirely with [`set_quiet`] (tests with many nodes).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const QUIET: u8 = 0;
const INFO: u8 = 1;
const DEBUG: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(INFO);

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
    LEVEL.load(Ordering::Relaxed) >= DEBUG
}

/// Whether event lines are printed.
pub fn enabled() -> bool {
    LEVEL.load(Ordering::Relaxed) >= INFO
}

/// Prints one line: `<time> node <id> [term <term>] <message>`.
pub fn line(id: u64, term: u64, message: std::fmt::Arguments<'_>) {
    eprintln!("{} node {id} [term {term}] {message}", timestamp());
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
    fn civil_dates_are_right_around_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }
}
