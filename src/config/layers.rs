//! Layers as configured: `layers` and `defaults` resolved into one [`LayerSpec`] per layer and
//! checked. The runtime side (prefix lookup, statistics, TTL rules) is `policy`.

use std::time::Duration;

use serde::Serialize;

use super::template::KeyTemplate;
use super::{Config, NearCacheConfig, ReadConsistency, ReadFrom, WriteConsistency};

/// Most copies of a key a layer may ask for.
pub const MAX_REPLICAS: u8 = 16;

/// Name of the layer of keys that match no prefix.
pub const DEFAULT_LAYER: &str = "default";

/// A layer with every field resolved (what `strata check` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSpec {
    pub name: String,
    /// Empty for the default layer.
    pub prefix: String,
    #[serde(serialize_with = "template_text")]
    pub key: Option<KeyTemplate>,
    /// Default TTL of keys written without one.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Largest TTL a key of the layer may have.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Option<Duration>,
    pub replication: usize,
    pub write_consistency: WriteConsistency,
    pub read_consistency: ReadConsistency,
    /// A miss on the first replica asks the next (and copies a hit back).
    pub miss_failover: bool,
    /// A down node leaves the layer's ring until it recovers.
    pub eject_on_down: bool,
    /// Concurrent identical reads share one request to the nodes.
    pub coalesce: bool,
    /// Hot values kept in strata's memory (None: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_cache: Option<NearCacheConfig>,
    /// The backend serving the layer (`backends`, by position); `None`: the ring of `nodes`.
    #[serde(serialize_with = "backend_name")]
    pub backend: Option<BackendRef>,
    /// Reads go to the shard's primary or one of its replicas (backends only).
    pub read_from: ReadFrom,
}

/// A layer's backend: its name and its position in `backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRef {
    pub name: String,
    pub index: u16,
    /// What it is, for messages: "Redis Cluster" or "Sentinel-managed primary".
    pub kind: &'static str,
}

fn backend_name<S: serde::Serializer>(b: &Option<BackendRef>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        b.as_ref()
            .map_or(super::backends::RING, |b| b.name.as_str()),
    )
}

fn template_text<S: serde::Serializer>(t: &Option<KeyTemplate>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(t.as_str()),
        None => s.serialize_none(),
    }
}

/// `0` in the config means "none".
fn non_zero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
}

impl LayerSpec {
    pub fn ttl_ms(&self) -> Option<u64> {
        millis(self.ttl)
    }

    pub fn max_ttl_ms(&self) -> Option<u64> {
        millis(self.max_ttl)
    }
}

