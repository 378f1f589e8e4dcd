//! A node as strata knows it: its identity, its live status (shared by every worker's
//! connections, read by INFO), and the error a request gets when it cannot be reached.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::stats::NodeStats;

/// Identity and status of one configured node.
#[derive(Debug)]
pub struct NodeInfo {
    /// Position in the configured node list; the ring refers to nodes by it.
    pub index: usize,
    pub id: String,
    pub addr: String,
    pub weight: u32,
    pub status: NodeStatus,
    /// Requests, failures and latency, per worker.
    pub stats: NodeStats,
}

impl NodeInfo {
    /// A node served by `workers` worker threads.
    pub fn new(index: usize, id: String, addr: String, weight: u32, workers: usize) -> NodeInfo {
        NodeInfo {
            index,
            id,
            addr,
            weight,
            status: NodeStatus::default(),
            stats: NodeStats::new(workers),
        }
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

    /// `up` while a connection is open and no newer failure was seen.
    pub fn state(&self) -> &'static str {
        if self.connected() > 0 && self.last_error().is_none() {
            "up"
        } else if self.connected() > 0 {
            "degraded"
        } else {
            "down"
        }
    }
}

/// Why a request could not be answered by its node. Cheap to clone: one error is handed to
/// every request that was waiting on the same connection.
#[derive(Debug, Clone)]
pub struct NodeError {
    pub node: Arc<NodeInfo>,
    pub reason: Arc<str>,
}

impl NodeError {
    pub fn new(node: &Arc<NodeInfo>, reason: &str) -> NodeError {
        NodeError {
            node: node.clone(),
            reason: Arc::from(reason),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ERR strata: node {} ({}) unavailable: {}",
            self.node.id, self.node.addr, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_names_node_and_reason() {
        let node = Arc::new(NodeInfo::new(
            0,
            "node1".into(),
            "127.0.0.1:7001".into(),
            1,
            1,
        ));
        let e = NodeError::new(&node, "Connection refused (os error 111)");
        assert_eq!(
            e.to_string(),
            "ERR strata: node node1 (127.0.0.1:7001) unavailable: Connection refused (os error 111)"
        );
    }

    #[test]
    fn state_follows_connections_and_errors() {
        let s = NodeStatus::default();
        assert_eq!(s.state(), "down");
        s.connection_up();
        assert_eq!(s.state(), "up");
        assert!(s.set_error("x"));
        assert!(!s.set_error("x"));
        assert_eq!(s.state(), "degraded");
        s.connection_down();
        assert_eq!(s.state(), "down");
    }
}
