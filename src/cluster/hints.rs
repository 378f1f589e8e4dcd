//! Hinted handoff's memory: per node, the keys written while the node was down or that failed
//! on it. Keys only (the value is copied from a live replica when the node is back), each once,
//! bounded: past `repair.max_hints_per_node` the oldest hint is dropped and counted. A hint a
//! replay has taken stays pending until it is delivered, given up or put back.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

/// One node's hints.
#[derive(Debug)]
pub struct Hints {
    inner: Mutex<Inner>,
    max: usize,
    stored: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<Bytes>,
    keys: HashSet<Bytes, ahash::RandomState>,
    /// Taken by a replay and not yet delivered, given up or put back.
    replaying: usize,
}

/// A node's hint figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintTotals {
    pub pending: u64,
    pub stored: u64,
    pub replayed: u64,
    pub dropped: u64,
}

impl Hints {
    pub fn new(max: usize) -> Hints {
        Hints {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
            stored: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The sets stay valid if a holder panicked mid-update.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that `key` must be copied to the node. A key already hinted is not stored
    /// twice.
    pub fn add(&self, key: &Bytes) {
        let mut inner = self.lock();
        if inner.keys.contains(key) {
            return;
        }
        if inner.order.len() >= self.max {
            if let Some(old) = inner.order.pop_front() {
                inner.keys.remove(&old);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.order.push_back(key.clone());
        inner.keys.insert(key.clone());
        self.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes up to `n` of the oldest hints.
    pub fn take(&self, n: usize) -> Vec<Bytes> {
        let mut inner = self.lock();
        let count = n.min(inner.order.len());
        let taken: Vec<Bytes> = inner.order.drain(..count).collect();
        for key in &taken {
            inner.keys.remove(key);
        }
        inner.replaying += count;
        taken
    }

    /// Puts back taken hints a replay could not deliver, as the oldest, without counting them
    /// as stored again. A key hinted again meanwhile is kept once.
    pub fn put_back(&self, keys: &[Bytes]) {
        let mut inner = self.lock();
        inner.replaying = inner.replaying.saturating_sub(keys.len());
        for key in keys.iter().rev() {
            if inner.keys.insert(key.clone()) {
                inner.order.push_front(key.clone());
            }
        }
        while inner.order.len() > self.max {
            if let Some(old) = inner.order.pop_front() {
                inner.keys.remove(&old);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hints not delivered yet: waiting, or taken by a replay still running.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.order.len() + inner.replaying
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts taken hints delivered to the node.
    pub fn replayed(&self, n: u64) {
        self.settle(n);
        self.replayed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts taken hints given up (no live replica to copy from).
    pub fn dropped(&self, n: u64) {
        self.settle(n);
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` taken hints are done with.
    fn settle(&self, n: u64) {
        let mut inner = self.lock();
        inner.replaying = inner
            .replaying
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
    }

    pub fn totals(&self) -> HintTotals {
        HintTotals {
            pending: self.len() as u64,
            stored: self.stored.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// CONFIG RESETSTAT: the counters (the pending hints stay).
    pub fn reset(&self) {
        self.stored.store(0, Ordering::Relaxed);
        self.replayed.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_oldest_dropped_and_deduplicated() {
        let h = Hints::new(2);
        h.add(&Bytes::from_static(b"a"));
        h.add(&Bytes::from_static(b"a"));
        h.add(&Bytes::from_static(b"b"));
        h.add(&Bytes::from_static(b"c"));
        let t = h.totals();
        assert_eq!((t.pending, t.stored, t.dropped), (2, 3, 1));
        assert_eq!(
            h.take(10),
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")]
        );
        assert_eq!(h.len(), 2, "taken hints are pending until replayed");
        h.replayed(2);
        assert!(h.is_empty());
        h.add(&Bytes::from_static(b"b"));
        assert_eq!(h.len(), 1, "a taken key can be hinted again");
    }

    #[test]
    fn taken_hints_put_back_first_and_not_stored_twice() {
        let h = Hints::new(10);
        for k in [&b"a"[..], b"b", b"c"] {
            h.add(&Bytes::copy_from_slice(k));
        }
        let taken = h.take(2);
        h.add(&Bytes::from_static(b"a"));
        assert_eq!(h.totals().pending, 4);
        h.replayed(1);
        h.put_back(taken.get(1..).unwrap());
        let t = h.totals();
        assert_eq!((t.pending, t.stored, t.replayed), (3, 4, 1));
        assert_eq!(
            h.take(10),
            vec![
                Bytes::from_static(b"b"),
                Bytes::from_static(b"c"),
                Bytes::from_static(b"a")
            ]
        );
    }
}
