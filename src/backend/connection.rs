//! One multiplexed, pipelined connection to a node, driven by its own task.
//!
//! Many clients share it: each request is sent to the driver with a oneshot for its reply; the
//! driver writes whatever has queued up in one vectored write and hands the sender to the reader
//! half, which matches replies first-in first-out (Redis answers a connection in order).
//!
//! The driver owns reconnection, through the one connect path (`connect.rs`: each reconnect
//! authenticates again, with the node's credentials as they are then). While a node is
//! unreachable, requests fail at once with `ERR strata: node <id> (<addr>) unavailable:
//! <reason>` until the next attempt (exponential backoff), so a dead node costs its keys'
//! clients an error, never a hang. A node that stops
//! answering is caught by the reader: when the oldest request has waited `timeouts.request`,
//! the connection is dropped and every request on it fails with the timeout.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::{ErrorKind, Failure, NodeError};
use super::queue::{InFlight, RequestQueue};
use super::stream::{NodeReader, NodeStream, NodeWriter};
use crate::cluster::NodeInfo;
use crate::protocol::{decode_reply_as, NodeReply, Proto};

/// What a request gets back: the node's reply or why there is none.
pub type NodeResult = Result<NodeReply, NodeError>;

/// A request on its way to a node.
pub struct BackendRequest {
    /// One complete RESP command.
    pub payload: Bytes,
    pub reply: oneshot::Sender<NodeResult>,
    /// On a connection to a Redis Cluster node, a redirect reply goes to the worker's
    /// follower instead of the caller (`redirect.rs`); false for the follower's own sends.
    pub follow: bool,
}

/// Tunables of a connection, from config.yaml.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// `timeouts.connect` and `timeouts.request`, changed in place by a reload.
    pub timeouts: Arc<LiveTimeouts>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub queue_depth: usize,
    pub max_in_flight: usize,
    /// The worker whose thread runs this connection (its node figures are counted there).
    pub worker: usize,
    /// Where the connections to Redis Cluster nodes hand their redirects (`redirect.rs`);
    /// none: passed to the caller as they are.
    pub redirects: Option<super::redirect::RedirectSink>,
}

/// Connect and request timeouts that a reload changes under running connections (read at
/// each use).
#[derive(Debug)]
pub struct LiveTimeouts {
    connect_ms: std::sync::atomic::AtomicU64,
    request_ms: std::sync::atomic::AtomicU64,
}

impl LiveTimeouts {
    pub fn new(connect: Duration, request: Duration) -> LiveTimeouts {
        let t = LiveTimeouts {
            connect_ms: Default::default(),
            request_ms: Default::default(),
        };
        t.set(connect, request);
        t
    }

