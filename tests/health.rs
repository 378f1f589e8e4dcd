//! Node health over real Redis nodes: a killed node is marked down within `node_timeout` plus a
//! heartbeat (and INFO, STRATA NODES, `/metrics` and `/healthz` say so), a hung (SIGSTOPped)
//! node too while its keys fail fast, a restarted node comes up only after
//! `recovery_threshold` heartbeats, and an `eject_on_down` layer moves a down node's keys to
//! the next node on the ring and back.
//!
//! Every wait is a poll against a deadline; the timing assertions are bounds that follow from
//! the rules (`health` module), with the margins explained where they are used.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::layers::{fields, http_get, metrics, node_lines, num, sample};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

const HEARTBEAT: Duration = Duration::from_millis(200);
const NODE_TIMEOUT: Duration = Duration::from_secs(1);
const FAILURE_THRESHOLD: u32 = 3;
const RECOVERY_THRESHOLD: u32 = 3;
/// `timeouts.request` of the test configuration (the harness default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Slack on top of the bounds for scheduling and for the 20 ms polling of the test.
const MARGIN: Duration = Duration::from_secs(1);

/// The correctness bound of detection: a node that stops answering is marked down once
/// `node_timeout` has passed without an answer, checked at each heartbeat.
fn down_bound() -> Duration {
    NODE_TIMEOUT + HEARTBEAT + MARGIN
}

/// Two layers of one copy: `p:` keeps a down node's keys on it (they fail fast), `e:` ejects
/// the down node (its keys go to the next node on the ring).
const LAYERS: &str = r#"layers:
  - { name: plain, prefix: "p:", replication: 1 }
  - { name: eject, prefix: "e:", replication: 1, eject_on_down: true }
"#;

fn health_section(failure_threshold: u32) -> String {
    format!(
        "health: {{heartbeat_interval: {}ms, node_timeout: {}ms, failure_threshold: {failure_threshold}, recovery_threshold: {RECOVERY_THRESHOLD}}}",
        HEARTBEAT.as_millis(),
        NODE_TIMEOUT.as_millis(),
    )
}

/// strata with the test health settings, the two layers, the admin endpoint on a free port and
/// no background key count.
fn start_with(nodes: &[RedisNode], failure_threshold: u32) -> Strata {
    Strata::builder(nodes)
        .section(LAYERS)
        .section(&health_section(failure_threshold))
        .section("admin_listen: 127.0.0.1:0")
        .section("stats: {layer_keys_interval: 0s}")
        .start()
}

fn start(nodes: &[RedisNode]) -> Strata {
    start_with(nodes, FAILURE_THRESHOLD)
}

fn admin(strata: &Strata) -> SocketAddr {
    strata.handle().admin_addr.expect("admin endpoint")
}

/// INFO `# Nodes` line of `node` (`node1`, ...): field → value.
fn node_info(c: &mut RawClient, node: &str) -> BTreeMap<String, String> {
    node_lines(c)
        .remove(node)
        .unwrap_or_else(|| panic!("no INFO line for {node}"))
}

/// Polls INFO until `node` is in `state`; returns the line and when it was first seen.
fn wait_state(
    c: &mut RawClient,
    node: &str,
    state: &str,
    deadline: Duration,
) -> (BTreeMap<String, String>, Instant) {
    poll_until(deadline, &format!("{node} state={state}"), || {
        let line = node_info(c, node);
        (line["state"] == state).then(|| (line, Instant::now()))
    })
}

