//! Replication over real Redis nodes: writes land on exactly the key's preference list, each
//! write consistency level acks (or refuses) as documented with a replica down, reads fail over
//! past dead, slow (SIGSTOPped) and empty replicas, quorum reads repair diverged replicas (TTL
//! and type carried over), hinted handoff refills a node restarted empty, and the background
//! queues drain. Every placement, value and TTL is read straight on the nodes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::layers::{info, info_lines, node_lines, num};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// Health settings that notice a killed node (refused connections) within a second, yet need
/// three slow heartbeats in a row before a loaded machine marks a live node down.
const FAST_HEALTH: &str =
    "health: {heartbeat_interval: 200ms, node_timeout: 2s, failure_threshold: 3, recovery_threshold: 2}";
/// Health settings of the tests that kill no node: nothing is marked down by a slow moment.
const CALM_HEALTH: &str =
    "health: {heartbeat_interval: 1s, node_timeout: 10s, failure_threshold: 3, recovery_threshold: 2}";
/// Health settings of the SIGSTOP tests: the stopped node is never marked down, so every read
/// must find out by itself that a replica is slow.
const BLIND_HEALTH: &str =
    "health: {heartbeat_interval: 100ms, node_timeout: 60s, failure_threshold: 1000, recovery_threshold: 2}";

/// The TTL of the TTL layers below (5m).
const TTL_MS: i64 = 300_000;
/// How far a PTTL may have run down between the write and the check.
const SLACK_MS: i64 = 10_000;
/// The request timeout of the SIGSTOP tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// What a reply may take beyond the request timeout (scheduling on a loaded machine).
const MARGIN: Duration = Duration::from_millis(500);

/// strata and its nodes; strata is declared first so it shuts down before the nodes die.
struct Env {
    strata: Strata,
    nodes: Vec<RedisNode>,
}

impl Env {
    /// Three nodes, strata with `layers` and calm health checks (`extra` YAML sections replace
    /// the defaults of the same name).
    fn start(layers: &str, extra: &str) -> Env {
        let nodes = RedisNode::start_many(3);
        let strata = Strata::builder(&nodes)
            .section("timeouts: {connect: 500ms, request: 2s}")
            .section("stats: {layer_keys_interval: 0s}")
            .section(CALM_HEALTH)
            .section(layers)
            .section(extra)
            .start();
        let env = Env { strata, nodes };
        let mut c = env.client();
        poll_until(DEADLINE, "every node up and connected", || {
            node_lines(&mut c)
                .values()
                .all(|n| n["state"] == "up" && num(n, "connections") > 0)
                .then_some(())
        });
        env
    }

    fn client(&self) -> RawClient {
        self.strata.raw()
    }

    /// The key's first `n` distinct nodes on the ring, checked against a walk of
    /// `node_iter(key_hash(key))`.
    fn pref(&self, key: &str, n: usize) -> Vec<usize> {
        let ring = self.strata.ring();
        let list = ring.preference_list(key.as_bytes(), n);
        let walked: Vec<usize> = ring
            .node_iter(ring.key_hash(key.as_bytes()))
            .take(n)
            .collect();
        assert_eq!(list, walked, "preference_list vs node_iter for {key}");
        assert_eq!(list.len(), n, "preference list of {key}");
        assert_eq!(list[0], self.strata.owner(key), "primary of {key}");
        list
    }

    /// The first key `{prefix}{i}` whose `n` replicas satisfy `want` and that is not `taken`.
    fn key_where(
        &self,
        prefix: &str,
        n: usize,
        taken: &[String],
        want: impl Fn(&[usize]) -> bool,
    ) -> String {
        (0..100_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| !taken.contains(k) && want(&self.pref(k, n)))
            .unwrap_or_else(|| panic!("no key {prefix}* with the wanted replicas"))
    }

