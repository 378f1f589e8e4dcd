//! Copying one key between nodes, for every data type: `DUMP` and `PTTL` on the source (one
//! pipeline, so they describe the same moment), then `RESTORE key ttl payload REPLACE` on each
//! target, or `DEL` when the source has no such key.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::{settle, NodeError, Router};
use crate::protocol::reply::command_bytes;

/// The client id strata's own copies use (picks their backend connection).
pub const COPY_CLIENT: u64 = u64::MAX - 1;

/// Why a key could not be copied (logged; the key stays hinted or unrepaired).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("no such node")]
    NoNode,
    /// The source or a target could not be reached.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A node answered with an error reply (e.g. RESTORE refused the payload).
    #[error("node {node}: {text}")]
    Refused { node: String, text: String },
    #[error("node {0}: unexpected DUMP/PTTL reply")]
    Unexpected(String),
}

/// What the source holds.
enum Source {
    Absent,
    Value { payload: Bytes, ttl_ms: i64 },
}

/// Copies `key` from node `source` to every node of `targets`.
pub async fn copy_key(
    router: &Router,
    key: &Bytes,
    source: usize,
    targets: &[usize],
) -> Result<(), CopyError> {
    let value = read_source(router, key, source).await?;
    let ttl;
    let command = match &value {
        Source::Absent => command_bytes([&b"DEL"[..], key].into_iter()),
        Source::Value { payload, ttl_ms } => {
            ttl = restore_ttl(*ttl_ms).to_string();
            command_bytes([&b"RESTORE"[..], key, ttl.as_bytes(), payload, b"REPLACE"].into_iter())
        }
    };
    let mut pending = Vec::with_capacity(targets.len());
    for &target in targets {
        let conn = router
            .connection(target, crate::backend::Lane::internal(COPY_CLIENT))
            .ok_or(CopyError::NoNode)?;
        pending.push((conn.node().clone(), conn.send(command.clone()).await));
    }
    for (node, rx) in pending {
        let reply = settle(&node, rx.await)?;
        if let BytesFrame::Error(e) = reply.frame {
            return Err(CopyError::Refused {
                node: node.id.clone(),
                text: e.to_string(),
            });
        }
    }
    Ok(())
}

/// RESTORE's TTL for a source PTTL: -1 (no expiry) is RESTORE's 0; a PTTL of 0 (expiring
/// within the millisecond) must stay an expiry, not become 0 = never.
fn restore_ttl(pttl_ms: i64) -> i64 {
    match pttl_ms {
        -1 => 0,
        0 => 1,
        ms => ms,
    }
}

async fn read_source(router: &Router, key: &Bytes, source: usize) -> Result<Source, CopyError> {
    let conn = router
        .connection(source, crate::backend::Lane::internal(COPY_CLIENT))
        .ok_or(CopyError::NoNode)?;
    let dump = conn
        .send(command_bytes([&b"DUMP"[..], key].into_iter()))
        .await;
    let pttl = conn
        .send(command_bytes([&b"PTTL"[..], key].into_iter()))
        .await;
    let node = conn.node().clone();
    let dump = settle(&node, dump.await)?;
    let pttl = settle(&node, pttl.await)?;
    match (dump.frame, pttl.frame) {
        (BytesFrame::Null, _) | (_, BytesFrame::Integer(-2)) => Ok(Source::Absent),
        (BytesFrame::BulkString(payload), BytesFrame::Integer(ttl_ms)) => {
            Ok(Source::Value { payload, ttl_ms })
        }
        (BytesFrame::Error(e), _) | (_, BytesFrame::Error(e)) => Err(CopyError::Refused {
            node: node.id.clone(),
            text: e.to_string(),
        }),
        _ => Err(CopyError::Unexpected(node.id.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::restore_ttl;

    #[test]
    fn restore_ttl_keeps_expiries() {
        assert_eq!(restore_ttl(-1), 0, "no expiry");
        assert_eq!(restore_ttl(0), 1, "about to expire: still expires");
        assert_eq!(restore_ttl(299_000), 299_000);
    }
}
