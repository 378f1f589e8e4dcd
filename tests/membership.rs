//! Live membership over real Redis nodes: STRATA NODE ADD / REMOVE / WEIGHT change the ring at
//! once (new writes land on the new owners, checked on the nodes), under load without a client
//! error, refuse what would break a layer or the cluster with Redis-style errors, and a removed
//! node's connections close.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// A flat field/value array reply as a map of texts.
fn fields(reply: &Resp) -> BTreeMap<String, String> {
    let items = reply.array();
    items
        .chunks(2)
        .map(|pair| {
            let value = match &pair[1] {
                Resp::Int(n) => n.to_string(),
                other => other.text(),
            };
            (pair[0].text(), value)
        })
        .collect()
}

fn call(c: &mut RawClient, args: &[&str]) -> Resp {
    c.call(args)
}

/// Connections the node has from clients other than the asking one.
fn other_clients(node: &RedisNode) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut node.conn())
        .unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("connected_clients:"))
        .unwrap();
    line["connected_clients:".len()..]
        .trim()
        .parse::<i64>()
        .unwrap()
        - 1
}

#[test]
fn adding_a_node_moves_about_a_quarter_of_the_keys_and_new_writes_land_on_it() {
    let mut nodes = RedisNode::start_many(4);
    let fourth = nodes.pop().unwrap();
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();

    let reply = call(&mut c, &["STRATA", "NODE", "ADD", "node4", &fourth.addr()]);
    let f = fields(&reply);
    assert_eq!(f["action"], "add", "{reply:?}");
    assert_eq!(f["node"], "node4");
    assert_eq!(f["members"], "4");
    assert_eq!(f["ring_version"], "2");
    let moved: f64 = f["moved"].parse().unwrap();
    assert!((0.15..0.35).contains(&moved), "moved {moved}");

    // The ring has the new node: keys it owns now are written to it, and only to it.
    let ring = strata.ring();
    assert_eq!(ring.node_count(), 4);
    let mut on_fourth = 0;
    for k in 0..200 {
        let key = format!("m:{k}");
        assert_eq!(call(&mut c, &["SET", &key, "v"]), Resp::ok());
        let owner = ring.primary(key.as_bytes());
        let holder = if owner == 3 { &fourth } else { &nodes[owner] };
        assert_eq!(
            holder.get(&key).as_deref(),
            Some("v"),
            "{key} on node{}",
            owner + 1
        );
        if owner == 3 {
            on_fourth += 1;
        }
    }
    assert!(on_fourth > 20, "only {on_fourth} of 200 keys went to node4");
    assert!(fourth.dbsize() >= on_fourth);

    // It is a member like the others: STRATA NODES, INFO and the RING of a key name it.
    let listed = call(&mut c, &["STRATA", "NODES"]);
    let ids: Vec<String> = listed
        .array()
        .iter()
        .map(|n| fields(n)["id"].clone())
        .collect();
    assert_eq!(ids, ["node1", "node2", "node3", "node4"]);
    let ring_info = call(&mut c, &["INFO", "ring"]).text();
    assert!(ring_info.contains("ring_nodes:4\r\n"), "{ring_info}");
    assert!(ring_info.contains("ring_version:2\r\n"), "{ring_info}");
}

