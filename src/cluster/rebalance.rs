//! What requests must know while keys move to new owners after a membership change: whether a
//! rebalance runs, the rings before the change (a key not moved yet is still on its previous
//! owners), and the keys clients deleted meanwhile. Also the rebalancer's figures. The
//! rebalance itself (walking the nodes, moving keys) is `control::rebalance`. The deletes
//! are remembered for the refills of restarted nodes (`control::refill`) too.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::topology::Topology;

/// Deleted keys remembered during one run; past it deletes are not remembered (and a key
/// deleted then may come back from its old copy).
const MAX_TOMBSTONES: usize = 100_000;

/// Rings before changes not rebalanced yet, kept at most (older ones are forgotten).
const MAX_PREVIOUS: usize = 8;

/// The rebalancer's state and figures (INFO `# Rebalance`, STRATA STATS, `/metrics`).
#[derive(Default)]
pub struct Rebalance {
    /// Set while a run goes on (`control::rebalance` sets and clears it).
    pub running: AtomicBool,
    /// Topologies before the changes not rebalanced yet, oldest first.
    /// Keys deleted by clients while a run goes on (at most `MAX_TOMBSTONES`): a copy the
    /// run restored on a new owner after such a delete is unlinked again.
    tombstones: Mutex<std::collections::HashSet<Bytes>>,
    /// Read by every read while a rebalance runs: swapped whole, never locked.
    previous: arc_swap::ArcSwap<Vec<Arc<Topology>>>,
    /// Refills running (`control::refill`): they need the deletes remembered too.
    refills: AtomicUsize,
    /// Runs completed.
    pub runs: AtomicU64,
    /// Keys looked at, moved, left alone because their new owner already had a value, and
    /// not moved because of an error (they stay where they were).
    pub scanned: AtomicU64,
    pub moved: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    /// Ring version of the last completed run, and its duration.
    pub last_version: AtomicU64,
    pub last_ms: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Rebalance {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock_error().clone()
    }

    pub fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Membership changes whose keys a rebalance has not moved yet (their previous owners
    /// may still hold keys).
    pub fn pending_rings(&self) -> usize {
        self.previous.load().len()
    }

    /// The figures, as (name, value), for INFO `# Rebalance`, STRATA STATS and `/metrics`.
    pub fn figures(&self) -> Vec<(&'static str, u64)> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("running", u64::from(self.is_running())),
            ("runs", get(&self.runs)),
            ("keys_scanned", get(&self.scanned)),
            ("keys_moved", get(&self.moved)),
            ("keys_skipped", get(&self.skipped)),
            ("keys_failed", get(&self.failed)),
            ("last_ring_version", get(&self.last_version)),
            ("last_ms", get(&self.last_ms)),
            ("rings_pending", self.pending_rings() as u64),
        ]
    }

    /// A client deleted `key`: while a run or a refill (`cluster::refill`) goes on, remember
    /// it so that the walk does not bring it back from an old copy.
    pub fn deleted(&self, key: &Bytes) {
        if !self.is_running() && self.refills.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut t = self.tombstones.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() < MAX_TOMBSTONES {
            t.insert(key.clone());
        }
    }

    pub fn is_tombstone(&self, key: &Bytes) -> bool {
        self.tombstones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Remembers the ring before a membership change (its owners still hold the keys).
    pub fn remember(&self, before: Arc<Topology>) {
        // Changes are made one at a time (the membership lock), so a plain store is enough.
        let mut previous: Vec<Arc<Topology>> = self.previous.load().as_ref().clone();
        previous.push(before);
        if previous.len() > MAX_PREVIOUS {
            previous.remove(0);
        }
        self.previous.store(Arc::new(previous));
    }

    /// While a rebalance runs: the rings whose owners a missing read also asks.
    pub fn fallback(&self) -> Option<Arc<Vec<Arc<Topology>>>> {
        if !self.is_running() {
            return None;
        }
        let previous = self.previous.load_full();
        (!previous.is_empty()).then_some(previous)
    }

    /// A refill starts: deletes are remembered until it ends ([`Rebalance::refill_ended`]).
    pub fn refill_started(&self) {
        self.refills.fetch_add(1, Ordering::SeqCst);
    }

    /// A refill ended: when no walk goes on any more, the deletes remembered are forgotten.
    pub fn refill_ended(&self) {
        self.refills.fetch_sub(1, Ordering::SeqCst);
        if !self.is_running() {
            self.forget_deleted();
        }
    }

    /// A run ended: the deletes it remembered are forgotten, unless a refill still needs them.
    pub fn forget_deleted(&self) {
        if self.refills.load(Ordering::SeqCst) > 0 {
            return;
        }
        self.tombstones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Every key is on its current owners: the previous rings are forgotten.
    pub fn forget_previous(&self) {
        self.previous.store(Arc::default());
    }
}