    /// Indexes of the nodes holding `key`.
    fn holders(&self, key: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].exists(key))
            .collect()
    }

    /// Polls until `key` is on exactly the nodes of its `n`-replica preference list with
    /// `value`.
    fn wait_placed(&self, key: &str, n: usize, value: &str) {
        let mut want = self.pref(key, n);
        want.sort_unstable();
        let got = poll_until(DEADLINE, &format!("{key} on its replicas"), || {
            let holders = self.holders(key);
            (holders == want).then_some(holders)
        });
        for &i in &got {
            assert_eq!(
                self.nodes[i].get(key).as_deref(),
                Some(value),
                "{key} on node{}",
                i + 1
            );
        }
    }

    /// Polls until `key` has a PTTL within the layer TTL's range on node `i`.
    fn wait_ttl(&self, i: usize, key: &str) -> i64 {
        poll_until(
            DEADLINE,
            &format!("PTTL of {key} on node{} near {TTL_MS}", i + 1),
            || {
                let ms = pttl(&self.nodes[i], key);
                (TTL_MS - SLACK_MS < ms && ms <= TTL_MS).then_some(ms)
            },
        )
    }

    /// Kills node `i` and waits until strata marks it down.
    fn kill_and_wait_down(&mut self, i: usize, c: &mut RawClient) {
        self.nodes[i].kill();
        wait_state(c, i, "down");
    }
}

fn pttl(node: &RedisNode, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(&mut node.conn()).unwrap()
}

/// `node<i+1>`'s INFO `# Nodes` fields.
fn node_info(c: &mut RawClient, i: usize) -> BTreeMap<String, String> {
    let name = format!("node{}", i + 1);
    node_lines(c)
        .remove(&name)
        .unwrap_or_else(|| panic!("no INFO line for {name}"))
}

fn wait_state(c: &mut RawClient, i: usize, state: &str) {
    poll_until(DEADLINE, &format!("node{} {state}", i + 1), || {
        (node_info(c, i)["state"] == state).then_some(())
    });
}

/// A layer's INFO `# Layers` fields.
fn layer(c: &mut RawClient, name: &str) -> BTreeMap<String, String> {
    let text = info(c, "layers");
    info_lines(&text)
        .remove(&format!("layer_{name}"))
        .unwrap_or_else(|| panic!("no layer {name} in {text}"))
        .into_iter()
        .collect()
}

fn layer_num(c: &mut RawClient, name: &str, field: &str) -> i64 {
    num(&layer(c, name), field)
}

/// INFO `# Repair` as name → value.
fn repair_info(c: &mut RawClient) -> BTreeMap<String, i64> {
    let text = info(c, "repair");
    assert!(text.starts_with("# Repair\r\n"), "{text:?}");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let v = v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{k} is not a number: {l:?}"));
            (k.to_string(), v)
        })
        .collect()
}

/// Polls until no background task runs and no hint waits.
fn wait_background_idle(c: &mut RawClient) {
    poll_until(
        DEADLINE,
        "background_in_flight:0 and hints_pending:0",
        || {
            let r = repair_info(c);
            (r["background_in_flight"] == 0 && r["hints_pending"] == 0).then_some(())
        },
    );
}

/// Sends SIGCONT on drop, so a failing test never leaves a node stopped.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

