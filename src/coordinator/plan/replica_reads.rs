//! Reads of layers with `read_from: replica` (Redis Cluster and Sentinel backends): the node
//! a read goes to is one of its shard's replicas that is up instead of the primary. A client
//! keeps reading the same replica while that replica stays up (rendezvous hashing of client id
//! and replica), so its reads do not go back in time between replicas; they may lag the
//! primary, and a read the primary serves (no replica up, a fallback) can be newer than the
//! next one from the replica.
//!
//! Tracked reads (`CLIENT TRACKING`) stay on the primary: its invalidation stream may report a
//! write before a replica has it, and a client would then cache the older value after the
//! notice. A read the replica fails (its connection lost, no reply in time: it died and is not
//! marked down yet), or answers `-LOADING` / `-MASTERDOWN`, is asked of the primary.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{settle, Lane, Router};
use crate::cluster::{Place, View};
use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec, KeySpec};
use crate::config::ReadFrom;
use crate::coordinator::pending::{Pending, TaskOutput};
use crate::coordinator::track::Track;
use crate::protocol::{Reply, Request};

/// Whether `request` may be read from a replica: some layer reads from replicas, it is a
/// read, and not a tracked one. The layer of each key decides then ([`replica_of`]).
#[inline]
pub fn may_use_replicas(view: &View, spec: &CommandSpec, track: &Track) -> bool {
    view.layers.any_replica_reads()
        && spec.has(flags::READONLY)
        && track.tracked.is_none()
        // TOUCH is a read for Redis, but it is meant to refresh the keys on the primary.
        && spec.name != "touch"
}

/// The node a read of `key` goes to instead of its primary: a replica that is up of the shard
/// serving `place`, when `key`'s layer reads from replicas; `None` for the primary.
pub fn replica_of(view: &View, key: &[u8], place: Place, client: u64) -> Option<usize> {
    let layer = view.layers.of(key)?;
    if layer.spec.read_from != ReadFrom::Replica {
        return None;
    }
    let Place::Slot {
        backend,
        slot,
        node: Some(_),
    } = place
    else {
        return None;
    };
    let topology = &view.topology;
    let shard = topology.clusters.get(backend)?.shard(slot)?;
    let up = |&&r: &&usize| topology.node(r).is_some_and(|n| !n.health.is_down());
    // Rendezvous: the up replica scoring highest for this client. Another replica going down
    // or coming back does not move the client; only its own replica's doing so does.
    shard
        .replicas
        .iter()
        .filter(up)
        .max_by_key(|&&r| xxhash_rust::xxh3::xxh3_64_with_seed(&r.to_le_bytes(), client))
        .copied()
}

/// [`replica_of`] for a request whose keys are all in one place (its first key decides).
pub fn replica_for_request(
    view: &View,
    spec: &CommandSpec,
    request: &Request,
    client: u64,
) -> Option<usize> {
    let key = if spec.keys == KeySpec::FIRST_ONLY {
        request.args.get(1)?
    } else {
        let mut positions = Vec::new();
        key_positions(spec, &request.args, &mut positions).ok()?;
        request.args.get(*positions.first()?)?
    };
    replica_of(view, key, view.place(key), client)
}

/// Sends a read to `replica`; when the replica fails it, to `primary`.
pub async fn read(
    router: &Arc<Router>,
    lane: Lane,
    replica: usize,
    primary: usize,
    payload: Bytes,
) -> Pending {
    let Pending::Forward { rx, node } =
        super::forward(router, lane, replica, payload.clone()).await
    else {
        // Not sent (marked down since it was picked): the primary serves it.
        return super::forward(router, lane, primary, payload).await;
    };
    let router = router.clone();
    Pending::task(async move {
        match settle(&node, rx.await) {
            // A replica still loading its data set, or cut off from its primary
            // (`replica-serve-stale-data no`): the primary answers.
            Ok(reply)
                if reply.raw.starts_with(b"-LOADING") || reply.raw.starts_with(b"-MASTERDOWN") =>
            {
                let mut again = super::forward(&router, lane, primary, payload).await;
                done(std::future::poll_fn(|cx| again.poll_reply(cx)).await)
            }
            Ok(reply) => done(Reply::Raw(reply.raw)),
            Err(e) if e.retryable() => {
                tracing::debug!(replica = %node.id, error = %e, "replica read failed; asking the primary");
                let mut again = super::forward(&router, lane, primary, payload).await;
                let reply = std::future::poll_fn(|cx| again.poll_reply(cx)).await;
                done(reply)
            }
            Err(e) => done(Reply::error(e.to_string())),
        }
    })
}

fn done(reply: Reply) -> TaskOutput {
    TaskOutput {
        reply,
        applied: Vec::new(),
    }
}
