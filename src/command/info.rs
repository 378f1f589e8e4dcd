//! INFO: what strata tells tools about itself (CONFIG GET is in `config_get.rs`).
//!
//! INFO has Redis's `server`, `clients`, `stats`, `commandstats` and `keyspace` sections (the
//! keyspace asked of the nodes at the time of the request, each key counted once:
//! `coordinator::keyspace`) and
//! strata's own `layers`, `latency`, `nodes` and `ring` sections (rendered in `report.rs`).

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use crate::coordinator::{Pending, TaskOutput};
use crate::protocol::Reply;
use crate::server::{Shared, Worker};

use super::local::Done;
use super::report;

/// The Redis version strata reports (`redis_version`, HELLO): the command set it implements.
pub const REDIS_VERSION: &str = "7.0.0";

/// Every section, in output order.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "stats",
    "commandstats",
    "keyspace",
    "layers",
    "latency",
    "nodes",
    "repair",
    "rebalance",
    "ring",
];

/// What plain `INFO` (or `INFO default`) shows: all but commandstats, as Redis does.
fn is_default(section: &str) -> bool {
    section != "commandstats"
}

/// INFO [section ...]. With the keyspace section it is a task: every section is rendered once
/// the nodes have answered.
pub async fn info(worker: &Arc<Worker>, client_id: u64, args: &[Bytes]) -> Done {
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
    if !wanted.contains(&"keyspace") {
        return Done::reply(Reply::text(render(&worker.shared, &wanted, None)));
    }
    let worker = worker.clone();
    Done::from(Pending::task(async move {
        let keyspace = crate::coordinator::keyspace::info_section(&worker, client_id).await;
        TaskOutput {
            reply: Reply::text(render(&worker.shared, &wanted, Some(keyspace))),
            applied: Vec::new(),
        }
    }))
}

/// The wanted sections in INFO order, `keyspace` as gathered from the nodes.
fn render(shared: &Shared, wanted: &[&str], keyspace: Option<String>) -> String {
    let mut out = String::new();
    for section in SECTIONS {
        if !wanted.contains(section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match *section {
            "server" => server(shared, &mut out),
            "clients" => clients(shared, &mut out),
            "stats" => stats(shared, &mut out),
            "commandstats" => report::commandstats_section(shared, &mut out),
            "keyspace" => out.push_str(keyspace.as_deref().unwrap_or("# Keyspace\r\n")),
            "layers" => report::layers_section(shared, &mut out),
            "latency" => report::latency_section(shared, &mut out),
            "nodes" => report::nodes_section(shared, &mut out),
            "repair" => report::repair_section(shared, &mut out),
            "rebalance" => report::rebalance_section(shared, &mut out),
            "ring" => ring(shared, &mut out),
            _ => {}
        }
    }
    out
}

fn server(shared: &Shared, out: &mut String) {
    let uptime = shared.started.elapsed().as_secs();
    let config_file = shared
        .config_path
        .as_ref()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = write!(
        out,
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nstrata_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nworkers:{}\r\nconfig_file:{config_file}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        usize::BITS,
        std::process::id(),
        shared.local_addr.port(),
        uptime / 86_400,
        shared.settings.load().workers,
    );
}

fn clients(shared: &Shared, out: &mut String) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
        shared.clients.count(),
        shared.settings.load().config.limits.max_clients,
    );
}

fn stats(shared: &Shared, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let t = shared.stats.totals();
    let _ = write!(
        out,
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nstrata_error_replies:{}\r\n",
        shared.stats.connections_received.load(Relaxed),
        t.commands,
        t.net_input_bytes,
        t.net_output_bytes,
        shared.stats.rejected_connections.load(Relaxed),
        t.errors,
    );
}

fn ring(shared: &Shared, out: &mut String) {
    let settings = shared.settings.load();
    let config = &settings.config;
    let topology = shared.topology.load();
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
