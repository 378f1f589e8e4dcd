//! `STRATA INVALIDATE KEY | LAYER | WHERE` over real Redis nodes: exactly the keys asked for go,
//! from every node, counted in the layers' statistics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::layers::*;
use common::{RawClient, RedisNode, Resp};

#[test]
fn invalidate_key_removes_it_from_its_owner_and_counts_it() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let mut c = strata.raw();

    assert_eq!(call(&mut c, &["SET", "route:x", "v"]), Resp::ok());
    assert_eq!(call(&mut c, &["SET", "route:y", "v"]), Resp::ok());
    let owner = &nodes[strata.owner("route:x")];
    assert!(owner.exists("route:x"));

    assert_eq!(
        call(&mut c, &["STRATA", "INVALIDATE", "KEY", "route:x"]),
        Resp::Int(1)
    );
    assert!(!owner.exists("route:x"));
    assert_eq!(call(&mut c, &["GET", "route:x"]), Resp::Nil);
    assert_eq!(
        call(&mut c, &["strata", "invalidate", "key", "route:x"]),
        Resp::Int(0)
    );
    // The neighbour is untouched.
    assert_eq!(call(&mut c, &["GET", "route:y"]), Resp::bulk("v"));
    let l = layers(&mut c);
    assert_eq!(l["route"]["invalidations"], "1");
    for name in ["result", "meta", "load", "default"] {
        assert_eq!(l[name]["invalidations"], "0", "{name}");
    }
}

