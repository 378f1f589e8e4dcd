//! The process's signals: SIGTERM and SIGINT drain the server and exit (a second one exits at
//! once), SIGHUP reloads the configuration. Part of the composition root, with `server.rs`.

use std::time::Instant;

use crate::server::ServerHandle;

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
