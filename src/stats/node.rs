//! Per-node figures as seen from strata: requests, failures, timeouts and round-trip latency,
//! one set per worker (each worker has its own connections to every node).

use super::counter::Counter;
use super::latency::{Latency, SharedLatency};

/// Slots of the per-kind failure counters: one per `backend::ErrorKind` (kept equal by an
/// assertion there; the kinds are named where the figures are rendered, so this module needs
/// nothing from `backend`).
pub const ERROR_KINDS: usize = 8;

/// One worker's figures for one node.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct NodeWorker {
    /// Requests written to the node.
    pub requests: Counter,
    /// Requests that got no reply: node unreachable, connection lost, timed out.
    pub errors: Counter,
    /// Of those, the ones that timed out.
    pub timeouts: Counter,
    /// `errors` by the kind of failure (index: `backend::ErrorKind::index`).
    pub errors_by_kind: [Counter; ERROR_KINDS],
    /// Time from writing a request to reading its reply.
    pub latency: SharedLatency,
}

/// Every worker's figures for one node.
#[derive(Debug)]
pub struct NodeStats {
    workers: Box<[NodeWorker]>,
}

impl NodeWorker {
    /// `n` requests got no reply, failing with the error kind in slot `kind`
    /// (`backend::ErrorKind::index`): counted in `errors` and in that kind's count.
    pub fn failed(&self, kind: usize, n: u64) {
        self.errors.add(n);
        if let Some(c) = self.errors_by_kind.get(kind) {
            c.add(n);
        }
    }
}

/// A node's figures summed over the workers.
#[derive(Debug, Default, Clone)]
pub struct NodeTotals {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// `errors` by kind (index: `backend::ErrorKind::index`).
    pub errors_by_kind: [u64; ERROR_KINDS],
    pub latency: Latency,
}

impl NodeStats {
    pub fn new(workers: usize) -> NodeStats {
        NodeStats {
            workers: (0..workers.max(1)).map(|_| NodeWorker::default()).collect(),
        }
    }

    pub fn worker(&self, index: usize) -> Option<&NodeWorker> {
        self.workers.get(index)
    }

    pub fn totals(&self) -> NodeTotals {
        let mut t = NodeTotals::default();
        for w in self.workers.iter() {
            t.requests += w.requests.get();
            t.errors += w.errors.get();
            t.timeouts += w.timeouts.get();
            for (sum, c) in t.errors_by_kind.iter_mut().zip(&w.errors_by_kind) {
                *sum += c.get();
            }
            t.latency.merge(&w.latency.snapshot());
        }
        t
    }

    pub fn reset(&self) {
        for w in self.workers.iter() {
            w.requests.reset();
            w.errors.reset();
            w.timeouts.reset();
            for c in &w.errors_by_kind {
                c.reset();
            }
            w.latency.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_in_errors_and_by_kind_over_workers() {
        let s = NodeStats::new(2);
        s.worker(0).unwrap().failed(1, 3);
        s.worker(1).unwrap().failed(1, 2);
        s.worker(1).unwrap().failed(3, 1);
        let t = s.totals();
        assert_eq!(t.errors, 6);
        assert_eq!(t.errors_by_kind, [0, 5, 0, 1, 0, 0, 0, 0]);
        assert_eq!(t.errors_by_kind.iter().sum::<u64>(), t.errors);
        s.reset();
        assert_eq!(s.totals().errors_by_kind, [0; ERROR_KINDS]);
    }
}
