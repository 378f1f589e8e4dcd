//! The near cache on the request path (docs/near-cache.md).
//!
//! - A `GET` of a near-cached layer is answered from memory when its entry is there and may be
//!   served; otherwise it is a fill: a [`FillToken`](crate::near::FillToken) is taken, then
//!   the `GET` and a `PTTL` of the key go to the first replica that is up, pipelined on the
//!   client's connection, and a value found is kept for the key's remaining TTL (at most
//!   `max_ttl`) unless an invalidation overtook it. A miss or a failure that another replica
//!   may not have goes on as the `one` read flight would (`Flight::continue_one`).
//! - An `MGET` is served key by key: keys found in memory from there, the others in one
//!   `MGET` by the usual path, the near-cached ones among them filled as a `GET` would be.
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

/// A `GET` of a near-cached layer answered from memory; `None` when its entry is not there.
pub(super) fn hit(
    coord: &Coordinator,
    view: &View,
    request: &Request,
    track: &Track,
) -> Option<Reply> {
    let layer = view.layers.get(track.layer?)?;
    let value = layer
        .near
        .as_ref()?
        .get(request.args.get(1)?, Instant::now())?;
    if let Some(w) = layer.stats.worker(coord.router.worker) {
        w.near_hits.add(1);
    }
    Some(Reply::Bulk(value))
}

/// A `GET` of a near-cached layer that [`hit`] did not answer, sent as a fill. `None` when
/// the near cache has no part in it (not ready, a rebalance under way, no replica up): the
/// usual path takes it.
pub(super) async fn fill(
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
    /// One key, of the layer whose store is given when it has a near cache (the commonest
    /// write).
    Key(Option<Arc<Store>>, Bytes),
    /// These keys are invalidated.
    Keys(Box<[Bytes]>),
    /// Everything is flushed.
    Flush,
}

impl WriteEffect {
    pub fn is_none(&self) -> bool {
        matches!(self, WriteEffect::None)
    }

    /// Before the write is sent: the near cache forgets its keys, and reads that would
    /// coalesce or fill stop trusting what they began with.
    pub fn apply(&self, coherence: &Coherence) {
        match self {
            WriteEffect::None => {}
            WriteEffect::Key(Some(store), key) => coherence.invalidate_in(store, key),
            WriteEffect::Key(None, key) => coherence.note_write(key),
            WriteEffect::Keys(keys) => {
                for key in keys.iter() {
                    coherence.invalidate_in_stores(key);
                }
            }
            WriteEffect::Flush => coherence.flush_near("a keyspace-wide write through strata"),
        }
    }

    /// Once the write's reply is in, before its client (`writer`) has it: [`apply`] again,
    /// and the tracking clients told (all but the writer when it asked for NOLOOP).
    ///
    /// [`apply`]: WriteEffect::apply
    pub fn apply_after(&self, coherence: &Coherence, writer: u64) {
        self.apply(coherence);
        let clients = &coherence.clients;
        match self {
            WriteEffect::None => {}
            WriteEffect::Key(_, key) => clients.after_write([&key[..]], writer),
            WriteEffect::Keys(keys) => clients.after_write(keys.iter().map(|k| &k[..]), writer),
            WriteEffect::Flush => clients.flush(),
        }
    }
}

/// Whether `spec` may change data: Redis's `write` flag, or `may_replicate` (scripts and
/// functions) outside pub/sub.
fn may_write(spec: &CommandSpec) -> bool {
    spec.has(flags::WRITE) || (spec.has(flags::MAY_REPLICATE) && !spec.has(flags::PUBSUB))
}

/// What the write `request` of client `writer` does to the near cache, to coalesced reads and
/// to tracking clients (called only when one of them needs it: `Layers::watch_writes`), with
/// the pre-send invalidation done.
pub fn before_write(
    view: &View,
    spec: &CommandSpec,
    request: &Request,
    writer: u64,
) -> WriteEffect {
    if !may_write(spec) {
        return WriteEffect::None;
    }
    let effect = effect_of(view, spec, request);
    let coherence = view.layers.coherence();
    effect.apply(coherence);
    match &effect {
        WriteEffect::Key(_, key) => coherence.clients.before_write([&key[..]], writer),
        WriteEffect::Keys(keys) => coherence
            .clients
            .before_write(keys.iter().map(|k| &k[..]), writer),
        WriteEffect::None | WriteEffect::Flush => {}
    }
    effect
}

