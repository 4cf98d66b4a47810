//! Summaries of rows and the Markdown table they are printed in.

use std::time::Duration;

use crate::load::RowResult;

/// One row's figures, over all its repetitions.
pub struct Stats {
    /// Successful commands.
    pub ops: usize,
    /// Successful commands per second of wall time.
    pub rate: f64,
    /// Latency percentiles and maximum, ns: p50, p95, p99, p99.9, max.
    pub p50: u64,
    p95: u64,
    /// p99, ns.
    pub p99: u64,
    p999: u64,
    max: u64,
    /// Server CPU seconds per 1,000 successful commands.
    pub server_cpu: Option<f64>,
    /// This process's CPU seconds per 1,000 successful commands.
    bench_cpu: Option<f64>,
    errors: u64,
    retries: u64,
    /// The first error's text, for a note under the table.
    pub first_error: Option<String>,
}

impl Stats {
    /// Merges repetitions: their latencies pooled, throughput and CPU as
    /// totals over totals.
    pub fn merge(runs: &[RowResult]) -> Stats {
        let mut latencies: Vec<u64> = runs.iter().flat_map(|r| r.latencies.clone()).collect();
        latencies.sort_unstable();
        let ops = latencies.len();
        let elapsed: Duration = runs.iter().map(|r| r.elapsed).sum();
        let per_1k = |cpu: Option<Duration>| {
            cpu.filter(|_| ops > 0)
                .map(|c| c.as_secs_f64() / ops as f64 * 1000.0)
        };
        Stats {
            ops,
            rate: ops as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
            p999: percentile(&latencies, 0.999),
            max: latencies.last().copied().unwrap_or(0),
            server_cpu: per_1k(runs.iter().map(|r| r.server_cpu).sum()),
            bench_cpu: per_1k(runs.iter().map(|r| r.bench_cpu).sum()),
            errors: runs.iter().map(|r| r.errors).sum(),
            retries: runs.iter().map(|r| r.retries).sum(),
            first_error: runs.iter().find_map(|r| r.first_error.clone()),
        }
    }
}

/// The table's header.
pub const HEADER: &str = "\
| mode | clients | bin | ops | ops/s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | server CPU s/1k ops | bench CPU s/1k ops | errors | retries |
|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// One binary's line of a row.
pub fn line(mode: &str, clients: usize, bin: &str, s: &Stats) -> String {
    format!(
        "| {mode} | {clients} | {bin} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        s.ops,
        s.rate,
        ms(s.p50),
        ms(s.p95),
        ms(s.p99),
        ms(s.p999),
        ms(s.max),
        cpu(s.server_cpu),
        cpu(s.bench_cpu),
        s.errors,
        s.retries,
    )
}

/// The B/A line of a row: throughput, p50, p99 and server CPU of B over A's.
pub fn ratio_line(mode: &str, clients: usize, a: &Stats, b: &Stats) -> String {
    let ratio = |b: f64, a: f64| {
        if a > 0.0 {
            format!("{:.2}×", b / a)
        } else {
            "-".into()
        }
    };
    let cpu_ratio = match (a.server_cpu, b.server_cpu) {
        (Some(a), Some(b)) => ratio(b, a),
        _ => "-".into(),
    };
    format!(
        "| {mode} | {clients} | **B/A** | | **{}** | **{}** | | **{}** | | | {cpu_ratio} | | | |",
        ratio(b.rate, a.rate),
        ratio(b.p50 as f64, a.p50 as f64),
        ratio(b.p99 as f64, a.p99 as f64),
    )
}

/// The value at fraction `p` of `sorted` (nearest rank); 0 if empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// Nanoseconds as milliseconds: 3 decimals below 1 ms, else 2.
pub fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.2}")
    }
}

fn cpu(seconds: Option<f64>) -> String {
    seconds.map_or("-".into(), |s| format!("{s:.3}"))
}
