//! strata's statistics as INFO sections (`# Layers`, `# Latency`, `# Nodes`, `# Backends`,
//! `# Commandstats`)
//! and as the RESP replies of `STRATA LAYERS` and `STRATA STATS`: the same figures, two forms.

use std::fmt::Write as _;

use crate::control::Control;
use crate::policy::Layer;
use crate::protocol::Reply;
use crate::stats::{Class, Latency, LayerTotals, PERCENTILES};

use crate::command::table::command_name;
use crate::command::table::COMMANDS;

/// `hit_rate` with four decimals.
fn rate(t: &LayerTotals) -> String {
    format!("{:.4}", t.hit_rate())
}

/// `p50_usec=..,p95_usec=..,p99_usec=..,p999_usec=..`
fn percentiles_text(l: &Latency) -> String {
    let mut out = String::new();
    for (i, (name, q)) in PERCENTILES.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}_usec={}", l.percentile(*q));
    }
    out
}

fn percentiles_fields(l: &Latency, out: &mut Vec<Reply>) {
    for (name, q) in PERCENTILES {
        out.push(Reply::text(format!("{name}_usec")));
        out.push(Reply::Integer(
            i64::try_from(l.percentile(q)).unwrap_or(i64::MAX),
        ));
    }
}

fn int(n: u64) -> Reply {
    Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn ms(d: Option<std::time::Duration>) -> Reply {
    match d {
        Some(d) => Reply::Integer(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        None => Reply::Integer(-1),
    }
}

/// The key count, -1 while unknown.
fn keys(t: &LayerTotals) -> i64 {
    t.keys.map_or(-1, |k| i64::try_from(k).unwrap_or(i64::MAX))
}

/// INFO `# Layers`: one line per layer.
pub fn layers_section(control: &Control, out: &mut String) {
    out.push_str("# Layers\r\n");
    for (_, layer) in control.live.load().layers.iter() {
        let t = layer.stats.totals();
        let _ = write!(
            out,
            "layer_{}:prefix={},ttl_ms={},max_ttl_ms={},hits={},misses={},hit_rate={},writes={},deletes={},invalidations={},expirations={},warms={},errors={},failovers={},miss_failovers={},repairs={},write_failures={},replication={},keys={},{}{}\r\n",
            layer.spec.name,
            layer.spec.prefix.replace([',', '\r', '\n'], " "),
            layer.spec.ttl_ms().map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
            layer.spec.max_ttl_ms().map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
            t.hits,
            t.misses,
            rate(&t),
            t.writes,
            t.deletes,
            t.invalidations,
            t.expirations,
            t.warms,
            t.errors,
            t.failovers,
            t.miss_failovers,
            t.repairs,
            t.write_failures,
            layer.spec.replication,
            keys(&t),
            near_text(layer, &t),
            percentiles_text(&t.all_latency()),
        );
    }
}

/// The figures of the features a layer has turned on, in the order INFO and STRATA LAYERS
/// give them: its near cache's, and `coalesced` when it coalesces reads; empty for a layer
/// with neither.
pub fn feature_fields(layer: &Layer, t: &LayerTotals) -> Vec<(&'static str, u64)> {
    let mut out = near_fields(layer, t);
    if layer.spec.coalesce {
        out.push(("coalesced", t.coalesced));
    }
    out
}

fn near_fields(layer: &Layer, t: &LayerTotals) -> Vec<(&'static str, u64)> {
    let Some(store) = &layer.near else {
        return Vec::new();
    };
    let f = store.figures();
    vec![
        ("near_hits", t.near_hits),
        ("near_misses", t.near_misses),
        ("near_fills", f.fills),
        ("near_fills_dropped", f.fills_dropped),
        ("near_invalidations", f.invalidations),
        ("near_evictions", f.evictions),
        ("near_flushes", f.flushes),
        ("near_bytes", f.bytes),
        ("near_entries", f.entries),
    ]
}

/// [`feature_fields`] as INFO's `name=value,` text.
fn near_text(layer: &Layer, t: &LayerTotals) -> String {
    let mut s = String::new();
    for (name, v) in feature_fields(layer, t) {
        let _ = write!(s, "{name}={v},");
    }
    s
}

/// Latency per command class: every layer's plus the requests without keys.
pub fn class_latency(control: &Control) -> [Latency; 3] {
    let mut by_class = control.stats.keyless_latency();
    for (_, layer) in control.live.load().layers.iter() {
        let t = layer.stats.totals();
        for (sum, l) in by_class.iter_mut().zip(&t.latency) {
            sum.merge(l);
        }
    }
    by_class
}

/// INFO `# Latency`: request latency per command class.
pub fn latency_section(control: &Control, out: &mut String) {
    out.push_str("# Latency\r\n");
    let by_class = class_latency(control);
    for class in Class::ALL {
        if let Some(l) = by_class.get(class as usize) {
            let _ = write!(
                out,
                "class_{}:calls={},{}\r\n",
                class.name(),
                l.count(),
                percentiles_text(l)
            );
        }
    }
}

/// INFO `# Nodes`: one line per node.
pub fn nodes_section(control: &Control, out: &mut String) {
    out.push_str("# Nodes\r\n");
    let topology = control.live.load().topology.clone();
    for node in topology.member_nodes() {
        let s = &node.status;
        let t = node.stats.totals();
        let last_error = s
            .last_error()
            .unwrap_or_default()
            .replace([',', '\r', '\n'], " ");
        let (went_down, came_up) = node.health.transitions();
        let h = node.hints.totals();
        let reason = node
            .health
            .reason()
            .unwrap_or_default()
            .replace([',', '\r', '\n'], " ");
        let _ = write!(
            out,
            "node_{}:addr={},tls={},weight={},state={},down_transitions={},up_transitions={},connections={},requests={},errors={},timeouts={},failures={},hints_pending={},hints_stored={},hints_replayed={},hints_dropped={},refill={},restarts={},refills={},refill_copied={},{},last_error={},health_reason={}\r\n",
            node.id,
            node.addr,
            u8::from(node.tls().is_some()),
            node.weight(),
            node.health.state(),
            went_down,
            came_up,
            s.connected(),
            t.requests,
            t.errors,
            t.timeouts,
            s.failures(),
            h.pending,
            h.stored,
            h.replayed,
            h.dropped,
            node.refill.state().label(),
            node.refill.restarts.load(std::sync::atomic::Ordering::Relaxed),
            node.refill.runs.load(std::sync::atomic::Ordering::Relaxed),
            node.refill.copied.load(std::sync::atomic::Ordering::Relaxed),
            percentiles_text(&t.latency),
            last_error,
            reason,
        );
    }
}

/// INFO `# Repair`: background convergence work (write tails, read repair, hinted handoff).
pub fn repair_section(control: &Control, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let b = &control.background;
    let mut hints = crate::cluster::hints::HintTotals::default();
    let topology = control.live.load().topology.clone();
    for node in topology.nodes.iter() {
        let h = node.hints.totals();
        hints.pending += h.pending;
        hints.stored += h.stored;
        hints.replayed += h.replayed;
        hints.dropped += h.dropped;
    }
    // Restarts and refills, all members together.
    let mut refill = [0u64; 7];
    let mut refilling = 0;
    for node in topology.member_nodes() {
        refilling += usize::from(node.refill.is_refilling());
        for (sum, (_, v)) in refill.iter_mut().zip(node.refill.figures()) {
            *sum += v;
        }
    }
    let _ = write!(
        out,
        "# Repair\r\nbackground_in_flight:{}\r\nbackground_max:{}\r\ntails_overflow:{}\r\nrepairs_skipped:{}\r\nrepairs_failed:{}\r\nhints_pending:{}\r\nhints_stored:{}\r\nhints_replayed:{}\r\nhints_dropped:{}\r\nnodes_refilling:{refilling}\r\n",
        b.in_flight(),
        control.live.load().settings.config.repair.max_in_flight,
        b.tails_overflow.load(Relaxed),
        b.repairs_skipped.load(Relaxed),
        b.repairs_failed.load(Relaxed),
        hints.pending,
        hints.stored,
        hints.replayed,
        hints.dropped,
    );
    let names = crate::cluster::refill::Refill::default().figures();
    for ((name, _), v) in names.iter().zip(refill) {
        if *name != "refill_last_ms" {
            let _ = write!(out, "{name}:{v}\r\n");
        }
    }
}

/// INFO `# Rebalance`: keys moved after membership changes (`rebalance/`).
pub fn rebalance_section(control: &Control, out: &mut String) {
    out.push_str("# Rebalance\r\n");
    for (name, value) in control.rebalance.figures() {
        let _ = write!(out, "rebalance_{name}:{value}\r\n");
    }
    let error = control.rebalance.last_error().unwrap_or_default();
    let _ = write!(
        out,
        "rebalance_last_error:{}\r\n",
        error.replace(['\r', '\n'], " ")
    );
}

/// INFO `# Commandstats`, in Redis's format, for the commands called or refused at least once.
pub fn commandstats_section(control: &Control, out: &mut String) {
    out.push_str("# Commandstats\r\n");
    for index in 0..COMMANDS.len() {
        let c = control.stats.command(index);
        if c.calls == 0 && c.rejected == 0 {
            continue;
        }
        let per_call = if c.calls == 0 {
            0.0
        } else {
            c.usec as f64 / c.calls as f64
        };
        let _ = write!(
            out,
            "cmdstat_{}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            command_name(index),
            c.calls,
            c.usec,
            c.rejected,
            c.failed,
        );
    }
}

/// One layer as a flat field/value array.
fn layer_reply(layer: &Layer) -> Reply {
    let spec = &layer.spec;
    let t = layer.stats.totals();
    let mut f = vec![
        Reply::bulk("name"),
        Reply::text(spec.name.clone()),
        Reply::bulk("prefix"),
        Reply::text(spec.prefix.clone()),
        Reply::bulk("key"),
        Reply::text(
            spec.key
                .as_ref()
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
        ),
        Reply::bulk("ttl_ms"),
        ms(spec.ttl),
        Reply::bulk("max_ttl_ms"),
        ms(spec.max_ttl),
        Reply::bulk("replication"),
        int(spec.replication as u64),
        Reply::bulk("write_consistency"),
        Reply::text(format!("{:?}", spec.write_consistency).to_ascii_lowercase()),
        Reply::bulk("read_consistency"),
        Reply::text(format!("{:?}", spec.read_consistency).to_ascii_lowercase()),
        Reply::bulk("hits"),
        int(t.hits),
        Reply::bulk("misses"),
        int(t.misses),
        Reply::bulk("hit_rate"),
        Reply::text(rate(&t)),
        Reply::bulk("writes"),
        int(t.writes),
        Reply::bulk("deletes"),
        int(t.deletes),
        Reply::bulk("invalidations"),
        int(t.invalidations),
        Reply::bulk("expirations"),
        int(t.expirations),
        Reply::bulk("warms"),
        int(t.warms),
        Reply::bulk("errors"),
        int(t.errors),
        Reply::bulk("failovers"),
        int(t.failovers),
        Reply::bulk("miss_failovers"),
        int(t.miss_failovers),
        Reply::bulk("repairs"),
        int(t.repairs),
        Reply::bulk("write_failures"),
        int(t.write_failures),
        Reply::bulk("miss_failover"),
        int(u64::from(spec.miss_failover)),
        Reply::bulk("eject_on_down"),
        int(u64::from(spec.eject_on_down)),
        Reply::bulk("keys"),
        Reply::Integer(keys(&t)),
    ];
    for (name, v) in feature_fields(layer, &t) {
        f.push(Reply::bulk(name));
        f.push(int(v));
    }
    let all = t.all_latency();
    f.push(Reply::bulk("requests"));
    f.push(int(all.count()));
    percentiles_fields(&all, &mut f);
    Reply::Array(f)
}

/// STRATA LAYERS: one field/value array per layer, the default layer last.
pub fn layers_reply(control: &Control) -> Reply {
    Reply::Array(
        control
            .live
            .load()
            .layers
            .iter()
            .map(|(_, l)| layer_reply(l))
            .collect(),
    )
}

/// STRATA STATS: totals, then `classes`, `layers` and `nodes`, as a field/value array.
pub fn stats_reply(control: &Control) -> Reply {
    use std::sync::atomic::Ordering::Relaxed;
    let t = control.stats.totals();
    let classes = class_latency(control);
    let classes = Class::ALL
        .iter()
        .filter_map(|c| classes.get(*c as usize).map(|l| (c, l)))
        .map(|(c, l)| {
            let mut f = vec![
                Reply::bulk("class"),
                Reply::bulk(c.name()),
                Reply::bulk("calls"),
                int(l.count()),
            ];
            percentiles_fields(l, &mut f);
            Reply::Array(f)
        })
        .collect();
    let nodes = control
        .live
        .load()
        .topology
        .member_nodes()
        .map(|n| {
            let nt = n.stats.totals();
            let mut f = vec![
                Reply::bulk("id"),
                Reply::text(n.id.clone()),
                Reply::bulk("addr"),
                Reply::text(n.addr.clone()),
                Reply::bulk("state"),
                Reply::bulk(n.health.state()),
                Reply::bulk("requests"),
                int(nt.requests),
                Reply::bulk("errors"),
                int(nt.errors),
                Reply::bulk("timeouts"),
                int(nt.timeouts),
            ];
            percentiles_fields(&nt.latency, &mut f);
            Reply::Array(f)
        })
        .collect();
    Reply::Array(vec![
        Reply::bulk("uptime_in_seconds"),
        int(control.started.elapsed().as_secs()),
        Reply::bulk("connected_clients"),
        int(control.clients.count() as u64),
        Reply::bulk("total_connections_received"),
        int(control.stats.connections_received.load(Relaxed)),
        Reply::bulk("total_commands_processed"),
        int(t.commands),
        Reply::bulk("strata_error_replies"),
        int(t.errors),
        Reply::bulk("classes"),
        Reply::Array(classes),
        Reply::bulk("layers"),
        layers_reply(control),
        Reply::bulk("nodes"),
        Reply::Array(nodes),
        Reply::bulk("rebalance"),
        Reply::Array(
            control
                .rebalance
                .figures()
                .into_iter()
                .flat_map(|(name, value)| [Reply::bulk(name), int(value)])
                .collect(),
        ),
    ])
}

/// `# Backends`: each Redis Cluster backend's slot map and redirects, and its nodes.
pub fn backends_section(control: &Control, out: &mut String) {
    use crate::cluster::slots::MapRefresh;
    out.push_str("# Backends\r\n");
    let view = control.live.load();
    let topology = &view.topology;
    let _ = write!(out, "backends:{}\r\n", topology.clusters.len());
    for map in &topology.clusters {
        let link = &map.link;
        let r = &link.refresh;
        let seeds = view
            .settings
            .config
            .backends
            .get(link.backend)
            .map(|b| b.seeds().join(" "))
            .unwrap_or_default();
        let _ = write!(
            out,
            "backend_{}:kind={},seeds={},slots_covered={},shards={},nodes={},map_version={},refreshes={},refresh_failures={},moved={},asked={},redirect_errors={}\r\n",
            link.name,
            if link.sentinel { "sentinel" } else { "cluster" },
            seeds,
            map.covered(),
            map.shards().len(),
            map.nodes.len(),
            map.version,
            MapRefresh::count(&r.refreshes),
            MapRefresh::count(&r.refresh_failures),
            MapRefresh::count(&r.moved),
            MapRefresh::count(&r.asked),
            MapRefresh::count(&r.redirect_errors),
        );
        for (i, &slot) in map.nodes.iter().enumerate() {
            let Some(node) = topology.node(slot) else {
                continue;
            };
            let slots: usize = map
                .ranges
                .iter()
                .filter(|r| r.primary == node.addr)
                .map(|r| usize::from(r.end - r.start) + 1)
                .sum();
            let role = if slots > 0 {
                "primary"
            } else if map.ranges.iter().any(|r| r.replicas.contains(&node.addr)) {
                "replica"
            } else {
                "gone"
            };
            let t = node.stats.totals();
            let _ = write!(
                out,
                "backend_{}_node{}:id={},addr={},role={},slots={},state={},connections={},requests={},errors={},timeouts={}\r\n",
                link.name,
                i,
                node.id,
                node.addr,
                role,
                slots,
                node.health.state(),
                node.status.connected(),
                t.requests,
                t.errors,
                t.timeouts,
            );
        }
    }
}
