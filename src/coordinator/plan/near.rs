//! The near cache on the request path (docs/near-cache.md).
//!
//! - A `GET` of a near-cached layer is answered from memory when its entry is there and may be
//!   served; otherwise it is a fill: a [`FillToken`](crate::near::FillToken) is taken, then
//!   the `GET` and a `PTTL` of the key go to the first replica that is up, pipelined on the
//!   client's connection, and a value found is kept for the key's remaining TTL (at most
//!   `max_ttl`) unless an invalidation overtook it. A miss or a failure that another replica
//!   may not have goes on as the `one` read flight would (`Flight::continue_one`).
//! - A write naming a key of a near-cached layer invalidates the key before it is sent and
//!   again when its reply is in, before the client has it: a fill that read the value before
//!   the write cannot outlive the write's acknowledgement, so every client of this strata reads
//!   its own writes. A keyed write without key positions strata can read (none) or a
//!   keyspace-wide one (FLUSHALL, FLUSHDB, SWAPDB: Redis sends no invalidation for SWAPDB)
//!   empties the near cache instead.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::{settle, Lane};
use crate::cluster::View;
use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec, KeySpec, Route};
use crate::coordinator::pending::{Pending, TaskOutput};
use crate::coordinator::read_flight::{Flight, NodeOutcome, ReadOp, ReadRequest};
use crate::coordinator::read_one::output;
use crate::coordinator::track::Track;
use crate::coordinator::vote::is_miss;
use crate::coordinator::Coordinator;
use crate::near::{Coherence, Store};
use crate::protocol::reply::command_bytes;
use crate::protocol::{Reply, Request};

/// A `GET` of a near-cached layer: served from memory, or sent as a fill. `None` when the
/// near cache has no part in it (not ready, a rebalance under way, no replica up): the usual
/// path takes it.
pub(super) async fn get(
    coord: &Arc<Coordinator>,
    view: &View,
    lane: Lane,
    request: &Request,
    track: &Track,
) -> Option<Pending> {
    let layer_id = track.layer?;
    let layer = view.layers.get(layer_id)?;
    let store = layer.near.as_ref()?;
    let key = request.args.get(1)?;
    let counts = layer.stats.worker(coord.router.worker);
    if let Some(reply) = store.reply(key, Instant::now()) {
        if let Some(w) = counts {
            w.near_hits.add(1);
        }
        return Some(Pending::ready(Reply::Raw(reply)));
    }
    // While keys move, reads may need their previous owners: the usual path knows them.
    if !store.coherence().ready() || coord.rebalance.is_running() {
        return None;
    }
    if let Some(w) = counts {
        w.near_misses.add(1);
    }
    let topology = &view.topology;
    let up = |&n: &usize| topology.node(n).is_some_and(|n| !n.health.is_down());
    let nodes = view.replicas_of(&layer.spec, key);
    let position = nodes.iter().position(up)?;
    let others = nodes.iter().skip(position + 1).filter(|n| up(n)).count();
    let conn = coord.router.connection(*nodes.get(position)?, lane)?;
    let node = conn.node().clone();
    let token = store.coherence().begin(key);
    let sent = Instant::now();
    let payload = super::payload(request);
    let get_rx = conn.send(payload.clone()).await;
    let pttl_rx = conn
        .send(command_bytes([&b"PTTL"[..], key.as_ref()].into_iter()))
        .await;
    let store = store.clone();
    let key = key.clone();
    let coord = coord.clone();
    let op = ReadOp {
        level: layer.spec.read_consistency,
        miss_failover: layer.spec.miss_failover,
        outcome: track.outcome,
    };
    let started = track.started;
    Some(Pending::task(async move {
        let got = settle(&node, get_rx.await);
        let pttl = settle(&node, pttl_rx.await);
        // The read goes on to the next replicas as the `one` read flight would.
        let keys = std::iter::once(key.clone()).collect();
        let go_on = |first: NodeOutcome| async move {
            let read = ReadRequest {
                nodes,
                payload,
                keys,
                started,
            };
            output(Flight::continue_one(&coord, lane, layer_id, op, read, position, first).await)
        };
        let reply = match got {
            Ok(reply) => reply,
            Err(e) if e.retryable() && others > 0 => return go_on(NodeOutcome::Failed(e)).await,
            Err(e) => return done(Reply::error(e.to_string())),
        };
        if let BytesFrame::BulkString(value) = &reply.frame {
            let pttl_ms = match pttl.map(|r| r.frame) {
                Ok(BytesFrame::Integer(ms)) => Some(ms),
                _ => None,
            };
            if let Some(life) = pttl_ms.and_then(|ms| store.life(ms, value.len())) {
                store.fill(&token, &key, value, sent, life);
            }
            return done(Reply::Raw(reply.raw));
        }
        // A miss of the first replica is believed as `read_one` believes it.
        let believed = others == 0 || !(op.miss_failover || node.refill.is_refilling());
        if believed || !is_miss(op.outcome, &reply.raw) {
            return done(Reply::Raw(reply.raw));
        }
        go_on(NodeOutcome::Answered(reply)).await
    }))
}

