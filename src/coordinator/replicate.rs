//! Planning for layers that keep several copies of a key (`replication` above 1) or that
//! eject down nodes: which nodes are the key's replicas, whether the request is a write or a
//! read, and the [`Flight`]s that carry it. Multi-key commands are cut into groups of keys that
//! share their replicas and layer; each group is one flight, merged as without replication.

use std::sync::Arc;

use bytes::Bytes;

use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec, Split};
use crate::policy::{LayerId, LayerSpec};
use crate::protocol::reply::command_bytes;
use crate::protocol::{Reply, Request};
use crate::server::Worker;

use super::merge::{merge, MergePlan};
use super::pending::{Pending, TaskOutput};
use super::plan::{self, key_error, CROSSSLOT};
use super::quorum::{Flight, Landed, Op};
use super::track::Track;

/// The replicas of `key` under `layer`, primary first. With `eject_on_down`, down nodes are
/// passed over (the key moves to the next nodes while they are down).
pub fn replicas_of(worker: &Worker, layer: &LayerSpec, key: &[u8]) -> Vec<usize> {
    let shared = &worker.shared;
    let walk = shared.ring.node_iter(shared.ring.key_hash(key));
    if layer.eject_on_down {
        walk.filter(|&n| shared.nodes.get(n).is_some_and(|n| !n.health.is_down()))
            .take(layer.replication)
            .collect()
    } else {
        walk.take(layer.replication).collect()
    }
}

/// Reads (Redis's `readonly` flag) follow the layer's read consistency; everything else that
/// names keys may change them and goes to every replica.
fn op_for(spec: &CommandSpec, layer: &LayerSpec, track: &Track) -> Op {
    if spec.has(flags::READONLY) {
        Op::Read {
            level: layer.read_consistency,
            miss_failover: layer.miss_failover,
            outcome: track.outcome,
        }
    } else {
        Op::Write(layer.write_consistency)
    }
}

fn no_node(layer: &LayerSpec) -> Pending {
    Pending::ready(Reply::error(format!(
        "ERR strata: no node is up for layer '{}'",
        layer.name
    )))
}

/// A flight's reply as the client gets it.
fn landed_reply(landed: Landed, layer: LayerId) -> TaskOutput {
    TaskOutput {
        reply: match landed.reply {
            Ok(r) => Reply::Raw(r.raw),
            Err(e) => e,
        },
        applied: if landed.applied > 0 {
            vec![(layer, landed.applied)]
        } else {
            Vec::new()
        },
    }
}

/// A key-addressed command (`Route::SameNode`) of a replicated layer. Every key must have the
/// same replicas (hash tags), else `CROSSSLOT`.
pub async fn plan_same_node(
    worker: &Arc<Worker>,
    client_id: u64,
    spec: &CommandSpec,
    request: Request,
    ttl_rule: bool,
    track: &mut Track,
    layer_id: LayerId,
) -> Pending {
    let Some(layer) = worker.shared.layers.get(layer_id) else {
        return Pending::ready(Reply::error_static("ERR strata: internal error: no layer"));
    };
    let mut positions = Vec::new();
    if let Err(e) = key_positions(spec, &request.args, &mut positions) {
        return Pending::ready(key_error(spec.name, e));
    }
    let keys: Vec<Bytes> = positions
        .iter()
        .filter_map(|&p| request.args.get(p).cloned())
        .collect();
    let Some(first) = keys.first() else {
        return Pending::ready(Reply::error_static("ERR strata: internal error: no key"));
    };
    let nodes = replicas_of(worker, &layer.spec, first);
    for key in keys.iter().skip(1) {
        if replicas_of(worker, &layer.spec, key) != nodes {
            return Pending::ready(Reply::error_static(CROSSSLOT));
        }
    }
    if nodes.is_empty() {
        return no_node(&layer.spec);
    }
    let op = op_for(spec, &layer.spec, track);
    let (payload, followers) = match op {
        Op::Write(_) => match plan::write_payload(worker, spec, &request, ttl_rule, track) {
            Ok(built) => built,
            Err(reply) => return Pending::ready(reply),
        },
        Op::Read { .. } => (plan::payload(&request), Vec::new()),
    };
    let followers = followers
        .iter()
        .map(|f| command_bytes(f.iter().map(|a| a.as_ref())))
        .collect();
    let flight = Flight::start(
        worker,
        client_id,
        layer_id,
        op,
        &nodes,
        payload,
        followers,
        keys.into(),
        track.started,
    )
    .await;
    Pending::task(async move { landed_reply(flight.land().await, layer_id) })
}

/// A group of a split command's keys that share layer and replicas.
struct Group {
    layer: LayerId,
    nodes: Vec<usize>,
    /// Argument positions of the group's keys.
    positions: Vec<usize>,
}

/// MGET / MSET / DEL / UNLINK / EXISTS / TOUCH when a key's layer is replicated.
pub async fn plan_split(
    worker: &Arc<Worker>,
    client_id: u64,
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
    let layers = &worker.shared.layers;
    let followers = if ttl_rule && layers.any_ttl() {
        match plan::ttl_plan(worker, spec, &request) {
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
        let nodes = replicas_of(worker, spec_of, key);
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
        let keys: Vec<Bytes> = group
            .positions
            .iter()
            .filter_map(|&p| request.args.get(p).cloned())
            .collect();
        // The TTL followers of this group's keys travel with it.
        let mine: Vec<Bytes> = followers
            .iter()
            .filter(|f| f.get(1).is_some_and(|k| keys.contains(k)))
            .map(|f| command_bytes(f.iter().map(|a| a.as_ref())))
            .collect();
        let op = op_for(spec, &layer.spec, track);
        let flight = Flight::start(
            worker,
            client_id,
            group.layer,
            op,
            &group.nodes,
            command_bytes(args.into_iter()),
            mine,
            keys.into(),
            track.started,
        )
        .await;
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
            let landed = flight.land().await;
            if landed.applied > 0 {
                applied.push((layer, landed.applied));
            }
            match landed.reply {
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