    pub fn set(&self, connect: Duration, request: Duration) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        self.connect_ms
            .store(ms(connect), std::sync::atomic::Ordering::Relaxed);
        self.request_ms
            .store(ms(request), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The cloneable handle clients use to send requests through the connection. The driver
/// stops once every handle is dropped.
#[derive(Clone)]
pub struct Connection {
    queue: Arc<RequestQueue>,
    node: Arc<NodeInfo>,
    _owner: Arc<Owner>,
}

/// Closes the queue when the last handle goes.
struct Owner(Arc<RequestQueue>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A reply that has not arrived yet.
pub type PendingReply = oneshot::Receiver<NodeResult>;

impl Connection {
    /// Starts the driver task, for a connection speaking `proto`, on the current runtime and
    /// returns its handle.
    pub fn spawn(node: Arc<NodeInfo>, settings: ConnectionSettings, proto: Proto) -> Connection {
        let queue = Arc::new(RequestQueue::new(settings.queue_depth));
        tokio::spawn(drive(node.clone(), settings, proto, queue.clone()));
        Connection {
            _owner: Arc::new(Owner(queue.clone())),
            queue,
            node,
        }
    }

    pub fn node(&self) -> &Arc<NodeInfo> {
        &self.node
    }

    /// Queues one command; waits only when the queue is full (backpressure).
    pub async fn send(&self, payload: Bytes) -> PendingReply {
        let (reply, rx) = oneshot::channel();
        self.queue
            .push(BackendRequest {
                payload,
                reply,
                follow: true,
            })
            .await;
        rx
    }

    /// [`Connection::send`] whose redirect reply (a Redis Cluster node's `MOVED` / `ASK`)
    /// comes back as it is: the follower's own sends.
    pub async fn send_unfollowed(&self, payload: Bytes) -> PendingReply {
        let (reply, rx) = oneshot::channel();
        self.queue
            .push(BackendRequest {
                payload,
                reply,
                follow: false,
            })
            .await;
        rx
    }
}

/// Turns what a pending reply resolved to into a result (a dropped sender = connection lost).
pub fn settle(
    node: &Arc<NodeInfo>,
    got: Result<NodeResult, oneshot::error::RecvError>,
) -> NodeResult {
    match got {
        Ok(result) => result,
        Err(_) => Err(NodeError::connection_lost(node)),
    }
}

/// The driver: connect, serve until the connection breaks, back off, repeat. Ends when every
/// handle is dropped.
async fn drive(
    node: Arc<NodeInfo>,
    settings: ConnectionSettings,
    proto: Proto,
    queue: Arc<RequestQueue>,
) {
    let mut backoff = settings.backoff_min;
    loop {
        if node.is_retired() {
            // Removed from the cluster: refuse further requests, fail those queued.
            retire_queue(&node, &queue);
            return;
        }
        let failure = match super::connect::open_node(&node, proto, settings.timeouts.connect())
            .await
        {
            Ok(stream) => {
                let connected_at = Instant::now();
                node.status.connection_up();
                let outcome = serve(&node, &settings, proto, stream, &queue).await;
                node.status.connection_down();
                match outcome {
                    Served::Closed => return,
                    Served::Broken(reason) => {
                        tracing::warn!(node = %node.id, addr = %node.addr, %reason, kind = reason.kind.label(), "node connection lost");
                        // A connection that served a while was healthy: retry soon. One that
                        // broke at once (a node that accepts and hangs up) keeps backing off,
                        // so it cannot make strata spin.
                        if connected_at.elapsed() >= settings.backoff_max {
                            backoff = settings.backoff_min;
                        }
                        reason
                    }
                }
            }
            Err(reason) => reason,
        };
        // A cluster node that cannot be reached may have failed over: ask for the map.
        if let Some(link) = &node.cluster {
            link.refresh.ask();
        }
        // Refused credentials mark the node down at once; other failures count towards it.
        let transition = if failure.kind.is_refusal() {
            node.refused(&failure.detail)
        } else {
            node.failed(&failure.detail)
        };
        // One line per change of reason, not per attempt (every worker's connections and
        // every backoff round meet the same failure), and none when the health transition
        // just logged it.
        if node.status.set_error(&failure.detail) && transition.is_none() {
            tracing::warn!(node = %node.id, addr = %node.addr, reason = %failure, kind = failure.kind.label(), "cannot reach node");
        }
        // Until the next attempt, answer this node's requests with the error at once.
        let error = NodeError::of(&node, &failure);
        let retry_at = Instant::now() + backoff;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(retry_at) => break,
                _ = node.retired() => break,
                open = queue.wait() => {
                    if !open {
                        return;
                    }
                    queue.take(&mut batch);
                    if let Some(w) = node.stats.worker(settings.worker) {
                        w.failed(error.kind.index(), batch.len() as u64);
                    }
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(error.clone()));
                    }
                }
            }
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

/// Closes the queue of a retired node and fails what is still queued.
fn retire_queue(node: &Arc<NodeInfo>, queue: &RequestQueue) {
    queue.close();
    let mut batch = Vec::new();
    queue.take(&mut batch);
    let error = NodeError::new(node, ErrorKind::Down, "node removed from the cluster");
    for request in batch {
        let _ = request.reply.send(Err(error.clone()));
    }
}

enum Served {
    /// Every handle was dropped: the driver ends.
    Closed,
    /// The connection failed; the reason is logged and shown in INFO.
    Broken(Failure),
}

/// Writes requests as they come until the connection breaks or the handles are gone.
async fn serve(
    node: &Arc<NodeInfo>,
    settings: &ConnectionSettings,
    proto: Proto,
    stream: NodeStream,
    queue: &RequestQueue,
) -> Served {
    let (read_half, mut write_half) = stream.into_split();
    let in_flight = Arc::new(InFlight::new(settings.max_in_flight));
    // Redirects are followed only for a Redis Cluster node's connections, which keep each
    // request's bytes until its reply.
    let redirects = settings
        .redirects
        .clone()
        .filter(|_| node.cluster.as_ref().is_some_and(|l| !l.sentinel));
    let keep = redirects.is_some();
    let mut reader = tokio::spawn(read_replies(
        node.clone(),
        read_half,
        in_flight.clone(),
        settings.timeouts.clone(),
        settings.worker,
        proto,
        redirects,
    ));
    let mut batch: Vec<BackendRequest> = Vec::new();
    let mut payloads: Vec<Bytes> = Vec::new();
    let mut retiring = false;
    let outcome = loop {
        tokio::select! {
            biased;
            ended = &mut reader => {
                break Served::Broken(ended.unwrap_or_else(|e| {
                    Failure::new(ErrorKind::Closed, format!("reader failed: {e}"))
                }));
            }
            // Removed from the cluster: no new requests; what is queued is still written.
            _ = node.retired(), if !retiring => {
                retiring = true;
                queue.close();
                continue;
            }
            open = queue.wait() => if !open {
                break Served::Closed;
            },
        }
        // Let the other clients of this worker that are ready run first (a yielded task runs
        // after the event loop has polled for I/O once more), so their requests join this
        // batch: fewer, larger writes to the node cost less CPU on both sides.
        tokio::task::yield_now().await;
        queue.take(&mut batch);
        let count = batch.len();
        let mut replies = Vec::with_capacity(count);
        for request in batch.drain(..) {
            let resend = (keep && request.follow).then(|| request.payload.clone());
            payloads.push(request.payload);
            replies.push((request.reply, resend));
        }
        // The reply slots go to the reader before the bytes leave, so every reply finds one.
        in_flight.add(replies.into_iter(), count).await;
        if let Some(w) = node.stats.worker(settings.worker) {
            w.requests.add(count as u64);
        }
        let write = write_all(&mut write_half, &mut payloads);
        let request_timeout = settings.timeouts.request();
        match tokio::time::timeout(request_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Served::Broken(Failure::io("write", &e)),
            Err(_) => break Served::Broken(request_timed_out(request_timeout)),
        }
    };
    if retiring {
        // Requests already written to a removed node get their replies (up to the request
        // timeout) before the connection closes.
        let deadline = Instant::now() + settings.timeouts.request();
        while in_flight.oldest().is_some() && !reader.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Whatever is still in flight fails with the reader's reason, or as "connection lost" when
    // the slots are dropped with the queue.
    reader.abort();
    outcome
}

/// Writes every buffer, vectored, and empties the batch.
async fn write_all(out: &mut NodeWriter, batch: &mut Vec<Bytes>) -> std::io::Result<()> {
    let mut start = 0;
    while start < batch.len() {
        let slices: Vec<IoSlice<'_>> = batch
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(64)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut written = out.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(buf) = batch.get_mut(start) else {
                break;
            };
            if written >= buf.len() {
                written -= buf.len();
                start += 1;
            } else {
                buf.advance(written);
                written = 0;
            }
        }
    }
    batch.clear();
    // TLS keeps what it encrypted until flushed (a no-op on plain TCP).
    out.flush().await
}

/// The failure of a request the node did not answer within `timeout`.
fn request_timed_out(timeout: Duration) -> Failure {
    Failure::new(
        ErrorKind::TimedOut,
        format!(
            "request timed out after {}",
            humantime::format_duration(timeout)
        ),
    )
}

/// Reads replies and matches them to requests in order. Returns why it stopped, after failing
/// every request still waiting with that reason.
async fn read_replies(
    node: Arc<NodeInfo>,
    mut read_half: NodeReader,
    in_flight: Arc<InFlight>,
    timeouts: Arc<LiveTimeouts>,
    worker: usize,
    proto: Proto,
    redirects: Option<super::redirect::RedirectSink>,
) -> Failure {
    let stats = node.stats.worker(worker);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let timer = tokio::time::sleep(timeouts.request());
    tokio::pin!(timer);
    let mut since_yield = 0usize;
    let reason = loop {
        // A node streaming large replies keeps this task busy for many reads; let the clients'
        // sessions run between every few megabytes, so they move replies out of memory (and
        // cut off a client past its output limit) before more pile up.
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        // Room for the rest of a large value at once (its reply then owns an allocation of
        // about its size), else a chunk.
        let missing = crate::protocol::codec::bulk_reply_len(&buf)
            .map_or(0, |total| total.saturating_sub(buf.len()));
        if buf.capacity() - buf.len() < missing.max(READ_CHUNK / 4) {
            buf.reserve(missing.max(READ_CHUNK));
        }
        let read = match in_flight.oldest() {
            None => tokio::select! {
                _ = in_flight.wait_added() => continue,
                read = read_half.read_buf(&mut buf) => read,
            },
            Some(sent_at) => {
                let timeout = timeouts.request();
                let deadline = sent_at + timeout;
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                // Replies already here win over the timer. When strata itself was held up (an
                // overloaded machine, a stopped process), the timer can fire before the
                // reactor has seen what arrived meanwhile (after SIGSTOP / SIGCONT epoll_wait
                // returns EINTR with no events): look once more after the reactor has run, so
                // a reply the node sent in time is not taken for a timeout.
                tokio::select! {
                    biased;
                    read = read_half.read_buf(&mut buf) => read,
                    _ = &mut timer => {
                        tokio::task::yield_now().await;
                        let again = read_half.read_buf(&mut buf);
                        match tokio::time::timeout(Duration::ZERO, again).await {
                            Ok(read) => read,
                            Err(_) => break request_timed_out(timeout),
                        }
                    }
                }
            }
        };
        let read_now = match read {
            Ok(0) => break Failure::closed_by_node(),
            Err(e) => break Failure::io("read", &e),
            Ok(n) => n,
        };
        let mut failure = None;
        // One clock read per read call: every reply in it arrived at about the same time.
        let now = Instant::now();
        let mut latencies = stats.and_then(|s| s.latency.lock());
        loop {
            match decode_reply_as(&mut buf, proto) {
                Ok(Some(reply)) => match in_flight.pop() {
                    Some((tx, sent_at, resend)) => {
                        if let Some(l) = latencies.as_mut() {
                            let usec = now.saturating_duration_since(sent_at).as_micros();
                            l.record(u64::try_from(usec).unwrap_or(u64::MAX));
                        }
                        // A Sentinel-managed primary that was demoted answers writes with
                        // -READONLY: where the primary is must be asked again.
                        if let Some(link) = &node.cluster {
                            if reply.raw.starts_with(b"-READONLY") {
                                link.refresh.ask();
                            }
                        }
                        match (resend, &redirects) {
                            (Some(payload), Some(sink))
                                if super::redirect::is_redirect(&reply.raw) =>
                            {
                                hand_over(sink, &node, proto, payload, tx, reply);
                            }
                            // The client may have gone away; its reply is simply dropped.
                            _ => drop(tx.send(Ok(reply))),
                        }
                    }
                    None => {
                        failure =
                            Some(Failure::new(ErrorKind::Protocol, "reply without a request"));
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    failure = Some(Failure::from(e));
                    break;
                }
            }
        }
        drop(latencies);
        node.health.request_ok(now.into_std());
        if let Some(reason) = failure {
            break reason;
        }
        since_yield += read_now;
    };
    let error = NodeError::of(&node, &reason);
    let failed = in_flight.drain();
    if let Some(s) = stats {
        s.failed(error.kind.index(), failed.len() as u64);
        // The only timeout the reader meets is the request timer's.
        if error.kind == ErrorKind::TimedOut {
            s.timeouts.add(failed.len() as u64);
        }
    }
    for (tx, _, _) in failed {
        let _ = tx.send(Err(error.clone()));
    }
    reason
}

/// Gives a redirected request to the worker's follower; when its queue is full, the caller
/// gets the redirect itself.
fn hand_over(
    sink: &super::redirect::RedirectSink,
    node: &Arc<NodeInfo>,
    proto: Proto,
    payload: Bytes,
    tx: oneshot::Sender<NodeResult>,
    reply: crate::protocol::NodeReply,
) {
    let redirected = super::redirect::Redirected {
        payload,
        reply: tx,
        first: reply,
        from: node.clone(),
        proto,
    };
    if let Err(e) = sink.try_send(redirected) {
        let back = e.into_inner();
        if let Some(link) = &node.cluster {
            link.refresh.ask();
            link.refresh
                .redirect_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        drop(back.reply.send(Ok(back.first)));
    }
}

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from a node between two yields to the worker's other tasks.
const YIELD_EVERY: usize = 2 * 1024 * 1024;
