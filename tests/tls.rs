//! TLS on both sides against real processes: strata in front of password-protected
//! `redis-server --tls-port` nodes that require a client certificate, serving plain and TLS
//! clients (its own test client and `redis-cli --tls`) with replication, pub/sub and blocking
//! commands; mutual TLS and the oldest protocol version on the client side; the nodes'
//! certificates verified (a wrong CA or server name marks the node down with the TLS reason,
//! `insecure_skip_verify` accepts anything); a reload reads the certificate files again.
//!
//! Certificates are made at test time (`common::tls::Pki`, rcgen). Every wait is a poll.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::layers::{node_lines, stats_field};
use common::tls::Pki;
use common::{poll_until, RawClient, RedisNode, Resp, Strata, StrataBuilder, DEADLINE};

const PASSWORD: &str = "tls-and-a-password";

/// The harness's backend section with `extra` added.
fn backend(extra: &str) -> String {
    format!("backend: {{reconnect_backoff_min: 20ms, reconnect_backoff_max: 200ms, {extra}}}")
}

/// A TLS listener on a free port with the server certificate of `pki`, plus `extra` fields.
fn listener(pki: &Pki, extra: &str) -> String {
    format!(
        "tls: {{listen: '127.0.0.1:0', cert: '{}', key: '{}'{extra}}}",
        pki.p("server.crt"),
        pki.p("server.key")
    )
}

fn tls_addr(strata: &Strata) -> String {
    strata
        .handle()
        .tls_addr
        .expect("a TLS listener")
        .to_string()
}

#[test]
fn strata_serves_tls_clients_in_front_of_password_protected_tls_nodes() {
    let pki = Pki::new("strata test CA");
    let nodes: Vec<RedisNode> = (0..3)
        .map(|_| RedisNode::start_tls(&pki, Some(PASSWORD), true))
        .collect();
    let strata = StrataBuilder::with_addrs(nodes.iter().map(RedisNode::tls_addr).collect())
        .section(&backend(&format!(
            "password: {PASSWORD}, tls: {{ca: '{}', cert: '{}', key: '{}'}}",
            pki.p("ca.crt"),
            pki.p("client.crt"),
            pki.p("client.key")
        )))
        .section(&listener(&pki, ""))
        .section(
            "layers:\n  - {name: route, prefix: 'route:', replication: 3, write_consistency: quorum, read_consistency: quorum}",
        )
        .start();
    let mut plain = strata.raw();
    poll_until(DEADLINE, "every node up over TLS", || {
        let lines = node_lines(&mut plain);
        (lines.len() == 3
            && lines
                .values()
                .all(|l| l["state"] == "up" && l["tls"] == "1"))
        .then_some(())
    });

    let mut c = RawClient::connect_tls(&tls_addr(&strata), pki.client_config(false));
    assert_eq!(c.call(&["PING"]), Resp::status("PONG"));
    // Keys on every node, written over TLS both ways, read back by a plain client.
    for i in 0..30 {
        let key = format!("k{i}");
        assert_eq!(c.call(&["SET", &key, &format!("v{i}")]), Resp::ok());
        assert_eq!(plain.call(&["GET", &key]), Resp::bulk(format!("v{i}")));
    }
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    let values: Vec<Resp> = (0..30).map(|i| Resp::bulk(format!("v{i}"))).collect();
    assert_eq!(c.call(&mget), Resp::Array(values));

    // A replicated layer: the copy is on each node (checked on their plain ports).
    assert_eq!(c.call(&["SET", "route:q1", "model-a"]), Resp::ok());
    for node in &nodes {
        assert_eq!(node.get("route:q1").as_deref(), Some("model-a"));
    }
    assert_eq!(c.call(&["GET", "route:q1"]), Resp::bulk("model-a"));

    // Large values and a deep pipeline: replies larger than what one TLS record or one socket
    // write takes.
    let big = "x".repeat(1024 * 1024 + 17);
    assert_eq!(c.call(&["SET", "big", &big]), Resp::ok());
    let same = |r: Resp| r == Resp::bulk(&big);
    assert!(same(c.call(&["GET", "big"])), "GET big");
    let mut batch = Vec::new();
    for _ in 0..20 {
        batch.extend(common::encode_cmd(&["GET", "big"]));
        batch.extend(common::encode_cmd(&["GET", "k1"]));
    }
    c.send(&batch);
    for i in 0..20 {
        assert!(same(c.read_reply()), "GET big #{i}");
        assert_eq!(c.read_reply(), Resp::bulk("v1"));
    }

    // A blocking command (a dedicated node connection over TLS) released by a plain client.
    c.send_cmd(&["BLPOP", "queue", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(plain.call(&["RPUSH", "queue", "job"]), Resp::Int(1));
    assert_eq!(c.read_reply(), Resp::bulks(&["queue", "job"]));

    // Pub/sub: a TLS subscriber (its subscriber connection to the node is TLS too).
    let mut sub = RawClient::connect_tls(&tls_addr(&strata), pki.client_config(false));
    sub.call(&["SUBSCRIBE", "news"]);
    poll_until(DEADLINE, "the message to be delivered", || {
        (plain.call(&["PUBLISH", "news", "hello"]).int() == 1).then_some(())
    });
    assert_eq!(
        sub.read_reply(),
        Resp::Array(vec![
            Resp::bulk("message"),
            Resp::bulk("news"),
            Resp::bulk("hello")
        ])
    );

    // redis-cli --tls, as a user would.
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &pki.p("ca.crt"), "-u"])
        .arg(format!("rediss://{}", tls_addr(&strata)))
        .args(["GET", "k7"])
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v7");

    assert!(stats_field(&mut plain, "strata_tls_connections_received") >= 3);
    assert_eq!(stats_field(&mut plain, "strata_tls_handshake_failures"), 0);
    let port = tls_addr(&strata).rsplit(':').next().unwrap().to_string();
    let server = common::layers::info(&mut plain, "server");
    assert!(
        server.contains(&format!("strata_tls_port:{port}\r\n")),
        "{server}"
    );
}

