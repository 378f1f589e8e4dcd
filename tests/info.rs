//! What strata tells tools about itself, against real nodes: CONFIG GET (strata's own
//! parameters, the others from the first node that is up, globs and several patterns as Redis
//! 7 answers them) and INFO's figures (blocked clients, instantaneous ops, keyspace hits and
//! misses, memory, rejected calls and connections), each checked against what happened.

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

use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

const HEALTH: &str = "health: {heartbeat_interval: 200ms, node_timeout: 1s, failure_threshold: 3, recovery_threshold: 3}";

/// A CONFIG GET reply as name → value, asserting no name comes twice.
fn config_map(reply: &Resp) -> BTreeMap<String, String> {
    let items = reply.array();
    assert_eq!(items.len() % 2, 0, "{reply:?}");
    let mut out = BTreeMap::new();
    for pair in items.chunks(2) {
        let name = pair[0].text();
        let again = out.insert(name.to_ascii_lowercase(), pair[1].text());
        assert!(again.is_none(), "{name} twice in {reply:?}");
    }
    out
}

fn config_get(c: &mut RawClient, patterns: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["CONFIG", "GET"];
    args.extend_from_slice(patterns);
    config_map(&c.call(&args))
}

/// CONFIG SET straight on a node.
fn node_config_set(node: &RedisNode, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut node.conn())
        .unwrap();
}

/// One INFO section as field → value.
fn info(c: &mut RawClient, section: &str) -> BTreeMap<String, String> {
    c.call(&["INFO", section])
        .text()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn info_num(c: &mut RawClient, section: &str, field: &str) -> i64 {
    let fields = info(c, section);
    fields
        .get(field)
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {fields:?}"))
        .parse()
        .unwrap()
}

fn node_is_down(c: &mut RawClient, node: &str) -> bool {
    info(c, "nodes")[&format!("node_{node}")].contains("state=down")
}

#[test]
fn config_get_maxmemory_is_the_first_up_nodes() {
    let mut nodes = RedisNode::start_many(2);
    let strata = Strata::builder(&nodes).section(HEALTH).start();
    let mut c = strata.raw();
    assert_eq!(config_get(&mut c, &["maxmemory"])["maxmemory"], "0");
    assert_eq!(
        c.call(&["CONFIG", "SET", "maxmemory", "104857600"]),
        Resp::ok()
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "maxmemory"]),
        Resp::bulks(&["maxmemory", "104857600"])
    );
    // The nodes disagree: the first node that is up answers, in INFO too.
    node_config_set(&nodes[0], "maxmemory", "50mb");
    node_config_set(&nodes[1], "maxmemory", "70mb");
    node_config_set(&nodes[1], "maxmemory-policy", "allkeys-lru");
    assert_eq!(config_get(&mut c, &["maxmemory"])["maxmemory"], "52428800");
    let memory = info(&mut c, "memory");
    assert_eq!(memory["maxmemory"], "52428800", "{memory:?}");
    assert_eq!(memory["maxmemory_human"], "50.00M", "{memory:?}");
    assert_eq!(memory["maxmemory_policy"], "noeviction", "{memory:?}");
    nodes[0].kill();
    poll_until(DEADLINE, "node1 marked down", || {
        node_is_down(&mut c, "node1").then_some(())
    });
    let got = config_get(&mut c, &["maxmemory", "maxmemory-policy"]);
    assert_eq!(got["maxmemory"], "73400320");
    assert_eq!(got["maxmemory-policy"], "allkeys-lru");
    assert_eq!(info(&mut c, "memory")["maxmemory_policy"], "allkeys-lru");
    // strata's own parameters still answer without a node.
    nodes[1].kill();
    poll_until(DEADLINE, "node2 marked down", || {
        node_is_down(&mut c, "node2").then_some(())
    });
    assert_eq!(
        c.call(&["CONFIG", "GET", "save", "appendonly"]),
        Resp::bulks(&["save", "", "appendonly", "no"])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "maxmemory"]),
        Resp::err("ERR strata: no node is up")
    );
    // INFO leaves out what no node could say rather than make it up.
    let memory = info(&mut c, "memory");
    assert!(!memory.contains_key("maxmemory"), "{memory:?}");
    assert!(memory["used_memory"].parse::<u64>().unwrap() > 0);
}

