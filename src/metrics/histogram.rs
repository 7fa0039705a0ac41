//! A lock-free latency histogram: fixed buckets of relaxed atomic counters,
//! shared by every thread that observes, with quantiles for `stigmer status`
//! and its Prometheus rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram buckets, in seconds: 5 µs to 10 s, about
/// three per decade, covering a cross-CPU wake-up (~50 µs) up to an fsync on
/// a slow disk.
pub(crate) const BUCKETS: [f64; 20] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets; every operation is a relaxed
/// atomic add, so it may be shared by all threads.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile in microseconds, interpolated within its bucket
    /// (0 when empty).
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, n) in counts.iter().enumerate() {
            if *n > 0 && (seen + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let upper = BUCKETS.get(i).copied().unwrap_or(lower * 2.0);
                let within = ((rank - seen as f64) / *n as f64).clamp(0.0, 1.0);
                return (lower + (upper - lower) * within) * 1e6;
            }
            seen += n;
        }
        BUCKETS[BUCKETS.len() - 1] * 1e6
    }

    pub(super) fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Exposition;

    #[test]
    fn quantiles_and_exposition() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.observe(Duration::from_micros(20));
        }
        h.observe(Duration::from_millis(3));
        let p50 = h.quantile_us(0.5);
        assert!((10.0..=25.0).contains(&p50), "{p50}");
        let p99 = h.quantile_us(0.995);
        assert!(p99 > 2500.0, "{p99}");
        let mut e = Exposition::default();
        e.histogram("x_seconds", "help", &h)
            .counter("y_total", "help", 3);
        let text = e.finish();
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 100"), "{text}");
        assert!(text.contains("# TYPE y_total counter\ny_total 3"), "{text}");
        assert_eq!(Histogram::default().quantile_us(0.5), 0.0);
    }
}
