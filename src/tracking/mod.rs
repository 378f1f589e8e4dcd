//! Invalidation streams for the near cache and for tracking clients: per member node, a RESP3
//! connection of its own on which `CLIENT TRACKING ON BCAST PREFIX ...` asks the node to
//! report every write of a key of the near-cached layers' prefixes — made through this
//! strata, another one, a client of the node, an expiry, an eviction or a flush
//! (`>invalidate` pushes; a flush is an `invalidate` with a null). While any of strata's
//! clients has `CLIENT TRACKING` on (and `client_tracking.linger` after), the stream asks for
//! every key instead (`BCAST` without a prefix). Each report removes the entry
//! ([`Coherence::invalidate`]) or everything ([`Coherence::flush`]), and tells the tracking
//! clients.
//!
//! The streams are read on a thread of their own ([`StreamThread`]), not among a worker's
//! client requests.
//!
//! The near cache serves entries only while every member node's stream is live. A stream that
//! ends (the connection closed or killed, the node restarted, a PING unanswered within
//! `health.node_timeout`, the node marked down, a reload that changed the prefixes) is marked
//! lost at once, which empties the near cache before anything more is served from it; the
//! task then connects again (backoff as the node connections). Redis replies to an
//! overlapping prefix list with two replies to one command, so the prefixes sent never
//! overlap (`Coherence::prefixes`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::backend::{CallError, RespClient, Router};
use crate::cluster::NodeInfo;
use crate::near::Coherence;
use crate::protocol::Proto;
use redis_protocol::resp2::types::BytesFrame;

/// Largest push taken from a node: Redis gathers the keys written in one event-loop pass into
/// one push, so a burst of writes makes a large one. A longer one ends the stream (and flushes
/// the near cache) rather than taking memory without bound.
const MAX_PUSH: usize = 64 << 20;

