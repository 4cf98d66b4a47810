//! The Prometheus text exposition format, version 0.0.4.
//!
//! ```text
//! # HELP raftkv_disk_wal_fsync_duration_seconds Time to make ...
//! # TYPE raftkv_disk_wal_fsync_duration_seconds histogram
//! raftkv_disk_wal_fsync_duration_seconds_bucket{le="0.0001"} 3
//! ...
//! raftkv_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 12
//! raftkv_disk_wal_fsync_duration_seconds_sum 0.0041
//! raftkv_disk_wal_fsync_duration_seconds_count 12
//! ```
//!
//! Each family is one contiguous group that opens with `# HELP` and `# TYPE`;
//! lines end in `\n` (the last one too); label values escape `\`, `"` and
//! newline; help text escapes `\` and newline; infinities are `+Inf`/`-Inf`.

use std::fmt::Write;

use super::HistogramSnapshot;

/// The `Content-Type` of a text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, `_sum` and `_count`.
    Histogram,
}

/// Builds one exposition, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(is_metric_name(name), "bad metric name {name}");
        debug_assert_eq!(
            kind == Kind::Counter,
            name.ends_with("_total"),
            "{name}: counters, and only counters, end in _total"
        );
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(label), "bad label name {label}");
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{label}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family with one unlabeled counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help);
        self.sample(name, &[], value as f64);
    }

    /// A family with one unlabeled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    /// One histogram's samples (its family was opened with [`Kind::Histogram`]):
    /// cumulative `_bucket` lines ending with `le="+Inf"`, then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = h.bounds.get(i).map_or("+Inf".to_string(), |&b| number(b));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    /// The text, every line ending in `\n`.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, else the
/// shortest decimal that reads back as the same `f64` (Rust's `{}`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*` (colons are for recording rules, so not here).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn is_metric_name(name: &str) -> bool {
    is_label_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;

    #[test]
    fn a_histogram_has_cumulative_buckets_ending_in_plus_inf_equal_to_count() {
        static BOUNDS: [f64; 2] = [0.001, 0.5];
        let h = Histogram::new(&BOUNDS);
        for v in [0.0005, 0.2, 0.3, 9.0] {
            h.observe(v);
        }
        let mut e = Exposition::new();
        e.family("x_seconds", Kind::Histogram, "Test.");
        e.histogram("x_seconds", &[("to", "2")], &h.snapshot());
        assert_eq!(
            e.finish(),
            "# HELP x_seconds Test.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{to=\"2\",le=\"0.001\"} 1\n\
             x_seconds_bucket{to=\"2\",le=\"0.5\"} 3\n\
             x_seconds_bucket{to=\"2\",le=\"+Inf\"} 4\n\
             x_seconds_sum{to=\"2\"} 9.5005\n\
             x_seconds_count{to=\"2\"} 4\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped_and_numbers_are_prometheus_numbers() {
        let mut e = Exposition::new();
        e.family("y_total", Kind::Counter, "A \\ and a\nnewline.");
        e.sample("y_total", &[("cmd", "a\"b\\c\nd")], 3.0);
        e.gauge("z", "Infinite.", f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP y_total A \\\\ and a\\nnewline.\n# TYPE y_total counter\n\
             y_total{cmd=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP z Infinite.\n# TYPE z gauge\nz +Inf\n"
        );
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert!(is_label_name("to") && !is_label_name("1x") && !is_label_name("__x"));
    }
}
