//! Signals to the `strata` binary. SIGTERM stops new connections at once, lets a request
//! already sent (held up by a SIGSTOPped node) get its reply, then closes the client and exits
//! 0; a second signal exits at once; an idle strata exits at once. SIGHUP reloads config.yaml.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::{poll_until, RedisNode, Resp, Strata, StrataProcess, DEADLINE};

/// The strata binary serving `nodes` on a free port, with a long request timeout (so a
/// SIGSTOPped node holds a request up rather than failing it).
struct Binary;

impl Binary {
    fn start(nodes: &[RedisNode], drain_timeout: &str) -> StrataProcess {
        Binary::start_with(nodes, drain_timeout, "")
    }

    /// With `extra` YAML (top-level sections) in the config file.
    fn start_with(nodes: &[RedisNode], drain_timeout: &str, extra: &str) -> StrataProcess {
        Strata::builder(nodes)
            .workers(2)
            .section("timeouts: {connect: 500ms, request: 20s}")
            .section("health: {heartbeat_interval: 1s, node_timeout: 60s, failure_threshold: 1000, recovery_threshold: 1}")
            .section(&format!("shutdown: {{drain_timeout: {drain_timeout}}}"))
            .section(extra)
            .spawn()
    }
}

/// Holds a `GET key` up on the stopped `node` (so strata has a request in flight), sends
/// `signal` to strata, and waits until it refuses new connections (it is draining).
fn signal_with_a_request_in_flight(
    strata: &StrataProcess,
    node: &RedisNode,
    c: &mut common::RawClient,
    key: &str,
    signal: &str,
) {
    // The worker's connection to the node is opened first: a connection opened to a stopped
    // node fails its handshake (INFO server) within timeouts.connect, and the request with it.
    c.call(&["GET", key]);
    node.signal("STOP");
    c.send_cmd(&["GET", key]);
    std::thread::sleep(Duration::from_millis(200));
    strata.signal(signal);
    poll_until(DEADLINE, "new connections refused", || {
        strata.refuses_connections().then_some(())
    });
}

/// A key strata places on node index `node` (same ring as any strata over these nodes).
fn key_on(nodes: &[RedisNode], node: usize) -> String {
    let probe = Strata::start(nodes);
    probe.key_on(node, "drain:", &[])
}

#[test]
fn sigterm_answers_what_was_sent_refuses_new_clients_and_exits_0() {
    let nodes = RedisNode::start_many(2);
    let key = key_on(&nodes, 0);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .query(&mut nodes[0].conn())
        .unwrap();
    let mut strata = Binary::start(&nodes, "30s");
    let mut c = strata.client();
    assert_eq!(c.call(&["GET", &key]), Resp::bulk("kept"));

    // A request held up by a stopped node is in flight when SIGTERM comes.
    signal_with_a_request_in_flight(&strata, &nodes[0], &mut c, &key, "TERM");
    assert!(
        strata.child.try_wait().unwrap().is_none(),
        "exited before the reply"
    );
    nodes[0].signal("CONT");
    assert_eq!(
        c.read_reply(),
        Resp::bulk("kept"),
        "the in-flight request was answered"
    );
    c.expect_closed();
    let status = strata.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let nodes = RedisNode::start_many(2);
    let key = key_on(&nodes, 1);
    let mut strata = Binary::start(&nodes, "60s");
    let mut c = strata.client();
    signal_with_a_request_in_flight(&strata, &nodes[1], &mut c, &key, "INT");
    let started = Instant::now();
    strata.signal("INT");
    let status = strata.wait_exit(Duration::from_secs(5));
    nodes[1].signal("CONT");
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_idle_strata_exits_0_at_once_and_the_drain_timeout_bounds_a_busy_one() {
    let nodes = RedisNode::start_many(1);
    let mut idle = Binary::start(&nodes, "30s");
    let started = Instant::now();
    idle.signal("TERM");
    assert_eq!(idle.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A request that cannot finish (its node stays stopped) waits the drain timeout only.
    let key = key_on(&nodes, 0);
    let mut busy = Binary::start(&nodes, "1s");
    let mut c = busy.client();
    // Connected first, as in `signal_with_a_request_in_flight`.
    c.call(&["GET", &key]);
    nodes[0].signal("STOP");
    c.send_cmd(&["GET", &key]);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    busy.signal("TERM");
    let status = busy.wait_exit(Duration::from_secs(10));
    nodes[0].signal("CONT");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "exited before the drain timeout: {:?}",
        started.elapsed()
    );
}

#[test]
fn sighup_reloads_the_config_file() {
    let nodes = RedisNode::start_many(1);
    let layer = |ttl: &str| format!("layers:\n  - {{name: cache, prefix: 'cache:', ttl: {ttl}}}");
    let mut strata = Binary::start_with(&nodes, "30s", &layer("5m"));
    let mut c = strata.client();
    let pttl = |key: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut nodes[0].conn())
            .unwrap()
    };
    assert_eq!(c.call(&["SET", "cache:a", "1"]), Resp::ok());
    assert!(pttl("cache:a") <= 300_000);
    let text = std::fs::read_to_string(strata.config_path()).unwrap();
    std::fs::write(strata.config_path(), text.replace("ttl: 5m", "ttl: 10m")).unwrap();
    strata.signal("HUP");
    let mut n = 0;
    poll_until(DEADLINE, "the reloaded TTL to apply", || {
        n += 1;
        let key = format!("cache:b{n}");
        assert_eq!(c.call(&["SET", &key, "1"]), Resp::ok());
        (pttl(&key) > 300_000).then_some(())
    });
    let ring = c.call(&["INFO", "ring"]).text();
    assert!(ring.contains("ring_version:1"), "{ring}");
    strata.signal("TERM");
    assert_eq!(strata.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn blocked_and_subscribed_clients_are_closed_at_once_on_sigterm() {
    let nodes = RedisNode::start_many(1);
    let mut strata = Binary::start(&nodes, "30s");
    let mut blocked = strata.client();
    blocked.send_cmd(&["BLPOP", "never", "0"]);
    let mut subscribed = strata.client();
    subscribed.send_cmd(&["SUBSCRIBE", "quiet"]);
    subscribed.read_reply();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    strata.signal("TERM");
    blocked.expect_closed();
    subscribed.expect_closed();
    assert_eq!(strata.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn healthz_is_503_while_draining() {
    let nodes = RedisNode::start_many(2);
    let key = key_on(&nodes, 0);
    let admin_port = common::free_port();
    let mut strata = Binary::start_with(
        &nodes,
        "30s",
        &format!("admin_listen: 127.0.0.1:{admin_port}"),
    );
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], admin_port).into();
    poll_until(DEADLINE, "/healthz ok", || {
        let r = common::layers::http_get(admin, "/healthz");
        (r.status == 200 && r.body == "ok\n").then_some(())
    });
    // A request held up by a stopped node keeps strata draining.
    let mut c = strata.client();
    signal_with_a_request_in_flight(&strata, &nodes[0], &mut c, &key, "TERM");
    let r = common::layers::http_get(admin, "/healthz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "draining: shutting down\n")
    );
    nodes[0].signal("CONT");
    assert_eq!(c.read_reply(), Resp::Nil);
    let status = strata.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
}
