//! The sections of `config.yaml` below the top level (ring, layers, health, repair, rebalance,
//! timeouts, shutdown, backend, limits, security, stats), with their documented defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// The consistent-hash ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingConfig {
    /// Points on the ring per unit of node weight. Default 1000: with 10 equal nodes the busiest
    /// holds about 4% more keys than the mean (at 160, ketama's classic figure, about 16% more).
    pub vnodes: u32,
    /// Two characters delimiting the hash tag: only the part of a key between the first opening
    /// and the next closing character is hashed, when non-empty. Default `{}`; empty string
    /// disables hash tags.
    pub hash_tag: String,
}

/// Write consistency: how many replicas must acknowledge a write before the client's reply.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WriteConsistency {
    /// The first success.
    Eventual,
    /// A majority of the replicas.
    Quorum,
    /// Every replica.
    Strong,
}

/// Read consistency: how many replicas a read asks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// The first replica that is up.
    One,
    /// A majority of the replicas, replies compared.
    Quorum,
    /// Every replica, replies compared.
    All,
}

/// Where a layer served by a Redis Cluster or Sentinel backend reads its keys.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// The primary of the key's shard: every read sees every acknowledged write.
    #[default]
    Primary,
    /// A replica of the key's shard that is up (the same one for a client while it stays
    /// up), the primary when none is: reads may lag writes by the replication delay.
    Replica,
}

/// The policy fields every layer inherits when it leaves them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LayerDefaults {
    /// TTL given to keys written without one. Default none (`0` also means none).
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Largest TTL a key may have: explicit TTLs are clamped to it, KEEPTTL and PERSIST are
    /// refused. Default none (`0` also means none).
    #[serde(with = "humantime_serde")]
    pub max_ttl: Option<Duration>,
    /// Copies of each key. Default 1.
    pub replication: usize,
    /// Default `quorum`.
    pub write_consistency: WriteConsistency,
    /// Default `one`.
    pub read_consistency: ReadConsistency,
    /// A read that finds nothing on the first replica asks the next one, and copies a value
    /// found there back. Default: on when `replication` is above 1.
    pub miss_failover: Option<bool>,
    /// While a node is down, drop it from the layer's ring: its keys go to the next nodes
    /// (twemproxy's auto-eject). Default false: the node keeps its place, its keys are served
    /// by their other replicas.
    pub eject_on_down: bool,
    /// Concurrent identical reads that go to the nodes are sent once and share the reply
    /// (docs/coalescing.md). Default false.
    pub coalesce: bool,
    /// The backend serving every layer that names none: `ring` (the `nodes`) or a name from
    /// `backends`. Default `ring`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Reads of a Redis Cluster or Sentinel layer go to the shard's `primary` or to a
    /// `replica`. Default `primary`.
    pub read_from: ReadFrom,
}

impl Default for LayerDefaults {
    fn default() -> Self {
        LayerDefaults {
            ttl: None,
            max_ttl: None,
            replication: 1,
            write_consistency: WriteConsistency::Quorum,
            read_consistency: ReadConsistency::One,
            miss_failover: None,
            eject_on_down: false,
            coalesce: false,
            backend: None,
            read_from: ReadFrom::Primary,
        }
    }
}

