//! The admin endpoint over real Redis nodes: `/metrics` in the Prometheus text format and
//! `/healthz` as nodes go down.

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
fn metrics_and_healthz_over_http() {
    let mut nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let admin = strata.handle().admin_addr.expect("admin endpoint");
    let health = poll_until(DEADLINE, "/healthz ok", || {
        let r = http_get(admin, "/healthz");
        (r.status == 200 && r.body == "ok\n").then_some(r)
    });
    assert!(health.content_type.starts_with("text/plain"));

    let mut c = strata.raw();
    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());
    assert_eq!(call(&mut c, &["SET", "route:h", "v"]), Resp::ok());
    assert_eq!(call(&mut c, &["GET", "route:h"]), Resp::bulk("v"));
    assert_eq!(call(&mut c, &["GET", "route:nope"]), Resp::Nil);
    assert_eq!(call(&mut c, &["GET", "route:h"]), Resp::bulk("v"));

    let body = metrics(admin);
    let expect = [
        ("strata_layer_hits_total{layer=\"route\"}", "2"),
        ("strata_layer_misses_total{layer=\"route\"}", "1"),
        ("strata_layer_writes_total{layer=\"route\"}", "1"),
        ("strata_layer_expirations_total{layer=\"route\"}", "1"),
        ("strata_layer_errors_total{layer=\"route\"}", "0"),
        ("strata_layer_hits_total{layer=\"meta\"}", "0"),
        ("strata_layer_hits_total{layer=\"default\"}", "0"),
        ("strata_layer_keys{layer=\"route\"}", "-1"),
        (
            "strata_layer_request_duration_seconds_bucket{layer=\"route\",class=\"read\",le=\"+Inf\"}",
            "3",
        ),
        (
            "strata_layer_request_duration_seconds_count{layer=\"route\",class=\"read\"}",
            "3",
        ),
        (
            "strata_layer_request_duration_seconds_bucket{layer=\"route\",class=\"write\",le=\"+Inf\"}",
            "1",
        ),
        (
            "strata_layer_request_duration_seconds_bucket{layer=\"load\",class=\"read\",le=\"+Inf\"}",
            "0",
        ),
        ("strata_connected_clients", "1"),
        ("strata_client_output_buffer_limit_disconnections_total", "0"),
        ("strata_client_query_buffer_limit_disconnections_total", "0"),
        ("strata_idle_timeout_disconnections_total", "0"),
        ("strata_commands_total{command=\"get\"}", "3"),
        ("strata_commands_total{command=\"set\"}", "1"),
        ("strata_commands_total{command=\"config\"}", "1"),
        ("strata_command_errors_total{command=\"get\"}", "0"),
    ];
    for (series, value) in expect {
        assert_eq!(
            sample(&body, series).as_deref(),
            Some(value),
            "{series} in\n{body}"
        );
    }
    for n in 1..=3 {
        assert_eq!(
            sample(&body, &format!("strata_node_up{{node=\"node{n}\"}}")).as_deref(),
            Some("1"),
            "node{n} in\n{body}"
        );
        let requests: u64 = sample(
            &body,
            &format!("strata_node_requests_total{{node=\"node{n}\"}}"),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!(requests >= 1, "node{n}");
    }
    for family in [
        "# TYPE strata_layer_hits_total counter",
        "# TYPE strata_layer_keys gauge",
        "# TYPE strata_layer_request_duration_seconds histogram",
        "# TYPE strata_node_up gauge",
        "# TYPE strata_connected_clients gauge",
    ] {
        assert!(body.lines().any(|l| l == family), "{family} in\n{body}");
    }
    // The 0.0.4 text format: no OpenMetrics `# EOF` trailer.
    assert!(body.ends_with('\n') && !body.contains("# EOF"), "{body}");

    let r = http_get(admin, "/nope");
    assert_eq!(r.status, 404);

    // One node down: degraded, still 200; the metrics say which.
    nodes[0].kill();
    let r = poll_until(DEADLINE, "/healthz degraded", || {
        let r = http_get(admin, "/healthz");
        r.body.starts_with("degraded").then_some(r)
    });
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "degraded: not up: node1\n");
    let body = poll_until(DEADLINE, "node1 reported down", || {
        let body = metrics(admin);
        (sample(&body, "strata_node_up{node=\"node1\"}").as_deref() == Some("0")).then_some(body)
    });
    assert_eq!(
        sample(&body, "strata_node_up{node=\"node2\"}").as_deref(),
        Some("1")
    );

    // Every node down: 503.
    nodes[1].kill();
    nodes[2].kill();
    let r = poll_until(DEADLINE, "/healthz 503", || {
        let r = http_get(admin, "/healthz");
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.body, "unavailable: no node is up: node1 node2 node3\n");
}