#[test]
fn config_get_patterns_as_redis_7() {
    let reference = RedisNode::start();
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    let mut direct = RawClient::connect(&reference.addr());
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();

    // Every parameter, once each, strata's own with strata's values.
    let all = config_get(&mut c, &["*"]);
    let want = config_map(&direct.call(&["CONFIG", "GET", "*"]));
    assert!(all.len() > 100, "{}", all.len());
    assert_eq!(names(&all), names(&want));
    assert_eq!(all["port"], strata.port().to_string());
    assert_eq!(all["databases"], "1");
    assert_eq!(all["save"], "");
    assert_eq!(all["maxmemory-policy"], want["maxmemory-policy"]);

    for patterns in [
        &["maxmemory*"][..],
        &["MAXMEM*"][..],
        &["maxmemory", "maxmemory-policy", "MAXMEMORY", "save", "port"][..],
        &["maxmemory", "max*"][..],
        &["*max-*-entries", "[sp]ort", "p?rt"][..],
        &["no-such-parameter", "nosuch*"][..],
    ] {
        let got = config_get(&mut c, patterns);
        let mut args = vec!["CONFIG", "GET"];
        args.extend_from_slice(patterns);
        let want = config_map(&direct.call(&args));
        assert_eq!(names(&got), names(&want), "{patterns:?}");
        for (name, value) in &got {
            if !["port", "bind", "databases", "save", "appendonly"].contains(&name.as_str()) {
                assert_eq!(value, &want[name], "{name} of {patterns:?}");
            }
        }
    }
    assert_eq!(
        config_get(&mut c, &["p*rt"])["port"],
        strata.port().to_string()
    );
    // A literal name comes back as it was typed, once.
    assert_eq!(
        c.call(&["CONFIG", "GET", "SAVE", "save"]),
        Resp::bulks(&["SAVE", ""])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "MAXMEMORY"]),
        Resp::bulks(&["MAXMEMORY", "0"])
    );
}

#[test]
fn blocked_clients_counts_clients_in_blpop() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    assert_eq!(info_num(&mut c, "clients", "blocked_clients"), 0);

    let mut blocked = strata.raw();
    blocked.send_cmd(&["BLPOP", "queue", "0"]);
    poll_until(DEADLINE, "blocked_clients 1", || {
        (info_num(&mut c, "clients", "blocked_clients") == 1).then_some(())
    });
    assert_eq!(c.call(&["LPUSH", "queue", "x"]), Resp::Int(1));
    assert_eq!(blocked.read_reply(), Resp::bulks(&["queue", "x"]));
    poll_until(DEADLINE, "blocked_clients 0 after the reply", || {
        (info_num(&mut c, "clients", "blocked_clients") == 0).then_some(())
    });

    // A client that goes away while blocked stops counting.
    blocked.send_cmd(&["BLPOP", "queue", "0"]);
    let mut other = strata.raw();
    other.send_cmd(&["BRPOP", "other", "0"]);
    poll_until(DEADLINE, "blocked_clients 2", || {
        (info_num(&mut c, "clients", "blocked_clients") == 2).then_some(())
    });
    drop(blocked);
    poll_until(DEADLINE, "blocked_clients 1 after a disconnect", || {
        (info_num(&mut c, "clients", "blocked_clients") == 1).then_some(())
    });
    drop(other);
    poll_until(DEADLINE, "blocked_clients 0 after both left", || {
        (info_num(&mut c, "clients", "blocked_clients") == 0).then_some(())
    });
}