/// One key layer. Fields left out come from `defaults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// Name used in INFO, STRATA LAYERS and metric labels: letters, digits, `_` and `-`.
    pub name: String,
    /// Keys starting with it belong to the layer (longest prefix wins). Non-empty.
    pub prefix: String,
    /// Optional template naming the key's fields, e.g. `result:{query}:{model}`; it must start
    /// with the prefix. Used by `STRATA INVALIDATE WHERE field=value`.
    #[serde(default)]
    pub key: Option<String>,
    /// Default TTL; `0` means none even when `defaults.ttl` is set.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// Maximum TTL; `0` means none even when `defaults.max_ttl` is set.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_consistency: Option<WriteConsistency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_consistency: Option<ReadConsistency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miss_failover: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eject_on_down: Option<bool>,
    /// Concurrent identical reads share one request to the nodes (docs/coalescing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce: Option<bool>,
    /// Keep the layer's hot values in strata's own memory, kept coherent by the nodes'
    /// invalidations (docs/near-cache.md). Default none: off. Only for `read_consistency: one`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_cache: Option<NearCacheConfig>,
    /// What serves the layer's keys: `ring` (the `nodes`) or a name from `backends` (a Redis
    /// Cluster, docs/redis-cluster.md). Default `defaults.backend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Reads from the shard's `primary` or a `replica` (Redis Cluster and Sentinel layers
    /// only). Default `defaults.read_from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<ReadFrom>,
}

/// A layer's near cache.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NearCacheConfig {
    /// Memory the layer's entries may take: keys, values and a fixed overhead per entry.
    /// Default `64mb`.
    pub max_bytes: ByteSize,
    /// Values larger than this are not kept. Default `64kb`.
    pub max_value_size: ByteSize,
    /// Longest an entry is kept without the node's say-so: it is dropped this long after it
    /// was read from the node, even if no invalidation came. The entry never outlives the
    /// key's own TTL either. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for NearCacheConfig {
    fn default() -> Self {
        NearCacheConfig {
            max_bytes: ByteSize(64 << 20),
            max_value_size: ByteSize(64 << 10),
            max_ttl: Duration::from_secs(60),
        }
    }
}

/// The process-wide budget of the layers' near caches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NearCacheBudget {
    /// The layers' `near_cache.max_bytes` together may not exceed this. Default `256mb`.
    pub max_bytes: ByteSize,
}

impl Default for NearCacheBudget {
    fn default() -> Self {
        NearCacheBudget {
            max_bytes: ByteSize(256 << 20),
        }
    }
}

/// `CLIENT TRACKING` for strata's own clients (docs/client-tracking.md).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTrackingConfig {
    /// Keys remembered for tracking clients in the default mode, as Redis's
    /// `tracking-table-max-keys`: past it keys are invalidated early (their readers told) to
    /// make room. Default 1000000; `0`: no bound on the count (`max_bytes` still applies).
    pub max_keys: usize,
    /// Bytes the remembered keys may take (each key's bytes plus 64 per key). Default
    /// `256mb`; at least `1mb`.
    pub max_bytes: ByteSize,
    /// Bytes of invalidation messages waiting for one client; past it they collapse into one
    /// flush (the client drops everything it cached). Default `1mb`; at least `4kb`.
    pub max_queued_bytes: ByteSize,
    /// How long the nodes' invalidation streams keep reporting every key after the last
    /// tracking client turned tracking off (so clients coming and going do not make the
    /// streams reconnect each time). Default `60s`.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl ClientTrackingConfig {
    /// The bounds as the tracking table applies them.
    pub fn limits(&self) -> crate::client_tracking::Limits {
        let size = |b: ByteSize| usize::try_from(b.bytes()).unwrap_or(usize::MAX);
        crate::client_tracking::Limits {
            max_keys: self.max_keys,
            max_bytes: size(self.max_bytes),
            max_queued_bytes: size(self.max_queued_bytes),
            linger: self.linger,
        }
    }
}

impl Default for ClientTrackingConfig {
    fn default() -> Self {
        ClientTrackingConfig {
            max_keys: 1_000_000,
            max_bytes: ByteSize(256 << 20),
            max_queued_bytes: ByteSize(1 << 20),
            linger: Duration::from_secs(60),
        }
    }
}

/// Statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// How often strata counts the keys of each layer on the nodes (a SCAN of every node,
    /// shown as `keys=` in INFO and `strata_layer_keys`). Default `60s`; `0` turns it off.
    #[serde(with = "humantime_serde")]
    pub layer_keys_interval: Duration,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            layer_keys_interval: Duration::from_secs(60),
        }
    }
}

