//! The [`View`] a request sees: the running settings, the topology (members and ring) and the
//! layers, all from one moment. A request loads it once and plans with it; a reload or a
//! membership change builds the next view and swaps it in whole ([`LiveView::change`]), so no
//! request sees the layers of one configuration with the ring of another.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::policy::{LayerId, LayerSpec, Layers};
use crate::stats::LayerWorker;

use super::ring::NodeIter;
use super::topology::Topology;

/// A key's replicas, primary first: inline for the usual few.
pub type NodeList = smallvec::SmallVec<[usize; 4]>;

/// Where a key is served: by a node of the ring, or in a hash slot of a Redis Cluster backend
/// (by the node serving that slot now, when one does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Ring(usize),
    Slot {
        backend: usize,
        slot: u16,
        node: Option<usize>,
    },
}

impl Place {
    /// The node to send the key to; `None` for a slot no node serves.
    pub fn node(self) -> Option<usize> {
        match self {
            Place::Ring(n) => Some(n),
            Place::Slot { node, .. } => node,
        }
    }

    /// True when keys in `self` and `other` may go in one command: the same ring node, or the
    /// same slot of the same cluster (Redis Cluster refuses keys of two slots even on one
    /// node).
    pub fn together(self, other: Place) -> bool {
        match (self, other) {
            (Place::Ring(a), Place::Ring(b)) => a == b,
            (
                Place::Slot {
                    backend: a,
                    slot: s,
                    ..
                },
                Place::Slot {
                    backend: b,
                    slot: t,
                    ..
                },
            ) => a == b && s == t,
            _ => false,
        }
    }
}

/// Settings, topology and layers at one moment.
pub struct View {
    pub settings: Arc<Settings>,
    /// Users and their permissions (`security`), compiled.
    pub acl: Arc<crate::acl::Acl>,
    pub topology: Arc<Topology>,
    pub layers: Arc<Layers>,
}

impl View {
    /// Where `key` is served: its layer's backend decides (no layer lookup when every layer
    /// is on the ring).
    #[inline]
    pub fn place(&self, key: &[u8]) -> Place {
        match self.layers.cluster_of(key) {
            None => Place::Ring(self.topology.ring.primary(key)),
            Some(backend) => self.slot_place(backend, key),
        }
    }

    /// `key`'s slot in cluster backend `backend` and the node serving it.
    pub fn slot_place(&self, backend: usize, key: &[u8]) -> Place {
        let map = self.topology.clusters.get(backend);
        // A Sentinel-managed primary holds every key: all in one place (slot 0).
        let slot = match map {
            Some(m) if m.link.sentinel => 0,
            _ => super::slots::key_slot(key),
        };
        let node = map.and_then(|m| m.owner(slot));
        Place::Slot {
            backend,
            slot,
            node,
        }
    }

    /// The node owning `key` (its primary); `None` for a key of a cluster slot no node serves.
    pub fn route(&self, key: &[u8]) -> Option<usize> {
        self.place(key).node()
    }

    /// The replicas of `key` under `layer`, primary first. With `eject_on_down`, down nodes are
    /// passed over (the key moves to the next nodes while they are down). A layer served by a
    /// Redis Cluster has one: the primary of the key's slot (none while no node serves it).
    pub fn replicas_of(&self, layer: &LayerSpec, key: &[u8]) -> NodeList {
        if let Some(backend) = &layer.backend {
            return self
                .slot_place(usize::from(backend.index), key)
                .node()
                .into_iter()
                .collect();
        }
        let topology = &self.topology;
        let ring = &topology.ring;
        let hash = ring.key_hash(key);
        if layer.eject_on_down {
            let up = |&n: &usize| topology.node(n).is_some_and(|n| !n.health.is_down());
            let walk: NodeIter<'_> = ring.node_iter(hash);
            walk.filter(up).take(layer.replication).collect()
        } else {
            match ring.replicas(hash, layer.replication) {
                Some(table) => table.iter().map(|&o| usize::from(o)).collect(),
                None => ring.node_iter(hash).take(layer.replication).collect(),
            }
        }
    }
}

/// The current [`View`], shared by every worker; read on every request, changed rarely.
pub struct LiveView {
    current: ArcSwap<View>,
    /// Bumped by every change: a holder of part of a view (a session's access rules) checks
    /// it with one atomic load instead of loading the view.
    generation: std::sync::atomic::AtomicU64,
    /// Held while a change builds the next view from the current one (one change at a time:
    /// a reload and a membership change never overwrite each other's view).
    changing: Mutex<()>,
}

impl LiveView {
    pub fn new(view: View) -> LiveView {
        LiveView {
            current: ArcSwap::from_pointee(view),
            generation: std::sync::atomic::AtomicU64::new(0),
            changing: Mutex::new(()),
        }
    }

    /// The view as it is now. Cheap (no reference count touched on the usual path); keep it
    /// for the request, not longer.
    pub fn load(&self) -> arc_swap::Guard<Arc<View>> {
        self.current.load()
    }

    /// Changes each time the view does.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The view as it is now, to keep (background tasks, reports).
    pub fn load_full(&self) -> Arc<View> {
        self.current.load_full()
    }

    /// Runs `change` on the current view, one change at a time, and swaps in the view it
    /// returns (nothing changes when it returns an error). Returns what `change` returned
    /// besides the view.
    pub fn change<T, E>(&self, change: impl FnOnce(&View) -> Result<(View, T), E>) -> Result<T, E> {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let (next, out) = change(&current)?;
        self.current.store(Arc::new(next));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(out)
    }

    /// Runs `f` on worker `worker`'s figures of layer `layer` in the layers as they are now (a
    /// layer gone by a reload counts nothing; figures carry over a reload by layer name).
    pub fn layer_figures(&self, layer: LayerId, worker: usize, f: impl FnOnce(&LayerWorker)) {
        let view = self.current.load();
        if let Some(w) = view.layers.get(layer).and_then(|l| l.stats.worker(worker)) {
            f(w);
        }
    }
}
