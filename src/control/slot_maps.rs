//! The slot maps of the backends, learnt from Redis itself. For a Redis Cluster: `CLUSTER
//! SLOTS` asked of a node the map knows (primaries first, then replicas) or, when none
//! answers, of the configured seeds. For a Sentinel-managed primary: `SENTINEL
//! get-master-addr-by-name` asked of the sentinels, the answer checked with `ROLE` on the
//! primary itself, as one shard serving every slot; a subscription to each sentinel's
//! `+switch-master` asks again at once after a failover.
//!
//! Asked at start, every `refresh_interval`, and at once when a redirect, a node failure or a
//! `-READONLY` reply asks for it ([`MapRefresh::ask`]), never more often than
//! `refresh_min_gap`. A map that differs from the current one is swapped into the view whole;
//! nodes it names for the first time get a topology slot (connections, heartbeat, an
//! invalidation stream's task, figures), named `<backend>@<host:port>`. The near cache and
//! tracking clients then need the streams of the new map's primaries (`tracking`). A node Redis stops naming keeps its slot, like a ring node
//! removed.

use std::sync::Arc;

use crate::backend::{CallError, RespClient, Router};
use crate::cluster::slots::{parse_cluster_slots, ClusterLink, SlotMap, SlotRange, SlotsError};
use crate::cluster::{NodeInfo, View};
use crate::config::Settings;
use crate::protocol::Proto;
use redis_protocol::resp2::types::Resp2Frame;

use super::Control;

/// Why no slot map could be learnt.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("{addr}: {source}")]
    Call { addr: String, source: CallError },
    #[error("{addr}: {source}")]
    Slots { addr: String, source: SlotsError },
    #[error("{addr}: no reply within the request timeout")]
    TimedOut { addr: String },
    #[error("no node of the cluster to ask")]
    NoCandidate,
    #[error("sentinel {addr}: {reason}")]
    Sentinel { addr: String, reason: String },
}

/// Starts one refresher per backend on the current runtime, and for a Sentinel-managed
/// primary a `+switch-master` listener per sentinel.
pub fn start(control: &Arc<Control>, router: &Arc<Router>) {
    let view = control.live.load();
    // Before any map: connections opened once it comes must know whether to send READONLY.
    layers_or_map_changed(&view);
    for backend in 0..view.topology.clusters.len() {
        tokio::spawn(run(control.clone(), router.clone(), backend));
        let sentinel = sentinel_of(&view, backend);
        if let (Some(s), Some(link)) = (sentinel, link_of(&view, backend)) {
            for addr in &s.sentinels {
                tokio::spawn(listen_switch(
                    control.clone(),
                    link.clone(),
                    s.clone(),
                    addr.clone(),
                ));
            }
        }
    }
}