/// STRATA NODES: node id → fields.
fn strata_nodes(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, Resp>> {
    c.call(&["STRATA", "NODES"])
        .array()
        .iter()
        .map(|n| {
            let f = fields(n);
            (f["id"].text(), f)
        })
        .collect()
}

/// Every node up, as INFO says (strata starts with all nodes up; this also proves it).
fn assert_all_up(c: &mut RawClient) {
    for (id, line) in node_lines(c) {
        assert_eq!(line["state"], "up", "{id} at start: {line:?}");
        assert_eq!(line["down_transitions"], "0", "{id} at start: {line:?}");
    }
}

/// Sends SIGCONT on drop, so a failing test never leaves a stopped redis-server behind (the
/// node's own drop then kills it). Does not panic: it may run while unwinding.
struct ContGuard(u32);

impl ContGuard {
    fn stop(node: &RedisNode) -> ContGuard {
        node.signal("STOP");
        ContGuard(node.pid())
    }
}

impl Drop for ContGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

fn timed(c: &mut RawClient, args: &[&str]) -> (Resp, Duration) {
    let start = Instant::now();
    let reply = c.call(args);
    (reply, start.elapsed())
}

/// The beginning of the error a request of a down node gets.
fn marked_down_prefix(node: &RedisNode, index: usize) -> String {
    format!(
        "ERR strata: node node{} (127.0.0.1:{}) unavailable: marked down",
        index + 1,
        node.port()
    )
}

#[test]
fn killed_node_is_marked_down_within_node_timeout_plus_a_heartbeat() {
    let mut nodes = RedisNode::start_many(3);
    let strata = start(&nodes);
    let admin = admin(&strata);
    let mut c = strata.raw();
    assert_all_up(&mut c);
    let key = strata.key_on(1, "p:", &[]);
    assert_eq!(c.call(&["SET", &key, "v"]), Resp::ok());

    let killed = Instant::now();
    nodes[1].kill();
    let (line, seen) = wait_state(&mut c, "node2", "down", DEADLINE);
    let took = seen - killed;
    eprintln!(
        "node2 down {took:?} after SIGKILL: {}",
        line["health_reason"]
    );
    assert!(
        took <= down_bound(),
        "node2 marked down {took:?} after SIGKILL, bound {:?}",
        down_bound()
    );
    assert_eq!(line["down_transitions"], "1", "{line:?}");
    assert_eq!(line["up_transitions"], "0", "{line:?}");
    assert!(!line["health_reason"].is_empty(), "{line:?}");
    // The other nodes are untouched.
    for other in ["node1", "node3"] {
        let l = node_info(&mut c, other);
        assert_eq!(l["state"], "up", "{other}: {l:?}");
        assert_eq!(l["down_transitions"], "0", "{other}: {l:?}");
    }

    // STRATA NODES says the same.
    let nodes_reply = strata_nodes(&mut c);
    let n2 = &nodes_reply["node2"];
    assert_eq!(n2["state"], Resp::bulk("down"), "{n2:?}");
    assert_eq!(n2["down_transitions"], Resp::Int(1), "{n2:?}");
    assert_eq!(n2["up_transitions"], Resp::Int(0), "{n2:?}");
    assert!(!n2["health_reason"].text().is_empty(), "{n2:?}");
    assert_eq!(nodes_reply["node1"]["state"], Resp::bulk("up"));
    assert_eq!(nodes_reply["node3"]["state"], Resp::bulk("up"));

    // So do the metrics.
    let body = metrics(admin);
    let expect = [
        ("strata_node_up{node=\"node1\"}", "1"),
        ("strata_node_up{node=\"node2\"}", "0"),
        ("strata_node_up{node=\"node3\"}", "1"),
        ("strata_node_down_transitions_total{node=\"node2\"}", "1"),
        ("strata_node_up_transitions_total{node=\"node2\"}", "0"),
        ("strata_node_down_transitions_total{node=\"node1\"}", "0"),
    ];
    for (series, value) in expect {
        assert_eq!(
            sample(&body, series).as_deref(),
            Some(value),
            "{series} in\n{body}"
        );
    }

    // And /healthz: degraded (the other nodes' keys are served), still 200.
    let r = http_get(admin, "/healthz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "degraded: not up: node2\n")
    );

    // The key of the down node fails fast with the reason; the others are served.
    let (reply, took) = timed(&mut c, &["GET", &key]);
    let text = reply.error_text();
    assert!(
        text.starts_with(&marked_down_prefix(&nodes[1], 1)),
        "{text:?}"
    );
    assert!(took < REQUEST_TIMEOUT, "down reply took {took:?}");
    let other = strata.key_on(0, "p:", &[]);
    assert_eq!(c.call(&["SET", &other, "w"]), Resp::ok());
    assert_eq!(c.call(&["GET", &other]), Resp::bulk("w"));
}

#[test]
fn node_timeout_alone_marks_a_silent_node_down() {
    // A failure threshold no run reaches: only the node_timeout rule can mark the node down.
    let mut nodes = RedisNode::start_many(3);
    let strata = start_with(&nodes, 1_000_000);
    let mut c = strata.raw();
    assert_all_up(&mut c);

    let killed = Instant::now();
    nodes[2].kill();
    let (line, seen) = wait_state(&mut c, "node3", "down", DEADLINE);
    let took = seen - killed;
    eprintln!(
        "node3 down {took:?} after SIGKILL: {}",
        line["health_reason"]
    );
    // The last answer (a heartbeat) came about one heartbeat before the kill at most: down no
    // sooner than node_timeout - heartbeat after it (one more heartbeat of slack for a late
    // tick). Failures alone would have taken a few backoffs (tens of milliseconds).
    assert!(
        took >= NODE_TIMEOUT - 2 * HEARTBEAT,
        "node3 marked down {took:?} after SIGKILL: before node_timeout ({NODE_TIMEOUT:?}) could have passed"
    );
    assert!(
        took <= down_bound(),
        "node3 marked down {took:?} after SIGKILL, bound {:?}",
        down_bound()
    );
    let reason = &line["health_reason"];
    assert!(reason.starts_with("no answer for "), "{line:?}");
    assert_eq!(line["down_transitions"], "1", "{line:?}");
}

#[test]
fn hung_node_is_marked_down_and_its_keys_fail_fast() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes);
    let admin = admin(&strata);
    let mut c = strata.raw();
    assert_all_up(&mut c);
    let key = strata.key_on(1, "p:", &[]);
    let other = strata.key_on(2, "p:", &[]);
    assert_eq!(c.call(&["SET", &key, "kept"]), Resp::ok());
    assert_eq!(c.call(&["SET", &other, "o"]), Resp::ok());

    let stopped = Instant::now();
    let guard = ContGuard::stop(&nodes[1]);
    // No request goes to node2 meanwhile: only the heartbeats (their PING unanswered, the
    // connection open) can find out.
    let (line, seen) = wait_state(&mut c, "node2", "down", DEADLINE);
    let took = seen - stopped;
    eprintln!(
        "node2 down {took:?} after SIGSTOP: {}",
        line["health_reason"]
    );
    assert!(
        took <= down_bound(),
        "hung node2 marked down {took:?} after SIGSTOP, bound {:?}",
        down_bound()
    );
    assert_eq!(line["down_transitions"], "1", "{line:?}");
    let reason = &line["health_reason"];
    assert!(
        reason.contains("no PONG within") || reason.starts_with("no answer for"),
        "a hung node is found by its silence, not by refused connections: {line:?}"
    );
    assert_eq!(
        sample(&metrics(admin), "strata_node_up{node=\"node2\"}").as_deref(),
        Some("0")
    );

    // Its keys fail at once with the reason instead of waiting out the request timeout...
    let prefix = marked_down_prefix(&nodes[1], 1);
    for args in [vec!["GET", key.as_str()], vec!["SET", key.as_str(), "x"]] {
        let (reply, took) = timed(&mut c, &args);
        let text = reply.error_text();
        assert!(text.starts_with(&prefix), "{args:?}: {text:?}");
        assert!(
            took < REQUEST_TIMEOUT,
            "{args:?}: down reply took {took:?}, request timeout {REQUEST_TIMEOUT:?}"
        );
    }
    // ...while the other nodes' keys are served on the same connection.
    let (reply, took) = timed(&mut c, &["GET", &other]);
    assert_eq!(reply, Resp::bulk("o"));
    assert!(took < REQUEST_TIMEOUT, "GET of a live node took {took:?}");

    // Resumed: up again after the recovery heartbeats, with its data (it was only paused).
    drop(guard);
    let (line, _) = wait_state(&mut c, "node2", "up", DEADLINE);
    assert_eq!(line["up_transitions"], "1", "{line:?}");
    assert_eq!(line["down_transitions"], "1", "{line:?}");
    assert_eq!(c.call(&["GET", &key]), Resp::bulk("kept"));
}

