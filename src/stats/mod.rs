//! Counters behind INFO's `# Stats` section.
//!
//! Each worker thread counts into its own cache line, so the hot path never contends; INFO
//! sums the workers. Later issues add per-layer and per-node figures here.

use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's counters, padded to a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Requests handled (Redis's `total_commands_processed`).
    pub commands: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Requests answered with an error reply produced by strata (unknown command, arity,
    /// CROSSSLOT, node unavailable, ...).
    pub errors: AtomicU64,
}

impl WorkerStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    pub workers: Vec<WorkerStats>,
    /// Connections accepted (`total_connections_received`).
    pub connections_received: AtomicU64,
    /// Connections refused because `limits.max_clients` was reached (`rejected_connections`).
    pub rejected_connections: AtomicU64,
}

/// A sum over the workers, for INFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub commands: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub errors: u64,
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            ..Stats::default()
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in &self.workers {
            t.commands += w.commands.load(Ordering::Relaxed);
            t.net_input_bytes += w.net_input_bytes.load(Ordering::Relaxed);
            t.net_output_bytes += w.net_output_bytes.load(Ordering::Relaxed);
            t.errors += w.errors.load(Ordering::Relaxed);
        }
        t
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for w in &self.workers {
            w.commands.store(0, Ordering::Relaxed);
            w.net_input_bytes.store(0, Ordering::Relaxed);
            w.net_output_bytes.store(0, Ordering::Relaxed);
            w.errors.store(0, Ordering::Relaxed);
        }
        self.connections_received.store(0, Ordering::Relaxed);
        self.rejected_connections.store(0, Ordering::Relaxed);
    }
}