#[test]
fn instantaneous_ops_per_sec_follows_the_load() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    // The test's own polling (one INFO per 20 ms) stays far below these thresholds.
    poll_until(DEADLINE, "a quiet start", || {
        (info_num(&mut c, "stats", "instantaneous_ops_per_sec") < 200).then_some(())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let mut client = strata.raw();
        std::thread::spawn(move || {
            let batch: Vec<Vec<u8>> = (0..100).map(|_| common::encode_cmd(&["PING"])).collect();
            let batch = batch.concat();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client.send(&batch);
                for _ in 0..100 {
                    assert_eq!(client.read_reply(), Resp::status("PONG"));
                }
                sent += 100;
            }
            sent
        })
    };
    let busy = poll_until(DEADLINE, "instantaneous_ops_per_sec under load", || {
        let ops = info_num(&mut c, "stats", "instantaneous_ops_per_sec");
        (ops >= 2000).then_some(ops)
    });
    let kbps: f64 = info(&mut c, "stats")["instantaneous_input_kbps"]
        .parse()
        .unwrap();
    assert!(kbps > 1.0, "input kbps {kbps} at {busy} ops/s");
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    assert!(sent > 0);
    poll_until(DEADLINE, "instantaneous_ops_per_sec back down", || {
        (info_num(&mut c, "stats", "instantaneous_ops_per_sec") < 200).then_some(())
    });
}

#[test]
fn keyspace_hits_misses_and_rejected_calls_are_counted() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::builder(&nodes)
        .section("layers:\n  - {name: route, prefix: 'route:', replication: 2}")
        .start();
    let mut c = strata.raw();
    let stats = |c: &mut RawClient| {
        (
            info_num(c, "stats", "keyspace_hits"),
            info_num(c, "stats", "keyspace_misses"),
        )
    };
    assert_eq!(stats(&mut c), (0, 0));
    for key in ["nope", "route:nope", "nope2"] {
        assert_eq!(c.call(&["GET", key]), Resp::Nil);
    }
    assert_eq!(stats(&mut c), (0, 3));
    assert_eq!(c.call(&["SET", "k", "v"]), Resp::ok());
    assert_eq!(c.call(&["SET", "route:k", "v"]), Resp::ok());
    assert_eq!(c.call(&["GET", "k"]), Resp::bulk("v"));
    assert_eq!(c.call(&["GET", "route:k"]), Resp::bulk("v"));
    // The layers' own figures, summed: MGET counts per key.
    c.call(&["MGET", "k", "missing"]);
    assert_eq!(stats(&mut c), (3, 4));

    // Refused before running: rejected_calls, not calls.
    assert!(c.call(&["GET"]).is_error());
    assert!(c.call(&["GET", "a", "b"]).is_error());
    let line = info(&mut c, "commandstats")["cmdstat_get"].clone();
    assert!(
        line.starts_with("calls=5,") && line.contains(",rejected_calls=2,failed_calls=0"),
        "{line}"
    );
    assert!(c.call(&["HSET", "h"]).is_error());
    let line = info(&mut c, "commandstats")["cmdstat_hset"].clone();
    assert_eq!(
        line,
        "calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
    );
}

#[test]
fn connections_and_memory_are_real_counts() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section("limits: {max_clients: 2}")
        .start();
    let mut c = strata.raw();
    let mut second = strata.raw();
    assert_eq!(second.call(&["PING"]), Resp::status("PONG"));
    let mut third = strata.raw();
    assert_eq!(
        third.read_reply(),
        Resp::err("ERR max number of clients reached")
    );
    let clients = info(&mut c, "clients");
    assert_eq!(clients["connected_clients"], "2", "{clients:?}");
    let stats = info(&mut c, "stats");
    // Redis counts a refused connection as rejected, not as received.
    assert_eq!(stats["total_connections_received"], "2", "{stats:?}");
    assert_eq!(stats["rejected_connections"], "1", "{stats:?}");

    let memory = info(&mut c, "memory");
    let used: u64 = memory["used_memory"].parse().unwrap();
    // strata's resident set: more than a megabyte, less than a few gigabytes.
    assert!((1 << 20..1 << 32).contains(&used), "{memory:?}");
    assert!(memory["used_memory_human"].ends_with('M'), "{memory:?}");
    assert_eq!(memory["maxmemory"], "0");
    assert_eq!(memory["maxmemory_policy"], "noeviction");
    // INFO's default sections include memory, in Redis's order.
    let all = c.call(&["INFO"]).text();
    let order: Vec<&str> = all.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(
        &order[..4],
        ["# Server", "# Clients", "# Memory", "# Stats"]
    );
}
