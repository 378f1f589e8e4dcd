//! The cluster's membership as requests see it: every node slot this process has had, the
//! current members and their ring. A membership change (`STRATA NODE ADD / REMOVE / WEIGHT`)
//! builds a new [`Topology`] and swaps it in whole; requests already planned keep the one they
//! loaded, so they finish on the old ring.
//!
//! Nodes are referred to by *slot* (their index in [`Topology::nodes`]). Slots are never
//! reused or dropped: a removed node keeps its slot (its figures and the requests still in
//! flight to it refer to it), loses its ring points, and has its connections closed once they
//! are idle. A node added again under the same id gets a new slot and the same ring points
//! (placement depends on the id only). At most `limits.max_nodes` slots per process.

use std::sync::Arc;

use crate::cluster::ring::{Ring, RingNode};
use crate::cluster::slots::SlotMap;
use crate::cluster::NodeInfo;
use crate::config::HashTag;

/// Nodes, members and ring at one moment.
#[derive(Clone)]
pub struct Topology {
    /// Every node slot this process has had, removed ones included.
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Slots of the current members, in the order they were configured or added.
    pub members: Vec<usize>,
    pub ring: Ring,
    /// Ring shape, kept to rebuild it.
    pub vnodes: u32,
    pub hash_tag: Option<HashTag>,
    /// How many distinct nodes the ring precomputes per point (the layers' largest
    /// replication).
    pub depth: usize,
    /// 1 for the configured topology, +1 per change.
    pub version: u64,
    /// The slot map of each Redis Cluster backend (`backends`, by position); their nodes are
    /// slots of `nodes` too, never members.
    pub clusters: Vec<Arc<SlotMap>>,
}

impl Topology {
    /// The topology of the configured nodes (every node a member, slot = config position).
    pub fn new(
        nodes: Vec<Arc<NodeInfo>>,
        vnodes: u32,
        hash_tag: Option<HashTag>,
        depth: usize,
    ) -> Topology {
        let members = (0..nodes.len()).collect();
        Topology::build(nodes, members, vnodes, hash_tag, depth, 1, Vec::new())
    }

    /// This topology with an empty slot map for each cluster backend (`links`, in the order
    /// of `backends`).
    pub fn with_clusters(
        mut self,
        links: Vec<Arc<crate::cluster::slots::ClusterLink>>,
    ) -> Topology {
        self.clusters = links
            .into_iter()
            .map(|link| Arc::new(SlotMap::empty(link)))
            .collect();
        self
    }

    fn build(
        nodes: Vec<Arc<NodeInfo>>,
        members: Vec<usize>,
        vnodes: u32,
        hash_tag: Option<HashTag>,
        depth: usize,
        version: u64,
        clusters: Vec<Arc<SlotMap>>,
    ) -> Topology {
        // Every slot is on the ring's node list (the ring names nodes by slot); non-members
        // have weight 0 and so no points.
        let ring_nodes: Vec<RingNode<'_>> = nodes
            .iter()
            .enumerate()
            .map(|(slot, n)| RingNode {
                id: &n.id,
                weight: if members.contains(&slot) {
                    n.weight()
                } else {
                    0
                },
            })
            .collect();
        let ring = Ring::new(&ring_nodes, vnodes, hash_tag).with_replicas(depth);
        Topology {
            nodes,
            members,
            ring,
            vnodes,
            hash_tag,
            depth,
            version,
            clusters,
        }
    }

    /// This topology with its replica table `depth` deep (a reload changed the layers'
    /// replication); placement and version are unchanged.
    pub fn with_depth(&self, depth: usize) -> Topology {
        let mut same = self.clone();
        if depth != self.depth {
            same.ring = self.ring.clone().with_replicas(depth);
            same.depth = depth;
        }
        same
    }

