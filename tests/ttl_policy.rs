//! Layer TTL policy over real Redis nodes: writes that create a key without a TTL get their
//! layer's `ttl` (SET gains PX, other writes are followed by `PEXPIRE key ttl NX`), explicit TTLs
//! are clamped to `max_ttl`, KEEPTTL/PERSIST are refused where a maximum applies, and the
//! `expirations` counter of `INFO layers`. Every TTL is read with PTTL on the owning node itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{RawClient, RedisNode, Resp, Strata};

/// The layers most tests run with.
const LAYERS: &str = r#"layers:
  - { name: route,  prefix: "route:",  ttl: 5m }
  - { name: capped, prefix: "capped:", ttl: 1m, max_ttl: 10m }
  - { name: plain,  prefix: "plain:" }
"#;

/// `route:`'s ttl (5m).
const ROUTE_MS: i64 = 300_000;
/// `capped:`'s ttl (1m).
const CAPPED_TTL_MS: i64 = 60_000;
/// `capped:`'s max_ttl (10m).
const CAPPED_MAX_MS: i64 = 600_000;
/// How far a PTTL may have run down between the write and the check.
const SLACK_MS: i64 = 1_000;

/// strata and its nodes; strata is declared first so it shuts down before the nodes die.
struct Env {
    strata: Strata,
    nodes: Vec<RedisNode>,
}

impl Env {
    fn start(section: &str) -> Env {
        let nodes = RedisNode::start_many(3);
        let strata = Strata::builder(&nodes).section(section).start();
        Env { strata, nodes }
    }

    fn layers() -> Env {
        Env::start(LAYERS)
    }

    fn client(&self) -> RawClient {
        self.strata.raw()
    }

    /// PTTL of `key` read on the node that owns it.
    fn node_pttl(&self, key: &str) -> i64 {
        let node = &self.nodes[self.strata.owner(key)];
        redis::cmd("PTTL").arg(key).query(&mut node.conn()).unwrap()
    }

    /// GET of `key` read on the node that owns it.
    fn node_get(&self, key: &str) -> Option<String> {
        self.nodes[self.strata.owner(key)].get(key)
    }

    /// Asserts `ms - SLACK_MS < PTTL <= ms` on the owning node.
    fn assert_ttl(&self, key: &str, ms: i64, context: &str) {
        assert_in_range(
            self.node_pttl(key),
            ms - SLACK_MS,
            ms,
            &format!("{context}: {key}"),
        );
    }

    fn assert_no_ttl(&self, key: &str, context: &str) {
        assert_eq!(
            self.node_pttl(key),
            -1,
            "{context}: {key} must exist without a TTL on its node"
        );
    }
}

/// Asserts `lo < value && value <= hi`.
fn assert_in_range(value: i64, lo: i64, hi: i64, what: &str) {
    assert!(
        lo < value && value <= hi,
        "{what}: PTTL {value} not in ({lo}, {hi}]"
    );
}

