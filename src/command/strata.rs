//! `STRATA <subcommand>`: strata's own admin commands over RESP (RING, NODES, HELP).

use bytes::Bytes;

use crate::protocol::Reply;
use crate::server::Worker;

use super::classify::{unknown_subcommand, wrong_arity};
use super::local::help;

pub fn strata(worker: &Worker, args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    match sub.as_str() {
        "ring" => match args.get(2) {
            Some(key) if args.len() == 3 => ring(worker, key),
            _ => wrong_arity("strata|ring"),
        },
        "nodes" if args.len() == 2 => nodes(worker),
        "nodes" => wrong_arity("strata|nodes"),
        "help" => help(&[
            "STRATA <subcommand> [<arg> ...]. Subcommands are:",
            "RING <key>",
            "    The key's hash point (xxh3-64, hex), the hashed part and its preference list.",
            "NODES",
            "    Every node with its address, weight, state and counters.",
        ]),
        _ => unknown_subcommand("strata", args.get(1).map_or(&b""[..], |s| s)),
    }
}

/// STRATA RING <key>: a flat field/value array, like HELLO's.
fn ring(worker: &Worker, key: &Bytes) -> Reply {
    let ring = &worker.shared.ring;
    let hash = ring.key_hash(key);
    let nodes = ring
        .preference_list(key, ring.node_count())
        .into_iter()
        .filter_map(|i| worker.shared.nodes.get(i))
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
fn nodes(worker: &Worker) -> Reply {
    Reply::Array(
        worker
            .shared
            .nodes
            .iter()
            .map(|n| {
                let s = &n.status;
                Reply::Array(vec![
                    Reply::bulk("id"),
                    Reply::text(n.id.clone()),
                    Reply::bulk("addr"),
                    Reply::text(n.addr.clone()),
                    Reply::bulk("weight"),
                    Reply::Integer(i64::from(n.weight)),
                    Reply::bulk("state"),
                    Reply::bulk(s.state()),
                    Reply::bulk("connections"),
                    Reply::Integer(s.connected() as i64),
                    Reply::bulk("requests"),
                    Reply::Integer(s.requests() as i64),
                    Reply::bulk("failures"),
                    Reply::Integer(s.failures() as i64),
                    Reply::bulk("last_error"),
                    Reply::text(s.last_error().unwrap_or_default()),
                ])
            })
            .collect(),
    )
}
