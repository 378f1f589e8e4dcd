//! INFO: what strata tells tools about itself (CONFIG GET is in `config_get.rs`).
//!
//! INFO has Redis's `server`, `clients`, `memory`, `stats`, `commandstats` and `keyspace`
//! sections and strata's own `layers`, `latency`, `nodes`, `repair`, `rebalance` and `ring`
//! (rendered in `report.rs`). Every figure is counted by strata or read from the nodes when
//! INFO runs: the keyspace (each key counted once: `coordinator::keyspace`) and the nodes'
//! `maxmemory` / `maxmemory_policy` (the first node that is up).

use crate::backend::Lane;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::control::Control;
use crate::coordinator::Coordinator;
use crate::coordinator::{Pending, TaskOutput};
use crate::protocol::Reply;

use super::local::Done;
use super::report;

/// The Redis version strata reports (`redis_version`, HELLO): the command set it implements.
pub const REDIS_VERSION: &str = "7.0.0";

/// Every section, in output order.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "stats",
    "commandstats",
    "keyspace",
    "layers",
    "latency",
    "nodes",
    "repair",
    "rebalance",
    "ring",
    "backends",
];

/// The event notification tokio (mio) uses on this platform.
const MULTIPLEXING_API: &str = if cfg!(any(target_os = "linux", target_os = "android")) {
    "epoll"
} else if cfg!(windows) {
    "iocp"
} else {
    "kqueue"
};

/// What plain `INFO` (or `INFO default`) shows: all but commandstats, as Redis does.
fn is_default(section: &str) -> bool {
    section != "commandstats"
}

/// INFO [section ...]. Sections that need the nodes (the keyspace) make it a task: every
/// section is rendered once the nodes have answered.
pub async fn info(
    coord: &Arc<Coordinator>,
    control: &Arc<Control>,
    lane: Lane,
    args: &[Bytes],
) -> Done {
    let mut wanted: Vec<&'static str> = Vec::new();
    for arg in args.iter().skip(1) {
        let name = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match name.as_str() {
            "all" | "everything" => wanted.extend_from_slice(SECTIONS),
            "default" => wanted.extend(SECTIONS.iter().filter(|s| is_default(s))),
            other => {
                if let Some(s) = SECTIONS.iter().find(|s| **s == other) {
                    wanted.push(s);
                }
            }
        }
    }
    if args.len() == 1 {
        wanted.extend(SECTIONS.iter().filter(|s| is_default(s)));
    }
    let asks_nodes = wanted.contains(&"keyspace") || wanted.contains(&"memory");
    if !asks_nodes {
        return Done::reply(Reply::text(render(control, &wanted, &Gathered::default())));
    }
    let (coord, control) = (coord.clone(), control.clone());
    Done::from(Pending::task(async move {
        let mut gathered = Gathered::default();
        if wanted.contains(&"keyspace") {
            let owners =
                crate::coordinator::keyspace::owners_now(&coord.router.view(), &coord.rebalance);
            let keyspace =
                crate::coordinator::keyspace::info_section(&coord.router, owners, lane).await;
            gathered.keyspace = Some(keyspace);
        }
        if wanted.contains(&"memory") {
            gathered.memory = node_memory(&coord.router, lane).await;
        }
        TaskOutput {
            reply: Reply::text(render(&control, &wanted, &gathered)),
            applied: Vec::new(),
        }
    }))
}

/// What INFO read from the nodes.
#[derive(Debug, Default)]
struct Gathered {
    /// The `# Keyspace` section.
    keyspace: Option<String>,
    /// `maxmemory`, `maxmemory_human`, `maxmemory_policy` lines of the first node up.
    memory: Option<String>,
}

/// The wanted sections in INFO order.
fn render(control: &Control, wanted: &[&str], gathered: &Gathered) -> String {
    let mut out = String::new();
    for section in SECTIONS {
        if !wanted.contains(section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match *section {
            "server" => server(control, &mut out),
            "clients" => clients(control, &mut out),
            "memory" => memory(gathered.memory.as_deref(), &mut out),
            "stats" => stats(control, &mut out),
            "commandstats" => report::commandstats_section(control, &mut out),
            "keyspace" => out.push_str(gathered.keyspace.as_deref().unwrap_or("# Keyspace\r\n")),
            "layers" => report::layers_section(control, &mut out),
            "latency" => report::latency_section(control, &mut out),
            "nodes" => report::nodes_section(control, &mut out),
            "repair" => report::repair_section(control, &mut out),
            "rebalance" => report::rebalance_section(control, &mut out),
            "ring" => ring(control, &mut out),
            "backends" => report::backends_section(control, &mut out),
            _ => {}
        }
    }
    out
}

/// The lines of the first node up's `INFO memory` that describe its limit; None when no node
/// answers (the lines are then left out rather than made up).
async fn node_memory(router: &crate::backend::Router, lane: Lane) -> Option<String> {
    let node = router.view().topology.first_up()?;
    let reply = crate::coordinator::scan::ask(router, lane, node, &[b"INFO", b"memory"])
        .await
        .ok()?;
    let BytesFrame::BulkString(text) = reply.frame else {
        return None;
    };
    let text = String::from_utf8_lossy(&text);
    let mut out = String::new();
    for field in ["maxmemory", "maxmemory_human", "maxmemory_policy"] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
        let _ = write!(out, "{field}:{}\r\n", value.trim());
    }
    Some(out)
}

