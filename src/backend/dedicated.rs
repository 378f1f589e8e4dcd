//! Dedicated node connections: one client at a time, for commands that block (BLPOP, XREAD ...
//! BLOCK, WAIT, ...). A blocked command on a shared multiplexed connection would hold up every
//! other client's replies behind it, so these get a connection of their own, taken from a
//! per-worker idle list or opened, at most `limits.max_dedicated_per_node` open per node (all
//! workers together). A [`Lease`] goes back to the idle list when its command completed, and is
//! closed when it did not (the client went away while blocked: closing the connection is what
//! makes the node give up the blocked command).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{ErrorKind, Failure};
use crate::cluster::NodeInfo;
use crate::protocol::{decode_reply_as, NodeReply, Proto};

/// Idle connections kept per node and worker; more are closed.
const MAX_IDLE: usize = 16;

/// One of a node's dedicated connections, as counted against
/// `limits.max_dedicated_per_node`; the count goes down when this is dropped.
pub struct Counted(Arc<NodeInfo>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dedicated.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Opens a dedicated connection to `node`, speaking `proto`, when fewer than `max` are open
/// (all workers together). Used by leases and by pub/sub subscriber connections alike.
pub async fn open(
    node: &Arc<NodeInfo>,
    proto: Proto,
    max: usize,
    connect_timeout: Duration,
) -> Result<(TcpStream, Counted), Failure> {
    if node.dedicated.fetch_add(1, Ordering::SeqCst) >= max {
        node.dedicated.fetch_sub(1, Ordering::SeqCst);
        return Err(Failure::new(
            ErrorKind::Busy,
            format!(
                "node {} has {max} dedicated connections in use (limits.max_dedicated_per_node)",
                node.id
            ),
        ));
    }
    // Counted from here: any failure below gives the unit back.
    let counted = Counted(node.clone());
    let stream = super::connect::open(&node.addr, proto, connect_timeout)
        .await
        .map_err(|e| Failure::new(e.kind, format!("node {} ({}): {e}", node.id, node.addr)))?;
    Ok((stream, counted))
}

/// Writes `payload` (one or more commands) on a connection of one's own speaking `proto` and
/// reads `count` replies, in order; bytes past them stay in `buf`.
pub async fn exchange(
    stream: &mut TcpStream,
    proto: Proto,
    buf: &mut BytesMut,
    payload: &[u8],
    count: usize,
) -> Result<Vec<NodeReply>, Failure> {
    stream
        .write_all(payload)
        .await
        .map_err(|e| Failure::io("write", &e))?;
    let mut replies = Vec::with_capacity(count);
    while replies.len() < count {
        if let Some(reply) = decode_reply_as(buf, proto)? {
            replies.push(reply);
            continue;
        }
        buf.reserve(16 * 1024);
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| Failure::io("read", &e))?;
        if n == 0 {
            return Err(Failure::closed_by_node());
        }
    }
    Ok(replies)
}

/// Idle connections, by node slot and protocol.
type IdleLists = HashMap<(usize, Proto), Vec<(TcpStream, Counted)>>;

/// One worker's idle dedicated connections, by node slot and protocol.
#[derive(Default)]
pub struct DedicatedPool {
    idle: Mutex<IdleLists>,
}

/// A dedicated connection in use.
pub struct Lease {
    pool: Arc<DedicatedPool>,
    node: Arc<NodeInfo>,
    proto: Proto,
    stream: Option<(TcpStream, Counted)>,
    buf: BytesMut,
    /// Set when the last command's reply was read whole: the connection can serve another.
    clean: bool,
}

impl DedicatedPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleLists> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to `node` speaking `proto`: an idle one, or a new one when fewer than `max`
    /// are open.
    pub async fn lease(
        self: &Arc<Self>,
        node: &Arc<NodeInfo>,
        proto: Proto,
        max: usize,
        connect_timeout: Duration,
    ) -> Result<Lease, Failure> {
        let idle = self.lock().get_mut(&(node.index, proto)).and_then(Vec::pop);
        let stream = match idle {
            Some(open) => open,
            None => open(node, proto, max, connect_timeout).await?,
        };
        Ok(Lease {
            pool: self.clone(),
            node: node.clone(),
            proto,
            stream: Some(stream),
            buf: BytesMut::with_capacity(4096),
            clean: false,
        })
    }
}

impl Lease {
    /// Sends one command and waits for its whole reply, however long the node takes (a
    /// blocking command's own timeout decides).
    pub async fn call(&mut self, payload: &[u8]) -> Result<NodeReply, Failure> {
        self.call_many(payload, 1)
            .await?
            .pop()
            .ok_or_else(|| Failure::new(ErrorKind::Protocol, "no reply"))
    }

    /// Sends `payload` (several commands) and reads `count` replies, in order.
    pub async fn call_many(
        &mut self,
        payload: &[u8],
        count: usize,
    ) -> Result<Vec<NodeReply>, Failure> {
        self.clean = false;
        let Some((stream, _)) = self.stream.as_mut() else {
            return Err(Failure::new(ErrorKind::Closed, "connection closed"));
        };
        let replies = exchange(stream, self.proto, &mut self.buf, payload, count).await?;
        self.clean = self.buf.is_empty();
        Ok(replies)
    }

    /// Keeps the connection from going back to the idle list (it holds state, e.g. WATCH);
    /// cleared by the next command that completes.
    pub fn hold_state(&mut self) {
        self.clean = false;
    }

    pub fn node(&self) -> &Arc<NodeInfo> {
        &self.node
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(open) = self.stream.take() else {
            return;
        };
        if self.clean && !self.node.is_retired() {
            let mut idle = self.pool.lock();
            let list = idle.entry((self.node.index, self.proto)).or_default();
            if list.len() < MAX_IDLE {
                list.push(open);
                return;
            }
        }
        // Closed (and no longer counted): a node blocked on it gives up the command.
        drop(open);
    }
}
