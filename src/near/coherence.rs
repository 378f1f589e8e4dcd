//! What keeps the near cache coherent with the nodes: which nodes' invalidation streams are
//! live, the counters a fill checks to know whether an invalidation or a flush overtook it,
//! and the stores an invalidation or a flush reaches.
//!
//! The fill race (Redis's client-side caching documentation, "avoiding race conditions"): a
//! fill's reply comes on a data connection and an invalidation on the tracking connection,
//! and Redis may write the invalidation of a write first and the older value second. A fill
//! therefore takes a [`FillToken`] before its request is sent, and its value is kept only if
//! no invalidation of its key's bucket and no flush came in between. The check runs after the
//! insert, and an invalidation bumps its counter before it removes, so whichever of the two
//! runs second undoes the insert.
//!
//! A tracked read (`CLIENT TRACKING`, `coordinator/tracked.rs`) takes the same token before
//! it may be served from an entry, and its client is told of the key when the token shows a
//! change at its end. A token taken after an invalidation's first bump but before its
//! removal can still be served the entry being removed: the invalidation (and a flush) bumps
//! again once the entry is gone, so that such a read sees the change.
//!
//! A Redis Cluster redirect followed while a token is out counts as a change too: its reply
//! came from a node that may not be watched yet (a promoted replica the map does not name as
//! a primary, a slot's migration target). The streams needed are the ring's members and the
//! backends' primaries ([`Coherence::expect_backends`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::store::Store;
use crate::client_tracking::Hub;

/// Buckets of invalidation counters: a fill is dropped by an invalidation of any key of its
/// bucket, so more buckets drop fewer fills needlessly. 4096 × 8 bytes.
const BUCKETS: usize = 4096;

/// Process-wide: one for the life of strata, carried over reloads.
#[derive(Debug)]
pub struct Coherence {
    /// Bumped by every flush.
    generation: AtomicU64,
    /// Bumped by every Redis Cluster redirect followed: a reply that came from the node a
    /// redirect named may come from one whose stream is not needed yet (a replica promoted,
    /// a slot's migration target), so a fill or tracked read it overtook is not trusted.
    redirects: AtomicU64,
    /// Bumped by every invalidation of a key of the bucket.
    buckets: Box<[AtomicU64]>,
    /// True while every node that should send invalidations does: only then are entries
    /// served or filled.
    ready: AtomicBool,
    streams: Mutex<Streams>,
    /// The layers' stores, for invalidations and flushes (replaced by reloads).
    stores: ArcSwap<Vec<Arc<Store>>>,
    /// Strata's own clients with tracking on (`CLIENT TRACKING`): told of the same
    /// invalidations and flushes.
    pub clients: Hub,
    /// Bumped whenever the set of nodes whose streams are needed changes: wakes the streams'
    /// tasks of nodes that became (or stopped being) needed.
    expected_changed: tokio::sync::watch::Sender<u64>,
    /// The runtime of the thread the streams are read on (`tracking::StreamThread`), set once
    /// at start.
    streams_runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

/// Which nodes must send invalidations, and which do.
#[derive(Debug, Default)]
struct Streams {
    /// The ring's members.
    expected: BTreeSet<usize>,
    /// The primaries of the Redis Cluster and Sentinel backends with a near-cached layer (they
    /// change with the maps).
    backends: BTreeSet<usize>,
    /// The other backends' primaries: needed only while clients track every key.
    backends_tracked: BTreeSet<usize>,
    live: BTreeSet<usize>,
    /// Live streams that report every key (while clients track).
    every_key: BTreeSet<usize>,
}

impl Streams {
    /// Whether node `slot`'s stream is needed; `tracking`: clients track every key.
    fn needs(&self, slot: usize, tracking: bool) -> bool {
        self.expected.contains(&slot)
            || self.backends.contains(&slot)
            || (tracking && self.backends_tracked.contains(&slot))
    }

    /// The nodes whose streams are needed, each once.
    fn needed(&self, tracking: bool) -> impl Iterator<Item = usize> + '_ {
        let tracked = self.backends_tracked.iter().filter(move |_| tracking);
        self.expected.iter().copied().chain(
            self.backends
                .iter()
                .chain(tracked)
                .copied()
                .filter(|slot| !self.expected.contains(slot)),
        )
    }
}

/// Taken before a fill's request is sent (see the module's doc).
#[derive(Debug, Clone, Copy)]
pub struct FillToken {
    generation: u64,
    redirects: u64,
    bucket: usize,
    seen: u64,
}

impl Default for Coherence {
    fn default() -> Self {
        Coherence {
            generation: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicBool::new(false),
            streams: Mutex::default(),
            stores: ArcSwap::from_pointee(Vec::new()),
            clients: Hub::default(),
            expected_changed: tokio::sync::watch::Sender::new(0),
            streams_runtime: std::sync::OnceLock::new(),
        }
    }
}

