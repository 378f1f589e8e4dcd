//! One multiplexed, pipelined connection to a node, driven by its own task.
//!
//! Many clients share it: each request is sent to the driver with a oneshot for its reply; the
//! driver writes whatever has queued up in one vectored write and hands the sender to the reader
//! half, which matches replies first-in first-out (Redis answers a connection in order).
//!
//! The driver owns reconnection. While a node is unreachable, requests fail at once with
//! `ERR strata: node <id> (<addr>) unavailable: <reason>` until the next attempt (exponential
//! backoff), so a dead node costs its keys' clients an error, never a hang. A node that stops
//! answering is caught by the reader: when the oldest request has waited `timeouts.request`,
//! the connection is dropped and every request on it fails with the timeout.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::node::{NodeError, NodeInfo};
use crate::protocol::{decode_reply, NodeReply};

/// What a request gets back: the node's reply or why there is none.
pub type NodeResult = Result<NodeReply, NodeError>;

/// A request on its way to a node.
pub struct BackendRequest {
    /// One complete RESP command.
    pub payload: Bytes,
    pub reply: oneshot::Sender<NodeResult>,
}

/// Tunables of a connection, from config.yaml.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub queue_depth: usize,
    pub max_in_flight: usize,
}

/// The cloneable handle clients use to send requests through the connection.
#[derive(Clone)]
pub struct Connection {
    tx: mpsc::Sender<BackendRequest>,
    node: Arc<NodeInfo>,
}

/// A reply that has not arrived yet.
pub type PendingReply = oneshot::Receiver<NodeResult>;

impl Connection {
    /// Starts the driver task on the current runtime and returns its handle.
    pub fn spawn(node: Arc<NodeInfo>, settings: ConnectionSettings) -> Connection {
        let (tx, rx) = mpsc::channel(settings.queue_depth);
        tokio::spawn(drive(node.clone(), settings, rx));
        Connection { tx, node }
    }

    pub fn node(&self) -> &Arc<NodeInfo> {
        &self.node
    }

    /// Queues one command; waits only when the queue is full (backpressure).
    pub async fn send(&self, payload: Bytes) -> PendingReply {
        let (reply, rx) = oneshot::channel();
        let request = BackendRequest { payload, reply };
        match self.tx.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(request)) => {
                // The driver is gone only when the runtime shuts down; the dropped sender then
                // turns into a "connection lost" error for the caller.
                let _ = self.tx.send(request).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
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
        Err(_) => Err(NodeError::new(node, "connection lost")),
    }
}