#[test]
fn restarted_node_comes_up_only_after_the_recovery_heartbeats() {
    let mut nodes = RedisNode::start_many(3);
    let strata = start(&nodes);
    let admin = admin(&strata);
    let mut c = strata.raw();
    assert_all_up(&mut c);
    let r = http_get(admin, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    nodes[1].kill();
    wait_state(&mut c, "node2", "down", DEADLINE);
    let r = http_get(admin, "/healthz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "degraded: not up: node2\n")
    );

    // Before the process exists no heartbeat can succeed, so the clock starts here.
    let restarting = Instant::now();
    nodes[1].restart();
    let (line, seen) = wait_state(&mut c, "node2", "up", DEADLINE);
    let took = seen - restarting;
    eprintln!("node2 up {took:?} after restart");
    // RECOVERY_THRESHOLD successful heartbeats are RECOVERY_THRESHOLD - 1 heartbeat intervals
    // apart at least (less 5 ms per interval: tokio starts a tick up to 5 ms late without
    // moving the next one).
    let intervals = RECOVERY_THRESHOLD - 1;
    let lower = (HEARTBEAT - Duration::from_millis(5)) * intervals;
    assert!(
        took >= lower,
        "node2 up {took:?} after restart: fewer than {RECOVERY_THRESHOLD} heartbeats ({lower:?}) can have succeeded"
    );
    // And not much more: the first heartbeat after the restart starts counting.
    let upper = HEARTBEAT * RECOVERY_THRESHOLD + MARGIN;
    assert!(
        took <= upper,
        "node2 up {took:?} after restart, bound {upper:?}"
    );
    assert_eq!(line["up_transitions"], "1", "{line:?}");
    assert_eq!(line["down_transitions"], "1", "no flapping: {line:?}");
    assert_eq!(
        line["health_reason"], "",
        "reason cleared once up: {line:?}"
    );

    let r = http_get(admin, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let body = metrics(admin);
    for (series, value) in [
        ("strata_node_up{node=\"node2\"}", "1"),
        ("strata_node_down_transitions_total{node=\"node2\"}", "1"),
        ("strata_node_up_transitions_total{node=\"node2\"}", "1"),
    ] {
        assert_eq!(
            sample(&body, series).as_deref(),
            Some(value),
            "{series} in\n{body}"
        );
    }
    let n2 = &strata_nodes(&mut c)["node2"];
    assert_eq!(n2["state"], Resp::bulk("up"), "{n2:?}");
    assert_eq!(n2["up_transitions"], Resp::Int(1), "{n2:?}");

    // Requests reach it again (the first ones may still meet a reconnecting connection).
    let key = strata.key_on(1, "p:", &[]);
    poll_until(DEADLINE, "SET on node2 after recovery", || {
        (c.call(&["SET", &key, "back"]) == Resp::ok()).then_some(())
    });
    assert_eq!(nodes[1].get(&key).as_deref(), Some("back"));
    // Stays up: still one transition each way.
    let line = node_info(&mut c, "node2");
    assert_eq!(
        (num(&line, "down_transitions"), num(&line, "up_transitions")),
        (1, 1),
        "{line:?}"
    );
}

#[test]
fn eject_on_down_serves_a_down_nodes_keys_from_the_next_node_until_it_is_back() {
    let mut nodes = RedisNode::start_many(3);
    let strata = start(&nodes);
    let mut c = strata.raw();
    assert_all_up(&mut c);
    let key = strata.key_on(1, "e:", &[]);
    let preference = strata.ring().preference_list(key.as_bytes(), 3);
    assert_eq!(preference[0], 1, "{key} is node2's");
    let next = preference[1];
    // A key of the same node in a layer that does not eject, for contrast.
    let plain = strata.key_on(1, "p:", &[]);

    assert_eq!(c.call(&["SET", &key, "before"]), Resp::ok());
    assert_eq!(nodes[1].get(&key).as_deref(), Some("before"));
    assert_eq!(nodes[next].get(&key), None);

    nodes[1].kill();
    wait_state(&mut c, "node2", "down", DEADLINE);

    // Ejected: the key is the next node's while node2 is down (it starts empty there).
    assert_eq!(c.call(&["GET", &key]), Resp::Nil);
    assert_eq!(c.call(&["SET", &key, "during"]), Resp::ok());
    assert_eq!(c.call(&["GET", &key]), Resp::bulk("during"));
    assert_eq!(
        nodes[next].get(&key).as_deref(),
        Some("during"),
        "served by node{}",
        next + 1
    );
    // Not ejected: the same node's key fails fast.
    let text = c.call(&["GET", &plain]).error_text();
    assert!(
        text.starts_with(&marked_down_prefix(&nodes[1], 1)),
        "{text:?}"
    );

    nodes[1].restart();
    wait_state(&mut c, "node2", "up", DEADLINE);

    // Back on its own node, which the restart emptied: the write made while it was down is
    // not seen (it stays, orphaned, on the next node until its TTL or eviction). That is the
    // trade-off of ejection: availability of a cache while a node is down, at the price of
    // misses (or, for a node that comes back with its data, stale values) when it returns.
    assert_eq!(c.call(&["GET", &key]), Resp::Nil);
    assert_eq!(nodes[next].get(&key).as_deref(), Some("during"));
    assert_eq!(c.call(&["SET", &key, "after"]), Resp::ok());
    assert_eq!(nodes[1].get(&key).as_deref(), Some("after"));
    assert_eq!(nodes[next].get(&key).as_deref(), Some("during"));
}

#[test]
fn connections_closed_by_a_healthy_node_do_not_mark_it_down() {
    // A node that closes strata's connections (CLIENT KILL here; an idle `timeout` or a
    // restarted load balancer does the same) but answers at once on new ones is healthy: the
    // several connections that see the close at the same moment are one event, not
    // failure_threshold of them.
    let nodes = RedisNode::start_many(3);
    let strata = Strata::builder(&nodes)
        .section(LAYERS)
        .section(&health_section(FAILURE_THRESHOLD))
        .section("stats: {layer_keys_interval: 0s}")
        .workers(4)
        .start();
    let mut c = strata.raw();
    assert_all_up(&mut c);
    let key = strata.key_on(1, "p:", &[]);
    // Every worker's connection to node2 open and used.
    let mut clients: Vec<RawClient> = (0..8).map(|_| strata.raw()).collect();
    for cl in &mut clients {
        assert_eq!(cl.call(&["SET", &key, "v"]), Resp::ok());
    }
    poll_until(DEADLINE, "4 connections to node2", || {
        (num(&node_info(&mut c, "node2"), "connections") == 4).then_some(())
    });

    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query(&mut nodes[1].conn())
        .unwrap();
    assert!(
        killed >= 5,
        "killed {killed} connections (4 workers + heartbeat)"
    );
    // An invariant over a bounded window (not a wait for a condition): node2 stays up over the
    // next FAILURE_THRESHOLD + 2 heartbeats, longer than separate failures take to add up.
    let end = Instant::now() + HEARTBEAT * (FAILURE_THRESHOLD + 2);
    while Instant::now() < end {
        let line = node_info(&mut c, "node2");
        assert_eq!(line["state"], "up", "{line:?}");
        std::thread::sleep(common::POLL_STEP);
    }
    let line = node_info(&mut c, "node2");
    assert_eq!(line["down_transitions"], "0", "{line:?}");
    for cl in &mut clients {
        poll_until(DEADLINE, "GET on node2 after CLIENT KILL", || {
            (cl.call(&["GET", &key]) == Resp::bulk("v")).then_some(())
        });
    }
}
