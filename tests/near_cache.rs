//! The near cache against real Redis nodes: GETs answered from strata's memory, and every way
//! an entry must go — a write through strata (read-your-writes, at once), a write made on the
//! node directly, an expiry, a FLUSHALL on a node, the tracking connection killed, a node
//! restarted empty. Invalidations that come from a node arrive on their own connection, so
//! the tests wait for them (within a deadline) where a real client would see them late too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::layers::{info, info_lines};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// `route:` near-cached (two copies), `meta:` near-cached (one copy), `load:` not.
const LAYERS: &str = r#"layers:
  - { name: route, prefix: "route:", replication: 2, write_consistency: quorum, near_cache: { max_bytes: 1mb, max_ttl: 30s } }
  - { name: meta,  prefix: "meta:",  near_cache: { max_bytes: 1mb } }
  - { name: load,  prefix: "load:",  ttl: 5s }
health: { heartbeat_interval: 100ms, node_timeout: 1s }
stats: { layer_keys_interval: 0s }
"#;

fn start(nodes: &[RedisNode]) -> Strata {
    let s = Strata::builder(nodes).section(LAYERS).start();
    wait_ready(&s);
    s
}

/// A layer's INFO fields.
fn layer(c: &mut RawClient, name: &str) -> BTreeMap<String, String> {
    let lines = info_lines(&info(c, "layers"));
    lines
        .get(&format!("layer_{name}"))
        .unwrap_or_else(|| panic!("no layer {name}"))
        .iter()
        .cloned()
        .collect()
}

fn near(c: &mut RawClient, layer_name: &str, field: &str) -> u64 {
    layer(c, layer_name)
        .get(field)
        .unwrap_or_else(|| panic!("no {field} for {layer_name}"))
        .parse()
        .unwrap()
}

/// Waits until a GET of a fresh key is answered from memory the second time (every node's
/// invalidation stream is live).
fn wait_ready(s: &Strata) {
    let mut c = s.raw();
    let mut n = 0;
    poll_until(DEADLINE, "the near cache to serve", || {
        n += 1;
        let key = format!("meta:ready{n}");
        c.call(&["SET", &key, "x"]);
        c.call(&["GET", &key]);
        let before = near(&mut c, "meta", "near_hits");
        c.call(&["GET", &key]);
        (near(&mut c, "meta", "near_hits") > before).then_some(())
    });
}

fn get(c: &mut RawClient, key: &str) -> Resp {
    c.call(&["GET", key])
}

/// Reads `key` until a read is answered from memory. Right after a write, the first fill may
/// be dropped: the node reports strata's own write on the tracking connection a moment later,
/// and an invalidation that comes during a fill drops it (the safe side of the fill race).
fn until_cached(c: &mut RawClient, layer_name: &str, key: &str) {
    poll_until(DEADLINE, "a read served from memory", || {
        get(c, key);
        let hits = near(c, layer_name, "near_hits");
        get(c, key);
        (near(c, layer_name, "near_hits") > hits).then_some(())
    });
}

