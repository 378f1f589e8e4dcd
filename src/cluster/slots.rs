//! A Redis Cluster backend as requests see it: the hash slot of a key (CRC16 of the key, or of
//! its `{hash tag}`, modulo 16384, exactly as Redis Cluster computes it) and the [`SlotMap`]
//! saying which node serves each slot, built from the cluster's own `CLUSTER SLOTS` reply.
//!
//! Nodes are topology slots (`topology.rs`), like the ring's: a cluster's nodes get their
//! connections, health and figures the same way; they are just not on the ring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis_protocol::resp2::types::BytesFrame;
use tokio::sync::{watch, Notify};

/// Hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// No node serves the slot (the map is empty, or the cluster left it unassigned).
const NONE: u16 = u16::MAX;

/// CRC16/XMODEM, Redis Cluster's key hash, sixteen bytes per step (slice-by-16 tables, 8 KB).
/// On every request of a cluster layer: with the byte-at-a-time table of the `crc16` crate a
/// GET cost 159 instructions more over a cluster than over the ring at `-P 16` (callgrind,
/// 16-byte keys); with this, 54 more.
const SLOT_CRC: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_XMODEM);

/// Redis Cluster's hash slot of `key`: the bytes between the first `{` and the first `}` after
/// it are hashed instead of the whole key when there are any. Fixed by Redis, so `ring.hash_tag`
/// does not apply.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match memchr::memchr(b'{', key) {
        Some(open) => {
            let rest = key.get(open + 1..).unwrap_or_default();
            match memchr::memchr(b'}', rest) {
                Some(0) | None => key,
                Some(close) => rest.get(..close).unwrap_or(key),
            }
        }
        None => key,
    };
    SLOT_CRC.checksum(hashed) & (SLOT_COUNT as u16 - 1)
}

/// A range of slots and the nodes serving it, as the cluster reported it (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub primary: String,
    pub replicas: Vec<String>,
}

/// Why a `CLUSTER SLOTS` reply could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotsError {
    #[error("CLUSTER SLOTS: {0}")]
    Malformed(&'static str),
    #[error("CLUSTER SLOTS answered an error: {0}")]
    Refused(String),
}

/// The slot ranges of a `CLUSTER SLOTS` reply. `asked_host` stands in for a node reported with
/// an empty host (Redis's way of saying "the address you reached me at").
pub fn parse_cluster_slots(
    frame: &BytesFrame,
    asked_host: &str,
) -> Result<Vec<SlotRange>, SlotsError> {
    let items = match frame {
        BytesFrame::Array(items) => items,
        BytesFrame::Error(e) => return Err(SlotsError::Refused(e.to_string())),
        _ => return Err(SlotsError::Malformed("not an array")),
    };
    let mut ranges = Vec::with_capacity(items.len());
    for item in items {
        let BytesFrame::Array(parts) = item else {
            return Err(SlotsError::Malformed("a range is not an array"));
        };
        let bound = |i: usize| match parts.get(i) {
            Some(BytesFrame::Integer(n)) if (0..SLOT_COUNT as i64).contains(n) => Ok(*n as u16),
            _ => Err(SlotsError::Malformed(
                "a slot number is missing or out of range",
            )),
        };
        let (start, end) = (bound(0)?, bound(1)?);
        if start > end {
            return Err(SlotsError::Malformed("a range ends before it starts"));
        }
        let mut nodes = parts.iter().skip(2).map(|n| node_addr(n, asked_host));
        let primary = nodes
            .next()
            .ok_or(SlotsError::Malformed("a range has no node"))??;
        let replicas = nodes.collect::<Result<Vec<_>, _>>()?;
        ranges.push(SlotRange {
            start,
            end,
            primary,
            replicas,
        });
    }
    Ok(ranges)
}

/// `host:port` of one node entry (`[host, port, id, ...]`).
fn node_addr(frame: &BytesFrame, asked_host: &str) -> Result<String, SlotsError> {
    let BytesFrame::Array(fields) = frame else {
        return Err(SlotsError::Malformed("a node is not an array"));
    };
    let host = match fields.first() {
        Some(BytesFrame::BulkString(h)) | Some(BytesFrame::SimpleString(h)) => {
            String::from_utf8_lossy(h).into_owned()
        }
        _ => return Err(SlotsError::Malformed("a node has no host")),
    };
    let port = match fields.get(1) {
        Some(BytesFrame::Integer(p)) if (1..=65535).contains(p) => *p,
        _ => return Err(SlotsError::Malformed("a node has no port")),
    };
    // "?" is what Redis reports for an endpoint it does not know.
    let host = if host.is_empty() || host == "?" {
        asked_host.to_string()
    } else {
        host
    };
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// One shard: the primary serving a set of slots and its replicas (topology slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub primary: usize,
    pub replicas: Vec<usize>,
}

