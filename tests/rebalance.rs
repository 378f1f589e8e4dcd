//! Rebalance over real Redis nodes: after a node is added (under load) or removed, STRATA
//! REBALANCE puts every key on exactly its new preference list (checked on each node, TTL
//! kept), DRY only counts, reads find keys not moved yet while it runs, and `rebalance.auto`
//! starts it by itself.

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

/// `cache:` keys keep two copies and a 5 minute TTL; other keys one copy, no TTL.
const LAYERS: &str = "layers:\n  - {name: cache, prefix: 'cache:', ttl: 5m, replication: 2, write_consistency: quorum}";
const TTL_MS: i64 = 300_000;
const SLACK_MS: i64 = 60_000;

fn fields(reply: &Resp) -> BTreeMap<String, String> {
    reply
        .array()
        .chunks(2)
        .map(|pair| {
            let value = match &pair[1] {
                Resp::Int(n) => n.to_string(),
                Resp::Array(_) => String::new(),
                other => other.text(),
            };
            (pair[0].text(), value)
        })
        .collect()
}

fn rebalance_info(c: &mut RawClient) -> BTreeMap<String, String> {
    c.call(&["INFO", "rebalance"])
        .text()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Waits until a rebalance has completed `runs` runs and none is running.
fn wait_rebalanced(c: &mut RawClient, runs: u64) -> BTreeMap<String, String> {
    poll_until(Duration::from_secs(60), "the rebalance to finish", || {
        let info = rebalance_info(c);
        let done = info["rebalance_running"] == "0"
            && info["rebalance_runs"].parse::<u64>().unwrap() >= runs;
        done.then_some(info)
    })
}

fn keys() -> Vec<String> {
    (0..600)
        .map(|i| {
            if i % 2 == 0 {
                format!("cache:{i}")
            } else {
                format!("plain:{i}")
            }
        })
        .collect()
}

fn write_keys(c: &mut RawClient, keys: &[String]) {
    for key in keys {
        assert_eq!(
            c.call(&["SET", key, &format!("v-{key}")]),
            Resp::ok(),
            "{key}"
        );
    }
}

/// Every key is on exactly its preference list (slots of `strata.ring()`, mapped to `nodes`
/// by `node_of`), with its value, and `cache:` keys with their TTL.
fn assert_placed(strata: &Strata, nodes: &[&RedisNode], slot_node: &dyn Fn(usize) -> usize) {
    let ring = strata.ring();
    let mut conns: Vec<redis::Connection> = nodes.iter().map(|n| n.conn()).collect();
    for key in keys() {
        let copies = if key.starts_with("cache:") { 2 } else { 1 };
        let owners: Vec<usize> = ring
            .preference_list(key.as_bytes(), copies)
            .into_iter()
            .map(slot_node)
            .collect();
        for (i, conn) in conns.iter_mut().enumerate() {
            let value: Option<String> = redis::cmd("GET").arg(&key).query(conn).unwrap();
            if owners.contains(&i) {
                assert_eq!(
                    value.as_deref(),
                    Some(format!("v-{key}").as_str()),
                    "{key} on node {i}"
                );
                let pttl: i64 = redis::cmd("PTTL").arg(&key).query(conn).unwrap();
                if copies == 2 {
                    assert!(
                        (TTL_MS - SLACK_MS..=TTL_MS).contains(&pttl),
                        "{key} on node {i}: PTTL {pttl}"
                    );
                } else {
                    assert_eq!(pttl, -1, "{key} on node {i}");
                }
            } else {
                assert_eq!(value, None, "{key} left on node {i} (owners {owners:?})");
            }
        }
    }
}

#[test]
fn a_node_added_under_load_gets_its_keys_with_their_ttl_and_no_client_errs() {
    let mut all = RedisNode::start_many(4);
    let fourth = all.pop().unwrap();
    let strata = Strata::builder(&all).section(LAYERS).start();
    let mut c = strata.raw();
    write_keys(&mut c, &keys());

    let stop = Arc::new(AtomicBool::new(false));
    let addr = strata.addr().to_string();
    let load: Vec<_> = (0..3)
        .map(|w| {
            let (stop, addr) = (stop.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut c = RawClient::connect(&addr);
                let mut errors = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    let key = format!("load:{w}:{}", n % 300);
                    for r in [c.call(&["SET", &key, "x"]), c.call(&["GET", &key])] {
                        if r.is_error() {
                            errors.push(r);
                        }
                    }
                    n += 1;
                }
                errors
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let added = c.call(&["STRATA", "NODE", "ADD", "node4", &fourth.addr()]);
    assert_eq!(fields(&added)["action"], "add", "{added:?}");
    let dry = c.call(&["STRATA", "REBALANCE", "DRY"]);
    let to_move: u64 = fields(&dry)["to_move"].parse().unwrap();
    assert!(
        to_move > 50,
        "DRY found only {to_move} keys to move: {dry:?}"
    );
    assert!(!keys().iter().any(|k| fourth.exists(k)), "DRY moved keys");
    let started = c.call(&["STRATA", "REBALANCE"]);
    assert_eq!(fields(&started)["started"], "1", "{started:?}");
    let info = wait_rebalanced(&mut c, 1);
    assert_eq!(info["rebalance_keys_failed"], "0", "{info:?}");
    assert!(
        info["rebalance_keys_moved"].parse::<u64>().unwrap() >= to_move / 2,
        "{info:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let errors = t.join().unwrap();
        assert!(
            errors.is_empty(),
            "client errors during add + rebalance: {errors:?}"
        );
    }

    // The load's own keys were written on the new ring; drop them before checking placement.
    for n in all.iter().chain(std::iter::once(&fourth)) {
        let mut conn = n.conn();
        let load_keys: Vec<String> = redis::cmd("KEYS").arg("load:*").query(&mut conn).unwrap();
        for k in load_keys {
            let _: i64 = redis::cmd("DEL").arg(k).query(&mut conn).unwrap();
        }
    }
    let nodes: Vec<&RedisNode> = all.iter().chain(std::iter::once(&fourth)).collect();
    assert_placed(&strata, &nodes, &|slot| slot);
    assert!(fourth.dbsize() > 50);
    // Nothing is left to move.
    let again = c.call(&["STRATA", "REBALANCE", "DRY"]);
    assert_eq!(fields(&again)["to_move"], "0", "{again:?}");
}

#[test]
fn a_removed_nodes_keys_are_served_by_replicas_and_moved_off_it() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes).section(LAYERS).start();
    let mut c = strata.raw();
    let cache: Vec<String> = keys()
        .into_iter()
        .filter(|k| k.starts_with("cache:"))
        .collect();
    write_keys(&mut c, &cache);
    assert!(nodes[1].dbsize() > 50);

    let removed = c.call(&["STRATA", "NODE", "REMOVE", "node2"]);
    assert_eq!(fields(&removed)["members"], "2", "{removed:?}");
    // Every two-copy key still has a copy on a member: reads find all of them at once.
    for key in &cache {
        assert_eq!(
            c.call(&["GET", key]),
            Resp::bulk(format!("v-{key}")),
            "{key}"
        );
    }
    c.call(&["STRATA", "REBALANCE"]);
    wait_rebalanced(&mut c, 1);
    assert_eq!(nodes[1].dbsize(), 0, "keys left on the removed node");
    // Two copies of each, on node1 and node3 (slots 0 and 2).
    for key in &cache {
        for n in [&nodes[0], &nodes[2]] {
            assert_eq!(
                n.get(key).as_deref(),
                Some(format!("v-{key}").as_str()),
                "{key}"
            );
        }
    }
}

#[test]
fn reads_find_keys_not_moved_yet_while_a_rebalance_runs() {
    let mut all = RedisNode::start_many(4);
    let fourth = all.pop().unwrap();
    // Slow on purpose: 100 keys a second keeps the run going while the reads check.
    let strata = Strata::builder(&all)
        .section("rebalance: {max_keys_per_sec: 100}")
        .start();
    let mut c = strata.raw();
    let plain: Vec<String> = (0..400).map(|i| format!("plain:{i}")).collect();
    write_keys(&mut c, &plain);
    c.call(&["STRATA", "NODE", "ADD", "node4", &fourth.addr()]);
    // Before a rebalance, keys whose owner changed are misses (a cache may lose them).
    let ring = strata.ring();
    let moved: Vec<&String> = plain
        .iter()
        .filter(|k| ring.primary(k.as_bytes()) == 3)
        .collect();
    assert!(moved.len() > 40, "{} keys moved", moved.len());
    assert_eq!(c.call(&["GET", moved[0]]), Resp::Nil);

    c.call(&["STRATA", "REBALANCE"]);
    assert_eq!(rebalance_info(&mut c)["rebalance_running"], "1");
    // A key deleted before the rebalance moved it does not come back from its old copy. The
    // run is already moving keys (100 a second, node by node in slot order): take one held by
    // node3, the last node it walks, so the DEL comes well before its batch.
    let deleted = moved
        .iter()
        .rev()
        .find(|k| all[2].exists(k) && !fourth.exists(k))
        .expect("a moved key still on node3")
        .to_string();
    assert_eq!(
        c.call(&["DEL", &deleted]),
        Resp::Int(0),
        "not on its new owner yet"
    );
    let moved: Vec<&String> = moved.iter().copied().filter(|k| **k != deleted).collect();
    for key in &moved {
        assert_eq!(
            c.call(&["GET", key]),
            Resp::bulk(format!("v-{key}")),
            "{key} during the rebalance"
        );
    }
    // Found keys were also copied to their new owner.
    poll_until(DEADLINE, "keys copied to node4", || {
        moved.iter().all(|k| fourth.exists(k)).then_some(())
    });
    wait_rebalanced(&mut c, 1);
    for key in plain.iter().filter(|k| **k != deleted) {
        assert_eq!(
            c.call(&["GET", key]),
            Resp::bulk(format!("v-{key}")),
            "{key} after"
        );
    }
    assert_eq!(c.call(&["GET", &deleted]), Resp::Nil);
    assert!(
        !all.iter()
            .chain(std::iter::once(&fourth))
            .any(|n| n.exists(&deleted)),
        "the deleted key came back"
    );
}

#[test]
fn auto_rebalance_follows_a_membership_change() {
    let mut all = RedisNode::start_many(4);
    let fourth = all.pop().unwrap();
    let strata = Strata::builder(&all)
        .section(LAYERS)
        .section("rebalance: {auto: true}")
        .section("admin_listen: 127.0.0.1:0")
        .start();
    let mut c = strata.raw();
    write_keys(&mut c, &keys());
    c.call(&["STRATA", "NODE", "ADD", "node4", &fourth.addr()]);
    wait_rebalanced(&mut c, 1);
    let nodes: Vec<&RedisNode> = all.iter().chain(std::iter::once(&fourth)).collect();
    assert_placed(&strata, &nodes, &|slot| slot);
    // The figures are in STRATA STATS and /metrics too.
    let stats = c.call(&["STRATA", "STATS"]);
    let items = stats.array();
    let at = items
        .iter()
        .position(|r| *r == Resp::bulk("rebalance"))
        .unwrap();
    let figures = fields(&items[at + 1]);
    assert_eq!(figures["runs"], "1", "{figures:?}");
    assert_eq!(figures["running"], "0");
    let body = common::layers::metrics(strata.handle().admin_addr.unwrap());
    let value = |series: &str| -> u64 {
        common::layers::sample(&body, series)
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("strata_rebalance_runs_total"), 1);
    assert_eq!(value("strata_rebalance_running"), 0);
    assert_eq!(
        value("strata_rebalance_keys_moved_total"),
        figures["keys_moved"].parse::<u64>().unwrap()
    );
}
