//! Client-side caching through strata (`CLIENT TRACKING` for strata's own clients).
//!
//! A client that turns tracking on is told when a key it may have cached changes: in the
//! default mode a key it read (remembered in [`table::Table`]), in BCAST mode any key of its
//! prefixes. Changes come from two places: writes through strata (told once their reply is
//! in, with the writer known, so NOLOOP is kept), and the nodes' own invalidation streams
//! (`tracking/`), which, while any client tracks, report every key written on the node by
//! anyone — another strata, a direct client, an expiry, an eviction, a flush.
//!
//! The fill race of the near cache applies to a client's cache too: a read's reply and the
//! invalidation of a write that overtook it arrive by different paths. A tracked read takes a
//! [`near`-style token](TrackedKey) before it is sent; when its reply is in, the key is
//! remembered, and if a change of it came meanwhile (or the streams did not cover the nodes),
//! the client is told right after the reply, so it never keeps the older value.

pub mod inbox;
pub mod options;
pub mod table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use inbox::{Inbox, Message};
pub use options::{Options, TrackingError};
pub use table::Table;

/// The bounds of `client_tracking` in the settings ([`Hub::configure`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Keys in the table (0: no bound).
    pub max_keys: usize,
    /// Bytes of the table (0: no bound).
    pub max_bytes: usize,
    /// Bytes of messages waiting for one client before they collapse into a flush.
    pub max_queued_bytes: usize,
    /// How long the streams keep reporting every key after the last client stopped tracking.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys: 1_000_000,
            max_bytes: 256 << 20,
            max_queued_bytes: 1 << 20,
            linger: Duration::from_secs(60),
        }
    }
}

/// One client with tracking on.
#[derive(Debug)]
pub struct Tracker {
    pub id: u64,
    pub options: Options,
    /// The client's own inbox.
    own: Arc<Inbox>,
    /// The inbox of the client it redirects to.
    redirect: Option<Arc<Inbox>>,
    /// The redirect target went away.
    broken: AtomicBool,
    /// Keys it read and is writing now: it is told of them after the write's reply, by
    /// strata (see [`Hub::before_write`]).
    own_writes: Mutex<Vec<Bytes>>,
}

impl Tracker {
    pub fn new(id: u64, options: Options, own: Arc<Inbox>, redirect: Option<Arc<Inbox>>) -> Self {
        Tracker {
            id,
            options,
            own,
            redirect,
            broken: AtomicBool::new(false),
            own_writes: Mutex::default(),
        }
    }

    /// Whether the redirect target is gone (CLIENT TRACKINGINFO's `broken_redirect`).
    pub fn redirect_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.redirect.as_ref().is_some_and(|r| r.is_closed())
    }

    /// Whether `key` is one of its BCAST prefixes' keys.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.options.prefixes.iter().any(|p| key.starts_with(p))
    }

    /// Sends `message` where this client's invalidations go.
    fn deliver(&self, message: Message, max_bytes: usize) {
        match &self.redirect {
            None => {
                self.own.post(message, max_bytes);
            }
            Some(target) => {
                // Redis tells a RESP3 client each time a message is lost this way.
                if !target.post(message, max_bytes) {
                    self.broken.store(true, Ordering::Relaxed);
                    self.own
                        .post(Message::RedirectBroken(self.options.redirect), max_bytes);
                }
            }
        }
    }
}

/// Counters for INFO.
#[derive(Debug, Default)]
pub struct Counters {
    /// Invalidation messages posted to clients (a flush counts as one).
    pub messages: AtomicU64,
    /// Keys named in them.
    pub keys: AtomicU64,
    /// Flushes posted to clients.
    pub flushes: AtomicU64,
    /// Keys invalidated early to keep the table within its bounds.
    pub evicted: AtomicU64,
}

/// The tracking clients by id, and the BCAST ones apart (every write is matched against
/// their prefixes; the default-mode ones are found through the table).
#[derive(Debug, Default)]
struct Trackers {
    by_id: HashMap<u64, Arc<Tracker>>,
    bcast: Vec<Arc<Tracker>>,
}

impl Trackers {
    fn get(&self, id: &u64) -> Option<&Arc<Tracker>> {
        self.by_id.get(id)
    }

