//! What strata tells tools about itself, against real nodes: CONFIG GET (strata's own
//! parameters, the others from the first node that is up, globs and several patterns as Redis
//! 7 answers them).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

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
    // The nodes disagree: the first node that is up answers.
    node_config_set(&nodes[0], "maxmemory", "50mb");
    node_config_set(&nodes[1], "maxmemory", "70mb");
    node_config_set(&nodes[1], "maxmemory-policy", "allkeys-lru");
    assert_eq!(config_get(&mut c, &["maxmemory"])["maxmemory"], "52428800");
    nodes[0].kill();
    poll_until(DEADLINE, "node1 marked down", || {
        node_is_down(&mut c, "node1").then_some(())
    });
    let got = config_get(&mut c, &["maxmemory", "maxmemory-policy"]);
    assert_eq!(got["maxmemory"], "73400320");
    assert_eq!(got["maxmemory-policy"], "allkeys-lru");
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