/// Which node serves each slot of one cluster backend.
#[derive(Debug, Clone)]
pub struct SlotMap {
    /// The backend, shared with its nodes.
    pub link: std::sync::Arc<ClusterLink>,
    /// The ranges as the cluster reported them (a refresh that finds the same changes
    /// nothing).
    pub ranges: Vec<SlotRange>,
    /// Per slot, the index in `shards` of its shard (`NONE`: unassigned).
    shard_of: Box<[u16]>,
    shards: Vec<Shard>,
    /// Every topology slot this backend has had a node in, primaries and replicas (a node the
    /// cluster stops reporting keeps its slot, like a removed ring node).
    pub nodes: Vec<usize>,
    /// 0 for the empty map strata starts with, +1 per map learnt.
    pub version: u64,
}

impl SlotMap {
    /// No slot served yet.
    pub fn empty(link: std::sync::Arc<ClusterLink>) -> SlotMap {
        SlotMap {
            link,
            ranges: Vec::new(),
            shard_of: vec![NONE; SLOT_COUNT].into_boxed_slice(),
            shards: Vec::new(),
            nodes: Vec::new(),
            version: 0,
        }
    }

    /// The map of `ranges`, whose addresses `slot_of` turns into topology slots; `nodes` are
    /// every topology slot of the backend.
    pub fn build(
        link: std::sync::Arc<ClusterLink>,
        ranges: Vec<SlotRange>,
        slot_of: impl Fn(&str) -> Option<usize>,
        nodes: Vec<usize>,
        version: u64,
    ) -> SlotMap {
        let mut map = SlotMap {
            nodes,
            version,
            ..SlotMap::empty(link)
        };
        for range in &ranges {
            let Some(primary) = slot_of(&range.primary) else {
                continue;
            };
            let replicas = range.replicas.iter().filter_map(|r| slot_of(r)).collect();
            let shard = Shard { primary, replicas };
            let index = match map.shards.iter().position(|s| *s == shard) {
                Some(i) => i,
                None => {
                    map.shards.push(shard);
                    map.shards.len() - 1
                }
            };
            let cells = map
                .shard_of
                .get_mut(usize::from(range.start)..=usize::from(range.end));
            for cell in cells.into_iter().flatten() {
                *cell = index as u16;
            }
        }
        map.ranges = ranges;
        map
    }

    /// The primary serving `slot`; `None` when no node does.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        self.shard(slot).map(|s| s.primary)
    }

    /// The shard serving `slot`.
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        let index = *self.shard_of.get(usize::from(slot))?;
        self.shards.get(usize::from(index))
    }

    /// The primaries serving some slot, each once.
    pub fn primaries(&self) -> impl Iterator<Item = usize> + '_ {
        self.shards
            .iter()
            .map(|s| s.primary)
            .enumerate()
            .filter_map(|(i, p)| {
                let first = self.shards.iter().position(|s| s.primary == p) == Some(i);
                first.then_some(p)
            })
    }

    /// Slots some node serves.
    pub fn covered(&self) -> usize {
        self.shard_of.iter().filter(|&&s| s != NONE).count()
    }

    /// Shards (primaries with the slots they serve).
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
}

/// What every node of one cluster backend shares: the backend, the redirect bound, and the
/// way to ask for a new slot map.
#[derive(Debug)]
pub struct ClusterLink {
    /// Position in `backends` (and in `Topology::clusters`).
    pub backend: usize,
    /// Its name, for logs and INFO.
    pub name: String,
    /// `max_redirects`.
    pub max_redirects: u8,
    /// A primary managed by Redis Sentinel rather than a Redis Cluster: one shard serves every
    /// slot, so keys of any slots may share a command.
    pub sentinel: bool,
    pub refresh: MapRefresh,
    /// Some layer on this backend reads from replicas (`read_from: replica`): new connections
    /// to a Redis Cluster node send READONLY. Set from the layers at start and by reloads.
    pub replica_reads: std::sync::atomic::AtomicBool,
    /// A node refused READONLY and the warning was logged (once per backend).
    pub readonly_refused: std::sync::atomic::AtomicBool,
}

