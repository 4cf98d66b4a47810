//! Rate limits: failed authentication attempts per remote address, and the log
//! lines that failures cause.
//!
//! Both are small and lock a mutex per failure only, never on the happy path
//! of an authenticated request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lets one log line through per interval and counts the ones it held back,
/// so a flood of bad messages costs one line per interval, not one per message.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    /// When the last line was let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held_back)` if a line may be logged now (`held_back` lines were
    /// suppressed since the last one); `None` to stay quiet.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.state);
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let held_back = state.1;
                *state = (Some(now), 0);
                Some(held_back)
            }
        }
    }
}

/// The end of a rate-limited log line: how many like it were held back.
pub fn held_back_note(held_back: u64) -> String {
    match held_back {
        0 => String::new(),
        n => format!(" ({n} more like this not logged)"),
    }
}

/// A token bucket of failures per remote IP address: `burst` failures at once,
/// then one more per `refill`. While an address has no tokens left its
/// attempts are refused without being checked, which caps guessing at one try
/// per `refill` whatever the number of connections.
#[derive(Debug)]
pub struct FailureLimiter {
    burst: u32,
    refill: Duration,
    /// Bounded: at `max_addresses` entries, buckets that are full again are
    /// dropped, and if none is, the map is cleared (erring toward letting
    /// attempts through rather than growing).
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    max_addresses: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    updated: Instant,
}

impl FailureLimiter {
    /// `burst` failures, then one per `refill`, for each of at most
    /// `max_addresses` addresses tracked at once.
    pub fn new(burst: u32, refill: Duration, max_addresses: usize) -> Self {
        FailureLimiter {
            burst: burst.max(1),
            refill: refill.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
            max_addresses: max_addresses.max(1),
        }
    }

    fn refreshed(&self, bucket: Bucket, now: Instant) -> Bucket {
        let earned = now.duration_since(bucket.updated).as_millis() / self.refill.as_millis();
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        if earned == 0 {
            return bucket;
        }
        Bucket {
            tokens: bucket.tokens.saturating_add(earned).min(self.burst),
            updated: now,
        }
    }

    /// Whether `ip` may make an attempt now.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allows_at(ip, Instant::now())
    }

    fn allows_at(&self, ip: IpAddr, now: Instant) -> bool {
        let buckets = lock(&self.buckets);
        match buckets.get(&ip) {
            Some(&b) => self.refreshed(b, now).tokens > 0,
            None => true,
        }
    }

    /// Records a failed attempt by `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        self.record_failure_at(ip, Instant::now());
    }

    fn record_failure_at(&self, ip: IpAddr, now: Instant) {
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= self.max_addresses && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| self.refreshed(*b, now).tokens < self.burst);
            if buckets.len() >= self.max_addresses {
                buckets.clear();
            }
        }
        let full = Bucket {
            tokens: self.burst,
            updated: now,
        };
        let bucket = buckets.entry(ip).or_insert(full);
        let mut b = self.refreshed(*bucket, now);
        b.tokens = b.tokens.saturating_sub(1);
        *bucket = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.admit_at(start), Some(0));
        assert_eq!(t.admit_at(start + Duration::from_millis(10)), None);
        assert_eq!(t.admit_at(start + Duration::from_millis(900)), None);
        assert_eq!(t.admit_at(start + Duration::from_millis(1001)), Some(2));
        assert_eq!(t.admit_at(start + Duration::from_millis(1002)), None);
    }

    #[test]
    fn failures_beyond_the_burst_are_refused_until_tokens_refill() {
        let l = FailureLimiter::new(3, Duration::from_secs(1), 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.allows_at(ip, t0));
            l.record_failure_at(ip, t0);
        }
        assert!(!l.allows_at(ip, t0), "burst used up");
        assert!(l.allows_at(other, t0), "other addresses are unaffected");
        assert!(!l.allows_at(ip, t0 + Duration::from_millis(999)));
        assert!(
            l.allows_at(ip, t0 + Duration::from_millis(1000)),
            "refilled"
        );
    }

    #[test]
    fn the_limiter_never_tracks_more_than_its_bound() {
        let l = FailureLimiter::new(2, Duration::from_secs(60), 4);
        let t0 = Instant::now();
        for i in 0..100u8 {
            l.record_failure_at(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert!(lock(&l.buckets).len() <= 4);
    }
}
