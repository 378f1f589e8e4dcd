//! Latency histograms (hdrhistogram, microseconds) and the percentiles read from them.

use std::sync::{Mutex, MutexGuard};

use hdrhistogram::Histogram;

/// Largest latency recorded exactly, in microseconds (60 s); longer ones count as 60 s.
const MAX_USEC: u64 = 60_000_000;

/// The percentiles INFO, STRATA STATS and `/metrics` report.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9)];

/// Upper bounds (seconds) of the Prometheus histogram buckets.
pub const BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// One latency distribution: an hdrhistogram with two significant digits, plus the exact sum.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Option<Histogram<u64>>,
    sum_usec: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            // The bounds are constants that hdrhistogram accepts; `None` would only mean an
            // empty distribution, never a panic.
            hist: Histogram::new_with_bounds(1, MAX_USEC, 2).ok(),
            sum_usec: 0,
        }
    }
}

impl Latency {
    pub fn record(&mut self, usec: u64) {
        if let Some(h) = self.hist.as_mut() {
            h.saturating_record(usec.clamp(1, MAX_USEC));
        }
        self.sum_usec = self.sum_usec.saturating_add(usec);
    }

    pub fn count(&self) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.len())
    }

    pub fn sum_usec(&self) -> u64 {
        self.sum_usec
    }

    /// The latency at percentile `q` (0-100), in microseconds; 0 when nothing was recorded.
    pub fn percentile(&self, q: f64) -> u64 {
        match &self.hist {
            Some(h) if !h.is_empty() => h.value_at_percentile(q),
            _ => 0,
        }
    }

    /// Adds another distribution into this one.
    pub fn merge(&mut self, other: &Latency) {
        if let (Some(h), Some(o)) = (self.hist.as_mut(), other.hist.as_ref()) {
            // Same bounds on both sides, so adding cannot fail; ignore the impossible error.
            let _ = h.add(o);
        }
        self.sum_usec = self.sum_usec.saturating_add(other.sum_usec);
    }

    pub fn reset(&mut self) {
        if let Some(h) = self.hist.as_mut() {
            h.reset();
        }
        self.sum_usec = 0;
    }

    /// Counts per Prometheus bucket (not cumulative), the last one for `+Inf`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        let mut below = 0u64;
        for bound in BUCKETS {
            let upto = match &self.hist {
                // Whole microseconds: a 250 µs bound counts values up to 250 µs.
                Some(h) => h.count_between(0, (bound * 1e6) as u64),
                None => 0,
            };
            out.push((bound, upto.saturating_sub(below)));
            below = below.max(upto);
        }
        out.push((f64::INFINITY, self.count().saturating_sub(below)));
        out
    }
}

/// A latency distribution updated by one worker and read by others.
#[derive(Debug, Default)]
pub struct SharedLatency(Mutex<Latency>);

impl SharedLatency {
    /// Runs `f` on the distribution (the lock is uncontended but for readers).
    pub fn with<R>(&self, f: impl FnOnce(&mut Latency) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut l| f(&mut l))
    }

    /// Locks the distribution, to record several values at once.
    pub fn lock(&self) -> Option<MutexGuard<'_, Latency>> {
        self.0.lock().ok()
    }

    pub fn snapshot(&self) -> Latency {
        self.with(|l| l.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        self.with(|l| l.reset());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Latency::default();
        for us in 1..=100 {
            a.record(us);
        }
        assert_eq!(a.count(), 100);
        assert_eq!(a.sum_usec(), 5050);
        assert_eq!(a.percentile(50.0), 50);
        assert_eq!(a.percentile(99.0), 99);
        let mut b = Latency::default();
        b.record(10_000);
        a.merge(&b);
        assert_eq!(a.count(), 101);
        assert!(a.percentile(100.0) >= 9_900);
        a.reset();
        assert_eq!(a.count(), 0);
        assert_eq!(a.percentile(99.0), 0);
    }

    #[test]
    fn buckets_add_up() {
        let mut l = Latency::default();
        l.record(40); // 50 µs bucket
        l.record(700); // 1 ms bucket
        l.record(90_000_000); // clamped to 60 s: +Inf
        let b = l.buckets();
        assert_eq!(b.len(), BUCKETS.len() + 1);
        assert_eq!(b[0], (0.00005, 1));
        assert_eq!(b[4], (0.001, 1));
        assert_eq!(b.last().unwrap().1, 1);
        assert_eq!(b.iter().map(|(_, c)| c).sum::<u64>(), 3);
    }
}
