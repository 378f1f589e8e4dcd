//! Which node answers for a key in the keyspace-wide commands, so that each key counts once
//! whatever its layer's `replication`: the key's *first live replica*, the first node of its
//! replica list (its layer's `replication` first nodes clockwise, or for an `eject_on_down`
//! layer any node clockwise) that is taken as live. Nodes are taken as live once per command
//! (members not marked down when it starts), so one command never counts a key twice or not
//! at all because a node changed state while it ran.
//!
//! A key held only by nodes that are not among its replicas (after a membership change,
//! before a rebalance moved it) has no owner holding it: it is not reported, as reads do not
//! find it there either.

use std::sync::Arc;

use crate::cluster::topology::Topology;
use crate::policy::Layers;

/// The ring, the layers and the live nodes of one keyspace-wide command.
pub struct Owners {
    topology: Arc<Topology>,
    layers: Arc<Layers>,
    /// By slot: taken as live (asked) in this command.
    live: Vec<bool>,
    /// Keys are reported by their owner only; false: by every node that holds them.
    by_owner: bool,
}

impl Owners {
    /// The members not marked down right now are live; `by_owner`: see [`Owners::reports`].
    pub fn now(topology: Arc<Topology>, layers: Arc<Layers>, by_owner: bool) -> Owners {
        let mut live = vec![false; topology.nodes.len()];
        for slot in topology.serving() {
            let up = topology.node(slot).is_some_and(|n| !n.health.is_down());
            if let Some(l) = live.get_mut(slot) {
                *l = up;
            }
        }
        Owners::with_live(topology, layers, live, by_owner)
    }

    /// The slots in `live` (indexed by slot) are live.
    pub fn with_live(
        topology: Arc<Topology>,
        layers: Arc<Layers>,
        live: Vec<bool>,
        by_owner: bool,
    ) -> Owners {
        Owners {
            topology,
            layers,
            live,
            by_owner,
        }
    }

    /// True when `node`, which holds `key`, reports it: it owns it, or keys are not filtered.
    pub fn reports(&self, node: usize, key: &[u8]) -> bool {
        !self.by_owner || self.owner(key) == Some(node)
    }

    /// Keys are reported by their owner only (else by every node holding them).
    pub fn by_owner(&self) -> bool {
        self.by_owner
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    pub fn is_live(&self, slot: usize) -> bool {
        self.live.get(slot).copied().unwrap_or(false)
    }

    /// The live members, in member order, then the live primaries of the cluster backends:
    /// the nodes a keyspace-wide command asks.
    pub fn live_members(&self) -> Vec<usize> {
        let serving = self.topology.serving().into_iter();
        serving.filter(|&s| self.is_live(s)).collect()
    }

    /// True when a key may be held by a node other than its primary (some layer keeps several
    /// copies or ejects down nodes): only then does a down node's turn of a SCAN have keys to
    /// report from the other nodes.
    pub fn has_copies(&self) -> bool {
        self.layers.any_replicated()
    }

    /// The key's primary (position 0 of its preference list, whatever the nodes' health; for
    /// a cluster backend's key, the primary of its slot when one serves it).
    pub fn primary(&self, key: &[u8]) -> usize {
        if let Some(backend) = self.layers.cluster_of(key) {
            let slot = crate::cluster::slots::key_slot(key);
            let owner = self
                .topology
                .clusters
                .get(backend)
                .and_then(|m| m.owner(slot));
            if let Some(owner) = owner {
                return owner;
            }
        }
        self.topology.ring.primary(key)
    }

    /// The node that reports `key`: its first live replica; None when no replica is live.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        self.first_live(key, None)
    }

    /// The node that reports `key` with the node in `skip` passed over as well (a SCAN's turn
    /// of a node that is down serves that node's keys from their other replicas).
    pub fn owner_without(&self, key: &[u8], skip: usize) -> Option<usize> {
        self.first_live(key, Some(skip))
    }

