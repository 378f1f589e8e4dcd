//! Miss coalescing against real Redis nodes: identical reads that arrive while one is on its
//! way are not sent again, and a read never joins one sent before its own client's write. The
//! node is held with `CLIENT PAUSE` (issued on it directly) so that the reads overlap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::layers::{info, info_lines, metrics, sample};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// `result:` coalesces (one copy), `route:` coalesces with two copies and a near cache,
/// `load:` does not coalesce.
const LAYERS: &str = r#"layers:
  - { name: result, prefix: "result:", coalesce: true }
  - { name: route,  prefix: "route:", replication: 2, coalesce: true, near_cache: { max_bytes: 1mb } }
  - { name: load,   prefix: "load:" }
admin_listen: 127.0.0.1:0
stats: { layer_keys_interval: 0s }
"#;

fn start(nodes: &[RedisNode]) -> Strata {
    Strata::builder(nodes).section(LAYERS).start()
}

fn layer_field(c: &mut RawClient, layer: &str, field: &str) -> Option<u64> {
    let lines = info_lines(&info(c, "layers"));
    lines
        .get(&format!("layer_{layer}"))?
        .iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.parse().unwrap())
}

/// Calls of `command` the node has run (its INFO commandstats).
fn node_calls(node: &RedisNode, command: &str) -> u64 {
    let mut c = RawClient::connect(&node.addr());
    let text = c.call(&["INFO", "commandstats"]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Every node's calls of `command`, together.
fn all_calls(nodes: &[RedisNode], command: &str) -> u64 {
    nodes.iter().map(|n| node_calls(n, command)).sum()
}

/// Holds every client of every node for `ms` (strata's connections included).
fn pause(nodes: &[RedisNode], ms: u64) {
    for n in nodes {
        let mut c = RawClient::connect(&n.addr());
        assert_eq!(
            c.call(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]),
            Resp::ok()
        );
    }
}

/// Sends `GET key` on each client without waiting, then reads every reply.
fn herd(clients: &mut [RawClient], key: &str) -> Vec<Resp> {
    for c in clients.iter_mut() {
        c.send_cmd(&["GET", key]);
    }
    clients.iter_mut().map(|c| c.read_reply()).collect()
}

#[test]
fn a_herd_of_identical_reads_costs_the_node_one_read() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    assert_eq!(c.call(&["SET", "result:hot", "answer"]), Resp::ok());
    let mut clients: Vec<RawClient> = (0..20).map(|_| s.raw()).collect();
    for cl in &mut clients {
        assert_eq!(cl.call(&["PING"]), Resp::status("PONG"));
    }
    let before = all_calls(&nodes, "get");
    let coalesced = layer_field(&mut c, "result", "coalesced").unwrap();
    pause(&nodes, 400);
    let replies = herd(&mut clients, "result:hot");
    assert!(
        replies.iter().all(|r| *r == Resp::bulk("answer")),
        "{replies:?}"
    );
    // One GET reached a node; the nineteen others waited for it.
    assert_eq!(all_calls(&nodes, "get") - before, 1);
    assert_eq!(
        layer_field(&mut c, "result", "coalesced").unwrap() - coalesced,
        19
    );
    // The layer still counts each client's read as a hit.
    assert!(layer_field(&mut c, "result", "hits").unwrap() >= 20);

    // A miss is shared the same way (the herd on a key that just expired).
    let before = all_calls(&nodes, "get");
    pause(&nodes, 400);
    let replies = herd(&mut clients, "result:gone");
    assert!(replies.iter().all(|r| *r == Resp::Nil), "{replies:?}");
    assert_eq!(all_calls(&nodes, "get") - before, 1);

    // Other reads of one key coalesce too; layers without `coalesce` do not.
    c.call(&["HSET", "result:h", "f", "v"]);
    let before = all_calls(&nodes, "hgetall");
    pause(&nodes, 400);
    for cl in clients.iter_mut() {
        cl.send_cmd(&["HGETALL", "result:h"]);
    }
    for cl in clients.iter_mut() {
        assert_eq!(cl.read_reply(), Resp::bulks(&["f", "v"]));
    }
    assert_eq!(all_calls(&nodes, "hgetall") - before, 1);
    c.call(&["SET", "load:x", "1"]);
    let before = all_calls(&nodes, "get");
    pause(&nodes, 300);
    let replies = herd(&mut clients, "load:x");
    assert!(replies.iter().all(|r| *r == Resp::bulk("1")));
    assert_eq!(all_calls(&nodes, "get") - before, 20);
    assert_eq!(layer_field(&mut c, "load", "coalesced"), None);

    // A near-cached, replicated layer: the herd on a key not in memory is one fill.
    c.call(&["SET", "route:r", "m"]);
    let before = all_calls(&nodes, "get");
    pause(&nodes, 400);
    let replies = herd(&mut clients, "route:r");
    assert!(replies.iter().all(|r| *r == Resp::bulk("m")), "{replies:?}");
    assert_eq!(all_calls(&nodes, "get") - before, 1);

    // Visible in STRATA LAYERS and /metrics.
    let layers = c.call(&["STRATA", "LAYERS"]);
    let result = layers
        .array()
        .iter()
        .find(|l| l.array().get(1) == Some(&Resp::bulk("result")))
        .expect("the result layer");
    let fields = result.array();
    let at = fields
        .iter()
        .position(|f| *f == Resp::bulk("coalesced"))
        .expect("coalesced in STRATA LAYERS");
    assert!(fields[at + 1].int() >= 38, "{result:?}");
    let body = metrics(s.handle().admin_addr.unwrap());
    let v: u64 = sample(&body, "strata_layer_coalesced_total{layer=\"result\"}")
        .expect("the coalesced family")
        .parse()
        .unwrap();
    assert!(v >= 38, "{v}");
    assert!(sample(&body, "strata_layer_coalesced_total{layer=\"load\"}").is_none());
}

#[test]
fn a_read_never_joins_one_sent_before_its_own_write() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut writer = s.raw();
    let mut reader = s.raw();
    for round in 0..5 {
        let old = format!("old{round}");
        let new = format!("new{round}");
        assert_eq!(writer.call(&["SET", "result:k", &old]), Resp::ok());
        let before = all_calls(&nodes, "get");
        pause(&nodes, 300);
        // The reader's GET goes first and is held by the node.
        reader.send_cmd(&["GET", "result:k"]);
        std::thread::sleep(Duration::from_millis(30));
        // The writer writes, then reads: its read must not join the reader's.
        writer.send_cmd(&["SET", "result:k", &new]);
        writer.send_cmd(&["GET", "result:k"]);
        assert_eq!(writer.read_reply(), Resp::ok());
        assert_eq!(writer.read_reply(), Resp::bulk(&new), "round {round}");
        let r = reader.read_reply();
        assert!(r == Resp::bulk(&old) || r == Resp::bulk(&new), "{r:?}");
        assert_eq!(all_calls(&nodes, "get") - before, 2);
    }
    // Strata's own clients only: the flights are gone once answered.
    poll_until(DEADLINE, "no flight left", || {
        let mut c = s.raw();
        (c.call(&["GET", "result:k"]) == Resp::bulk("new4")).then_some(())
    });
}
