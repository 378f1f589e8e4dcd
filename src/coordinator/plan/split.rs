//! Multi-key commands split per node (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH): one
//! sub-command per node when every layer has one copy, merged back in the client's order; the
//! layers with several copies go through `copies.rs`.

use std::sync::Arc;

use crate::backend::{Lane, Router};
use crate::cluster::{Place, View};
use crate::command::spec::{CommandSpec, Split};
use crate::coordinator::merge::MergePlan;
use crate::coordinator::pending::{Gather, Pending};
use crate::coordinator::track::{Track, Traits};
use crate::coordinator::Coordinator;
use crate::protocol::reply::command_bytes;
use crate::protocol::Request;

use super::{copies, down_reply, payload, replica_reads, send_followed, send_followers, ttl_plan};

/// A splittable multi-key command: by [`copies::split`] when some layer has several copies
/// or a rebalance runs, else one sub-command per node ([`split_one_copy`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn split_any(
    coord: &Arc<Coordinator>,
    view: &View,
    lane: Lane,
    spec: &'static CommandSpec,
    split: Split,
    request: Request,
    traits: Traits,
    track: &mut Track,
) -> Pending {
    // A rebalance moves the ring's keys only: a command whose first key is in a cluster
    // backend's layer keeps to the one-copy path.
    let of_cluster = || {
        request
            .args
            .get(1)
            .is_some_and(|k| view.layers.cluster_of(k).is_some())
    };
    if (view.layers.any_replicated() || coord.rebalance.is_running()) && !of_cluster() {
        copies::split(
            coord,
            view,
            lane,
            spec,
            split,
            request,
            traits.ttl_rule,
            track,
        )
        .await
    } else {
        // MGET and EXISTS of `read_from: replica` layers: their keys' replicas.
        let reader = replica_reads::may_use_replicas(view, spec, track).then_some(lane.client);
        split_one_copy(
            &coord.router,
            view,
            lane,
            spec,
            split,
            request,
            traits.ttl_rule,
            reader,
        )
        .await
    }
}

/// Groups argument positions by owning node, keeping argument order inside each group.
/// `stride` is 1 for key lists, 2 for key/value pairs. Keys of a Redis Cluster backend are
/// grouped by slot as well (a cluster refuses one command over two slots, even on one node);
/// `Err` when a key's slot has no node. `reader`: the client of a read that may go to
/// replicas.
fn group_by_node(
    view: &View,
    request: &Request,
    stride: usize,
    reader: Option<u64>,
) -> Result<Vec<(usize, Vec<usize>)>, crate::protocol::Reply> {
    let ring = &view.topology.ring;
    let clusters = view.layers.any_cluster();
    // (node, slot or u32::MAX for the ring) -> positions
    let mut groups: Vec<((usize, u32), Vec<usize>)> = Vec::new();
    let mut pos = 1;
    while let Some(key) = request.args.get(pos) {
        let at = if clusters {
            let place = view.place(key);
            let mut node = super::node_of(view, place)?;
            if let Some(client) = reader {
                node = replica_reads::replica_of(view, key, place, client).unwrap_or(node);
            }
            match place {
                Place::Slot { slot, .. } => (node, u32::from(slot)),
                Place::Ring(_) => (node, u32::MAX),
            }
        } else {
            (ring.primary(key), u32::MAX)
        };
        match groups.iter_mut().find(|(g, _)| *g == at) {
            Some((_, positions)) => positions.push(pos),
            None => groups.push((at, vec![pos])),
        }
        pos += stride;
    }
    Ok(groups
        .into_iter()
        .map(|((node, _), positions)| (node, positions))
        .collect())
}

/// MGET / MSET / DEL / UNLINK / EXISTS / TOUCH when every layer has one copy: one
/// sub-command per node, merged. MSET's keys get the TTL policy's followers.
#[allow(clippy::too_many_arguments)]
async fn split_one_copy(
    router: &Router,
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    split: Split,
    request: Request,
    ttl_rule: bool,
    reader: Option<u64>,
) -> Pending {
    let stride = match split {
        Split::Mset => {
            if request.args.len() % 2 == 0 {
                return Pending::ready(crate::command::classify::wrong_arity(spec.name));
            }
            2
        }
        Split::Mget | Split::SumKeys => 1,
    };
    let followers = if ttl_rule && view.layers.any_ttl() {
        match ttl_plan(view, spec, &request) {
            Err(reply) => return Pending::ready(reply),
            Ok(plan) => plan.map(|p| p.followers).unwrap_or_default(),
        }
    } else {
        Vec::new()
    };
    let groups = match group_by_node(view, &request, stride, reader) {
        Ok(groups) => groups,
        Err(reply) => return Pending::ready(reply),
    };
    if let [(node, _)] = groups.as_slice() {
        // Every key on one node: forward the request as it is.
        return send_followed(router, view, lane, *node, payload(&request), followers).await;
    }
    let name = request.args.first().cloned().unwrap_or_default();
    let total = request.args.len().saturating_sub(1) / stride;
    let mut slots = Vec::with_capacity(groups.len());
    let mut gather = Gather::new(MergePlan::Done);
    for (node, positions) in groups {
        let args = std::iter::once(name.as_ref()).chain(positions.iter().flat_map(|&p| {
            (p..p + stride).filter_map(|i| request.args.get(i).map(|a| a.as_ref()))
        }));
        let args: Vec<&[u8]> = args.collect();
        let Some(conn) = router.connection(node, lane) else {
            continue;
        };
        if conn.node().health.is_down() {
            return down_reply(router, conn.node());
        }
        let rx = conn.send(command_bytes(args.into_iter())).await;
        gather.push(rx, conn.node().clone());
        slots.push(positions.iter().map(|p| (p - 1) / stride).collect());
    }
    let plan = match split {
        Split::Mget => MergePlan::Mget { slots, total },
        Split::Mset => MergePlan::AllOk,
        Split::SumKeys => MergePlan::Sum,
    };
    let mut gather = gather;
    gather.set_plan(plan);
    send_followers(router, view, lane, &mut gather, followers).await;
    Pending::gather(gather)
}
