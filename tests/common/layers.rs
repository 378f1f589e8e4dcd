//! Helpers of the layer tests (`layers.rs`, `metrics.rs`, `invalidate.rs`, `warm.rs`): strata
//! with the router's four layers, and readers for INFO lines and STRATA replies.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};

/// The model router's four layers: every layer test runs with them.
pub const LAYERS: &str = r#"layers:
  - { name: route,  prefix: "route:",  key: "route:{query}",          ttl: 5m }
  - { name: result, prefix: "result:", key: "result:{query}:{model}", ttl: 10m }
  - { name: meta,   prefix: "meta:",   key: "meta:{model}",           ttl: 1m }
  - { name: load,   prefix: "load:",   key: "load:{model}",           ttl: 5s }
"#;

/// Layer names in the order INFO and STRATA LAYERS list them (the default layer last).
pub const LAYER_NAMES: [&str; 5] = ["route", "result", "meta", "load", "default"];

/// The fields of an INFO `layer_<name>` line, in order.
pub const LAYER_FIELDS: [&str; 22] = [
    "prefix",
    "ttl_ms",
    "max_ttl_ms",
    "hits",
    "misses",
    "hit_rate",
    "writes",
    "deletes",
    "invalidations",
    "expirations",
    "warms",
    "errors",
    "failovers",
    "miss_failovers",
    "repairs",
    "write_failures",
    "replication",
    "keys",
    "p50_usec",
    "p95_usec",
    "p99_usec",
    "p999_usec",
];

pub const INVALIDATE_USAGE: &str =
    "ERR strata: INVALIDATE takes KEY <key>, LAYER <name> or WHERE <field>=<value> [...]";

/// strata over `nodes` with [`LAYERS`], the admin endpoint on a free port, no background key
/// count (so nothing but the test's own requests reaches the nodes), plus `extra` YAML.
pub fn start(nodes: &[RedisNode], extra: &str) -> Strata {
    Strata::builder(nodes)
        .section(LAYERS)
        .section("admin_listen: 127.0.0.1:0")
        .section("stats: {layer_keys_interval: 0s}")
        .section(extra)
        .start()
}

pub fn call(c: &mut RawClient, args: &[&str]) -> Resp {
    c.call(args)
}

/// `INFO <section>` as text.
pub fn info(c: &mut RawClient, section: &str) -> String {
    call(c, &["INFO", section]).text()
}

/// One numeric field of INFO's `# Stats` section.
pub fn stats_field(c: &mut RawClient, field: &str) -> i64 {
    let info = info(c, "stats");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

/// The `name:field=value,...` lines of INFO text: name → fields in order.
pub fn info_lines(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, rest) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("INFO line without ':': {l:?}"));
            let fields = rest
                .split(',')
                .map(|f| {
                    let (k, v) = f
                        .split_once('=')
                        .unwrap_or_else(|| panic!("field without '=' in {l:?}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            (name.to_string(), fields)
        })
        .collect()
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

/// One number of a layer's INFO line (`near_hits`, `near_invalidations`, ...).
pub fn layer_figure(c: &mut RawClient, layer: &str, field: &str) -> u64 {
    let lines = info_lines(&info(c, "layers"));
    let fields = lines
        .get(&format!("layer_{layer}"))
        .unwrap_or_else(|| panic!("no layer {layer}"));
    self::field(fields, field).parse().unwrap()
}

/// `GET` calls the Redis node at `addr` has served (its own `INFO commandstats`).
pub fn gets_served(addr: &str) -> u64 {
    let text = RawClient::connect(addr)
        .call(&["INFO", "commandstats"])
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Entries the `route` layer's near cache lost to an invalidation or a flush.
pub fn near_removals(c: &mut RawClient) -> u64 {
    layer_figure(c, "route", "near_invalidations") + layer_figure(c, "route", "near_flushes")
}

/// Reads `key` (of near-cached layer `layer`) until a read is answered from memory.
pub fn until_near_hit(c: &mut RawClient, layer: &str, key: &str) {
    poll_until(DEADLINE, "a read served from memory", || {
        c.call(&["GET", key]);
        let hits = layer_figure(c, layer, "near_hits");
        c.call(&["GET", key]);
        (layer_figure(c, layer, "near_hits") > hits).then_some(())
    });
}

/// Waits until every node's invalidation stream reports every key to tracking clients.
pub fn wait_tracking_covered(c: &mut RawClient) {
    poll_until(DEADLINE, "the streams to report every key", || {
        (stats_field(c, "strata_tracking_covered") == 1).then_some(())
    });
}

/// Every layer's INFO line: layer name → field → value.
pub fn layers(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = info(c, "layers");
    assert!(text.starts_with("# Layers\r\n"), "{text:?}");
    let lines = info_lines(&text);
    let names: Vec<&String> = lines.keys().collect();
    let mut expected: Vec<String> = LAYER_NAMES.iter().map(|n| format!("layer_{n}")).collect();
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>(), "{text}");
    // Config order, the default layer last.
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("layer_")?.split(':').next())
        .collect();
    assert_eq!(order, LAYER_NAMES, "{text}");
    lines
        .into_iter()
        .map(|(name, fields)| {
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, LAYER_FIELDS, "fields of {name}");
            (
                name.strip_prefix("layer_").unwrap().to_string(),
                fields.into_iter().collect(),
            )
        })
        .collect()
}

