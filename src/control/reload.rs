//! Hot reload (SIGHUP or `STRATA RELOAD`): config.yaml is read and validated again; a bad file
//! is refused with the reason and the running configuration stays. Otherwise the new one
//! applies at once: nodes (added, removed, re-addressed, re-weighted: one ring swap), layers
//! (prefixes, TTLs, replication, consistency; each layer's figures go on under its name),
//! health thresholds and interval, timeouts, limits read per client, security, stats and
//! rebalance settings. Settings fixed at start (the listen addresses, workers, the ring's shape,
//! backend pools, background budgets) keep their running values and are reported as needing
//! a restart.

use std::sync::Arc;

use serde::Serialize;

use crate::backend::Router;
use crate::cluster::NodeInfo;
use crate::cluster::View;
use crate::config::{Config, Settings};
use crate::policy::Layers;

use super::Control;

/// What a reload did.
#[derive(Debug, Default)]
pub struct Report {
    pub ring_version: u64,
    /// Membership changes made, as `add node4`, `remove node2`, `weight node1 3`,
    /// `readdress node3`.
    pub nodes: Vec<String>,
    pub layers: usize,
    /// Changed settings that keep their running values until a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Reloads the config file strata was started with.
/// `router` is the calling worker's: nodes added by the reload get their heartbeat, and a
/// rebalance its connections, on that worker's runtime.
pub fn reload(control: &Arc<Control>, router: &Arc<Router>) -> Result<Report, String> {
    let Some(path) = control.config_path.as_ref() else {
        return Err("strata was started without a config file: nothing to reload".into());
    };
    let loaded = Config::load(path).map_err(|e| e.to_string())?;
    // One change at a time, as for STRATA NODE: the new view is built from the current one.
    control
        .live
        .change(|current| swap(control, current, loaded))
        .map(|(report, before, added, removed, auto_rebalance)| {
            let membership_changed = !report.nodes.is_empty();
            if membership_changed {
                control.rebalance.remember(before);
            }
            for slot in added {
                crate::health::heartbeat::start_one(router, slot);
                crate::tracking::start_one(router, slot);
            }
            for node in removed {
                let pending = node.hints.len();
                drop(node.hints.take(pending));
                node.retire();
            }
            // Layers may have changed their backend, near cache or read_from.
            crate::control::slot_maps::layers_or_map_changed(&control.live.load());
            if membership_changed && auto_rebalance {
                let _ = crate::control::rebalance::start(control);
            }
            tracing::info!(
                ring_version = report.ring_version,
                nodes = report.nodes.join(", "),
                layers = report.layers,
                restart_needed = report.restart_needed.join(", "),
                "configuration reloaded"
            );
            report
        })
}

/// What a reload swapped in, and what the caller does once it is in: the report, the
/// topology before (its owners still hold keys), the slots added and the nodes removed, and
/// whether to start a rebalance.
type Swapped = (
    Report,
    Arc<crate::cluster::Topology>,
    Vec<usize>,
    Vec<Arc<NodeInfo>>,
    bool,
);

/// The view after a reload of `loaded` onto `current`.
fn swap(control: &Control, current: &View, loaded: Settings) -> Result<(View, Swapped), String> {
    // Layers name their backend by its place in `backends`, and the running slot maps are
    // those of the backends strata started with.
    let names = |s: &Settings| -> Vec<String> {
        s.config.backends.iter().map(|b| b.name.clone()).collect()
    };
    if names(&current.settings) != names(&loaded) {
        return Err(
            "backends: adding, removing, renaming or reordering backends needs a restart".into(),
        );
    }
    let (settings, restart_needed) = keep_fixed(&current.settings, loaded);

    // Nodes: one new topology for every change, checked once at the end.
    let before = current.topology.clone();
    let most_copies = settings
        .layers
        .iter()
        .map(|l| l.replication)
        .max()
        .unwrap_or(1);
    let mut topology = before.with_depth(most_copies);
    let mut nodes = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for wanted in &settings.config.nodes {
        match topology.member(&wanted.id).cloned() {
            Some(node) if node.addr == wanted.addr => {
                if node.weight() != wanted.weight {
                    node.set_weight(wanted.weight);
                    topology = topology.reweighted();
                    nodes.push(format!("weight {} {}", wanted.id, wanted.weight));
                }
            }
            found => {
                if let Some(old) = &found {
                    // A new address: the same ring points (same id), a new slot.
                    topology = topology.with_removed(old.index);
                    removed.push(old.clone());
                    nodes.push(format!("readdress {}", wanted.id));
                } else {
                    nodes.push(format!("add {}", wanted.id));
                }
                let slot = topology.nodes.len();
                if slot >= settings.config.limits.max_nodes {
                    return Err(format!(
                        "no room for node '{}': limits.max_nodes is {}",
                        wanted.id, settings.config.limits.max_nodes
                    ));
                }
                let node = Arc::new(
                    NodeInfo::new(
                        slot,
                        wanted.id.clone(),
                        wanted.addr.clone(),
                        wanted.weight,
                        settings.workers,
                    )
                    .configured(
                        crate::cluster::health::Thresholds::from(&settings.config.health),
                        &settings.config.repair,
                    ),
                );
                topology = topology.with_added(node);
                added.push(slot);
            }
        }
    }
    let gone: Vec<Arc<NodeInfo>> = topology
        .member_nodes()
        .filter(|n| !settings.config.nodes.iter().any(|w| w.id == n.id))
        .cloned()
        .collect();
    for node in gone {
        topology = topology.with_removed(node.index);
        nodes.push(format!("remove {}", node.id));
        removed.push(node);
    }
    // Config validation already checked replication against the configured node count.

    // Swap everything in.
    let layers = Layers::carried_over(&settings.layers, settings.workers, &current.layers);
    let report = Report {
        ring_version: topology.version,
        nodes,
        layers: layers.len(),
        restart_needed,
    };
    let thresholds = crate::cluster::health::Thresholds::from(&settings.config.health);
    for node in topology.nodes.iter() {
        node.health.set_thresholds(thresholds);
        // A Redis Cluster or Sentinel node is never refilled (Redis keeps its replicas).
        node.refill
            .set_enabled(settings.config.repair.refill && node.cluster.is_none());
    }
    // New credentials apply to the connections opened from now on; those open stay
    // authenticated as they were. Removed nodes keep theirs (a rebalance may still empty them);
    // the nodes of Redis Cluster and Sentinel backends take the new ones too.
    let backend_nodes = topology.nodes.iter().filter(|n| n.cluster.is_some());
    for node in topology.member_nodes().chain(backend_nodes) {
        node.set_credentials(settings.config.credentials_for(&node.id));
        // The files were read again: a renewed certificate or CA applies from here on.
        let tls = settings.node_tls_for(&node.id, &node.addr)?;
        super::membership::warn_if_insecure(&node.id, tls.as_deref());
        node.set_tls(tls);
    }
    control.timeouts.set(
        settings.config.timeouts.connect,
        settings.config.timeouts.request,
    );
    let auto_rebalance = settings.config.rebalance.auto;
    layers
        .coherence()
        .clients
        .configure(settings.config.client_tracking.limits());
    let view = View {
        acl: Arc::new(crate::acl::Acl::new(
            &settings.config.security,
            &settings.layers,
        )),
        settings: Arc::new(settings),
        topology: Arc::new(topology),
        layers: Arc::new(layers),
    };
    Ok((view, (report, before, added, removed, auto_rebalance)))
}

/// The loaded settings with the values that cannot change while running put back, and the
/// names of those that differed.
fn keep_fixed(running: &Settings, loaded: Settings) -> (Settings, Vec<&'static str>) {
    let old = &running.config;
    let running_tls = running.client_tls.clone();
    let mut config = loaded.config;
    let mut changed = Vec::new();
    fn same<T: Serialize>(a: &T, b: &T) -> bool {
        serde_yaml::to_string(a).ok() == serde_yaml::to_string(b).ok()
    }
    if config.listen != old.listen {
        changed.push("listen");
        config.listen = old.listen;
    }
    // The TLS listener's address is bound at start; its certificate, key, client CA and
    // protocol versions apply to the handshakes after the reload.
    // Adding or removing the listener needs a restart too: the running one keeps its files.
    let mut client_tls = loaded.client_tls;
    match (&mut config.tls, &old.tls) {
        (Some(new), Some(running)) if new.listen != running.listen => {
            changed.push("tls.listen");
            new.listen = running.listen;
        }
        (Some(_), Some(_)) | (None, None) => {}
        (new, running) => {
            changed.push("tls.listen");
            new.clone_from(running);
            client_tls.clone_from(&running_tls);
        }
    }
    if config.admin_listen != old.admin_listen {
        changed.push("admin_listen");
        config.admin_listen = old.admin_listen;
    }
    // Seeds and refresh settings of the running backends (the layers may change backend).
    if !same(&config.backends, &old.backends) {
        changed.push("backends");
        config.backends.clone_from(&old.backends);
    }
    if config.workers != old.workers {
        changed.push("workers");
        config.workers = old.workers;
    }
    if !same(&config.ring, &old.ring) {
        changed.push("ring");
        config.ring = old.ring.clone();
    }
    // The credentials are read at each connect: they change while running.
    let mut old_backend = old.backend.clone();
    old_backend.username = config.backend.username.clone();
    old_backend.password = config.backend.password.clone();
    if !same(&config.backend, &old_backend) {
        changed.push("backend");
        config.backend = old_backend;
    }
    if config.limits.max_nodes != old.limits.max_nodes {
        changed.push("limits.max_nodes");
        config.limits.max_nodes = old.limits.max_nodes;
    }
    if config.repair.max_in_flight != old.repair.max_in_flight {
        changed.push("repair.max_in_flight");
        config.repair.max_in_flight = old.repair.max_in_flight;
    }
    if config.repair.max_hints_per_node != old.repair.max_hints_per_node {
        changed.push("repair.max_hints_per_node");
        config.repair.max_hints_per_node = old.repair.max_hints_per_node;
    }
    let settings = Settings {
        config,
        workers: running.workers,
        hash_tag: running.hash_tag,
        layers: loaded.layers,
        client_tls,
        node_tls: loaded.node_tls,
    };
    (settings, changed)
}