#[test]
fn reads_are_served_from_memory_and_writes_through_strata_are_read_at_once() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    assert_eq!(c.call(&["SET", "route:q1", "m1"]), Resp::ok());
    let misses = near(&mut c, "route", "near_misses");
    assert_eq!(get(&mut c, "route:q1"), Resp::bulk("m1"));
    assert_eq!(near(&mut c, "route", "near_misses"), misses + 1);
    until_cached(&mut c, "route", "route:q1");
    assert!(near(&mut c, "route", "near_fills") >= 1);
    let hits = near(&mut c, "route", "near_hits");
    for _ in 0..5 {
        assert_eq!(get(&mut c, "route:q1"), Resp::bulk("m1"));
    }
    assert_eq!(near(&mut c, "route", "near_hits"), hits + 5);
    // The layer's own hit count includes the near hits.
    assert!(near(&mut c, "route", "hits") >= 6);
    assert_eq!(near(&mut c, "route", "near_entries"), 1);
    assert!(near(&mut c, "route", "near_bytes") > "route:q1m1".len() as u64);

    // Read-your-writes: each write is seen by the very next read, from this client and from
    // another one, with no wait.
    let mut other = s.raw();
    for i in 0..200 {
        let v = format!("v{i}");
        let key = if i % 2 == 0 { "route:q1" } else { "meta:m1" };
        assert_eq!(c.call(&["SET", key, &v]), Resp::ok());
        assert_eq!(get(&mut c, key), Resp::bulk(&v), "write {i}");
        assert_eq!(
            get(&mut other, key),
            Resp::bulk(&v),
            "write {i}, other client"
        );
    }
    // Other writes: DEL, INCR, MSET, EXPIRE are writes too.
    assert_eq!(c.call(&["DEL", "route:q1"]), Resp::Int(1));
    assert_eq!(get(&mut c, "route:q1"), Resp::Nil);
    c.call(&["SET", "meta:n", "1"]);
    get(&mut c, "meta:n");
    assert_eq!(c.call(&["INCR", "meta:n"]), Resp::Int(2));
    assert_eq!(get(&mut c, "meta:n"), Resp::bulk("2"));
    assert_eq!(c.call(&["MSET", "meta:n", "7", "load:x", "1"]), Resp::ok());
    assert_eq!(get(&mut c, "meta:n"), Resp::bulk("7"));
    // A layer without a near cache is not counted as one.
    assert!(!layer(&mut c, "load").contains_key("near_hits"));
}

#[test]
fn writes_made_on_the_nodes_directly_reach_the_near_cache() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    c.call(&["SET", "meta:gpt", "v1"]);
    assert_eq!(get(&mut c, "meta:gpt"), Resp::bulk("v1"));
    until_cached(&mut c, "meta", "meta:gpt");
    let owner = s.owner("meta:gpt");
    let mut direct = RawClient::connect(&nodes[owner].addr());
    let removals =
        |c: &mut RawClient| near(c, "meta", "near_invalidations") + near(c, "meta", "near_flushes");
    let before = removals(&mut c);
    assert_eq!(direct.call(&["SET", "meta:gpt", "v2"]), Resp::ok());
    poll_until(DEADLINE, "the direct write to be seen", || {
        (get(&mut c, "meta:gpt") == Resp::bulk("v2")).then_some(())
    });
    // Removed by its invalidation (or, on a loaded machine, by a flush: a stream whose PING
    // was late counts as lost).
    assert!(removals(&mut c) > before);

    // An expiry: the entry lives no longer than the key's TTL, even if the node reports the
    // expiry late.
    assert_eq!(
        c.call(&["SET", "meta:short", "x", "PX", "1000"]),
        Resp::ok()
    );
    assert_eq!(get(&mut c, "meta:short"), Resp::bulk("x"));
    until_cached(&mut c, "meta", "meta:short");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&mut c, "meta:short"), Resp::Nil);

    // FLUSHALL on a node: everything its stream covered goes.
    get(&mut c, "meta:gpt");
    let flushes = near(&mut c, "meta", "near_flushes");
    direct.call(&["FLUSHALL"]);
    poll_until(DEADLINE, "the flush to be seen", || {
        (get(&mut c, "meta:gpt") == Resp::Nil).then_some(())
    });
    assert!(near(&mut c, "meta", "near_flushes") > flushes);
}

#[test]
fn losing_a_tracking_connection_or_a_node_restart_empties_the_near_cache() {
    let mut nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    c.call(&["SET", "meta:a", "1"]);
    assert_eq!(get(&mut c, "meta:a"), Resp::bulk("1"));
    until_cached(&mut c, "meta", "meta:a");
    let owner = s.owner("meta:a");

    // Kill strata's tracking connection on the node (the connection in tracking mode).
    let mut direct = RawClient::connect(&nodes[owner].addr());
    let flushes = near(&mut c, "meta", "near_flushes");
    let killed = direct.call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert!(killed.int() >= 1, "{killed:?}");
    poll_until(DEADLINE, "the lost stream to flush the near cache", || {
        (near(&mut c, "meta", "near_flushes") > flushes).then_some(())
    });
    // A write made while strata had no stream is seen once it is back.
    direct = RawClient::connect(&nodes[owner].addr());
    direct.call(&["SET", "meta:a", "2"]);
    poll_until(DEADLINE, "the direct write", || {
        (get(&mut c, "meta:a") == Resp::bulk("2")).then_some(())
    });
    wait_ready(&s);
    assert_eq!(get(&mut c, "meta:a"), Resp::bulk("2"));

    // The node restarts empty: its entries must not survive.
    get(&mut c, "meta:a");
    nodes[owner].restart();
    poll_until(DEADLINE, "the restarted node's empty key", || {
        (get(&mut c, "meta:a") == Resp::Nil).then_some(())
    });
}