/// Node health: heartbeats and the thresholds that mark a node down and up again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between two `PING`s to each node (on a connection of their own). Default `1s`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node that has not answered anything (heartbeat or request) for this long is marked
    /// down. Default `3s`.
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
    /// Consecutive failures (heartbeat, connection error or timeout) that mark a node down.
    /// Default 3.
    pub failure_threshold: u32,
    /// Consecutive successful heartbeats that mark a down node up again. Default 2.
    pub recovery_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
            failure_threshold: 3,
            recovery_threshold: 2,
        }
    }
}

/// Background work that makes replicas converge: the tails of replicated writes, read
/// repair, and hinted handoff.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// Replicated writes whose client was already answered, and read repairs, in flight at
    /// once per worker. Past it a write's outcome is not watched (a hint is stored instead,
    /// so the replica is brought up to date later) and a repair is skipped; both are counted
    /// and logged. Default 10000.
    pub max_in_flight: usize,
    /// Keys remembered per node for hinted handoff (writes the node missed while down). Past
    /// it the oldest hint is dropped and counted. Default 100000.
    pub max_hints_per_node: usize,
    /// Hinted keys copied to a recovered node per pipelined batch. Default 100.
    pub replay_batch: usize,
    /// Notice a node that restarted (its Redis `run_id` changed) and refill it: copy to it
    /// every key it should hold from the other replicas, and until that is done believe no
    /// miss from it. Default true.
    pub refill: bool,
    /// Keys copied to a restarted node per second at most. Default 5000.
    pub refill_keys_per_sec: usize,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            max_in_flight: 10_000,
            max_hints_per_node: 100_000,
            replay_batch: 100,
            refill: true,
            refill_keys_per_sec: 5000,
        }
    }
}

/// Moving keys to their owners after membership changes (`STRATA REBALANCE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RebalanceConfig {
    /// Start a rebalance by itself after every membership change. Default false.
    pub auto: bool,
    /// Keys moved per second at most (the walk reads `limits.scan_count` keys per SCAN).
    /// Default 5000.
    pub max_keys_per_sec: usize,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            auto: false,
            max_keys_per_sec: 5000,
        }
    }
}

/// Time limits on the backend side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Time to open a connection to a node. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Time a node has to answer a request; past it the connection is dropped and the requests
    /// on it fail with `ERR strata: node ... unavailable: request timed out`. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub request: Duration,
}

/// Graceful shutdown on SIGTERM / SIGINT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Longest wait for in-flight requests and background work before strata exits anyway.
    /// Default `30s`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Backend connection pools.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Multiplexed connections per node and per worker thread. Default 1: one pipelined
    /// connection carries every client of the worker.
    pub connections_per_node: usize,
    /// First wait before reconnecting to a node that refused or dropped us. Default `50ms`;
    /// doubles on each failure up to `reconnect_backoff_max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_min: Duration,
    /// Longest wait between reconnect attempts. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    /// Requests queued for one backend connection before senders wait. Default 4096.
    pub queue_depth: usize,
    /// Requests written to one backend connection and not yet answered, at most. Default 16384.
    pub max_in_flight: usize,
    /// ACL user strata authenticates as on every node (`AUTH <username> <password>`, or
    /// `HELLO 3 AUTH ...` on RESP3 connections). Default none: `AUTH <password>` (the node's
    /// `default` user) when a password is set. A node's own `username` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password strata authenticates with on every connection it opens to a node. Default
    /// none: no AUTH. A node's own `password` overrides it. Never printed (`<redacted>`);
    /// a reload applies a new one to the connections opened after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<super::Secret>,
    /// TLS to every node (a node's own `tls` overrides it field by field). Default none: plain
    /// TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::NodeTlsConfig>,
}

