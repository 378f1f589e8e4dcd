//! Key layers over real Redis nodes: per-layer hits, misses, writes, deletes and errors from a
//! scripted session (INFO `# Layers`, `STRATA LAYERS`, `STRATA STATS`), latency per command class
//! and commandstats, node counters, and the layer key count.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use common::layers::*;
use common::{poll_until, RedisNode, Resp, DEADLINE};

#[test]
fn scripted_session_counts_hits_misses_writes_deletes_and_errors_per_layer() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let mut c = strata.raw();

    // The policy half of the lines, before any traffic.
    let before = layers(&mut c);
    let policy = [
        ("route", "route:", "300000"),
        ("result", "result:", "600000"),
        ("meta", "meta:", "60000"),
        ("load", "load:", "5000"),
        ("default", "", "-1"),
    ];
    for (name, prefix, ttl) in policy {
        let l = &before[name];
        assert_eq!(l["prefix"], prefix, "{name}");
        assert_eq!(l["ttl_ms"], ttl, "{name}");
        assert_eq!(l["max_ttl_ms"], "-1", "{name}");
        // The key count is off in this test: unknown.
        assert_eq!(l["keys"], "-1", "{name}");
    }

    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    let script: &[(&[&str], Resp)] = &[
        // route miss
        (&["GET", "route:a"], Resp::Nil),
        // route write (+ the layer TTL added: one expiration)
        (&["SET", "route:a", "v"], Resp::ok()),
        // route hits 1, 2
        (&["GET", "route:a"], Resp::bulk("v")),
        (&["GET", "route:a"], Resp::bulk("v")),
        // route hit 3, miss 2; result miss 1; meta miss 1
        (
            &["MGET", "route:a", "route:b", "result:q:m", "meta:m"],
            Resp::Array(vec![Resp::bulk("v"), Resp::Nil, Resp::Nil, Resp::Nil]),
        ),
        // route hit 4, miss 3
        (&["EXISTS", "route:a", "route:b"], Resp::Int(1)),
        // meta miss 2 (empty collection)
        (&["HGETALL", "meta:none"], Resp::Array(vec![])),
        // load miss 1
        (&["SMEMBERS", "load:none"], Resp::Array(vec![])),
        // meta write (+ PEXPIRE NX follower: one expiration)
        (&["HSET", "meta:m", "f", "v"], Resp::Int(1)),
        // meta hit 1
        (&["HGET", "meta:m", "f"], Resp::bulk("v")),
        // meta miss 3: the hash exists, the field does not
        (&["HGET", "meta:m", "g"], Resp::Nil),
        // route miss 4 (count 0)
        (&["STRLEN", "route:nope"], Resp::Int(0)),
        // route miss 5 (TTL -2)
        (&["TTL", "route:nope"], Resp::Int(-2)),
        // route hit 5
        (&["TYPE", "route:a"], Resp::status("string")),
        // route hit 6
        (&["GET", "route:a"], Resp::bulk("v")),
        // route deletes 1, 2: every key named counts
        (&["DEL", "route:a", "route:zz"], Resp::Int(1)),
        // route write 2, expiration 2
        (&["SET", "route:s", "x"], Resp::ok()),
        // route error 1 (WRONGTYPE, below)
        (&["LPUSH", "route:s", "x"], Resp::Nil),
        // route delete 3, meta delete 1: a mixed-layer DEL counts each key in its own layer
        (&["DEL", "route:s", "meta:m"], Resp::Int(2)),
        // default layer: write 1 (no TTL rule), hit 1
        (&["SET", "plain", "p"], Resp::ok()),
        (&["GET", "plain"], Resp::bulk("p")),
    ];
    for (args, want) in script {
        let got = call(&mut c, args);
        if args[0] == "LPUSH" {
            assert!(
                got.error_text().starts_with("WRONGTYPE "),
                "{args:?}: {got:?}"
            );
        } else {
            assert_eq!(&got, want, "{args:?}");
        }
    }

    let route = counts("6", "5", "0.5455", "2", "3", "2", "1");
    let result = counts("0", "1", "0.0000", "0", "0", "0", "0");
    let meta = counts("1", "3", "0.2500", "1", "1", "1", "0");
    let load = counts("0", "1", "0.0000", "0", "0", "0", "0");
    let default = counts("1", "0", "1.0000", "1", "0", "0", "0");
    assert_layers(
        &mut c,
        &[
            ("route", &route),
            ("result", &result),
            ("meta", &meta),
            ("load", &load),
            ("default", &default),
        ],
        "after the script",
    );
    // Every layer that served a request has latency figures.
    let after = layers(&mut c);
    for name in ["route", "meta", "load", "default"] {
        assert!(
            num(&after[name], "p999_usec") >= num(&after[name], "p50_usec"),
            "{name}: {:?}",
            after[name]
        );
    }

    let stats = commandstats(&mut c);
    assert_eq!(num(&stats["get"], "calls"), 5, "{stats:?}");
    assert_eq!(num(&stats["get"], "failed_calls"), 0);
    assert_eq!(num(&stats["lpush"], "calls"), 1);
    assert_eq!(num(&stats["lpush"], "failed_calls"), 1);
    assert_eq!(num(&stats["set"], "calls"), 3);
    assert_eq!(num(&stats["del"], "calls"), 2);
    assert_eq!(num(&stats["hget"], "calls"), 2);
    assert_eq!(num(&stats["config"], "calls"), 1);
    // The INFO layers calls above were counted after they answered.
    assert_eq!(num(&stats["info"], "calls"), 2);

    // RESETSTAT clears every layer figure; the only command counted after it is itself.
    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    let zero: Vec<(&str, &[(&str, &str)])> = LAYER_NAMES.iter().map(|n| (*n, &ZERO[..])).collect();
    assert_layers(&mut c, &zero, "after RESETSTAT");
    let after_reset = layers(&mut c);
    for name in LAYER_NAMES {
        assert_eq!(after_reset[name]["p50_usec"], "0", "{name}");
        assert_eq!(after_reset[name]["keys"], "-1", "{name}");
    }
    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    let stats = commandstats(&mut c);
    assert_eq!(
        stats.keys().collect::<Vec<_>>(),
        ["config"],
        "commandstats right after RESETSTAT: {stats:?}"
    );
    assert_eq!(num(&stats["config"], "calls"), 1);
}