/// Asserts the listed fields of every layer; `expected` is (layer, [(field, value)]).
pub fn assert_layers(c: &mut RawClient, expected: &[(&str, &[(&str, &str)])], context: &str) {
    let got = layers(c);
    for (layer, fields) in expected {
        let line = &got[*layer];
        for (f, v) in *fields {
            assert_eq!(
                line[*f], *v,
                "{context}: layer {layer} field {f} (line {line:?})"
            );
        }
    }
}

/// The counters of a layer, all given: hits, misses, hit_rate, writes, deletes, invalidations,
/// expirations, warms, errors.
pub type Counts = [(&'static str, &'static str); 9];

pub fn counts(
    hits: &'static str,
    misses: &'static str,
    hit_rate: &'static str,
    writes: &'static str,
    deletes: &'static str,
    expirations: &'static str,
    errors: &'static str,
) -> Counts {
    [
        ("hits", hits),
        ("misses", misses),
        ("hit_rate", hit_rate),
        ("writes", writes),
        ("deletes", deletes),
        ("invalidations", "0"),
        ("expirations", expirations),
        ("warms", "0"),
        ("errors", errors),
    ]
}

pub const ZERO: Counts = [
    ("hits", "0"),
    ("misses", "0"),
    ("hit_rate", "0.0000"),
    ("writes", "0"),
    ("deletes", "0"),
    ("invalidations", "0"),
    ("expirations", "0"),
    ("warms", "0"),
    ("errors", "0"),
];

/// The `cmdstat_` lines of INFO commandstats: command → fields.
pub fn commandstats(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = info(c, "commandstats");
    assert!(text.starts_with("# Commandstats\r\n"), "{text:?}");
    info_lines(&text)
        .into_iter()
        .map(|(name, fields)| {
            let name = name
                .strip_prefix("cmdstat_")
                .unwrap_or_else(|| panic!("unexpected line {name}"))
                .to_string();
            (name, fields.into_iter().collect())
        })
        .collect()
}

/// `# Latency`: class → calls.
pub fn class_calls(c: &mut RawClient) -> BTreeMap<String, u64> {
    let text = info(c, "latency");
    assert!(text.starts_with("# Latency\r\n"), "{text:?}");
    let lines = info_lines(&text);
    let names: Vec<&str> = lines.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["class_other", "class_read", "class_write"],
        "{text}"
    );
    lines
        .into_iter()
        .map(|(name, fields)| {
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                ["calls", "p50_usec", "p95_usec", "p99_usec", "p999_usec"],
                "{name}"
            );
            (
                name.strip_prefix("class_").unwrap().to_string(),
                field(&fields, "calls").parse().unwrap(),
            )
        })
        .collect()
}

