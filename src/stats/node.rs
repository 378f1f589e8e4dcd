//! Per-node figures as seen from strata: requests, failures, timeouts and round-trip latency,
//! one set per worker (each worker has its own connections to every node).

use super::counter::Counter;
use super::latency::{Latency, SharedLatency};

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
    /// Time from writing a request to reading its reply.
    pub latency: SharedLatency,
}

/// Every worker's figures for one node.
#[derive(Debug)]
pub struct NodeStats {
    workers: Box<[NodeWorker]>,
}

/// A node's figures summed over the workers.
#[derive(Debug, Default, Clone)]
pub struct NodeTotals {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
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
            t.latency.merge(&w.latency.snapshot());
        }
        t
    }

    pub fn reset(&self) {
        for w in self.workers.iter() {
            w.requests.reset();
            w.errors.reset();
            w.timeouts.reset();
            w.latency.reset();
        }
    }
}