#[test]
fn a_node_added_under_load_costs_no_client_an_error() {
    let mut nodes = RedisNode::start_many(4);
    let fourth = nodes.pop().unwrap();
    let strata = Strata::start(&nodes);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = strata.addr().to_string();
    let load: Vec<_> = (0..4)
        .map(|w| {
            let stop = stop.clone();
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = RawClient::connect(&addr);
                let mut errors = Vec::new();
                let mut n = 0u64;
                // Bounded: stops when told, or after 200,000 requests at most.
                while !stop.load(Ordering::Relaxed) && n < 200_000 {
                    let key = format!("load:{w}:{}", n % 500);
                    for cmd in [vec!["SET", &key, "x"], vec!["GET", &key]] {
                        c.send_cmd(&cmd);
                    }
                    for _ in 0..2 {
                        let r = c.read_reply();
                        if r.is_error() {
                            errors.push(r);
                        }
                    }
                    n += 1;
                }
                (n, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = strata.raw();
    let reply = call(&mut c, &["STRATA", "NODE", "ADD", "node4", &fourth.addr()]);
    assert_eq!(fields(&reply)["action"], "add", "{reply:?}");
    // Traffic reaches the new node while the load goes on.
    poll_until(DEADLINE, "writes reaching node4", || {
        (fourth.dbsize() > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let (n, errors) = t.join().unwrap();
        assert!(n > 0);
        assert!(
            errors.is_empty(),
            "client errors during the change: {errors:?}"
        );
    }
}

#[test]
fn bad_changes_are_refused_with_the_reason() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section(
            "layers:\n  - {name: meta, prefix: 'meta:', replication: 3, write_consistency: quorum}",
        )
        .start();
    let mut c = strata.raw();
    let err = |c: &mut RawClient, args: &[&str]| {
        let r = call(c, args);
        assert!(r.is_error(), "{args:?} gave {r:?}");
        r.error_text()
    };
    assert_eq!(
        err(&mut c, &["STRATA", "NODE", "REMOVE", "node2"]),
        "ERR strata: removing node 'node2' would leave 2 nodes, but layer 'meta' keeps 3 copies"
    );
    assert_eq!(
        err(&mut c, &["STRATA", "NODE", "REMOVE", "nope"]),
        "ERR strata: no node 'nope' in the cluster"
    );
    assert_eq!(
        err(&mut c, &["STRATA", "NODE", "ADD", "node1", "127.0.0.1:1"]),
        "ERR strata: node 'node1' is already in the cluster"
    );
    assert_eq!(
        err(
            &mut c,
            &["STRATA", "NODE", "ADD", "node9", &nodes[0].addr()]
        ),
        format!(
            "ERR strata: address {} is already node 'node1'",
            nodes[0].addr()
        )
    );
    assert_eq!(
        err(&mut c, &["STRATA", "NODE", "ADD", "node9", "nohost"]),
        "ERR strata: node address must be host:port, got \"nohost\""
    );
    for w in ["0", "1001", "x"] {
        assert_eq!(
            err(&mut c, &["STRATA", "NODE", "WEIGHT", "node1", w]),
            "ERR strata: weight must be an integer from 1 to 1000"
        );
    }
    assert_eq!(
        err(&mut c, &["STRATA", "NODE", "ADD", "node9"]),
        "ERR wrong number of arguments for 'strata|node|add' command"
    );
    assert_eq!(
        err(&mut c, &["STRATA", "NODE", "FROB"]),
        "ERR unknown subcommand 'FROB'. Try STRATA HELP."
    );
    // Nothing changed.
    let ring_info = call(&mut c, &["INFO", "ring"]).text();
    assert!(ring_info.contains("ring_version:1\r\n"), "{ring_info}");
}

#[test]
fn a_removed_node_gets_no_keys_and_its_connections_close() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section("health: {heartbeat_interval: 100ms, node_timeout: 5s, failure_threshold: 3, recovery_threshold: 2}")
        .start();
    let mut c = strata.raw();
    // Connections opened: strata's pools and heartbeat.
    poll_until(DEADLINE, "strata connected to node2", || {
        (other_clients(&nodes[1]) > 0).then_some(())
    });
    let reply = call(&mut c, &["STRATA", "NODE", "REMOVE", "node2"]);
    let f = fields(&reply);
    assert_eq!(
        (f["action"].as_str(), f["members"].as_str()),
        ("remove", "2")
    );
    let moved: f64 = f["moved"].parse().unwrap();
    assert!((0.2..0.5).contains(&moved), "moved {moved}");
    for k in 0..200 {
        let key = format!("r:{k}");
        assert_eq!(call(&mut c, &["SET", &key, "v"]), Resp::ok());
    }
    assert_eq!(nodes[1].dbsize(), 0, "a removed node got writes");
    assert_eq!(nodes[0].dbsize() + nodes[2].dbsize(), 200);
    poll_until(DEADLINE, "strata's connections to node2 closed", || {
        (other_clients(&nodes[1]) == 0).then_some(())
    });
    let listed = call(&mut c, &["STRATA", "NODES"]);
    let ids: Vec<String> = listed
        .array()
        .iter()
        .map(|n| fields(n)["id"].clone())
        .collect();
    assert_eq!(ids, ["node1", "node3"]);
    // Added back under its id: it owns what it owned before.
    let before = strata.ring();
    let reply = call(
        &mut c,
        &["STRATA", "NODE", "ADD", "node2", &nodes[1].addr()],
    );
    assert_eq!(fields(&reply)["members"], "3", "{reply:?}");
    let after = strata.ring();
    for k in 0..500 {
        let key = format!("r:{k}");
        let (a, b) = (
            before.primary(key.as_bytes()),
            after.primary(key.as_bytes()),
        );
        // node2 is in a new slot (3); keys move only to it.
        assert!(a == b || b == 3, "{key}: {a} -> {b}");
    }
}

#[test]
fn weight_changes_the_share_of_the_ring() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    let share = |strata: &Strata, node: usize| {
        let ring = strata.ring();
        (0..3000)
            .filter(|k| ring.primary(format!("w:{k}").as_bytes()) == node)
            .count()
    };
    let before = share(&strata, 0);
    let reply = call(&mut c, &["STRATA", "NODE", "WEIGHT", "node1", "3"]);
    let f = fields(&reply);
    assert_eq!(f["action"], "weight", "{reply:?}");
    let after = share(&strata, 0);
    assert!(
        after > before + 700,
        "node1 owned {before} of 3000, then {after}"
    );
    let listed = call(&mut c, &["STRATA", "NODES"]);
    assert_eq!(fields(&listed.array()[0])["weight"], "3");
}
