//! Metrics: counters, gauges and fixed-bucket histograms, cheap enough to update
//! on every Raft event, and their Prometheus text encoding ([`text`]).
//!
//! There is no global registry: whoever owns a metric keeps it in a struct
//! field ([`raft::RaftMetrics`] for the Raft runtime, the frontend's request
//! counters, the server's connection count), and the `/metrics` page
//! (`src/http/metrics.rs`) reads them all and writes one family after another.
//! Trade-off: adding a metric means writing its line in that page too, but every
//! name, type and help text is in one place a reader can check against
//! Prometheus' naming rules.

pub mod raft;
pub mod text;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Latency buckets in seconds: 0.1 ms doubling to 3.28 s (etcd's peer
/// round-trip buckets). Loopback fsyncs and RPCs often take under 1 ms, where
/// etcd's 1 ms-first disk buckets would lose all detail.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// A count that only goes up (and restarts at 0 with the process).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of observations over fixed upper bounds.
///
/// One mutex guards the buckets, the sum and the count together, so a reader
/// always sees `+Inf` bucket == count (Prometheus requires it; `promtool` does
/// not check it).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramSnapshot>,
}

/// A histogram's contents at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, increasing; the implicit last bucket is `+Inf`.
    pub bounds: &'static [f64],
    /// Observations per bucket, not cumulative; one more entry than `bounds`
    /// (the last counts observations above every bound).
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (increasing).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds increase");
        Self {
            bounds,
            state: Mutex::new(HistogramSnapshot {
                bounds,
                counts: vec![0; bounds.len() + 1],
                sum: 0.0,
            }),
        }
    }

    /// An empty histogram over [`LATENCY_BUCKETS`].
    pub fn latency() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }

    /// Records one observation of `value`.
    pub fn observe(&self, value: f64) {
        // The first bucket whose bound is >= value (Prometheus' `le`).
        let bucket = self.bounds.partition_point(|&b| b < value);
        let mut state = self.lock();
        state.counts[bucket] += 1;
        state.sum += value;
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, took: Duration) {
        self.observe(took.as_secs_f64());
    }

    /// The current contents.
    pub fn snapshot(&self) -> HistogramSnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, HistogramSnapshot> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters told apart by a few label values (e.g. command and result).
///
/// The caller keeps label values to a small, fixed set (command words, error
/// codes, route templates): never keys, ids or anything a client chooses freely.
#[derive(Debug, Default)]
pub struct CounterVec {
    /// A handful of label combinations, each counted by an atomic: a request
    /// takes the read lock and finds its counter without allocating, so the
    /// connection threads that count every request do not queue on a mutex.
    counts: RwLock<Vec<(Vec<String>, AtomicU64)>>,
}

impl CounterVec {
    /// Adds one to the counter with these label values.
    pub fn inc(&self, labels: &[&str]) {
        let matches = |key: &[String]| key.iter().map(String::as_str).eq(labels.iter().copied());
        {
            let counts = self.counts.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, n)) = counts.iter().find(|(key, _)| matches(key)) {
                n.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut counts = self.counts.write().unwrap_or_else(|e| e.into_inner());
        match counts.iter().find(|(key, _)| matches(key)) {
            Some((_, n)) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let key = labels.iter().map(|l| l.to_string()).collect();
                counts.push((key, AtomicU64::new(1)));
            }
        }
    }

    /// Every counter so far, by label values, in sorted order.
    pub fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        let counts = self.counts.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = counts
            .iter()
            .map(|(k, n)| (k.clone(), n.load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        static BOUNDS: [f64; 3] = [0.1, 0.2, 0.4];
        let h = Histogram::new(&BOUNDS);
        for v in [0.05, 0.1, 0.15, 0.4, 7.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 1, 1, 1]);
        assert_eq!(s.count(), 5);
        assert!((s.sum - 7.7).abs() < 1e-9);
    }

    #[test]
    fn counters_and_labeled_counters_count() {
        let c = Counter::default();
        c.inc();
        c.add(2);
        assert_eq!(c.get(), 3);
        let v = CounterVec::default();
        v.inc(&["get", "ok"]);
        v.inc(&["get", "ok"]);
        v.inc(&["put", "NO_LEADER"]);
        assert_eq!(
            v.snapshot(),
            vec![
                (vec!["get".to_string(), "ok".to_string()], 2),
                (vec!["put".to_string(), "NO_LEADER".to_string()], 1)
            ]
        );
    }
}