/// A flat field/value array as a map.
fn fields(reply: &Resp) -> BTreeMap<String, Resp> {
    reply
        .array()
        .chunks(2)
        .map(|p| (p[0].text(), p[1].clone()))
        .collect()
}

#[test]
fn strata_nearcache_shows_and_flushes_entries_and_invalidate_reaches_them() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    c.call(&["SET", "meta:k", "hello", "PX", "20000"]);
    get(&mut c, "meta:k");
    until_cached(&mut c, "meta", "meta:k");
    let f = fields(&c.call(&["STRATA", "NEARCACHE", "GET", "meta:k"]));
    assert_eq!(f["layer"], Resp::bulk("meta"));
    assert_eq!(f["live"], Resp::Int(1));
    assert_eq!(f["cached"], Resp::Int(1));
    assert_eq!(f["bytes"], Resp::Int(5));
    // Its life is the key's remaining TTL, not max_ttl (60 s).
    let ttl = f["ttl_ms"].int();
    assert!(ttl > 0 && ttl <= 20_000, "{f:?}");
    assert!(
        f["age_ms"].int() >= 0 && f["filled_unix_ms"].int() > 0,
        "{f:?}"
    );
    let f = fields(&c.call(&["STRATA", "NEARCACHE", "GET", "meta:other"]));
    assert_eq!(f["cached"], Resp::Int(0));
    assert!(!f.contains_key("ttl_ms"));
    // Layers without one, and bad arguments.
    let e = c.call(&["STRATA", "NEARCACHE", "GET", "load:x"]);
    assert_eq!(e.error_text(), "ERR strata: layer 'load' has no near cache");
    let e = c.call(&["STRATA", "NEARCACHE", "FLUSH", "load"]);
    assert_eq!(e.error_text(), "ERR strata: layer 'load' has no near cache");
    let e = c.call(&["STRATA", "NEARCACHE", "FLUSH", "nope"]);
    assert_eq!(e.error_text(), "ERR strata: no layer named 'nope'");
    assert!(c.call(&["STRATA", "NEARCACHE", "GET"]).is_error());
    assert!(c.call(&["STRATA", "NEARCACHE", "PEEK", "x"]).is_error());

    // FLUSH of the layer removes its entries and replies with their count.
    let removed = c.call(&["STRATA", "NEARCACHE", "FLUSH", "meta"]).int();
    assert!(removed >= 1, "{removed}");
    let f = fields(&c.call(&["STRATA", "NEARCACHE", "GET", "meta:k"]));
    assert_eq!(f["cached"], Resp::Int(0));
    until_cached(&mut c, "meta", "meta:k");
    assert!(c.call(&["STRATA", "NEARCACHE", "FLUSH"]).int() >= 1);

    // STRATA INVALIDATE KEY removes the entry before its reply.
    until_cached(&mut c, "meta", "meta:k");
    assert_eq!(
        c.call(&["STRATA", "INVALIDATE", "KEY", "meta:k"]),
        Resp::Int(1)
    );
    assert_eq!(get(&mut c, "meta:k"), Resp::Nil);
}

#[test]
fn a_transaction_s_writes_are_read_at_once() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    c.call(&["SET", "meta:t", "0"]);
    get(&mut c, "meta:t");
    until_cached(&mut c, "meta", "meta:t");
    for i in 1..=20 {
        // The old value is held when the transaction runs.
        until_cached(&mut c, "meta", "meta:t");
        assert_eq!(c.call(&["MULTI"]), Resp::ok());
        assert_eq!(
            c.call(&["SET", "meta:t", &i.to_string()]),
            Resp::status("QUEUED")
        );
        assert_eq!(c.call(&["EXEC"]), Resp::Array(vec![Resp::ok()]));
        assert_eq!(
            get(&mut c, "meta:t"),
            Resp::bulk(i.to_string()),
            "after EXEC {i}"
        );
    }
}

