//! `/metrics`: the Redis Cluster and Sentinel backends' families (slot map, redirects,
//! refreshes), labelled by backend name.

use prometheus_client::encoding::DescriptorEncoder;

use super::{counters, gauges, R};
use crate::control::Control;

/// The Redis Cluster backends (docs/redis-cluster.md), labelled by backend name.
pub(super) fn backends(control: &Control, e: &mut DescriptorEncoder<'_>) -> R {
    use crate::cluster::slots::MapRefresh;
    let view = control.live.load();
    let maps = &view.topology.clusters;
    if maps.is_empty() {
        return Ok(());
    }
    let name = |m: &std::sync::Arc<crate::cluster::slots::SlotMap>| m.link.name.clone();
    let names: Vec<String> = maps.iter().map(name).collect();
    let each = |f: &dyn Fn(&crate::cluster::slots::SlotMap) -> u64| -> Vec<(usize, u64)> {
        maps.iter().enumerate().map(|(i, m)| (i, f(m))).collect()
    };
    let gauge_of = |v: Vec<(usize, u64)>| -> Vec<(&str, i64)> {
        v.into_iter()
            .filter_map(|(i, n)| {
                Some((names.get(i)?.as_str(), i64::try_from(n).unwrap_or(i64::MAX)))
            })
            .collect()
    };
    let counter_of = |v: Vec<(usize, u64)>| -> Vec<(&str, u64)> {
        v.into_iter()
            .filter_map(|(i, n)| Some((names.get(i)?.as_str(), n)))
            .collect()
    };
    gauges(
        e,
        "cluster_slots_covered",
        "Hash slots a node serves in strata's slot map of the Redis Cluster backend.",
        "backend",
        gauge_of(each(&|m| m.covered() as u64)).into_iter(),
    )?;
    gauges(
        e,
        "cluster_shards",
        "Primaries serving slots in strata's slot map of the Redis Cluster backend.",
        "backend",
        gauge_of(each(&|m| m.shards().len() as u64)).into_iter(),
    )?;
    for (metric, help, f) in [
        (
            "cluster_moved_redirects",
            "MOVED replies followed for clients.",
            (|m: &crate::cluster::slots::SlotMap| MapRefresh::count(&m.link.refresh.moved))
                as fn(&crate::cluster::slots::SlotMap) -> u64,
        ),
        ("cluster_ask_redirects", "ASK replies followed for clients.", |m| {
            MapRefresh::count(&m.link.refresh.asked)
        }),
        (
            "cluster_redirect_errors",
            "Redirects passed to the client as errors (max_redirects reached, unknown node, follower queue full).",
            |m| MapRefresh::count(&m.link.refresh.redirect_errors),
        ),
        ("cluster_map_refreshes", "Slot maps asked of the cluster successfully.", |m| {
            MapRefresh::count(&m.link.refresh.refreshes)
        }),
        (
            "cluster_map_refresh_failures",
            "Slot-map refreshes that found no node of the cluster answering.",
            |m| MapRefresh::count(&m.link.refresh.refresh_failures),
        ),
    ] {
        counters(e, metric, help, "backend", counter_of(each(&f)).into_iter())?;
    }
    Ok(())
}
