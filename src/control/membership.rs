//! `STRATA NODE ADD | REMOVE | WEIGHT`: live membership changes. Each builds a new topology
//! (`topology.rs`), swaps it in at once, and answers with how much of the key space changed
//! owner. Requests already planned finish on the old ring; no client connection is touched.
//!
//! Changes last until strata restarts: put them in config.yaml too (or change config.yaml and
//! `STRATA RELOAD`) to keep them. `STRATA REBALANCE [DRY]` moves the keys (`rebalance/`).

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::Router;
use crate::cluster::topology::Topology;
use crate::cluster::NodeInfo;
use crate::cluster::View;
use crate::config::Settings;
use crate::config::{split_host_port, MAX_WEIGHT};
use crate::protocol::{parse_i64, Reply};

use super::Control;

use crate::command::classify::{unknown_subcommand, wrong_arity};

/// A membership change to make.
pub enum Change {
    Add {
        id: String,
        addr: String,
        weight: u32,
    },
    Remove {
        id: String,
    },
    Weight {
        id: String,
        weight: u32,
    },
}

/// STRATA NODE <ADD|REMOVE|WEIGHT> ...
pub fn command(control: &Arc<Control>, router: &Arc<Router>, args: &[Bytes]) -> Reply {
    let sub = args
        .get(2)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    let text = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
    let change = match (sub.as_str(), args.len()) {
        ("add", 5 | 6) => {
            let weight = match args.get(5) {
                None => Ok(1),
                Some(w) => parse_weight(w),
            };
            match (text(3), text(4), weight) {
                (Some(id), Some(addr), Ok(weight)) => Change::Add { id, addr, weight },
                (_, _, Err(e)) => return e,
                _ => return wrong_arity("strata|node|add"),
            }
        }
        ("add", _) => return wrong_arity("strata|node|add"),
        ("remove", 4) => match text(3) {
            Some(id) => Change::Remove { id },
            None => return wrong_arity("strata|node|remove"),
        },
        ("remove", _) => return wrong_arity("strata|node|remove"),
        ("weight", 5) => match (text(3), args.get(4).map(|w| parse_weight(w))) {
            (Some(id), Some(Ok(weight))) => Change::Weight { id, weight },
            (_, Some(Err(e))) => return e,
            _ => return wrong_arity("strata|node|weight"),
        },
        ("weight", _) => return wrong_arity("strata|node|weight"),
        ("", _) => return wrong_arity("strata|node"),
        _ => return unknown_subcommand("strata", args.get(2).map_or(&b""[..], |s| s)),
    };
    match apply(control, router, change) {
        Ok(done) => done.reply(),
        Err(text) => Reply::error(format!("ERR strata: {text}")),
    }
}

/// STRATA REBALANCE [DRY]: starts moving keys to their owners (in the background: progress in
/// INFO `# Rebalance`), or with DRY walks the nodes and counts what would move.
pub async fn rebalance(control: &Arc<Control>, args: &[Bytes]) -> Reply {
    let dry = match args.get(2) {
        None => false,
        Some(a) if args.len() == 3 && a.eq_ignore_ascii_case(b"dry") => true,
        Some(_) => return Reply::error_static("ERR syntax error"),
    };
    let view = control.live.load_full();
    let topology = &view.topology;
    if !dry {
        return match crate::control::rebalance::start(control) {
            Ok(()) => Reply::Array(vec![
                Reply::bulk("started"),
                Reply::Integer(1),
                Reply::bulk("ring_version"),
                Reply::Integer(topology.version as i64),
            ]),
            Err(e) => Reply::error(format!("ERR strata: {e}")),
        };
    }
    let summary = crate::control::rebalance::walk(control, &view, true).await;
    let nodes = summary
        .nodes
        .iter()
        .map(|(id, scanned, moving)| {
            Reply::Array(vec![
                Reply::bulk("node"),
                Reply::text(id.clone()),
                Reply::bulk("scanned"),
                Reply::Integer(*scanned as i64),
                Reply::bulk("to_move"),
                Reply::Integer(*moving as i64),
            ])
        })
        .collect();
    let unreachable = summary
        .unreachable
        .iter()
        .map(|(id, why)| Reply::text(format!("{id}: {why}")))
        .collect();
    Reply::Array(vec![
        Reply::bulk("ring_version"),
        Reply::Integer(topology.version as i64),
        Reply::bulk("scanned"),
        Reply::Integer(summary.scanned as i64),
        Reply::bulk("to_move"),
        Reply::Integer(summary.moved as i64),
        Reply::bulk("nodes"),
        Reply::Array(nodes),
        Reply::bulk("unreachable"),
        Reply::Array(unreachable),
    ])
}

fn parse_weight(raw: &[u8]) -> Result<u32, Reply> {
    match parse_i64(raw) {
        Some(w) if (1..=i64::from(MAX_WEIGHT)).contains(&w) => Ok(w as u32),
        _ => Err(Reply::error(format!(
            "ERR strata: weight must be an integer from 1 to {MAX_WEIGHT}"
        ))),
    }
}

/// What a change did.
pub struct Applied {
    pub action: &'static str,
    pub id: String,
    pub members: usize,
    /// Share of the key space whose primary changed (0.0 to 1.0).
    pub moved: f64,
    pub version: u64,
}

impl Applied {
    fn reply(&self) -> Reply {
        Reply::Array(vec![
            Reply::bulk("action"),
            Reply::bulk(self.action),
            Reply::bulk("node"),
            Reply::text(self.id.clone()),
            Reply::bulk("members"),
            Reply::Integer(self.members as i64),
            Reply::bulk("moved"),
            Reply::text(format!("{:.4}", self.moved)),
            Reply::bulk("ring_version"),
            Reply::Integer(self.version as i64),
        ])
    }
}

