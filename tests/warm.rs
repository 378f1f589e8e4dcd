//! Warming over real Redis nodes: `strata warm` (the library's `warm::run`) and `STRATA WARM`
//! write through the layer TTL policy and count as warm operations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;

use common::layers::*;
use common::{RedisNode, Resp};

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn strata_warm_loads_a_file_through_the_layer_policy() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let mut c = strata.raw();

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let file = TempFile(std::env::temp_dir().join(format!(
        "strata-layers-warm-{}-{nanos}.jsonl",
        std::process::id()
    )));
    let mut text = String::new();
    for i in 0..200 {
        if i % 4 == 0 {
            text.push_str(&format!(
                "{{\"key\":\"route:w{i}\",\"value\":\"v{i}\",\"ttl\":\"30s\"}}\n"
            ));
        } else {
            text.push_str(&format!("{{\"key\":\"route:w{i}\",\"value\":\"v{i}\"}}\n"));
        }
        if i == 100 {
            text.push_str("{\"key\": 5, \"value\": \"x\"}\n");
        }
    }
    std::fs::write(&file.0, text).unwrap();

    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    let summary = strata::warm::run(&strata::warm::WarmOptions {
        addr: strata.addr().to_string(),
        file: file.0.clone(),
        pipeline: 16,
        progress: false,
    })
    .unwrap();
    assert_eq!(
        (summary.written, summary.failed, summary.invalid),
        (200, 0, 1),
        "{summary}"
    );
    assert_eq!(summary.problems, ["line 102: key must be a string"]);

    for i in 0..200 {
        let key = format!("route:w{i}");
        let node = &nodes[strata.owner(&key)];
        assert_eq!(node.get(&key), Some(format!("v{i}")), "{key}");
        let ms = pttl(node, &key);
        if i % 4 == 0 {
            assert!((25_000..=30_000).contains(&ms), "{key}: PTTL {ms}");
        } else {
            // No ttl in the file: the layer's 5m.
            assert!((295_000..=300_000).contains(&ms), "{key}: PTTL {ms}");
        }
    }
    let l = layers(&mut c);
    assert_eq!(l["route"]["warms"], "200");
    // Warm writes are warms, not writes; the default TTL was added to the 150 without one.
    assert_eq!(l["route"]["writes"], "0");
    assert_eq!(l["route"]["expirations"], "150");
    assert_eq!(l["route"]["errors"], "0");
    assert_eq!(l["default"]["warms"], "0");
}

#[test]
fn strata_warm_command_writes_one_key() {
    let nodes = RedisNode::start_many(2);
    let strata = start(&nodes, "");
    let mut c = strata.raw();
    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());

    assert_eq!(
        call(&mut c, &["STRATA", "WARM", "route:z", "v"]),
        Resp::ok()
    );
    let node = &nodes[strata.owner("route:z")];
    assert_eq!(node.get("route:z").as_deref(), Some("v"));
    let ms = pttl(node, "route:z");
    assert!((295_000..=300_000).contains(&ms), "PTTL {ms}");

    assert_eq!(
        call(&mut c, &["STRATA", "WARM", "meta:z", "w", "5000"]),
        Resp::ok()
    );
    let node = &nodes[strata.owner("meta:z")];
    let ms = pttl(node, "meta:z");
    assert!((1..=5_000).contains(&ms), "PTTL {ms}");

    const BAD_TTL: &str = "ERR strata: WARM ttl must be a positive number of milliseconds";
    for ttl in ["notanumber", "0", "-5", "1.5"] {
        assert_eq!(
            call(&mut c, &["STRATA", "WARM", "route:z", "x", ttl]),
            Resp::err(BAD_TTL),
            "ttl {ttl:?}"
        );
    }
    for args in [
        &["STRATA", "WARM"][..],
        &["STRATA", "WARM", "route:z"],
        &["STRATA", "WARM", "route:z", "x", "1000", "extra"],
    ] {
        let reply = call(&mut c, args);
        assert!(
            reply
                .error_text()
                .starts_with("ERR wrong number of arguments"),
            "{args:?}: {reply:?}"
        );
    }
    // The refused ones changed nothing.
    assert_eq!(call(&mut c, &["GET", "route:z"]), Resp::bulk("v"));

    let l = layers(&mut c);
    assert_eq!(l["route"]["warms"], "1");
    assert_eq!(l["meta"]["warms"], "1");
    // Only the TTL-less warm had the layer TTL added.
    assert_eq!(l["route"]["expirations"], "1");
    assert_eq!(l["meta"]["expirations"], "0");
}
