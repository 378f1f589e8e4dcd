//! Convergence work that runs after a client was answered: the tails of replicated writes,
//! read repair, and hinted handoff (`handoff.rs`). All of it is bounded by one budget of tasks
//! in flight (`repair.max_in_flight`); work past it is counted and logged, never queued
//! without bound.

pub mod copy;
pub mod handoff;
pub mod tails;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{PendingReply, Router};
use crate::cluster::NodeInfo;
use crate::policy::LayerId;
use tails::Tails;

/// The keys of one request, as hinted or repaired together: inline for the usual one key.
pub type Keys = smallvec::SmallVec<[Bytes; 1]>;

/// The budget of background tasks, and what was done with it.
#[derive(Debug)]
pub struct Background {
    in_flight: AtomicUsize,
    max: usize,
    /// Write tails not watched because the budget was spent (a hint was stored instead).
    pub tails_overflow: AtomicU64,
    /// Read repairs skipped because the budget was spent.
    pub repairs_skipped: AtomicU64,
    /// Read repairs (and miss-failover copies) that failed.
    pub repairs_failed: AtomicU64,
}

/// One unit of the budget; given back when dropped.
pub struct Ticket(Arc<Background>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Background {
    pub fn new(max: usize) -> Background {
        Background {
            in_flight: AtomicUsize::new(0),
            max: max.max(1),
            tails_overflow: AtomicU64::new(0),
            repairs_skipped: AtomicU64::new(0),
            repairs_failed: AtomicU64::new(0),
        }
    }

    /// A ticket when the budget allows one more task.
    pub fn begin(self: &Arc<Self>) -> Option<Ticket> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if now >= self.max {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Ticket(self.clone()))
    }

    /// Tasks running now (write tails and repairs).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One worker's convergence work: its write tails, and the process's budget.
pub struct Repairs {
    pub tails: Arc<Tails>,
    pub background: Arc<Background>,
}

/// Watches a replica's reply to a write the client was already answered for; when it fails,
/// the keys are hinted for that node. Without budget, the keys are hinted at once (the copy
/// later is harmless when the write did land).
pub fn watch_tail(repairs: &Repairs, rx: PendingReply, node: Arc<NodeInfo>, keys: Keys) {
    let background = &repairs.background;
    let Some(ticket) = background.begin() else {
        if background.tails_overflow.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
            tracing::warn!(node = %node.id, "background budget spent: write outcome not watched, keys hinted");
        }
        for key in keys.iter() {
            node.hints.add(key);
        }
        return;
    };
    repairs.tails.push(rx, node, keys, ticket);
}

/// Read repair: copies `keys` from `source` to `targets` in the background, counting each key
/// repaired in `layer`'s `repairs`.
pub fn spawn_repair(
    router: &Arc<Router>,
    background: &Arc<Background>,
    layer: LayerId,
    keys: Keys,
    source: usize,
    targets: Vec<usize>,
) {
    let Some(ticket) = background.begin() else {
        if background.repairs_skipped.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
            tracing::warn!("background budget spent: read repair skipped");
        }
        return;
    };
    let router = router.clone();
    let background = background.clone();
    tokio::spawn(async move {
        let _ticket = ticket;
        for key in keys.iter() {
            match copy::copy_key(&router, key, source, &targets).await {
                Ok(()) => {
                    router.live().layer_figures(layer, router.worker, |w| {
                        w.repairs.add(targets.len() as u64)
                    });
                }
                Err(reason) => {
                    background.repairs_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%reason, "read repair failed");
                }
            }
        }
    });
}