#[test]
fn mutual_tls_minimum_version_and_handshake_timeout_on_the_client_side() {
    let pki = Pki::new("strata test CA");
    let node = RedisNode::start();
    let strata = StrataBuilder::new(std::slice::from_ref(&node))
        .section(&listener(
            &pki,
            &format!(
                ", client_ca: '{}', min_version: '1.3', handshake_timeout: 300ms",
                pki.p("ca.crt")
            ),
        ))
        .start();
    let addr = tls_addr(&strata);
    let mut plain = strata.raw();

    // With a certificate the CA signed: served.
    let mut c = RawClient::connect_tls(&addr, pki.client_config(true));
    assert_eq!(c.call(&["SET", "a", "1"]), Resp::ok());

    // Without one: refused (in TLS 1.3 the client learns it at its first read).
    let refused = RawClient::try_connect_tls(&addr, pki.client_config(false))
        .ok()
        .and_then(|mut c| c.try_call(&["PING"]));
    assert_eq!(refused, None, "a client without a certificate was served");

    // With a certificate of another CA: refused.
    let other = Pki::new("another CA");
    let refused = RawClient::try_connect_tls(&addr, other.client_config(true))
        .ok()
        .and_then(|mut c| c.try_call(&["PING"]));
    assert_eq!(refused, None, "a client of another CA was served");

    // TLS 1.2 only: below min_version.
    let tls12 = pki.client_config_versions(true, &[&rustls::version::TLS12]);
    assert!(RawClient::try_connect_tls(&addr, tls12).is_err());

    // A client that never starts the handshake is closed after handshake_timeout.
    let mut silent = RawClient::connect(&addr);
    silent.expect_closed();

    poll_until(DEADLINE, "four failed handshakes counted", || {
        (stats_field(&mut plain, "strata_tls_handshake_failures") == 4).then_some(())
    });
    assert_eq!(
        stats_field(&mut plain, "strata_tls_connections_received"),
        1
    );
    // The failed ones left no client behind.
    poll_until(DEADLINE, "only the two clients connected", || {
        let clients = common::layers::info(&mut plain, "clients");
        clients.contains("connected_clients:2\r\n").then_some(())
    });
}

