//! `backends`: data stores other than the ring of `nodes` that a layer may be served by: a Redis
//! Cluster (`cluster: { seeds: [...] }`: strata learns its slot map from the cluster itself and
//! sends each key to the primary serving its hash slot, docs/redis-cluster.md), or a primary
//! managed by Redis Sentinel (`sentinel: { master, sentinels }`: strata asks the sentinels
//! where the primary is and follows their failovers, docs/sentinel.md). A layer names its
//! backend with `backend:` (or `defaults.backend` for every layer); layers without one are
//! served by the ring.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{split_host_port, Secret};

/// Most seeds one cluster backend may list.
pub const MAX_SEEDS: usize = 64;

/// One named backend: exactly one of `cluster` and `sentinel`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// What layers name in `backend:`: letters, digits, `_` and `-`; `ring` is the ring of
    /// `nodes` and cannot be taken.
    pub name: String,
    /// A Redis Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// A primary (and its replicas) managed by Redis Sentinel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelConfig>,
}

/// A primary managed by Redis Sentinel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the primary under (`sentinel monitor <master> ...`).
    pub master: String,
    /// `host:port` of the sentinels; at least one (three or more in production).
    pub sentinels: Vec<String>,
    /// How often the sentinels are asked where the primary is even without a `+switch-master`
    /// event. Default `10s`.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Shortest time between two questions to the sentinels. Default `100ms`.
    #[serde(default = "default_refresh_min_gap", with = "humantime_serde")]
    pub refresh_min_gap: Duration,
    /// ACL user strata authenticates as on the sentinels (`sentinel requirepass` /
    /// `sentinel sentinel-user`). Default none. The primary and replicas use `backend`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for the sentinels. Default none. Never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

/// What a backend is.
pub enum BackendKind<'a> {
    Cluster(&'a ClusterConfig),
    Sentinel(&'a SentinelConfig),
}

impl BackendSpec {
    /// The backend's kind (validation made sure there is exactly one).
    pub fn kind(&self) -> Option<BackendKind<'_>> {
        match (&self.cluster, &self.sentinel) {
            (Some(c), None) => Some(BackendKind::Cluster(c)),
            (None, Some(s)) => Some(BackendKind::Sentinel(s)),
            _ => None,
        }
    }

    /// The addresses asked where the data is: a cluster's seeds, or the sentinels.
    pub fn seeds(&self) -> &[String] {
        match self.kind() {
            Some(BackendKind::Cluster(c)) => &c.seeds,
            Some(BackendKind::Sentinel(s)) => &s.sentinels,
            None => &[],
        }
    }

    /// `refresh_interval` and `refresh_min_gap`.
    pub fn refresh(&self) -> (Duration, Duration) {
        match self.kind() {
            Some(BackendKind::Cluster(c)) => (c.refresh_interval, c.refresh_min_gap),
            Some(BackendKind::Sentinel(s)) => (s.refresh_interval, s.refresh_min_gap),
            None => (default_refresh_interval(), default_refresh_min_gap()),
        }
    }

    /// Redirects one request may follow (a Sentinel-managed primary sends none).
    pub fn max_redirects(&self) -> u8 {
        self.cluster.as_ref().map_or(0, |c| c.max_redirects)
    }
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
        match (&b.cluster, &b.sentinel) {
            (Some(c), None) => validate_cluster(&at, c)?,
            (None, Some(s)) => validate_sentinel(&at, s)?,
            _ => {
                return Err(format!(
                    "{at}: exactly one of `cluster` and `sentinel` (what the backend is)"
                ))
            }
        }
    }
    Ok(())
}

fn check_addrs(at: &str, what: &str, addrs: &[String]) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("{at}.{what}: at least one host:port"));
    }
    if addrs.len() > MAX_SEEDS {
        return Err(format!(
            "{at}.{what}: at most {MAX_SEEDS}, got {}",
            addrs.len()
        ));
    }
    for (j, addr) in addrs.iter().enumerate() {
        if split_host_port(addr).is_none() {
            return Err(format!(
                "{at}.{what}[{j}]: expected host:port, got {addr:?}"
            ));
        }
    }
    Ok(())
}

fn check_refresh(at: &str, interval: Duration, gap: Duration) -> Result<(), String> {
    if interval.is_zero() || gap.is_zero() {
        return Err(format!(
            "{at}: refresh_interval and refresh_min_gap must be greater than 0"
        ));
    }
    if gap > interval {
        return Err(format!(
            "{at}.refresh_min_gap: must not be longer than refresh_interval"
        ));
    }
    Ok(())
}

fn validate_cluster(at: &str, c: &ClusterConfig) -> Result<(), String> {
    let at = format!("{at}.cluster");
    check_addrs(&at, "seeds", &c.seeds)?;
    check_refresh(&at, c.refresh_interval, c.refresh_min_gap)?;
    if c.max_redirects == 0 || c.max_redirects > 16 {
        return Err(format!(
            "{at}.max_redirects: 1 to 16, got {}",
            c.max_redirects
        ));
    }
    Ok(())
}

fn validate_sentinel(at: &str, s: &SentinelConfig) -> Result<(), String> {
    let at = format!("{at}.sentinel");
    if s.master.is_empty() || s.master.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(format!(
            "{at}.master: the name the sentinels monitor, non-empty and without spaces, got {:?}",
            s.master
        ));
    }
    check_addrs(&at, "sentinels", &s.sentinels)?;
    check_refresh(&at, s.refresh_interval, s.refresh_min_gap)?;
    if s.username.is_some() && s.password.is_none() {
        return Err(format!("{at}.username: needs a password"));
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
