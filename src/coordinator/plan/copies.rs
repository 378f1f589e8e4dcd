//! The planner's part for layers that keep several copies of a key (`replication` above 1) or
//! that eject down nodes, and for every key while a rebalance runs: which nodes are the key's replicas, whether the request is a write or a
//! read, and the [`Flight`]s that carry it. Multi-key commands are cut into groups of keys that
//! share their replicas and layer; each group is one flight, merged as without replication.

use crate::backend::Lane;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::coordinator::Coordinator;

use crate::cluster::{NodeList, View};
use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec, KeySpec, Split};
use crate::config::ReadConsistency;
use crate::policy::{LayerId, LayerSpec};
use crate::protocol::reply::command_bytes;
use crate::protocol::{NodeReply, Reply, Request};
use crate::repair::Keys;

use super as plan;
use super::{key_error, CROSSSLOT};
use crate::coordinator::merge::{merge, MergePlan};
use crate::coordinator::pending::{Pending, TaskOutput};
use crate::coordinator::read_flight::{Flight, ReadOp, ReadRequest};
use crate::coordinator::read_one::{output, ReadOne};
use crate::coordinator::track::Track;
use crate::coordinator::write_flight::WriteFlight;

/// While a rebalance runs: appends to `nodes` the key's owners on the rings before the change
/// that are still members (a key not moved yet is there). True when any was added.
fn with_previous_owners(
    coord: &Coordinator,
    view: &View,
    layer: &LayerSpec,
    key: &[u8],
    nodes: &mut NodeList,
) -> bool {
    let Some(previous) = coord.rebalance.fallback() else {
        return false;
    };
    let topology = &view.topology;
    let before = nodes.len();
    for ring in previous.iter().rev().map(|t| &t.ring) {
        for slot in ring.preference_list(key, layer.replication) {
            let member = topology.members.contains(&slot);
            if member && !nodes.contains(&slot) {
                nodes.push(slot);
            }
        }
    }
    nodes.len() > before
}

/// While a rebalance runs, a deleted key may still have its old copy on a previous owner, which
/// the rebalance would move back: it is unlinked there too (the reply is not waited for).
async fn unlink_on_previous_owners(
    coord: &Coordinator,
    view: &View,
    lane: Lane,
    layer: &LayerSpec,
    keys: &[Bytes],
    nodes: &[usize],
) {
    for key in keys {
        coord.rebalance.deleted(key);
        let mut all: NodeList = nodes.iter().copied().collect();
        if !with_previous_owners(coord, view, layer, key, &mut all) {
            continue;
        }
        let command = command_bytes([&b"UNLINK"[..], key].into_iter());
        for &old in all.iter().skip(nodes.len()) {
            if let Some(conn) = coord.router.connection(old, lane) {
                drop(conn.send(command.clone()).await);
            }
        }
    }
}

/// Reads (Redis's `readonly` flag) follow the layer's read consistency; everything else that
/// names keys may change them and goes to every replica.
fn read_op(spec: &CommandSpec, layer: &LayerSpec, track: &Track) -> Option<ReadOp> {
    spec.has(flags::READONLY).then_some(ReadOp {
        level: layer.read_consistency,
        miss_failover: layer.miss_failover,
        outcome: track.outcome,
    })
}

fn no_node(layer: &LayerSpec) -> Pending {
    Pending::ready(Reply::error(format!(
        "ERR strata: no node is up for layer '{}'",
        layer.name
    )))
}

/// The request's keys, without collecting positions in the common one-key case.
fn request_keys(spec: &CommandSpec, request: &Request) -> Result<Keys, Reply> {
    if spec.keys == KeySpec::FIRST_ONLY {
        return Ok(request.args.get(1).cloned().into_iter().collect());
    }
    let mut positions = Vec::new();
    key_positions(spec, &request.args, &mut positions).map_err(|e| key_error(spec.name, e))?;
    Ok(positions
        .iter()
        .filter_map(|&p| request.args.get(p).cloned())
        .collect())
}

