//! Watches: the hub that hands the history's changes to watchers, the
//! `WATCH` request, and the event lines a watch streams.
//!
//! ```text
//! WATCH <key> [FROM rev]           WATCH64 <key64> [FROM rev]
//! WATCH PREFIX <p> [FROM rev]      WATCH64 PREFIX <p64> [FROM rev]
//! ```
//! A watch streams one line per change, in revision order:
//! `PUT <key> <value> <rev>` and `DELETE <key> <rev>` (`PUT64 <key64>
//! <value64> <rev>`, `DELETE64 <key64> <rev>` for bytes a text line cannot
//! carry, and always for `WATCH64`), until the client sends `CANCEL`
//! (answered `CANCELED`) or closes. Without `FROM` it starts after the
//! current revision (etcd's default). A `FROM` older than the history kept
//! is `ERR COMPACTED oldest=<rev>`.
//!
//! The apply loop never waits for a watcher: it records an entry's changes
//! in the [`History`] under the hub's lock (a push) and wakes the watchers
//! once per batch. Each watcher runs on its own connection's thread: it
//! waits on the hub's condvar, copies the changes past its cursor that its
//! filter accepts (under the lock, briefly), and writes them with blocking
//! I/O outside the lock. Trade-off: one condvar for all watchers means a
//! batch wakes every watcher, even those whose keys did not change; with
//! watchers bounded ([`DEFAULT_MAX_WATCHERS`]) that costs less than keeping
//! a wake-up list per key.
//!
//! A watcher whose client does not read falls behind: its blocking write
//! stalls while the history grows. Once a write leaves it further behind
//! than when it began, and more than the lag bound behind the head, it is
//! cancelled with `CANCELED resume=<rev>`: the revision to resume from
//! (here or on any other server). A watcher catching up from an old `FROM`
//! shrinks its lag with every write, so it is never cancelled for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::command::Error;
use super::history::{History, DEFAULT_HISTORY_BYTES};
use super::kv::Change;
use super::reply::Code;
use super::txn::check_key;
use crate::transport::line::{base64_decode, base64_encode};

/// Default lag past which a watcher is cancelled, in bytes (`-watch-lag-bytes`).
pub const DEFAULT_LAG_BYTES: u64 = 4 << 20;
/// Default bound on open watches per server (`-max-watchers`).
pub const DEFAULT_MAX_WATCHERS: usize = 256;
/// About how many bytes of history one copy scans (then the watcher writes
/// them and comes back).
const BATCH_BYTES: u64 = 256 << 10;

/// The bounds of a server's watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// Most bytes of history kept.
    pub history_bytes: u64,
    /// How far behind the head a watcher may fall (see the module docs).
    pub lag_bytes: u64,
    /// Most open watches.
    pub max_watchers: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            history_bytes: DEFAULT_HISTORY_BYTES,
            lag_bytes: DEFAULT_LAG_BYTES,
            max_watchers: DEFAULT_MAX_WATCHERS,
        }
    }
}

/// Which keys a watch follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFilter {
    /// One key.
    Key(Vec<u8>),
    /// Every key that starts with these bytes.
    Prefix(Vec<u8>),
}

impl WatchFilter {
    /// Whether `key` is followed.
    pub fn accepts(&self, key: &[u8]) -> bool {
        match self {
            WatchFilter::Key(k) => k == key,
            WatchFilter::Prefix(p) => key.starts_with(p),
        }
    }
}

/// A parsed `WATCH` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRequest {
    /// The keys followed.
    pub filter: WatchFilter,
    /// The first revision to report; `None`: after the current one.
    pub from: Option<u64>,
    /// Every event in its base64 form (`WATCH64`).
    pub base64: bool,
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(Code::BadRequest, message)
}

/// Parses a `WATCH`/`WATCH64` line's arguments (`word` is the command word
/// in capitals); `None` if `word` is neither.
pub fn parse_watch(word: &str, rest: &str) -> Option<Result<WatchRequest, Error>> {
    let base64 = match word {
        "WATCH" => false,
        "WATCH64" => true,
        _ => return None,
    };
    let usage = || {
        bad(format!(
            "usage: {word} <key> | {word} PREFIX <p>, then [FROM rev]"
        ))
    };
    let mut args: Vec<&str> = rest.split_whitespace().collect();
    let mut from = None;
    if args.len() >= 2 && args[args.len() - 2].eq_ignore_ascii_case("FROM") {
        let rev = args[args.len() - 1];
        let parsed = rev.parse::<u64>().ok().filter(|&r| r > 0);
        let Some(rev) = parsed else {
            return Some(Err(bad(format!("FROM {rev}: a revision is 1 or more"))));
        };
        from = Some(rev);
        args.truncate(args.len() - 2);
    }
    let bytes = |arg: &str| -> Result<Vec<u8>, Error> {
        if base64 {
            base64_decode(arg.as_bytes()).ok_or_else(|| bad(format!("{arg} is not base64")))
        } else {
            Ok(arg.as_bytes().to_vec())
        }
    };
    let filter = match args[..] {
        [p, prefix] if p.eq_ignore_ascii_case("PREFIX") => bytes(prefix).and_then(|p| {
            check_key(&p)?;
            Ok(WatchFilter::Prefix(p))
        }),
        [key] => bytes(key).and_then(|k| {
            check_key(&k)?;
            Ok(WatchFilter::Key(k))
        }),
        _ => Err(usage()),
    };
    Some(filter.map(|filter| WatchRequest {
        filter,
        from,
        base64,
    }))
}

