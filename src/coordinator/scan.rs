//! strata's own walks over a node's keys: SCAN with an optional MATCH pattern, batch by batch,
//! and UNLINK of the keys found. Used by STRATA INVALIDATE and the layer key count.

use crate::backend::Lane;
use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::settle;
use crate::protocol::reply::command_bytes;
use crate::protocol::{NodeReply, Reply};
use crate::server::Worker;

/// Sends one command to `node` on the connection of `lane` and waits for the reply.
/// A node that cannot be reached, or answers with an error, gives the error reply.
pub async fn ask(
    worker: &Worker,
    lane: Lane,
    node: usize,
    args: &[&[u8]],
) -> Result<NodeReply, Reply> {
    let Some(conn) = worker.connection(node, lane) else {
        return Err(Reply::error_static("ERR strata: no such node"));
    };
    let rx = conn.send(command_bytes(args.iter().copied())).await;
    match settle(conn.node(), rx.await) {
        Ok(reply) if reply.is_error() => Err(Reply::Raw(reply.raw)),
        Ok(reply) => Ok(reply),
        Err(e) => Err(Reply::error(e.to_string())),
    }
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
    pub async fn next(&mut self, worker: &Worker, lane: Lane) -> Result<Option<Vec<Bytes>>, Reply> {
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
        let reply = ask(worker, lane, self.node, &args).await?;
        let BytesFrame::Array(mut parts) = reply.frame else {
            return Err(unexpected());
        };
        let (Some(BytesFrame::Array(keys)), Some(BytesFrame::BulkString(cursor))) =
            (parts.pop(), parts.pop())
        else {
            return Err(unexpected());
        };
        self.done = cursor.as_ref() == b"0";
        self.cursor = cursor;
        Ok(Some(
            keys.into_iter()
                .filter_map(|k| match k {
                    BytesFrame::BulkString(k) => Some(k),
                    _ => None,
                })
                .collect(),
        ))
    }
}

/// UNLINKs `keys` on `node`; returns how many existed.
pub async fn unlink(
    worker: &Worker,
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
    match ask(worker, lane, node, &args).await?.frame {
        BytesFrame::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        _ => Err(unexpected()),
    }
}

fn unexpected() -> Reply {
    Reply::error_static("ERR strata: unexpected reply from node")
}
