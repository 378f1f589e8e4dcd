//! Graceful shutdown: on SIGTERM or SIGINT (`signals.rs`) strata stops accepting, lets every
//! client get the replies to the requests it already sent (then closes it), lets background
//! work (write tails, repairs) finish, stops a running rebalance between two batches, and
//! exits 0 — after at most `shutdown.drain_timeout`.
//!
//! [`Drain`] is the shared state sessions and workers look at.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Control;
use crate::latch::Latch;

/// Whether the server is draining, and since when.
#[derive(Default)]
pub struct Drain {
    draining: Latch,
    since: Mutex<Option<Instant>>,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.is_set()
    }

    /// Starts draining (once); wakes every session waiting for input.
    pub fn begin(&self) {
        if self.draining.set() {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    /// Completes once draining has begun.
    pub fn begun(&self) -> crate::latch::Watch<'_> {
        self.draining.watch()
    }

    /// Waits (on a worker's runtime, after it stopped taking clients) until no client is
    /// connected, no background work runs and no rebalance runs, or the drain timeout passes.
    pub async fn settle(&self, control: &Control) {
        let timeout = control.live.load().settings.config.shutdown.drain_timeout;
        let since = self
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(Instant::now);
        let deadline = since + timeout;
        loop {
            let clients = control.connected.load(Ordering::Relaxed);
            let background = control.background.in_flight();
            let rebalancing = control.rebalance.is_running();
            if clients == 0 && background == 0 && !rebalancing {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    clients,
                    background,
                    rebalancing,
                    timeout = %humantime::format_duration(timeout),
                    "drain timeout reached: exiting with work left"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