fn bucket_of(key: &[u8]) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) as usize) % BUCKETS
}

impl Coherence {
    /// Whether entries may be served and filled now.
    #[inline]
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The stores of the layers with a near cache (a reload's new layers).
    pub fn set_stores(&self, stores: Vec<Arc<Store>>) {
        self.stores.store(Arc::new(stores));
    }

    /// The prefixes the nodes must report writes of: the near-cached layers' prefixes,
    /// without those another one already covers (Redis refuses overlapping prefixes).
    pub fn prefixes(&self) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = self
            .stores
            .load()
            .iter()
            .map(|s| s.prefix().to_vec())
            .collect();
        all.sort();
        all.dedup();
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(all.len());
        // Sorted, a prefix comes right before the ones it covers.
        for p in all {
            if !out.iter().any(|q| p.starts_with(q)) {
                out.push(p);
            }
        }
        out
    }

    /// Before a fill's request is sent.
    pub fn begin(&self, key: &[u8]) -> FillToken {
        let bucket = bucket_of(key);
        FillToken {
            generation: self.generation.load(Ordering::SeqCst),
            redirects: self.redirects.load(Ordering::SeqCst),
            bucket,
            seen: self
                .buckets
                .get(bucket)
                .map_or(0, |b| b.load(Ordering::SeqCst)),
        }
    }

    /// Whether an invalidation of the token's bucket or a flush came since it was taken (or
    /// the streams stopped being ready).
    pub fn overtaken(&self, token: &FillToken) -> bool {
        !self.ready() || self.changed(token)
    }

    /// Whether a write or an invalidation of a key of the token's bucket, or a flush, came
    /// since it was taken (what a read that would join another checks: `coordinator::coalesce`).
    pub fn changed(&self, token: &FillToken) -> bool {
        let bucket = self
            .buckets
            .get(token.bucket)
            .map_or(0, |b| b.load(Ordering::SeqCst));
        self.generation.load(Ordering::SeqCst) != token.generation
            || bucket != token.seen
            || self.redirects.load(Ordering::SeqCst) != token.redirects
    }

    /// A Redis Cluster redirect is being followed (before its request is sent again).
    pub fn note_redirect(&self) {
        self.redirects.fetch_add(1, Ordering::SeqCst);
    }

    /// A write of `key` reported by a node: fills under way are dropped, the entry removed
    /// from whichever store holds it, and tracking clients told.
    pub fn invalidate(&self, key: &[u8]) {
        self.invalidate_all(&[key]);
    }

    /// [`invalidate`](Coherence::invalidate) of each key (a push names several).
    pub fn invalidate_all(&self, keys: &[&[u8]]) {
        let stores = self.stores.load();
        for &key in keys {
            self.bump(key);
            for store in stores.iter() {
                if key.starts_with(store.prefix()) {
                    store.remove_invalidated(key);
                }
            }
            // A tracked read that took its token since the bump may have been served the
            // entry just removed: its token must show a change (see the module's doc).
            self.bump(key);
        }
        self.clients.invalidate(keys.iter().copied(), None);
    }

    /// A write of `key` through strata, before it is sent (its store not looked up yet): the
    /// counters bumped and the entry removed; tracking clients are told once its reply is in.
    pub fn invalidate_in_stores(&self, key: &[u8]) {
        self.bump(key);
        for store in self.stores.load().iter() {
            if key.starts_with(store.prefix()) {
                store.remove_invalidated(key);
            }
        }
        self.bump(key);
    }

    /// A write of `key` through strata, whose layer's store is known: as
    /// [`invalidate`](Coherence::invalidate) without looking for the store.
    pub fn invalidate_in(&self, store: &Store, key: &[u8]) {
        self.bump(key);
        store.remove_invalidated(key);
        self.bump(key);
    }

    /// A write of `key` through strata to a layer without a near cache: only the counters
    /// (coalesced reads sent before it are not joined any more).
    pub fn note_write(&self, key: &[u8]) {
        self.bump(key);
    }