#[test]
fn mget_is_served_per_key_from_memory_and_fills_what_it_misses() {
    let nodes = RedisNode::start_many(3);
    let s = start(&nodes);
    let mut c = s.raw();
    assert_eq!(
        c.call(&["MSET", "meta:a", "1", "route:b", "2", "load:c", "3"]),
        Resp::ok()
    );
    let keys = ["MGET", "meta:a", "route:b", "load:c", "meta:none", "meta:a"];
    let expected = Resp::Array(vec![
        Resp::bulk("1"),
        Resp::bulk("2"),
        Resp::bulk("3"),
        Resp::Nil,
        Resp::bulk("1"),
    ]);
    let hits = |c: &mut RawClient| near(c, "meta", "near_hits") + near(c, "route", "near_hits");
    // Filled by MGETs (the first fill after a write may be dropped: see `until_cached`).
    poll_until(DEADLINE, "an MGET answered from memory", || {
        assert_eq!(c.call(&keys), expected);
        let before = hits(&mut c);
        assert_eq!(c.call(&keys), expected);
        // meta:a twice and route:b: three keys from memory.
        (hits(&mut c) == before + 3).then_some(())
    });
    // Every near-cached key found: the reply is built in memory, the nodes are not asked. (On
    // a loaded machine a stream whose PING was late counts as lost and empties the near
    // cache: then the keys are read again and the MGET tried anew.)
    let both = ["MGET", "route:b", "meta:a"];
    poll_until(
        DEADLINE,
        "an MGET of cached keys answered from memory",
        || {
            let before = hits(&mut c);
            assert_eq!(
                c.call(&both),
                Resp::Array(vec![Resp::bulk("2"), Resp::bulk("1")])
            );
            if hits(&mut c) == before + 2 {
                return Some(());
            }
            c.call(&keys);
            None
        },
    );
    // A GET is served from what an MGET filled, and the other way round.
    poll_until(DEADLINE, "a GET answered from what an MGET filled", || {
        let before = near(&mut c, "meta", "near_hits");
        assert_eq!(get(&mut c, "meta:a"), Resp::bulk("1"));
        if near(&mut c, "meta", "near_hits") == before + 1 {
            return Some(());
        }
        // The GET filled it itself: empty it and let an MGET fill it again.
        c.call(&["STRATA", "NEARCACHE", "FLUSH"]);
        c.call(&["MGET", "meta:a"]);
        None
    });

    // Read-your-writes, and a write made on the node directly.
    assert_eq!(c.call(&["SET", "meta:a", "9"]), Resp::ok());
    assert_eq!(
        c.call(&["MGET", "meta:a", "load:c"]),
        Resp::Array(vec![Resp::bulk("9"), Resp::bulk("3")])
    );
    let mut direct = RawClient::connect(&nodes[s.owner("meta:a")].addr());
    until_cached(&mut c, "meta", "meta:a");
    assert_eq!(direct.call(&["SET", "meta:a", "10"]), Resp::ok());
    poll_until(DEADLINE, "the direct write to be seen by MGET", || {
        let reply = c.call(&["MGET", "meta:a", "load:c"]);
        (reply == Resp::Array(vec![Resp::bulk("10"), Resp::bulk("3")])).then_some(())
    });
    // A key of the wrong type is nil in an MGET, as in Redis, and never cached.
    c.call(&["RPUSH", "meta:list", "x"]);
    assert_eq!(
        c.call(&["MGET", "meta:list", "meta:a"]),
        Resp::Array(vec![Resp::Nil, Resp::bulk("10")])
    );

    // A RESP3 client gets RESP3's null for a missing key, whether the others came from memory
    // or from a node.
    let mut r3 = s.raw();
    r3.send_cmd(&["HELLO", "3"]);
    r3.read_frame().unwrap();
    until_cached(&mut c, "meta", "meta:a");
    let mget = ["MGET", "meta:a", "load:c", "meta:none"];
    for _ in 0..2 {
        r3.send_cmd(&mget);
        assert_eq!(
            String::from_utf8(r3.read_frame().unwrap()).unwrap(),
            "*3\r\n$2\r\n10\r\n$1\r\n3\r\n_\r\n"
        );
    }
}
