//! Keyspace-wide commands over several nodes: SCAN (cursor walking every node, MATCH, TYPE,
//! invalid cursors), DBSIZE, KEYS, RANDOMKEY and FLUSHDB.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// Inserts `k:0 .. k:{n-1}` (value = key) with MSETs of 100 pairs.
fn insert_keys(client: &mut RawClient, n: usize) -> BTreeSet<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("k:{i}")).collect();
    for chunk in keys.chunks(100) {
        let mut args = vec!["MSET".to_string()];
        for k in chunk {
            args.push(k.clone());
            args.push(k.clone());
        }
        assert_eq!(client.call(&args), Resp::ok());
    }
    keys.into_iter().collect()
}

/// Runs a full SCAN with the given extra arguments; returns each key with how often it came.
fn scan_all(client: &mut RawClient, extra: &[&str]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut cursor = "0".to_string();
    for _ in 0..10_000 {
        let mut args = vec!["SCAN".to_string(), cursor.clone()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let reply = client.call(&args);
        let parts = reply.array();
        assert_eq!(parts.len(), 2, "{reply:?}");
        cursor = parts[0].text();
        assert!(cursor.parse::<u64>().is_ok(), "cursor {cursor:?}");
        for k in parts[1].array() {
            *seen.entry(k.text()).or_insert(0) += 1;
        }
        if cursor == "0" {
            return seen;
        }
    }
    panic!("SCAN did not finish in 10000 calls");
}

fn assert_exactly_once(seen: &BTreeMap<String, usize>, expected: &BTreeSet<String>) {
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n != 1).collect();
    assert!(dups.is_empty(), "keys returned more than once: {dups:?}");
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} returned, {} expected; missing {missing:?}, extra {extra:?}",
        got.len(),
        expected.len()
    );
}

#[test]
fn scan_returns_every_key_exactly_once() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let keys = insert_keys(&mut client, 1000);

    let seen = scan_all(&mut client, &["COUNT", "50"]);
    assert_exactly_once(&seen, &keys);

    // Default COUNT as well.
    let seen = scan_all(&mut client, &[]);
    assert_exactly_once(&seen, &keys);
}

#[test]
fn scan_with_match() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let keys = insert_keys(&mut client, 1000);

    let expected: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with("k:1"))
        .cloned()
        .collect();
    assert_eq!(expected.len(), 111);
    let seen = scan_all(&mut client, &["MATCH", "k:1*", "COUNT", "50"]);
    assert_exactly_once(&seen, &expected);
}

#[test]
fn scan_with_type() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let strings = insert_keys(&mut client, 1000);
    let hashes: BTreeSet<String> = (0..25).map(|i| format!("h:{i}")).collect();
    for h in &hashes {
        assert_eq!(client.call(&["HSET", h, "f", "v"]), Resp::Int(1));
    }

    let seen = scan_all(&mut client, &["COUNT", "50", "TYPE", "string"]);
    assert_exactly_once(&seen, &strings);
    let seen = scan_all(&mut client, &["TYPE", "hash", "COUNT", "50"]);
    assert_exactly_once(&seen, &hashes);
    let mut all = strings.clone();
    all.extend(hashes.iter().cloned());
    let seen = scan_all(&mut client, &["COUNT", "50"]);
    assert_exactly_once(&seen, &all);
}

#[test]
fn scan_over_empty_nodes_ends() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    let seen = scan_all(&mut client, &[]);
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn invalid_scan_cursors() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();
    insert_keys(&mut client, 10);
    // strata cursors carry the node index in their low bits: 999999999999 names node 1023.
    for cursor in ["abc", "999999999999", "1a", "1023"] {
        assert_eq!(
            client.call(&["SCAN", cursor]),
            Resp::err("ERR invalid cursor"),
            "SCAN {cursor:?}"
        );
    }
    assert_eq!(
        client.call(&["SCAN"]),
        Resp::err("ERR wrong number of arguments for 'scan' command")
    );
    // The connection is fine afterwards.
    assert_eq!(client.call(&["PING"]), Resp::status("PONG"));
}

