//! A worker's connections to every node: `connections_per_node` multiplexed connections each,
//! per protocol.
//!
//! A client always uses the same connection to a given node (chosen by client id), so the
//! requests it pipelines to one node reach that node in the order it sent them. RESP3 clients
//! use connections that speak RESP3 to the node, so the node's replies reach them unchanged,
//! with Redis's own RESP3 types; those are opened on first use, so a proxy whose clients all
//! speak RESP2 opens none. A node's RESP2 connections are opened when the worker starts
//! (configured nodes) or on first use (nodes added later); the pool has room for
//! `limits.max_nodes` node slots, fixed at start, so finding a connection takes no lock.

use std::sync::{Arc, OnceLock};

use super::connection::{Connection, ConnectionSettings};
use crate::cluster::NodeInfo;
use crate::protocol::Proto;

/// Which of a node's connections a client's requests take: the client's (its id keeps its
/// requests to one node in order) in the client's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub client: u64,
    pub proto: Proto,
}

impl Lane {
    /// Strata's own requests (repairs, copies): RESP2, spread by `id`.
    pub fn internal(id: u64) -> Lane {
        Lane {
            client: id,
            proto: Proto::Resp2,
        }
    }
}

/// One worker's backend connections.
pub struct Pool {
    /// `slots[node_slot][k]`, RESP2, filled on first use.
    slots: Vec<OnceLock<Vec<Connection>>>,
    /// The same for RESP3.
    slots3: Vec<OnceLock<Vec<Connection>>>,
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
        let room = max_nodes.max(nodes.len());
        let pool = Pool {
            slots: (0..room).map(|_| OnceLock::new()).collect(),
            slots3: (0..room).map(|_| OnceLock::new()).collect(),
            per_node: per_node.max(1),
            settings: settings.clone(),
        };
        for node in nodes {
            pool.connections(node, Proto::Resp2);
        }
        pool
    }

    fn slots(&self, proto: Proto) -> &[OnceLock<Vec<Connection>>] {
        match proto {
            Proto::Resp2 => &self.slots,
            Proto::Resp3 => &self.slots3,
        }
    }

    /// The connections of `node` in `proto`, opened now if this is their first use.
    fn connections(&self, node: &Arc<NodeInfo>, proto: Proto) -> Option<&Vec<Connection>> {
        let slot = self.slots(proto).get(node.index)?;
        Some(slot.get_or_init(|| {
            (0..self.per_node)
                .map(|_| Connection::spawn(node.clone(), self.settings.clone(), proto))
                .collect()
        }))
    }

    /// The connection `lane` takes to the node in `slot`; `node` gives the node when its
    /// connections are not open yet. `None` for a slot past the pool's room.
    pub fn connection(
        &self,
        slot: usize,
        lane: Lane,
        node: impl FnOnce() -> Option<Arc<NodeInfo>>,
    ) -> Option<&Connection> {
        let conns = match self.slots(lane.proto).get(slot)?.get() {
            Some(conns) => conns,
            None => self.connections(&node()?, lane.proto)?,
        };
        let k = (lane.client % conns.len().max(1) as u64) as usize;
        conns.get(k)
    }
}