/// The driver: connect, serve until the connection breaks, back off, repeat. Ends when every
/// handle is dropped.
async fn drive(
    node: Arc<NodeInfo>,
    settings: ConnectionSettings,
    mut rx: mpsc::Receiver<BackendRequest>,
) {
    let mut backoff = settings.backoff_min;
    loop {
        let failure = match connect(&node, &settings).await {
            Ok(stream) => {
                backoff = settings.backoff_min;
                node.status.connection_up();
                let outcome = serve(&node, &settings, stream, &mut rx).await;
                node.status.connection_down();
                match outcome {
                    Served::Closed => return,
                    Served::Broken(reason) => {
                        tracing::warn!(node = %node.id, addr = %node.addr, %reason, "node connection lost");
                        node.status.set_error(&reason);
                        // Reconnect at once: a single broken connection is usually a restart.
                        continue;
                    }
                }
            }
            Err(reason) => reason,
        };
        if node.status.set_error(&failure) {
            tracing::warn!(node = %node.id, addr = %node.addr, reason = %failure, "cannot reach node");
        }
        // Until the next attempt, answer this node's requests with the error at once.
        let error = NodeError::new(&node, &failure);
        let retry_at = Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(retry_at) => break,
                request = rx.recv() => match request {
                    Some(request) => {
                        let _ = request.reply.send(Err(error.clone()));
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

async fn connect(node: &NodeInfo, settings: &ConnectionSettings) -> Result<TcpStream, String> {
    match tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect(node.addr.as_str()),
    )
    .await
    {
        Err(_) => Err(format!(
            "connect timed out after {}",
            humantime::format_duration(settings.connect_timeout)
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(stream)) => {
            // Small requests must leave at once; batching is done by the writer.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

enum Served {
    /// Every handle was dropped: the driver ends.
    Closed,
    /// The connection failed; the reason is logged and shown in INFO.
    Broken(String),
}

/// Most requests written in one go; bounds the iovec array and the latency of the first reply.
const MAX_BATCH: usize = 512;

/// Writes requests as they come until the connection breaks or the handles are gone.
async fn serve(
    node: &Arc<NodeInfo>,
    settings: &ConnectionSettings,
    stream: TcpStream,
    rx: &mut mpsc::Receiver<BackendRequest>,
) -> Served {
    let (read_half, mut write_half) = stream.into_split();
    let (inflight_tx, inflight_rx) = mpsc::channel(settings.max_in_flight);
    let mut reader = tokio::spawn(read_replies(
        node.clone(),
        read_half,
        inflight_rx,
        settings.request_timeout,
    ));
    let mut batch: Vec<Bytes> = Vec::with_capacity(MAX_BATCH);
    let outcome = loop {
        let first = tokio::select! {
            biased;
            ended = &mut reader => {
                break Served::Broken(ended.unwrap_or_else(|e| format!("reader failed: {e}")));
            }
            request = rx.recv() => match request {
                Some(request) => request,
                None => break Served::Closed,
            },
        };
        // Let the other clients of this worker that are ready run first (a yielded task runs
        // after the event loop has polled for I/O once more), so their requests join this
        // batch: fewer, larger writes to the node cost less CPU on both sides.
        tokio::task::yield_now().await;
        let sent_at = Instant::now();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            batch.push(request.payload);
            // Hand the reply slot to the reader before the bytes leave, so the reply always
            // finds it.
            if inflight_tx.send((request.reply, sent_at)).await.is_err() {
                break;
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        node.status.add_requests(batch.len() as u64);
        let write = write_all(&mut write_half, &mut batch);
        match tokio::time::timeout(settings.request_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Served::Broken(format!("write failed: {e}")),
            Err(_) => {
                break Served::Broken(format!(
                    "request timed out after {}",
                    humantime::format_duration(settings.request_timeout)
                ))
            }
        }
    };
    // Dropping the reader's queue fails whatever is still in flight with "connection lost";
    // when the reader ended by itself it has already answered them with its reason.
    reader.abort();
    outcome
}

/// Writes every buffer, vectored, and empties the batch.
async fn write_all(out: &mut OwnedWriteHalf, batch: &mut Vec<Bytes>) -> std::io::Result<()> {
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
    Ok(())
}

type InFlight = (oneshot::Sender<NodeResult>, Instant);

/// Reads replies and matches them to requests in order. Returns why it stopped, after failing
/// every request still waiting with that reason.
async fn read_replies(
    node: Arc<NodeInfo>,
    mut read_half: OwnedReadHalf,
    mut inflight_rx: mpsc::Receiver<InFlight>,
    timeout: Duration,
) -> String {
    let mut waiting: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let timer = tokio::time::sleep(timeout);
    tokio::pin!(timer);
    let reason = loop {
        while let Ok(item) = inflight_rx.try_recv() {
            waiting.push_back(item);
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = match waiting.front() {
            None => tokio::select! {
                item = inflight_rx.recv() => match item {
                    Some(item) => { waiting.push_back(item); continue; }
                    None => break "connection closed".to_string(),
                },
                read = read_half.read_buf(&mut buf) => read,
            },
            Some(&(_, sent_at)) => {
                let deadline = sent_at + timeout;
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                tokio::select! {
                    _ = &mut timer => break format!("request timed out after {}", humantime::format_duration(timeout)),
                    read = read_half.read_buf(&mut buf) => read,
                }
            }
        };
        match read {
            Ok(0) => break "connection closed by node".to_string(),
            Err(e) => break format!("read failed: {e}"),
            Ok(_) => {}
        }
        let mut failure = None;
        loop {
            match decode_reply(&mut buf) {
                Ok(Some(reply)) => {
                    if waiting.is_empty() {
                        while let Ok(item) = inflight_rx.try_recv() {
                            waiting.push_back(item);
                        }
                    }
                    match waiting.pop_front() {
                        // The client may have gone away; its reply is simply dropped.
                        Some((tx, _)) => drop(tx.send(Ok(reply))),
                        None => {
                            failure = Some("reply without a request".to_string());
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            break reason;
        }
    };
    let error = NodeError::new(&node, &reason);
    inflight_rx.close();
    while let Ok(item) = inflight_rx.try_recv() {
        waiting.push_back(item);
    }
    for (tx, _) in waiting.drain(..) {
        let _ = tx.send(Err(error.clone()));
    }
    reason
}

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
