//! A node as strata knows it: its identity and its live status (shared by every worker's
//! connections, read by INFO). The error a request gets when it cannot be reached is
//! `error.rs`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::cluster::health::{NodeHealth, Thresholds, Transition};
use crate::cluster::hints::Hints;
use crate::cluster::refill::Refill;
use crate::config::{Credentials, RepairConfig};
use crate::stats::NodeStats;
use crate::tls::NodeTls;

/// Identity and status of one configured node.
#[derive(Debug)]
pub struct NodeInfo {
    /// The node's slot (`topology.rs`); the ring refers to nodes by it.
    pub index: usize,
    pub id: String,
    pub addr: String,
    /// What strata authenticates with on every connection it opens to the node; read at each
    /// connect, so a reload's new password applies to the connections opened after it.
    credentials: Mutex<Option<Arc<Credentials>>>,
    /// The TLS client connections to the node use (`backend.tls`, the node's `tls`); none:
    /// plain TCP. Read at each connect, like the credentials.
    tls: Mutex<Option<Arc<NodeTls>>>,
    /// Ring weight (changed by `STRATA NODE WEIGHT`).
    weight: AtomicU32,
    /// Removed from the cluster: its connections close once idle, its heartbeat stops.
    retired: crate::latch::Latch,
    /// Connections and their failures.
    pub status: NodeStatus,
    /// Up or down: whether requests are sent to the node (`health`).
    pub health: NodeHealth,
    /// Keys to copy to the node when it is back (hinted handoff).
    pub hints: Hints,
    /// Its Redis process: restarts seen, and the refill that follows each.
    pub refill: Refill,
    /// Requests, failures and latency, per worker.
    pub stats: NodeStats,
    /// Dedicated connections open to the node, all workers together (`dedicated.rs`).
    pub dedicated: AtomicUsize,
    /// Set for a node of a Redis Cluster backend: which one, and how its redirects are
    /// followed (`slots.rs`). `None` for the ring's nodes.
    pub cluster: Option<Arc<crate::cluster::slots::ClusterLink>>,
}

impl NodeInfo {
    /// A node served by `workers` worker threads, with default health thresholds and hint
    /// bound (see [`NodeInfo::configured`]).
    pub fn new(index: usize, id: String, addr: String, weight: u32, workers: usize) -> NodeInfo {
        NodeInfo {
            index,
            id,
            addr,
            credentials: Mutex::new(None),
            tls: Mutex::new(None),
            weight: AtomicU32::new(weight),
            retired: crate::latch::Latch::default(),
            status: NodeStatus::default(),
            health: NodeHealth::new(Thresholds::default()),
            hints: Hints::new(RepairConfig::default().max_hints_per_node),
            refill: Refill::default(),
            stats: NodeStats::new(workers),
            dedicated: AtomicUsize::new(0),
            cluster: None,
        }
    }

    /// Makes this a node of a Redis Cluster backend. Strata's own repairs do not apply to
    /// one (the cluster replicates and fails over by itself): no refill after a restart.
    pub fn in_cluster(mut self, link: Arc<crate::cluster::slots::ClusterLink>) -> NodeInfo {
        self.refill.set_enabled(false);
        self.cluster = Some(link);
        self
    }

    /// Applies the configured health thresholds, hint bound and refill switch.
    pub fn configured(mut self, thresholds: Thresholds, repair: &RepairConfig) -> NodeInfo {
        self.health = NodeHealth::new(thresholds);
        self.hints = Hints::new(repair.max_hints_per_node);
        self.refill.set_enabled(repair.refill);
        self
    }

    /// Sets the credentials sent on the connections opened from now on.
    pub fn with_credentials(self, credentials: Option<Credentials>) -> NodeInfo {
        self.set_credentials(credentials);
        self
    }

    /// Replaces the credentials (a reload): connections already open stay as they are.
    pub fn set_credentials(&self, credentials: Option<Credentials>) {
        if let Ok(mut c) = self.credentials.lock() {
            *c = credentials.map(Arc::new);
        }
    }

