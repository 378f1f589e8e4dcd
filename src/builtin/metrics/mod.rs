//! `/metrics`: strata's statistics in the Prometheus text format, via prometheus-client.
//!
//! The hot path keeps counting into strata's own per-worker counters and histograms; a
//! [`Collector`] registered in a [`Registry`] reads them at scrape time. So a scrape costs a
//! walk over the counters, and a request costs no prometheus-client atomics at all.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::backend::ErrorKind;
use crate::command::table::command_name;
use crate::command::table::COMMANDS;
use crate::control::Control;
mod backends;
mod layers;

use crate::stats::latency::Latency;

/// Reads strata's statistics on each scrape.
pub struct StrataCollector {
    control: Arc<Control>,
}

impl fmt::Debug for StrataCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StrataCollector")
    }
}

/// The registry `/metrics` encodes: every metric is named `strata_...`.
pub fn registry(control: Arc<Control>) -> Registry {
    let mut registry = Registry::with_prefix("strata");
    registry.register_collector(Box::new(StrataCollector { control }));
    registry
}

/// Renders the registry in the Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "cannot render metrics");
    }
    out
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type R = Result<(), fmt::Error>;

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> R {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> R {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One counter per label value: `name{label="value"} n`.
fn counters<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> R {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, i64)>,
) -> R {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A latency histogram in seconds.
fn histogram<S: prometheus_client::encoding::EncodeLabelSet>(
    m: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &S,
    l: &Latency,
) -> R {
    let buckets = l.buckets();
    m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
        l.sum_usec() as f64 / 1e6,
        l.count(),
        &buckets,
        None,
    )
}

/// `CLIENT TRACKING` for strata's clients (docs/client-tracking.md).
fn tracking(control: &Control, e: &mut DescriptorEncoder<'_>) -> R {
    let view = control.live.load();
    let coherence = view.layers.coherence();
    let hub = &coherence.clients;
    let size = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    gauge(
        e,
        "tracking_clients",
        "Clients with CLIENT TRACKING on.",
        size(hub.clients()),
    )?;
    gauge(
        e,
        "tracking_keys",
        "Keys remembered for tracking clients (default mode).",
        size(hub.table.keys()),
    )?;
    gauge(
        e,
        "tracking_items",
        "Key-client pairs remembered for tracking clients.",
        size(hub.table.items()),
    )?;
    gauge(
        e,
        "tracking_table_bytes",
        "Bytes of the keys remembered for tracking clients (64 per key counted).",
        size(hub.table.bytes()),
    )?;
    gauge(
        e,
        "tracking_prefixes",
        "Distinct BCAST prefixes of tracking clients.",
        size(hub.prefixes()),
    )?;
    gauge(
        e,
        "tracking_covered",
        "1 while every node's invalidation stream is live and reports every key.",
        i64::from(hub.covered()),
    )?;
    let (needed, live) = coherence.stream_counts();
    gauge(
        e,
        "invalidation_streams",
        "Nodes whose invalidation stream the near cache and tracking clients need now (the ring's members, the backends' primaries).",
        size(needed),
    )?;
    gauge(
        e,
        "invalidation_streams_live",
        "Of those, the nodes whose stream is live.",
        size(live),
    )?;
    let c = &hub.counters;
    counter(
        e,
        "tracking_invalidation_messages",
        "Invalidation messages posted to tracking clients (a flush counts one).",
        c.messages.load(Relaxed),
    )?;
    counter(
        e,
        "tracking_invalidated_keys",
        "Keys named in invalidation messages to tracking clients.",
        c.keys.load(Relaxed),
    )?;
    counter(
        e,
        "tracking_flushes",
        "Flushes posted to tracking clients (a node flushed, a stream lost, FLUSHALL).",
        c.flushes.load(Relaxed),
    )?;
    counter(
        e,
        "tracking_evicted_keys",
        "Keys invalidated early to keep the tracking table within client_tracking's bounds.",
        c.evicted.load(Relaxed),
    )
}

impl Collector for StrataCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> R {
        let s = &self.control;
        let t = s.stats.totals();
        gauge(
            &mut e,
            "uptime_seconds",
            "Seconds since strata started.",
            i64::try_from(s.started.elapsed().as_secs()).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut e,
            "connected_clients",
            "Client connections open now.",
            i64::try_from(s.clients.count()).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut e,
            "blocked_clients",
            "Clients waiting on a blocking command (BLPOP, XREAD BLOCK, WAIT, ...).",
            i64::try_from(s.clients.blocked()).unwrap_or(i64::MAX),
        )?;
        tracking(s, &mut e)?;
        backends::backends(s, &mut e)?;
        gauge(
            &mut e,
            "background_in_flight",
            "Write tails and read repairs running in the background.",
            i64::try_from(s.background.in_flight()).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut e,
            "background_tails_overflow",
            "Replicated writes whose outcome was not watched (budget spent; keys hinted instead).",
            s.background.tails_overflow.load(Relaxed),
        )?;
        counter(
            &mut e,
            "background_repairs_skipped",
            "Read repairs skipped because repair.max_in_flight was reached.",
            s.background.repairs_skipped.load(Relaxed),
        )?;
        counter(
            &mut e,
            "background_repairs_failed",
            "Read repairs and miss-failover copies that failed.",
            s.background.repairs_failed.load(Relaxed),
        )?;
        for (name, value) in s.rebalance.figures() {
            let (help, is_gauge) = match name {
                "running" => ("1 while a rebalance runs.", true),
                "runs" => ("Rebalance runs completed.", false),
                "keys_scanned" => ("Keys looked at by rebalances.", false),
                "keys_moved" => ("Keys moved to their owners by rebalances.", false),
                "keys_skipped" => ("Keys whose new owner already had a value (kept).", false),
                "keys_failed" => ("Keys a rebalance could not move (left in place).", false),
                "last_ring_version" => ("Ring version of the last completed rebalance.", true),
                "last_ms" => ("Duration of the last rebalance, milliseconds.", true),
                _ => ("Rings before membership changes not rebalanced yet.", true),
            };
            let metric = format!("rebalance_{name}");
            if is_gauge {
                gauge(
                    &mut e,
                    &metric,
                    help,
                    i64::try_from(value).unwrap_or(i64::MAX),
                )?;
            } else {
                counter(&mut e, &metric, help, value)?;
            }
        }
        counter(
            &mut e,
            "connections_received",
            "Client connections accepted.",
            s.stats.connections_received.load(Relaxed),
        )?;
        counter(
            &mut e,
            "rejected_connections",
            "Client connections refused at limits.max_clients.",
            s.stats.rejected_connections.load(Relaxed),
        )?;
        counter(
            &mut e,
            "tls_connections_received",
            "Client connections that completed the TLS handshake on tls.listen.",
            s.stats.tls_connections_received.load(Relaxed),
        )?;
        counter(
            &mut e,
            "tls_handshake_failures",
            "Client connections on tls.listen whose TLS handshake failed or timed out.",
            s.stats.tls_handshake_failures.load(Relaxed),
        )?;
        counter(
            &mut e,
            "client_output_buffer_limit_disconnections",
            "Clients disconnected past limits.client_output_buffer_limit.",
            s.stats.output_limit_disconnections.load(Relaxed),
        )?;
        counter(
            &mut e,
            "client_query_buffer_limit_disconnections",
            "Clients disconnected past limits.client_query_buffer_limit.",
            s.stats.query_limit_disconnections.load(Relaxed),
        )?;
        for (name, help, value) in [
            (
                "acl_access_denied_auth",
                "Failed AUTH attempts (wrong password, unknown or disabled user).",
                &s.stats.acl_denied_auth,
            ),
            (
                "acl_access_denied_cmd",
                "Commands refused because the user may not run them.",
                &s.stats.acl_denied_cmd,
            ),
            (
                "acl_access_denied_key",
                "Commands refused because the user may not touch one of their keys.",
                &s.stats.acl_denied_key,
            ),
            (
                "acl_access_denied_channel",
                "Commands refused because the user may not use one of their channels.",
                &s.stats.acl_denied_channel,
            ),
            (
                "admin_access_denied_auth",
                "Admin endpoint requests refused for a wrong or malformed bearer token.",
                &s.stats.admin_denied_auth,
            ),
        ] {
            counter(&mut e, name, help, value.load(Relaxed))?;
        }
        counter(
            &mut e,
            "idle_timeout_disconnections",
            "Clients disconnected after limits.idle_timeout without traffic.",
            s.stats.idle_timeout_disconnections.load(Relaxed),
        )?;
        counter(
            &mut e,
            "commands_processed",
            "Requests handled.",
            t.commands,
        )?;
        counter(
            &mut e,
            "error_replies",
            "Error replies strata produced itself.",
            t.errors,
        )?;
        counter(
            &mut e,
            "net_input_bytes",
            "Bytes read from clients.",
            t.net_input_bytes,
        )?;
        counter(
            &mut e,
            "net_output_bytes",
            "Bytes written to clients.",
            t.net_output_bytes,
        )?;

        let commands: Vec<(&str, crate::stats::CommandTotals)> = (0..COMMANDS.len())
            .map(|i| (command_name(i), s.stats.command(i)))
            .filter(|(_, c)| c.calls > 0)
            .collect();
        counters(
            &mut e,
            "commands",
            "Calls per command.",
            "command",
            commands.iter().map(|(n, c)| (*n, c.calls)),
        )?;
        counters(
            &mut e,
            "command_errors",
            "Calls per command answered with an error.",
            "command",
            commands.iter().map(|(n, c)| (*n, c.failed)),
        )?;

        layers::encode(&mut e, s)?;

        let view = s.live.load();
        let topology = &view.topology;
        let nodes: Vec<(&str, &crate::cluster::NodeInfo, crate::stats::NodeTotals)> = topology
            .member_nodes()
            .map(|n| (n.id.as_str(), n.as_ref(), n.stats.totals()))
            .collect();
        gauges(
            &mut e,
            "node_up",
            "1 while the node is up (strata sends it requests), 0 while it is marked down.",
            "node",
            nodes
                .iter()
                .map(|(id, n, _)| (*id, i64::from(!n.health.is_down()))),
        )?;
        gauges(
            &mut e,
            "node_connections",
            "Backend connections open to the node.",
            "node",
            nodes
                .iter()
                .map(|(id, n, _)| (*id, i64::try_from(n.status.connected()).unwrap_or(i64::MAX))),
        )?;
        counters(
            &mut e,
            "node_requests",
            "Requests written to the node.",
            "node",
            nodes.iter().map(|(id, _, t)| (*id, t.requests)),
        )?;
        counters(
            &mut e,
            "node_errors",
            "Requests that got no reply from the node (unreachable, connection lost, timeout).",
            "node",
            nodes.iter().map(|(id, _, t)| (*id, t.errors)),
        )?;
        {
            let mut m = e.encode_descriptor(
                "node_errors_by_kind",
                "Requests that got no reply from the node, by kind of failure (refused, timed_out, closed, protocol, auth); they sum to node_errors.",
                None,
                MetricType::Counter,
            )?;
            for (id, _, t) in &nodes {
                for kind in ErrorKind::COUNTED {
                    let n = t.errors_by_kind.get(kind.index()).copied().unwrap_or(0);
                    let labels = [("node", *id), ("kind", kind.label())];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        counters(
            &mut e,
            "node_timeouts",
            "Requests that timed out on the node.",
            "node",
            nodes.iter().map(|(id, _, t)| (*id, t.timeouts)),
        )?;
        counters(
            &mut e,
            "node_connection_failures",
            "Failed or lost connections to the node.",
            "node",
            nodes.iter().map(|(id, n, _)| (*id, n.status.failures())),
        )?;
        counters(
            &mut e,
            "node_down_transitions",
            "Times the node was marked down.",
            "node",
            nodes
                .iter()
                .map(|(id, n, _)| (*id, n.health.transitions().0)),
        )?;
        counters(
            &mut e,
            "node_up_transitions",
            "Times the node was marked up again.",
            "node",
            nodes
                .iter()
                .map(|(id, n, _)| (*id, n.health.transitions().1)),
        )?;
        let hints: Vec<(&str, crate::cluster::hints::HintTotals)> = nodes
            .iter()
            .map(|(id, n, _)| (*id, n.hints.totals()))
            .collect();
        gauges(
            &mut e,
            "node_hints_pending",
            "Keys waiting to be copied to the node (hinted handoff).",
            "node",
            hints
                .iter()
                .map(|(id, h)| (*id, i64::try_from(h.pending).unwrap_or(i64::MAX))),
        )?;
        counters(
            &mut e,
            "node_hints_stored",
            "Hints stored for the node (writes it missed).",
            "node",
            hints.iter().map(|(id, h)| (*id, h.stored)),
        )?;
        counters(
            &mut e,
            "node_hints_replayed",
            "Hinted keys copied to the node once it was up.",
            "node",
            hints.iter().map(|(id, h)| (*id, h.replayed)),
        )?;
        counters(
            &mut e,
            "node_hints_dropped",
            "Hints given up: over repair.max_hints_per_node, or no live replica to copy from.",
            "node",
            hints.iter().map(|(id, h)| (*id, h.dropped)),
        )?;
        gauges(
            &mut e,
            "node_refilling",
            "1 while the node restarted and is not refilled yet (its misses are not believed).",
            "node",
            nodes
                .iter()
                .map(|(id, n, _)| (*id, i64::from(n.refill.is_refilling()))),
        )?;
        for (i, (name, help)) in [
            (
                "node_restarts",
                "Restarts of the node seen (its Redis run_id changed).",
            ),
            (
                "node_refills",
                "Refills of the node completed after a restart.",
            ),
            (
                "node_refill_keys_scanned",
                "Keys of other nodes looked at by refills of the node.",
            ),
            (
                "node_refill_keys_copied",
                "Keys copied to the node by refills.",
            ),
            (
                "node_refill_keys_present",
                "Keys a refill found on the node already.",
            ),
            (
                "node_refill_keys_failed",
                "Keys a refill could not copy to the node.",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            counters(
                &mut e,
                name,
                help,
                "node",
                nodes
                    .iter()
                    .map(|(id, n, _)| (*id, n.refill.figures().get(i).map_or(0, |(_, v)| *v))),
            )?;
        }
        let mut m = e.encode_descriptor(
            "node_request_duration_seconds",
            "Time from writing a request to a node to reading its reply.",
            None,
            MetricType::Histogram,
        )?;
        for (id, _, t) in &nodes {
            histogram(&mut m, &[("node", *id)], &t.latency)?;
        }
        Ok(())
    }
}