#[test]
fn dbsize_keys_randomkey_flushdb() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut client = strata.raw();

    assert_eq!(client.call(&["RANDOMKEY"]), Resp::Nil);
    assert_eq!(client.call(&["DBSIZE"]), Resp::Int(0));

    let keys = insert_keys(&mut client, 1000);
    assert_eq!(client.call(&["DBSIZE"]), Resp::Int(1000));
    let direct: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(direct, 1000);

    let all = client.call(&["KEYS", "*"]);
    let listed: Vec<String> = all.array().iter().map(Resp::text).collect();
    assert_eq!(listed.len(), 1000);
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(listed, keys);

    let some = client.call(&["KEYS", "k:99*"]);
    let mut some: Vec<String> = some.array().iter().map(Resp::text).collect();
    some.sort();
    assert_eq!(
        some,
        [
            "k:99", "k:990", "k:991", "k:992", "k:993", "k:994", "k:995", "k:996", "k:997",
            "k:998", "k:999"
        ]
    );

    for _ in 0..5 {
        let k = client.call(&["RANDOMKEY"]).text();
        assert!(keys.contains(&k), "RANDOMKEY gave {k:?}");
        assert!(nodes[strata.owner(&k)].exists(&k));
    }

    assert_eq!(client.call(&["FLUSHDB"]), Resp::ok());
    assert_eq!(client.call(&["DBSIZE"]), Resp::Int(0));
    for node in &nodes {
        assert_eq!(node.dbsize(), 0);
    }
    assert_eq!(client.call(&["KEYS", "*"]), Resp::Array(vec![]));
    assert_eq!(client.call(&["RANDOMKEY"]), Resp::Nil);
}

// ---------------------------------------------------------------------------------------------
// Each key once, whatever the layers' replication
// ---------------------------------------------------------------------------------------------

/// `route:` keys keep two copies, `meta:` keys three, the others one.
const REPLICATED: &str = "layers:\n  - {name: route, prefix: 'route:', replication: 2}\n  - {name: meta, prefix: 'meta:', replication: 3}\n";

/// Fast health settings, so a killed node is marked down within about 1.2 s.
const HEALTH: &str = "health: {heartbeat_interval: 200ms, node_timeout: 1s, failure_threshold: 3, recovery_threshold: 3}";

fn replicated_strata(nodes: &[RedisNode]) -> Strata {
    Strata::builder(nodes)
        .section(REPLICATED)
        .section(HEALTH)
        .section("stats: {layer_keys_interval: 0s}")
        .start()
}

/// Writes `route:0..`, `meta:0..` and `plain:0..`, `n` of each (value = key).
fn insert_layered(client: &mut RawClient, n: usize) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for prefix in ["route:", "meta:", "plain:"] {
        for i in 0..n {
            let key = format!("{prefix}{i}");
            assert_eq!(client.call(&["SET", &key, &key]), Resp::ok(), "{key}");
            keys.insert(key);
        }
    }
    keys
}

/// KEYS * as a key → times listed map.
fn keys_listed(client: &mut RawClient, pattern: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for k in client.call(&["KEYS", pattern]).array() {
        *seen.entry(k.text()).or_insert(0) += 1;
    }
    seen
}

/// `db0:keys=..` of INFO keyspace: field → value.
fn keyspace_db0(client: &mut RawClient) -> BTreeMap<String, i64> {
    let text = client.call(&["INFO", "keyspace"]).text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("db0:"))
        .unwrap_or_else(|| panic!("no db0 line in {text:?}"));
    line.split(',')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap();
            (k.to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

fn node_state(client: &mut RawClient, node: &str) -> String {
    let text = client.call(&["INFO", "nodes"]).text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("node_{node}:")))
        .unwrap_or_else(|| panic!("no line for {node} in {text}"));
    line.split(',')
        .find_map(|f| f.strip_prefix("state="))
        .unwrap()
        .to_string()
}