// ---------------------------------------------------------------------------------------------
// STRATA INVALIDATE
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Node failures by kind
// ---------------------------------------------------------------------------------------------

/// `strata_node_errors_by_kind_total{node,kind}` for every counted kind of `node`.
fn errors_by_kind(body: &str, node: &str) -> BTreeMap<&'static str, u64> {
    ["refused", "timed_out", "closed", "protocol", "auth"]
        .into_iter()
        .map(|kind| {
            let series =
                format!("strata_node_errors_by_kind_total{{node=\"{node}\",kind=\"{kind}\"}}");
            let n = sample(body, &series)
                .unwrap_or_else(|| panic!("{series} in\n{body}"))
                .parse()
                .unwrap();
            (kind, n)
        })
        .collect()
}

fn node_sample(body: &str, metric: &str, node: &str) -> u64 {
    let series = format!("{metric}{{node=\"{node}\"}}");
    sample(body, &series)
        .unwrap_or_else(|| panic!("{series} in\n{body}"))
        .parse()
        .unwrap()
}

/// Resumes a SIGSTOPped node even when the test fails half-way.
struct Stopped<'a>(&'a RedisNode);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

/// A hung node's request counts as `timed_out` (as `strata_node_timeouts_total` does), a killed
/// node's as `refused` or `closed`; the kinds of a node sum to `strata_node_errors_total`.
#[test]
fn node_errors_are_counted_by_kind() {
    let mut nodes = RedisNode::start_many(2);
    let strata = start(&nodes, "");
    let admin = strata.handle().admin_addr.expect("admin endpoint");
    let mut c = strata.raw();
    wait_all_up(&mut c);
    let k0 = strata.key_on(0, "plain:", &[]);
    let k1 = strata.key_on(1, "plain:", &[]);
    assert_eq!(call(&mut c, &["SET", &k0, "v"]), Resp::ok());
    assert_eq!(call(&mut c, &["SET", &k1, "v"]), Resp::ok());
    assert_eq!(call(&mut c, &["CONFIG", "RESETSTAT"]), Resp::ok());

    {
        nodes[0].signal("STOP");
        let _stopped = Stopped(&nodes[0]);
        // timeouts.request is 1s in the test configuration.
        let reply = call(&mut c, &["GET", &k0]);
        assert!(reply.error_text().contains("timed out"), "{reply:?}");
    }
    let body = metrics(admin);
    let kinds = errors_by_kind(&body, "node1");
    let timeouts = node_sample(&body, "strata_node_timeouts_total", "node1");
    assert!(timeouts >= 1, "{body}");
    assert_eq!(kinds["timed_out"], timeouts, "{kinds:?}");
    assert_eq!(
        kinds.values().sum::<u64>(),
        node_sample(&body, "strata_node_errors_total", "node1"),
        "{kinds:?}"
    );
    assert!(
        errors_by_kind(&body, "node2").values().all(|&n| n == 0),
        "{body}"
    );

    nodes[1].kill();
    let body = poll_until(DEADLINE, "an error counted for node2", || {
        assert!(call(&mut c, &["GET", &k1]).is_error());
        let body = metrics(admin);
        (node_sample(&body, "strata_node_errors_total", "node2") > 0).then_some(body)
    });
    let kinds = errors_by_kind(&body, "node2");
    assert_eq!(
        kinds["refused"] + kinds["closed"],
        node_sample(&body, "strata_node_errors_total", "node2"),
        "{kinds:?}"
    );
    assert_eq!(kinds["timed_out"] + kinds["protocol"], 0, "{kinds:?}");
    assert_eq!(node_sample(&body, "strata_node_timeouts_total", "node2"), 0);
}