// ---------------------------------------------------------------------------------------------
// STRATA LAYERS / STRATA STATS
// ---------------------------------------------------------------------------------------------

const LAYER_REPLY_FIELDS: [&str; 29] = [
    "name",
    "prefix",
    "key",
    "ttl_ms",
    "max_ttl_ms",
    "replication",
    "write_consistency",
    "read_consistency",
    "hits",
    "misses",
    "hit_rate",
    "writes",
    "deletes",
    "invalidations",
    "expirations",
    "warms",
    "errors",
    "failovers",
    "miss_failovers",
    "repairs",
    "write_failures",
    "miss_failover",
    "eject_on_down",
    "keys",
    "requests",
    "p50_usec",
    "p95_usec",
    "p99_usec",
    "p999_usec",
];

/// Asserts STRATA LAYERS-style arrays against INFO's figures.
fn assert_layer_replies_match_info(
    replies: &Resp,
    info: &BTreeMap<String, BTreeMap<String, String>>,
) {
    let replies = replies.array();
    assert_eq!(replies.len(), LAYER_NAMES.len(), "{replies:?}");
    for (reply, name) in replies.iter().zip(LAYER_NAMES) {
        assert_eq!(field_names(reply), LAYER_REPLY_FIELDS, "{name}");
        let f = fields(reply);
        assert_eq!(f["name"].text(), name);
        let line = &info[name];
        assert_eq!(f["prefix"].text(), line["prefix"], "{name}");
        for int_field in [
            "ttl_ms",
            "max_ttl_ms",
            "hits",
            "misses",
            "writes",
            "deletes",
            "invalidations",
            "expirations",
            "warms",
            "errors",
            "keys",
        ] {
            assert_eq!(
                f[int_field].int(),
                num(line, int_field),
                "{name}.{int_field}"
            );
        }
        assert_eq!(f["hit_rate"].text(), line["hit_rate"], "{name}.hit_rate");
        assert_eq!(f["replication"], Resp::Int(1), "{name}");
    }
}

