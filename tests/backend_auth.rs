//! Backend authentication against real `redis-server --requirepass` nodes: with the right
//! password strata serves plain and RESP3 clients, blocking commands (dedicated connections),
//! pub/sub (subscriber connections), its heartbeats keep the nodes up and a rebalance walk
//! moves keys; a wrong password marks the node down once with the reason `authentication
//! failed` and its keys get the unavailable error naming it, while a replica with the right
//! password still serves; an ACL user (`backend.username`) works; a reload with a new password
//! applies to the connections opened after it.
//!
//! Every wait is a poll against a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::layers::node_lines;
use common::{poll_until, RawClient, RedisNode, Resp, Strata, StrataBuilder, DEADLINE};

const PASSWORD: &str = "s3cret-pw";

/// The harness's backend section plus `extra` (credentials).
fn backend(extra: &str) -> String {
    format!("backend: {{reconnect_backoff_min: 20ms, reconnect_backoff_max: 200ms, {extra}}}")
}

/// Fast heartbeats, so the tests see several within their deadlines.
const HEALTH: &str =
    "health: {heartbeat_interval: 100ms, node_timeout: 1s, failure_threshold: 3, recovery_threshold: 2}";

fn builder(nodes: &[RedisNode], credentials: &str) -> StrataBuilder {
    Strata::builder(nodes)
        .section(&backend(credentials))
        .section(HEALTH)
        .section("stats: {layer_keys_interval: 0s}")
}

/// `calls` of PING in the node's `INFO commandstats`: heartbeats that got through AUTH.
fn pings(node: &RedisNode) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut node.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_ping:"))
        .and_then(|f| f.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .map_or(0, |n| n.parse().unwrap())
}

/// The `user=` of every connection the node has, but the one asking.
fn client_users(node: &RedisNode) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut node.conn())
        .unwrap();
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("user="))
                .map(str::to_string)
        })
        .collect()
}

fn node_line(c: &mut RawClient, node: &str) -> BTreeMap<String, String> {
    node_lines(c)
        .remove(node)
        .unwrap_or_else(|| panic!("no INFO line for {node}"))
}

fn wait_state(c: &mut RawClient, node: &str, state: &str) -> BTreeMap<String, String> {
    poll_until(DEADLINE, &format!("{node} to be {state}"), || {
        let line = node_line(c, node);
        (line["state"] == state).then_some(line)
    })
}

/// A RESP3 connection of the `redis` crate to strata.
fn resp3(strata: &Strata) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", strata.addr())).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

#[test]
fn the_right_password_serves_keys_blocking_commands_pubsub_and_heartbeats() {
    let nodes: Vec<RedisNode> = (0..3)
        .map(|_| RedisNode::start_with_password(PASSWORD))
        .collect();
    let strata = builder(&nodes, &format!("password: {PASSWORD}")).start();
    let mut c = strata.raw();

    // Keys on every node, each found on the node that owns it.
    for (slot, node) in nodes.iter().enumerate() {
        let key = strata.key_on(slot, "k:", &[]);
        assert_eq!(c.call(&["SET", &key, "v"]), Resp::ok(), "{key}");
        assert_eq!(c.call(&["GET", &key]), Resp::bulk("v"), "{key}");
        assert_eq!(node.get(&key).as_deref(), Some("v"), "{key}");
    }

    // RESP3 clients: node connections opened with HELLO 3 AUTH.
    let mut con = resp3(&strata);
    let key = strata.key_on(1, "r3:", &[]);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("three")
        .query(&mut con)
        .unwrap();
    let got: String = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
    assert_eq!(got, "three");

    // A blocking command on a dedicated connection, woken by another client.
    let queue = strata.key_on(2, "q:", &[]);
    let mut waiter = strata.raw();
    waiter.send_cmd(&["BLPOP", &queue, "5"]);
    poll_until(DEADLINE, "BLPOP blocked on the node", || {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut nodes[2].conn())
            .unwrap();
        info.contains("blocked_clients:1").then_some(())
    });
    assert_eq!(c.call(&["RPUSH", &queue, "job"]), Resp::Int(1));
    assert_eq!(
        waiter.read_reply(),
        Resp::Array(vec![Resp::bulk(&queue), Resp::bulk("job")])
    );

    // Pub/sub: the subscriber connection to the channel's node authenticates too.
    let channel = strata.key_on(0, "chan:", &[]);
    let mut sub = strata.raw();
    sub.send_cmd(&["SUBSCRIBE", &channel]);
    assert_eq!(
        sub.read_reply(),
        Resp::Array(vec![
            Resp::bulk("subscribe"),
            Resp::bulk(&channel),
            Resp::Int(1)
        ])
    );
    poll_until(DEADLINE, "a subscriber on the channel's node", || {
        (c.call(&["PUBLISH", &channel, "hello"]) == Resp::Int(1)).then_some(())
    });
    assert_eq!(
        sub.read_reply(),
        Resp::Array(vec![
            Resp::bulk("message"),
            Resp::bulk(&channel),
            Resp::bulk("hello")
        ])
    );

    // Heartbeats get through AUTH (a PING refused with NOAUTH is not counted as a call), and
    // the nodes stay up all along.
    for node in &nodes {
        poll_until(DEADLINE, "three heartbeats on the node", || {
            (pings(node) >= 3).then_some(())
        });
    }
    for id in ["node1", "node2", "node3"] {
        let line = node_line(&mut c, id);
        assert_eq!(line["state"], "up", "{id}: {line:?}");
        assert_eq!(line["down_transitions"], "0", "{id}: {line:?}");
    }
    // The password shows nowhere.
    let info = c.call(&["INFO", "all"]).text();
    assert!(!info.contains(PASSWORD), "password in INFO");
}

