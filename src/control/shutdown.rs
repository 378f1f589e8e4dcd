//! Signals: SIGHUP reloads the configuration (`reload.rs`). Graceful shutdown: on SIGTERM or SIGINT strata stops accepting, lets every client get the
//! replies to the requests it already sent (then closes it), lets background work (write
//! tails, repairs) finish, stops a running rebalance between two batches, and exits 0 — after
//! at most `shutdown.drain_timeout`. A second signal exits at once.
//!
//! [`Drain`] is the shared state sessions and workers look at; [`serve_until_signalled`] is
//! what `strata serve` runs.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::latch::Latch;
use crate::server::{ServerHandle, Shared};

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
    pub async fn begun(&self) {
        self.draining.wait().await;
    }

    /// Waits (on a worker's runtime, after it stopped taking clients) until no client is
    /// connected, no background work runs and no rebalance runs, or the drain timeout passes.
    pub async fn settle(&self, shared: &Shared) {
        let timeout = shared.settings.load().config.shutdown.drain_timeout;
        let since = self
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(Instant::now);
        let deadline = since + timeout;
        loop {
            let clients = shared.connected.load(Ordering::Relaxed);
            let background = shared.background.in_flight();
            let rebalancing = shared.rebalance.is_running();
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

/// Starts the server with `start` once the signal handlers are in place (a signal that comes
/// early is not lost to the default action), runs it until SIGTERM or SIGINT, then drains it;
/// a second signal exits at once. Returns when the server has stopped.
pub fn serve_until_signalled(
    start: impl FnOnce() -> std::io::Result<ServerHandle>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let handle = start()?;
        let name = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    handle.request_reload();
                }
            }
        };
        tracing::info!(
            signal = name,
            "draining: no new clients; finishing what was sent"
        );
        let started = Instant::now();
        handle.begin_drain();
        // The workers end once drained; joining them blocks, so it runs on its own thread.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            handle.join();
            let _ = done_tx.send(());
        });
        tokio::select! {
            _ = done_rx => {
                tracing::info!(ms = started.elapsed().as_millis() as u64, "drained: exiting");
            }
            _ = term.recv() => second("SIGTERM"),
            _ = int.recv() => second("SIGINT"),
        }
        Ok(())
    })
}

fn second(name: &str) {
    tracing::warn!(signal = name, "second signal: exiting without draining");
    std::process::exit(1);
}