    /// Fills of `key`'s bucket under way will be dropped.
    fn bump(&self, key: &[u8]) {
        if let Some(b) = self.buckets.get(bucket_of(key)) {
            b.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Fills under way are dropped (their value may be older than what a flush removed).
    pub fn drop_fills(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Everything may have changed (a node flushed, its stream was lost, the ring changed):
    /// fills under way are dropped, every entry removed, and tracking clients told.
    pub fn flush(&self, why: &str) {
        self.flush_near(why);
        self.clients.flush();
    }

    /// [`flush`](Coherence::flush) of the near cache alone (STRATA NEARCACHE FLUSH, a stream
    /// coming up: nothing a client cached changed).
    pub fn flush_near(&self, why: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let stores = self.stores.load();
        if stores.iter().any(|s| !s.is_empty()) {
            tracing::info!(reason = why, "near cache flushed");
        }
        for store in stores.iter() {
            store.flush();
        }
        // As an invalidation: a tracked read served an entry just flushed sees the change.
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Node `slot` joined (`true`) or left (`false`) the members whose invalidations are
    /// needed. A joining node must report in before entries are served again; a leaving one
    /// moves keys to other nodes, so everything goes.
    pub fn expect_node(&self, slot: usize, expected: bool) {
        let tracking = self.clients.wants_every_key();
        let mut s = self.lock();
        let changed = if expected {
            s.expected.insert(slot)
        } else {
            s.live.remove(&slot);
            s.every_key.remove(&slot);
            s.expected.remove(&slot)
        };
        if changed {
            self.settle(&s, tracking, "the nodes changed");
            if !expected {
                self.flush("a node left the ring");
            }
        }
    }

    /// The primaries of the Redis Cluster and Sentinel backends are now `near` (those of
    /// backends with a near-cached layer: their streams are always needed) and `tracked` (the
    /// others': needed while clients track every key). A change empties the near cache and
    /// tells tracking clients to flush: a promoted replica or a new primary wrote keys without
    /// a stream watching it, and a demoted one's writes are not its own any more.
    pub fn expect_backends(&self, near: BTreeSet<usize>, tracked: BTreeSet<usize>) {
        let tracking = self.clients.wants_every_key();
        let mut s = self.lock();
        if s.backends == near && s.backends_tracked == tracked {
            return;
        }
        // A primary no longer needed keeps its place in `live` until its task ends the
        // stream (`settle` looks only at the needed ones): promoted again before that, its
        // stream never stopped reporting.
        // The other backends' primaries changing while nobody tracks touch no stream needed.
        let felt = s.backends != near || (tracking && s.backends_tracked != tracked);
        s.backends = near;
        s.backends_tracked = tracked;
        if felt {
            self.settle(&s, tracking, "a backend's primaries changed");
        }
        drop(s);
        if felt {
            self.flush("a backend's primaries changed");
        }
        self.expected_changed.send_modify(|v| *v += 1);
    }

    /// Sets where the streams' tasks run (once; later calls change nothing).
    pub fn set_streams_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.streams_runtime.set(handle);
    }

    /// Where the streams' tasks run, once set.
    pub fn streams_runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.streams_runtime.get()
    }

    /// Whether node `slot`'s stream is needed now.
    pub fn expects(&self, slot: usize) -> bool {
        let tracking = self.clients.wants_every_key();
        self.lock().needs(slot, tracking)
    }

    /// Changes to the nodes whose streams are needed, for a stream's task to wait on.
    pub fn watch_expected(&self) -> tokio::sync::watch::Receiver<u64> {
        self.expected_changed.subscribe()
    }

    /// How many nodes' streams are needed, and how many of them are live (INFO).
    pub fn stream_counts(&self) -> (usize, usize) {
        let tracking = self.clients.wants_every_key();
        let s = self.lock();
        let needed = s.needed(tracking).count();
        let live = s
            .needed(tracking)
            .filter(|slot| s.live.contains(slot))
            .count();
        (needed, live)
    }

    /// Node `slot`'s invalidation stream started (`true`) or was lost (`false`);
    /// `every_key` when it reports every key (not only the near-cached prefixes).
    pub fn set_live(&self, slot: usize, live: bool, every_key: bool) {
        let tracking = self.clients.wants_every_key();
        let mut s = self.lock();
        let mut covered_clients = false;
        let changed = if live {
            if every_key {
                s.every_key.insert(slot);
            }
            s.live.insert(slot)
        } else {
            covered_clients = s.every_key.remove(&slot);
            s.live.remove(&slot)
        };
        // A node no longer needed (a demoted primary) ends its stream without a flush.
        if changed && s.needs(slot, tracking) {
            self.settle(&s, tracking, "a node's invalidation stream was lost");
            // What clients cached may change unreported until the stream is back. A stream
            // of prefixes only never covered them (their reads were told at once): no flush
            // when it ends to make way for one of every key.
            if covered_clients {
                self.clients.flush();
            }
        }
    }

    /// Recomputes `ready`; flushes on every change (entries filled while a stream was down
    /// may have missed invalidations; fills begun before a stream came up were not covered).
    fn settle(&self, s: &Streams, tracking: bool, why: &str) {
        let ready = s.needed(tracking).next().is_some()
            && s.needed(tracking).all(|slot| s.live.contains(&slot));
        self.clients
            .set_covered(ready && s.needed(tracking).all(|slot| s.every_key.contains(&slot)));
        let was = self.ready.swap(ready, Ordering::SeqCst);
        if was != ready || !ready {
            self.flush_near(if ready {
                "every node's invalidation stream is live"
            } else {
                why
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A panic while holding it cannot leave the sets half-updated in a harmful way.
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