impl ClusterLink {
    /// One link per configured backend, in the order of `backends`.
    pub fn of_backends(
        backends: &[crate::config::backends::BackendSpec],
    ) -> Vec<std::sync::Arc<ClusterLink>> {
        backends
            .iter()
            .enumerate()
            .map(|(backend, b)| {
                std::sync::Arc::new(ClusterLink {
                    backend,
                    name: b.name.clone(),
                    max_redirects: b.max_redirects(),
                    sentinel: b.sentinel.is_some(),
                    refresh: MapRefresh::default(),
                    replica_reads: std::sync::atomic::AtomicBool::new(false),
                    readonly_refused: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .collect()
    }
}

/// Asks for a new slot map, and tells when the cluster was asked successfully (the map may
/// be the same). The refresher (`control`) waits on [`MapRefresh::wanted`]; redirects and
/// failures call [`MapRefresh::ask`].
#[derive(Debug)]
pub struct MapRefresh {
    wanted: Notify,
    learnt: watch::Sender<u64>,
    /// Redirects followed, maps learnt and failed attempts (INFO, /metrics).
    pub moved: AtomicU64,
    pub asked: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    /// Redirects handed back to the client as errors (bound reached, target unknown).
    pub redirect_errors: AtomicU64,
}

impl Default for MapRefresh {
    fn default() -> Self {
        MapRefresh {
            wanted: Notify::new(),
            learnt: watch::Sender::new(0),
            moved: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
            redirect_errors: AtomicU64::new(0),
        }
    }
}

impl MapRefresh {
    /// Something suggests the map changed (a `MOVED`, a node failing): refresh soon.
    pub fn ask(&self) {
        self.wanted.notify_one();
    }

    /// Completes when [`MapRefresh::ask`] was called (at once if it was since the last wait).
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// The cluster answered; its map (new or not) is in the topology.
    pub fn learnt(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        self.learnt.send_modify(|n| *n += 1);
    }

    /// Waits up to `within` for a refresh after the one numbered `than` ([`MapRefresh::version`]);
    /// true when one came.
    pub async fn newer_than(&self, than: u64, within: Duration) -> bool {
        let mut rx = self.learnt.subscribe();
        tokio::time::timeout(within, rx.wait_for(|&v| v > than))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many refreshes succeeded so far.
    pub fn version(&self) -> u64 {
        *self.learnt.borrow()
    }

    pub fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        // An empty tag hashes the whole key; only the first tag counts.
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
        // Long keys (memchr's search) and every length around the 16-byte steps agree with a
        // plain bitwise CRC16/XMODEM.
        let bitwise = |data: &[u8]| {
            let mut crc: u16 = 0;
            for &b in data {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc & 0x3fff
        };
        for len in 0..200 {
            let key: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(key_slot(&key), bitwise(&key), "length {len}");
        }
        let mut long = vec![b'x'; 100];
        long.extend_from_slice(b"{tag}");
        assert_eq!(key_slot(&long), key_slot(b"tag"));
    }

    fn link() -> std::sync::Arc<ClusterLink> {
        std::sync::Arc::new(ClusterLink {
            backend: 0,
            name: "c".into(),
            max_redirects: 5,
            sentinel: false,
            refresh: MapRefresh::default(),
            replica_reads: Default::default(),
            readonly_refused: Default::default(),
        })
    }

    fn node(host: &str, port: i64) -> BytesFrame {
        BytesFrame::Array(vec![
            BytesFrame::BulkString(Bytes::from(host.to_string())),
            BytesFrame::Integer(port),
            BytesFrame::BulkString(Bytes::from_static(b"id")),
        ])
    }

    #[test]
    fn cluster_slots_reply_becomes_a_map() {
        let reply = BytesFrame::Array(vec![
            BytesFrame::Array(vec![
                BytesFrame::Integer(0),
                BytesFrame::Integer(8191),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            BytesFrame::Array(vec![
                BytesFrame::Integer(8192),
                BytesFrame::Integer(16383),
                node("", 7001),
            ]),
        ]);
        let ranges = parse_cluster_slots(&reply, "10.0.0.9").unwrap();
        assert_eq!(ranges[0].primary, "127.0.0.1:7000");
        assert_eq!(ranges[0].replicas, vec!["127.0.0.1:7003".to_string()]);
        assert_eq!(ranges[1].primary, "10.0.0.9:7001");
        let addrs = ["127.0.0.1:7000", "127.0.0.1:7003", "10.0.0.9:7001"];
        let map = SlotMap::build(
            link(),
            ranges,
            |a| addrs.iter().position(|x| *x == a).map(|i| i + 5),
            vec![5, 6, 7],
            1,
        );
        assert_eq!(map.owner(0), Some(5));
        assert_eq!(map.owner(8191), Some(5));
        assert_eq!(map.owner(8192), Some(7));
        assert_eq!(map.shard(100).unwrap().replicas, vec![6]);
        assert_eq!(map.covered(), SLOT_COUNT);
        assert_eq!(map.primaries().collect::<Vec<_>>(), vec![5, 7]);
        assert_eq!(SlotMap::empty(link()).owner(3), None);
    }

    #[test]
    fn malformed_replies_are_refused() {
        let bad = BytesFrame::Array(vec![BytesFrame::Array(vec![
            BytesFrame::Integer(10),
            BytesFrame::Integer(5),
            node("h", 1),
        ])]);
        assert!(parse_cluster_slots(&bad, "x").is_err());
        let err = BytesFrame::Error("ERR This instance has cluster support disabled".into());
        assert!(matches!(
            parse_cluster_slots(&err, "x"),
            Err(SlotsError::Refused(_))
        ));
        let no_node = BytesFrame::Array(vec![BytesFrame::Array(vec![
            BytesFrame::Integer(0),
            BytesFrame::Integer(5),
        ])]);
        assert!(parse_cluster_slots(&no_node, "x").is_err());
    }
}