/// Calls `args` through strata and asserts the reply is not an error.
fn ok_call(client: &mut RawClient, args: &[&str]) -> Resp {
    let reply = client.call(args);
    assert!(!reply.is_error(), "{args:?} failed: {reply:?}");
    reply
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One write that may create `key`: `setup` runs first, after which `key` must be absent or
/// without a TTL (so any TTL it has afterwards comes from the policy), then `command`.
struct Case {
    setup: &'static [&'static [&'static str]],
    command: &'static [&'static str],
    key: &'static str,
}

const fn case(
    setup: &'static [&'static [&'static str]],
    command: &'static [&'static str],
    key: &'static str,
) -> Case {
    Case {
        setup,
        command,
        key,
    }
}

/// Runs every case and checks that its key ends up with the `route:` layer's TTL on its node.
fn check_route_cases(cases: &[Case]) {
    let env = Env::layers();
    let mut client = env.client();
    for c in cases {
        for step in c.setup {
            ok_call(&mut client, step);
        }
        let before = env.node_pttl(c.key);
        assert!(
            before == -2 || before == -1,
            "{:?}: after the setup {} must not have a TTL yet, PTTL {before}",
            c.command,
            c.key
        );
        ok_call(&mut client, c.command);
        env.assert_ttl(c.key, ROUTE_MS, &format!("{:?}", c.command));
    }
}

/// The `expirations=` value of layer `layer` in `INFO layers`.
fn expirations(client: &mut RawClient, layer: &str) -> u64 {
    let info = client.call(&["INFO", "layers"]).text();
    let head = format!("layer_{layer}:");
    let line = info
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no {head} line in INFO layers:\n{info}"));
    line[head.len()..]
        .split(',')
        .find_map(|field| field.strip_prefix("expirations="))
        .unwrap_or_else(|| panic!("no expirations= in {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("bad expirations= in {line:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Default TTL on creating writes
// ---------------------------------------------------------------------------------------------

#[test]
fn set_without_ttl_gets_the_layer_ttl() {
    let env = Env::layers();
    let mut client = env.client();
    assert_eq!(client.call(&["SET", "route:abc", "x"]), Resp::ok());
    env.assert_ttl("route:abc", ROUTE_MS, "SET");
    assert_eq!(env.node_get("route:abc").as_deref(), Some("x"));
    // strata's own PTTL reads the same TTL.
    let through_strata = client.call(&["PTTL", "route:abc"]).int();
    assert_in_range(
        through_strata,
        ROUTE_MS - SLACK_MS,
        ROUTE_MS,
        "PTTL through strata",
    );
}

#[test]
fn string_writes_get_the_layer_ttl() {
    check_route_cases(&[
        case(&[], &["SET", "route:s1", "v"], "route:s1"),
        case(&[], &["SET", "route:s2", "v", "NX"], "route:s2"),
        case(&[], &["SET", "route:s3", "v", "GET"], "route:s3"),
        // XX on an existing key without a TTL: SET clears TTLs, and gains PX.
        case(
            &[&["SET", "route:s4", "old"], &["PERSIST", "route:s4"]],
            &["SET", "route:s4", "new", "XX"],
            "route:s4",
        ),
        case(&[], &["SETNX", "route:s5", "v"], "route:s5"),
        case(&[], &["GETSET", "route:s6", "v"], "route:s6"),
        case(&[], &["SETRANGE", "route:s7", "2", "abc"], "route:s7"),
        case(&[], &["APPEND", "route:s8", "abc"], "route:s8"),
        case(&[], &["INCR", "route:s9"], "route:s9"),
        case(&[], &["INCRBY", "route:s10", "5"], "route:s10"),
        case(&[], &["INCRBYFLOAT", "route:s11", "1.5"], "route:s11"),
        case(&[], &["DECR", "route:s12"], "route:s12"),
        case(&[], &["DECRBY", "route:s13", "3"], "route:s13"),
        case(&[], &["SETBIT", "route:s14", "7", "1"], "route:s14"),
        case(
            &[],
            &["BITFIELD", "route:s15", "SET", "u8", "0", "255"],
            "route:s15",
        ),
    ]);
}

#[test]
fn hash_writes_get_the_layer_ttl() {
    check_route_cases(&[
        case(&[], &["HSET", "route:h1", "f", "v"], "route:h1"),
        case(&[], &["HSETNX", "route:h2", "f", "v"], "route:h2"),
        case(&[], &["HMSET", "route:h3", "f", "v", "g", "w"], "route:h3"),
        case(&[], &["HINCRBY", "route:h4", "f", "2"], "route:h4"),
        case(&[], &["HINCRBYFLOAT", "route:h5", "f", "2.5"], "route:h5"),
    ]);
}

#[test]
fn list_set_and_sorted_set_writes_get_the_layer_ttl() {
    check_route_cases(&[
        case(&[], &["LPUSH", "route:l1", "a", "b"], "route:l1"),
        case(&[], &["RPUSH", "route:l2", "a"], "route:l2"),
        case(&[], &["SADD", "route:t1", "a", "b"], "route:t1"),
        case(&[], &["ZADD", "route:z1", "1", "a"], "route:z1"),
        case(&[], &["ZINCRBY", "route:z2", "1", "a"], "route:z2"),
    ]);
}

#[test]
fn hyperloglog_stream_and_geo_writes_get_the_layer_ttl() {
    check_route_cases(&[
        case(&[], &["PFADD", "route:p1", "a", "b"], "route:p1"),
        case(&[], &["XADD", "route:x1", "*", "f", "v"], "route:x1"),
        case(
            &[],
            &["GEOADD", "route:g1", "13.361389", "38.115556", "palermo"],
            "route:g1",
        ),
        // XGROUP has no command flags of its own; MKSTREAM still creates a key.
        case(
            &[],
            &["XGROUP", "CREATE", "route:xs", "g", "$", "MKSTREAM"],
            "route:xs",
        ),
    ]);
}

#[test]
fn destination_writes_give_the_new_key_the_layer_ttl() {
    check_route_cases(&[
        case(
            &[
                &["SADD", "route:{su}a", "1", "2"],
                &["SADD", "route:{su}b", "3"],
            ],
            &["SUNIONSTORE", "route:{su}dst", "route:{su}a", "route:{su}b"],
            "route:{su}dst",
        ),
        case(
            &[
                &["SADD", "route:{si}a", "1", "2"],
                &["SADD", "route:{si}b", "2"],
            ],
            &["SINTERSTORE", "route:{si}dst", "route:{si}a", "route:{si}b"],
            "route:{si}dst",
        ),
        case(
            &[
                &["SADD", "route:{sd}a", "1", "2"],
                &["SADD", "route:{sd}b", "2"],
            ],
            &["SDIFFSTORE", "route:{sd}dst", "route:{sd}a", "route:{sd}b"],
            "route:{sd}dst",
        ),
        case(
            &[&["ZADD", "route:{zu}a", "1", "m"]],
            &["ZUNIONSTORE", "route:{zu}dst", "1", "route:{zu}a"],
            "route:{zu}dst",
        ),
        case(
            &[
                &["ZADD", "route:{zi}a", "1", "m"],
                &["ZADD", "route:{zi}b", "2", "m"],
            ],
            &[
                "ZINTERSTORE",
                "route:{zi}dst",
                "2",
                "route:{zi}a",
                "route:{zi}b",
            ],
            "route:{zi}dst",
        ),
        case(
            &[
                &["ZADD", "route:{zd}a", "1", "m", "2", "n"],
                &["ZADD", "route:{zd}b", "2", "m"],
            ],
            &[
                "ZDIFFSTORE",
                "route:{zd}dst",
                "2",
                "route:{zd}a",
                "route:{zd}b",
            ],
            "route:{zd}dst",
        ),
        case(
            &[&["ZADD", "route:{zr}a", "1", "m", "2", "n"]],
            &["ZRANGESTORE", "route:{zr}dst", "route:{zr}a", "0", "-1"],
            "route:{zr}dst",
        ),
        case(
            &[&["SADD", "route:{sm}a", "m"]],
            &["SMOVE", "route:{sm}a", "route:{sm}dst", "m"],
            "route:{sm}dst",
        ),
        case(
            &[&["RPUSH", "route:{lm}a", "1", "2"]],
            &["LMOVE", "route:{lm}a", "route:{lm}dst", "LEFT", "RIGHT"],
            "route:{lm}dst",
        ),
        case(
            &[&["RPUSH", "route:{rp}a", "1", "2"]],
            &["RPOPLPUSH", "route:{rp}a", "route:{rp}dst"],
            "route:{rp}dst",
        ),
        // COPY and RENAME carry the source's TTL: the source has none, so only the policy can
        // give the destination one.
        case(
            &[&["SET", "route:{cp}a", "v"], &["PERSIST", "route:{cp}a"]],
            &["COPY", "route:{cp}a", "route:{cp}dst"],
            "route:{cp}dst",
        ),
        case(
            &[&["SET", "route:{rn}a", "v"], &["PERSIST", "route:{rn}a"]],
            &["RENAME", "route:{rn}a", "route:{rn}dst"],
            "route:{rn}dst",
        ),
        case(
            &[&["SET", "route:{rx}a", "v"], &["PERSIST", "route:{rx}a"]],
            &["RENAMENX", "route:{rx}a", "route:{rx}dst"],
            "route:{rx}dst",
        ),
        case(
            &[&["SET", "route:{bo}a", "abc"]],
            &["BITOP", "NOT", "route:{bo}dst", "route:{bo}a"],
            "route:{bo}dst",
        ),
        case(
            &[&["PFADD", "route:{pm}a", "x", "y"]],
            &["PFMERGE", "route:{pm}dst", "route:{pm}a"],
            "route:{pm}dst",
        ),
        case(
            &[&["RPUSH", "route:{so}a", "3", "1", "2"]],
            &[
                "SORT",
                "route:{so}a",
                "LIMIT",
                "0",
                "2",
                "STORE",
                "route:{so}dst",
            ],
            "route:{so}dst",
        ),
        case(
            &[&["GEOADD", "route:{ge}a", "13.361389", "38.115556", "palermo"]],
            &[
                "GEOSEARCHSTORE",
                "route:{ge}dst",
                "route:{ge}a",
                "FROMLONLAT",
                "13.36",
                "38.11",
                "BYRADIUS",
                "100",
                "km",
            ],
            "route:{ge}dst",
        ),
        case(
            &[&["GEOADD", "route:{gr}a", "13.361389", "38.115556", "palermo"]],
            &[
                "GEORADIUS",
                "route:{gr}a",
                "13.36",
                "38.11",
                "100",
                "km",
                "STORE",
                "route:{gr}dst",
            ],
            "route:{gr}dst",
        ),
    ]);
}

#[test]
fn mset_gives_every_key_the_layer_ttl_on_its_own_node() {
    let env = Env::layers();
    let mut client = env.client();
    let keys: Vec<String> = (0..12).map(|i| format!("route:m{i}")).collect();
    let owners: BTreeSet<usize> = keys.iter().map(|k| env.strata.owner(k)).collect();
    assert!(owners.len() >= 2, "keys must span nodes, all on {owners:?}");

    let mut args = vec!["MSET".to_string()];
    for k in &keys {
        args.push(k.clone());
        args.push(format!("v-{k}"));
    }
    assert_eq!(client.call(&args), Resp::ok());
    for k in &keys {
        assert_eq!(env.node_get(k), Some(format!("v-{k}")), "{k} on its owner");
        env.assert_ttl(k, ROUTE_MS, "MSET");
    }
}

#[test]
fn msetnx_gives_every_key_the_layer_ttl() {
    let env = Env::layers();
    let mut client = env.client();
    assert_eq!(
        env.strata.owner("route:{t}a"),
        env.strata.owner("route:{t}b")
    );
    assert_eq!(
        client.call(&["MSETNX", "route:{t}a", "1", "route:{t}b", "2"]),
        Resp::Int(1)
    );
    env.assert_ttl("route:{t}a", ROUTE_MS, "MSETNX");
    env.assert_ttl("route:{t}b", ROUTE_MS, "MSETNX");
}

// ---------------------------------------------------------------------------------------------
// Existing and explicit TTLs
// ---------------------------------------------------------------------------------------------

#[test]
fn an_existing_ttl_is_neither_extended_nor_shortened() {
    let env = Env::layers();
    let mut client = env.client();

    // Shorter than the layer's ttl: not extended.
    assert_eq!(
        client.call(&["SET", "route:k", "v", "EX", "100"]),
        Resp::ok()
    );
    env.assert_ttl("route:k", 100_000, "SET EX 100");
    assert_eq!(client.call(&["APPEND", "route:k", "x"]), Resp::Int(2));
    env.assert_ttl("route:k", 100_000, "APPEND after SET EX 100");
    assert_eq!(env.node_get("route:k").as_deref(), Some("vx"));

    // Longer than the layer's ttl: not shortened.
    assert_eq!(
        client.call(&["SET", "route:long", "v", "EX", "1000"]),
        Resp::ok()
    );
    assert_eq!(client.call(&["APPEND", "route:long", "x"]), Resp::Int(2));
    env.assert_ttl("route:long", 1_000_000, "APPEND after SET EX 1000");
    assert_eq!(client.call(&["INCRBY", "route:n", "1"]), Resp::Int(1));
    assert_eq!(
        client.call(&["PEXPIRE", "route:n", "1000000"]),
        Resp::Int(1)
    );
    assert_eq!(client.call(&["INCRBY", "route:n", "1"]), Resp::Int(2));
    env.assert_ttl("route:n", 1_000_000, "INCRBY after PEXPIRE 1000000");

    // A hash whose TTL was shortened keeps it through further HSETs.
    assert_eq!(client.call(&["HSET", "route:h", "f", "v"]), Resp::Int(1));
    assert_eq!(client.call(&["PEXPIRE", "route:h", "50000"]), Resp::Int(1));
    assert_eq!(client.call(&["HSET", "route:h", "g", "w"]), Resp::Int(1));
    env.assert_ttl("route:h", 50_000, "HSET after PEXPIRE 50000");
}

#[test]
fn capped_layer_default_and_explicit_ttls_under_the_maximum() {
    let env = Env::layers();
    let mut client = env.client();

    // No TTL given: the layer's ttl.
    assert_eq!(client.call(&["SET", "capped:z", "v"]), Resp::ok());
    env.assert_ttl("capped:z", CAPPED_TTL_MS, "SET in capped");
    assert_eq!(client.call(&["RPUSH", "capped:l", "v"]), Resp::Int(1));
    env.assert_ttl("capped:l", CAPPED_TTL_MS, "RPUSH in capped");

    // Explicit and under max_ttl: kept as given.
    assert_eq!(
        client.call(&["SET", "capped:a", "v", "EX", "120"]),
        Resp::ok()
    );
    env.assert_ttl("capped:a", 120_000, "SET EX 120");
    assert_eq!(client.call(&["SET", "capped:g", "v"]), Resp::ok());
    assert_eq!(client.call(&["EXPIRE", "capped:g", "30"]), Resp::Int(1));
    env.assert_ttl("capped:g", 30_000, "EXPIRE 30");
    assert_eq!(client.call(&["SETEX", "capped:sx", "300", "v"]), Resp::ok());
    env.assert_ttl("capped:sx", 300_000, "SETEX 300");
}

#[test]
fn capped_layer_clamps_explicit_ttls_over_the_maximum() {
    let env = Env::layers();
    let mut client = env.client();
    let hour_ahead = now_secs() + 3600;

    assert_eq!(
        client.call(&["SET", "capped:b", "v", "EX", "3600"]),
        Resp::ok()
    );
    env.assert_ttl("capped:b", CAPPED_MAX_MS, "SET EX 3600");

    assert_eq!(
        client.call(&["SET", "capped:b2", "v", "PX", "9999999"]),
        Resp::ok()
    );
    env.assert_ttl("capped:b2", CAPPED_MAX_MS, "SET PX 9999999");

    let exat = hour_ahead.to_string();
    assert_eq!(
        client.call(&["SET", "capped:f", "v", "EXAT", &exat]),
        Resp::ok()
    );
    env.assert_ttl("capped:f", CAPPED_MAX_MS, "SET EXAT now+3600");

    assert_eq!(client.call(&["SETEX", "capped:c", "3600", "v"]), Resp::ok());
    env.assert_ttl("capped:c", CAPPED_MAX_MS, "SETEX 3600");
    assert_eq!(env.node_get("capped:c").as_deref(), Some("v"));

    assert_eq!(
        client.call(&["PSETEX", "capped:c2", "3600000", "v"]),
        Resp::ok()
    );
    env.assert_ttl("capped:c2", CAPPED_MAX_MS, "PSETEX 3600000");
    assert_eq!(env.node_get("capped:c2").as_deref(), Some("v"));

    assert_eq!(client.call(&["SET", "capped:d", "v"]), Resp::ok());
    assert_eq!(client.call(&["EXPIRE", "capped:d", "3600"]), Resp::Int(1));
    env.assert_ttl("capped:d", CAPPED_MAX_MS, "EXPIRE 3600");

    assert_eq!(client.call(&["SET", "capped:d2", "v"]), Resp::ok());
    assert_eq!(client.call(&["EXPIREAT", "capped:d2", &exat]), Resp::Int(1));
    env.assert_ttl("capped:d2", CAPPED_MAX_MS, "EXPIREAT now+3600");

    // RESTORE with a TTL over the maximum, and with 0 (none): clamped, and the layer's ttl.
    assert_eq!(client.call(&["SET", "capped:src", "v"]), Resp::ok());
    let dump = match client.call(&["DUMP", "capped:src"]) {
        Resp::Bulk(bytes) => bytes,
        other => panic!("DUMP: {other:?}"),
    };
    let restore = |key: &str, ttl: &str| -> Vec<Vec<u8>> {
        vec![
            b"RESTORE".to_vec(),
            key.as_bytes().to_vec(),
            ttl.as_bytes().to_vec(),
            dump.clone(),
        ]
    };
    assert_eq!(client.call(&restore("capped:r1", "3600000")), Resp::ok());
    env.assert_ttl("capped:r1", CAPPED_MAX_MS, "RESTORE 3600000");
    assert_eq!(client.call(&restore("capped:r2", "0")), Resp::ok());
    env.assert_ttl("capped:r2", CAPPED_TTL_MS, "RESTORE 0");

    assert_eq!(client.call(&["SET", "capped:e", "v"]), Resp::ok());
    assert_eq!(
        client.call(&["GETEX", "capped:e", "EX", "3600"]),
        Resp::bulk("v")
    );
    env.assert_ttl("capped:e", CAPPED_MAX_MS, "GETEX EX 3600");
}

// ---------------------------------------------------------------------------------------------
// KEEPTTL and PERSIST
// ---------------------------------------------------------------------------------------------

fn refusal(option: &str) -> Resp {
    Resp::err(&format!(
        "ERR strata: {option} is not allowed in layer 'capped': its keys must expire within max_ttl 10m"
    ))
}

#[test]
fn capped_layer_refuses_keepttl_and_persist() {
    let env = Env::layers();
    let mut client = env.client();
    assert_eq!(client.call(&["SET", "capped:k", "orig"]), Resp::ok());
    env.assert_ttl("capped:k", CAPPED_TTL_MS, "SET capped:k");

    assert_eq!(
        client.call(&["SET", "capped:k", "new", "KEEPTTL"]),
        refusal("KEEPTTL")
    );
    assert_eq!(env.node_get("capped:k").as_deref(), Some("orig"));
    env.assert_ttl("capped:k", CAPPED_TTL_MS, "after refused SET KEEPTTL");

    // Refused on a key that does not exist yet as well: nothing is created.
    assert_eq!(
        client.call(&["SET", "capped:new", "v", "KEEPTTL"]),
        refusal("KEEPTTL")
    );
    assert_eq!(env.node_pttl("capped:new"), -2);

    assert_eq!(client.call(&["PERSIST", "capped:k"]), refusal("PERSIST"));
    env.assert_ttl("capped:k", CAPPED_TTL_MS, "after refused PERSIST");

    assert_eq!(
        client.call(&["GETEX", "capped:k", "PERSIST"]),
        refusal("PERSIST")
    );
    env.assert_ttl("capped:k", CAPPED_TTL_MS, "after refused GETEX PERSIST");
    assert_eq!(env.node_get("capped:k").as_deref(), Some("orig"));
}

#[test]
fn layer_without_maximum_allows_persist_and_keepttl() {
    let env = Env::layers();
    let mut client = env.client();

    assert_eq!(client.call(&["SET", "route:p", "v"]), Resp::ok());
    env.assert_ttl("route:p", ROUTE_MS, "SET route:p");
    assert_eq!(client.call(&["PERSIST", "route:p"]), Resp::Int(1));
    env.assert_no_ttl("route:p", "PERSIST");

    assert_eq!(client.call(&["SET", "route:q", "v"]), Resp::ok());
    assert_eq!(
        client.call(&["GETEX", "route:q", "PERSIST"]),
        Resp::bulk("v")
    );
    env.assert_no_ttl("route:q", "GETEX PERSIST");

    // KEEPTTL on a key with a TTL keeps it.
    assert_eq!(
        client.call(&["SET", "route:x", "v", "EX", "100"]),
        Resp::ok()
    );
    assert_eq!(
        client.call(&["SET", "route:x", "v2", "KEEPTTL"]),
        Resp::ok()
    );
    assert_eq!(env.node_get("route:x").as_deref(), Some("v2"));
    env.assert_ttl("route:x", 100_000, "SET KEEPTTL");

    // KEEPTTL on a new key: it gets the layer's ttl.
    assert_eq!(client.call(&["SET", "route:y", "v", "KEEPTTL"]), Resp::ok());
    env.assert_ttl("route:y", ROUTE_MS, "SET KEEPTTL on a new key");
}

// ---------------------------------------------------------------------------------------------
// Layers without TTL rules, defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn layers_without_ttl_rules_are_untouched() {
    let env = Env::layers();
    let mut client = env.client();
    assert_eq!(client.call(&["SET", "plain:a", "v"]), Resp::ok());
    assert_eq!(client.call(&["SET", "other:a", "v"]), Resp::ok());
    assert_eq!(client.call(&["HSET", "plain:h", "f", "v"]), Resp::Int(1));
    assert_eq!(client.call(&["INCR", "other:n"]), Resp::Int(1));
    assert_eq!(
        client.call(&["SET", "plain:x", "v", "EX", "3600"]),
        Resp::ok()
    );
    for key in ["plain:a", "other:a", "plain:h", "other:n"] {
        env.assert_no_ttl(key, "no TTL rule");
    }
    // Explicit TTLs are not clamped either.
    env.assert_ttl("plain:x", 3_600_000, "SET EX 3600 in plain");
}

#[test]
fn defaults_ttl_applies_to_unmatched_keys_and_zero_disables_it() {
    let env = Env::start(
        r#"defaults: {ttl: 1h}
layers:
  - { name: forever, prefix: "forever:", ttl: 0 }
"#,
    );
    let mut client = env.client();
    assert_eq!(client.call(&["SET", "x:1", "v"]), Resp::ok());
    env.assert_ttl("x:1", 3_600_000, "SET in the default layer");
    assert_eq!(client.call(&["HSET", "x:h", "f", "v"]), Resp::Int(1));
    env.assert_ttl("x:h", 3_600_000, "HSET in the default layer");

    assert_eq!(client.call(&["SET", "forever:1", "v"]), Resp::ok());
    env.assert_no_ttl("forever:1", "ttl 0 overrides defaults");
    assert_eq!(client.call(&["HSET", "forever:h", "f", "v"]), Resp::Int(1));
    env.assert_no_ttl("forever:h", "ttl 0 overrides defaults");
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

#[test]
fn info_layers_counts_the_ttls_strata_applied() {
    let env = Env::layers();
    let mut client = env.client();
    assert_eq!(client.call(&["CONFIG", "RESETSTAT"]), Resp::ok());
    assert_eq!(expirations(&mut client, "route"), 0);
    assert_eq!(expirations(&mut client, "capped"), 0);

    // Rewritten with PX: 1.
    assert_eq!(client.call(&["SET", "route:e1", "v"]), Resp::ok());
    // Follower that set a TTL: 1.
    assert_eq!(client.call(&["HSET", "route:e2", "f", "v"]), Resp::Int(1));
    // Follower on a key that already has a TTL (it returns 0): 0.
    assert_eq!(client.call(&["HSET", "route:e2", "g", "w"]), Resp::Int(1));
    // Explicit TTL, no maximum: 0.
    assert_eq!(
        client.call(&["SET", "route:e3", "v", "EX", "10"]),
        Resp::ok()
    );
    assert_eq!(expirations(&mut client, "route"), 2);

    // Clamped: 1; under the maximum: 0; refused: 0.
    assert_eq!(
        client.call(&["SET", "capped:c1", "v", "EX", "3600"]),
        Resp::ok()
    );
    assert_eq!(
        client.call(&["SET", "capped:c2", "v", "EX", "30"]),
        Resp::ok()
    );
    assert_eq!(client.call(&["PERSIST", "capped:c2"]), refusal("PERSIST"));
    assert_eq!(expirations(&mut client, "capped"), 1);
    assert_eq!(expirations(&mut client, "route"), 2);
    assert_eq!(expirations(&mut client, "plain"), 0);
}

#[test]
fn mixed_layer_mset_counts_each_ttl_in_its_own_layer() {
    let env = Env::layers();
    let mut client = env.client();
    assert_eq!(client.call(&["CONFIG", "RESETSTAT"]), Resp::ok());
    assert_eq!(
        client.call(&[
            "MSET",
            "route:mm1",
            "1",
            "capped:mm2",
            "2",
            "plain:mm3",
            "3"
        ]),
        Resp::ok()
    );
    env.assert_ttl("route:mm1", ROUTE_MS, "MSET");
    env.assert_ttl("capped:mm2", CAPPED_TTL_MS, "MSET");
    env.assert_no_ttl("plain:mm3", "MSET");
    assert_eq!(expirations(&mut client, "route"), 1);
    assert_eq!(expirations(&mut client, "capped"), 1);
    assert_eq!(expirations(&mut client, "plain"), 0);
}