#[test]
fn a_wrong_password_marks_the_node_down_once_and_replicas_still_serve() {
    let nodes: Vec<RedisNode> = (0..2)
        .map(|_| RedisNode::start_with_password(PASSWORD))
        .collect();
    let strata = builder(&nodes, &format!("password: {PASSWORD}"))
        .node_fields(1, "password: not-the-password")
        .section(
            "layers:\n  - { name: two, prefix: \"two:\", replication: 2, write_consistency: eventual }\n",
        )
        .start();
    let mut c = strata.raw();

    let line = wait_state(&mut c, "node2", "down");
    assert!(
        line["health_reason"].starts_with("authentication failed: WRONGPASS"),
        "{line:?}"
    );
    assert_eq!(line["down_transitions"], "1", "{line:?}");

    // A key of the node: the unavailable error, naming it and the reason.
    let key = strata.key_on(1, "one:", &[]);
    let text = c.call(&["GET", &key]).error_text();
    let prefix = format!(
        "ERR strata: node node2 ({}) unavailable: marked down: authentication failed",
        nodes[1].addr()
    );
    assert!(text.starts_with(&prefix), "{text:?}");
    assert!(!text.contains("not-the-password"), "{text:?}");

    // The other node serves its keys, and a two-copy key whose primary is node2 is read from
    // node1.
    let other = strata.key_on(0, "one:", &[]);
    assert_eq!(c.call(&["SET", &other, "w"]), Resp::ok());
    assert_eq!(c.call(&["GET", &other]), Resp::bulk("w"));
    let both = strata.key_on(1, "two:", &[]);
    assert_eq!(c.call(&["SET", &both, "x"]), Resp::ok());
    assert_eq!(c.call(&["GET", &both]), Resp::bulk("x"));
    assert_eq!(nodes[0].get(&both).as_deref(), Some("x"));

    // Still one transition after more heartbeats and reconnect attempts were refused (each
    // a new connection to the node; the test asks on one connection of its own).
    let mut own = nodes[1].conn();
    let mut connections = || -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut own).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let seen = connections();
    poll_until(DEADLINE, "more refused attempts", || {
        (connections() >= seen + 10).then_some(())
    });
    let line = node_line(&mut c, "node2");
    assert_eq!(line["state"], "down", "{line:?}");
    assert_eq!(line["down_transitions"], "1", "{line:?}");
    assert_eq!(node_line(&mut c, "node1")["state"], "up");
}

#[test]
fn a_node_that_wants_a_password_strata_lacks_is_down_for_authentication() {
    let nodes = vec![RedisNode::start(), RedisNode::start_with_password(PASSWORD)];
    let strata = builder(&nodes, "").start();
    let mut c = strata.raw();
    let line = wait_state(&mut c, "node2", "down");
    assert!(
        line["health_reason"].starts_with("authentication failed: NOAUTH"),
        "{line:?}"
    );
    assert_eq!(line["down_transitions"], "1", "{line:?}");
    assert_eq!(node_line(&mut c, "node1")["state"], "up");
}