    fn first_live(&self, key: &[u8], skip: Option<usize>) -> Option<usize> {
        let ring = &self.topology.ring;
        let ok = |n: usize| Some(n) != skip && self.is_live(n);
        // A cluster backend's key has one copy here: on the primary of its slot.
        if let Some(backend) = self.layers.cluster_of(key) {
            let slot = crate::cluster::slots::key_slot(key);
            let owner = self.topology.clusters.get(backend)?.owner(slot)?;
            return ok(owner).then_some(owner);
        }
        // Without replicated layers every key has one copy, on its primary: no layer lookup.
        let (copies, eject) = if self.layers.any_replicated() {
            self.layers
                .of(key)
                .map_or((1, false), |l| (l.spec.replication, l.spec.eject_on_down))
        } else {
            (1, false)
        };
        let hash = ring.key_hash(key);
        if eject {
            return ring.node_iter(hash).find(|&n| ok(n));
        }
        if copies <= 1 {
            let primary = ring.primary_for_hash(hash);
            return ok(primary).then_some(primary);
        }
        match ring.replicas(hash, copies) {
            Some(table) => table.iter().map(|&n| usize::from(n)).find(|&n| ok(n)),
            None => ring.node_iter(hash).take(copies).find(|&n| ok(n)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::cluster::NodeInfo;
    use crate::config::{Config, Settings};

    fn settings(layers: &str) -> Settings {
        let yaml = format!(
            "nodes:\n  - {{id: a, addr: '127.0.0.1:1'}}\n  - {{id: b, addr: '127.0.0.1:2'}}\n  - {{id: c, addr: '127.0.0.1:3'}}\n{layers}"
        );
        Config::parse(&yaml, "test").unwrap()
    }

    fn owners(layers: &str, live: [bool; 3]) -> Owners {
        let settings = settings(layers);
        let nodes = (0..3)
            .map(|i| {
                Arc::new(NodeInfo::new(
                    i,
                    ["a", "b", "c"][i].to_string(),
                    format!("127.0.0.1:{}", i + 1),
                    1,
                    1,
                ))
            })
            .collect();
        let layers = Layers::new(&settings.layers, 1);
        let topology = Topology::new(nodes, 100, settings.hash_tag, 3);
        Owners::with_live(Arc::new(topology), Arc::new(layers), live.to_vec(), true)
    }

    const LAYERS: &str = "layers:\n  - {name: two, prefix: 'two:', replication: 2}\n  - {name: three, prefix: 'three:', replication: 3}\n  - {name: eject, prefix: 'e:', eject_on_down: true}\n";

    #[test]
    fn every_node_up_the_primary_owns_every_key() {
        let o = owners(LAYERS, [true; 3]);
        for i in 0..300 {
            for prefix in ["two:", "three:", "e:", "plain:"] {
                let key = format!("{prefix}{i}");
                assert_eq!(o.owner(key.as_bytes()), Some(o.primary(key.as_bytes())));
            }
        }
    }

    #[test]
    fn a_down_primary_hands_its_keys_to_the_next_live_replica() {
        let all = owners(LAYERS, [true; 3]);
        let o = owners(LAYERS, [false, true, true]);
        let ring = &all.topology().ring;
        let mut seen = [0usize; 4];
        for i in 0..2000 {
            for (p, prefix) in ["two:", "three:", "e:", "plain:"].iter().enumerate() {
                let key = format!("{prefix}{i}");
                let k = key.as_bytes();
                let owner = o.owner(k);
                if all.primary(k) != 0 {
                    // Keys not on the down node keep their owner.
                    assert_eq!(owner, Some(all.primary(k)), "{key}");
                    continue;
                }
                seen[p] += 1;
                let copies = match *prefix {
                    "two:" => 2,
                    "three:" => 3,
                    _ => 1,
                };
                let expected = match *prefix {
                    // Ejecting layers: the next node clockwise.
                    "e:" => ring.node_iter(ring.key_hash(k)).nth(1),
                    // One copy on a down node: nobody has it.
                    "plain:" => None,
                    _ => ring.preference_list(k, copies).get(1).copied(),
                };
                assert_eq!(owner, expected, "{key}");
                // Without node 0 taken out, owner_without gives the same on the full set.
                assert_eq!(all.owner_without(k, 0), expected, "{key}");
            }
        }
        assert!(seen.iter().all(|&n| n > 300), "{seen:?}");
    }

    #[test]
    fn no_live_replica_no_owner() {
        let o = owners(LAYERS, [false, false, true]);
        for i in 0..500 {
            let key = format!("two:{i}");
            let list = o.topology().ring.preference_list(key.as_bytes(), 2);
            let expected = list.contains(&2).then_some(2);
            assert_eq!(o.owner(key.as_bytes()), expected, "{key}");
        }
        assert_eq!(o.live_members(), vec![2]);
    }

    #[test]
    fn without_replicated_layers_the_primary_if_live() {
        let o = owners("", [true, false, true]);
        assert!(!o.has_copies());
        for i in 0..500 {
            let key = format!("k:{i}");
            let p = o.primary(key.as_bytes());
            assert_eq!(o.owner(key.as_bytes()), (p != 1).then_some(p));
        }
    }
}