fn ok(c: &mut RawClient, args: &[&str]) {
    assert_eq!(c.call(args), Resp::ok(), "{args:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. Placement
// ---------------------------------------------------------------------------------------------

const PLACEMENT_LAYERS: &str = r#"layers:
  - { name: r2, prefix: "r2:", replication: 2 }
  - { name: r3, prefix: "r3:", replication: 3 }
  - { name: t2, prefix: "t2:", replication: 2, ttl: 5m }
"#;

#[test]
fn writes_land_on_exactly_the_preference_list() {
    let env = Env::start(PLACEMENT_LAYERS, "");
    let mut c = env.client();

    // RF 2: each key on its first two nodes, and the keys cover several replica pairs.
    let mut pairs = std::collections::BTreeSet::new();
    for i in 0..12 {
        let k = format!("r2:{i}");
        ok(&mut c, &["SET", &k, &format!("v{i}")]);
        env.wait_placed(&k, 2, &format!("v{i}"));
        pairs.insert(env.pref(&k, 2));
    }
    assert!(
        pairs.len() >= 3,
        "keys spread over few replica sets: {pairs:?}"
    );

    // RF 3: every node.
    for i in 0..4 {
        let k = format!("r3:{i}");
        ok(&mut c, &["SET", &k, &format!("w{i}")]);
        env.wait_placed(&k, 3, &format!("w{i}"));
        assert_eq!(env.holders(&k), [0, 1, 2]);
    }

    // A TTL layer: the same TTL on both replicas, for SET (PX appended) and for a write the TTL
    // follows (HSET + PEXPIRE NX).
    ok(&mut c, &["SET", "t2:s", "x"]);
    env.wait_placed("t2:s", 2, "x");
    assert_eq!(c.call(&["HSET", "t2:h", "f", "v"]), Resp::Int(1));
    for k in ["t2:s", "t2:h"] {
        let replicas = env.pref(k, 2);
        for &n in &replicas {
            env.wait_ttl(n, k);
        }
        let mut want = replicas.clone();
        want.sort_unstable();
        assert_eq!(env.holders(k), want, "holders of {k}");
    }

    // MSET across layers and replica groups; the default layer keeps one copy.
    let r2a = env.key_where("r2:m", 2, &[], |_| true);
    let r2b = env.key_where("r2:m", 2, &[], |p| p != env.pref(&r2a, 2).as_slice());
    let r3 = "r3:m".to_string();
    let t2 = "t2:m".to_string();
    let plain = "plain:m".to_string();
    let keys = [(&r2a, 2), (&r2b, 2), (&r3, 3), (&t2, 2), (&plain, 1)];
    let mut mset = vec!["MSET".to_string()];
    for (k, _) in &keys {
        mset.push((*k).clone());
        mset.push(format!("val-{k}"));
    }
    assert_eq!(c.call(&mset), Resp::ok());
    for (k, n) in &keys {
        env.wait_placed(k, *n, &format!("val-{k}"));
    }
    for &n in &env.pref(&t2, 2) {
        env.wait_ttl(n, &t2);
    }
    for n in env.pref(&r2a, 2) {
        assert_eq!(pttl(&env.nodes[n], &r2a), -1, "no TTL outside TTL layers");
    }

    // MGET and EXISTS answer once per key (read one), in order.
    let missing = "r3:missing".to_string();
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().map(|(k, _)| (*k).clone()));
    mget.push(missing.clone());
    let mut want: Vec<Resp> = keys
        .iter()
        .map(|(k, _)| Resp::bulk(format!("val-{k}")))
        .collect();
    want.push(Resp::Nil);
    assert_eq!(c.call(&mget), Resp::Array(want));
    let mut exists = mget.clone();
    exists[0] = "EXISTS".into();
    assert_eq!(c.call(&exists), Resp::Int(5), "EXISTS counts each key once");

    // DEL counts each deleted key once, not once per replica, and removes every copy.
    let mut del = exists.clone();
    del[0] = "DEL".into();
    assert_eq!(c.call(&del), Resp::Int(5), "DEL counts each key once");
    for (k, _) in &keys {
        poll_until(DEADLINE, &format!("{k} deleted on every node"), || {
            env.holders(k).is_empty().then_some(())
        });
    }
    assert_eq!(c.call(&del), Resp::Int(0));
    wait_background_idle(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 2. Write consistency with a replica down
// ---------------------------------------------------------------------------------------------

const LEVEL_LAYERS: &str = r#"layers:
  - { name: s3, prefix: "s3:", replication: 3, write_consistency: strong }
  - { name: q3, prefix: "q3:", replication: 3, write_consistency: quorum }
  - { name: q2, prefix: "q2:", replication: 2, write_consistency: quorum }
  - { name: e2, prefix: "e2:", replication: 2, write_consistency: eventual }
"#;

#[test]
fn write_levels_with_a_replica_down() {
    let mut env = Env::start(LEVEL_LAYERS, FAST_HEALTH);
    let mut c = env.client();
    let victim = 1;
    let q2_down = env.key_where("q2:", 2, &[], |p| p.contains(&victim));
    let q2_up = env.key_where("q2:", 2, &[], |p| !p.contains(&victim));
    let e2_primary = env.key_where("e2:", 2, &[], |p| p[0] == victim);
    let e2_second = env.key_where("e2:", 2, &[], |p| p[1] == victim);
    env.kill_and_wait_down(victim, &mut c);
    let live = |key: &str, n: usize| -> Vec<usize> {
        env.pref(key, n)
            .into_iter()
            .filter(|&i| i != victim)
            .collect()
    };

    // strong: every replica must ack.
    assert_eq!(
        c.call(&["SET", "s3:a", "1"]),
        Resp::err("ERR strata: write reached 2 of 3 replicas (strong needs 3)")
    );
    // The error tells the truth: the two live replicas took the write.
    for i in live("s3:a", 3) {
        assert_eq!(
            env.nodes[i].get("s3:a").as_deref(),
            Some("1"),
            "node{}",
            i + 1
        );
    }

    // quorum: 2 of 3 is enough, 1 of 2 is not.
    ok(&mut c, &["SET", "q3:a", "1"]);
    let q3_live = live("q3:a", 3);
    assert_eq!(q3_live.len(), 2);
    for i in q3_live {
        poll_until(DEADLINE, "q3:a on a live replica", || {
            (env.nodes[i].get("q3:a").as_deref() == Some("1")).then_some(())
        });
    }
    assert_eq!(
        c.call(&["SET", &q2_down, "1"]),
        Resp::err("ERR strata: write reached 1 of 2 replicas (quorum needs 2)")
    );
    ok(&mut c, &["SET", &q2_up, "1"]);
    for i in env.pref(&q2_up, 2) {
        assert_eq!(
            env.nodes[i].get(&q2_up).as_deref(),
            Some("1"),
            "node{}",
            i + 1
        );
    }

    // eventual: one ack, whether the down node is the primary or the second replica.
    for k in [&e2_primary, &e2_second] {
        ok(&mut c, &["SET", k, "1"]);
        let l = live(k, 2);
        assert_eq!(l.len(), 1);
        poll_until(DEADLINE, &format!("{k} on its live replica"), || {
            (env.nodes[l[0]].get(k).as_deref() == Some("1")).then_some(())
        });
    }

    // A split write: the failing group's error is the reply.
    assert_eq!(
        c.call(&["MSET", "q3:b", "2", "s3:b", "2"]),
        Resp::err("ERR strata: write reached 2 of 3 replicas (strong needs 3)")
    );

    for (name, failures) in [("s3", 2), ("q3", 0), ("q2", 1), ("e2", 0)] {
        assert_eq!(
            layer_num(&mut c, name, "write_failures"),
            failures,
            "write_failures of layer {name}"
        );
    }
    // Every key written while the victim was down and replicated on it is hinted for it, once.
    // s3:a, q3:a, q2_down, e2_primary, e2_second, q3:b, s3:b.
    let hints = node_info(&mut c, victim);
    assert_eq!(num(&hints, "hints_pending"), 7, "{hints:?}");
    for i in [0, 2] {
        assert_eq!(num(&node_info(&mut c, i), "hints_pending"), 0);
    }
    poll_until(DEADLINE, "no background task", || {
        (repair_info(&mut c)["background_in_flight"] == 0).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Reads with a node down
// ---------------------------------------------------------------------------------------------

const READ_LAYERS: &str = r#"layers:
  - { name: one, prefix: "one:", replication: 3, write_consistency: quorum, read_consistency: one }
  - { name: qr, prefix: "qr:", replication: 3, write_consistency: quorum, read_consistency: quorum }
  - { name: qr2, prefix: "qr2:", replication: 2, write_consistency: quorum, read_consistency: quorum }
"#;

#[test]
fn quorum_writes_stay_readable_with_a_node_down() {
    let mut env = Env::start(READ_LAYERS, FAST_HEALTH);
    let mut c = env.client();
    let victim = 0;
    let primary_victim = |prefix: &str, taken: &[String], n: usize| {
        env.key_where(prefix, n, taken, |p| p[0] == victim)
    };
    let one_before = primary_victim("one:", &[], 3);
    let qr_before = primary_victim("qr:", &[], 3);
    let qr2 = env.key_where("qr2:", 2, &[], |p| p.contains(&victim));
    let one_after = primary_victim("one:", std::slice::from_ref(&one_before), 3);
    let qr_after = primary_victim("qr:", std::slice::from_ref(&qr_before), 3);
    for k in [&one_before, &qr_before, &qr2] {
        ok(&mut c, &["SET", k, &format!("v-{k}")]);
    }
    for k in [&one_before, &qr_before] {
        env.wait_placed(k, 3, &format!("v-{k}"));
    }
    env.kill_and_wait_down(victim, &mut c);

    // Written before: read from the live replicas, with `one` and with `quorum` (2 of 3 up).
    for k in [&one_before, &qr_before] {
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("v-{k}")), "GET {k}");
    }
    // Written while the primary is down (a quorum write: 2 of 3), then read.
    for k in [&one_after, &qr_after] {
        ok(&mut c, &["SET", k, "later"]);
        assert_eq!(c.call(&["GET", k]), Resp::bulk("later"), "GET {k}");
    }
    assert_eq!(
        c.call(&["MGET", &one_before, &one_after]),
        Resp::bulks(&[format!("v-{one_before}"), "later".to_string()])
    );
    // A quorum of 2 replicas is both: with one down, the read cannot be answered.
    assert_eq!(
        c.call(&["GET", &qr2]),
        Resp::err("ERR strata: read reached 1 of 2 replicas (quorum needs 2)")
    );
    assert_eq!(layer_num(&mut c, "qr", "repairs"), 0, "agreeing replicas");
}

// ---------------------------------------------------------------------------------------------
// 4. A hung primary
// ---------------------------------------------------------------------------------------------

#[test]
fn stopped_primary_read_fails_over_within_the_request_timeout() {
    let env = Env::start(
        r#"layers:
  - { name: r2, prefix: "r2:", replication: 2, read_consistency: one }
"#,
        &format!("{BLIND_HEALTH}\ntimeouts: {{connect: 500ms, request: 1s}}"),
    );
    let mut c = env.client();
    let victim = 2;
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..3 {
        let k = env.key_where("r2:", 2, &keys, |p| p[0] == victim);
        ok(&mut c, &["SET", &k, &format!("v-{k}")]);
        env.wait_placed(&k, 2, &format!("v-{k}"));
        keys.push(k);
    }
    let before = layer_num(&mut c, "r2", "failovers");

    let _cont = Continue(env.nodes[victim].pid());
    env.nodes[victim].signal("STOP");
    for (n, k) in keys.iter().enumerate() {
        let start = Instant::now();
        let reply = c.call(&["GET", k]);
        let elapsed = start.elapsed();
        assert_eq!(reply, Resp::bulk(format!("v-{k}")), "GET {k}");
        assert!(
            elapsed < REQUEST_TIMEOUT + MARGIN,
            "GET {k} took {elapsed:?} with its primary stopped"
        );
        assert_eq!(
            layer_num(&mut c, "r2", "failovers"),
            before + n as i64 + 1,
            "one failover per read of a stopped primary"
        );
    }
    assert_eq!(
        node_info(&mut c, victim)["state"],
        "up",
        "health left alone"
    );
}

#[test]
fn miss_with_a_stopped_second_replica_stays_a_miss() {
    let env = Env::start(
        r#"layers:
  - { name: r2, prefix: "r2:", replication: 2, read_consistency: one }
"#,
        &format!("{BLIND_HEALTH}\ntimeouts: {{connect: 500ms, request: 1s}}"),
    );
    let mut c = env.client();
    let victim = 1;
    let absent = env.key_where("r2:absent", 2, &[], |p| p[1] == victim);
    let _cont = Continue(env.nodes[victim].pid());
    env.nodes[victim].signal("STOP");
    // The primary misses; miss failover asks the stopped second replica, which never answers:
    // the miss is the answer (no key is no error), within the request timeout.
    let start = Instant::now();
    let reply = c.call(&["GET", &absent]);
    let elapsed = start.elapsed();
    assert_eq!(reply, Resp::Nil, "GET {absent}");
    assert!(
        elapsed < REQUEST_TIMEOUT + MARGIN,
        "GET {absent} took {elapsed:?}"
    );
    assert_eq!(layer_num(&mut c, "r2", "miss_failovers"), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Read repair
// ---------------------------------------------------------------------------------------------

#[test]
fn quorum_read_repairs_diverged_replicas() {
    let env = Env::start(
        r#"layers:
  - { name: rr, prefix: "rr:", replication: 3, write_consistency: strong, read_consistency: quorum, ttl: 5m }
"#,
        "",
    );
    let mut c = env.client();
    let nodes = &env.nodes;
    for k in ["rr:a", "rr:b", "rr:d"] {
        ok(&mut c, &["SET", k, "good"]);
        for n in 0..3 {
            env.wait_ttl(n, k);
        }
    }
    assert_eq!(
        c.call(&["HSET", "rr:h", "f1", "v1", "f2", "v2"]),
        Resp::Int(2)
    );
    for n in 0..3 {
        env.wait_ttl(n, "rr:h");
    }
    let set_px = |n: usize, k: &str, v: &str| {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(v)
            .arg("PX")
            .arg(100_000)
            .query(&mut nodes[n].conn())
            .unwrap();
    };
    let del = |n: usize, k: &str| {
        let _: i64 = redis::cmd("DEL")
            .arg(k)
            .query(&mut nodes[n].conn())
            .unwrap();
    };
    // a: the second replica holds another value (with another TTL).
    let a = env.pref("rr:a", 3);
    set_px(a[1], "rr:a", "stale");
    // b: the primary lost the key.
    let b = env.pref("rr:b", 3);
    del(b[0], "rr:b");
    // d: three different answers; a value beats nil, then the earlier replica wins.
    let d = env.pref("rr:d", 3);
    set_px(d[1], "rr:d", "other");
    del(d[2], "rr:d");
    // h: the primary's hash differs in one field.
    let h = env.pref("rr:h", 3);
    let _: i64 = redis::cmd("HSET")
        .arg("rr:h")
        .arg("f1")
        .arg("stale")
        .query(&mut nodes[h[0]].conn())
        .unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("rr:h")
        .arg(100_000)
        .query(&mut nodes[h[0]].conn())
        .unwrap();

    assert_eq!(c.call(&["GET", "rr:a"]), Resp::bulk("good"));
    assert_eq!(c.call(&["GET", "rr:b"]), Resp::bulk("good"));
    assert_eq!(c.call(&["GET", "rr:d"]), Resp::bulk("good"));
    let full_hash = Resp::bulks(&["f1", "v1", "f2", "v2"]);
    assert_eq!(c.call(&["HGETALL", "rr:h"]), full_hash);

    // Every replica converges on the winner, TTL included.
    for k in ["rr:a", "rr:b", "rr:d"] {
        for (n, node) in nodes.iter().enumerate() {
            poll_until(DEADLINE, &format!("{k} repaired on node{}", n + 1), || {
                (node.get(k).as_deref() == Some("good")).then_some(())
            });
            env.wait_ttl(n, k);
        }
    }
    for (n, node) in nodes.iter().enumerate() {
        poll_until(DEADLINE, &format!("rr:h repaired on node{}", n + 1), || {
            let got: Vec<String> = redis::cmd("HGETALL")
                .arg("rr:h")
                .query(&mut node.conn())
                .unwrap();
            (got == ["f1", "v1", "f2", "v2"]).then_some(())
        });
        let t: String = redis::cmd("TYPE")
            .arg("rr:h")
            .query(&mut node.conn())
            .unwrap();
        assert_eq!(t, "hash");
        env.wait_ttl(n, "rr:h");
    }
    // One repair per replica that answered otherwise: a, b, h one each, d two.
    poll_until(DEADLINE, "repairs=5", || {
        (layer_num(&mut c, "rr", "repairs") == 5).then_some(())
    });
    // Agreeing replicas now: no further repair.
    for k in ["rr:a", "rr:b", "rr:d"] {
        assert_eq!(c.call(&["GET", k]), Resp::bulk("good"));
    }
    assert_eq!(c.call(&["HGETALL", "rr:h"]), full_hash);
    wait_background_idle(&mut c);
    assert_eq!(layer_num(&mut c, "rr", "repairs"), 5);
    assert_eq!(repair_info(&mut c)["repairs_failed"], 0);
}

// ---------------------------------------------------------------------------------------------
// 6 + 7. A node restarted empty: hinted handoff and miss failover; queues drain
// ---------------------------------------------------------------------------------------------

#[test]
fn restarted_node_refilled_by_hints_and_miss_failover() {
    // Hints and miss failover alone: no refill walk (tests/refill.rs) copies the other keys.
    let mut env = Env::start(
        r#"layers:
  - { name: h2, prefix: "h2:", replication: 2, write_consistency: eventual, ttl: 5m }
repair: {refill: false}
"#,
        FAST_HEALTH,
    );
    let mut c = env.client();
    let victim = 0;
    let connections = num(&node_info(&mut c, victim), "connections");

    // Before the kill: keys whose primary is the victim.
    let mut before: Vec<String> = Vec::new();
    for _ in 0..3 {
        let k = env.key_where("h2:old", 2, &before, |p| p[0] == victim);
        ok(&mut c, &["SET", &k, &format!("old-{k}")]);
        env.wait_placed(&k, 2, &format!("old-{k}"));
        before.push(k);
    }

    env.kill_and_wait_down(victim, &mut c);
    let hints_before = node_info(&mut c, victim);
    assert_eq!(num(&hints_before, "hints_pending"), 0, "{hints_before:?}");

    // While it is down: keys with the victim as primary and as second replica.
    let mut during: Vec<String> = Vec::new();
    for _ in 0..3 {
        let k = env.key_where("h2:new", 2, &during, |p| p[0] == victim);
        during.push(k);
        let k = env.key_where("h2:new", 2, &during, |p| p[1] == victim);
        during.push(k);
    }
    for k in &during {
        ok(&mut c, &["SET", k, &format!("new-{k}")]);
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("new-{k}")));
    }
    for k in &before {
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("old-{k}")));
    }
    let n = during.len() as i64;
    let down = node_info(&mut c, victim);
    assert_eq!(num(&down, "hints_pending"), n, "{down:?}");
    assert_eq!(num(&down, "hints_stored"), n, "{down:?}");
    assert_eq!(num(&down, "hints_replayed"), 0, "{down:?}");

    // Back, empty: the hints are replayed.
    env.nodes[victim].restart();
    assert_eq!(env.nodes[victim].dbsize(), 0, "restarted empty");
    let back = poll_until(DEADLINE, "victim up with its hints replayed", || {
        let info = node_info(&mut c, victim);
        (info["state"] == "up"
            && num(&info, "hints_pending") == 0
            && num(&info, "hints_replayed") > 0)
            .then_some(info)
    });
    assert_eq!(num(&back, "hints_replayed"), n, "{back:?}");
    assert_eq!(num(&back, "hints_dropped"), 0, "{back:?}");
    for k in &during {
        assert_eq!(
            env.nodes[victim].get(k),
            Some(format!("new-{k}")),
            "hinted {k} on the restarted node"
        );
        env.wait_ttl(victim, k);
    }

    // Keys from before the kill: the restarted primary misses, the next replica answers, and
    // the value is copied back.
    for k in &before {
        assert!(!env.nodes[victim].exists(k), "{k} was never hinted");
    }
    poll_until(DEADLINE, "strata reconnected to the restarted node", || {
        (num(&node_info(&mut c, victim), "connections") >= connections).then_some(())
    });
    let miss_failovers = layer_num(&mut c, "h2", "miss_failovers");
    let repairs = layer_num(&mut c, "h2", "repairs");
    for k in &before {
        assert_eq!(
            c.call(&["GET", k]),
            Resp::bulk(format!("old-{k}")),
            "GET {k}"
        );
    }
    for k in &before {
        poll_until(
            DEADLINE,
            &format!("{k} copied back to the restarted node"),
            || {
                env.nodes[victim]
                    .get(k)
                    .filter(|v| *v == format!("old-{k}"))
            },
        );
        env.wait_ttl(victim, k);
    }
    assert_eq!(
        layer_num(&mut c, "h2", "miss_failovers"),
        miss_failovers + before.len() as i64
    );
    poll_until(DEADLINE, "copy-backs counted as repairs", || {
        (layer_num(&mut c, "h2", "repairs") == repairs + before.len() as i64).then_some(())
    });
    // A second read hits on the primary: no more miss failovers.
    for k in &before {
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("old-{k}")));
    }
    assert_eq!(
        layer_num(&mut c, "h2", "miss_failovers"),
        miss_failovers + before.len() as i64
    );

    // 7. The background queues are empty again.
    wait_background_idle(&mut c);
    let r = repair_info(&mut c);
    assert_eq!(r["hints_replayed"], n, "{r:?}");
    assert_eq!(r["hints_dropped"], 0, "{r:?}");
    assert_eq!(r["repairs_failed"], 0, "{r:?}");
}

