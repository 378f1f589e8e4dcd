//! Dedicated node connections: one client at a time, for commands that block (BLPOP, XREAD ...
//! BLOCK, WAIT, ...). A blocked command on a shared multiplexed connection would hold up every
//! other client's replies behind it, so these get a connection of their own, taken from a
//! per-worker idle list or opened, at most `limits.max_dedicated_per_node` open per node (all
//! workers together). A [`Lease`] goes back to the idle list when its command completed, and is
//! closed when it did not (the client went away while blocked: closing the connection is what
//! makes the node give up the blocked command). A lease talks through a [`RespClient`]
//! without a request timeout; pub/sub subscriber connections open here too, but read their
//! node's pushes themselves (`client::pubsub`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::stream::NodeStream;

use super::error::{ErrorKind, Failure};
use super::resp_client::RespClient;
use crate::cluster::NodeInfo;
use crate::protocol::{NodeReply, Proto};

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
) -> Result<(NodeStream, Counted), Failure> {
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
    let stream = super::connect::open_node(node, proto, connect_timeout)
        .await
        .map_err(|e| {
            if e.kind.is_refusal() {
                // As on the shared connections: refused credentials mark the node down.
                node.refused(&e.detail);
            }
            Failure::new(e.kind, format!("node {} ({}): {e}", node.id, node.addr))
        })?;
    Ok((stream, counted))
}

/// Idle connections, by node slot and protocol.
type IdleLists = HashMap<(usize, Proto), Vec<(RespClient, Counted)>>;

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
    /// No request timeout: a blocking command's own timeout decides how long it waits.
    conn: Option<(RespClient, Counted)>,
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
        let conn = match idle {
            Some(open) => open,
            None => {
                let (stream, counted) = open(node, proto, max, connect_timeout).await?;
                (RespClient::from_stream(stream, proto), counted)
            }
        };
        Ok(Lease {
            pool: self.clone(),
            node: node.clone(),
            proto,
            conn: Some(conn),
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
        let Some((client, _)) = self.conn.as_mut() else {
            return Err(Failure::new(ErrorKind::Closed, "connection closed"));
        };
        let replies = client
            .pipeline(payload, count)
            .await
            .map_err(Failure::from)?;
        self.clean = client.buffered().is_empty();
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
        let Some(mut open) = self.conn.take() else {
            return;
        };
        if self.clean && !self.node.is_retired() {
            open.0.shrink_buffer();
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