    /// Adds or replaces; true when the client was not tracking.
    fn insert(&mut self, t: Arc<Tracker>) -> bool {
        let id = t.id;
        self.bcast.retain(|b| b.id != id);
        if t.options.bcast {
            self.bcast.push(t.clone());
        }
        self.by_id.insert(id, t).is_none()
    }

    fn remove(&mut self, id: u64) -> bool {
        self.bcast.retain(|b| b.id != id);
        self.by_id.remove(&id).is_some()
    }
}

/// Every tracking client of this strata process, the table of keys they read, and whether
/// the nodes' streams cover every key now. One per process, carried over reloads (inside
/// the near cache's `Coherence`, which the streams report to).
#[derive(Debug, Default)]
pub struct Hub {
    trackers: RwLock<Trackers>,
    /// Clients with tracking on (read without the lock on every write through strata).
    active: AtomicUsize,
    /// When the last tracking client turned it off (the streams keep reporting every key
    /// for a while: `client_tracking.linger`).
    idle_since: Mutex<Option<Instant>>,
    pub table: Table,
    /// Every member node's stream is live and reports every key.
    covered: AtomicBool,
    /// Wakes the streams when tracking starts, to report every key at once.
    pub mode_changed: tokio::sync::Notify,
    pub counters: Counters,
    limits: RwLock<Limits>,
    /// Held by [`Hub::invalidate`] from taking a key's readers out of the table until their
    /// notices are posted, and by [`Hub::before_write`]. Without it a node's report of a
    /// client's earlier write, read on the streams thread, could take the key between the
    /// client's read and its next write and post the notice only after that write's reply:
    /// the write then found the key untracked and the client had no notice with its reply.
    posting: Mutex<()>,
}

