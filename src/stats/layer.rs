//! Per-layer figures: hits, misses, writes, ... and latency by command class, one cache line
//! set per worker so the hot path never shares a line with another thread.

use std::sync::atomic::{AtomicI64, Ordering};

use super::counter::Counter;
use super::latency::{Latency, SharedLatency};

/// The kind of a command, for latency figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Reads data (Redis's `readonly` flag).
    Read = 0,
    /// Writes data (`write` flag).
    Write = 1,
    /// Everything else (admin, keyspace-wide, local commands).
    Other = 2,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Read, Class::Write, Class::Other];

    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Other => "other",
        }
    }
}

/// One worker's figures for one layer.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LayerWorker {
    /// Reads that found a value (per key for MGET and EXISTS).
    pub hits: Counter,
    /// Reads that found nothing: nil, an empty collection, EXISTS 0.
    pub misses: Counter,
    /// Successful writes (per key for MSET).
    pub writes: Counter,
    /// Keys named by successful DEL / UNLINK / GETDEL.
    pub deletes: Counter,
    /// Keys removed by STRATA INVALIDATE.
    pub invalidations: Counter,
    /// TTLs strata set or clamped by the layer's TTL policy.
    pub expirations: Counter,
    /// Keys written by STRATA WARM.
    pub warms: Counter,
    /// Requests of the layer answered with an error.
    pub errors: Counter,
    /// Reads that moved on to the next replica after an error or a slow answer.
    pub failovers: Counter,
    /// Reads answered by a later replica after a miss on the first (miss failover).
    pub miss_failovers: Counter,
    /// Replica copies rewritten by read repair or miss failover.
    pub repairs: Counter,
    /// Writes that reached fewer replicas than their consistency needs.
    pub write_failures: Counter,
    /// GETs answered from the near cache.
    pub near_hits: Counter,
    /// GETs of a near-cached layer that went to a node (fills).
    pub near_misses: Counter,
    /// Reads that waited for an identical read in flight instead of being sent (coalescing).
    pub coalesced: Counter,
    /// Request latency by [`Class`].
    pub latency: [SharedLatency; 3],
}

/// Every worker's figures for one layer, plus the key count found by the last SCAN pass.
#[derive(Debug)]
pub struct LayerStats {
    workers: Box<[LayerWorker]>,
    /// Keys of the layer on the nodes at the last count; -1 before the first one.
    keys: AtomicI64,
}

/// A layer's figures summed over the workers.
#[derive(Debug, Default, Clone)]
pub struct LayerTotals {
    pub hits: u64,
    pub misses: u64,
    pub writes: u64,
    pub deletes: u64,
    pub invalidations: u64,
    pub expirations: u64,
    pub warms: u64,
    pub errors: u64,
    pub failovers: u64,
    pub miss_failovers: u64,
    pub repairs: u64,
    pub write_failures: u64,
    pub near_hits: u64,
    pub near_misses: u64,
    pub coalesced: u64,
    /// By [`Class`].
    pub latency: [Latency; 3],
    /// None until the first count.
    pub keys: Option<u64>,
}

impl LayerTotals {
    /// hits / (hits + misses); 0 when there were no reads.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }

    /// Every class together.
    pub fn all_latency(&self) -> Latency {
        let mut all = Latency::default();
        for l in &self.latency {
            all.merge(l);
        }
        all
    }
}

impl LayerStats {
    pub fn new(workers: usize) -> LayerStats {
        LayerStats {
            workers: (0..workers.max(1))
                .map(|_| LayerWorker::default())
                .collect(),
            keys: AtomicI64::new(-1),
        }
    }

    /// Worker `index`'s figures (only that worker's thread may add to them).
    pub fn worker(&self, index: usize) -> Option<&LayerWorker> {
        self.workers.get(index)
    }

    pub fn set_keys(&self, keys: u64) {
        self.keys
            .store(i64::try_from(keys).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn totals(&self) -> LayerTotals {
        let mut t = LayerTotals::default();
        for w in self.workers.iter() {
            t.hits += w.hits.get();
            t.misses += w.misses.get();
            t.writes += w.writes.get();
            t.deletes += w.deletes.get();
            t.invalidations += w.invalidations.get();
            t.expirations += w.expirations.get();
            t.warms += w.warms.get();
            t.errors += w.errors.get();
            t.failovers += w.failovers.get();
            t.miss_failovers += w.miss_failovers.get();
            t.repairs += w.repairs.get();
            t.write_failures += w.write_failures.get();
            t.near_hits += w.near_hits.get();
            t.near_misses += w.near_misses.get();
            t.coalesced += w.coalesced.get();
            for (sum, l) in t.latency.iter_mut().zip(&w.latency) {
                sum.merge(&l.snapshot());
            }
        }
        let keys = self.keys.load(Ordering::Relaxed);
        t.keys = u64::try_from(keys).ok();
        t
    }

    /// CONFIG RESETSTAT (the key count is a gauge, not a statistic: it stays).
    pub fn reset(&self) {
        for w in self.workers.iter() {
            for c in [
                &w.hits,
                &w.misses,
                &w.writes,
                &w.deletes,
                &w.invalidations,
                &w.expirations,
                &w.warms,
                &w.errors,
                &w.failovers,
                &w.miss_failovers,
                &w.near_hits,
                &w.near_misses,
                &w.coalesced,
                &w.repairs,
                &w.write_failures,
            ] {
                c.reset();
            }
            for l in &w.latency {
                l.reset();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_workers() {
        let s = LayerStats::new(2);
        s.worker(0).unwrap().hits.add(3);
        s.worker(1).unwrap().hits.add(1);
        s.worker(1).unwrap().misses.add(4);
        s.worker(0).unwrap().latency[Class::Read as usize].with(|l| l.record(100));
        let t = s.totals();
        assert_eq!((t.hits, t.misses), (4, 4));
        assert_eq!(t.hit_rate(), 0.5);
        assert_eq!(t.all_latency().count(), 1);
        assert_eq!(t.keys, None);
        s.set_keys(7);
        s.reset();
        let t = s.totals();
        assert_eq!((t.hits, t.misses, t.keys), (0, 0, Some(7)));
        assert_eq!(t.all_latency().count(), 0);
    }
}