#[test]
fn invalidate_layer_removes_every_key_of_the_layer_and_nothing_else() {
    let nodes = RedisNode::start_many(3);
    // Small SCAN batches: the removal must walk many of them.
    let strata = start(&nodes, "limits: {scan_count: 7}");
    let mut c = strata.raw();

    let route: Vec<String> = (0..300).map(|i| format!("route:{i}")).collect();
    let mut others: Vec<String> = Vec::new();
    others.extend((0..20).map(|i| format!("result:q{i}:m")));
    others.extend((0..20).map(|i| format!("meta:m{i}")));
    others.extend((0..5).map(|i| format!("load:m{i}")));
    // Default layer: no layer's prefix, however close.
    let defaults: Vec<String> = ["routex", "route", "Route:1", "xroute:1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    set_all(&mut c, &route);
    set_all(&mut c, &others);
    set_all(&mut c, &defaults);
    let mut all: Vec<String> = route
        .iter()
        .chain(&others)
        .chain(&defaults)
        .cloned()
        .collect();
    assert_nodes_hold(&strata, &nodes, &all, "before");
    for n in 0..nodes.len() {
        let here = route.iter().filter(|k| strata.owner(k) == n).count();
        assert!(here > 30, "only {here} route: keys on node{}", n + 1);
    }

    assert_eq!(
        call(&mut c, &["STRATA", "INVALIDATE", "LAYER", "route"]),
        Resp::Int(300)
    );
    all.retain(|k| !route.contains(k));
    assert_nodes_hold(&strata, &nodes, &all, "after INVALIDATE LAYER route");
    assert_eq!(
        call(&mut c, &["STRATA", "INVALIDATE", "LAYER", "route"]),
        Resp::Int(0)
    );
    let l = layers(&mut c);
    assert_eq!(l["route"]["invalidations"], "300");
    assert_eq!(l["default"]["invalidations"], "0");

    // The default layer: every key matching no prefix, found by a SCAN of everything.
    assert_eq!(
        call(&mut c, &["STRATA", "INVALIDATE", "LAYER", "default"]),
        Resp::Int(defaults.len() as i64)
    );
    all.retain(|k| !defaults.contains(k));
    assert_nodes_hold(&strata, &nodes, &all, "after INVALIDATE LAYER default");
    let l = layers(&mut c);
    assert_eq!(l["default"]["invalidations"], "4");
    assert_eq!(l["meta"]["invalidations"], "0");
}

#[test]
fn invalidate_where_removes_the_keys_whose_fields_match() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let mut c = strata.raw();

    let mut all: Vec<String> = [
        "result:q1:gpt-4",
        "result:q2:gpt-4",
        "result:q3:claude",
        "meta:gpt-4",
        "meta:claude",
        "load:gpt-4",
        // No model field in route's template; a default-layer key named like the value.
        "route:gpt-4",
        "gpt-4",
        // Glob metacharacters in values.
        "meta:a*b",
        "meta:axxb",
        "meta:a[x]b",
        "meta:axb",
        "meta:a?b",
        "meta:acb",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    set_all(&mut c, &all);
    assert_nodes_hold(&strata, &nodes, &all, "before");

    let mut expect_removed = |c: &mut RawClient, args: &[&str], removed: &[&str]| {
        let mut cmd = vec!["STRATA", "INVALIDATE", "WHERE"];
        cmd.extend_from_slice(args);
        assert_eq!(
            call(c, &cmd),
            Resp::Int(removed.len() as i64),
            "WHERE {args:?}"
        );
        all.retain(|k| !removed.contains(&k.as_str()));
        assert_nodes_hold(&strata, &nodes, &all, &format!("after WHERE {args:?}"));
    };
    expect_removed(
        &mut c,
        &["model=gpt-4"],
        &[
            "result:q1:gpt-4",
            "result:q2:gpt-4",
            "meta:gpt-4",
            "load:gpt-4",
        ],
    );
    // Two fields: only templates with both.
    expect_removed(&mut c, &["model=claude", "query=q3"], &["result:q3:claude"]);
    expect_removed(&mut c, &["model=a*b"], &["meta:a*b"]);
    expect_removed(&mut c, &["model=a[x]b"], &["meta:a[x]b"]);
    expect_removed(&mut c, &["model=a?b"], &["meta:a?b"]);
    expect_removed(&mut c, &["model=gpt-4"], &[]);

    let l = layers(&mut c);
    assert_eq!(l["result"]["invalidations"], "3");
    assert_eq!(l["meta"]["invalidations"], "4");
    assert_eq!(l["load"]["invalidations"], "1");
    assert_eq!(l["route"]["invalidations"], "0");
    assert_eq!(l["default"]["invalidations"], "0");
}

#[test]
fn invalidate_refuses_bad_requests() {
    let nodes = RedisNode::start_many(2);
    let strata = start(&nodes, "");
    let mut c = strata.raw();
    assert_eq!(call(&mut c, &["SET", "meta:x", "v"]), Resp::ok());

    let cases: &[(&[&str], &str)] = &[
        (
            &["STRATA", "INVALIDATE", "LAYER", "nope"],
            "ERR strata: no layer named 'nope'",
        ),
        (
            &["STRATA", "INVALIDATE", "WHERE", "user=x"],
            "ERR strata: no layer's key template has the field(s) user",
        ),
        (
            &["STRATA", "INVALIDATE", "WHERE", "model=x", "user=y"],
            "ERR strata: no layer's key template has the field(s) model, user",
        ),
        (
            &["STRATA", "INVALIDATE", "WHERE", "model"],
            "ERR strata: expected <field>=<value>, got 'model'",
        ),
        (
            &["STRATA", "INVALIDATE", "WHERE", "model=x", "=y"],
            "ERR strata: expected <field>=<value>, got '=y'",
        ),
        (&["STRATA", "INVALIDATE", "NOPE", "x"], INVALIDATE_USAGE),
        (&["STRATA", "INVALIDATE"], INVALIDATE_USAGE),
        (&["STRATA", "INVALIDATE", "KEY"], INVALIDATE_USAGE),
        (&["STRATA", "INVALIDATE", "KEY", "a", "b"], INVALIDATE_USAGE),
        (&["STRATA", "INVALIDATE", "LAYER"], INVALIDATE_USAGE),
        (&["STRATA", "INVALIDATE", "WHERE"], INVALIDATE_USAGE),
    ];
    for (args, want) in cases {
        assert_eq!(call(&mut c, args), Resp::err(want), "{args:?}");
    }
    // Nothing was removed by any of them.
    assert_eq!(call(&mut c, &["GET", "meta:x"]), Resp::bulk("v"));
    let l = layers(&mut c);
    for name in LAYER_NAMES {
        assert_eq!(l[name]["invalidations"], "0", "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Layer key count
// ---------------------------------------------------------------------------------------------