#[test]
fn quorum_ttl_reads_repair_only_real_divergence() {
    let env = Env::start(
        r#"layers:
  - { name: rr, prefix: "rr:", replication: 3, write_consistency: strong, read_consistency: quorum, ttl: 5m }
"#,
        "",
    );
    let mut c = env.client();
    ok(&mut c, &["SET", "rr:t", "v"]);
    for n in 0..3 {
        env.wait_ttl(n, "rr:t");
    }
    // Each replica counts its expiry from when the write reached it: the figures differ by a
    // millisecond now and then, which is no divergence.
    for _ in 0..100 {
        let ms = c.call(&["PTTL", "rr:t"]).int();
        assert!(TTL_MS - SLACK_MS < ms && ms <= TTL_MS, "PTTL {ms}");
        let s = c.call(&["TTL", "rr:t"]).int();
        assert!(
            (TTL_MS - SLACK_MS) / 1000 < s && s <= TTL_MS / 1000,
            "TTL {s}"
        );
    }
    wait_background_idle(&mut c);
    assert_eq!(
        layer_num(&mut c, "rr", "repairs"),
        0,
        "no repair for agreeing TTLs"
    );

    // A replica without the expiry is a real divergence: the majority's TTL is copied to it.
    let primary = env.pref("rr:t", 3)[0];
    let persisted: i64 = redis::cmd("PERSIST")
        .arg("rr:t")
        .query(&mut env.nodes[primary].conn())
        .unwrap();
    assert_eq!(persisted, 1);
    let ms = c.call(&["PTTL", "rr:t"]).int();
    assert!(TTL_MS - SLACK_MS < ms && ms <= TTL_MS, "PTTL {ms}");
    env.wait_ttl(primary, "rr:t");
    poll_until(DEADLINE, "repairs=1", || {
        (layer_num(&mut c, "rr", "repairs") == 1).then_some(())
    });
    wait_background_idle(&mut c);
}
