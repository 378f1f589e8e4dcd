//! Counting each key once: a walk of every live node with SCAN, keeping the keys the node
//! owns (`owner.rs`), all nodes at once. DBSIZE and INFO `# Keyspace` use it when a key may
//! have several copies; with `ttl`, the kept keys' PTTLs are read too (pipelined, one batch
//! per SCAN page) for `expires` and `avg_ttl`.

use crate::backend::Lane;
use std::sync::Arc;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::settle;
use crate::backend::Router;
use crate::protocol::reply::command_bytes;
use crate::protocol::Reply;

use super::super::scan::NodeScan;
use super::owner::Owners;

/// What a walk found on one node, or over several.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Keys the node owns.
    pub keys: u64,
    /// Of those, keys with a TTL (counted with `ttl` only).
    pub expires: u64,
    /// Sum of their remaining TTLs in milliseconds.
    pub ttl_ms: u128,
}

impl Count {
    pub fn add(&mut self, other: Count) {
        self.keys += other.keys;
        self.expires += other.expires;
        self.ttl_ms += other.ttl_ms;
    }

    /// Mean remaining TTL of the keys with one, in milliseconds (0 without any).
    pub fn avg_ttl_ms(&self) -> u128 {
        if self.expires == 0 {
            0
        } else {
            self.ttl_ms / u128::from(self.expires)
        }
    }
}

/// Walks every live node at once; one result per node (its error reply when it failed).
pub async fn count_owned(
    router: &Arc<Router>,
    lane: Lane,
    owners: Arc<Owners>,
    ttl: bool,
) -> Vec<Result<Count, Reply>> {
    let mut walks = tokio::task::JoinSet::new();
    for node in owners.live_members() {
        let (router, owners) = (router.clone(), owners.clone());
        walks.spawn(async move { walk(&router, lane, &owners, node, ttl).await });
    }
    let mut out = Vec::new();
    while let Some(done) = walks.join_next().await {
        out.push(done.unwrap_or_else(|_| Err(Reply::error_static("ERR strata: count aborted"))));
    }
    out
}

/// One node's walk.
async fn walk(
    router: &Router,
    lane: Lane,
    owners: &Owners,
    node: usize,
    ttl: bool,
) -> Result<Count, Reply> {
    let batch = router.view().settings.config.limits.scan_count;
    let mut scan = NodeScan::new(node, None, batch);
    let mut count = Count::default();
    while let Some(keys) = scan.next(router, lane).await? {
        if !ttl {
            count.keys += keys.iter().filter(|k| owners.reports(node, k)).count() as u64;
            continue;
        }
        let owned: Vec<Bytes> = keys
            .into_iter()
            .filter(|k| owners.reports(node, k))
            .collect();
        count.keys += owned.len() as u64;
        if !owned.is_empty() {
            let (expires, ttl_ms) = ttls(router, lane, node, &owned).await?;
            count.expires += expires;
            count.ttl_ms += ttl_ms;
        }
    }
    Ok(count)
}

/// PTTL of each key, pipelined: how many have a TTL, and the sum of those TTLs.
async fn ttls(
    router: &Router,
    lane: Lane,
    node: usize,
    keys: &[Bytes],
) -> Result<(u64, u128), Reply> {
    let Some(conn) = router.connection(node, lane) else {
        return Err(Reply::error_static("ERR strata: no such node"));
    };
    let mut sent = Vec::with_capacity(keys.len());
    for key in keys {
        let command = command_bytes([&b"PTTL"[..], key].into_iter());
        sent.push(conn.send(command).await);
    }
    let (mut expires, mut sum) = (0u64, 0u128);
    for rx in sent {
        match settle(conn.node(), rx.await) {
            Ok(reply) => {
                // -1: no TTL, -2: gone since the SCAN.
                if let BytesFrame::Integer(ms) = reply.frame {
                    if let Ok(ms) = u64::try_from(ms) {
                        expires += 1;
                        sum += u128::from(ms);
                    }
                }
            }
            Err(e) => return Err(Reply::error(e.to_string())),
        }
    }
    Ok((expires, sum))
}