/// Subscribes to `+switch-master` on the sentinel at `addr` and asks for a new map when the
/// backend's primary changes; reconnects after a failure (a second, then up to 10 s).
async fn listen_switch(
    control: Arc<Control>,
    link: Arc<ClusterLink>,
    config: crate::config::backends::SentinelConfig,
    addr: String,
) {
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        if control.drain.is_draining() {
            return;
        }
        let (credentials, tls, connect) = {
            let view = control.live.load();
            (
                sentinel_credentials(&config),
                view.settings
                    .node_tls_for(&node_id(&link.name, &addr), &addr)
                    .ok()
                    .flatten(),
                view.settings.config.timeouts.connect,
            )
        };
        let result = async {
            let mut client = RespClient::connect_with(
                &addr,
                credentials.as_ref(),
                tls.as_deref(),
                Proto::Resp2,
                connect,
            )
            .await?;
            client.call(&["SUBSCRIBE", "+switch-master"]).await?;
            loop {
                let message = client.read().await?;
                // ["message", "+switch-master", "<master> <old ip> <old port> <new ip> <new port>"]
                if let redis_protocol::resp2::types::BytesFrame::Array(parts) = &message.frame {
                    let text = parts.get(2).and_then(|p| p.as_str()).unwrap_or_default();
                    if text.split(' ').next() == Some(config.master.as_str()) {
                        tracing::info!(backend = %link.name, sentinel = %addr, event = %text, "sentinel reports a new primary");
                        link.refresh.ask();
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), CallError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(backend = %link.name, sentinel = %addr, error = %e, "sentinel subscription lost");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
    }
}

/// The credentials strata sends the sentinels (`sentinel.username` / `sentinel.password`).
fn sentinel_credentials(
    config: &crate::config::backends::SentinelConfig,
) -> Option<crate::config::Credentials> {
    crate::config::credentials::resolve(
        "sentinel",
        (None, None),
        (config.username.as_ref(), config.password.as_ref()),
    )
    .ok()
    .flatten()
}

async fn run(control: Arc<Control>, router: Arc<Router>, backend: usize) {
    let Some(link) = link_of(&control.live.load(), backend) else {
        return;
    };
    loop {
        if control.drain.is_draining() {
            return;
        }
        match refresh(&control, &router, backend).await {
            Ok(()) => {}
            Err(e) => {
                link.refresh
                    .refresh_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(backend = %link.name, error = %e, "cannot learn the cluster's slot map");
            }
        }
        let (interval, gap) = {
            let view = control.live.load();
            match view.settings.config.backends.get(backend) {
                Some(b) => b.refresh(),
                None => return,
            }
        };
        tokio::time::sleep(gap).await;
        let rest = interval.saturating_sub(gap);
        tokio::select! {
            _ = tokio::time::sleep(rest) => {}
            _ = link.refresh.wanted() => {}
        }
    }
}

/// What the backends need from the layers of `view`, told after a new map and a reload: the
/// invalidation streams of the primaries (always for a backend with a near-cached layer, else
/// while clients track every key), and READONLY on new connections to a Redis Cluster whose
/// layers read from replicas.
pub fn layers_or_map_changed(view: &View) {
    let mut near = std::collections::BTreeSet::new();
    let mut tracked = std::collections::BTreeSet::new();
    for map in &view.topology.clusters {
        let backend = map.link.backend;
        let on_backend = || {
            view.layers.iter().map(|(_, l)| l).filter(move |l| {
                l.spec.backend.as_ref().map(|b| usize::from(b.index)) == Some(backend)
            })
        };
        let reads_replicas =
            on_backend().any(|l| l.spec.read_from == crate::config::ReadFrom::Replica);
        map.link
            .replica_reads
            .store(reads_replicas, std::sync::atomic::Ordering::Relaxed);
        let set = if on_backend().any(|l| l.near.is_some()) {
            &mut near
        } else {
            &mut tracked
        };
        set.extend(map.primaries());
    }
    view.layers.coherence().expect_backends(near, tracked);
}

fn link_of(view: &View, backend: usize) -> Option<Arc<ClusterLink>> {
    view.topology.clusters.get(backend).map(|m| m.link.clone())
}

/// Asks the cluster of `backend` for its slot map and swaps it in when it changed.
pub async fn refresh(
    control: &Arc<Control>,
    router: &Arc<Router>,
    backend: usize,
) -> Result<(), RefreshError> {
    let view = control.live.load_full();
    let Some(map) = view.topology.clusters.get(backend).cloned() else {
        return Ok(());
    };
    let ranges = match &sentinel_of(&view, backend) {
        Some(s) => ask_sentinels(&view, &map, s).await?,
        None => ask_cluster(&view, &map).await?,
    };
    let link = map.link.clone();
    if ranges != map.ranges {
        let added = control
            .live
            .change(|current| changed(current, backend, ranges))
            .unwrap_or_else(|e: String| {
                tracing::error!(backend = %link.name, error = %e, "slot map not applied");
                Vec::new()
            });
        for slot in added {
            crate::health::heartbeat::start_one(router, slot);
            crate::tracking::start_backend_node(router, slot);
        }
        // The invalidation streams needed follow the primaries.
        layers_or_map_changed(&control.live.load());
    }
    link.refresh.learnt();
    Ok(())
}

/// The addresses to ask, in order: the primaries the map knows that are not marked down, its
/// other nodes, then the seeds; each once.
fn candidates(view: &View, map: &SlotMap, backend: usize) -> Vec<String> {
    let topology = &view.topology;
    let mut out: Vec<String> = Vec::new();
    let mut push = |addr: &str| {
        if !out.iter().any(|a| a == addr) {
            out.push(addr.to_string());
        }
    };
    let up = |&s: &usize| topology.node(s).is_some_and(|n| !n.health.is_down());
    let primaries: Vec<usize> = map.primaries().collect();
    for &slot in primaries.iter().filter(|s| up(s)) {
        if let Some(n) = topology.node(slot) {
            push(&n.addr);
        }
    }
    for &slot in map.nodes.iter().filter(|s| up(s)) {
        if let Some(n) = topology.node(slot) {
            push(&n.addr);
        }
    }
    if let Some(b) = view.settings.config.backends.get(backend) {
        for seed in b.seeds() {
            push(seed);
        }
    }
    out
}

/// The sentinel settings of `backend` (`None` for a Redis Cluster).
fn sentinel_of(view: &View, backend: usize) -> Option<crate::config::backends::SentinelConfig> {
    let backends = &view.settings.config.backends;
    backends.get(backend).and_then(|b| b.sentinel.clone())
}

/// One command asked of the backend's node at `addr` on a connection of its own (the node's
/// credentials and TLS), connect and reply within the configured timeouts.
async fn ask_node(
    view: &View,
    map: &SlotMap,
    addr: &str,
    args: &[&str],
) -> Result<crate::protocol::NodeReply, RefreshError> {
    let settings = &view.settings;
    let id = node_id(&map.link.name, addr);
    let credentials = settings.config.credentials_for(&id);
    let tls = settings.node_tls_for(&id, addr).ok().flatten();
    let asked = async {
        let mut client = RespClient::connect_with(
            addr,
            credentials.as_ref(),
            tls.as_deref(),
            Proto::Resp2,
            settings.config.timeouts.connect,
        )
        .await?;
        client.call(args).await
    };
    match tokio::time::timeout(settings.config.timeouts.request, asked).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(source)) => Err(RefreshError::Call {
            addr: addr.to_string(),
            source,
        }),
        Err(_) => Err(RefreshError::TimedOut {
            addr: addr.to_string(),
        }),
    }
}

