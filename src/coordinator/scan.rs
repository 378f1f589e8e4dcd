//! strata's own walks over a node's keys: SCAN with an optional MATCH pattern, batch by batch,
//! and UNLINK of the keys found. Used by STRATA INVALIDATE, the layer key count and the
//! keyspace-wide commands (`keyspace/`); and [`ask`] / [`ask_each`], one command to one node or
//! to several, waited for.

use crate::backend::Lane;
use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::settle;
use crate::backend::Router;
use crate::protocol::reply::command_bytes;
use crate::protocol::{NodeReply, Reply};

/// Sends one command to `node` on the connection of `lane` and waits for the reply.
/// A node that cannot be reached, or answers with an error, gives the error reply.
pub async fn ask(
    router: &Router,
    lane: Lane,
    node: usize,
    args: &[&[u8]],
) -> Result<NodeReply, Reply> {
    let Some(conn) = router.connection(node, lane) else {
        return Err(Reply::error_static("ERR strata: no such node"));
    };
    let rx = conn.send(command_bytes(args.iter().copied())).await;
    match settle(conn.node(), rx.await) {
        Ok(reply) if reply.is_error() => Err(Reply::Raw(reply.raw)),
        Ok(reply) => Ok(reply),
        Err(e) => Err(Reply::error(e.to_string())),
    }
}

/// Sends one command to each of `nodes` (every one sent before any reply is awaited, so the
/// nodes work at once) and waits for the replies, in the order of `nodes`.
pub async fn ask_each(
    router: &Router,
    lane: Lane,
    nodes: &[usize],
    args: &[&[u8]],
) -> Vec<Result<NodeReply, Reply>> {
    let payload = command_bytes(args.iter().copied());
    let mut sent = Vec::with_capacity(nodes.len());
    for &node in nodes {
        sent.push(match router.connection(node, lane) {
            Some(conn) => Ok((conn.send(payload.clone()).await, conn.node().clone())),
            None => Err(Reply::error_static("ERR strata: no such node")),
        });
    }
    let mut out = Vec::with_capacity(sent.len());
    for one in sent {
        out.push(match one {
            Err(e) => Err(e),
            Ok((rx, node)) => match settle(&node, rx.await) {
                Ok(reply) if reply.is_error() => Err(Reply::Raw(reply.raw)),
                Ok(reply) => Ok(reply),
                Err(e) => Err(Reply::error(e.to_string())),
            },
        });
    }
    out
}

/// A SCAN of one node in progress.
pub struct NodeScan {
    node: usize,
    cursor: Bytes,
    pattern: Option<Vec<u8>>,
    count: String,
    done: bool,
}

impl NodeScan {
    /// A scan of `node`'s keys matching `pattern` (all keys when None), `count` per call.
    pub fn new(node: usize, pattern: Option<Vec<u8>>, count: usize) -> NodeScan {
        NodeScan {
            node,
            cursor: Bytes::from_static(b"0"),
            pattern,
            count: count.max(1).to_string(),
            done: false,
        }
    }

    /// The next batch of keys (possibly empty); `Ok(None)` once the scan is complete.
    pub async fn next(&mut self, router: &Router, lane: Lane) -> Result<Option<Vec<Bytes>>, Reply> {
        if self.done {
            return Ok(None);
        }
        let mut args: Vec<&[u8]> = vec![b"SCAN", &self.cursor];
        if let Some(p) = &self.pattern {
            args.push(b"MATCH");
            args.push(p);
        }
        args.push(b"COUNT");
        args.push(self.count.as_bytes());
        let reply = ask(router, lane, self.node, &args).await?;
        let (cursor, keys) = scan_page(reply.frame).ok_or_else(unexpected)?;
        self.done = cursor.as_ref() == b"0";
        self.cursor = cursor;
        Ok(Some(keys))
    }
}

/// A node's SCAN reply: its next cursor and the keys.
pub fn scan_page(frame: BytesFrame) -> Option<(Bytes, Vec<Bytes>)> {
    let BytesFrame::Array(mut parts) = frame else {
        return None;
    };
    let (Some(BytesFrame::Array(keys)), Some(BytesFrame::BulkString(cursor)), true) =
        (parts.pop(), parts.pop(), parts.is_empty())
    else {
        return None;
    };
    let keys = keys
        .into_iter()
        .filter_map(|k| match k {
            BytesFrame::BulkString(k) => Some(k),
            _ => None,
        })
        .collect();
    Some((cursor, keys))
}

/// UNLINKs `keys` on `node`; returns how many existed.
pub async fn unlink(
    router: &Router,
    lane: Lane,
    node: usize,
    keys: &[Bytes],
) -> Result<u64, Reply> {
    if keys.is_empty() {
        return Ok(0);
    }
    let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
    args.push(b"UNLINK");
    args.extend(keys.iter().map(|k| k.as_ref()));
    match ask(router, lane, node, &args).await?.frame {
        BytesFrame::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        _ => Err(unexpected()),
    }
}

fn unexpected() -> Reply {
    Reply::error_static("ERR strata: unexpected reply from node")
}
