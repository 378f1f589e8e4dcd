#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use std::time::Duration;

const MINIMAL: &str = "nodes:\n  - {id: a, addr: '127.0.0.1:7001'}\n";

#[test]
fn defaults_fill_in() {
    let s = Config::parse(MINIMAL, "t").unwrap();
    assert_eq!(s.config.listen.port(), 6380);
    assert_eq!(s.config.nodes[0].weight, 1);
    assert_eq!(s.config.timeouts.request, Duration::from_secs(2));
    assert_eq!(
        s.hash_tag,
        Some(HashTag {
            open: b'{',
            close: b'}'
        })
    );
    assert!(s.workers >= 1);
}

#[test]
fn durations_are_human() {
    let text = format!("{MINIMAL}timeouts: {{connect: 250ms, request: 5s}}\n");
    let s = Config::parse(&text, "t").unwrap();
    assert_eq!(s.config.timeouts.connect, Duration::from_millis(250));
    assert_eq!(s.config.timeouts.request, Duration::from_secs(5));
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let text = format!("{MINIMAL}limits:\n  max_clientz: 3\n");
    let err = Config::parse(&text, "cfg.yaml").unwrap_err().to_string();
    assert!(err.contains("cfg.yaml"), "{err}");
    assert!(err.contains("max_clientz"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn backend_credentials_resolve_per_node_and_never_print() {
    let s = Config::parse(
        "nodes:\n  - {id: a, addr: 'h:1'}\n  - {id: b, addr: 'h:2', username: ops, password: node-pw}\nbackend: {password: global-pw}\n",
        "t",
    )
    .unwrap();
    let a = s.config.credentials_for("a").unwrap();
    assert_eq!((a.username, a.password.expose()), (None, "global-pw"));
    let b = s.config.credentials_for("b").unwrap();
    assert_eq!(
        (b.username.as_deref(), b.password.expose()),
        (Some("ops"), "node-pw")
    );
    // A node added at run time gets the global ones.
    let c = s.config.credentials_for("new").unwrap();
    assert_eq!(c.password.expose(), "global-pw");
    let yaml = s.to_yaml();
    assert!(
        !yaml.contains("global-pw") && !yaml.contains("node-pw"),
        "{yaml}"
    );
    assert_eq!(yaml.matches("<redacted>").count(), 2, "{yaml}");
    assert!(!format!("{:?}", s.config).contains("-pw"));
    // No credentials anywhere: no AUTH.
    let s = Config::parse("nodes:\n  - {id: a, addr: 'h:1'}\n", "t").unwrap();
    assert_eq!(s.config.credentials_for("a"), None);
    assert!(!s.to_yaml().contains("password"));
}

#[test]
fn bad_values_are_refused() {
    for (text, needle) in [
        ("nodes: []\n", "at least one node"),
        (
            "nodes:\n  - {id: a, addr: 'x:1'}\n  - {id: a, addr: 'y:1'}\n",
            "duplicate node id",
        ),
        ("nodes:\n  - {id: a, addr: 'nohostport'}\n", "host:port"),
        ("nodes:\n  - {id: a, addr: 'h:1', weight: 0}\n", "weight"),
        (
            "nodes:\n  - {id: a, addr: 'h:1'}\nring: {hash_tag: '{'}\n",
            "hash_tag",
        ),
        (
            "nodes:\n  - {id: a, addr: 'h:1'}\ntimeouts: {request: 0s}\n",
            "timeouts.request",
        ),
        (
            "nodes:\n  - {id: a, addr: 'h:1'}\nlimits: {max_pipeline: 0}\n",
            "max_pipeline",
        ),
        (
            "nodes:\n  - {id: a, addr: 'h:1', username: u}\n",
            "nodes[0] (a): username \"u\" is set without a password",
        ),
        (
            "nodes:\n  - {id: a, addr: 'h:1'}\nbackend: {password: ''}\n",
            "nodes[0] (a): password must not be empty",
        ),
        (
            "nodes:\n  - {id: a, addr: 'h:1', password: [x]}\n",
            "invalid type",
        ),
    ] {
        let err = Config::parse(text, "t").unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn host_port_forms() {
    assert_eq!(split_host_port("127.0.0.1:7001"), Some(("127.0.0.1", 7001)));
    assert_eq!(split_host_port("[::1]:7001"), Some(("::1", 7001)));
    assert_eq!(split_host_port("redis1:6379"), Some(("redis1", 6379)));
    assert_eq!(split_host_port("redis1"), None);
    assert_eq!(split_host_port(":6379"), None);
}

#[test]
fn near_caches_resolve_and_their_rules_are_enforced() {
    let two = "nodes:\n  - {id: a, addr: 'h:1'}\n  - {id: b, addr: 'h:2'}\n";
    let s = Config::parse(
        &format!(
            "{two}layers:\n  - {{name: route, prefix: 'route:', near_cache: {{max_bytes: 1mb}}}}\n  - {{name: meta, prefix: 'meta:'}}\n"
        ),
        "t",
    )
    .unwrap();
    let route = &s.layers[0];
    let near = route.near_cache.unwrap();
    assert_eq!(near.max_bytes.bytes(), 1 << 20);
    assert_eq!(near.max_value_size.bytes(), 64 << 10, "default");
    assert_eq!(near.max_ttl, std::time::Duration::from_secs(60), "default");
    assert!(s.layers[1].near_cache.is_none());
    for (layers, want) in [
        (
            "  - {name: r, prefix: 'r:', read_consistency: quorum, replication: 2, near_cache: {}}\n",
            "only for layers with read_consistency: one",
        ),
        (
            "  - {name: r, prefix: 'r:', near_cache: {max_bytes: 0}}\n",
            "near_cache.max_bytes: must be greater than 0",
        ),
        (
            "  - {name: r, prefix: 'r:', near_cache: {max_bytes: 1kb, max_value_size: 2kb}}\n",
            "max_value_size: must be greater than 0 and at most an eighth of max_bytes (128)",
        ),
        (
            "  - {name: r, prefix: 'r:', near_cache: {max_ttl: 0s}}\n",
            "max_ttl: must be greater than 0",
        ),
        (
            "  - {name: r, prefix: 'r:', near_cache: {max_bytes: 200mb}}\n  - {name: s, prefix: 's:', near_cache: {max_bytes: 100mb}}\n",
            "near_cache.max_bytes: the layers' near caches take 300mb together, more than 256mb",
        ),
        (
            "  - {name: r, prefix: 'r:', near_cache: {max_entries: 1}}\n",
            "unknown field `max_entries`",
        ),
    ] {
        let err = Config::parse(&format!("{two}layers:\n{layers}"), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}\nwanted: {want}");
    }
    // The process-wide budget can be raised.
    Config::parse(
        &format!("{two}near_cache: {{max_bytes: 1gb}}\nlayers:\n  - {{name: r, prefix: 'r:', near_cache: {{max_bytes: 300mb}}}}\n"),
        "t",
    )
    .unwrap();
}

#[test]
fn coalesce_is_per_layer_with_a_default() {
    let two = "nodes:\n  - {id: a, addr: 'h:1'}\n  - {id: b, addr: 'h:2'}\n";
    let s = Config::parse(
        &format!(
            "{two}defaults: {{coalesce: true}}\nlayers:\n  - {{name: result, prefix: 'result:'}}\n  - {{name: meta, prefix: 'meta:', coalesce: false}}\n"
        ),
        "t",
    )
    .unwrap();
    let by_name = |n: &str| s.layers.iter().find(|l| l.name == n).unwrap();
    assert!(by_name("result").coalesce, "from defaults");
    assert!(!by_name("meta").coalesce, "the layer's own setting wins");
    assert!(by_name("default").coalesce);
    let s = Config::parse(
        &format!("{two}layers:\n  - {{name: r, prefix: 'r:'}}\n"),
        "t",
    )
    .unwrap();
    assert!(s.layers.iter().all(|l| !l.coalesce), "off by default");
    let e = Config::parse(
        &format!("{two}layers:\n  - {{name: r, prefix: 'r:', coalesce: 1}}\n"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("coalesce"), "{e}");
}
