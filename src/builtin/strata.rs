//! `STRATA <subcommand>`: strata's own admin commands over RESP: RING, NODES, NODE (live
//! membership, `membership.rs`), LAYERS, STATS, INVALIDATE, NEARCACHE (`nearcache.rs`), WARM
//! and HELP.

use bytes::Bytes;

use crate::control::clients::ClientInfo;
use crate::control::Control;
use crate::coordinator::invalidate;
use crate::coordinator::track::{self, Track};
use crate::coordinator::Coordinator;
use crate::protocol::{parse_i64, Reply, Request};
use std::sync::Arc;

use super::local::{help, Done};
use super::report;
use crate::command::classify::{unknown_subcommand, wrong_arity};
use crate::command::table::lookup;

pub async fn strata(
    coord: &Arc<Coordinator>,
    control: &Arc<Control>,
    client: &ClientInfo,
    request: &Request,
) -> Done {
    let args = &request.args;
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    let reply = match sub.as_str() {
        "ring" => match args.get(2) {
            Some(key) if args.len() == 3 => ring(control, key),
            _ => wrong_arity("strata|ring"),
        },
        "nodes" if args.len() == 2 => nodes(control),
        "nodes" => wrong_arity("strata|nodes"),
        "layers" if args.len() == 2 => report::layers_reply(control),
        "layers" => wrong_arity("strata|layers"),
        "stats" if args.len() == 2 => report::stats_reply(control),
        "stats" => wrong_arity("strata|stats"),
        "invalidate" => {
            let reply = Box::pin(invalidate::command(&coord.router, client.lane(), args)).await;
            // The nodes report the removals too, a moment later: the near cache forgets them
            // before the reply, so the client reads what it removed as removed.
            super::nearcache::after_invalidate(control, args);
            reply
        }
        "nearcache" => super::nearcache::command(control, args),
        "node" => crate::control::membership::command(control, &coord.router, args),
        "rebalance" => Box::pin(crate::control::membership::rebalance(control, args)).await,
        "reload" if args.len() == 2 => reload(control, coord),
        "reload" => wrong_arity("strata|reload"),
        "warm" => return warm(coord, client, args).await,
        "help" => help(&[
            "STRATA <subcommand> [<arg> ...]. Subcommands are:",
            "RING <key>",
            "    The key's hash point (xxh3-64, hex), the hashed part and its preference list.",
            "NODES",
            "    Every node with its address, weight, state and counters.",
            "NODE ADD <id> <host:port> [<weight>]",
            "    Add a node to the ring now; replies with the share of keys that moved.",
            "NODE REMOVE <id>",
            "    Take a node out of the ring now (its connections close once idle).",
            "NODE WEIGHT <id> <weight>",
            "    Change a node's share of the ring.",
            "RELOAD",
            "    Read config.yaml again and apply it (what needs a restart is reported).",
            "REBALANCE [DRY]",
            "    Move every key to the nodes that own it now (in the background); DRY counts them.",
            "LAYERS",
            "    Every layer with its policy and statistics.",
            "STATS",
            "    Totals, command classes, layers and nodes.",
            "INVALIDATE KEY <key>",
            "    Remove the key from every replica.",
            "INVALIDATE LAYER <name>",
            "    Remove every key of the layer from every node (SCAN + UNLINK).",
            "INVALIDATE WHERE <field>=<value> [<field>=<value> ...]",
            "    Remove the keys whose key template fields have these values, in every layer.",
            "NEARCACHE GET <key>",
            "    Whether the key's value is in the near cache, since when and for how long.",
            "NEARCACHE FLUSH [<layer>]",
            "    Empty every near cache, or one layer's; replies with the entries removed.",
            "WARM <key> <value> [<ttl-ms>]",
            "    Write the key through the layer policy; counted as a warm operation.",
        ]),
        _ => unknown_subcommand("strata", args.get(1).map_or(&b""[..], |s| s)),
    };
    Done::reply(reply)
}

/// STRATA RELOAD: config.yaml again (`reload.rs`).
fn reload(control: &Arc<Control>, coord: &Coordinator) -> Reply {
    match crate::control::reload::reload(control, &coord.router) {
        Ok(report) => Reply::Array(vec![
            Reply::bulk("reloaded"),
            Reply::Integer(1),
            Reply::bulk("ring_version"),
            Reply::Integer(report.ring_version as i64),
            Reply::bulk("nodes"),
            Reply::Array(report.nodes.into_iter().map(Reply::text).collect()),
            Reply::bulk("layers"),
            Reply::Integer(report.layers as i64),
            Reply::bulk("restart_needed"),
            Reply::Array(report.restart_needed.into_iter().map(Reply::bulk).collect()),
        ]),
        Err(reason) => Reply::error(format!(
            "ERR strata: reload refused, running configuration kept: {}",
            reason.replace(['\r', '\n'], " ")
        )),
    }
}