#[test]
fn an_acl_user_authenticates_with_username_and_password() {
    let nodes: Vec<RedisNode> = (0..2)
        .map(|_| RedisNode::start_with_password(PASSWORD))
        .collect();
    for node in &nodes {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "strata", "on", ">user-pw", "~*", "&*", "+@all"])
            .query(&mut node.conn())
            .unwrap();
    }
    let strata = builder(&nodes, "username: strata, password: user-pw").start();
    let mut c = strata.raw();
    for (slot, node) in nodes.iter().enumerate() {
        let key = strata.key_on(slot, "acl:", &[]);
        assert_eq!(c.call(&["SET", &key, "u"]), Resp::ok());
        assert_eq!(c.call(&["GET", &key]), Resp::bulk("u"));
        assert_eq!(node.get(&key).as_deref(), Some("u"));
    }
    let mut con = resp3(&strata);
    let key = strata.key_on(1, "acl3:", &[]);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("r")
        .query(&mut con)
        .unwrap();
    assert_eq!(nodes[1].get(&key).as_deref(), Some("r"));
    // Every connection strata holds to the nodes is the ACL user's.
    for node in &nodes {
        poll_until(DEADLINE, "heartbeats on the node", || {
            (pings(node) >= 2).then_some(())
        });
        let users = client_users(node);
        assert!(!users.is_empty());
        assert!(users.iter().all(|u| u == "strata"), "{users:?}");
    }
    // A node-level username override that the node does not know: refused, that node only.
    drop(strata);
    let strata = builder(&nodes, "username: strata, password: user-pw")
        .node_fields(0, "username: nobody")
        .start();
    let mut c = strata.raw();
    let line = wait_state(&mut c, "node1", "down");
    assert!(
        line["health_reason"].starts_with("authentication failed"),
        "{line:?}"
    );
    assert_eq!(node_line(&mut c, "node2")["state"], "up");
}

#[test]
fn a_rebalance_walk_authenticates_to_every_node() {
    let mut nodes: Vec<RedisNode> = (0..2)
        .map(|_| RedisNode::start_with_password(PASSWORD))
        .collect();
    let strata = builder(&nodes, &format!("password: {PASSWORD}")).start();
    let mut c = strata.raw();
    let keys: Vec<String> = (0..200).map(|i| format!("rb:{i}")).collect();
    for key in &keys {
        assert_eq!(c.call(&["SET", key, "v"]), Resp::ok());
    }
    nodes.push(RedisNode::start_with_password(PASSWORD));
    let added = c.call(&["STRATA", "NODE", "ADD", "node3", &nodes[2].addr()]);
    assert!(!added.is_error(), "{added:?}");
    let started = c.call(&["STRATA", "REBALANCE"]);
    assert!(!started.is_error(), "{started:?}");
    poll_until(Duration::from_secs(30), "the rebalance to finish", || {
        let info = c.call(&["INFO", "rebalance"]).text();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        (field("rebalance_running") == "0" && field("rebalance_runs") == "1").then_some(())
    });
    assert!(nodes[2].dbsize() > 0, "nothing moved to the new node");
    for key in &keys {
        let owner = strata.owner(key);
        assert!(nodes[owner].exists(key), "{key} not on node{}", owner + 1);
        assert_eq!(c.call(&["GET", key]), Resp::bulk("v"), "{key}");
    }
}

#[test]
fn a_reload_with_a_new_password_applies_to_new_connections() {
    let nodes = vec![RedisNode::start_with_password(PASSWORD)];
    let strata = builder(&nodes, "password: old-pw").start_with_file();
    let mut c = strata.raw();
    let line = wait_state(&mut c, "node1", "down");
    assert!(
        line["health_reason"].starts_with("authentication failed"),
        "{line:?}"
    );
    let yaml = std::fs::read_to_string(strata.config_path())
        .unwrap()
        .replace("password: old-pw", &format!("password: {PASSWORD}"));
    std::fs::write(strata.config_path(), yaml).unwrap();
    let reloaded = c.call(&["STRATA", "RELOAD"]);
    assert!(!reloaded.is_error(), "{reloaded:?}");
    // The credentials apply while running: no restart needed for them.
    let restart_needed = reloaded
        .array()
        .chunks(2)
        .find(|pair| pair[0] == Resp::bulk("restart_needed"))
        .map(|pair| pair[1].clone());
    assert_eq!(restart_needed, Some(Resp::Array(vec![])), "{reloaded:?}");
    wait_state(&mut c, "node1", "up");
    poll_until(DEADLINE, "a SET through the new password", || {
        (c.call(&["SET", "re:k", "v"]) == Resp::ok()).then_some(())
    });
    assert_eq!(nodes[0].get("re:k").as_deref(), Some("v"));
}

/// `strata check` on a file with credentials: valid, every password printed `<redacted>`; a
/// username without a password is refused (exit 64) naming the node.
#[test]
fn strata_check_redacts_passwords_and_refuses_a_username_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.yaml");
    let check = |yaml: &str| {
        std::fs::write(&path, yaml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(
        "nodes:\n  - {id: a, addr: 'h:1'}\n  - {id: b, addr: 'h:2', username: ops, password: node-secret}\nbackend: {password: global-secret}\n",
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        !printed.contains("global-secret") && !printed.contains("node-secret"),
        "{printed}"
    );
    assert_eq!(
        printed.matches("password: <redacted>").count(),
        2,
        "{printed}"
    );
    assert!(printed.contains("username: ops"), "{printed}");

    let out = check("nodes:\n  - {id: a, addr: 'h:1'}\nbackend: {username: app}\n");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("nodes[0] (a): username \"app\" is set without a password"),
        "{err}"
    );
}