/// Resolves `layers` against `defaults` and checks them; the default layer comes last.
pub fn resolve_layers(config: &Config) -> Result<Vec<LayerSpec>, String> {
    let d = &config.defaults;
    let nodes = config.nodes.len();
    let backend_of = |at: &str, name: Option<&String>| {
        let name = name.or(d.backend.as_ref());
        let index = super::backends::resolve(&config.backends, name.map(String::as_str))
            .map_err(|e| format!("{at}.backend: {e}"))?;
        let kind = |i: u16| match config.backends.get(usize::from(i)) {
            Some(b) if b.sentinel.is_some() => "Sentinel-managed primary",
            _ => "Redis Cluster",
        };
        Ok::<_, String>(index.map(|index| BackendRef {
            name: name.cloned().unwrap_or_default(),
            index,
            kind: kind(index),
        }))
    };
    let mut out: Vec<LayerSpec> = Vec::with_capacity(config.layers.len() + 1);
    for (i, l) in config.layers.iter().enumerate() {
        let at = format!("layers[{i}]");
        let valid_name = !l.name.is_empty()
            && l.name.len() <= 64
            && l.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(format!(
                "{at}.name: letters, digits, '_' and '-' only (1 to 64), got {:?}",
                l.name
            ));
        }
        if l.name == DEFAULT_LAYER {
            return Err(format!(
                "{at}.name: \"{DEFAULT_LAYER}\" is the layer of keys matching no prefix; configure it under `defaults`"
            ));
        }
        if out.iter().any(|o| o.name == l.name) {
            return Err(format!("{at}.name: duplicate layer name {:?}", l.name));
        }
        if l.prefix.is_empty() {
            return Err(format!("{at}.prefix: must not be empty"));
        }
        if let Some(o) = out.iter().find(|o| o.prefix == l.prefix) {
            return Err(format!(
                "{at}.prefix: {:?} is already the prefix of layer {:?}",
                l.prefix, o.name
            ));
        }
        let key = match &l.key {
            None => None,
            Some(text) => {
                let t = KeyTemplate::parse(text).map_err(|e| format!("{at}.key: {e}"))?;
                if !text.starts_with(&l.prefix) {
                    return Err(format!(
                        "{at}.key: template {text:?} must start with the prefix {:?}",
                        l.prefix
                    ));
                }
                Some(t)
            }
        };
        out.push(LayerSpec {
            name: l.name.clone(),
            prefix: l.prefix.clone(),
            key,
            ttl: non_zero(l.ttl.or(d.ttl)),
            max_ttl: non_zero(l.max_ttl.or(d.max_ttl)),
            replication: l.replication.unwrap_or(d.replication),
            write_consistency: l.write_consistency.unwrap_or(d.write_consistency),
            read_consistency: l.read_consistency.unwrap_or(d.read_consistency),
            miss_failover: false,
            eject_on_down: l.eject_on_down.unwrap_or(d.eject_on_down),
            coalesce: l.coalesce.unwrap_or(d.coalesce),
            near_cache: l.near_cache,
            backend: backend_of(&at, l.backend.as_ref())?,
            read_from: l.read_from.unwrap_or(d.read_from),
        });
        let replication = l.replication.unwrap_or(d.replication);
        if let Some(last) = out.last_mut() {
            last.miss_failover = l
                .miss_failover
                .or(d.miss_failover)
                .unwrap_or(replication > 1);
        }
    }
    out.push(LayerSpec {
        name: DEFAULT_LAYER.to_string(),
        prefix: String::new(),
        key: None,
        ttl: non_zero(d.ttl),
        max_ttl: non_zero(d.max_ttl),
        replication: d.replication,
        write_consistency: d.write_consistency,
        read_consistency: d.read_consistency,
        miss_failover: d.miss_failover.unwrap_or(d.replication > 1),
        eject_on_down: d.eject_on_down,
        coalesce: d.coalesce,
        near_cache: None,
        backend: backend_of("defaults", None)?,
        read_from: d.read_from,
    });
    for (i, l) in out.iter().enumerate() {
        let at = if l.name == DEFAULT_LAYER {
            "defaults".to_string()
        } else {
            format!("layers[{i}]")
        };
        if let (Some(ttl), Some(max)) = (l.ttl, l.max_ttl) {
            if ttl > max {
                return Err(format!(
                    "{at}.ttl: {} is longer than max_ttl {}",
                    humantime::format_duration(ttl),
                    humantime::format_duration(max)
                ));
            }
        }
        if l.replication == 0 {
            return Err(format!("{at}.replication: must be at least 1"));
        }
        if let Some(near) = &l.near_cache {
            check_near_cache(&at, l, near)?;
        }
        if l.backend.is_some() {
            check_cluster_layer(&at, l)?;
            continue;
        }
        if l.read_from != ReadFrom::Primary {
            return Err(format!(
                "{at}.read_from: replica is for layers served by a Redis Cluster or Sentinel backend; the ring's copies are read by read_consistency"
            ));
        }
        if nodes == 0 {
            return Err(format!(
                "nodes: at least one node is required: {at} ({:?}) is served by the ring (give it, or defaults, a `backend`)",
                l.name
            ));
        }
        if l.replication > nodes {
            return Err(format!(
                "{at}.replication: {} copies need at least {} nodes, {nodes} configured",
                l.replication, l.replication
            ));
        }
        if l.replication > usize::from(MAX_REPLICAS) {
            return Err(format!(
                "{at}.replication: at most {MAX_REPLICAS} copies, got {}",
                l.replication
            ));
        }
    }
    let total: u64 = out
        .iter()
        .filter_map(|l| l.near_cache.map(|n| n.max_bytes.bytes()))
        .fold(0, u64::saturating_add);
    let budget = config.near_cache.max_bytes;
    if total > budget.bytes() {
        return Err(format!(
            "near_cache.max_bytes: the layers' near caches take {} together, more than {budget}; raise it or lower theirs",
            super::ByteSize(total)
        ));
    }
    Ok(out)
}

/// What a layer served by a Redis Cluster or a Sentinel-managed primary may not ask for:
/// Redis keeps the replicas (and fails over by itself), so strata's copies and their read and
/// write rules do not apply.
fn check_cluster_layer(at: &str, l: &LayerSpec) -> Result<(), String> {
    let Some(backend) = &l.backend else {
        return Ok(());
    };
    let refused = if l.replication != 1 {
        Some("replication (Redis keeps the replicas)")
    } else if l.miss_failover {
        Some("miss_failover")
    } else if l.eject_on_down {
        Some("eject_on_down")
    } else if l.read_consistency != ReadConsistency::One {
        Some("read_consistency other than one")
    } else if l.read_from == ReadFrom::Replica && l.near_cache.is_some() {
        // A replica may still hold the old value when the primary's invalidation arrives: a
        // fill from it would be kept past the write.
        Some(
            "near_cache with read_from: replica (fills read the primary's stream, not the replica)",
        )
    } else {
        None
    };
    match refused {
        Some(what) => Err(format!(
            "{at}: served by backend {:?} (a {}), which does not take {what}; see docs/scaling.md",
            backend.name, backend.kind
        )),
        None => Ok(()),
    }
}

/// The rules of one layer's near cache.
fn check_near_cache(at: &str, l: &LayerSpec, near: &NearCacheConfig) -> Result<(), String> {
    if l.read_consistency != ReadConsistency::One {
        return Err(format!(
            "{at}.near_cache: only for layers with read_consistency: one (a value served from memory asks no replica)"
        ));
    }
    if near.max_bytes.bytes() == 0 {
        return Err(format!("{at}.near_cache.max_bytes: must be greater than 0"));
    }
    // The cache evicts per shard and keeps no entry heavier than a shard's share
    // (`near::SHARDS` = 4, halved for the share the cache keeps for new entries).
    let largest = near.max_bytes.bytes() / 8;
    if near.max_value_size.bytes() == 0 || near.max_value_size.bytes() > largest {
        return Err(format!(
            "{at}.near_cache.max_value_size: must be greater than 0 and at most an eighth of max_bytes ({}), got {}",
            super::ByteSize(largest),
            near.max_value_size
        ));
    }
    if near.max_ttl.is_zero() {
        return Err(format!("{at}.near_cache.max_ttl: must be greater than 0"));
    }
    Ok(())
}
