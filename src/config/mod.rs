//! Configuration: the top level of `config.yaml` (its sections are in `sections.rs`), loading,
//! and validation into the [`Settings`] the rest of strata runs on.
//!
//! Every field has a default (see the doc comment on the field and docs/configuration.md),
//! unknown keys are rejected, and durations are human strings such as `250ms`, `5s` or `10m`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use layers::{resolve_layers, LayerSpec};

pub mod backends;
mod bytesize;
pub mod credentials;
pub mod layers;
mod listen;
mod sections;
pub mod security;
pub mod template;
pub mod tls;

pub use bytesize::ByteSize;
pub use credentials::{Credentials, Secret};
pub use sections::*;
pub use security::{SecurityConfig, UserConfig};
pub use tls::{NodeTlsConfig, TlsConfig};

/// Smallest `limits.client_query_buffer_limit` (Redis's minimum too).
pub const MIN_QUERY_BUFFER_LIMIT: u64 = 1 << 20;
/// Smallest non-zero `limits.client_output_buffer_limit` hard or soft limit: a client's output
/// is checked once it passes this size.
pub const MIN_OUTPUT_BUFFER_LIMIT: u64 = 16 * 1024;

/// Largest node weight (a node owns `ring.vnodes × weight` ring points).
pub const MAX_WEIGHT: u32 = 1000;

/// A problem with the configuration; `strata check` and `strata serve` print it and exit 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// serde_yaml's message carries the line and column.
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The whole file, as written by the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address clients connect to. Default `127.0.0.1:6380`.
    pub listen: SocketAddr,
    /// Address of the HTTP admin endpoint (`GET /metrics`, `GET /healthz`). Default none: no
    /// admin endpoint. A bare port (`9380`) means 127.0.0.1; an address without its host
    /// (`:9380`) is refused, so nothing binds every interface unless `0.0.0.0` is written.
    #[serde(default, deserialize_with = "listen::admin_listen")]
    pub admin_listen: Option<SocketAddr>,
    /// A TLS listener for clients, beside `listen` (see `tls.rs`). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Worker threads, each with its own event loop and backend connections. Default 1: on a
    /// machine whose cores also run the clients or the Redis nodes, one event loop wastes the
    /// least CPU on cross-core wake-ups (see docs/benchmarks.md). `0` means one per CPU core.
    pub workers: usize,
    /// The Redis nodes the ring spreads keys over; ids and addresses unique. At least one
    /// unless every layer is served by one of `backends`.
    pub nodes: Vec<NodeConfig>,
    /// Other stores a layer may be served by (a Redis Cluster), by name. Default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<backends::BackendSpec>,
    pub ring: RingConfig,
    /// Policy of keys whose layer leaves a field out, and of keys matching no layer.
    pub defaults: LayerDefaults,
    /// Key layers: a key belongs to the layer with the longest matching prefix.
    pub layers: Vec<LayerConfig>,
    /// What the layers' near caches may take together.
    pub near_cache: NearCacheBudget,
    /// `CLIENT TRACKING` for strata's clients: the table's and the queues' bounds.
    pub client_tracking: ClientTrackingConfig,
    pub stats: StatsConfig,
    pub health: HealthConfig,
    pub repair: RepairConfig,
    pub rebalance: RebalanceConfig,
    pub timeouts: TimeoutsConfig,
    pub shutdown: ShutdownConfig,
    pub backend: BackendConfig,
    pub limits: LimitsConfig,
    pub security: SecurityConfig,
}

/// One Redis node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable name of the node; placement on the ring depends on it, not on the address, so a
    /// node can move to a new address without moving keys.
    pub id: String,
    /// `host:port` of the Redis server (a name such as `redis1:6379` is resolved at connect time).
    pub addr: String,
    /// Share of the ring, relative to the other nodes. Default 1; 0 is not allowed.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// ACL user strata authenticates as on this node, overriding `backend.username`. Default
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password strata authenticates with on this node, overriding `backend.password`. Default
    /// none. Never printed (`<redacted>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// TLS to this node, overriding `backend.tls` field by field. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NodeTlsConfig>,
}

