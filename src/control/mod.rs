//! The control plane: the registry of connected clients, configuration reloads, membership
//! changes' key moves (rebalance), graceful shutdown, the background layer key counts, and
//! the Redis Cluster backends' slot maps;
//! [`Control`] is the process-wide handle they share.

pub mod clients;
pub mod layer_keys;
pub mod membership;
pub mod rebalance;
pub mod refill;
pub mod reload;
pub mod shutdown;
pub mod slot_maps;
mod walk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::backend::connection::LiveTimeouts;
use crate::cluster::rebalance::Rebalance;
use crate::cluster::LiveView;
use crate::repair::Background;
use crate::stats::Stats;

use clients::ClientRegistry;
use shutdown::Drain;

/// What the whole process shares beyond the view: clients, figures, live timeouts, and the
/// state of reloads, rebalances and shutdown.
pub struct Control {
    /// Settings, topology and layers; swapped whole by reloads and membership changes.
    pub live: Arc<LiveView>,
    pub clients: ClientRegistry,
    /// Client connections open right now (enforces `limits.max_clients`).
    pub connected: AtomicUsize,
    pub stats: Stats,
    /// `timeouts.connect` / `timeouts.request` as every node connection reads them.
    pub timeouts: Arc<LiveTimeouts>,
    /// SIGHUP: asks worker 0 to reload the configuration (`reload.rs`).
    pub reload_requests: tokio::sync::Notify,
    /// Graceful shutdown in progress (`shutdown.rs`).
    pub drain: Drain,
    /// Keys moving after membership changes (`STRATA REBALANCE`).
    pub rebalance: Arc<Rebalance>,
    /// Budget and figures of background convergence work (write tails, repairs).
    pub background: Arc<Background>,
    /// Reads of coalescing layers in flight, shared by every worker.
    pub coalesce: Arc<crate::coordinator::coalesce::Coalescer>,
    pub started: Instant,
    pub started_wall: SystemTime,
    /// The address actually bound (differs from the config with port 0).
    pub local_addr: SocketAddr,
    /// The TLS listener's address actually bound, when `tls` is set.
    pub tls_addr: Option<SocketAddr>,
    pub config_path: Option<PathBuf>,
}

impl Control {
    /// CONFIG RESETSTAT: every statistic strata keeps (not the key counts, which are gauges).
    pub fn reset_stats(&self) {
        self.stats.reset();
        let view = self.live.load();
        view.layers.reset_stats();
        for node in view.topology.nodes.iter() {
            node.stats.reset();
            node.hints.reset();
            node.refill.reset();
        }
    }
}
