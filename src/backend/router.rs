//! A worker's way to the nodes: its [`Pool`] of multiplexed connections and its idle dedicated
//! connections, with the [`LiveView`] that says which node is in which slot. The coordinator
//! plans with a request's `View` and sends through the router; repairs,
//! transactions, pub/sub and the built-in commands use the same router instead of reaching
//! into planning internals.

use std::sync::Arc;

use super::connection::{Connection, LiveTimeouts};
use super::dedicated::{DedicatedPool, Lease};
use super::pool::{Lane, Pool};
use crate::cluster::view::{LiveView, View};
use crate::protocol::{Proto, Reply};

/// One worker's node connections, and the view they serve.
pub struct Router {
    /// This worker's index (its slot in per-worker figures).
    pub worker: usize,
    live: Arc<LiveView>,
    pool: Pool,
    /// Idle dedicated connections (blocking commands, WATCH/MULTI).
    dedicated: Arc<DedicatedPool>,
    timeouts: Arc<LiveTimeouts>,
}

impl Router {
    pub fn new(
        worker: usize,
        live: Arc<LiveView>,
        pool: Pool,
        timeouts: Arc<LiveTimeouts>,
    ) -> Router {
        Router {
            worker,
            live,
            pool,
            dedicated: Arc::default(),
            timeouts,
        }
    }

    /// The current view; a request loads it once and plans with it.
    pub fn view(&self) -> arc_swap::Guard<Arc<View>> {
        self.live.load()
    }

    /// The current view, to keep across awaits (background tasks).
    pub fn view_full(&self) -> Arc<View> {
        self.live.load_full()
    }

    /// The shared view cell (reloads, membership changes, per-layer figures).
    pub fn live(&self) -> &Arc<LiveView> {
        &self.live
    }

    /// `timeouts.connect` / `timeouts.request` as they are now.
    pub fn timeouts(&self) -> &LiveTimeouts {
        &self.timeouts
    }

    /// The connection `lane` takes to the node in `slot` (opened on first use for nodes added
    /// after start, and for RESP3); `None` for an unknown slot.
    pub fn connection(&self, slot: usize, lane: Lane) -> Option<&Connection> {
        self.pool
            .connection(slot, lane, || self.live.load().topology.node(slot).cloned())
    }

    /// A dedicated connection to the node in `slot`, speaking `proto`; the error reply when the
    /// node is unknown, marked down, unreachable or at `limits.max_dedicated_per_node`.
    pub async fn dedicated_lease(&self, slot: usize, proto: Proto) -> Result<Lease, Reply> {
        let (node, max) = {
            let view = self.live.load();
            let node = view.topology.node(slot).cloned();
            (node, view.settings.config.limits.max_dedicated_per_node)
        };
        let Some(node) = node else {
            return Err(Reply::error_static("ERR strata: no such node"));
        };
        if node.health.is_down() {
            return Err(Reply::error(super::NodeError::down(&node).to_string()));
        }
        self.dedicated
            .lease(&node, proto, max, self.timeouts.connect())
            .await
            .map_err(|e| Reply::error(format!("ERR strata: {e}")))
    }
}