#[test]
fn node_certificates_are_verified_unless_told_otherwise() {
    let pki = Pki::new("the nodes' CA");
    let other = Pki::new("some other CA");
    let nodes: Vec<RedisNode> = (0..3)
        .map(|_| RedisNode::start_tls(&pki, None, false))
        .collect();
    let strata = StrataBuilder::with_addrs(nodes.iter().map(RedisNode::tls_addr).collect())
        .section(&backend(&format!("tls: {{ca: '{}'}}", pki.p("ca.crt"))))
        .section(
            "health: {heartbeat_interval: 100ms, node_timeout: 1s, failure_threshold: 3, recovery_threshold: 2}",
        )
        .section("admin_listen: 127.0.0.1:0")
        // node1 trusts another CA; node2 expects another name; node3 trusts anything.
        .node_fields(0, &format!("tls: {{ca: '{}'}}", other.p("ca.crt")))
        .node_fields(1, "tls: {server_name: db.example.org}")
        .node_fields(
            2,
            &format!("tls: {{ca: '{}', insecure_skip_verify: true}}", other.p("ca.crt")),
        )
        .start();
    let mut c = strata.raw();
    let lines = poll_until(DEADLINE, "node1 and node2 down, node3 up", || {
        let lines = node_lines(&mut c);
        (lines["node1"]["state"] == "down"
            && lines["node2"]["state"] == "down"
            && lines["node3"]["state"] == "up")
            .then_some(lines)
    });
    for node in ["node1", "node2"] {
        let reason = &lines[node]["health_reason"];
        assert!(reason.contains("TLS handshake failed"), "{node}: {reason}");
    }
    assert!(
        lines["node1"]["health_reason"].contains("UnknownIssuer"),
        "{:?}",
        lines["node1"]
    );
    assert!(
        lines["node2"]["health_reason"].contains("not valid for name"),
        "{:?}",
        lines["node2"]
    );
    // A key of node1 gets the unavailable error naming the node; node3 serves its keys.
    let key_of = |node: &str| {
        let index: usize = node.trim_start_matches("node").parse().unwrap();
        strata.key_on(index - 1, "k", &[])
    };
    let reply = c.call(&["GET", &key_of("node1")]);
    let text = reply.error_text();
    assert!(
        text.contains("node1") && text.contains("TLS handshake failed"),
        "{text}"
    );
    assert_eq!(c.call(&["SET", &key_of("node3"), "v"]), Resp::ok());
    assert_eq!(nodes[2].get(&key_of("node3")).as_deref(), Some("v"));
    let metrics = common::layers::metrics(strata.handle().admin_addr.expect("admin endpoint"));
    assert!(
        metrics.contains("strata_node_errors_by_kind_total{node=\"node1\",kind=\"tls\"}"),
        "no tls kind in the node error figures"
    );
}

#[test]
fn a_reload_reads_the_listener_certificate_again() {
    let pki = Pki::new("strata test CA");
    let node = RedisNode::start();
    let strata = StrataBuilder::new(std::slice::from_ref(&node))
        .section(&listener(&pki, ""))
        .start_with_file();
    let addr = tls_addr(&strata);
    let mut before = RawClient::connect_tls(&addr, pki.client_config(false));
    assert_eq!(before.call(&["SET", "a", "1"]), Resp::ok());
    let old_cert = before.peer_certificate();

    pki.renew_server();
    let mut c = strata.raw();
    let reply = c.call(&["STRATA", "RELOAD"]);
    assert!(!reply.is_error(), "{reply:?}");

    let mut after = RawClient::connect_tls(&addr, pki.client_config(false));
    assert_ne!(
        after.peer_certificate(),
        old_cert,
        "the old certificate is still served"
    );
    assert_eq!(after.call(&["GET", "a"]), Resp::bulk("1"));
    // The connection made before the reload goes on.
    assert_eq!(before.call(&["GET", "a"]), Resp::bulk("1"));
}
