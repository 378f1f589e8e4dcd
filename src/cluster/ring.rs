//! The consistent-hash ring: a ketama-style continuum and the preference list of a key.
//!
//! Placement must agree across strata processes, versions and machines, so the hash is fixed
//! and documented: **xxh3-64 with seed 0**. A node with id `ID` and weight `w` owns
//! `vnodes × w` points, point `i` at `xxh3_64("ID-i")`. A key's point is `xxh3_64` of the key
//! (or of its hash tag, the bytes between the first `{` and the next `}` when that is
//! non-empty); its replicas are the first distinct nodes met walking clockwise from there.

use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::HashTag;

/// The continuum. Nodes are referred to by their index in the configured node list.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Sorted point hashes; `owners[i]` owns `hashes[i]`. Two arrays keep the binary search on
    /// a dense `u64` slice.
    hashes: Vec<u64>,
    owners: Vec<u16>,
    /// For each point, the first `depth` distinct nodes met walking clockwise from it
    /// (`successors[i * depth..][..depth]`): a key's replicas without walking the ring per
    /// request. Empty until [`Ring::with_replicas`].
    successors: Vec<u16>,
    depth: usize,
    node_count: usize,
    hash_tag: Option<HashTag>,
}

/// A node as the ring sees it.
#[derive(Debug, Clone, Copy)]
pub struct RingNode<'a> {
    pub id: &'a str,
    pub weight: u32,
}

impl Ring {
    /// Builds the continuum. At most `u16::MAX` nodes.
    pub fn new(nodes: &[RingNode<'_>], vnodes: u32, hash_tag: Option<HashTag>) -> Ring {
        let mut points: Vec<(u64, u16)> = Vec::new();
        for (index, node) in nodes.iter().enumerate().take(usize::from(u16::MAX)) {
            let count = u64::from(vnodes) * u64::from(node.weight);
            for i in 0..count {
                let label = format!("{}-{}", node.id, i);
                points.push((xxh3_64(label.as_bytes()), index as u16));
            }
        }
        // Ties (vanishingly rare) are broken by node index so every process agrees.
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);
        let (hashes, owners) = points.into_iter().unzip();
        Ring {
            hashes,
            owners,
            successors: Vec::new(),
            depth: 0,
            // Nodes of weight 0 (removed members) have no points and do not count.
            node_count: nodes.iter().filter(|n| n.weight > 0).count(),
            hash_tag,
        }
    }

    /// Precomputes the first `depth` distinct nodes of every point (capped at the node
    /// count), so [`Ring::replicas`] of up to `depth` nodes is a lookup.
    pub fn with_replicas(mut self, depth: usize) -> Ring {
        let depth = depth.min(self.node_count);
        if depth <= 1 {
            return self;
        }
        let mut successors = Vec::with_capacity(self.owners.len() * depth);
        for point in 0..self.owners.len() {
            let start = successors.len();
            let walk = NodeIter {
                ring: &self,
                next: point,
                walked: 0,
                seen: SmallVec::new(),
            };
            successors.extend(walk.take(depth).map(|n| n as u16));
            // A ring always holds every node, so the walk finds `depth` of them; pad anyway so
            // the table's stride holds.
            let last = successors.last().copied().unwrap_or(0);
            successors.resize(start + depth, last);
        }
        self.successors = successors;
        self.depth = depth;
        self
    }

    /// The first `n` distinct nodes clockwise from `hash` from the precomputed table, when
    /// `n` (capped at the node count) is within its depth; `None` means walk the ring
    /// ([`Ring::node_iter`]).
    pub fn replicas(&self, hash: u64, n: usize) -> Option<&[u16]> {
        let n = n.min(self.node_count);
        if n > self.depth {
            return None;
        }
        let at = self.first_point(hash) * self.depth;
        self.successors.get(at..at + n)
    }

    pub fn node_count(&self) -> usize {
        self.node_count
    }

    pub fn point_count(&self) -> usize {
        self.hashes.len()
    }

    /// The part of the key that is hashed: the hash tag when present and non-empty.
    pub fn hashed_part<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        let Some(tag) = self.hash_tag else {
            return key;
        };
        let Some(open) = memchr::memchr(tag.open, key) else {
            return key;
        };
        let after = key.get(open + 1..).unwrap_or_default();
        match memchr::memchr(tag.close, after) {
            Some(0) | None => key,
            Some(close) => after.get(..close).unwrap_or(key),
        }
    }

    /// The key's point on the ring.
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        xxh3_64(self.hashed_part(key))
    }

    /// Index (into the point arrays) of the first point at or after `hash`, wrapping around.
    fn first_point(&self, hash: u64) -> usize {
        let i = self.hashes.partition_point(|&h| h < hash);
        if i == self.hashes.len() {
            0
        } else {
            i
        }
    }

    /// The node that owns `hash`: the primary replica.
    pub fn primary_for_hash(&self, hash: u64) -> usize {
        let i = self.first_point(hash);
        self.owners.get(i).map_or(0, |&o| usize::from(o))
    }

    /// The key's primary node.
    pub fn primary(&self, key: &[u8]) -> usize {
        self.primary_for_hash(self.key_hash(key))
    }

    /// Distinct nodes clockwise from `hash`: position 0 is the primary, then the replicas.
    pub fn node_iter(&self, hash: u64) -> NodeIter<'_> {
        NodeIter {
            ring: self,
            next: self.first_point(hash),
            walked: 0,
            seen: SmallVec::new(),
        }
    }

    /// The first `n` distinct nodes for a key (fewer when the ring has fewer nodes).
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<usize> {
        self.node_iter(self.key_hash(key)).take(n).collect()
    }
}

