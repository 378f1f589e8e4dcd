//! A node that restarts empty is noticed (its Redis `run_id` changes) and refilled from the
//! other replicas; meanwhile its misses are not believed. Two of three replicas restarted
//! empty one after the other lose no key: quorum reads still return every value, `one` reads
//! ask past the empty primary, and once the refills end every key has its three copies again,
//! with its TTL, while keys written or deleted during the refill keep what the client did.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use common::layers::{http_get, info, node_lines, num};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

const LAYERS: &str = r#"layers:
  - { name: q3, prefix: "q3:", replication: 3, write_consistency: quorum, read_consistency: quorum, ttl: 5m }
  - { name: o2, prefix: "o2:", replication: 2, write_consistency: strong, read_consistency: one, ttl: 5m }
"#;

/// Keys written before the restarts, per layer.
const KEYS: usize = 60;

fn node_info(c: &mut RawClient, i: usize) -> BTreeMap<String, String> {
    let name = format!("node{}", i + 1);
    node_lines(c)
        .remove(&name)
        .unwrap_or_else(|| panic!("no INFO line for {name}"))
}

fn repair_figure(c: &mut RawClient, name: &str) -> i64 {
    let text = info(c, "repair");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text:?}"))
        .trim()
        .parse()
        .unwrap()
}

fn start() -> (Strata, Vec<RedisNode>) {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section("timeouts: {connect: 500ms, request: 2s}")
        .section("admin_listen: 127.0.0.1:0")
        .section("stats: {layer_keys_interval: 0s}")
        .section("health: {heartbeat_interval: 200ms, node_timeout: 2s, failure_threshold: 3, recovery_threshold: 2}")
        // Slow enough that the second restart comes while the first refill still runs.
        .section("repair: {refill_keys_per_sec: 20}")
        .section(LAYERS)
        .start();
    (strata, nodes)
}

/// Waits until every node is up and strata has a connection to each.
fn wait_connected(c: &mut RawClient) {
    poll_until(DEADLINE, "every node up and connected", || {
        node_lines(c)
            .values()
            .all(|n| n["state"] == "up" && num(n, "connections") > 0)
            .then_some(())
    });
}

#[test]
fn two_replicas_restarted_empty_in_turn_lose_no_key() {
    let (strata, mut nodes) = start();
    let mut c = strata.raw();
    wait_connected(&mut c);
    let ring = strata.ring();
    let q3: Vec<String> = (0..KEYS).map(|i| format!("q3:k{i}")).collect();
    // `one` keys whose primary is node1, the first to restart, and whose other copy is on
    // node3, which keeps its data (with node2 as second replica, both copies go).
    let o2: Vec<String> = (0..)
        .map(|i| format!("o2:k{i}"))
        .filter(|k| ring.preference_list(k.as_bytes(), 2) == [0, 2])
        .take(KEYS / 2)
        .collect();
    for k in q3.iter().chain(&o2) {
        assert_eq!(c.call(&["SET", k, &format!("v-{k}")]), Resp::ok(), "{k}");
    }
    for k in &q3 {
        for n in &nodes {
            assert_eq!(n.get(k), Some(format!("v-{k}")), "{k} before the restarts");
        }
    }

    // node1 restarts empty; node2 too, before node1's refill (20 keys/s) can be done.
    nodes[0].restart();
    poll_until(DEADLINE, "node1's restart noticed", || {
        (num(&node_info(&mut c, 0), "restarts") == 1).then_some(())
    });
    nodes[1].restart();
    poll_until(DEADLINE, "node2's restart noticed", || {
        (num(&node_info(&mut c, 1), "restarts") == 1).then_some(())
    });
    assert!(
        node_info(&mut c, 0)["refill"] != "idle",
        "node1 still refilling: {:?}",
        node_info(&mut c, 0)
    );
    assert_eq!(repair_figure(&mut c, "nodes_refilling"), 2);

    // Half the keys are read now: node3 alone may hold them, yet its value wins over the two
    // misses, and the read repairs the restarted nodes.
    let (read, unread) = q3.split_at(KEYS / 2);
    for k in read {
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("v-{k}")), "GET {k}");
        assert_eq!(c.call(&["EXISTS", k]), Resp::Int(1), "EXISTS {k}");
    }
    // `one` reads with node1 as primary: its miss is not believed, node3 answers.
    for k in &o2 {
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("v-{k}")), "GET {k}");
    }
    // Written and deleted during the refill: the client's write stays, the delete too.
    let (rewritten, deleted) = unread.split_at(5);
    let (deleted, unread) = deleted.split_at(5);
    for k in rewritten {
        assert_eq!(c.call(&["SET", k, "new"]), Resp::ok());
    }
    for k in deleted {
        assert_eq!(c.call(&["DEL", k]), Resp::Int(1), "DEL {k}");
    }

    // Both refills end; every key has its copies again, with its TTL.
    poll_until(DEADLINE * 3, "both refills done", || {
        let a = node_info(&mut c, 0);
        let b = node_info(&mut c, 1);
        (a["refill"] == "idle" && b["refill"] == "idle").then_some(())
    });
    assert_eq!(repair_figure(&mut c, "nodes_refilling"), 0);
    for (i, n) in nodes.iter().enumerate() {
        for k in read.iter().chain(unread) {
            assert_eq!(n.get(k), Some(format!("v-{k}")), "{k} on node{}", i + 1);
            let pttl: i64 = redis::cmd("PTTL").arg(k).query(&mut n.conn()).unwrap();
            assert!(
                pttl > 0 && pttl <= 300_000,
                "{k} on node{}: PTTL {pttl}",
                i + 1
            );
        }
        for k in rewritten {
            assert_eq!(n.get(k), Some("new".into()), "{k} on node{}", i + 1);
        }
        for k in deleted {
            assert!(!n.exists(k), "{k} deleted, yet on node{}", i + 1);
        }
    }
    for k in &o2 {
        let owners = ring.preference_list(k.as_bytes(), 2);
        for &o in &owners {
            assert_eq!(
                nodes[o].get(k),
                Some(format!("v-{k}")),
                "{k} on node{}",
                o + 1
            );
        }
    }
    for i in 0..2 {
        let info = node_info(&mut c, i);
        assert_eq!(num(&info, "restarts"), 1, "{info:?}");
        assert!(num(&info, "refills") >= 1, "{info:?}");
        assert!(num(&info, "refill_copied") > 0, "{info:?}");
    }
    assert_eq!(num(&node_info(&mut c, 2), "restarts"), 0);
    assert_eq!(repair_figure(&mut c, "refill_failed"), 0);

    // STRATA NODES and /metrics show the same.
    let nodes_reply = c.call(&["STRATA", "NODES"]);
    let first = nodes_reply.array()[0].array();
    let field = |name: &str| {
        first
            .chunks(2)
            .find(|p| p[0] == Resp::bulk(name))
            .map(|p| p[1].clone())
            .unwrap_or_else(|| panic!("no {name} in {first:?}"))
    };
    assert_eq!(field("refill"), Resp::bulk("idle"));
    assert_eq!(field("refill_last_error"), Resp::bulk(""));
    let metrics = http_get(strata.handle().admin_addr.expect("admin"), "/metrics").body;
    assert!(
        metrics.contains("strata_node_restarts_total{node=\"node1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_node_refilling{node=\"node1\"} 0"),
        "{metrics}"
    );
}