/// `CLUSTER SLOTS` of the first candidate that answers it.
async fn ask_cluster(view: &View, map: &SlotMap) -> Result<Vec<SlotRange>, RefreshError> {
    let mut last = RefreshError::NoCandidate;
    for addr in candidates(view, map, map.link.backend) {
        let reply = match ask_node(view, map, &addr, &["CLUSTER", "SLOTS"]).await {
            Ok(reply) => reply,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let host = crate::config::split_host_port(&addr).map_or("127.0.0.1", |(h, _)| h);
        match parse_cluster_slots(&reply.frame, host) {
            // A node that lost its cluster (all slots unassigned) is asked no further.
            Ok(ranges) if !ranges.is_empty() => return Ok(ranges),
            Ok(_) => {
                last = RefreshError::Slots {
                    addr,
                    source: SlotsError::Malformed("no slot is served"),
                }
            }
            Err(source) => last = RefreshError::Slots { addr, source },
        }
    }
    Err(last)
}

/// Where the sentinels say the primary is, checked with `ROLE` on it: one range of every slot.
async fn ask_sentinels(
    view: &View,
    map: &SlotMap,
    config: &crate::config::backends::SentinelConfig,
) -> Result<Vec<SlotRange>, RefreshError> {
    let settings = &view.settings;
    let (connect, timeout) = (
        settings.config.timeouts.connect,
        settings.config.timeouts.request,
    );
    let credentials = sentinel_credentials(config);
    let mut last = RefreshError::NoCandidate;
    for addr in &config.sentinels {
        let tls = settings
            .node_tls_for(&node_id(&map.link.name, addr), addr)
            .ok()
            .flatten();
        let asked = async {
            let mut client = RespClient::connect_with(
                addr,
                credentials.as_ref(),
                tls.as_deref(),
                Proto::Resp2,
                connect,
            )
            .await?;
            let primary = client
                .call(&[
                    "SENTINEL",
                    "get-master-addr-by-name",
                    config.master.as_str(),
                ])
                .await?;
            let replicas = client
                .call(&["SENTINEL", "replicas", config.master.as_str()])
                .await?;
            Ok::<_, CallError>((primary, replicas))
        };
        let (primary, replicas) = match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(source)) => {
                last = RefreshError::Call {
                    addr: addr.clone(),
                    source,
                };
                continue;
            }
            Err(_) => {
                last = RefreshError::TimedOut { addr: addr.clone() };
                continue;
            }
        };
        let Some(primary) = host_port(&primary.frame) else {
            last = RefreshError::Sentinel {
                addr: addr.clone(),
                reason: format!("does not know a primary named {:?}", config.master),
            };
            continue;
        };
        if let Err(reason) = is_primary(view, map, &primary).await {
            last = RefreshError::Sentinel {
                addr: addr.clone(),
                reason,
            };
            continue;
        }
        return Ok(vec![SlotRange {
            start: 0,
            end: (crate::cluster::slots::SLOT_COUNT - 1) as u16,
            primary,
            replicas: replica_addrs(&replicas.frame),
        }]);
    }
    Err(last)
}

