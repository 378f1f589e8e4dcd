//! Blocking commands over real Redis nodes: BLPOP woken by another client's RPUSH, timeouts
//! honoured, XREAD BLOCK woken by XADD, CROSSSLOT for keys on two nodes, other clients served
//! while many are blocked, a client that goes away while blocked releases its node connection,
//! and the per-node bound on dedicated connections.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::{poll_until, RedisNode, Resp, Strata, DEADLINE};

/// `blocked_clients` in the node's INFO.
fn blocked_clients(node: &RedisNode) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut node.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn blpop_is_woken_by_another_clients_rpush() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let owner = strata.owner("queue:1");
    let mut waiter = strata.raw();
    waiter.send_cmd(&["BLPOP", "queue:1", "0"]);
    poll_until(DEADLINE, "BLPOP blocked on the node", || {
        (blocked_clients(&nodes[owner]) == 1).then_some(())
    });
    let mut pusher = strata.raw();
    assert_eq!(pusher.call(&["RPUSH", "queue:1", "job"]), Resp::Int(1));
    assert_eq!(
        waiter.read_reply(),
        Resp::Array(vec![Resp::bulk("queue:1"), Resp::bulk("job")])
    );
    // The connection serves the next command as usual.
    assert_eq!(waiter.call(&["PING"]), Resp::Status("PONG".into()));
}

#[test]
fn timeouts_are_the_clients_and_others_are_served_meanwhile() {
    let nodes = RedisNode::start_many(2);
    let strata = Strata::start(&nodes);
    let owner = strata.owner("q:empty");
    let mut blocked: Vec<_> = (0..10)
        .map(|_| {
            let mut c = strata.raw();
            c.send_cmd(&["BLPOP", "q:empty", "2"]);
            c
        })
        .collect();
    poll_until(DEADLINE, "ten BLPOPs blocked", || {
        (blocked_clients(&nodes[owner]) == 10).then_some(())
    });
    // Another client of the same node is answered at once.
    let mut other = strata.raw();
    let started = Instant::now();
    let key = strata.key_on(owner, "fast:", &[]);
    assert_eq!(other.call(&["SET", &key, "v"]), Resp::ok());
    assert_eq!(other.call(&["GET", &key]), Resp::bulk("v"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    for c in &mut blocked {
        assert_eq!(c.read_reply(), Resp::NilArray);
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "the 2 s timeout took {waited:?}"
    );
    // BZPOPMIN with a fractional timeout.
    let mut c = strata.raw();
    assert_eq!(c.call(&["BZPOPMIN", "z:empty", "0.1"]), Resp::NilArray);
}

#[test]
fn xread_block_is_woken_by_xadd_and_keys_on_two_nodes_are_refused() {
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);
    let mut reader = strata.raw();
    reader.send_cmd(&["XREAD", "BLOCK", "5000", "STREAMS", "events", "$"]);
    let owner = strata.owner("events");
    poll_until(DEADLINE, "XREAD blocked", || {
        (blocked_clients(&nodes[owner]) == 1).then_some(())
    });
    let mut writer = strata.raw();
    let id = writer.call(&["XADD", "events", "*", "k", "v"]).text();
    let got = reader.read_reply();
    assert_eq!(got.array()[0].array()[0], Resp::bulk("events"), "{got:?}");
    assert_eq!(
        got.array()[0].array()[1].array()[0].array()[0],
        Resp::bulk(&id)
    );

    let a = strata.key_on(0, "x:", &[]);
    let b = strata.key_on(1, "x:", &[]);
    let mut c = strata.raw();
    assert_eq!(
        c.call(&["BLPOP", &a, &b, "1"]).error_text(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    // Hash tags put them together.
    assert_eq!(c.call(&["BLPOP", "{t}a", "{t}b", "0.1"]), Resp::NilArray);
}

#[test]
fn a_client_gone_while_blocked_releases_its_node_connection() {
    let nodes = RedisNode::start_many(1);
    let strata = Strata::builder(&nodes)
        .section("limits: {max_dedicated_per_node: 2}")
        .start();
    {
        let mut c = strata.raw();
        c.send_cmd(&["BLPOP", "gone", "0"]);
        poll_until(DEADLINE, "BLPOP blocked", || {
            (blocked_clients(&nodes[0]) == 1).then_some(())
        });
    } // the client disconnects here
    poll_until(DEADLINE, "the node to drop the blocked command", || {
        (blocked_clients(&nodes[0]) == 0).then_some(())
    });
    // The connection counts against the bound no more: two can block again, a third is
    // refused with the reason.
    let mut one = strata.raw();
    let mut two = strata.raw();
    one.send_cmd(&["BLPOP", "gone", "0"]);
    two.send_cmd(&["BLPOP", "gone", "0"]);
    poll_until(DEADLINE, "two BLPOPs blocked", || {
        (blocked_clients(&nodes[0]) == 2).then_some(())
    });
    let mut three = strata.raw();
    assert_eq!(
        three.call(&["BLPOP", "gone", "0"]).error_text(),
        "ERR strata: node node1 has 2 dedicated connections in use (limits.max_dedicated_per_node)"
    );
    let mut pusher = strata.raw();
    pusher.call(&["RPUSH", "gone", "a", "b"]);
    assert_eq!(one.read_reply().array().len(), 2);
    assert_eq!(two.read_reply().array().len(), 2);
    // Finished leases are reused, not reopened: blocking works on.
    assert_eq!(three.call(&["BLPOP", "gone", "0.1"]), Resp::NilArray);
}

#[test]
fn a_node_marked_down_answers_blocking_and_transactions_with_the_unavailable_error() {
    let mut nodes = RedisNode::start_many(2);
    let strata = Strata::builder(&nodes)
        .section("health: {heartbeat_interval: 100ms, node_timeout: 1s, failure_threshold: 2, recovery_threshold: 2}")
        .start();
    let key = strata.key_on(0, "down:", &[]);
    nodes[0].kill();
    let mut c = strata.raw();
    poll_until(DEADLINE, "node1 marked down", || {
        let text = c.call(&["INFO", "nodes"]).text();
        text.lines()
            .any(|l| l.starts_with("node_node1:") && l.contains("state=down"))
            .then_some(())
    });
    for reply in [c.call(&["BLPOP", &key, "0"]), {
        c.call(&["MULTI"]);
        c.call(&["SET", &key, "v"]);
        c.call(&["EXEC"])
    }] {
        let text = reply.error_text();
        assert!(
            text.starts_with("ERR strata: node node1 (")
                && text.contains("unavailable: marked down"),
            "{text}"
        );
        assert!(!text.contains("ERR strata: ERR"), "{text}");
    }
}
