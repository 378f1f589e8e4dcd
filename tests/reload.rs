//! Hot reload over real Redis nodes: STRATA RELOAD applies a layer TTL change to the next
//! write (checked on the node), keeps a layer's figures, adds a node from the file, refuses a
//! bad file with its reason while the running configuration stays, and reports what needs a
//! restart while applying the rest.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use common::layers::{info, info_lines};
use common::{RawClient, RedisNode, Resp, Strata, StrataBuilder};

fn layer(ttl: &str) -> String {
    format!("layers:\n  - {{name: cache, prefix: 'cache:', ttl: {ttl}}}")
}

fn fields(reply: &Resp) -> BTreeMap<String, Resp> {
    reply
        .array()
        .chunks(2)
        .map(|pair| (pair[0].text(), pair[1].clone()))
        .collect()
}

/// PTTL of `key` on whichever node holds it.
fn pttl(nodes: &[RedisNode], key: &str) -> i64 {
    nodes
        .iter()
        .map(|n| {
            redis::cmd("PTTL")
                .arg(key)
                .query::<i64>(&mut n.conn())
                .unwrap()
        })
        .find(|&t| t != -2)
        .unwrap_or(-2)
}

fn rewrite(strata: &Strata, builder: StrataBuilder) {
    std::fs::write(strata.config_path(), builder.yaml()).unwrap();
}

fn writes_of_cache(c: &mut RawClient) -> i64 {
    let lines = info_lines(&info(c, "layers"));
    let fields = &lines["layer_cache"];
    fields
        .iter()
        .find(|(k, _)| k == "writes")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

#[test]
fn a_reloaded_layer_ttl_applies_to_the_next_write_and_figures_go_on() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::builder(&nodes)
        .section(&layer("5m"))
        .start_with_file();
    let mut c = strata.raw();
    assert_eq!(c.call(&["SET", "cache:a", "1"]), Resp::ok());
    let first = pttl(&nodes, "cache:a");
    assert!((290_000..=300_000).contains(&first), "{first}");
    assert_eq!(writes_of_cache(&mut c), 1);

    rewrite(&strata, Strata::builder(&nodes).section(&layer("10m")));
    let reply = c.call(&["STRATA", "RELOAD"]);
    let f = fields(&reply);
    assert_eq!(f["reloaded"], Resp::Int(1), "{reply:?}");
    assert_eq!(f["restart_needed"], Resp::Array(vec![]), "{reply:?}");
    assert_eq!(f["nodes"], Resp::Array(vec![]), "{reply:?}");
    assert_eq!(c.call(&["SET", "cache:b", "1"]), Resp::ok());
    let second = pttl(&nodes, "cache:b");
    assert!((590_000..=600_000).contains(&second), "{second}");
    // The layer's figures carried over the reload.
    assert_eq!(writes_of_cache(&mut c), 2);
}

#[test]
fn a_bad_file_is_refused_with_the_reason_and_the_running_config_stays() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::builder(&nodes)
        .section(&layer("5m"))
        .start_with_file();
    let mut c = strata.raw();
    std::fs::write(strata.config_path(), "nodes: []\nbogus: 1\n").unwrap();
    let reply = c.call(&["STRATA", "RELOAD"]);
    let text = reply.error_text();
    assert!(
        text.starts_with("ERR strata: reload refused, running configuration kept: "),
        "{text}"
    );
    assert!(
        text.contains("bogus"),
        "the reason names the bad key: {text}"
    );
    // Replication larger than the nodes: refused too.
    rewrite(
        &strata,
        Strata::builder(&nodes)
            .section("layers:\n  - {name: cache, prefix: 'cache:', replication: 3}"),
    );
    let text = c.call(&["STRATA", "RELOAD"]).error_text();
    assert!(text.contains("replication"), "{text}");
    assert_eq!(c.call(&["SET", "cache:x", "1"]), Resp::ok());
    let t = pttl(&nodes, "cache:x");
    assert!(
        (290_000..=300_000).contains(&t),
        "old TTL still applies: {t}"
    );
}

#[test]
fn reload_adds_a_node_and_reports_what_needs_a_restart() {
    let all = RedisNode::start_many(3);
    let strata = Strata::builder(&all[..2])
        .section(&layer("5m"))
        .start_with_file();
    let mut c = strata.raw();
    let grown = Strata::builder(&all)
        .section(&layer("5m"))
        .section("workers: 3")
        .section("timeouts: {connect: 500ms, request: 3s}");
    rewrite(&strata, grown);
    let reply = c.call(&["STRATA", "RELOAD"]);
    let f = fields(&reply);
    assert_eq!(
        f["nodes"],
        Resp::Array(vec![Resp::bulk("add node3")]),
        "{reply:?}"
    );
    assert_eq!(f["ring_version"], Resp::Int(2));
    assert_eq!(
        f["restart_needed"],
        Resp::Array(vec![Resp::bulk("workers")]),
        "{reply:?}"
    );
    // The new node takes writes.
    for k in 0..200 {
        assert_eq!(c.call(&["SET", &format!("k:{k}"), "v"]), Resp::ok());
    }
    assert!(all[2].dbsize() > 20, "node3 got {} keys", all[2].dbsize());
    let nodes = c.call(&["STRATA", "NODES"]);
    assert_eq!(nodes.array().len(), 3);
    // Removing it again from the file removes it.
    rewrite(&strata, Strata::builder(&all[..2]).section(&layer("5m")));
    let f = fields(&c.call(&["STRATA", "RELOAD"]));
    assert_eq!(f["nodes"], Resp::Array(vec![Resp::bulk("remove node3")]));
    assert_eq!(c.call(&["STRATA", "NODES"]).array().len(), 2);
}

#[test]
fn reload_without_a_file_says_so() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::start(&nodes);
    let mut c = strata.raw();
    assert_eq!(
        c.call(&["STRATA", "RELOAD"]).error_text(),
        "ERR strata: reload refused, running configuration kept: strata was started without a config file: nothing to reload"
    );
}
