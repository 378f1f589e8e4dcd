//! `backends`: data stores other than the ring of `nodes` that a layer may be served by. Today
//! one kind, a Redis Cluster (`cluster: { seeds: [...] }`): strata learns its slot map from the
//! cluster itself and sends each key to the primary serving its hash slot (docs/redis-cluster.md).
//! A layer names its backend with `backend:` (or `defaults.backend` for every layer); layers
//! without one are served by the ring.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::split_host_port;

/// Most seeds one cluster backend may list.
pub const MAX_SEEDS: usize = 64;

/// One named backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// What layers name in `backend:`: letters, digits, `_` and `-`; `ring` is the ring of
    /// `nodes` and cannot be taken.
    pub name: String,
    /// A Redis Cluster.
    pub cluster: ClusterConfig,
}

/// A Redis Cluster backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port` of some of the cluster's nodes, asked for the slot map (`CLUSTER SLOTS`)
    /// when no node learnt from it answers. At least one.
    pub seeds: Vec<String>,
    /// How often the slot map is asked for again even when nothing suggests it changed.
    /// Default `10s`. A redirect (`MOVED`) or a node failure asks at once.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Shortest time between two slot-map requests, however many redirects and failures ask
    /// for one. Default `100ms`.
    #[serde(default = "default_refresh_min_gap", with = "humantime_serde")]
    pub refresh_min_gap: Duration,
    /// Redirects (`MOVED`, `ASK`) one request may follow before its client gets the last one
    /// as an error. Default 5, at most 16.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u8,
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_refresh_min_gap() -> Duration {
    Duration::from_millis(100)
}

fn default_max_redirects() -> u8 {
    5
}

/// The name layers use for the ring of `nodes`.
pub const RING: &str = "ring";

/// Checks `backends`; `Err` names the field and the reason.
pub fn validate(backends: &[BackendSpec]) -> Result<(), String> {
    for (i, b) in backends.iter().enumerate() {
        let at = format!("backends[{i}]");
        let valid_name = !b.name.is_empty()
            && b.name.len() <= 64
            && b.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !valid_name {
            return Err(format!(
                "{at}.name: letters, digits, '_' and '-' only (1 to 64), got {:?}",
                b.name
            ));
        }
        if b.name == RING {
            return Err(format!(
                "{at}.name: \"{RING}\" is the ring of `nodes`; choose another name"
            ));
        }
        if backends.iter().take(i).any(|o| o.name == b.name) {
            return Err(format!("{at}.name: duplicate backend name {:?}", b.name));
        }
        let c = &b.cluster;
        if c.seeds.is_empty() {
            return Err(format!("{at}.cluster.seeds: at least one host:port"));
        }
        if c.seeds.len() > MAX_SEEDS {
            return Err(format!(
                "{at}.cluster.seeds: at most {MAX_SEEDS}, got {}",
                c.seeds.len()
            ));
        }
        for (j, seed) in c.seeds.iter().enumerate() {
            if split_host_port(seed).is_none() {
                return Err(format!(
                    "{at}.cluster.seeds[{j}]: expected host:port, got {seed:?}"
                ));
            }
        }
        if c.refresh_interval.is_zero() || c.refresh_min_gap.is_zero() {
            return Err(format!(
                "{at}.cluster: refresh_interval and refresh_min_gap must be greater than 0"
            ));
        }
        if c.refresh_min_gap > c.refresh_interval {
            return Err(format!(
                "{at}.cluster.refresh_min_gap: must not be longer than refresh_interval"
            ));
        }
        if c.max_redirects == 0 || c.max_redirects > 16 {
            return Err(format!(
                "{at}.cluster.max_redirects: 1 to 16, got {}",
                c.max_redirects
            ));
        }
    }
    Ok(())
}

/// The index in `backends` of the backend a layer names (`None`: the ring).
pub fn resolve(backends: &[BackendSpec], name: Option<&str>) -> Result<Option<u16>, String> {
    match name {
        None | Some(RING) => Ok(None),
        Some(name) => backends
            .iter()
            .position(|b| b.name == name)
            .map(|i| Some(i as u16))
            .ok_or_else(|| {
                let known: Vec<&str> = std::iter::once(RING)
                    .chain(backends.iter().map(|b| b.name.as_str()))
                    .collect();
                format!(
                    "backend {name:?} is not configured (known: {})",
                    known.join(", ")
                )
            }),
    }
}