/// strata's resident set size in bytes (Linux: `VmRSS` of /proc/self/status); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
    kb.checked_mul(1024)
}

/// Redis's `bytesToHuman`: `512B`, `1.50K`, `2.00M`, ...
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    for unit in UNITS {
        if value < 1024.0 {
            return format!("{value:.2}{unit}");
        }
        value /= 1024.0;
    }
    format!("{n}B")
}

/// `# Memory`: strata's own resident memory as `used_memory`, and the first node up's limit.
fn memory(node: Option<&str>, out: &mut String) {
    out.push_str("# Memory\r\n");
    if let Some(rss) = resident_bytes() {
        let _ = write!(
            out,
            "used_memory:{rss}\r\nused_memory_human:{}\r\n",
            human_bytes(rss)
        );
    }
    out.push_str(node.unwrap_or_default());
}

fn server(control: &Control, out: &mut String) {
    let uptime = control.started.elapsed().as_secs();
    let config_file = control
        .config_path
        .as_ref()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = write!(
        out,
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nstrata_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nmultiplexing_api:{MULTIPLEXING_API}\r\nprocess_id:{}\r\ntcp_port:{}\r\nstrata_tls_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nworkers:{}\r\nconfig_file:{config_file}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        usize::BITS,
        std::process::id(),
        control.local_addr.port(),
        control.tls_addr.map_or(0, |a| a.port()),
        uptime / 86_400,
        control.live.load().settings.workers,
    );
}

fn clients(control: &Control, out: &mut String) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:{}\r\n",
        control.clients.count(),
        control.live.load().settings.config.limits.max_clients,
        control.clients.blocked(),
        control.live.load().layers.coherence().clients.clients(),
    );
}

/// Client tracking's figures (Redis's three, then strata's own), at the end of `# Stats`.
fn tracking(control: &Control, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let view = control.live.load();
    let hub = &view.layers.coherence().clients;
    let streams = view.layers.coherence().stream_counts();
    let c = &hub.counters;
    let _ = write!(
        out,
        "tracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\nstrata_tracking_table_bytes:{}\r\nstrata_tracking_invalidation_messages:{}\r\nstrata_tracking_invalidated_keys:{}\r\nstrata_tracking_flushes:{}\r\nstrata_tracking_evicted_keys:{}\r\nstrata_tracking_covered:{}\r\nstrata_invalidation_streams:{}\r\nstrata_invalidation_streams_live:{}\r\n",
        hub.table.keys(),
        hub.table.items(),
        hub.prefixes(),
        hub.table.bytes(),
        c.messages.load(Relaxed),
        c.keys.load(Relaxed),
        c.flushes.load(Relaxed),
        c.evicted.load(Relaxed),
        u8::from(hub.covered()),
        streams.0,
        streams.1,
    );
}

fn stats(control: &Control, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let t = control.stats.totals();
    let [ops, input, output] = control.stats.instantaneous.rates();
    let (mut hits, mut misses) = (0, 0);
    for (_, layer) in control.live.load().layers.iter() {
        let l = layer.stats.totals();
        hits += l.hits;
        misses += l.misses;
    }
    let _ = write!(
        out,
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{ops}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ninstantaneous_input_kbps:{:.2}\r\ninstantaneous_output_kbps:{:.2}\r\nrejected_connections:{}\r\nclient_query_buffer_limit_disconnections:{}\r\nclient_output_buffer_limit_disconnections:{}\r\nstrata_idle_timeout_disconnections:{}\r\nstrata_tls_connections_received:{}\r\nstrata_tls_handshake_failures:{}\r\nkeyspace_hits:{hits}\r\nkeyspace_misses:{misses}\r\nacl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:{}\r\nstrata_admin_access_denied_auth:{}\r\nstrata_error_replies:{}\r\n",
        control.stats.connections_received.load(Relaxed),
        t.commands,
        t.net_input_bytes,
        t.net_output_bytes,
        input as f64 / 1024.0,
        output as f64 / 1024.0,
        control.stats.rejected_connections.load(Relaxed),
        control.stats.query_limit_disconnections.load(Relaxed),
        control.stats.output_limit_disconnections.load(Relaxed),
        control.stats.idle_timeout_disconnections.load(Relaxed),
        control.stats.tls_connections_received.load(Relaxed),
        control.stats.tls_handshake_failures.load(Relaxed),
        control.stats.acl_denied_auth.load(Relaxed),
        control.stats.acl_denied_cmd.load(Relaxed),
        control.stats.acl_denied_key.load(Relaxed),
        control.stats.acl_denied_channel.load(Relaxed),
        control.stats.admin_denied_auth.load(Relaxed),
        t.errors,
    );
    tracking(control, out);
}

fn ring(control: &Control, out: &mut String) {
    let settings = control.live.load().settings.clone();
    let config = &settings.config;
    let topology = control.live.load().topology.clone();
    let _ = write!(
        out,
        "# Ring\r\nring_hash:xxh3-64\r\nring_nodes:{}\r\nring_points:{}\r\nring_vnodes:{}\r\nring_hash_tag:{}\r\nring_version:{}\r\n",
        topology.ring.node_count(),
        topology.ring.point_count(),
        config.ring.vnodes,
        config.ring.hash_tag,
        topology.version,
    );
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_as_redis() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.50K");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.00M");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.00G");
    }
}