    /// The node in `slot`.
    pub fn node(&self, slot: usize) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(slot)
    }

    /// The current members, in order.
    pub fn member_nodes(&self) -> impl Iterator<Item = &Arc<NodeInfo>> + '_ {
        self.members.iter().filter_map(|&s| self.nodes.get(s))
    }

    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<&Arc<NodeInfo>> {
        self.member_nodes().find(|n| n.id == id)
    }

    /// The first member not marked down (a cluster backend's first primary when no layer is
    /// on the ring): the node strata asks about the nodes' own settings (CONFIG GET, INFO
    /// `maxmemory`).
    pub fn first_up(&self) -> Option<usize> {
        let up = |&s: &usize| self.node(s).is_some_and(|n| !n.health.is_down());
        self.serving().into_iter().find(up)
    }

    /// A member picked by `n` (spreads keyless requests over the members; over the cluster
    /// backends' primaries when there are no members).
    pub fn pick(&self, n: u64) -> usize {
        if self.members.is_empty() {
            let primaries = self.primaries();
            let count = primaries.len().max(1) as u64;
            return primaries.get((n % count) as usize).copied().unwrap_or(0);
        }
        let count = self.members.len().max(1) as u64;
        self.members.get((n % count) as usize).copied().unwrap_or(0)
    }

    /// The primaries of every cluster backend, each once.
    pub fn primaries(&self) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for p in self.clusters.iter().flat_map(|m| m.primaries()) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The nodes pattern subscriptions go to: every member (a publish reaches one ring node),
    /// and one primary of each cluster backend (a cluster passes every publish to all its
    /// nodes).
    pub fn pattern_nodes(&self) -> Vec<usize> {
        let mut out = self.members.clone();
        out.extend(self.clusters.iter().filter_map(|m| m.primaries().next()));
        out
    }

    /// The nodes holding keys: the ring's members, then the cluster backends' primaries
    /// (keyspace-wide commands go to each).
    pub fn serving(&self) -> Vec<usize> {
        let mut out = self.members.clone();
        if !self.clusters.is_empty() {
            out.extend(self.primaries());
        }
        out
    }

    /// This topology with cluster backend `backend`'s map replaced by `map`, and `added`
    /// nodes (learnt from it) in new slots. The ring's placement and version do not change.
    pub fn with_cluster_map(
        &self,
        backend: usize,
        map: SlotMap,
        added: Vec<Arc<NodeInfo>>,
    ) -> Topology {
        let mut clusters = self.clusters.clone();
        if let Some(cell) = clusters.get_mut(backend) {
            *cell = Arc::new(map);
        }
        if added.is_empty() {
            return Topology {
                clusters,
                ..self.clone()
            };
        }
        // The ring names every slot (new ones get no points), so it is built again.
        let mut nodes = self.nodes.clone();
        nodes.extend(added);
        Topology::build(
            nodes,
            self.members.clone(),
            self.vnodes,
            self.hash_tag,
            self.depth,
            self.version,
            clusters,
        )
    }

    /// The node slot of cluster backend `backend` at `addr`.
    pub fn cluster_node(&self, backend: usize, addr: &str) -> Option<usize> {
        let map = self.clusters.get(backend)?;
        map.nodes
            .iter()
            .copied()
            .find(|&s| self.node(s).is_some_and(|n| n.addr == addr))
    }

    /// This topology with `node` added as a member in a new slot.
    pub fn with_added(&self, node: Arc<NodeInfo>) -> Topology {
        let mut nodes = self.nodes.clone();
        let mut members = self.members.clone();
        members.push(nodes.len());
        nodes.push(node);
        self.rebuilt(nodes, members)
    }

    /// This topology without the member in `slot` (the slot stays, off the ring).
    pub fn with_removed(&self, slot: usize) -> Topology {
        let members = self
            .members
            .iter()
            .copied()
            .filter(|&s| s != slot)
            .collect();
        self.rebuilt(self.nodes.clone(), members)
    }

    /// This topology rebuilt after a member's weight changed (`NodeInfo::set_weight`).
    pub fn reweighted(&self) -> Topology {
        self.rebuilt(self.nodes.clone(), self.members.clone())
    }

    fn rebuilt(&self, nodes: Vec<Arc<NodeInfo>>, members: Vec<usize>) -> Topology {
        Topology::build(
            nodes,
            members,
            self.vnodes,
            self.hash_tag,
            self.depth,
            self.version + 1,
            self.clusters.clone(),
        )
    }

    /// The share of the key space whose primary differs between `self` and `other`
    /// (0.0 to 1.0), measured at `SAMPLES` evenly spaced points of the hash circle.
    pub fn moved_share(&self, other: &Topology) -> f64 {
        const SAMPLES: u64 = 1 << 16;
        let step = u64::MAX / SAMPLES;
        let moved = (0..SAMPLES)
            .filter(|i| {
                let hash = i * step;
                self.ring.primary_for_hash(hash) != other.ring.primary_for_hash(hash)
            })
            .count();
        moved as f64 / SAMPLES as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(slot: usize, id: &str) -> Arc<NodeInfo> {
        Arc::new(NodeInfo::new(
            slot,
            id.to_string(),
            format!("127.0.0.1:{}", 7000 + slot),
            1,
            1,
        ))
    }

    fn three() -> Topology {
        let nodes = vec![node(0, "a"), node(1, "b"), node(2, "c")];
        Topology::new(nodes, 100, None, 2)
    }

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter_to_it() {
        let before = three();
        let after = before.with_added(node(3, "d"));
        assert_eq!(after.members, vec![0, 1, 2, 3]);
        assert_eq!(after.version, 2);
        let share = before.moved_share(&after);
        assert!((0.15..0.35).contains(&share), "moved {share}");
        // Every key that moved went to the new node.
        for k in 0..5000 {
            let key = format!("key:{k}");
            let (a, b) = (
                before.ring.primary(key.as_bytes()),
                after.ring.primary(key.as_bytes()),
            );
            assert!(a == b || b == 3, "{key} moved from {a} to {b}");
        }
    }

    #[test]
    fn a_removed_node_keeps_its_slot_but_owns_nothing() {
        let before = three();
        let after = before.with_removed(1);
        assert_eq!(after.members, vec![0, 2]);
        assert_eq!(after.nodes.len(), 3);
        assert!(after.member("b").is_none());
        for k in 0..5000 {
            let owner = after.ring.primary(format!("key:{k}").as_bytes());
            assert_ne!(owner, 1);
        }
        let share = before.moved_share(&after);
        assert!((0.2..0.45).contains(&share), "moved {share}");
        // Added back under the same id: a new slot with the same points.
        let back = after.with_added(node(3, "b"));
        for k in 0..2000 {
            let key = format!("key:{k}");
            let (a, b) = (
                before.ring.primary(key.as_bytes()),
                back.ring.primary(key.as_bytes()),
            );
            assert_eq!(if a == 1 { 3 } else { a }, b, "{key}");
        }
    }

    #[test]
    fn weight_changes_move_keys_and_picks_stay_on_members() {
        let before = three();
        let nodes = before.nodes.clone();
        nodes[2].set_weight(3);
        let after = before.reweighted();
        assert!(before.moved_share(&after) > 0.2);
        let removed = after.with_removed(0);
        for n in 0..10 {
            assert_ne!(removed.pick(n), 0);
        }
    }
}