    /// The credentials a new connection to the node authenticates with.
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.credentials.lock().ok().and_then(|c| c.clone())
    }

    /// Sets the TLS client of the connections opened from now on.
    pub fn with_tls(self, tls: Option<Arc<NodeTls>>) -> NodeInfo {
        self.set_tls(tls);
        self
    }

    /// Replaces the TLS client (a reload, which reads the files again): connections already
    /// open stay as they are.
    pub fn set_tls(&self, tls: Option<Arc<NodeTls>>) {
        if let Ok(mut t) = self.tls.lock() {
            *t = tls;
        }
    }

    /// The TLS client a new connection to the node handshakes with; none: plain TCP.
    pub fn tls(&self) -> Option<Arc<NodeTls>> {
        self.tls.lock().ok().and_then(|t| t.clone())
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Marks the node removed and wakes its connections and heartbeat so they stop.
    pub fn retire(&self) {
        self.retired.set();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.is_set()
    }

    /// Completes once the node is retired.
    pub async fn retired(&self) {
        self.retired.wait().await;
    }

    /// Logs a health transition (the caller got it from `self.health`).
    pub fn log_transition(&self, transition: Option<Transition>) -> Option<Transition> {
        match &transition {
            Some(Transition::Down(reason)) => {
                tracing::warn!(node = %self.id, addr = %self.addr, %reason, "node marked down");
            }
            Some(Transition::Up) => {
                tracing::info!(node = %self.id, addr = %self.addr, "node marked up");
            }
            None => {}
        }
        transition
    }

    /// A request or connection to the node failed: counts towards marking it down. The
    /// transition, when there is one, is logged here.
    pub fn failed(&self, reason: &str) -> Option<Transition> {
        self.log_transition(self.health.failure(reason))
    }

    /// The node refused strata's credentials: marked down at once (logged here, once per
    /// transition however many connections meet the refusal).
    pub fn refused(&self, reason: &str) -> Option<Transition> {
        self.log_transition(self.health.refused(reason))
    }

    /// Why the node is marked down, as a request refused for it says.
    pub fn down_reason(&self) -> String {
        self.health.reason().map_or_else(
            || "marked down".to_string(),
            |r| format!("marked down: {r}"),
        )
    }
}

/// Live figures of a node. Updated per batch or per connection event, never per request on the
/// client path, so several workers touching it do not contend.
#[derive(Debug, Default)]
pub struct NodeStatus {
    /// Backend connections currently open to the node (over all workers).
    connected: AtomicUsize,
    /// Connection failures (refused, reset, timed out).
    failures: AtomicU64,
    /// The last failure, for INFO; `None` once a connection is up again.
    last_error: Mutex<Option<String>>,
}

impl NodeStatus {
    pub fn connection_up(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    pub fn connection_down(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records a failure; true when it differs from the previous one (worth a log line).
    pub fn set_error(&self, reason: &str) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        match self.last_error.lock() {
            Ok(mut last) => {
                let new = last.as_deref() != Some(reason);
                *last = Some(reason.to_string());
                new
            }
            Err(_) => true,
        }
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|last| last.clone())
    }

    /// The connections' view: `up` while a connection is open and no newer failure was seen
    /// (the node's state is its `health`).
    pub fn connection_state(&self) -> &'static str {
        if self.connected() > 0 && self.last_error().is_none() {
            "up"
        } else if self.connected() > 0 {
            "degraded"
        } else {
            "down"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_connections_and_errors() {
        let s = NodeStatus::default();
        assert_eq!(s.connection_state(), "down");
        s.connection_up();
        assert_eq!(s.connection_state(), "up");
        assert!(s.set_error("x"));
        assert!(!s.set_error("x"));
        assert_eq!(s.connection_state(), "degraded");
        s.connection_down();
        assert_eq!(s.connection_state(), "down");
    }
}