fn done(reply: Reply) -> TaskOutput {
    TaskOutput {
        reply,
        applied: Vec::new(),
    }
}

/// What a write does to the near cache: applied before the write is sent
/// ([`before_write`]) and again when its reply is in, before the client gets it
/// ([`WriteEffect::apply`], called by the session with the reply: the request's `Track`
/// carries it there, so a write costs no task of its own).
#[derive(Debug, Clone)]
pub enum WriteEffect {
    /// It touches no near-cached key.
    None,
    /// One key of the layer whose store is given (the commonest write).
    Key(Arc<Store>, Bytes),
    /// These keys are invalidated.
    Keys(Box<[Bytes]>),
    /// Everything is flushed.
    Flush,
}

impl WriteEffect {
    pub fn is_none(&self) -> bool {
        matches!(self, WriteEffect::None)
    }

    pub fn apply(&self, coherence: &Coherence) {
        match self {
            WriteEffect::None => {}
            WriteEffect::Key(store, key) => coherence.invalidate_in(store, key),
            WriteEffect::Keys(keys) => {
                for key in keys.iter() {
                    coherence.invalidate(key);
                }
            }
            WriteEffect::Flush => coherence.flush("a keyspace-wide write through strata"),
        }
    }
}

/// Whether `spec` may change data: Redis's `write` flag, or `may_replicate` (scripts and
/// functions) outside pub/sub.
fn may_write(spec: &CommandSpec) -> bool {
    spec.has(flags::WRITE) || (spec.has(flags::MAY_REPLICATE) && !spec.has(flags::PUBSUB))
}

/// What the write `request` does to the near cache (called only when some layer has one),
/// with the pre-send invalidation done.
pub fn before_write(view: &View, spec: &CommandSpec, request: &Request) -> WriteEffect {
    if !may_write(spec) {
        return WriteEffect::None;
    }
    let effect = effect_of(view, spec, request);
    effect.apply(view.layers.coherence());
    effect
}

fn effect_of(view: &View, spec: &CommandSpec, request: &Request) -> WriteEffect {
    if matches!(spec.route, Route::FanOut(_)) {
        return WriteEffect::Flush;
    }
    let store_of = |key: &Bytes| {
        view.layers
            .get(view.layers.resolve(key))
            .and_then(|l| l.near.as_ref())
    };
    // The commonest write names one key, first: no positions to collect.
    let one = KeySpec::Range {
        first: 1,
        last: 1,
        step: 1,
    };
    if spec.keys == one {
        return match request.args.get(1).and_then(|k| Some((store_of(k)?, k))) {
            Some((store, key)) => WriteEffect::Key(store.clone(), key.clone()),
            None => WriteEffect::None,
        };
    }
    let mut positions = Vec::new();
    if key_positions(spec, &request.args, &mut positions).is_err() {
        // The command will be refused with the same error; nothing is written.
        return WriteEffect::None;
    }
    let keys: Vec<Bytes> = positions
        .iter()
        .filter_map(|&p| request.args.get(p))
        .filter(|k| store_of(k).is_some())
        .cloned()
        .collect();
    match keys.len() {
        0 => WriteEffect::None,
        _ => WriteEffect::Keys(keys.into_boxed_slice()),
    }
}

/// `pending` with `effect` applied again once its reply is in: for a write planned outside a
/// client's session (STRATA WARM), whose `Track` no session reads.
pub fn then_apply(mut pending: Pending, effect: WriteEffect, coherence: Arc<Coherence>) -> Pending {
    Pending::task(async move {
        let reply = std::future::poll_fn(|cx| pending.poll_reply(cx)).await;
        effect.apply(&coherence);
        TaskOutput {
            reply,
            applied: pending.applied().to_vec(),
        }
    })
}
