//! strata's statistics: process-wide counters (INFO `# Stats`), per-command calls
//! (`# Commandstats`), per-layer figures (`layer.rs`) and per-node figures (`node.rs`), and
//! readers (INFO, STRATA STATS, `/metrics`: `builtin`).
//!
//! Each worker thread counts into memory of its own (cache-line aligned), so the hot path never
//! contends and takes no global lock; readers sum the workers.

pub mod counter;
pub mod instant;
pub mod latency;
pub mod layer;
pub mod node;

use std::sync::atomic::{AtomicU64, Ordering};

pub use counter::Counter;
pub use instant::Instantaneous;
pub use latency::{Latency, SharedLatency, PERCENTILES};
pub use layer::{Class, LayerStats, LayerTotals, LayerWorker};
pub use node::{NodeStats, NodeTotals, NodeWorker};

/// Calls of one command on one worker.
#[derive(Debug, Default)]
pub struct CommandCounters {
    pub calls: Counter,
    /// Microseconds from reading the request to its reply being ready.
    pub usec: Counter,
    /// Calls answered with an error.
    pub failed: Counter,
    /// Requests refused before they ran (wrong arity, disabled): Redis's `rejected_calls`.
    pub rejected: Counter,
}

/// One worker's counters, padded to a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Requests handled (Redis's `total_commands_processed`).
    pub commands: Counter,
    /// Bytes read from clients.
    pub net_input_bytes: Counter,
    /// Bytes written to clients.
    pub net_output_bytes: Counter,
    /// Requests answered with an error reply produced by strata (unknown command, arity,
    /// CROSSSLOT, node unavailable, ...).
    pub errors: Counter,
    /// Per command-table entry (see `command::table::command_index`).
    pub by_command: Box<[CommandCounters]>,
    /// Latency by [`Class`] of requests without keys (requests with keys count in their layer).
    pub keyless_latency: [SharedLatency; 3],
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    pub workers: Vec<WorkerStats>,
    /// Connections accepted (`total_connections_received`).
    pub connections_received: AtomicU64,
    /// Connections refused because `limits.max_clients` was reached (`rejected_connections`).
    pub rejected_connections: AtomicU64,
    /// Clients that completed the TLS handshake on `tls.listen`
    /// (`strata_tls_connections_received`).
    pub tls_connections_received: AtomicU64,
    /// Clients on `tls.listen` whose handshake failed or took longer than
    /// `tls.handshake_timeout` (`strata_tls_handshake_failures`).
    pub tls_handshake_failures: AtomicU64,
    /// Clients disconnected past `limits.client_output_buffer_limit`
    /// (`client_output_buffer_limit_disconnections`).
    pub output_limit_disconnections: AtomicU64,
    /// Clients disconnected past `limits.client_query_buffer_limit`
    /// (`client_query_buffer_limit_disconnections`).
    pub query_limit_disconnections: AtomicU64,
    /// Clients disconnected after `limits.idle_timeout` without traffic
    /// (`strata_idle_timeout_disconnections`).
    pub idle_timeout_disconnections: AtomicU64,
    /// Refusals by the access rules, as Redis names them in INFO: failed AUTH attempts
    /// (`acl_access_denied_auth`), commands, keys and channels a user may not use.
    pub acl_denied_auth: AtomicU64,
    pub acl_denied_cmd: AtomicU64,
    pub acl_denied_key: AtomicU64,
    pub acl_denied_channel: AtomicU64,
    /// Admin endpoint requests refused for a wrong or malformed bearer token
    /// (`strata_admin_access_denied_auth`); requests without any are not counted.
    pub admin_denied_auth: AtomicU64,
    /// `instantaneous_ops_per_sec` and the `_kbps` rates.
    pub instantaneous: Instantaneous,
}

/// A sum over the workers, for INFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub commands: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub errors: u64,
}

/// One command's calls summed over the workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommandTotals {
    pub calls: u64,
    pub usec: u64,
    pub failed: u64,
    pub rejected: u64,
}

impl Stats {
    /// Counters for `workers` workers and a command table of `commands` entries.
    pub fn new(workers: usize, commands: usize) -> Stats {
        Stats {
            workers: (0..workers)
                .map(|_| WorkerStats {
                    by_command: (0..commands).map(|_| CommandCounters::default()).collect(),
                    ..WorkerStats::default()
                })
                .collect(),
            ..Stats::default()
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in &self.workers {
            t.commands += w.commands.get();
            t.net_input_bytes += w.net_input_bytes.get();
            t.net_output_bytes += w.net_output_bytes.get();
            t.errors += w.errors.get();
        }
        t
    }

    /// Calls of command-table entry `index`, summed over the workers.
    pub fn command(&self, index: usize) -> CommandTotals {
        let mut t = CommandTotals::default();
        for w in &self.workers {
            if let Some(c) = w.by_command.get(index) {
                t.calls += c.calls.get();
                t.usec += c.usec.get();
                t.failed += c.failed.get();
                t.rejected += c.rejected.get();
            }
        }
        t
    }

    /// Latency by [`Class`] of the requests without keys, summed over the workers.
    pub fn keyless_latency(&self) -> [Latency; 3] {
        let mut out: [Latency; 3] = Default::default();
        for w in &self.workers {
            for (sum, l) in out.iter_mut().zip(&w.keyless_latency) {
                sum.merge(&l.snapshot());
            }
        }
        out
    }

    /// CONFIG RESETSTAT (layer and node figures are reset by their owners' `reset`).
    pub fn reset(&self) {
        for w in &self.workers {
            w.commands.reset();
            w.net_input_bytes.reset();
            w.net_output_bytes.reset();
            w.errors.reset();
            for c in w.by_command.iter() {
                c.calls.reset();
                c.usec.reset();
                c.failed.reset();
                c.rejected.reset();
            }
            for l in &w.keyless_latency {
                l.reset();
            }
        }
        self.connections_received.store(0, Ordering::Relaxed);
        self.rejected_connections.store(0, Ordering::Relaxed);
        for c in [
            &self.tls_connections_received,
            &self.tls_handshake_failures,
            &self.acl_denied_auth,
            &self.acl_denied_cmd,
            &self.acl_denied_key,
            &self.acl_denied_channel,
            &self.admin_denied_auth,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.output_limit_disconnections.store(0, Ordering::Relaxed);
        self.idle_timeout_disconnections.store(0, Ordering::Relaxed);
        self.query_limit_disconnections.store(0, Ordering::Relaxed);
    }
}