/// A key-addressed command (`Route::SameNode`) of a replicated layer. Every key must have the
/// same replicas (hash tags), else `CROSSSLOT`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn key_command(
    coord: &Arc<Coordinator>,
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    request: Request,
    ttl_rule: bool,
    track: &mut Track,
    layer_id: LayerId,
) -> Pending {
    let Some(layer) = view.layers.get(layer_id) else {
        return Pending::ready(Reply::error_static("ERR strata: internal error: no layer"));
    };
    let keys = match request_keys(spec, &request) {
        Ok(keys) => keys,
        Err(reply) => return Pending::ready(reply),
    };
    let Some(first) = keys.first() else {
        return Pending::ready(Reply::error_static("ERR strata: internal error: no key"));
    };
    let nodes = view.replicas_of(&layer.spec, first);
    for key in keys.iter().skip(1) {
        if view.replicas_of(&layer.spec, key) != nodes {
            return Pending::ready(Reply::error_static(CROSSSLOT));
        }
    }
    if nodes.is_empty() {
        return no_node(&layer.spec);
    }
    if let Some(mut op) = read_op(spec, &layer.spec, track) {
        let mut nodes = nodes;
        if op.level == ReadConsistency::One
            && with_previous_owners(coord, view, &layer.spec, first, &mut nodes)
        {
            // A key not moved yet is still on a previous owner: a miss asks on.
            op.miss_failover = true;
        }
        let mut read = ReadRequest {
            nodes,
            payload: plan::payload(&request),
            keys,
            started: track.started,
        };
        if op.level == ReadConsistency::One {
            match ReadOne::start(coord, view, lane, layer_id, op, read).await {
                Ok(one) => return Pending::ReadOne(one),
                Err(back) => read = back,
            }
        }
        let flight = Flight::start(coord, view, lane, layer_id, op, read).await;
        return Pending::task(async move { output(flight.land().await) });
    }
    let (payload, followers) = match plan::write_payload(view, spec, &request, ttl_rule, track) {
        Ok(built) => built,
        Err(reply) => return Pending::ready(reply),
    };
    if spec.name == "getdel" {
        unlink_on_previous_owners(coord, view, lane, &layer.spec, &keys, &nodes).await;
    }
    let followers: SmallVec<[Bytes; 1]> = followers
        .iter()
        .map(|f| command_bytes(f.iter().map(|a| a.as_ref())))
        .collect();
    let flight = WriteFlight::start(
        coord,
        view,
        lane,
        layer_id,
        layer.spec.write_consistency,
        &nodes,
        payload,
        &followers,
        keys,
    )
    .await;
    Pending::Write(flight)
}

/// The flight of one group of a split command.
enum GroupFlight {
    Read(Box<Flight>),
    Write(Box<WriteFlight>),
}

/// A write flight's raw reply decoded again, for merging (the short replies of MSET, DEL and
/// the like; write flights keep only the raw bytes).
fn decoded(raw: Bytes) -> Result<NodeReply, Reply> {
    let mut buf = bytes::BytesMut::from(raw.as_ref());
    match crate::protocol::decode_reply(&mut buf) {
        Ok(Some(reply)) => Ok(reply),
        _ => Err(Reply::error_static(
            "ERR strata: internal error: undecodable reply",
        )),
    }
}

/// A group of a split command's keys that share layer and replicas.
struct Group {
    layer: LayerId,
    nodes: NodeList,
    /// Argument positions of the group's keys.
    positions: Vec<usize>,
}