fn effect_of(view: &View, spec: &CommandSpec, request: &Request) -> WriteEffect {
    if matches!(spec.route, Route::FanOut(_)) {
        return WriteEffect::Flush;
    }
    // The key's layer, when its reads depend on writes being noticed (every layer's while
    // clients track).
    let tracking = view.layers.coherence().clients.active();
    let watched = |key: &Bytes| {
        view.layers
            .get(view.layers.resolve(key))
            .filter(|l| tracking || l.near.is_some() || l.spec.coalesce)
    };
    // The commonest write names one key, first: no positions to collect.
    if spec.keys == KeySpec::FIRST_ONLY {
        return match request.args.get(1).and_then(|k| Some((watched(k)?, k))) {
            Some((layer, key)) => WriteEffect::Key(layer.near.clone(), key.clone()),
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
        .filter(|k| watched(k).is_some())
        .cloned()
        .collect();
    match keys.len() {
        0 => WriteEffect::None,
        _ => WriteEffect::Keys(keys.into_boxed_slice()),
    }
}

/// `pending` with `effect` applied again once its reply is in: for a write planned outside a
/// client's session (STRATA WARM), whose `Track` no session reads.
pub fn then_apply(
    mut pending: Pending,
    effect: WriteEffect,
    coherence: Arc<Coherence>,
    writer: u64,
) -> Pending {
    Pending::task(async move {
        let reply = std::future::poll_fn(|cx| pending.poll_reply(cx)).await;
        effect.apply_after(&coherence, writer);
        TaskOutput {
            reply,
            applied: pending.applied().to_vec(),
        }
    })
}

/// What the near cache makes of an MGET.
pub(super) enum Mget {
    /// No key of it is near-cached (or the near cache cannot serve now): the usual path.
    Usual,
    /// Every key was answered from memory.
    Served(Reply),
    /// Some keys were answered from memory or are fills: the rest goes the usual path as this
    /// request, and [`MgetParts::finish`] puts the reply together.
    Rest(Request, MgetParts),
}

/// An MGET answered partly from memory, partly by the nodes (see [`Mget::Rest`]).
pub(super) struct MgetParts {
    /// Keys in the client's request.
    total: usize,
    /// Positions in the reply answered from memory, with their values.
    hits: Vec<(usize, Bytes)>,
    /// The reply position of each key of the rest request, in its order.
    sent: Vec<usize>,
    /// The near-cached keys sent on: filled from the rest's reply.
    fills: Vec<MgetFill>,
    /// The protocol of the rest's reply.
    proto: crate::protocol::Proto,
}

/// One key of an MGET's rest that is a fill: its token is taken before the rest is sent, its
/// `PTTL` sent behind it ([`MgetParts::send_pttls`]).
struct MgetFill {
    /// Its index in the rest request.
    index: usize,
    store: Arc<Store>,
    key: Bytes,
    token: crate::near::FillToken,
    sent: Instant,
    pttl: Option<(Arc<crate::cluster::NodeInfo>, crate::backend::PendingReply)>,
}

/// An MGET of keys some of which are near-cached: each key found in memory is answered from
/// there, the others go on in one MGET (the usual path: replicas, failover, splitting per
/// node), and the near-cached ones among them are fills. `Usual` when no key is near-cached
/// or the near cache cannot serve now.
pub(super) fn mget(coord: &Coordinator, view: &View, request: &Request, track: &Track) -> Mget {
    let Some(keys) = request.args.get(1..) else {
        return Mget::Usual;
    };
    let layer_of = |i: usize| match &track.key_layers {
        Some(ids) => ids.get(i).copied(),
        None => track.layer,
    };
    let store_of = |i: usize| {
        let layer = view.layers.get(layer_of(i)?)?;
        Some((layer, layer.near.as_ref()?))
    };
    if !(0..keys.len()).any(|i| store_of(i).is_some()) {
        return Mget::Usual;
    }
    // As for GET: while keys move, or before every stream is live, the usual path reads.
    if !view.layers.coherence().ready() || coord.rebalance.is_running() {
        return Mget::Usual;
    }
    let now = Instant::now();
    let worker = coord.router.worker;
    let mut hits = Vec::new();
    let mut sent = Vec::new();
    let mut fills = Vec::new();
    let mut rest = Vec::with_capacity(request.args.len());
    rest.extend(request.args.first().cloned());
    for (i, key) in keys.iter().enumerate() {
        let near = store_of(i);
        let counts = near.and_then(|(layer, _)| layer.stats.worker(worker));
        if let Some(value) = near.and_then(|(_, store)| store.get(key, now)) {
            if let Some(w) = counts {
                w.near_hits.add(1);
            }
            hits.push((i, value));
            continue;
        }
        if let Some((_, store)) = near {
            if let Some(w) = counts {
                w.near_misses.add(1);
            }
            fills.push(MgetFill {
                index: sent.len(),
                store: store.clone(),
                key: key.clone(),
                token: store.coherence().begin(key),
                sent: now,
                pttl: None,
            });
        }
        sent.push(i);
        rest.push(key.clone());
    }
    if sent.is_empty() {
        let mut out = vec![Reply::Nil; keys.len()];
        for (i, value) in hits {
            if let Some(slot) = out.get_mut(i) {
                *slot = Reply::Bulk(value);
            }
        }
        return Mget::Served(Reply::Array(out));
    }
    let parts = MgetParts {
        total: keys.len(),
        hits,
        sent,
        fills,
        proto: crate::protocol::Proto::Resp2,
    };
    Mget::Rest(Request::from_args(rest), parts)
}

impl MgetParts {
    /// Sends each fill's `PTTL` to the first replica of its key that is up, behind the rest
    /// (which was sent first on the same client connection, so the TTL is read after the
    /// value).
    pub(super) async fn send_pttls(&mut self, coord: &Coordinator, view: &View, lane: Lane) {
        self.proto = lane.proto;
        let topology = &view.topology;
        let up = |&n: &usize| topology.node(n).is_some_and(|n| !n.health.is_down());
        for fill in &mut self.fills {
            let spec = view.layers.get(view.layers.resolve(&fill.key));
            let Some(node) =
                spec.and_then(|l| view.replicas_of(&l.spec, &fill.key).into_iter().find(up))
            else {
                continue;
            };
            let Some(conn) = coord.router.connection(node, lane) else {
                continue;
            };
            let rx = conn
                .send(command_bytes([&b"PTTL"[..], fill.key.as_ref()].into_iter()))
                .await;
            fill.pttl = Some((conn.node().clone(), rx));
        }
    }

    /// The client's reply: the rest's reply (`pending`) merged with the values from memory;
    /// the fills kept.
    pub(super) fn finish(self, mut pending: Pending) -> Pending {
        Pending::task(async move {
            let reply = std::future::poll_fn(|cx| pending.poll_reply(cx)).await;
            let applied = pending.applied().to_vec();
            let reply = match self.merge(reply).await {
                Ok(reply) | Err(reply) => reply,
            };
            TaskOutput { reply, applied }
        })
    }

    async fn merge(self, reply: Reply) -> Result<Reply, Reply> {
        let items = elements(reply, self.proto)?;
        if items.len() != self.sent.len() {
            return Err(Reply::error_static(
                "ERR strata: unexpected reply from node",
            ));
        }
        let mut out = vec![Reply::Nil; self.total];
        for (i, value) in self.hits {
            if let Some(slot) = out.get_mut(i) {
                *slot = Reply::Bulk(value);
            }
        }
        for fill in self.fills {
            let Some((node, rx)) = fill.pttl else {
                continue;
            };
            let Some(Reply::Bulk(value)) = items.get(fill.index) else {
                continue;
            };
            let pttl = match settle(&node, rx.await).map(|r| r.frame) {
                Ok(BytesFrame::Integer(ms)) => ms,
                _ => continue,
            };
            if let Some(life) = fill.store.life(pttl, value.len()) {
                fill.store
                    .fill(&fill.token, &fill.key, value, fill.sent, life);
            }
        }
        for (item, &i) in items.into_iter().zip(&self.sent) {
            if let Some(slot) = out.get_mut(i) {
                *slot = item;
            }
        }
        Ok(Reply::Array(out))
    }
}

/// The elements of an MGET's reply; `Err` with the reply to give when it is not an array (an
/// error).
fn elements(reply: Reply, proto: crate::protocol::Proto) -> Result<Vec<Reply>, Reply> {
    match reply {
        Reply::Array(items) => Ok(items),
        Reply::Raw(raw) => {
            let mut buf = bytes::BytesMut::from(raw.as_ref());
            match crate::protocol::codec::decode_reply_as(&mut buf, proto) {
                Ok(Some(r)) => match r.frame {
                    BytesFrame::Array(items) => {
                        Ok(items.into_iter().map(Reply::from_frame).collect())
                    }
                    _ => Err(Reply::Raw(raw)),
                },
                _ => Err(Reply::Raw(raw)),
            }
        }
        other => Err(other),
    }
}
