//! The keys tracking clients read in the default mode, and who read each: Redis's tracking
//! table, kept by strata for its own clients. A key leaves the table when its invalidation is
//! sent (the clients must read it again to be told of the next change), and, past
//! `client_tracking.max_keys`, some keys are invalidated early to make room, as Redis does
//! past `tracking-table-max-keys`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Shards of the table (a tracking client's read locks one).
const SHARDS: usize = 16;

/// Memory counted per entry beyond its key's bytes: the map's slot, the key's handle and the
/// list of readers' allocation.
pub const ENTRY_OVERHEAD: usize = 64;

/// One shard: each key and the ids of the clients that read it.
type Shard = Mutex<HashMap<Bytes, Vec<u64>>>;

#[derive(Debug)]
pub struct Table {
    shards: Box<[Shard]>,
    keys: AtomicUsize,
    /// Key-reader pairs (Redis's `tracking_total_items`).
    items: AtomicUsize,
    bytes: AtomicUsize,
    /// Where the next eviction starts looking.
    cursor: AtomicUsize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        }
    }
}

fn shard_of(key: &[u8]) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) as usize) % SHARDS
}

impl Table {
    /// Records that client `id` read `key`.
    pub fn remember(&self, key: &Bytes, id: u64) {
        let Some(shard) = self.shards.get(shard_of(key)) else {
            return;
        };
        let mut map = lock(shard);
        match map.get_mut(key) {
            Some(readers) => {
                if !readers.contains(&id) {
                    readers.push(id);
                    self.items.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                map.insert(key.clone(), vec![id]);
                self.keys.fetch_add(1, Ordering::Relaxed);
                self.items.fetch_add(1, Ordering::Relaxed);
                self.bytes
                    .fetch_add(key.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
            }
        }
    }

    /// Removes `key`, returning who had read it.
    pub fn take(&self, key: &[u8]) -> Option<Vec<u64>> {
        let shard = self.shards.get(shard_of(key))?;
        let readers = lock(shard).remove(key)?;
        self.forget(key.len(), readers.len());
        Some(readers)
    }

    /// Client `id` no longer counts as a reader of `key`; true when it was one.
    pub fn forget_reader(&self, key: &[u8], id: u64) -> bool {
        let Some(shard) = self.shards.get(shard_of(key)) else {
            return false;
        };
        let mut map = lock(shard);
        let Some(readers) = map.get_mut(key) else {
            return false;
        };
        let before = readers.len();
        readers.retain(|&r| r != id);
        if readers.len() == before {
            return false;
        }
        self.items.fetch_sub(1, Ordering::Relaxed);
        if readers.is_empty() {
            map.remove(key);
            self.keys.fetch_sub(1, Ordering::Relaxed);
            self.bytes
                .fetch_sub(key.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
        }
        true
    }

    /// Removes every key (a flush told every tracking client).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut map = lock(shard);
            for (key, readers) in map.drain() {
                self.forget(key.len(), readers.len());
            }
        }
    }

    /// Removes keys until at most `max_keys` and `max_bytes` remain (0: no bound), returning
    /// them with their readers, to be invalidated. Which keys go is left to the maps' order
    /// (Redis picks at random).
    pub fn evict_over(&self, max_keys: usize, max_bytes: usize) -> Vec<(Bytes, Vec<u64>)> {
        let over = |t: &Table| {
            (max_keys > 0 && t.keys() > max_keys) || (max_bytes > 0 && t.bytes() > max_bytes)
        };
        let mut out = Vec::new();
        let mut empty_shards = 0;
        while over(self) && empty_shards < SHARDS {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let Some(shard) = self.shards.get(i) else {
                break;
            };
            let mut map = lock(shard);
            let Some(key) = map.keys().next().cloned() else {
                empty_shards += 1;
                continue;
            };
            empty_shards = 0;
            if let Some(readers) = map.remove(&key) {
                self.forget(key.len(), readers.len());
                out.push((key, readers));
            }
        }
        out
    }

    fn forget(&self, key_len: usize, readers: usize) {
        self.keys.fetch_sub(1, Ordering::Relaxed);
        self.items.fetch_sub(readers, Ordering::Relaxed);
        self.bytes
            .fetch_sub(key_len + ENTRY_OVERHEAD, Ordering::Relaxed);
    }

    pub fn keys(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub fn items(&self) -> usize {
        self.items.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves at worst a count off by one entry.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