#[test]
fn refill_off_notices_nothing() {
    let nodes = RedisNode::start_many(3);
    let mut nodes = nodes;
    let strata = Strata::builder(&nodes)
        .section("health: {heartbeat_interval: 200ms, node_timeout: 2s, failure_threshold: 3, recovery_threshold: 2}")
        .section("repair: {refill: false}")
        .section(LAYERS)
        .start();
    let mut c = strata.raw();
    assert_eq!(c.call(&["SET", "q3:a", "v"]), Resp::ok());
    nodes[0].restart();
    // Reconnected (a write reaches all three again), yet no restart counted.
    poll_until(DEADLINE, "node1 written again", || {
        (c.call(&["SET", "q3:b", "v"]) == Resp::ok() && nodes[0].exists("q3:b")).then_some(())
    });
    let info = node_info(&mut c, 0);
    assert_eq!(num(&info, "restarts"), 0, "{info:?}");
    assert_eq!(info["refill"], "idle", "{info:?}");
    assert!(!nodes[0].exists("q3:a"));
}

/// Sends SIGCONT to a stopped node even when the test fails half-way.
struct Resume<'a>(&'a RedisNode);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[test]
fn a_source_out_for_a_moment_is_walked_once_it_answers() {
    let (strata, mut nodes) = start();
    let mut c = strata.raw();
    wait_connected(&mut c);
    let ring = strata.ring();
    // Keys held by node1 and node2 only: node1's refill has no other source for them.
    let keys: Vec<String> = (0..)
        .map(|i| format!("o2:k{i}"))
        .filter(|k| ring.preference_list(k.as_bytes(), 2) == [0, 1])
        .take(KEYS / 3)
        .collect();
    for k in &keys {
        assert_eq!(c.call(&["SET", k, &format!("v-{k}")]), Resp::ok(), "{k}");
    }

    // node2 hangs; node1 restarts empty and its refill meets node2 unanswering.
    let (first, rest) = nodes.split_at_mut(1);
    rest[0].signal("STOP");
    let resume = Resume(&rest[0]);
    first[0].restart();
    poll_until(DEADLINE, "node1's refill started", || {
        let n = node_info(&mut c, 0);
        (num(&n, "restarts") == 1 && n["refill"] != "idle").then_some(())
    });
    // Longer than a connect timeout (500 ms here): node2's first walk has failed by now.
    std::thread::sleep(std::time::Duration::from_millis(900));
    assert!(
        node_info(&mut c, 0)["refill"] != "idle",
        "node1's refill ended while node2 was out: {:?}",
        node_info(&mut c, 0)
    );
    drop(resume);

    poll_until(DEADLINE * 3, "node1's refill done", || {
        (node_info(&mut c, 0)["refill"] == "idle").then_some(())
    });
    let nodes_reply = c.call(&["STRATA", "NODES"]);
    let first = nodes_reply.array()[0].array();
    let last_error = first
        .chunks(2)
        .find(|p| p[0] == Resp::bulk("refill_last_error"));
    assert_eq!(
        last_error.map(|p| &p[1]),
        Some(&Resp::bulk("")),
        "{first:?}"
    );
    let info = node_info(&mut c, 0);
    assert_eq!(num(&info, "refill_copied"), keys.len() as i64, "{info:?}");
    for k in &keys {
        assert_eq!(nodes[0].get(k), Some(format!("v-{k}")), "{k} on node1");
    }
}
