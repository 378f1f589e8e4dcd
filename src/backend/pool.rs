//! A worker's connections to every node: `connections_per_node` multiplexed connections each.
//!
//! A client always uses the same connection to a given node (chosen by client id), so the
//! requests it pipelines to one node reach that node in the order it sent them. A node's
//! connections are opened when the worker starts (configured nodes) or on first use (nodes
//! added later); the pool has room for `limits.max_nodes` node slots, fixed at start, so
//! finding a connection takes no lock.

use std::sync::{Arc, OnceLock};

use super::connection::{Connection, ConnectionSettings};
use super::node::NodeInfo;

/// One worker's backend connections.
pub struct Pool {
    /// `slots[node_slot][k]`, filled on first use.
    slots: Vec<OnceLock<Vec<Connection>>>,
    per_node: usize,
    settings: ConnectionSettings,
}

impl Pool {
    /// A pool with room for `max_nodes` node slots that opens (in the background) the
    /// connections of `nodes` at once. Must run inside the worker's runtime: the drivers are
    /// spawned on it.
    pub fn start(
        nodes: &[Arc<NodeInfo>],
        max_nodes: usize,
        per_node: usize,
        settings: &ConnectionSettings,
    ) -> Pool {
        let pool = Pool {
            slots: (0..max_nodes.max(nodes.len()))
                .map(|_| OnceLock::new())
                .collect(),
            per_node: per_node.max(1),
            settings: settings.clone(),
        };
        for node in nodes {
            pool.connections(node);
        }
        pool
    }

    /// The connections of `node`, opened now if this is their first use.
    fn connections(&self, node: &Arc<NodeInfo>) -> Option<&Vec<Connection>> {
        let slot = self.slots.get(node.index)?;
        Some(slot.get_or_init(|| {
            (0..self.per_node)
                .map(|_| Connection::spawn(node.clone(), self.settings.clone()))
                .collect()
        }))
    }

    /// The connection client `client_id` uses for the node in `slot`; `node` gives the node
    /// when its connections are not open yet. `None` for a slot past the pool's room.
    pub fn connection(
        &self,
        slot: usize,
        client_id: u64,
        node: impl FnOnce() -> Option<Arc<NodeInfo>>,
    ) -> Option<&Connection> {
        let conns = match self.slots.get(slot)?.get() {
            Some(conns) => conns,
            None => self.connections(&node()?)?,
        };
        let k = (client_id % conns.len().max(1) as u64) as usize;
        conns.get(k)
    }
}
