//! One layer's near cache: values by key in a byte-bounded cache (quick_cache: its
//! CLOCK-Pro-like policy kept the most hits per byte on Zipf workloads, at several times the
//! speed of moka and mini-moka; docs/near-cache.md has the measurement), each entry with the
//! moment it must be dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};

use super::coherence::{Coherence, FillToken};
use crate::config::NearCacheConfig;

/// What an entry costs beyond its key's and value's bytes: the cache's slot, its index entry,
/// its share of the ghost slots and the `Bytes` headers. Measured with a counting allocator
/// on a Zipf workload: 263-357 bytes at the peak; with 384 the heap stayed under the budget
/// (docs/near-cache.md).
pub const ENTRY_OVERHEAD: u64 = 384;

/// quick_cache splits its budget into shards, each evicting on its own, and does not keep a
/// value heavier than its shard's share: few shards, and `max_value_size` at most
/// `max_bytes / (2 × SHARDS)` (`config::layers` checks it).
pub const SHARDS: usize = 4;

/// A cached value, kept as the reply to a `GET` of its key: a hit is answered with one copy
/// of these bytes, with no encoding (the same bytes in RESP2 and RESP3).
#[derive(Debug, Clone)]
pub struct Entry {
    /// `$<len>\r\n<value>\r\n`.
    reply: Bytes,
    /// Where the value starts in `reply`.
    header: u8,
    /// When it was read from the node (Unix ms, for STRATA NEARCACHE GET).
    pub filled_unix_ms: u64,
    /// When it must be dropped: the key's TTL on the node or the layer's `max_ttl`, whichever
    /// comes first, counted from before the fill's request was sent.
    pub expires: Instant,
}