/// The thread the streams are read on, with a runtime of its own. The streams used to be read
/// by worker 0 among its clients' requests: on a loaded machine it waited 100-190 ms of every
/// 200 ms for a core, and an invalidation waited with it (past the near cache's 100 ms bound
/// in the coherence checker). A thread that sleeps until a push comes is woken promptly by
/// the scheduler. It stops, cancelling the streams, when dropped.
pub struct StreamThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StreamThread {
    /// Starts the thread (`strata-streams`) and its runtime.
    pub fn start() -> std::io::Result<StreamThread> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("strata-streams".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
                // Dropping the runtime ends every stream.
            })?;
        let handle = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the streams thread ended at start"))??;
        Ok(StreamThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where the stream tasks run.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Spawns a stream's task on the streams thread (`Coherence::streams_runtime`), or on the
/// current runtime when there is none (unit tests).
fn spawn(router: &Arc<Router>, slot: usize) {
    let task = track(router.clone(), slot);
    match router.view().layers.coherence().streams_runtime() {
        Some(handle) => drop(handle.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

/// Starts one tracking task per member node, on the streams thread.
pub fn start(router: &Arc<Router>) {
    let members = router.view().topology.members.clone();
    for slot in members {
        start_one(router, slot);
    }
}

/// Starts the tracking task of the node in `slot` (a node added at run time). It stops when
/// the node is removed.
pub fn start_one(router: &Arc<Router>, slot: usize) {
    router.view().layers.coherence().expect_node(slot, true);
    spawn(router, slot);
}

/// Starts the tracking task of a Redis Cluster or Sentinel backend's node in `slot`: its
/// stream runs while the node is a primary serving slots (`Coherence::expect_backends`,
/// called by `control::slot_maps` with every new map), and waits otherwise.
pub fn start_backend_node(router: &Arc<Router>, slot: usize) {
    spawn(router, slot);
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("CLIENT TRACKING refused: {0}")]
    Refused(String),
    #[error("no reply to PING within {0:?}")]
    Silent(Duration),
    #[error("the node is marked down")]
    Down,
    #[error("the near-cached prefixes changed")]
    Prefixes,
    #[error("the node's stream is not needed any more")]
    NotNeeded,
}

async fn track(router: Arc<Router>, slot: usize) {
    let Some(node) = router.view().topology.node(slot).cloned() else {
        return;
    };
    let mut backoff = Duration::ZERO;
    let mut logged_failure = false;
    let mut expected_changed = router.view().layers.coherence().watch_expected();
    loop {
        let (coherence, prefixes, interval, connect_timeout, backoff_range) = {
            let view = router.view();
            let c = &view.settings.config;
            (
                view.layers.coherence().clone(),
                wanted(view.layers.coherence()),
                c.health.heartbeat_interval,
                c.timeouts.connect,
                (
                    c.backend.reconnect_backoff_min,
                    c.backend.reconnect_backoff_max,
                ),
            )
        };
        expected_changed.borrow_and_update();
        let idle = prefixes.is_empty() || node.health.is_down() || !coherence.expects(slot);
        let wait = if idle { interval } else { backoff };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A client turned tracking on: every key is wanted now.
                _ = coherence.clients.mode_changed.notified(), if idle => {}
                // A backend's new map made this node a primary.
                Ok(()) = expected_changed.changed(), if idle => {}
                _ = node.retired() => break,
            }
        }
        if idle {
            continue;
        }
        let outcome = tokio::select! {
            ended = stream(&router, &node, &coherence, &prefixes, slot, connect_timeout, &mut expected_changed) => ended,
            _ = node.retired() => break,
        };
        coherence.set_live(slot, false, false);
        match outcome {
            Ended::Prefixes | Ended::NotNeeded => backoff = Duration::ZERO,
            Ended::Down => backoff = interval,
            e => {
                backoff = (backoff * 2).clamp(backoff_range.0, backoff_range.1);
                if !logged_failure {
                    tracing::warn!(node = %node.id, addr = %node.addr, error = %e,
                        "near cache: invalidation stream lost; the near cache is off until it is back");
                    logged_failure = true;
                }
                continue;
            }
        }
        logged_failure = false;
    }
    let coherence = router.view().layers.coherence().clone();
    coherence.set_live(slot, false, false);
    coherence.expect_node(slot, false);
}

/// Opens the node's stream and reads it until it ends; the stream counts as live from the
/// node's `OK` to `CLIENT TRACKING` until this returns.
async fn stream(
    router: &Router,
    node: &NodeInfo,
    coherence: &Coherence,
    prefixes: &[Vec<u8>],
    slot: usize,
    connect_timeout: Duration,
    expected_changed: &mut tokio::sync::watch::Receiver<u64>,
) -> Ended {
    let mut client = match open(node, prefixes, connect_timeout).await {
        Ok(client) => client,
        Err(e) => return e,
    };
    let every_key = prefixes.iter().any(|p| p.is_empty());
    coherence.set_live(slot, true, every_key);
    tracing::info!(node = %node.id, prefixes = prefixes.len(), every_key, "invalidation stream live");
    let (interval, node_timeout) = {
        let view = router.view();
        let h = &view.settings.config.health;
        (h.heartbeat_interval, h.node_timeout)
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // PINGs sent and not answered yet, and since when the oldest waits.
    let mut unanswered: u64 = 0;
    let mut waiting_since: Option<Instant> = None;
    loop {
        tokio::select! {
            read = client.read_raw() => match read {
                Ok(raw) => {
                    if take(coherence, &raw) && unanswered > 0 {
                        unanswered -= 1;
                        waiting_since = (unanswered > 0).then(Instant::now);
                    }
                }
                Err(e) => return Ended::Call(e),
            },
            _ = coherence.clients.mode_changed.notified(), if !every_key => {
                return Ended::Prefixes;
            }
            Ok(()) = expected_changed.changed() => {
                if !coherence.expects(slot) {
                    return Ended::NotNeeded;
                }
            }
            _ = ticker.tick() => {
                if node.health.is_down() {
                    return Ended::Down;
                }
                if wanted(coherence) != prefixes {
                    return Ended::Prefixes;
                }
                // A backend's primary needed only while clients tracked, and they stopped.
                if !coherence.expects(slot) {
                    return Ended::NotNeeded;
                }
                if let Some(since) = waiting_since {
                    if since.elapsed() >= node_timeout {
                        return Ended::Silent(node_timeout);
                    }
                }
                // Redis closes idle connections after its `timeout`, tracking ones included:
                // the PINGs keep it open and tell a hung node from a quiet one.
                if let Err(e) = client.send(b"*1\r\n$4\r\nPING\r\n").await {
                    return Ended::Call(e);
                }
                unanswered += 1;
                waiting_since.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// The prefixes a stream asks for: every key (the empty prefix) while clients track, else
/// the near-cached layers' prefixes (none: no stream).
fn wanted(coherence: &Coherence) -> Vec<Vec<u8>> {
    if coherence.clients.wants_every_key() {
        vec![Vec::new()]
    } else {
        coherence.prefixes()
    }
}

/// Connects (RESP3, the node's credentials and TLS) and turns tracking on for `prefixes` (the
/// empty prefix: every key).
async fn open(
    node: &NodeInfo,
    prefixes: &[Vec<u8>],
    timeout: Duration,
) -> Result<RespClient, Ended> {
    let setup = async {
        let mut client = RespClient::connect_node(node, Proto::Resp3, timeout)
            .await?
            .with_reply_limit(MAX_PUSH);
        let mut args: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON", b"BCAST"];
        for p in prefixes.iter().filter(|p| !p.is_empty()) {
            args.push(b"PREFIX");
            args.push(p);
        }
        let reply = client.call(&args).await?;
        match reply.frame {
            BytesFrame::SimpleString(_) => Ok(client),
            other => Err(Ended::Refused(format!("{other:?}"))),
        }
    };
    match tokio::time::timeout(timeout * 2, setup).await {
        Ok(result) => result,
        Err(_) => Err(Ended::Silent(timeout * 2)),
    }
}

/// One frame of the stream, parsed from its bytes (the node sends few shapes).
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    /// `>2 invalidate [keys]`.
    Invalidate(Vec<&'a [u8]>),
    /// `>2 invalidate _`: the node was flushed.
    Flush,
    Pong,
    /// Another push or reply: nothing to do.
    Other,
}

/// Reads one CRLF-ended line at `*at`, moving past it.
fn line<'a>(raw: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = raw.get(*at..)?;
    // A header line holds no CR of its own: the first one ends it.
    let end = memchr::memchr(b'\r', rest)?;
    if rest.get(end + 1) != Some(&b'\n') {
        return None;
    }
    *at += end + 2;
    rest.get(..end)
}

fn number(text: &[u8]) -> Option<usize> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A bulk string at `*at` (`$len`, the bytes, CRLF), moving past it.
fn bulk<'a>(raw: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let head = line(raw, at)?;
    let len = number(head.strip_prefix(b"$")?)?;
    let bytes = raw.get(*at..at.checked_add(len)?)?;
    *at += len + 2;
    Some(bytes)
}

/// What `raw` (one whole frame) is; `None` for an invalidate push of a shape not understood
/// (treated as a flush: everything may have changed).
fn parse(raw: &[u8]) -> Option<Frame<'_>> {
    if raw.first() != Some(&b'>') {
        return Some(if raw.eq_ignore_ascii_case(b"+PONG\r\n") {
            Frame::Pong
        } else {
            Frame::Other
        });
    }
    let mut at = 0;
    let head = line(raw, &mut at)?;
    if number(head.get(1..)?)? != 2 || !bulk(raw, &mut at)?.eq_ignore_ascii_case(b"invalidate") {
        return Some(Frame::Other);
    }
    let keys = line(raw, &mut at)?;
    if keys == b"_" || keys == b"*-1" {
        return Some(Frame::Flush);
    }
    let n = number(keys.strip_prefix(b"*")?)?;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        out.push(bulk(raw, &mut at)?);
    }
    Some(Frame::Invalidate(out))
}

/// Applies one frame of the stream; true for a PONG.
fn take(coherence: &Coherence, raw: &[u8]) -> bool {
    match parse(raw) {
        Some(Frame::Invalidate(keys)) => {
            coherence.invalidate_all(&keys);
            false
        }
        Some(Frame::Pong) => true,
        Some(Frame::Other) => false,
        // A flush of the node (FLUSHALL, FLUSHDB, a full resync), or a push not understood.
        Some(Frame::Flush) | None => {
            coherence.flush("a node was flushed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_parse_as_redis_sends_them() {
        // Bytes as redis-server 7.0 writes them.
        let one = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$7\r\nroute:a\r\n";
        assert_eq!(parse(one), Some(Frame::Invalidate(vec![&b"route:a"[..]])));
        let two = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$7\r\nroute:a\r\n$7\r\nroute:b\r\n";
        assert_eq!(
            parse(two),
            Some(Frame::Invalidate(vec![&b"route:a"[..], &b"route:b"[..]]))
        );
        assert_eq!(
            parse(b">2\r\n$10\r\ninvalidate\r\n_\r\n"),
            Some(Frame::Flush)
        );
        assert_eq!(parse(b"+PONG\r\n"), Some(Frame::Pong));
        assert_eq!(parse(b"+OK\r\n"), Some(Frame::Other));
        assert_eq!(
            parse(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"),
            Some(Frame::Other)
        );
        // Binary keys, with CRLF inside.
        let bin = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$4\r\na\r\nb\r\n";
        assert_eq!(parse(bin), Some(Frame::Invalidate(vec![&b"a\r\nb"[..]])));
        // Truncated or lying lengths are not understood (flushed), never a panic.
        for bad in [
            &b">2\r\n$10\r\ninvalidate\r\n*2\r\n$7\r\nroute:a\r\n"[..],
            b">2\r\n$10\r\ninvalidate\r\n*1\r\n$99\r\nroute:a\r\n",
            b">2\r\n$10\r\ninvalidate\r\n*x\r\n",
            b">",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
