//! The runtime [`Layers`]: a key's layer by longest prefix, each layer's statistics and TTL
//! rules. Layers as configured ([`LayerSpec`]) are resolved in `config::layers`.

use super::ttl::TtlLimits;
pub use crate::config::layers::{resolve_layers, LayerSpec, DEFAULT_LAYER, MAX_REPLICAS};
use crate::config::{ReadConsistency, WriteConsistency};
use crate::near::Coherence;
use crate::stats::LayerStats;

/// The TTL rules of a layer, in the form the TTL rewriter takes.
pub fn ttl_limits(spec: &LayerSpec) -> TtlLimits<'_> {
    TtlLimits {
        layer: &spec.name,
        ttl_ms: spec.ttl_ms(),
        max_ttl_ms: spec.max_ttl_ms(),
    }
}

/// Index of a layer in [`Layers`].
pub type LayerId = u16;

/// One layer at run time: its policy and its statistics.
#[derive(Debug)]
pub struct Layer {
    pub spec: LayerSpec,
    /// Shared with the layer of the same name after a reload, so its figures go on.
    pub stats: std::sync::Arc<LayerStats>,
    /// `PX <ttl>` encoded, for the commonest write of a TTL layer, a plain `SET key value`
    /// (see `coordinator::plan`); None when the layer gives no default TTL.
    pub set_suffix: Option<bytes::Bytes>,
    /// Keeps several copies or ejects down nodes: requests take the replicated path
    /// (`coordinator::replicate`).
    pub replicated: bool,
    /// The layer's near cache (`near_cache` configured).
    pub near: Option<std::sync::Arc<crate::near::Store>>,
}

impl Layer {
    fn new(spec: LayerSpec, workers: usize) -> Layer {
        let set_suffix = ttl_limits(&spec).default_ms().map(|ms| {
            let ms = ms.to_string();
            crate::protocol::reply::encode_args([&b"PX"[..], ms.as_bytes()].into_iter())
        });
        Layer {
            replicated: spec.replication > 1 || spec.eject_on_down,
            spec,
            stats: std::sync::Arc::new(LayerStats::new(workers)),
            set_suffix,
            near: None,
        }
    }

    /// Gives the layer its near cache when it has one configured: `kept` when its settings
    /// are the same (a reload keeps its entries), else a new, empty one.
    fn with_near(
        mut self,
        coherence: &std::sync::Arc<Coherence>,
        kept: Option<&std::sync::Arc<crate::near::Store>>,
    ) -> Layer {
        let Some(config) = self.spec.near_cache else {
            return self;
        };
        let same =
            kept.filter(|s| *s.config() == config && s.prefix() == self.spec.prefix.as_bytes());
        self.near = match same {
            Some(store) => Some(store.clone()),
            None => match crate::near::Store::new(
                &self.spec.name,
                &self.spec.prefix,
                config,
                coherence.clone(),
            ) {
                Ok(store) => Some(std::sync::Arc::new(store)),
                Err(e) => {
                    // The configuration's checks refuse what would fail here.
                    tracing::error!(error = %e, "near cache not started");
                    None
                }
            },
        };
        self
    }
}

/// Every layer, and the prefix lookup. Built once at start (a reload builds a new one).
#[derive(Debug)]
pub struct Layers {
    /// Config order, the default layer last.
    layers: Vec<Layer>,
    /// (prefix, layer) with the longest prefixes first, so the first match is the longest.
    by_length: Vec<(Box<[u8]>, LayerId)>,
    /// First bytes of every prefix: a key starting with another byte is in the default layer
    /// without comparing any prefix.
    first_bytes: [bool; 256],
    /// True when some layer has a TTL rule (ttl or max_ttl).
    any_ttl: bool,
    /// True when some layer is replicated.
    any_replicated: bool,
    /// Shared by every generation of the layers (reloads carry it over).
    coherence: std::sync::Arc<Coherence>,
    /// True when some layer has a near cache.
    any_near: bool,
    /// True when some layer coalesces its reads.
    any_coalesce: bool,
    /// True when some layer reads from the replicas of its backend (`read_from: replica`).
    any_replica_reads: bool,
    /// True when some layer is served by a Redis Cluster backend.
    any_cluster: bool,
}

impl Layers {
    pub fn new(specs: &[LayerSpec], workers: usize) -> Layers {
        Layers::build(specs, workers, None)
    }