#[test]
fn the_issues_example_lists_each_key_once() {
    let nodes = RedisNode::start_many(3);
    let strata = replicated_strata(&nodes);
    let mut c = strata.raw();
    for (k, v) in [("route:a", "1"), ("meta:b", "2"), ("plain", "3")] {
        assert_eq!(c.call(&["SET", k, v]), Resp::ok());
    }
    // The nodes hold six copies ...
    let copies: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(copies, 6);
    // ... strata reports three keys.
    let mut listed: Vec<String> = c
        .call(&["KEYS", "*"])
        .array()
        .iter()
        .map(Resp::text)
        .collect();
    listed.sort();
    assert_eq!(listed, ["meta:b", "plain", "route:a"]);
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(3));
    let expected: BTreeSet<String> = listed.into_iter().collect();
    assert_exactly_once(&scan_all(&mut c, &["COUNT", "1"]), &expected);
    assert_eq!(keyspace_db0(&mut c)["keys"], 3);
}

#[test]
fn replicated_layers_count_each_key_once() {
    let nodes = RedisNode::start_many(3);
    let strata = replicated_strata(&nodes);
    let mut c = strata.raw();
    let keys = insert_layered(&mut c, 200);
    for i in 0..50 {
        let key = format!("route:{i}");
        assert_eq!(c.call(&["EXPIRE", &key, "1000"]), Resp::Int(1));
    }
    let copies: i64 = nodes.iter().map(|n| n.dbsize()).sum();
    assert_eq!(copies, 200 * (2 + 3 + 1), "copies on the nodes");

    let listed = keys_listed(&mut c, "*");
    assert_exactly_once(&listed, &keys);
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(600));
    assert_exactly_once(&scan_all(&mut c, &["COUNT", "50"]), &keys);
    assert_exactly_once(&scan_all(&mut c, &[]), &keys);
    let meta: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with("meta:1"))
        .cloned()
        .collect();
    assert_exactly_once(
        &scan_all(&mut c, &["MATCH", "meta:1*", "COUNT", "30"]),
        &meta,
    );
    assert_exactly_once(&keys_listed(&mut c, "meta:1*"), &meta);

    let db0 = keyspace_db0(&mut c);
    assert_eq!(db0["keys"], 600, "{db0:?}");
    assert_eq!(db0["expires"], 50, "{db0:?}");
    assert!((900_000..=1_000_000).contains(&db0["avg_ttl"]), "{db0:?}");

    for _ in 0..20 {
        let k = c.call(&["RANDOMKEY"]).text();
        assert!(keys.contains(&k), "RANDOMKEY gave {k:?}");
    }
}

#[test]
fn each_key_once_while_a_node_is_down() {
    let mut nodes = RedisNode::start_many(3);
    let strata = replicated_strata(&nodes);
    let mut c = strata.raw();
    let keys = insert_layered(&mut c, 200);

    nodes[1].kill();
    poll_until(DEADLINE, "node2 marked down", || {
        (node_state(&mut c, "node2") == "down").then_some(())
    });
    // The replicated keys are all still there, once; the one-copy keys of node2 are gone.
    let expected: BTreeSet<String> = keys
        .iter()
        .filter(|k| !k.starts_with("plain:") || strata.owner(k) != 1)
        .cloned()
        .collect();
    assert!(expected.len() < keys.len() && expected.len() > 500);
    assert_exactly_once(&keys_listed(&mut c, "*"), &expected);
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(expected.len() as i64));
    assert_exactly_once(&scan_all(&mut c, &["COUNT", "40"]), &expected);
    assert_eq!(keyspace_db0(&mut c)["keys"], expected.len() as i64);
    for _ in 0..20 {
        let k = c.call(&["RANDOMKEY"]).text();
        assert!(expected.contains(&k), "RANDOMKEY gave {k:?}");
    }
}