/// `# Nodes`: node id → fields.
pub fn node_lines(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = info(c, "nodes");
    assert!(text.starts_with("# Nodes\r\n"), "{text:?}");
    info_lines(&text)
        .into_iter()
        .map(|(name, fields)| {
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "addr",
                    "tls",
                    "weight",
                    "state",
                    "down_transitions",
                    "up_transitions",
                    "connections",
                    "requests",
                    "errors",
                    "timeouts",
                    "failures",
                    "hints_pending",
                    "hints_stored",
                    "hints_replayed",
                    "hints_dropped",
                    "refill",
                    "restarts",
                    "refills",
                    "refill_copied",
                    "p50_usec",
                    "p95_usec",
                    "p99_usec",
                    "p999_usec",
                    "last_error",
                    "health_reason"
                ],
                "{name}"
            );
            (
                name.strip_prefix("node_").unwrap().to_string(),
                fields.into_iter().collect(),
            )
        })
        .collect()
}

pub fn num(map: &BTreeMap<String, String>, f: &str) -> i64 {
    map[f]
        .parse()
        .unwrap_or_else(|_| panic!("{f} is not a number in {map:?}"))
}

/// A flat field/value array reply as a map.
pub fn fields(reply: &Resp) -> BTreeMap<String, Resp> {
    let items = reply.array();
    assert_eq!(items.len() % 2, 0, "odd field/value array {reply:?}");
    items
        .chunks(2)
        .map(|pair| (pair[0].text(), pair[1].clone()))
        .collect()
}

/// The field names of a flat field/value array, in order.
pub fn field_names(reply: &Resp) -> Vec<String> {
    reply.array().iter().step_by(2).map(Resp::text).collect()
}

/// Waits until strata has a working connection to every node.
pub fn wait_all_up(c: &mut RawClient) {
    poll_until(DEADLINE, "every node up", || {
        node_lines(c)
            .values()
            .all(|n| n["state"] == "up")
            .then_some(())
    });
}

/// Sends all commands in one write, then reads one reply each.
pub fn pipeline(c: &mut RawClient, commands: &[Vec<String>]) -> Vec<Resp> {
    let mut batch = Vec::new();
    for cmd in commands {
        batch.extend(super::encode_cmd(cmd));
    }
    c.send(&batch);
    commands.iter().map(|_| c.read_reply()).collect()
}

pub fn set_all(c: &mut RawClient, keys: &[String]) {
    let cmds: Vec<Vec<String>> = keys
        .iter()
        .map(|k| vec!["SET".into(), k.clone(), format!("v-{k}")])
        .collect();
    for (k, r) in keys.iter().zip(pipeline(c, &cmds)) {
        assert_eq!(r, Resp::ok(), "SET {k}");
    }
}

/// Every key on the node, sorted (KEYS straight on the node: fine for a test's few keys).
pub fn node_keys(node: &RedisNode) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut node.conn()).unwrap();
    keys.sort();
    keys
}

/// Asserts every node holds exactly the keys of `expected` the ring gives it.
pub fn assert_nodes_hold(strata: &Strata, nodes: &[RedisNode], expected: &[String], context: &str) {
    for (n, node) in nodes.iter().enumerate() {
        let mut want: Vec<String> = expected
            .iter()
            .filter(|k| strata.owner(k) == n)
            .cloned()
            .collect();
        want.sort();
        assert_eq!(node_keys(node), want, "{context}: keys of node{}", n + 1);
    }
}

pub fn pttl(node: &RedisNode, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(&mut node.conn()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// INFO `# Layers`
// ---------------------------------------------------------------------------------------------

pub struct HttpReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// One plain HTTP/1.1 GET, read to EOF (the admin endpoint closes after each response).
pub fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
    let status = status_line[9..12].parse().unwrap();
    let mut content_type = String::new();
    let mut length = None;
    for l in lines {
        let (name, value) = l.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_string(),
            "content-length" => length = Some(value.trim().parse::<usize>().unwrap()),
            _ => {}
        }
    }
    assert_eq!(length, Some(body.len()), "Content-Length of {path}");
    HttpReply {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// The value of the sample `series` (full name with labels) in a metrics page.
pub fn sample(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

pub fn metrics(admin: SocketAddr) -> String {
    let r = http_get(admin, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.content_type
    );
    r.body
}