/// `host:port` from a `[host, port]` reply (nil: the sentinel does not know the name).
fn host_port(frame: &redis_protocol::resp2::types::BytesFrame) -> Option<String> {
    let redis_protocol::resp2::types::BytesFrame::Array(parts) = frame else {
        return None;
    };
    let host = parts.first()?.as_str()?;
    let port: u16 = parts.get(1)?.as_str()?.parse().ok()?;
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The replicas a `SENTINEL replicas` reply lists that are up (no `s_down`, `o_down` or
/// `disconnected` flag).
fn replica_addrs(frame: &redis_protocol::resp2::types::BytesFrame) -> Vec<String> {
    use redis_protocol::resp2::types::BytesFrame;
    let BytesFrame::Array(replicas) = frame else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for replica in replicas {
        let BytesFrame::Array(fields) = replica else {
            continue;
        };
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv.first().and_then(|k| k.as_str()) == Some(name))
                .and_then(|kv| kv.get(1))
                .and_then(|v| v.as_str())
        };
        let down = field("flags").is_some_and(|f| {
            f.split(',')
                .any(|x| matches!(x, "s_down" | "o_down" | "disconnected"))
        });
        if let (false, Some(ip), Some(port)) = (down, field("ip"), field("port")) {
            out.push(format!("{ip}:{port}"));
        }
    }
    out
}

/// Checks with `ROLE` that the node at `addr` is a primary (a sentinel's answer may be ahead
/// of, or behind, the node itself during a failover).
async fn is_primary(view: &View, map: &SlotMap, addr: &str) -> Result<(), String> {
    match ask_node(view, map, addr, &["ROLE"]).await {
        Ok(reply) => match &reply.frame {
            redis_protocol::resp2::types::BytesFrame::Array(parts)
                if parts.first().and_then(|p| p.as_str()) == Some("master") =>
            {
                Ok(())
            }
            _ => Err(format!(
                "its primary {addr} does not answer ROLE as a primary"
            )),
        },
        Err(e) => Err(format!("its primary: {e}")),
    }
}

/// The id strata gives a node of a cluster backend (INFO, logs, metric labels).
pub fn node_id(backend: &str, addr: &str) -> String {
    format!("{backend}@{addr}")
}

/// The view with `ranges` as the map of `backend`, and the topology slots of the nodes added
/// for it.
fn changed(
    current: &View,
    backend: usize,
    ranges: Vec<SlotRange>,
) -> Result<(View, Vec<usize>), String> {
    let topology = &current.topology;
    let Some(old) = topology.clusters.get(backend) else {
        return Err("no such cluster backend".into());
    };
    let link = old.link.clone();
    let mut nodes = old.nodes.clone();
    let mut added: Vec<Arc<NodeInfo>> = Vec::new();
    let addrs = ranges
        .iter()
        .flat_map(|r| std::iter::once(&r.primary).chain(r.replicas.iter()));
    for addr in addrs {
        let known =
            topology.cluster_node(backend, addr).is_some() || added.iter().any(|n| n.addr == *addr);
        if known {
            continue;
        }
        let slot = topology.nodes.len() + added.len();
        let max = current.settings.config.limits.max_nodes;
        if slot >= max {
            return Err(format!(
                "no room for cluster node {addr}: limits.max_nodes is {max}"
            ));
        }
        added.push(cluster_node(&current.settings, slot, &link, addr)?);
        nodes.push(slot);
    }
    let slot_of = |addr: &str| {
        topology
            .cluster_node(backend, addr)
            .or_else(|| added.iter().find(|n| n.addr == addr).map(|n| n.index))
    };
    let map = SlotMap::build(link.clone(), ranges, slot_of, nodes, old.version + 1);
    tracing::info!(
        backend = %link.name,
        version = map.version,
        shards = map.shards().len(),
        covered = map.covered(),
        new_nodes = added.len(),
        "cluster slot map changed"
    );
    let slots: Vec<usize> = added.iter().map(|n| n.index).collect();
    let view = View {
        settings: current.settings.clone(),
        acl: current.acl.clone(),
        topology: Arc::new(topology.with_cluster_map(backend, map, added)),
        layers: current.layers.clone(),
    };
    Ok((view, slots))
}

/// A node of cluster backend `link` at `addr`, in topology slot `slot`: the global `backend`
/// credentials and TLS, the health thresholds of every node.
fn cluster_node(
    settings: &Settings,
    slot: usize,
    link: &Arc<ClusterLink>,
    addr: &str,
) -> Result<Arc<NodeInfo>, String> {
    let config = &settings.config;
    let id = node_id(&link.name, addr);
    let tls = settings.node_tls_for(&id, addr)?;
    Ok(Arc::new(
        NodeInfo::new(slot, id.clone(), addr.to_string(), 1, settings.workers)
            .configured(
                crate::cluster::health::Thresholds::from(&config.health),
                &config.repair,
            )
            .with_credentials(config.credentials_for(&id))
            .with_tls(tls)
            .in_cluster(link.clone()),
    ))
}