#[test]
fn a_scan_survives_a_node_failing_mid_way() {
    let mut nodes = RedisNode::start_many(3);
    let strata = replicated_strata(&nodes);
    let mut c = strata.raw();
    let keys = insert_layered(&mut c, 300);

    // Scan until the middle of node2's turn (the turn is the cursor's low 10 bits, the node's
    // own cursor above bit 21: see docs/commands.md, SCAN).
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor = "0".to_string();
    let mut pages = 0;
    loop {
        let reply = c.call(&["SCAN", &cursor, "COUNT", "20"]);
        cursor = reply.array()[0].text();
        for k in reply.array()[1].array() {
            *seen.entry(k.text()).or_insert(0) += 1;
        }
        pages += 1;
        let n: u64 = cursor.parse().unwrap();
        assert_ne!(n, 0, "the scan ended before node2's turn");
        if n & 1023 == 1 && n >> 21 != 0 {
            break;
        }
        assert!(pages < 1000);
    }
    nodes[1].kill();
    poll_until(DEADLINE, "node2 marked down", || {
        (node_state(&mut c, "node2") == "down").then_some(())
    });
    for _ in 0..10_000 {
        let reply = c.call(&["SCAN", &cursor, "COUNT", "20"]);
        cursor = reply.array()[0].text();
        for k in reply.array()[1].array() {
            *seen.entry(k.text()).or_insert(0) += 1;
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0");
    // Every key that stayed readable came at least once (node2's turn started again from the
    // other replicas, so some came twice); nothing else came.
    let readable: BTreeSet<String> = keys
        .iter()
        .filter(|k| !k.starts_with("plain:") || strata.owner(k) != 1)
        .cloned()
        .collect();
    let missing: Vec<&String> = readable.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(missing.is_empty(), "never returned: {missing:?}");
    let strangers: Vec<&String> = seen.keys().filter(|k| !keys.contains(*k)).collect();
    assert!(strangers.is_empty(), "{strangers:?}");
}

/// The keys of a node, RANDOMKEY asked `n` times: how often each came.
fn randomkeys(c: &mut RawClient, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(c.call(&["RANDOMKEY"]).text()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn randomkey_picks_among_every_node() {
    let nodes = RedisNode::start_many(3);
    let strata = replicated_strata(&nodes);
    let mut c = strata.raw();
    // One key on node2 and one on node3 (node1 empty), then two replicated keys with
    // different primaries.
    let a = strata.key_on(1, "foo", &[]);
    let b = strata.key_on(2, "bar", &[]);
    for k in [&a, &b] {
        assert_eq!(c.call(&["SET", k, "x"]), Resp::ok());
    }
    let seen = randomkeys(&mut c, 200);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for k in [&a, &b] {
        assert!(seen[k] >= 40, "{k} came {} of 200 times: {seen:?}", seen[k]);
    }

    assert_eq!(c.call(&["FLUSHDB"]), Resp::ok());
    let r = strata.key_on(0, "route:", &[]);
    let m = strata.key_on(1, "meta:", &[]);
    for k in [&r, &m] {
        assert_eq!(c.call(&["SET", k, "x"]), Resp::ok());
    }
    // Five copies on the nodes, two keys, each about half the time.
    let seen = randomkeys(&mut c, 200);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for k in [&r, &m] {
        assert!(seen[k] >= 40, "{k} came {} of 200 times: {seen:?}", seen[k]);
    }
}

#[test]
fn keys_moved_by_a_membership_change_count_once_their_owner_has_them() {
    let nodes = RedisNode::start_many(4);
    let strata = Strata::builder(&nodes[..3])
        .section(REPLICATED)
        .section("stats: {layer_keys_interval: 0s}")
        .start();
    let mut c = strata.raw();
    let keys = insert_layered(&mut c, 150);
    let added = c.call(&["STRATA", "NODE", "ADD", "node4", &nodes[3].addr()]);
    assert!(!added.is_error(), "{added:?}");
    // Before a rebalance: the keys whose owner is now node4 are not on it; like reads, the
    // listings do not find them, and every listing agrees.
    let listed = keys_listed(&mut c, "*");
    assert!(listed.values().all(|&n| n == 1), "{listed:?}");
    let before = listed.len();
    assert!(before < keys.len(), "nothing moved to node4");
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(before as i64));
    assert_eq!(scan_all(&mut c, &["COUNT", "50"]).len(), before);
    // Once the rebalance moved them, every key is back, once.
    assert!(!c.call(&["STRATA", "REBALANCE"]).is_error());
    poll_until(std::time::Duration::from_secs(60), "the rebalance", || {
        let info = c.call(&["INFO", "rebalance"]).text();
        (info.contains("rebalance_running:0") && info.contains("rebalance_runs:1")).then_some(())
    });
    assert_exactly_once(&keys_listed(&mut c, "*"), &keys);
    assert_eq!(c.call(&["DBSIZE"]), Resp::Int(keys.len() as i64));
    assert_exactly_once(&scan_all(&mut c, &["COUNT", "50"]), &keys);
}