/// MGET / MSET / DEL / UNLINK / EXISTS / TOUCH when a key's layer is replicated.
#[allow(clippy::too_many_arguments)]
pub(super) async fn split(
    coord: &Arc<Coordinator>,
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    split: Split,
    request: Request,
    ttl_rule: bool,
    track: &Track,
) -> Pending {
    let stride = if split == Split::Mset { 2 } else { 1 };
    if stride == 2 && request.args.len() % 2 == 0 {
        return Pending::ready(crate::command::classify::wrong_arity(spec.name));
    }
    let layers = &view.layers;
    let followers = if ttl_rule && layers.any_ttl() {
        match plan::ttl_plan(view, spec, &request) {
            Err(reply) => return Pending::ready(reply),
            Ok(plan) => plan.map(|p| p.followers).unwrap_or_default(),
        }
    } else {
        Vec::new()
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut pos = 1;
    while let Some(key) = request.args.get(pos) {
        let layer = layers.resolve(key);
        let Some(spec_of) = layers.get(layer).map(|l| &l.spec) else {
            return Pending::ready(Reply::error_static("ERR strata: internal error: no layer"));
        };
        let nodes = view.replicas_of(spec_of, key);
        if nodes.is_empty() {
            return no_node(spec_of);
        }
        match groups
            .iter_mut()
            .find(|g| g.layer == layer && g.nodes == nodes)
        {
            Some(g) => g.positions.push(pos),
            None => groups.push(Group {
                layer,
                nodes,
                positions: vec![pos],
            }),
        }
        pos += stride;
    }
    let name = request.args.first().cloned().unwrap_or_default();
    let total = request.args.len().saturating_sub(1) / stride;
    let mut flights = Vec::with_capacity(groups.len());
    let mut slots = Vec::with_capacity(groups.len());
    for group in groups {
        let Some(layer) = layers.get(group.layer) else {
            continue;
        };
        let args = std::iter::once(name.as_ref()).chain(group.positions.iter().flat_map(|&p| {
            (p..p + stride).filter_map(|i| request.args.get(i).map(|a| a.as_ref()))
        }));
        let args: Vec<&[u8]> = args.collect();
        let keys: Keys = group
            .positions
            .iter()
            .filter_map(|&p| request.args.get(p).cloned())
            .collect();
        let payload = command_bytes(args.into_iter());
        if matches!(split, Split::SumKeys) && matches!(spec.name, "del" | "unlink") {
            unlink_on_previous_owners(coord, view, lane, &layer.spec, &keys, &group.nodes).await;
        }
        let flight = match read_op(spec, &layer.spec, track) {
            Some(op) => {
                let read = ReadRequest {
                    nodes: group.nodes,
                    payload,
                    keys,
                    started: track.started,
                };
                GroupFlight::Read(Box::new(
                    Flight::start(coord, view, lane, group.layer, op, read).await,
                ))
            }
            None => {
                // The TTL followers of this group's keys travel with it.
                let mine: SmallVec<[Bytes; 1]> = followers
                    .iter()
                    .filter(|f| f.get(1).is_some_and(|k| keys.contains(k)))
                    .map(|f| command_bytes(f.iter().map(|a| a.as_ref())))
                    .collect();
                GroupFlight::Write(
                    WriteFlight::start(
                        coord,
                        view,
                        lane,
                        group.layer,
                        layer.spec.write_consistency,
                        &group.nodes,
                        payload,
                        &mine,
                        keys,
                    )
                    .await,
                )
            }
        };
        flights.push((group.layer, flight));
        slots.push(group.positions.iter().map(|p| (p - 1) / stride).collect());
    }
    let plan = match split {
        Split::Mget => MergePlan::Mget { slots, total },
        Split::Mset => MergePlan::AllOk,
        Split::SumKeys => MergePlan::Sum,
    };
    Pending::task(async move {
        let mut results = Vec::with_capacity(flights.len());
        let mut applied: Vec<(LayerId, u32)> = Vec::new();
        let mut failure = None;
        for (layer, flight) in flights {
            let (reply, set) = match flight {
                GroupFlight::Read(f) => (f.land().await, 0),
                GroupFlight::Write(f) => {
                    let landed = f.land().await;
                    (landed.reply.and_then(decoded), landed.applied)
                }
            };
            if set > 0 {
                applied.push((layer, set));
            }
            match reply {
                Ok(r) => results.push(Ok(r)),
                // Every flight is awaited (their outcomes are watched), the first failure told.
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let reply = match failure {
            Some(e) => e,
            None => merge(plan, results),
        };
        TaskOutput { reply, applied }
    })
}