impl NodeConfig {
    /// A node without credentials of its own.
    pub fn new(id: impl Into<String>, addr: impl Into<String>, weight: u32) -> NodeConfig {
        NodeConfig {
            id: id.into(),
            addr: addr.into(),
            weight,
            username: None,
            password: None,
            tls: None,
        }
    }
}

fn default_weight() -> u32 {
    1
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 6380)),
            admin_listen: None,
            tls: None,
            workers: 1,
            nodes: Vec::new(),
            backends: Vec::new(),
            ring: RingConfig::default(),
            defaults: LayerDefaults::default(),
            layers: Vec::new(),
            near_cache: NearCacheBudget::default(),
            client_tracking: ClientTrackingConfig::default(),
            stats: StatsConfig::default(),
            health: HealthConfig::default(),
            repair: RepairConfig::default(),
            rebalance: RebalanceConfig::default(),
            timeouts: TimeoutsConfig::default(),
            shutdown: ShutdownConfig::default(),
            backend: BackendConfig::default(),
            limits: LimitsConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

/// The hash tag delimiters, resolved from `ring.hash_tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashTag {
    pub open: u8,
    pub close: u8,
}

/// A validated configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// Resolved worker count (never 0).
    pub workers: usize,
    pub hash_tag: Option<HashTag>,
    /// The layers with every default resolved; the implicit `default` layer last.
    pub layers: Vec<LayerSpec>,
    /// The TLS listener's acceptor, built from `tls` (its files read at validation).
    pub client_tls: Option<Arc<crate::tls::ServerTls>>,
    /// The TLS client of each configured node that uses TLS, by node id.
    pub node_tls: HashMap<String, Arc<crate::tls::NodeTls>>,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        let config: Config = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_string(),
            source,
        })?;
        config.validate().map_err(|reason| ConfigError::Invalid {
            path: origin.to_string(),
            reason,
        })
    }

    /// Checks the rules serde cannot express and resolves derived values.
    pub fn validate(self) -> Result<Settings, String> {
        backends::validate(&self.backends)?;
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        let mut node_tls = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id.is_empty() || node.id.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(format!(
                    "nodes[{i}].id: must be non-empty and without spaces, got {:?}",
                    node.id
                ));
            }
            if !ids.insert(node.id.as_str()) {
                return Err(format!("nodes[{i}].id: duplicate node id {:?}", node.id));
            }
            if split_host_port(&node.addr).is_none() {
                return Err(format!(
                    "nodes[{i}].addr: expected host:port, got {:?}",
                    node.addr
                ));
            }
            if !addrs.insert(node.addr.as_str()) {
                return Err(format!(
                    "nodes[{i}].addr: duplicate address {:?}",
                    node.addr
                ));
            }
            if node.weight == 0 || node.weight > MAX_WEIGHT {
                return Err(format!(
                    "nodes[{i}].weight: must be 1 to {MAX_WEIGHT}, got {}",
                    node.weight
                ));
            }
            let what = format!("nodes[{i}] ({})", node.id);
            self.credentials_of(&what, node)?;
            if let Some(t) = tls::node_tls(
                &what,
                &node.addr,
                self.backend.tls.as_ref(),
                node.tls.as_ref(),
            )? {
                node_tls.insert(node.id.clone(), t);
            }
        }
        let ct = &self.client_tracking;
        if ct.max_bytes.bytes() < 1 << 20 {
            return Err(format!(
                "client_tracking.max_bytes: at least 1mb, got {}",
                ct.max_bytes
            ));
        }
        if ct.max_queued_bytes.bytes() < 4 << 10 {
            return Err(format!(
                "client_tracking.max_queued_bytes: at least 4kb, got {}",
                ct.max_queued_bytes
            ));
        }
        if self.limits.max_nodes < self.nodes.len() || self.limits.max_nodes > 65535 {
            return Err(format!(
                "limits.max_nodes: must be at least the number of nodes ({}) and at most 65535, got {}",
                self.nodes.len(),
                self.limits.max_nodes
            ));
        }
        if self.ring.vnodes == 0 || self.ring.vnodes > 4096 {
            return Err(format!(
                "ring.vnodes: must be between 1 and 4096, got {}",
                self.ring.vnodes
            ));
        }
        let hash_tag = match self.ring.hash_tag.as_bytes() {
            [] => None,
            [open, close] if open != close => Some(HashTag {
                open: *open,
                close: *close,
            }),
            _ => {
                return Err(format!(
                    "ring.hash_tag: expected two different characters such as \"{{}}\" (or \"\" to disable), got {:?}",
                    self.ring.hash_tag
                ))
            }
        };
        for (name, d) in [
            ("health.heartbeat_interval", self.health.heartbeat_interval),
            ("health.node_timeout", self.health.node_timeout),
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.request", self.timeouts.request),
            (
                "backend.reconnect_backoff_min",
                self.backend.reconnect_backoff_min,
            ),
            (
                "backend.reconnect_backoff_max",
                self.backend.reconnect_backoff_max,
            ),
        ] {
            if d.is_zero() {
                return Err(format!("{name}: must be greater than 0"));
            }
        }
        if self.backend.reconnect_backoff_max < self.backend.reconnect_backoff_min {
            return Err(
                "backend.reconnect_backoff_max: must not be less than reconnect_backoff_min".into(),
            );
        }
        let query_limit = self.limits.client_query_buffer_limit.bytes();
        if query_limit < MIN_QUERY_BUFFER_LIMIT || query_limit < self.limits.max_bulk_len as u64 {
            return Err(format!(
                "limits.client_query_buffer_limit: must be at least 1mb and at least limits.max_bulk_len ({}), got {}",
                self.limits.max_bulk_len, self.limits.client_query_buffer_limit
            ));
        }
        for (class, limit) in [
            ("normal", self.limits.client_output_buffer_limit.normal),
            ("pubsub", self.limits.client_output_buffer_limit.pubsub),
        ] {
            for (name, size) in [("hard", limit.hard), ("soft", limit.soft)] {
                if size.bytes() > 0 && size.bytes() < MIN_OUTPUT_BUFFER_LIMIT {
                    return Err(format!(
                        "limits.client_output_buffer_limit.{class}.{name}: must be 0 (no limit) or at least 16kb, got {size}"
                    ));
                }
            }
            if limit.soft.bytes() > 0 && limit.hard.bytes() > 0 && limit.soft > limit.hard {
                return Err(format!(
                    "limits.client_output_buffer_limit.{class}: soft ({}) must not be above hard ({})",
                    limit.soft, limit.hard
                ));
            }
        }
        for (name, v) in [
            (
                "backend.connections_per_node",
                self.backend.connections_per_node,
            ),
            ("backend.queue_depth", self.backend.queue_depth),
            ("backend.max_in_flight", self.backend.max_in_flight),
            ("limits.max_clients", self.limits.max_clients),
            ("limits.max_multibulk_len", self.limits.max_multibulk_len),
            ("limits.max_bulk_len", self.limits.max_bulk_len),
            ("limits.max_inline_len", self.limits.max_inline_len),
            ("limits.max_pipeline", self.limits.max_pipeline),
            ("limits.scan_count", self.limits.scan_count),
            ("limits.max_nodes", self.limits.max_nodes),
            (
                "limits.max_dedicated_per_node",
                self.limits.max_dedicated_per_node,
            ),
            (
                "health.failure_threshold",
                self.health.failure_threshold as usize,
            ),
            (
                "health.recovery_threshold",
                self.health.recovery_threshold as usize,
            ),
            ("repair.max_in_flight", self.repair.max_in_flight),
            ("repair.max_hints_per_node", self.repair.max_hints_per_node),
            ("repair.replay_batch", self.repair.replay_batch),
            (
                "repair.refill_keys_per_sec",
                self.repair.refill_keys_per_sec,
            ),
            (
                "rebalance.max_keys_per_sec",
                self.rebalance.max_keys_per_sec,
            ),
        ] {
            if v == 0 {
                return Err(format!("{name}: must be at least 1"));
            }
        }
        let layers = resolve_layers(&self)?;
        let layer_names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        self.security.validate(&layer_names)?;
        if self.backend.connections_per_node > 64 {
            return Err("backend.connections_per_node: at most 64".into());
        }
        let workers = if self.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.workers
        };
        if workers > 256 {
            return Err(format!("workers: at most 256, got {workers}"));
        }
        let client_tls = match &self.tls {
            Some(tls) => {
                if tls.listen == self.listen && self.listen.port() != 0 {
                    return Err(format!(
                        "tls.listen: must differ from listen ({})",
                        self.listen
                    ));
                }
                if tls.handshake_timeout.is_zero() {
                    return Err("tls.handshake_timeout: must be greater than 0".into());
                }
                Some(Arc::new(tls.build()?))
            }
            None => None,
        };
        Ok(Settings {
            config: self,
            workers,
            hash_tag,
            layers,
            client_tls,
            node_tls,
        })
    }
}