impl Entry {
    fn new(value: &[u8], filled_unix_ms: u64, expires: Instant) -> Entry {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value.len()).as_bytes();
        let mut reply = BytesMut::with_capacity(value.len() + digits.len() + 5);
        reply.put_u8(b'$');
        reply.extend_from_slice(digits);
        reply.extend_from_slice(b"\r\n");
        reply.extend_from_slice(value);
        reply.extend_from_slice(b"\r\n");
        Entry {
            reply: reply.freeze(),
            // At most 1 + 20 + 2 bytes.
            header: u8::try_from(digits.len() + 3).unwrap_or(u8::MAX),
            filled_unix_ms,
            expires,
        }
    }

    /// The value's bytes.
    pub fn value(&self) -> &[u8] {
        let end = self.reply.len().saturating_sub(2);
        self.reply
            .get(usize::from(self.header)..end)
            .unwrap_or_default()
    }

    /// The value's bytes, sharing the entry's buffer.
    fn value_bytes(&self) -> Bytes {
        let end = self.reply.len().saturating_sub(2);
        let start = usize::from(self.header).min(end);
        self.reply.slice(start..end)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bytewise;

impl Weighter<Bytes, Entry> for Bytewise {
    fn weight(&self, key: &Bytes, entry: &Entry) -> u64 {
        key.len() as u64 + entry.reply.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Counts the entries the cache evicted to stay within its bytes.
#[derive(Debug, Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<Bytes, Entry> for CountEvictions {
    type RequestState = ();

    // Counted here rather than in `on_evict`, which quick_cache also calls for a value
    // replaced by an insert of the same key (two fills of one key), not an eviction.
    fn before_evict(&self, _state: &mut Self::RequestState, _key: &Bytes, _entry: &mut Entry) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The figures of a store that are not counted per worker.
#[derive(Debug, Default)]
pub struct StoreCounts {
    /// Fills whose value was kept.
    pub fills: AtomicU64,
    /// Fills whose value was not kept: an invalidation or flush overtook them (the race).
    pub fills_dropped: AtomicU64,
    /// Entries removed by an invalidation.
    pub invalidations: AtomicU64,
    /// Times the store was emptied.
    pub flushes: AtomicU64,
}

/// One layer's near cache.
#[derive(Debug)]
pub struct Store {
    name: String,
    prefix: Vec<u8>,
    config: NearCacheConfig,
    cache: Cache<Bytes, Entry, Bytewise, quick_cache::DefaultHashBuilder, CountEvictions>,
    evictions: Arc<AtomicU64>,
    pub counts: StoreCounts,
    coherence: Arc<Coherence>,
}

/// Why a store could not be built.
#[derive(Debug, thiserror::Error)]
#[error("near cache of layer {layer}: {reason}")]
pub struct StoreError {
    layer: String,
    reason: String,
}

impl Store {
    pub fn new(
        name: &str,
        prefix: &str,
        config: NearCacheConfig,
        coherence: Arc<Coherence>,
    ) -> Result<Store, StoreError> {
        let max = config.max_bytes.bytes();
        // A guess at the entry count the cache sizes its tables for: small values.
        let items = usize::try_from(max / (ENTRY_OVERHEAD + 128))
            .unwrap_or(usize::MAX)
            .max(16);
        let options = OptionsBuilder::new()
            .shards(SHARDS)
            .estimated_items_capacity(items)
            .weight_capacity(max)
            .build()
            .map_err(|e| StoreError {
                layer: name.to_string(),
                reason: e.to_string(),
            })?;
        let evictions = Arc::new(AtomicU64::new(0));
        Ok(Store {
            name: name.to_string(),
            prefix: prefix.as_bytes().to_vec(),
            config,
            cache: Cache::with_options(
                options,
                Bytewise,
                quick_cache::DefaultHashBuilder::default(),
                CountEvictions(evictions.clone()),
            ),
            evictions,
            counts: StoreCounts::default(),
            coherence,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn config(&self) -> &NearCacheConfig {
        &self.config
    }

    pub fn coherence(&self) -> &Arc<Coherence> {
        &self.coherence
    }

    /// The entry of `key` when it may be served now: the invalidation streams are live and
    /// the entry has not run out its time (then it is dropped).
    #[inline]
    fn live_entry(&self, key: &[u8], now: Instant) -> Option<Entry> {
        if !self.coherence.ready() {
            return None;
        }
        let entry = self.cache.get(key)?;
        if entry.expires <= now {
            self.cache.remove(key);
            return None;
        }
        Some(entry)
    }

    /// The value of `key` when an entry may be served now (see [`Store::reply`]).
    pub fn get(&self, key: &[u8], now: Instant) -> Option<Bytes> {
        self.live_entry(key, now).map(|e| e.value_bytes())
    }

    /// The reply to a `GET` of `key` (its value as a RESP bulk string, the same in RESP2 and
    /// RESP3) when an entry may be served now: the invalidation streams are live and the
    /// entry has not run out its time (then it is dropped).
    #[inline]
    pub fn reply(&self, key: &[u8], now: Instant) -> Option<Bytes> {
        self.live_entry(key, now).map(|e| e.reply)
    }

    /// The entry of `key`, whatever its state (STRATA NEARCACHE GET).
    pub fn peek(&self, key: &[u8]) -> Option<Entry> {
        self.cache.peek(key)
    }

    /// How long an entry filled now may live, given the key's `PTTL` on the node (ms; -1:
    /// no TTL); `None` when it should not be kept (no key, or the value is too large).
    pub fn life(&self, pttl_ms: i64, value_len: usize) -> Option<Duration> {
        if value_len as u64 > self.config.max_value_size.bytes() {
            return None;
        }
        match pttl_ms {
            -1 => Some(self.config.max_ttl),
            ms if ms > 0 => Some(self.config.max_ttl.min(Duration::from_millis(ms as u64))),
            _ => None,
        }
    }

    /// Keeps `value` for `key` unless an invalidation or flush overtook the fill that read it
    /// (then counted as dropped). `sent` is when the fill's request was sent: the entry's
    /// life counts from then, so it never outlives the key on the node. Both are copied: a
    /// slice of a read buffer would keep the whole buffer alive, past the byte bound.
    pub fn fill(&self, token: &FillToken, key: &[u8], value: &[u8], sent: Instant, life: Duration) {
        if self.coherence.overtaken(token) {
            self.counts.fills_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let filled_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let entry = Entry::new(value, filled_unix_ms, sent + life);
        self.cache.insert(Bytes::copy_from_slice(key), entry);
        // Checked again after the insert: an invalidation that ran in between (it bumps
        // before it removes) is seen here, or its removal comes after the insert.
        if self.coherence.overtaken(token) {
            self.cache.remove(key);
            self.counts.fills_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counts.fills.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A write of `key` was reported: its entry goes.
    pub fn remove_invalidated(&self, key: &[u8]) {
        if self.cache.remove(key).is_some() {
            self.counts.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Empties the store (counted when it held something).
    pub fn flush(&self) {
        let had = !self.cache.is_empty();
        self.cache.clear();
        if had {
            self.counts.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Entries held.
    pub fn entries(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Bytes held, entry overhead included.
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Entries evicted to stay within `max_bytes`.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The store's own figures, read now.
    pub fn figures(&self) -> StoreFigures {
        let c = &self.counts;
        StoreFigures {
            fills: c.fills.load(Ordering::Relaxed),
            fills_dropped: c.fills_dropped.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            evictions: self.evictions(),
            flushes: c.flushes.load(Ordering::Relaxed),
            bytes: self.bytes(),
            entries: self.entries(),
        }
    }
}

/// A store's figures at one moment (INFO, STRATA LAYERS, /metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreFigures {
    pub fills: u64,
    pub fills_dropped: u64,
    pub invalidations: u64,
    pub evictions: u64,
    pub flushes: u64,
    pub bytes: u64,
    pub entries: u64,
}
