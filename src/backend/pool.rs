//! A worker's connections to every node: `connections_per_node` multiplexed connections each.
//!
//! A client always uses the same connection to a given node (chosen by client id), so the
//! requests it pipelines to one node reach that node in the order it sent them.

use std::sync::Arc;

use super::connection::{Connection, ConnectionSettings};
use super::node::NodeInfo;

/// One worker's backend connections.
pub struct Pool {
    /// `nodes[node_index][k]`.
    nodes: Vec<Vec<Connection>>,
}

impl Pool {
    /// Opens (in the background) the connections of one worker. Must run inside the worker's
    /// runtime: the drivers are spawned on it.
    pub fn start(nodes: &[Arc<NodeInfo>], per_node: usize, settings: &ConnectionSettings) -> Pool {
        let nodes = nodes
            .iter()
            .map(|node| {
                (0..per_node.max(1))
                    .map(|_| Connection::spawn(node.clone(), settings.clone()))
                    .collect()
            })
            .collect();
        Pool { nodes }
    }

    /// The connection client `client_id` uses for `node`; `None` for an unknown node index.
    pub fn connection(&self, node: usize, client_id: u64) -> Option<&Connection> {
        let conns = self.nodes.get(node)?;
        let k = (client_id % conns.len().max(1) as u64) as usize;
        conns.get(k)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}