/// Walks the ring clockwise yielding each node once.
pub struct NodeIter<'r> {
    ring: &'r Ring,
    next: usize,
    walked: usize,
    /// Nodes yielded so far (inline: a walk rarely goes past a few nodes).
    seen: SmallVec<[usize; 8]>,
}

impl Iterator for NodeIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let len = self.ring.owners.len();
        while self.walked < len && self.seen.len() < self.ring.node_count {
            let owner = usize::from(*self.ring.owners.get(self.next)?);
            self.next = (self.next + 1) % len;
            self.walked += 1;
            if !self.seen.contains(&owner) {
                self.seen.push(owner);
                return Some(owner);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TAG: Option<HashTag> = Some(HashTag {
        open: b'{',
        close: b'}',
    });

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node{i}")).collect()
    }

    fn ring(ids: &[String], vnodes: u32) -> Ring {
        let nodes: Vec<RingNode<'_>> = ids.iter().map(|id| RingNode { id, weight: 1 }).collect();
        Ring::new(&nodes, vnodes, TAG)
    }

    fn default_vnodes() -> u32 {
        crate::config::RingConfig::default().vnodes
    }

    #[test]
    fn distribution_over_ten_nodes_is_even() {
        let ids = ids(10);
        let r = ring(&ids, default_vnodes());
        let mut counts = [0usize; 10];
        for k in 0..100_000 {
            counts[r.primary(format!("key:{k}").as_bytes())] += 1;
        }
        let mean = 100_000.0 / 10.0;
        let max = *counts.iter().max().unwrap() as f64;
        assert!(max / mean <= 1.10, "max/mean = {} ({counts:?})", max / mean);
    }

    #[test]
    fn adding_an_eleventh_node_moves_about_one_eleventh() {
        let ten = ids(10);
        let eleven = ids(11);
        let before = ring(&ten, default_vnodes());
        let after = ring(&eleven, default_vnodes());
        let total = 100_000;
        let mut moved = 0;
        for k in 0..total {
            let key = format!("key:{k}");
            let (a, b) = (
                before.primary(key.as_bytes()),
                after.primary(key.as_bytes()),
            );
            if a != b {
                moved += 1;
                // Keys only ever move to the new node.
                assert_eq!(b, 10, "{key} moved between old nodes");
            }
        }
        let share = moved as f64 / total as f64;
        let expected = 1.0 / 11.0;
        assert!(
            (share - expected).abs() <= 0.02,
            "moved {share:.4}, expected {expected:.4} ± 0.02"
        );
    }

    #[test]
    fn weights_scale_the_share() {
        let ids = ids(2);
        let nodes = [
            RingNode {
                id: &ids[0],
                weight: 1,
            },
            RingNode {
                id: &ids[1],
                weight: 3,
            },
        ];
        let r = Ring::new(&nodes, default_vnodes(), TAG);
        let heavy = (0..40_000)
            .filter(|k| r.primary(format!("k{k}").as_bytes()) == 1)
            .count();
        let share = heavy as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.05, "{share}");
    }

    #[test]
    fn hash_tags() {
        let r = ring(&ids(3), 16);
        assert_eq!(r.hashed_part(b"user:{42}:name"), b"42");
        assert_eq!(r.hashed_part(b"{}x"), b"{}x");
        assert_eq!(r.hashed_part(b"a{b"), b"a{b");
        assert_eq!(r.hashed_part(b"a}b{c}d{e}"), b"c");
        assert_eq!(r.primary(b"{u1}.a"), r.primary(b"{u1}.b"));
        let untagged = Ring::new(&[RingNode { id: "a", weight: 1 }], 4, None);
        assert_eq!(untagged.hashed_part(b"{x}y"), b"{x}y");
    }

    #[test]
    fn the_replica_table_agrees_with_walking_the_ring() {
        let ids = ids(5);
        let walked = ring(&ids, 50);
        let table = ring(&ids, 50).with_replicas(3);
        for k in 0..2000 {
            let hash = walked.key_hash(format!("key:{k}").as_bytes());
            for n in 1..=5 {
                let expected: Vec<usize> = walked.node_iter(hash).take(n).collect();
                match table.replicas(hash, n) {
                    Some(got) => {
                        assert!(n <= 3, "n={n} is deeper than the table");
                        let got: Vec<usize> = got.iter().map(|&o| usize::from(o)).collect();
                        assert_eq!(got, expected, "key:{k} n={n}");
                    }
                    None => assert!(n > 3, "n={n} is within the table"),
                }
            }
        }
        // Asking more nodes than there are is asking for all of them.
        assert_eq!(
            ring(&ids, 50)
                .with_replicas(9)
                .replicas(0, 9)
                .map(<[u16]>::len),
            Some(5)
        );
    }

    #[test]
    fn preference_lists_are_distinct_and_start_at_the_primary() {
        let r = ring(&ids(5), default_vnodes());
        for k in 0..1000 {
            let key = format!("k{k}");
            let list = r.preference_list(key.as_bytes(), 3);
            assert_eq!(list.len(), 3);
            assert_eq!(list[0], r.primary(key.as_bytes()));
            assert!(list[0] != list[1] && list[1] != list[2] && list[0] != list[2]);
        }
        assert_eq!(r.preference_list(b"x", 9).len(), 5);
    }

    #[test]
    fn placement_is_stable() {
        // Pinned values: placement must never change between versions.
        assert_eq!(xxh3_64(b"hello"), 0x9555e8555c62dcfd);
        let r = ring(&ids(3), 256);
        let owners: Vec<usize> = ["a", "b", "c", "route:abc"]
            .iter()
            .map(|k| r.primary(k.as_bytes()))
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
    }

    // Filled from the first run of `placement_is_stable`; a change here moves users' keys.
    const PINNED_OWNERS: [usize; 4] = [0, 2, 1, 2];
}