/// A change as a watch event line (without its line ending).
pub fn event_line(change: &Change, base64: bool) -> String {
    let key = std::str::from_utf8(&change.key)
        .ok()
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    match (&change.value, key) {
        (None, Some(key)) if !base64 => format!("DELETE {key} {}", change.revision),
        (None, _) => format!(
            "DELETE64 {} {}",
            base64_encode(&change.key),
            change.revision
        ),
        (Some(value), Some(key)) if !base64 => match std::str::from_utf8(value) {
            Ok(text) if !text.contains(['\r', '\n']) => {
                format!("PUT {key} {text} {}", change.revision)
            }
            _ => put64(change, value),
        },
        (Some(value), _) => put64(change, value),
    }
}

fn put64(change: &Change, value: &[u8]) -> String {
    format!(
        "PUT64 {} {} {}",
        base64_encode(&change.key),
        base64_encode(value),
        change.revision
    )
}

/// One event a watch reported, read back from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The revision of the write.
    pub revision: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The new value; `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl WatchEvent {
    /// Reads an event line back; `None` if `line` is not one.
    pub fn parse_line(line: &str) -> Option<WatchEvent> {
        let (word, rest) = line.split_once(' ')?;
        let (body, revision) = rest.rsplit_once(' ')?;
        let revision = revision.parse().ok()?;
        let decode = |s: &str| base64_decode(s.as_bytes());
        let (key, value) = match word {
            "DELETE" => (body.as_bytes().to_vec(), None),
            "DELETE64" => (decode(body)?, None),
            "PUT" => {
                let (key, value) = body.split_once(' ')?;
                (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
            }
            "PUT64" => {
                let (key, value) = body.split_once(' ')?;
                (decode(key)?, Some(decode(value)?))
            }
            _ => return None,
        };
        Some(WatchEvent {
            revision,
            key,
            value,
        })
    }
}

/// Why a watcher stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// Its next revision is no longer kept (the history moved past it, or
    /// this server restored a snapshot beyond it): the oldest revision kept.
    Compacted(u64),
}

/// The history and the watchers waiting on it.
#[derive(Debug)]
pub struct WatchHub {
    history: Mutex<History>,
    /// Notified after each batch of applied entries, and on a restore.
    changed: Condvar,
    watchers: AtomicUsize,
    limits: WatchLimits,
}

/// A place among the open watches, given back when dropped.
#[derive(Debug)]
pub struct WatcherSlot<'a>(&'a WatchHub);

impl Drop for WatcherSlot<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchHub {
    /// A hub for a store at revision 0.
    pub fn new(limits: WatchLimits) -> WatchHub {
        WatchHub {
            history: Mutex::new(History::new(0, limits.history_bytes)),
            changed: Condvar::new(),
            watchers: AtomicUsize::new(0),
            limits,
        }
    }

    /// The hub's bounds.
    pub fn limits(&self) -> WatchLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one applied entry's changes (the apply loop; watchers are
    /// woken by [`WatchHub::notify`]).
    pub fn record(&self, changes: &[Change]) {
        if !changes.is_empty() {
            self.lock().record(changes);
        }
    }

    /// Wakes every watcher (after a batch).
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// The store was replaced by a snapshot at revision `head`: the history
    /// starts over after it.
    pub fn reset(&self, head: u64) {
        self.lock().reset(head);
        self.notify();
    }

    /// The history's (oldest kept, head) revisions.
    pub fn bounds(&self) -> (u64, u64) {
        let h = self.lock();
        (h.oldest(), h.head())
    }

    /// Opens a watch, if fewer than the bound are open (else `ERR BUSY`).
    pub fn register(&self) -> Result<WatcherSlot<'_>, Error> {
        let open = self.watchers.fetch_add(1, Ordering::SeqCst);
        let slot = WatcherSlot(self);
        if open >= self.limits.max_watchers {
            return Err(Error::new(
                Code::Busy,
                format!("{open} watches are open, the most this server keeps; try later"),
            ));
        }
        Ok(slot)
    }

    /// Open watches.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::SeqCst)
    }

    /// Where a watch starting `from` begins: `from`, or after the head;
    /// `Err` if `from` is no longer kept.
    pub fn start(&self, from: Option<u64>) -> Result<u64, WatchEnd> {
        let h = self.lock();
        let from = from.unwrap_or(h.head() + 1);
        if from < h.oldest() {
            return Err(WatchEnd::Compacted(h.oldest()));
        }
        Ok(from)
    }

    /// Waits up to `wait` for changes from revision `from` on, and copies
    /// those `filter` accepts (whole revisions, about a batch's bytes);
    /// returns them, the next revision to ask for, and how far behind the
    /// head that next revision is, in bytes.
    pub fn next(
        &self,
        from: u64,
        filter: &WatchFilter,
        wait: Duration,
    ) -> Result<(Vec<Change>, u64, u64), WatchEnd> {
        let mut h = self.lock();
        if h.head() < from && from >= h.oldest() {
            h = self
                .changed
                .wait_timeout_while(h, wait, |h| h.head() < from && from >= h.oldest())
                .map(|(h, _)| h)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let (changes, next) = h
            .read(from, BATCH_BYTES, |c| filter.accepts(&c.key))
            .map_err(WatchEnd::Compacted)?;
        Ok((changes, next, h.lag(next)))
    }

    /// How far behind the head revision `from` is, in bytes.
    pub fn lag(&self, from: u64) -> u64 {
        self.lock().lag(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn change(revision: u64, key: &[u8], value: Option<&[u8]>) -> Change {
        Change {
            revision,
            key: Arc::from(key),
            value: value.map(|v| Arc::new(v.to_vec())),
        }
    }

    #[test]
    fn watch_lines_parse_keys_prefixes_and_from() {
        let parse = |line: &str| {
            let (w, rest) = line.split_once(' ').unwrap_or((line, ""));
            parse_watch(w, rest).unwrap()
        };
        assert_eq!(
            parse("WATCH k"),
            Ok(WatchRequest {
                filter: WatchFilter::Key(b"k".to_vec()),
                from: None,
                base64: false
            })
        );
        assert_eq!(
            parse("WATCH PREFIX app/ FROM 7").map(|r| (r.filter, r.from)),
            Ok((WatchFilter::Prefix(b"app/".to_vec()), Some(7)))
        );
        assert_eq!(
            parse("WATCH64 PREFIX /w== from 3").map(|r| (r.filter, r.from, r.base64)),
            Ok((WatchFilter::Prefix(vec![0xff]), Some(3), true))
        );
        for bad in [
            "WATCH",
            "WATCH a b",
            "WATCH k FROM 0",
            "WATCH k FROM x",
            "WATCH64 !",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_watch("GET", "k").is_none());
    }

    #[test]
    fn event_lines_read_back_as_the_same_event() {
        for (c, base64) in [
            (change(5, b"k", Some(b"a value  with spaces ")), false),
            (change(5, b"k", Some(b"")), false),
            (change(6, b"k", None), false),
            (change(7, b"two words", Some(b"x")), false),
            (change(8, b"k", Some(b"line\nbreak")), false),
            (change(9, &[0, 0xff], None), false),
            (change(10, b"k", Some(b"v")), true),
        ] {
            let line = event_line(&c, base64);
            let event = WatchEvent::parse_line(&line).unwrap();
            assert_eq!(
                (event.revision, &event.key[..], event.value.as_deref()),
                (c.revision, &c.key[..], c.value.as_deref().map(|v| &v[..])),
                "{line}"
            );
        }
        assert_eq!(
            event_line(&change(3, b"k", Some(b"v w")), false),
            "PUT k v w 3"
        );
        assert_eq!(event_line(&change(4, b"k", None), false), "DELETE k 4");
        assert!(WatchEvent::parse_line("CANCELED resume=4").is_none());
    }

    #[test]
    fn a_watcher_gets_its_keys_changes_and_the_bound_refuses_one_too_many() {
        let hub = WatchHub::new(WatchLimits {
            max_watchers: 1,
            ..WatchLimits::default()
        });
        let slot = hub.register().unwrap();
        assert_eq!(hub.register().unwrap_err().code, Code::Busy);
        drop(slot);
        assert!(hub.register().is_ok());
        let from = hub.start(None).unwrap();
        assert_eq!(from, 1);
        hub.record(&[change(1, b"a/1", Some(b"x")), change(1, b"b", Some(b"y"))]);
        hub.record(&[change(2, b"a/1", None)]);
        let filter = WatchFilter::Prefix(b"a/".to_vec());
        let (got, next, lag) = hub.next(from, &filter, Duration::ZERO).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((next, lag), (3, 0));
        let (none, next, _) = hub.next(3, &filter, Duration::from_millis(1)).unwrap();
        assert!(none.is_empty());
        assert_eq!(next, 3);
        hub.reset(10);
        assert_eq!(
            hub.next(3, &filter, Duration::ZERO),
            Err(WatchEnd::Compacted(11))
        );
        assert_eq!(hub.start(Some(2)), Err(WatchEnd::Compacted(11)));
    }
}
