//! Reads of layers with `read_from: replica` (Redis Cluster and Sentinel backends): the node
//! a read goes to is one of its shard's replicas that is up instead of the primary. A client
//! keeps reading the same replica while it stays up (picked by client id), so its own reads
//! never go back in time even though they may lag the primary. Tracked reads (`CLIENT
//! TRACKING`) stay on the primary: its invalidation stream may report a write before a
//! replica has it, and a client would then cache the older value after the notice. A read
//! the replica fails (its connection lost, no reply in time: it died and is not marked down
//! yet) is asked of the primary.

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
    view.layers.any_replica_reads() && spec.has(flags::READONLY) && track.tracked.is_none()
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
    let count = shard.replicas.iter().filter(up).count();
    let pick = usize::try_from(client % u64::try_from(count).ok()?.max(1)).ok()?;
    shard.replicas.iter().filter(up).nth(pick).copied()
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