/// Limits on what clients may send, as Redis has them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Client connections at once; past it new ones get `-ERR max number of clients reached`.
    /// Default 10000.
    pub max_clients: usize,
    /// Arguments in one multibulk request. Default 1048576 (the limit Redis had up to 6.2).
    pub max_multibulk_len: usize,
    /// Bytes in one bulk argument. Default 536870912 (512 MB, Redis's `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Bytes in one inline command line. Default 65536 (Redis's limit).
    pub max_inline_len: usize,
    /// Requests of one client waiting for a node's reply; past it strata reads no more from
    /// the client until one arrives (a reply waiting to be written to the client does not
    /// count: those are bounded by `client_output_buffer_limit`). Default 1024.
    pub max_pipeline: usize,
    /// Bytes of replies waiting to be written to one client (the client reads slower than it
    /// asks), as Redis's `client-output-buffer-limit`: `normal` for every client, `pubsub` for
    /// clients subscribed to a channel or pattern. Past a limit the client is disconnected.
    pub client_output_buffer_limit: OutputBufferLimits,
    /// Bytes of one client's unparsed input (a request still arriving), as Redis's
    /// `client-query-buffer-limit`; past it the client is disconnected. Default `1gb`.
    pub client_query_buffer_limit: ByteSize,
    /// Keys asked per SCAN call (its COUNT) by strata's own scans: STRATA INVALIDATE LAYER /
    /// WHERE and the layer key count; also the most keys one UNLINK removes. Default 1000.
    pub scan_count: usize,
    /// Node slots per process: the configured nodes plus every `STRATA NODE ADD` (a removed
    /// node keeps its slot). Default 1024, at most 65535.
    pub max_nodes: usize,
    /// Dedicated connections open to one node at once (all workers together), for blocking
    /// commands. Past it such a command gets an error. Default 256.
    pub max_dedicated_per_node: usize,
    /// A client that neither sent nor received a byte for longer than this is disconnected,
    /// as by Redis's `timeout`; clients waiting on a blocking command (BLPOP ...) and
    /// subscribed clients are exempt, as in Redis. Checked about once a second (more often
    /// below `4s`). Default `0s`: never.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

/// `client-output-buffer-limit` for the two kinds of client strata has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputBufferLimits {
    /// Clients not subscribed to anything. Default `{hard: 256mb, soft: 64mb, soft_seconds: 60}`.
    pub normal: OutputBufferLimit,
    /// Subscribed clients. Default `{hard: 32mb, soft: 8mb, soft_seconds: 60}` (Redis's).
    pub pubsub: OutputBufferLimit,
}

/// One class's output limit: disconnected at once past `hard` bytes, or after staying past
/// `soft` bytes for `soft_seconds`. 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputBufferLimit {
    pub hard: ByteSize,
    pub soft: ByteSize,
    pub soft_seconds: u64,
}

impl Default for OutputBufferLimits {
    fn default() -> Self {
        OutputBufferLimits {
            normal: OutputBufferLimit {
                hard: ByteSize(256 << 20),
                soft: ByteSize(64 << 20),
                soft_seconds: 60,
            },
            pubsub: OutputBufferLimit {
                hard: ByteSize(32 << 20),
                soft: ByteSize(8 << 20),
                soft_seconds: 60,
            },
        }
    }
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            vnodes: 1000,
            hash_tag: "{}".to_string(),
        }
    }
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(2),
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            connections_per_node: 1,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            queue_depth: 4096,
            max_in_flight: 16384,
            username: None,
            password: None,
            tls: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_clients: 10_000,
            max_multibulk_len: 1024 * 1024,
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_pipeline: 1024,
            client_output_buffer_limit: OutputBufferLimits::default(),
            client_query_buffer_limit: ByteSize(1 << 30),
            scan_count: 1000,
            max_nodes: 1024,
            max_dedicated_per_node: 256,
            idle_timeout: Duration::ZERO,
        }
    }
}
