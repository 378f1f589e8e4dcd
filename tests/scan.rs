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

use common::{RawClient, RedisNode, Resp, Strata};

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