#[test]
fn strata_layers_and_stats_replies_carry_the_info_figures() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let mut c = strata.raw();
    wait_all_up(&mut c);

    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    let mut sent = 1; // CONFIG RESETSTAT, counted once it answered
    let mut taken: Vec<String> = Vec::new();
    // One route: key per node, so every node gets requests.
    for n in 0..nodes.len() {
        let k = strata.key_on(n, "route:", &taken);
        assert_eq!(call(&mut c, &["GET", &k]), Resp::Nil);
        assert_eq!(call(&mut c, &["SET", &k, "v"]), Resp::ok());
        assert_eq!(call(&mut c, &["GET", &k]), Resp::bulk("v"));
        sent += 3;
        taken.push(k);
    }
    assert_eq!(call(&mut c, &["GET", "meta:x"]), Resp::Nil);
    assert_eq!(call(&mut c, &["GET", "result:q:m"]), Resp::Nil);
    assert_eq!(call(&mut c, &["PING"]), Resp::status("PONG"));
    sent += 3;

    let reply = call(&mut c, &["STRATA", "LAYERS"]);
    sent += 1;
    let info = layers(&mut c);
    sent += 1;
    assert_layer_replies_match_info(&reply, &info);
    let by_name: BTreeMap<String, BTreeMap<String, Resp>> = reply
        .array()
        .iter()
        .map(|l| {
            let f = fields(l);
            (f["name"].text(), f)
        })
        .collect();
    let route = &by_name["route"];
    assert_eq!(route["prefix"].text(), "route:");
    assert_eq!(route["key"].text(), "route:{query}");
    assert_eq!(route["ttl_ms"], Resp::Int(300_000));
    assert_eq!(route["max_ttl_ms"], Resp::Int(-1));
    assert_eq!(route["hits"], Resp::Int(3));
    assert_eq!(route["misses"], Resp::Int(3));
    assert_eq!(route["hit_rate"].text(), "0.5000");
    assert_eq!(route["writes"], Resp::Int(3));
    assert_eq!(route["expirations"], Resp::Int(3));
    assert_eq!(route["keys"], Resp::Int(-1));
    assert_eq!(route["requests"], Resp::Int(9));
    assert_eq!(by_name["result"]["key"].text(), "result:{query}:{model}");
    assert_eq!(by_name["result"]["misses"], Resp::Int(1));
    assert_eq!(by_name["result"]["requests"], Resp::Int(1));
    assert_eq!(by_name["meta"]["misses"], Resp::Int(1));
    assert_eq!(by_name["meta"]["ttl_ms"], Resp::Int(60_000));
    assert_eq!(by_name["load"]["requests"], Resp::Int(0));
    assert_eq!(by_name["default"]["prefix"].text(), "");
    assert_eq!(by_name["default"]["key"].text(), "");
    assert_eq!(by_name["default"]["ttl_ms"], Resp::Int(-1));
    assert_eq!(by_name["default"]["requests"], Resp::Int(0));

    let stats = call(&mut c, &["STRATA", "STATS"]);
    assert_eq!(
        field_names(&stats),
        [
            "uptime_in_seconds",
            "connected_clients",
            "total_connections_received",
            "total_commands_processed",
            "strata_error_replies",
            "classes",
            "layers",
            "nodes",
            "rebalance"
        ]
    );
    let s = fields(&stats);
    assert_eq!(s["connected_clients"], Resp::Int(1));
    assert_eq!(s["total_connections_received"], Resp::Int(0));
    // Every request sent since RESETSTAT (RESETSTAT included), not yet this one.
    assert_eq!(s["total_commands_processed"], Resp::Int(sent));
    assert_eq!(s["strata_error_replies"], Resp::Int(0));

    let classes: Vec<BTreeMap<String, Resp>> = s["classes"].array().iter().map(fields).collect();
    let class_names: Vec<String> = classes.iter().map(|f| f["class"].text()).collect();
    assert_eq!(class_names, ["read", "write", "other"]);
    // reads: 6 GETs of route: keys, 2 other GETs; writes: 3 SETs; other: RESETSTAT, PING,
    // STRATA LAYERS, INFO.
    let calls: Vec<i64> = classes.iter().map(|f| f["calls"].int()).collect();
    assert_eq!(calls, [8, 3, 4], "{classes:?}");
    for f in &classes {
        assert!(f.contains_key("p999_usec"), "{f:?}");
    }

    // The layers of STRATA STATS are STRATA LAYERS's.
    assert_layer_replies_match_info(&s["layers"], &info);

    let node_replies = s["nodes"].array();
    assert_eq!(node_replies.len(), nodes.len());
    for (n, reply) in node_replies.iter().enumerate() {
        assert_eq!(
            field_names(reply),
            [
                "id",
                "addr",
                "state",
                "requests",
                "errors",
                "timeouts",
                "p50_usec",
                "p95_usec",
                "p99_usec",
                "p999_usec"
            ]
        );
        let f = fields(reply);
        assert_eq!(f["id"].text(), format!("node{}", n + 1));
        assert_eq!(f["addr"].text(), nodes[n].addr());
        assert_eq!(f["state"].text(), "up");
        // RESETSTAT's own fan-out, the GET, SET, GET of the node's route: key, and the other
        // two GETs where they live.
        let extra = ["meta:x", "result:q:m"]
            .iter()
            .filter(|k| strata.owner(k) == n)
            .count() as i64;
        assert_eq!(f["requests"], Resp::Int(4 + extra), "node{}: {f:?}", n + 1);
        assert_eq!(f["errors"], Resp::Int(0));
        assert_eq!(f["timeouts"], Resp::Int(0));
    }

    // Wrong arity.
    for args in [&["STRATA", "LAYERS", "x"][..], &["STRATA", "STATS", "x"]] {
        assert!(call(&mut c, args).is_error(), "{args:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// INFO `# Latency` and `# Commandstats`
// ---------------------------------------------------------------------------------------------

#[test]
fn latency_classes_and_commandstats_count_every_command() {
    let nodes = RedisNode::start_many(2);
    let strata = start(&nodes, "");
    let mut c = strata.raw();

    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    for i in 0..3 {
        call(&mut c, &["GET", &format!("route:{i}")]);
    }
    assert_eq!(call(&mut c, &["SET", "route:0", "a"]), Resp::ok());
    assert_eq!(call(&mut c, &["SET", "plain", "b"]), Resp::ok());
    assert_eq!(
        call(&mut c, &["MGET", "route:0", "plain", "meta:z"]),
        Resp::Array(vec![Resp::bulk("a"), Resp::bulk("b"), Resp::Nil])
    );
    assert_eq!(call(&mut c, &["PING"]), Resp::status("PONG"));
    assert_eq!(call(&mut c, &["PING"]), Resp::status("PONG"));
    // STRATA WARM is a write of its key's layer.
    assert_eq!(
        call(&mut c, &["STRATA", "WARM", "route:w", "v"]),
        Resp::ok()
    );

    // The INFO that reads the figures is counted only once it has answered.
    let calls = class_calls(&mut c);
    assert_eq!(calls["read"], 4, "{calls:?}");
    assert_eq!(calls["write"], 3, "{calls:?}");
    // CONFIG RESETSTAT and two PINGs.
    assert_eq!(calls["other"], 3, "{calls:?}");

    let stats = commandstats(&mut c);
    let names: Vec<&str> = stats.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["config", "get", "info", "mget", "ping", "set", "strata"],
        "{stats:?}"
    );
    let expected = [
        ("config", 1),
        ("get", 3),
        ("info", 1),
        ("mget", 1),
        ("ping", 2),
        ("set", 2),
        ("strata", 1),
    ];
    for (name, n) in expected {
        let s = &stats[name];
        assert_eq!(num(s, "calls"), n, "cmdstat_{name}: {s:?}");
        assert_eq!(num(s, "failed_calls"), 0, "cmdstat_{name}");
        assert_eq!(num(s, "rejected_calls"), 0, "cmdstat_{name}");
        let usec = num(s, "usec");
        let per_call: f64 = s["usec_per_call"].parse().unwrap();
        assert!(
            (per_call - usec as f64 / n as f64).abs() < 0.01,
            "cmdstat_{name}: {s:?}"
        );
    }

    // Now both INFOs have answered: other = 3 + 2.
    let calls = class_calls(&mut c);
    assert_eq!(
        (calls["read"], calls["write"], calls["other"]),
        (4, 3, 5),
        "{calls:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// INFO `# Nodes`
// ---------------------------------------------------------------------------------------------

#[test]
fn node_lines_count_requests_and_the_errors_of_a_killed_node() {
    let mut nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let mut c = strata.raw();
    wait_all_up(&mut c);

    let before = node_lines(&mut c);
    assert_eq!(before.len(), 3);
    for (n, node) in nodes.iter().enumerate() {
        let l = &before[&format!("node{}", n + 1)];
        assert_eq!(l["addr"], node.addr());
        assert_eq!(l["weight"], "1");
        assert_eq!(l["state"], "up");
        assert_eq!(l["errors"], "0");
        assert_eq!(l["timeouts"], "0");
        assert_eq!(l["last_error"], "");
    }

    // One default-layer SET per node (no TTL follower): exactly one request each.
    let mut keys: Vec<String> = Vec::new();
    for n in 0..nodes.len() {
        let k = strata.key_on(n, "plain:", &keys);
        assert_eq!(call(&mut c, &["SET", &k, "v"]), Resp::ok());
        keys.push(k);
    }
    let after = node_lines(&mut c);
    for n in 0..nodes.len() {
        let id = format!("node{}", n + 1);
        assert_eq!(
            num(&after[&id], "requests") - num(&before[&id], "requests"),
            1,
            "{id}: {:?} then {:?}",
            before[&id],
            after[&id]
        );
    }

    nodes[1].kill();
    let prefix = format!(
        "ERR strata: node node2 (127.0.0.1:{}) unavailable: ",
        nodes[1].port()
    );
    // Until strata notices, a request may still be written to the dead connection; either way
    // it fails with the node's error and counts as an error of that node.
    let dead = poll_until(DEADLINE, "an error counted for node2", || {
        let reply = call(&mut c, &["GET", &keys[1]]);
        let text = reply.error_text();
        assert!(
            text.starts_with(&prefix) && text.len() > prefix.len(),
            "expected {prefix:?}..., got {text:?}"
        );
        let lines = node_lines(&mut c);
        (num(&lines["node2"], "errors") > 0).then_some(lines)
    });
    assert_eq!(dead["node1"]["errors"], "0");
    assert_eq!(dead["node3"]["errors"], "0");
    assert_eq!(dead["node2"]["timeouts"], "0");
    // The others still answer.
    assert_eq!(call(&mut c, &["GET", &keys[0]]), Resp::bulk("v"));
    assert_eq!(call(&mut c, &["GET", &keys[2]]), Resp::bulk("v"));
    let lines = poll_until(DEADLINE, "node2 not up", || {
        let lines = node_lines(&mut c);
        (lines["node2"]["state"] != "up").then_some(lines)
    });
    assert_eq!(lines["node1"]["state"], "up");
    assert_eq!(lines["node3"]["state"], "up");
    assert_ne!(lines["node2"]["last_error"], "", "{:?}", lines["node2"]);
    assert_eq!(lines["node2"]["state"], "down");
    assert_eq!(lines["node2"]["down_transitions"], "1");
    assert_ne!(lines["node2"]["health_reason"], "", "{:?}", lines["node2"]);
}

// ---------------------------------------------------------------------------------------------
// /metrics and /healthz
// ---------------------------------------------------------------------------------------------

#[test]
fn layer_key_count_follows_the_nodes() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "stats: {layer_keys_interval: 100ms}");
    let mut c = strata.raw();

    let route: Vec<String> = (0..5).map(|i| format!("route:k{i}")).collect();
    let meta: Vec<String> = (0..3).map(|i| format!("meta:k{i}")).collect();
    set_all(&mut c, &route);
    set_all(&mut c, &meta);
    assert_eq!(call(&mut c, &["SET", "plain", "v"]), Resp::ok());

    let want = [
        ("route", "5"),
        ("result", "0"),
        ("meta", "3"),
        ("load", "0"),
        ("default", "1"),
    ];
    let l = poll_until(DEADLINE, "keys=5 for route and keys=3 for meta", || {
        let l = layers(&mut c);
        want.iter().all(|(n, k)| l[*n]["keys"] == *k).then_some(l)
    });
    // STRATA LAYERS and /metrics give the same count (it changes only when the nodes do).
    let reply = call(&mut c, &["STRATA", "LAYERS"]);
    assert_layer_replies_match_info(&reply, &l);
    let body = metrics(strata.handle().admin_addr.unwrap());
    assert_eq!(
        sample(&body, "strata_layer_keys{layer=\"route\"}").as_deref(),
        Some("5")
    );

    // The count is a gauge: RESETSTAT keeps it; deletes show up at the next pass.
    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    assert_eq!(layers(&mut c)["route"]["keys"], "5");
    assert_eq!(
        call(&mut c, &["DEL", &route[0], &route[1], &meta[0]]),
        Resp::Int(3)
    );
    poll_until(DEADLINE, "keys=3 for route and keys=2 for meta", || {
        let l = layers(&mut c);
        (l["route"]["keys"] == "3" && l["meta"]["keys"] == "2").then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Warming
// ---------------------------------------------------------------------------------------------