/// STRATA WARM <key> <value> [<ttl-ms>]: a SET through the normal write path (layer TTL
/// policy included), counted as a warm operation of the key's layer.
async fn warm(coord: &Arc<Coordinator>, client: &ClientInfo, args: &[Bytes]) -> Done {
    let (Some(key), Some(value)) = (args.get(2), args.get(3)) else {
        return Done::reply(wrong_arity("strata|warm"));
    };
    if args.len() > 5 {
        return Done::reply(wrong_arity("strata|warm"));
    }
    let mut set = vec![Bytes::from_static(b"SET"), key.clone(), value.clone()];
    if let Some(ttl) = args.get(4) {
        match parse_i64(ttl) {
            Some(ms) if ms > 0 => {
                set.push(Bytes::from_static(b"PX"));
                set.push(ttl.clone());
            }
            _ => {
                return Done::reply(Reply::error_static(
                    "ERR strata: WARM ttl must be a positive number of milliseconds",
                ))
            }
        }
    }
    let Some(spec) = lookup(b"set") else {
        return Done::reply(Reply::error_static("ERR strata: internal error: no SET"));
    };
    let view = coord.router.view();
    let layer = view.layers.resolve(key);
    let mut track = Track::new(std::time::Instant::now());
    track.layer = Some(layer);
    let request = Request {
        args: set,
        raw: None,
    };
    // Through the planner as any SET: the layer's TTL policy and copies apply.
    let traits = track::traits(crate::command::table::command_index(spec));
    let pending = crate::coordinator::plan::plan(
        coord,
        &view,
        client.lane(),
        spec,
        traits,
        request,
        &mut track,
    )
    .await;
    let pending = match track.near_after.take() {
        None => pending,
        Some(effect) => crate::coordinator::plan::then_apply(
            pending,
            *effect,
            view.layers.coherence().clone(),
            client.id,
        ),
    };
    Done {
        layer: Some(layer),
        rewrites: track.rewrites,
        ..Done::from(pending)
    }
}

/// STRATA RING <key>: a flat field/value array, like HELLO's.
fn ring(control: &Control, key: &Bytes) -> Reply {
    let view = control.live.load();
    let topology = &view.topology;
    // A key of a Redis Cluster backend: its slot and the nodes serving it.
    if let Some(backend) = view.layers.cluster_of(key) {
        let slot = crate::cluster::slots::key_slot(key);
        let map = topology.clusters.get(backend);
        let shard = map.and_then(|m| m.shard(slot));
        let name = |s: usize| topology.node(s).map(|n| Reply::text(n.id.clone()));
        let nodes = shard
            .map(|s| {
                std::iter::once(s.primary)
                    .chain(s.replicas.iter().copied())
                    .filter_map(name)
                    .collect()
            })
            .unwrap_or_default();
        return Reply::Array(vec![
            Reply::bulk("key"),
            Reply::Bulk(key.clone()),
            Reply::bulk("backend"),
            Reply::text(map.map(|m| m.link.name.clone()).unwrap_or_default()),
            Reply::bulk("slot"),
            Reply::Integer(i64::from(slot)),
            Reply::bulk("preference"),
            Reply::Array(nodes),
        ]);
    }
    let ring = &topology.ring;
    let hash = ring.key_hash(key);
    let nodes = ring
        .preference_list(key, ring.node_count())
        .into_iter()
        .filter_map(|i| topology.node(i))
        .map(|n| Reply::text(n.id.clone()))
        .collect();
    Reply::Array(vec![
        Reply::bulk("key"),
        Reply::Bulk(key.clone()),
        Reply::bulk("hashed"),
        Reply::bulk(ring.hashed_part(key).to_vec()),
        Reply::bulk("point"),
        Reply::text(format!("{hash:016x}")),
        Reply::bulk("preference"),
        Reply::Array(nodes),
    ])
}

/// STRATA NODES: one array of field/value pairs per node.
fn nodes(control: &Control) -> Reply {
    Reply::Array(
        control
            .live
            .load()
            .topology
            .member_nodes()
            .map(|n| {
                let s = &n.status;
                let t = n.stats.totals();
                Reply::Array(vec![
                    Reply::bulk("id"),
                    Reply::text(n.id.clone()),
                    Reply::bulk("addr"),
                    Reply::text(n.addr.clone()),
                    Reply::bulk("weight"),
                    Reply::Integer(i64::from(n.weight())),
                    Reply::bulk("state"),
                    Reply::bulk(n.health.state()),
                    Reply::bulk("down_transitions"),
                    Reply::Integer(n.health.transitions().0 as i64),
                    Reply::bulk("up_transitions"),
                    Reply::Integer(n.health.transitions().1 as i64),
                    Reply::bulk("health_reason"),
                    Reply::text(n.health.reason().unwrap_or_default()),
                    Reply::bulk("hints_pending"),
                    Reply::Integer(n.hints.len() as i64),
                    Reply::bulk("refill"),
                    Reply::bulk(n.refill.state().label()),
                    Reply::bulk("refill_last_error"),
                    Reply::text(n.refill.last_error().unwrap_or_default()),
                    Reply::bulk("connections"),
                    Reply::Integer(s.connected() as i64),
                    Reply::bulk("requests"),
                    Reply::Integer(t.requests as i64),
                    Reply::bulk("failures"),
                    Reply::Integer(s.failures() as i64),
                    Reply::bulk("last_error"),
                    Reply::text(s.last_error().unwrap_or_default()),
                ])
            })
            .collect(),
    )
}