    fn build(specs: &[LayerSpec], workers: usize, old: Option<&Layers>) -> Layers {
        let coherence = old.map_or_else(Default::default, |o| o.coherence.clone());
        let kept = |name: &str| {
            old.and_then(|o| o.layers.iter().find(|l| l.spec.name == name))
                .and_then(|l| l.near.as_ref())
        };
        let mut layers: Vec<Layer> = specs
            .iter()
            .filter(|s| s.name != DEFAULT_LAYER)
            .map(|spec| Layer::new(spec.clone(), workers).with_near(&coherence, kept(&spec.name)))
            .collect();
        let default = specs
            .iter()
            .find(|s| s.name == DEFAULT_LAYER)
            .cloned()
            .unwrap_or_else(|| LayerSpec {
                name: DEFAULT_LAYER.to_string(),
                prefix: String::new(),
                key: None,
                ttl: None,
                max_ttl: None,
                replication: 1,
                write_consistency: WriteConsistency::Quorum,
                read_consistency: ReadConsistency::One,
                miss_failover: false,
                eject_on_down: false,
                coalesce: false,
                near_cache: None,
                backend: None,
                read_from: crate::config::ReadFrom::Primary,
            });
        layers.push(Layer::new(default, workers));
        let mut by_length: Vec<(Box<[u8]>, LayerId)> = layers
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.spec.prefix.is_empty())
            .map(|(i, l)| {
                (
                    l.spec.prefix.as_bytes().into(),
                    LayerId::try_from(i).unwrap_or(LayerId::MAX),
                )
            })
            .collect();
        by_length.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let mut first_bytes = [false; 256];
        for (prefix, _) in &by_length {
            if let Some(&b) = prefix.first() {
                if let Some(slot) = first_bytes.get_mut(usize::from(b)) {
                    *slot = true;
                }
            }
        }
        let any_ttl = layers
            .iter()
            .any(|l| l.spec.ttl.is_some() || l.spec.max_ttl.is_some());
        let any_replicated = layers.iter().any(|l| l.replicated);
        let stores: Vec<_> = layers.iter().filter_map(|l| l.near.clone()).collect();
        let any_near = !stores.is_empty();
        let any_coalesce = layers.iter().any(|l| l.spec.coalesce);
        let any_cluster = layers.iter().any(|l| l.spec.backend.is_some());
        let any_replica_reads = layers
            .iter()
            .any(|l| l.spec.read_from == crate::config::ReadFrom::Replica);
        coherence.set_stores(stores);
        Layers {
            layers,
            by_length,
            first_bytes,
            any_ttl,
            any_replicated,
            coherence,
            any_near,
            any_coalesce,
            any_cluster,
            any_replica_reads,
        }
    }

    /// Layers built from `specs` whose statistics continue those of the layer of the same
    /// name in `old` (a reload); new layers start at zero, removed ones are dropped.
    pub fn carried_over(specs: &[LayerSpec], workers: usize, old: &Layers) -> Layers {
        let mut layers = Layers::build(specs, workers, Some(old));
        for layer in &mut layers.layers {
            if let Some(before) = old.layers.iter().find(|l| l.spec.name == layer.spec.name) {
                layer.stats = before.stats.clone();
            }
        }
        layers
    }

    /// The layer of `key`: the one with the longest prefix of it, else the default layer.
    #[inline]
    pub fn resolve(&self, key: &[u8]) -> LayerId {
        let maybe = key
            .first()
            .and_then(|&b| self.first_bytes.get(usize::from(b)))
            .copied()
            .unwrap_or(false);
        if maybe {
            for (prefix, id) in &self.by_length {
                if key.starts_with(prefix) {
                    return *id;
                }
            }
        }
        self.default_id()
    }

    pub fn default_id(&self) -> LayerId {
        LayerId::try_from(self.layers.len().saturating_sub(1)).unwrap_or(0)
    }

    pub fn get(&self, id: LayerId) -> Option<&Layer> {
        self.layers.get(usize::from(id))
    }

    /// The layer of a key, directly.
    pub fn of(&self, key: &[u8]) -> Option<&Layer> {
        self.get(self.resolve(key))
    }

    pub fn by_name(&self, name: &[u8]) -> Option<(LayerId, &Layer)> {
        self.layers
            .iter()
            .enumerate()
            .find(|(_, l)| l.spec.name.as_bytes().eq_ignore_ascii_case(name))
            .map(|(i, l)| (LayerId::try_from(i).unwrap_or(0), l))
    }

    /// Every layer with its id, in config order, the default layer last.
    pub fn iter(&self) -> impl Iterator<Item = (LayerId, &Layer)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| (LayerId::try_from(i).unwrap_or(0), l))
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// True when some layer reads from its backend's replicas.
    #[inline]
    pub fn any_replica_reads(&self) -> bool {
        self.any_replica_reads
    }

    /// True when some layer is replicated; when none is, requests skip the replicated path.
    pub fn any_replicated(&self) -> bool {
        self.any_replicated
    }

    /// True when some layer is served by a Redis Cluster backend; when none is, keys are
    /// placed by the ring without a layer lookup.
    pub fn any_cluster(&self) -> bool {
        self.any_cluster
    }

    /// The cluster backend serving `key` (its position in `backends`); `None`: the ring.
    #[inline]
    pub fn cluster_of(&self, key: &[u8]) -> Option<usize> {
        if !self.any_cluster {
            return None;
        }
        self.of(key)
            .and_then(|l| l.spec.backend.as_ref())
            .map(|b| usize::from(b.index))
    }

    /// True when some layer has a near cache.
    pub fn any_near(&self) -> bool {
        self.any_near
    }

    /// True when some layer's reads depend on strata noticing writes (a near cache, or
    /// coalescing: a read may not join one sent before a write), or a client tracks keys
    /// (`CLIENT TRACKING`): writes then bump [`Coherence`]'s counters.
    pub fn watch_writes(&self) -> bool {
        self.any_near || self.any_coalesce || self.coherence.clients.active()
    }

    /// The near cache's coherence state (the same across reloads).
    pub fn coherence(&self) -> &std::sync::Arc<Coherence> {
        &self.coherence
    }

    /// True when some layer has a TTL rule; when none has, writes skip the TTL policy.
    pub fn any_ttl(&self) -> bool {
        self.any_ttl
    }

    /// The TTL rules of `key`'s layer.
    pub fn ttl_limits(&self, key: &[u8]) -> TtlLimits<'_> {
        match self.of(key) {
            Some(l) => ttl_limits(&l.spec),
            None => TtlLimits {
                layer: DEFAULT_LAYER,
                ttl_ms: None,
                max_ttl_ms: None,
            },
        }
    }

    /// CONFIG RESETSTAT.
    pub fn reset_stats(&self) {
        for l in &self.layers {
            l.stats.reset();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(layers: &str) -> Result<Vec<LayerSpec>, String> {
        let text = format!("nodes:\n  - {{id: a, addr: 'h:1'}}\n{layers}");
        crate::config::Config::parse(&text, "t")
            .map(|s| s.layers)
            .map_err(|e| e.to_string())
    }

    const ROUTER: &str = "defaults: {ttl: 1h}\nlayers:\n  - {name: route, prefix: 'route:', key: 'route:{query}', ttl: 5m}\n  - {name: result, prefix: 'result:', key: 'result:{query}:{model}', ttl: 10m, max_ttl: 1h}\n  - {name: routex, prefix: 'route:x:', ttl: 0}\n";

    #[test]
    fn resolves_defaults_and_zero() {
        let specs = config(ROUTER).unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0].ttl, Some(Duration::from_secs(300)));
        assert_eq!(specs[0].max_ttl, None);
        assert_eq!(specs[1].max_ttl_ms(), Some(3_600_000));
        // `ttl: 0` overrides the default TTL with none.
        assert_eq!(specs[2].ttl, None);
        assert_eq!(specs[3].name, DEFAULT_LAYER);
        assert_eq!(specs[3].ttl, Some(Duration::from_secs(3600)));
        assert_eq!(specs[3].replication, 1);
    }

    #[test]
    fn longest_prefix_wins() {
        let layers = Layers::new(&config(ROUTER).unwrap(), 1);
        let name = |k: &[u8]| layers.of(k).unwrap().spec.name.clone();
        assert_eq!(name(b"route:abc"), "route");
        assert_eq!(name(b"route:x:abc"), "routex");
        assert_eq!(name(b"result:q:m"), "result");
        assert_eq!(name(b"route"), DEFAULT_LAYER);
        assert_eq!(name(b"key:1"), DEFAULT_LAYER);
        assert_eq!(name(b""), DEFAULT_LAYER);
        assert_eq!(layers.by_name(b"RESULT").unwrap().0, 1);
        assert!(layers.any_ttl());
        assert_eq!(layers.ttl_limits(b"result:a").max_ttl_ms, Some(3_600_000));
    }

    #[test]
    fn bad_layers_are_refused() {
        for (layers, needle) in [
            ("layers:\n  - {name: 'a b', prefix: 'x'}\n", "letters"),
            ("layers:\n  - {name: default, prefix: 'x'}\n", "defaults"),
            ("layers:\n  - {name: a, prefix: ''}\n", "empty"),
            (
                "layers:\n  - {name: a, prefix: 'x'}\n  - {name: a, prefix: 'y'}\n",
                "duplicate layer name",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x'}\n  - {name: b, prefix: 'x'}\n",
                "already the prefix",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x:', key: 'y:{id}'}\n",
                "must start with the prefix",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x:', key: 'x:{id'}\n",
                "unclosed",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x:', ttl: 2m, max_ttl: 1m}\n",
                "longer than max_ttl",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x:', replication: 2}\n",
                "nodes",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x:', write_consistency: maybe}\n",
                "maybe",
            ),
            (
                "layers:\n  - {name: a, prefix: 'x:', colour: red}\n",
                "colour",
            ),
        ] {
            let err = config(layers).unwrap_err();
            assert!(err.contains(needle), "{layers}: {err}");
        }
    }
}