/// Splits `host:port` (or `[v6]:port`); None when malformed.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port))
}

impl Config {
    /// The credentials strata sends `node` (its own `username` / `password`, else those of
    /// `backend`); `None`: no AUTH. `Err` as [`credentials::resolve`].
    pub fn credentials_of(
        &self,
        what: &str,
        node: &NodeConfig,
    ) -> Result<Option<Credentials>, String> {
        credentials::resolve(
            what,
            (
                self.backend.username.as_ref(),
                self.backend.password.as_ref(),
            ),
            (node.username.as_ref(), node.password.as_ref()),
        )
    }

    /// The credentials of the node named `id`, or the global ones for a node not in the file
    /// (`STRATA NODE ADD`). Validation already refused inconsistent ones: none then.
    pub fn credentials_for(&self, id: &str) -> Option<Credentials> {
        let global = NodeConfig::new(id, "", 1);
        let node = self.nodes.iter().find(|n| n.id == id).unwrap_or(&global);
        self.credentials_of(id, node).ok().flatten()
    }
}

impl Settings {
    /// The TLS client of the node named `id` at `addr`: built at validation for the nodes of
    /// the file; for a node not in it (`STRATA NODE ADD`), from `backend.tls` now (its files
    /// read again). `None`: plain TCP.
    pub fn node_tls_for(
        &self,
        id: &str,
        addr: &str,
    ) -> Result<Option<Arc<crate::tls::NodeTls>>, String> {
        if self.config.nodes.iter().any(|n| n.id == id) {
            return Ok(self.node_tls.get(id).cloned());
        }
        tls::node_tls(id, addr, self.config.backend.tls.as_ref(), None)
    }

    /// The effective configuration as YAML, defaults filled in (`strata check` prints it).
    pub fn to_yaml(&self) -> String {
        let mut effective = self.config.clone();
        effective.workers = self.workers;
        serde_yaml::to_string(&effective).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The layers with every default resolved, the implicit default layer last, as a YAML
    /// comment block plus document (`strata check` prints it after the configuration).
    pub fn layers_yaml(&self) -> String {
        #[derive(Serialize)]
        struct Resolved<'a> {
            resolved_layers: &'a [LayerSpec],
        }
        let body = serde_yaml::to_string(&Resolved {
            resolved_layers: &self.layers,
        })
        .unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        format!("---\n# Layers as strata applies them: defaults filled in; keys matching no prefix fall into `default`.\n{body}")
    }
}

#[cfg(test)]
mod tests;