/// Makes one membership change: checks it against the current topology, swaps the new one
/// in, starts or stops what the node needs (heartbeat, connections). `Err` says why not.
pub fn apply(
    control: &Arc<Control>,
    router: &Arc<Router>,
    change: Change,
) -> Result<Applied, String> {
    // One change at a time: each builds on the view the previous one left.
    let (applied, old, added, removed, auto) =
        control.live.change(|current| changed(current, change))?;
    control.rebalance.remember(old);
    if let Some(slot) = added {
        crate::health::heartbeat::start_one(router, slot);
        crate::tracking::start_one(router, slot);
    }
    if let Some(node) = removed {
        // Its hints can never be replayed; its connections close once idle.
        let pending = node.hints.len();
        drop(node.hints.take(pending));
        node.retire();
    }
    if auto {
        // A run in progress starts over on the new ring by itself.
        let _ = crate::control::rebalance::start(control);
    }
    tracing::info!(
        action = applied.action,
        node = %applied.id,
        members = applied.members,
        moved = format!("{:.4}", applied.moved),
        ring_version = applied.version,
        "membership changed"
    );
    Ok(applied)
}

/// What a membership change did, and what its caller does once it is in: the topology before
/// (its owners still hold keys), the slot added, the node removed, whether to rebalance.
type Made = (
    Applied,
    Arc<Topology>,
    Option<usize>,
    Option<Arc<NodeInfo>>,
    bool,
);

/// The view after `change`, checked against `current`.
fn changed(current: &View, change: Change) -> Result<(View, Made), String> {
    let old = current.topology.clone();
    let (action, id, new, added, removed) = match change {
        Change::Add { id, addr, weight } => {
            let node = new_node(&current.settings, &old, &id, &addr, weight)?;
            let new = old.with_added(node.clone());
            ("add", id, new, Some(node.index), None)
        }
        Change::Remove { id } => {
            let node = member(&old, &id)?.clone();
            let left = old.members.len() - 1;
            let most = current
                .layers
                .iter()
                .map(|(_, l)| (l.spec.replication, l.spec.name.clone()))
                .max_by_key(|(r, _)| *r);
            if left == 0 {
                return Err(format!("node '{id}' is the last node"));
            }
            if let Some((copies, layer)) = most.filter(|(r, _)| *r > left) {
                return Err(format!(
                    "removing node '{id}' would leave {left} nodes, but layer '{layer}' keeps {copies} copies"
                ));
            }
            let new = old.with_removed(node.index);
            ("remove", id, new, None, Some(node))
        }
        Change::Weight { id, weight } => {
            let node = member(&old, &id)?;
            node.set_weight(weight);
            ("weight", id, old.reweighted(), None, None)
        }
    };
    let moved = old.moved_share(&new);
    let applied = Applied {
        action,
        id,
        members: new.members.len(),
        moved,
        version: new.version,
    };
    let auto = current.settings.config.rebalance.auto;
    let view = View {
        settings: current.settings.clone(),
        acl: current.acl.clone(),
        topology: Arc::new(new),
        layers: current.layers.clone(),
    };
    Ok((view, (applied, old, added, removed, auto)))
}

fn member<'t>(topology: &'t Topology, id: &str) -> Result<&'t Arc<NodeInfo>, String> {
    topology
        .member(id)
        .ok_or_else(|| format!("no node '{id}' in the cluster"))
}

/// A node for a new slot, after the checks config.yaml's nodes get.
fn new_node(
    settings: &Settings,
    topology: &Topology,
    id: &str,
    addr: &str,
    weight: u32,
) -> Result<Arc<NodeInfo>, String> {
    if id.is_empty()
        || id
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "node id must be non-empty and without spaces, got {id:?}"
        ));
    }
    if topology.member(id).is_some() {
        return Err(format!("node '{id}' is already in the cluster"));
    }
    if split_host_port(addr).is_none() {
        return Err(format!("node address must be host:port, got {addr:?}"));
    }
    if let Some(other) = topology.member_nodes().find(|n| n.addr == addr) {
        return Err(format!("address {addr} is already node '{}'", other.id));
    }
    let config = &settings.config;
    // Not in the file: `backend.tls`, its files read now.
    let tls = settings.node_tls_for(id, addr)?;
    warn_if_insecure(id, tls.as_deref());
    let slot = topology.nodes.len();
    if slot >= config.limits.max_nodes {
        return Err(format!(
            "no room for another node: limits.max_nodes is {} (removed nodes keep their slot until restart)",
            config.limits.max_nodes
        ));
    }
    Ok(Arc::new(
        NodeInfo::new(
            slot,
            id.to_string(),
            addr.to_string(),
            weight,
            settings.workers,
        )
        .configured(
            crate::cluster::health::Thresholds::from(&config.health),
            &config.repair,
        )
        // Not in the file: the global `backend` credentials.
        .with_credentials(config.credentials_for(id))
        .with_tls(tls),
    ))
}

/// The loud warning `insecure_skip_verify` deserves, once per node set up with it (at start,
/// on each reload, when a node is added).
pub fn warn_if_insecure(id: &str, tls: Option<&crate::tls::NodeTls>) {
    if tls.is_some_and(|t| t.insecure) {
        tracing::warn!(
            node = id,
            "tls.insecure_skip_verify: the node's certificate is NOT verified; anyone on the network path can impersonate it"
        );
    }
}
