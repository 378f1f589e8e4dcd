//! `/metrics`: the per-layer families (hits, misses, writes, ..., the near cache's figures,
//! key counts and request latency by class).

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{counters, gauges, histogram, R};
use crate::control::Control;
use crate::stats::LayerTotals;

/// Every layer family, labelled by layer.
pub(super) fn encode(e: &mut DescriptorEncoder<'_>, s: &Control) -> R {
    let view = s.live.load();
    let all_layers = &view.layers;
    let layers: Vec<(&str, LayerTotals)> = all_layers
        .iter()
        .map(|(_, l)| (l.spec.name.as_str(), l.stats.totals()))
        .collect();
    type Pick = fn(&LayerTotals) -> u64;
    let layer_counters: [(&str, &str, Pick); 12] = [
        ("layer_hits", "Reads that found a value.", |t| t.hits),
        ("layer_misses", "Reads that found nothing.", |t| t.misses),
        ("layer_writes", "Successful writes (per key).", |t| t.writes),
        ("layer_deletes", "Keys named by DEL, UNLINK, GETDEL.", |t| {
            t.deletes
        }),
        (
            "layer_invalidations",
            "Keys removed by STRATA INVALIDATE.",
            |t| t.invalidations,
        ),
        (
            "layer_expirations",
            "TTLs set or clamped by the layer's TTL policy.",
            |t| t.expirations,
        ),
        ("layer_warms", "Keys written by STRATA WARM.", |t| t.warms),
        ("layer_errors", "Requests answered with an error.", |t| {
            t.errors
        }),
        (
            "layer_failovers",
            "Reads that moved on to the next replica after an error or a slow answer.",
            |t| t.failovers,
        ),
        (
            "layer_miss_failovers",
            "Reads that asked the next replica after a miss (miss failover).",
            |t| t.miss_failovers,
        ),
        (
            "layer_repairs",
            "Replica copies rewritten by read repair or miss failover.",
            |t| t.repairs,
        ),
        (
            "layer_write_failures",
            "Writes that reached fewer replicas than their consistency needs.",
            |t| t.write_failures,
        ),
    ];
    for (name, help, pick) in layer_counters {
        counters(
            e,
            name,
            help,
            "layer",
            layers.iter().map(|(n, t)| (*n, pick(t))),
        )?;
    }
    gauges(
        e,
        "layer_keys",
        "Keys of the layer on the nodes at the last count (-1: not counted yet).",
        "layer",
        layers.iter().map(|(n, t)| {
            (
                *n,
                t.keys.map_or(-1, |k| i64::try_from(k).unwrap_or(i64::MAX)),
            )
        }),
    )?;
    // The figures of the near-cached layers (docs/near-cache.md) and of the coalescing ones
    // (docs/coalescing.md): each family lists the layers that have it.
    let features: Vec<(&str, Vec<(&'static str, u64)>)> = all_layers
        .iter()
        .map(|(_, l)| {
            let t = l.stats.totals();
            (
                l.spec.name.as_str(),
                crate::builtin::report::feature_fields(l, &t),
            )
        })
        .filter(|(_, fields)| !fields.is_empty())
        .collect();
    let feature_help: [(&str, &str, bool); 10] = [
        ("near_hits", "GETs answered from the near cache.", true),
        (
            "near_misses",
            "GETs of a near-cached layer sent to a node.",
            true,
        ),
        ("near_fills", "Values kept in the near cache.", true),
        (
            "near_fills_dropped",
            "Values not kept: an invalidation or flush overtook their fill.",
            true,
        ),
        (
            "near_invalidations",
            "Near cache entries removed by an invalidation.",
            true,
        ),
        (
            "near_evictions",
            "Near cache entries evicted to stay within max_bytes.",
            true,
        ),
        ("near_flushes", "Times the near cache was emptied.", true),
        (
            "near_bytes",
            "Bytes the near cache holds (keys, values, per-entry overhead).",
            false,
        ),
        ("near_entries", "Entries the near cache holds.", false),
        (
            "coalesced",
            "Reads that waited for an identical read in flight instead of being sent.",
            true,
        ),
    ];
    for (field, help, counter) in feature_help {
        let values: Vec<(&str, u64)> = features
            .iter()
            .filter_map(|(n, f)| {
                let (_, v) = f.iter().find(|(name, _)| *name == field)?;
                Some((*n, *v))
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        let name = format!("layer_{field}");
        if counter {
            counters(e, &name, help, "layer", values.into_iter())?;
        } else {
            gauges(
                e,
                &name,
                help,
                "layer",
                values
                    .into_iter()
                    .map(|(n, v)| (n, i64::try_from(v).unwrap_or(i64::MAX))),
            )?;
        }
    }
    {
        let mut m = e.encode_descriptor(
            "layer_request_duration_seconds",
            "Time from reading a request to its reply, per layer and command class.",
            None,
            MetricType::Histogram,
        )?;
        for (name, t) in &layers {
            for class in crate::stats::Class::ALL {
                if let Some(l) = t.latency.get(class as usize) {
                    histogram(&mut m, &[("layer", *name), ("class", class.name())], l)?;
                }
            }
        }
    }
    Ok(())
}