impl Hub {
    /// Whether any client tracks (one atomic load).
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    pub fn clients(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The bounds from the settings (at start and on every reload).
    pub fn configure(&self, limits: Limits) {
        *write(&self.limits) = limits;
    }

    pub fn limits(&self) -> Limits {
        *read(&self.limits)
    }

    /// Whether the nodes' streams must report every key: while any client tracks, and for
    /// `linger` after the last one stopped (so clients that come and go do not make the
    /// streams reconnect each time).
    pub fn wants_every_key(&self) -> bool {
        let linger = self.limits().linger;
        self.active() || lock(&self.idle_since).is_some_and(|since| since.elapsed() < linger)
    }

    /// Turns tracking on for `tracker.id` (replacing its earlier options).
    pub fn enable(&self, tracker: Arc<Tracker>) {
        let first = {
            let mut t = write(&self.trackers);
            t.insert(tracker) && self.active.fetch_add(1, Ordering::SeqCst) == 0
        };
        if first {
            self.mode_changed.notify_waiters();
        }
    }

    /// Turns tracking off for client `id` (its keys stay in the table until they change, as
    /// in Redis; no one is told then).
    pub fn disable(&self, id: u64) {
        let removed = write(&self.trackers).remove(id);
        if removed && self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.idle_since) = Some(Instant::now());
        }
    }

    pub fn tracker(&self, id: u64) -> Option<Arc<Tracker>> {
        read(&self.trackers).get(&id).cloned()
    }

    /// Distinct BCAST prefixes of the tracking clients (INFO's `tracking_total_prefixes`).
    pub fn prefixes(&self) -> usize {
        let t = read(&self.trackers);
        let mut all: Vec<&Bytes> = t
            .bcast
            .iter()
            .flat_map(|t| t.options.prefixes.iter())
            .collect();
        all.sort();
        all.dedup();
        all.len()
    }

    /// Whether reads may be cached by clients without being told again right after their
    /// reply (every member node's stream is live and reports every key).
    pub fn covered(&self) -> bool {
        self.covered.load(Ordering::SeqCst)
    }

    pub fn set_covered(&self, covered: bool) {
        self.covered.store(covered, Ordering::SeqCst);
    }

    /// Client `tracker` read `key` (its reply is in): remembered in the default mode; the
    /// table is then kept within `limits`, invalidating keys to make room.
    pub fn remember(&self, tracker: &Tracker, key: &Bytes) {
        let limits = self.limits();
        self.table.remember(key, tracker.id);
        let evicted = self.table.evict_over(limits.max_keys, limits.max_bytes);
        if evicted.is_empty() {
            return;
        }
        self.counters
            .evicted
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        let mut out: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for (key, readers) in evicted {
            for id in readers {
                out.entry(id).or_default().push(key.clone());
            }
        }
        self.post_all(out, limits.max_queued_bytes);
    }

    /// Tells client `tracker` that `keys` may have changed (a read whose reply an
    /// invalidation overtook).
    pub fn tell(&self, tracker: &Tracker, keys: Vec<Bytes>) {
        if keys.is_empty() {
            return;
        }
        self.count(keys.len());
        tracker.deliver(Message::Keys(keys), self.limits().max_queued_bytes);
    }

    /// `keys` changed: the clients that read them (default mode) and those whose prefixes
    /// cover them (BCAST) are told, except `writer` when it asked for NOLOOP.
    pub fn invalidate<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>, writer: Option<u64>) {
        if !self.active() {
            return;
        }
        let _posting = lock(&self.posting);
        let trackers = read(&self.trackers);
        let mut out: HashMap<u64, Vec<Bytes>> = HashMap::new();
        let quiet = |t: &Tracker| t.options.noloop && writer == Some(t.id);
        for key in keys {
            let mut owned: Option<Bytes> = None;
            let mut owned_key = || {
                owned
                    .get_or_insert_with(|| Bytes::copy_from_slice(key))
                    .clone()
            };
            if let Some(readers) = self.table.take(key) {
                for id in readers {
                    if let Some(t) = trackers.get(&id) {
                        if !t.options.bcast && !quiet(t) {
                            out.entry(id).or_default().push(owned_key());
                        }
                    }
                }
            }
            for t in &trackers.bcast {
                if t.covers(key) && !quiet(t) {
                    out.entry(t.id).or_default().push(owned_key());
                }
            }
        }
        drop(trackers);
        self.post_all(out, self.limits().max_queued_bytes);
    }

    /// Before a write of `keys` by client `writer` is sent, if it tracks them: it stops being
    /// their reader, so the node's report of the write, which may come before strata has the
    /// write's reply, does not reach it; unless it asked for NOLOOP, strata tells it after the
    /// reply ([`Hub::after_write`]), the order Redis 7.0 keeps for a client's own write.
    pub fn before_write<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>, writer: u64) {
        if !self.active() {
            return;
        }
        let Some(tracker) = self.tracker(writer).filter(|t| !t.options.bcast) else {
            return;
        };
        // A notice taken out of the table by an invalidation is posted before this looks.
        let _posting = lock(&self.posting);
        for key in keys {
            if self.table.forget_reader(key, writer) && !tracker.options.noloop {
                lock(&tracker.own_writes).push(Bytes::copy_from_slice(key));
            }
        }
    }

    /// A write through strata by `writer` has its reply: the tracking clients are told of
    /// `keys`, the writer too (of those it read) unless it asked for NOLOOP.
    pub fn after_write<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>, writer: u64) {
        if !self.active() {
            return;
        }
        self.invalidate(keys, Some(writer));
        if let Some(tracker) = self.tracker(writer) {
            let own = std::mem::take(&mut *lock(&tracker.own_writes));
            self.tell(&tracker, own);
        }
    }

    /// Everything may have changed: every tracking client is told so, and the table emptied.
    pub fn flush(&self) {
        if !self.active() {
            return;
        }
        let max_queued_bytes = self.limits().max_queued_bytes;
        self.table.clear();
        let trackers: Vec<Arc<Tracker>> = read(&self.trackers).by_id.values().cloned().collect();
        for t in trackers {
            self.counters.messages.fetch_add(1, Ordering::Relaxed);
            self.counters.flushes.fetch_add(1, Ordering::Relaxed);
            t.deliver(Message::Flush, max_queued_bytes);
        }
    }

    fn post_all(&self, out: HashMap<u64, Vec<Bytes>>, max_queued_bytes: usize) {
        if out.is_empty() {
            return;
        }
        let trackers = read(&self.trackers);
        for (id, keys) in out {
            if let Some(t) = trackers.get(&id) {
                self.count(keys.len());
                t.deliver(Message::Keys(keys), max_queued_bytes);
            }
        }
    }

    fn count(&self, keys: usize) {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        self.counters.keys.fetch_add(keys as u64, Ordering::Relaxed);
    }
}

/// A key of a tracked read, with what was seen before its request was sent (see the
/// module's doc).
#[derive(Debug)]
pub struct TrackedKey<T> {
    pub key: Bytes,
    pub token: T,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
