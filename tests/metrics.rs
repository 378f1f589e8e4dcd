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
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::layers::*;
use common::{free_port, poll_until, RedisNode, Resp, Strata, DEADLINE};

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

// ---------------------------------------------------------------------------------------------
// The admin token (security.admin_token_sha256)
// ---------------------------------------------------------------------------------------------

/// The SHA-256 of `token` in hex, as `printf '%s' token | sha256sum` prints it.
fn sha256_hex(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A response as read off the socket: status, `WWW-Authenticate` (if any), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: String,
}

/// One HTTP/1.1 GET over a raw TCP connection, with `authorization` as the header's value if
/// given, read to the end (the endpoint closes after each response).
fn get_with(admin: SocketAddr, path: &str, authorization: Option<&str>) -> Answer {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = authorization
        .map(|v| format!("Authorization: {v}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes())
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let challenge = head
        .split("\r\n")
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("WWW-Authenticate")
                .then_some(value)
        })
        .map(str::to_string);
    Answer {
        status,
        challenge,
        body: body.to_string(),
    }
}

/// The binary (for its log and SIGHUP) with the admin endpoint behind a token: every path but
/// /healthz refused without it (401 and the challenge), with a wrong one (401 invalid_token,
/// counted, logged with the client's address and never the token) or a malformed one (400);
/// served with it; a new token in the file applies on SIGHUP, and removing it opens the
/// endpoint again.
#[test]
fn the_admin_token_guards_every_path_but_healthz_and_reloads() {
    let nodes = RedisNode::start_many(1);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let security = |extra: &str| format!("security: {{allow_dangerous_commands: true{extra}}}");
    let first = "first-token-Zm9vYmFy";
    let strata = Strata::builder(&nodes)
        .section(&format!("admin_listen: {admin}"))
        .section(&security(&format!(
            ", admin_token_sha256: {}",
            sha256_hex(first)
        )))
        .spawn();
    poll_until(DEADLINE, "the admin endpoint", || {
        TcpStream::connect(admin).ok().map(|_| ())
    });
    let bearer = |t: &str| format!("Bearer {t}");

    let r = get_with(admin, "/metrics", None);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.challenge.as_deref(), Some("Bearer realm=\"strata\""));
    let r = get_with(admin, "/nope", None);
    assert_eq!(
        r.status, 401,
        "unknown paths are behind the token too: {r:?}"
    );
    let r = get_with(admin, "/healthz", None);
    assert_eq!((r.status, r.challenge.as_deref()), (200, None), "{r:?}");
    let wrong = "wrong-token-guess";
    let r = get_with(admin, "/metrics", Some(&bearer(wrong)));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.challenge.as_deref(),
        Some("Bearer realm=\"strata\", error=\"invalid_token\"")
    );
    // The hash itself is no token.
    let r = get_with(admin, "/metrics", Some(&bearer(&sha256_hex(first))));
    assert_eq!(r.status, 401, "{r:?}");
    let r = get_with(admin, "/metrics", Some("Bearer two tokens"));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.challenge.as_deref(),
        Some("Bearer realm=\"strata\", error=\"invalid_request\"")
    );
    // Basic credentials are no bearer token: refused like none, and not counted.
    let r = get_with(admin, "/metrics", Some("Basic dXNlcjpwYXNz"));
    assert_eq!(r.status, 401, "{r:?}");

    let r = get_with(admin, "/metrics", Some(&bearer(first)));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        sample(&r.body, "strata_admin_access_denied_auth_total").as_deref(),
        Some("3"),
        "the wrong, the hash and the malformed one"
    );
    assert_eq!(get_with(admin, "/nope", Some(&bearer(first))).status, 404);
    let mut c = strata.client();
    assert_eq!(stats_field(&mut c, "strata_admin_access_denied_auth"), 3);
    let log = strata.log();
    assert_eq!(
        log.matches("admin endpoint: invalid bearer token").count(),
        2,
        "{log}"
    );
    assert!(
        log.contains("admin endpoint: malformed Authorization header"),
        "{log}"
    );
    assert!(log.contains("client.addr=127.0.0.1:"), "{log}");
    for secret in [first, wrong, "two tokens", "dXNlcjpwYXNz"] {
        assert!(!log.contains(secret), "{secret:?} logged:\n{log}");
    }

    // A new token on SIGHUP: the old one is refused from then on.
    let second = "second-token-YmFyYmF6";
    let yaml = std::fs::read_to_string(strata.config_path()).unwrap();
    std::fs::write(
        strata.config_path(),
        yaml.replace(&sha256_hex(first), &sha256_hex(second)),
    )
    .unwrap();
    strata.signal("HUP");
    poll_until(DEADLINE, "the new token to be accepted", || {
        (get_with(admin, "/metrics", Some(&bearer(second))).status == 200).then_some(())
    });
    assert_eq!(
        get_with(admin, "/metrics", Some(&bearer(first))).status,
        401
    );
    // No token in the file: open again.
    std::fs::write(
        strata.config_path(),
        yaml.replace(&format!(", admin_token_sha256: {}", sha256_hex(first)), ""),
    )
    .unwrap();
    strata.signal("HUP");
    poll_until(DEADLINE, "the endpoint to be open again", || {
        (get_with(admin, "/metrics", None).status == 200).then_some(())
    });
}

/// `strata check` refuses a plain token with the command that hashes it, reads a bare port
/// as loopback, and refuses an address without its host.
#[test]
fn strata_check_refuses_a_plain_token_and_an_address_without_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.yaml");
    let check = |extra: &str| {
        std::fs::write(
            &path,
            format!("nodes:\n  - {{id: a, addr: 'h:1'}}\n{extra}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, _, err) = check("security: {admin_token_sha256: my-scrape-token}");
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("security.admin_token_sha256: a token is stored as its SHA-256")
            && err.contains("sha256sum"),
        "{err}"
    );
    let hash = sha256_hex("my-scrape-token");
    let (code, out, err) = check(&format!(
        "admin_listen: 9380\nsecurity: {{admin_token_sha256: {hash}}}"
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("admin_listen: 127.0.0.1:9380"), "{out}");
    assert!(
        out.contains(&format!("admin_token_sha256: {hash}")),
        "{out}"
    );
    for bad in ["':9380'", "localhost:9380"] {
        let (code, _, err) = check(&format!("admin_listen: {bad}"));
        assert_eq!(code, Some(64), "{bad}: {err}");
        assert!(
            err.contains("admin_listen: expected <ip>:<port>"),
            "{bad}: {err}"
        );
    }
}
