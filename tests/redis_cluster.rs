//! strata in front of a real Redis Cluster (`backends: [{cluster: ...}]`): keys go to the
//! primary of their hash slot, multi-key commands split per slot, `MOVED` and `ASK` are
//! followed, and clients keep working through a live reshard, a manual failover and a
//! primary killed.

mod common;

use std::time::{Duration, Instant};

use common::layers::{
    gets_served, near_removals, stats_field, until_near_hit, wait_tracking_covered,
};
use common::redis_cluster::RedisCluster;
use common::traffic::{let_run, Traffic};
use common::*;

/// strata with the four model-router layers (and the default layer) on cluster `cluster`.
fn strata_over(cluster: &RedisCluster, extra: &str) -> Strata {
    let seeds = cluster.addrs()[..2].join("', '");
    StrataBuilder::with_addrs(Vec::new())
        .section(&format!(
            "backends:\n  - {{name: main, cluster: {{seeds: ['{seeds}']}}}}\n\
             defaults: {{backend: main}}\n\
             layers:\n\
             \x20 - {{name: route, prefix: 'route:', ttl: 5m}}\n\
             \x20 - {{name: result, prefix: 'result:', ttl: 10m}}\n\
             \x20 - {{name: meta, prefix: 'meta:', ttl: 1m}}\n\
             \x20 - {{name: load, prefix: 'load:', ttl: 5s}}\n{extra}"
        ))
        .start()
}

/// The `field=value` fields of the INFO line starting with `key:`.
fn info_field(client: &mut RawClient, section: &str, key: &str, field: &str) -> Option<String> {
    let text = client.call(&["INFO", section]).text();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    let fields = line.split_once(':')?.1;
    fields
        .split(',')
        .find_map(|f| f.strip_prefix(&format!("{field}=")))
        .map(str::to_string)
}

fn wait_for_map(strata: &Strata) {
    let mut c = RawClient::connect(&strata.addr().to_string());
    poll_until(
        Duration::from_secs(20),
        "strata to learn the slot map",
        || {
            let covered = info_field(&mut c, "backends", "backend_main", "slots_covered")?;
            (covered == "16384").then_some(())
        },
    );
}

#[test]
fn keys_live_on_the_primary_of_their_slot_and_layers_apply() {
    let cluster = RedisCluster::start(3, 0);
    let strata = strata_over(&cluster, "");
    wait_for_map(&strata);
    let mut c = RawClient::connect(&strata.addr().to_string());
    let keys: Vec<String> = (0..60)
        .map(|i| format!("{}:{i}", ["route", "result", "meta", "other"][i % 4]))
        .collect();
    for k in &keys {
        assert_eq!(c.call(&["SET", k, &format!("v-{k}")]), Resp::ok());
    }
    for k in &keys {
        let owner = cluster.owner_of(k);
        assert_eq!(
            cluster.nodes[owner].get(k).unwrap(),
            Some(format!("v-{k}")),
            "{k} on the primary of its slot"
        );
        assert_eq!(c.call(&["GET", k]), Resp::bulk(format!("v-{k}")));
    }
    // The layer's TTL was applied on the node.
    let owner = cluster.owner_of("route:0");
    let pttl: i64 = redis::cmd("PTTL")
        .arg("route:0")
        .query(&mut cluster.nodes[owner].conn())
        .unwrap();
    assert!((290_000..=300_000).contains(&pttl), "route: TTL {pttl}");
    // Multi-key commands split per slot, in the client's order.
    let mget: Vec<&str> = std::iter::once("MGET")
        .chain(keys.iter().map(String::as_str))
        .chain(std::iter::once("missing:key"))
        .collect();
    let reply = c.call(&mget);
    let items = reply.array();
    assert_eq!(items.len(), keys.len() + 1);
    for (k, item) in keys.iter().zip(items) {
        assert_eq!(*item, Resp::bulk(format!("v-{k}")));
    }
    assert_eq!(items.last(), Some(&Resp::Nil));
    assert_eq!(
        c.call(&["MSET", "a{t}", "1", "b{t}", "2", "meta:x", "3"]),
        Resp::ok()
    );
    assert_eq!(
        c.call(&["EXISTS", "a{t}", "b{t}", "meta:x", "nope"]).int(),
        3
    );
    // Keys of one slot may go in one command; of two slots, Redis Cluster's CROSSSLOT.
    assert_eq!(c.call(&["SUNIONSTORE", "s{t}", "x{t}"]).int(), 0);
    assert_eq!(
        c.call(&["SUNIONSTORE", "s{t}", "x{u}"]),
        Resp::err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(c.call(&["DEL", "a{t}", "b{t}", "meta:x"]).int(), 3);
    // DBSIZE sums the primaries.
    let total: i64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<i64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(c.call(&["DBSIZE"]).int(), total);
    // Hits and misses per layer.
    c.call(&["GET", "route:nope"]);
    let hits = info_field(&mut c, "layers", "layer_route", "hits").unwrap();
    let misses = info_field(&mut c, "layers", "layer_route", "misses").unwrap();
    // 15 GETs and the 15 route: keys of the MGET hit; one GET missed.
    assert_eq!((hits.as_str(), misses.as_str()), ("30", "1"));
}

#[test]
fn moved_and_ask_are_followed() {
    let cluster = RedisCluster::start(3, 0);
    let strata = strata_over(&cluster, "admin_listen: 127.0.0.1:0\n");
    wait_for_map(&strata);
    let mut c = RawClient::connect(&strata.addr().to_string());
    // Two keys of one slot.
    let (k1, k2) = ("{m}one", "{m}two");
    c.call(&["SET", k1, "1"]);
    c.call(&["SET", k2, "2"]);
    let slot = cluster.slot_of(k1);
    let from = cluster.owner_of_slot(slot);
    let to = (from + 1) % 3;
    // Mid-migration: k2 is at the target already, k1 not yet.
    cluster.begin_migration(slot, from, to, &[k2]);
    assert_eq!(c.call(&["GET", k2]), Resp::bulk("2"), "ASK followed");
    assert_eq!(c.call(&["GET", k1]), Resp::bulk("1"));
    let asked: u64 = info_field(&mut c, "backends", "backend_main", "asked")
        .unwrap()
        .parse()
        .unwrap();
    assert!(asked >= 1, "asked {asked}");
    cluster.finish_migration(slot, from, to);
    // strata's map still says `from`: the node answers MOVED, strata follows it.
    assert_eq!(c.call(&["GET", k1]), Resp::bulk("1"), "MOVED followed");
    assert_eq!(c.call(&["MGET", k1, k2]), Resp::bulks(&["1", "2"]));
    let moved: u64 = info_field(&mut c, "backends", "backend_main", "moved")
        .unwrap()
        .parse()
        .unwrap();
    assert!(moved >= 1, "moved {moved}");
    let body = common::layers::metrics(strata.handle().admin_addr.expect("admin endpoint"));
    for line in [
        "strata_cluster_slots_covered{backend=\"main\"} 16384",
        &format!("strata_cluster_moved_redirects_total{{backend=\"main\"}} {moved}"),
        &format!("strata_cluster_ask_redirects_total{{backend=\"main\"}} {asked}"),
    ] {
        assert!(body.contains(line), "{line} not in /metrics:\n{body}");
    }
    // The MOVED asked for the new map: soon the slot's owner is `to` in strata's view too.
    let to_addr = cluster.nodes[to].addr();
    poll_until(
        Duration::from_secs(10),
        "strata's map to move the slot",
        || {
            let view = strata.handle().control.live.load();
            let owner = view.topology.clusters[0].owner(slot)?;
            (view.topology.node(owner)?.addr == to_addr).then_some(())
        },
    );
}

#[test]
fn clients_keep_working_through_reshard_and_failovers() {
    let cluster = RedisCluster::start(3, 1);
    // A manual failover pauses the old primary's writes until the replica took over, for up
    // to 5 s (Redis's CLUSTER_MF_TIMEOUT); here it takes about 3 s. Requests that wait longer
    // than the request timeout fail: 6 s rides it out (docs/redis-cluster.md).
    let strata = strata_over(&cluster, "timeouts: {connect: 500ms, request: 6s}\n");
    wait_for_map(&strata);
    let traffic = Traffic::start(&strata.addr().to_string(), 4);
    let_run(&traffic, 2000);

    // A live reshard of a third of a primary's slots, keys and all.
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let took = cluster.reshard(from, to, 1000);
    let_run(&traffic, 2000);
    let (errors, span, kinds) = traffic.errors();
    eprintln!(
        "reshard of 1000 slots: {} ms, {} ops so far, {errors} client errors over {} ms {kinds:?}",
        took.as_millis(),
        traffic.ops(),
        span.as_millis()
    );
    assert_eq!(errors, 0, "errors during the reshard: {kinds:?}");

    // A manual failover: the replica takes over without losing writes.
    let replica = cluster.replica_of(to);
    let started = Instant::now();
    cluster.failover(replica);
    let took = started.elapsed();
    let_run(&traffic, 2000);
    let (errors, span, kinds) = traffic.errors();
    eprintln!(
        "manual failover: the replica was primary after {} ms; {} ops so far, {errors} client errors over {} ms {kinds:?}",
        took.as_millis(),
        traffic.ops(),
        span.as_millis()
    );

    // A primary killed: its slots fail until its replica is promoted and strata learns it.
    let mut cluster = cluster;
    let victim = cluster.primaries()[0];
    let heir = cluster.replica_of(victim);
    // The manual failover may have just made the heir a replica: it takes over only once
    // it has synced.
    cluster.wait_synced(heir);
    let before = traffic.errors().0;
    let killed = Instant::now();
    assert_eq!(
        traffic.wrong_before(killed),
        0,
        "a read returned another value than the client's last write"
    );
    cluster.nodes[victim].kill();
    cluster.wait_primary(heir);
    let promoted = killed.elapsed();
    // Errors end once strata follows the new primary.
    poll_until(
        Duration::from_secs(30),
        "errors to stop after the failover",
        || {
            let n = traffic.errors().0;
            let start = traffic.ops();
            std::thread::sleep(Duration::from_millis(500));
            (traffic.errors().0 == n && traffic.ops() > start + 100).then_some(())
        },
    );
    let (total, ops_errors_span, wrong_kinds) = {
        let (n, span, kinds) = traffic.errors();
        (n, span, kinds)
    };
    let (ops, errors, _, wrong) = traffic.stop();
    eprintln!(
        "primary killed: promoted after {} ms; {} client errors during it, {} in all over {} ms {wrong_kinds:?}; {ops} ops, {wrong} wrong values",
        promoted.as_millis(),
        total - before,
        errors,
        ops_errors_span.as_millis(),
    );
    // Redis Cluster replicates asynchronously: a write the killed primary acknowledged but
    // had not passed on is lost, and its client then reads the older value from the new
    // primary. That is the cluster's own behaviour (strata adds none); it is reported, not
    // failed on.
    assert!(
        wrong <= total - before + 64,
        "{wrong} stale reads, far more than the failover explains"
    );
    // Everything works on the new primary.
    let mut c = RawClient::connect(&strata.addr().to_string());
    for i in 0..50 {
        let k = format!("after:{i}");
        assert_eq!(c.call(&["SET", &k, "x"]), Resp::ok());
        assert_eq!(c.call(&["GET", &k]), Resp::bulk("x"));
    }
}

#[test]
fn config_refuses_what_a_cluster_layer_cannot_do() {
    let base =
        "listen: 127.0.0.1:0\nbackends:\n  - {name: main, cluster: {seeds: ['127.0.0.1:7000']}}\n";
    let bad = [
        (
            "nodes: []\nlayers:\n  - {name: r, prefix: 'r:', backend: main, replication: 2}\ndefaults: {backend: main}\n",
            "does not take replication",
        ),
        (
            "nodes: []\ndefaults: {backend: main, read_consistency: quorum}\n",
            "read_consistency",
        ),
        (
            "nodes: []\nlayers:\n  - {name: r, prefix: 'r:', backend: nope}\ndefaults: {backend: main}\n",
            "backend \"nope\" is not configured",
        ),
        (
            "nodes: []\nlayers:\n  - {name: r, prefix: 'r:'}\n",
            "at least one node is required",
        ),
        // read_from: replica is for backends, and not with a near cache.
        (
            "nodes: [{id: a, addr: '127.0.0.1:1'}]\nlayers:\n  - {name: r, prefix: 'r:', read_from: replica}\n",
            "read_from: replica is for layers served by a Redis Cluster or Sentinel backend",
        ),
        (
            "nodes: []\ndefaults: {backend: main}\nlayers:\n  - {name: r, prefix: 'r:', read_from: replica, near_cache: {}}\n",
            "does not take near_cache with read_from: replica",
        ),
        (
            "nodes: []\ndefaults: {backend: main}\nlayers:\n  - {name: r, prefix: 'r:', read_from: secondary}\n",
            "unknown variant `secondary`",
        ),
    ];
    for (yaml, want) in bad {
        let text = format!("{base}{yaml}");
        let err = strata::config::Config::parse(&text, "t")
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"))
            .to_string();
        assert!(err.contains(want), "{err}\nwanted {want:?}");
    }
    let good = format!("{base}nodes: []\ndefaults: {{backend: main}}\n");
    strata::config::Config::parse(&good, "t").unwrap();
    let seeds = "listen: 127.0.0.1:0\nnodes: []\ndefaults: {backend: c}\nbackends:\n  - {name: c, cluster: {seeds: []}}\n";
    assert!(strata::config::Config::parse(seeds, "t").is_err());
    let ring =
        "listen: 127.0.0.1:0\nnodes: []\nbackends:\n  - {name: ring, cluster: {seeds: ['h:1']}}\n";
    assert!(strata::config::Config::parse(ring, "t").is_err());
    let replica_reads = format!(
        "{base}nodes: []\ndefaults: {{backend: main, read_from: replica}}\nlayers:\n  - {{name: r, prefix: 'r:', near_cache: {{}}, read_from: primary}}\n"
    );
    strata::config::Config::parse(&replica_reads, "t").unwrap();
}

#[test]
fn transactions_pubsub_tracking_and_placement_follow_the_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let strata = strata_over(&cluster, "");
    wait_for_map(&strata);
    let addr = strata.addr().to_string();
    let mut c = RawClient::connect(&addr);
    // A transaction over one slot runs on its primary; over two, CROSSSLOT.
    assert_eq!(c.call(&["MULTI"]), Resp::ok());
    c.call(&["SET", "{tx}a", "1"]);
    c.call(&["INCR", "{tx}b"]);
    let exec = c.call(&["EXEC"]);
    assert_eq!(exec, Resp::Array(vec![Resp::ok(), Resp::Int(1)]));
    let owner = cluster.owner_of("{tx}a");
    assert_eq!(cluster.nodes[owner].get("{tx}a").unwrap(), Some("1".into()));
    c.call(&["MULTI"]);
    c.call(&["SET", "{tx}a", "2"]);
    c.call(&["SET", "{other}a", "2"]);
    let exec = c.call(&["EXEC"]);
    assert!(
        exec.is_error() && exec.error_text().contains("CROSSSLOT"),
        "{exec:?}"
    );
    // STRATA RING names the key's slot and the node serving it.
    let ring = c.call(&["STRATA", "RING", "meta:gpt"]);
    let items = ring.array();
    assert_eq!(items[3], Resp::bulk("main"));
    let slot = cluster.slot_of("meta:gpt");
    assert_eq!(items[5], Resp::Int(i64::from(slot)));
    let primary = cluster.nodes[cluster.owner_of("meta:gpt")].addr();
    assert_eq!(items[7].array()[0], Resp::bulk(format!("main@{primary}")));
    // Pub/sub: a channel's subscriber gets what is published through strata.
    let mut sub = RawClient::connect(&addr);
    sub.call(&["SUBSCRIBE", "news"]);
    poll_until(DEADLINE, "the subscription to reach the node", || {
        let n = c.call(&["PUBLISH", "news", "hello"]).int();
        (n == 1).then_some(())
    });
    let msg = sub.read_reply();
    assert_eq!(msg, Resp::bulks(&["message", "news", "hello"]));
    // CLIENT TRACKING: the primaries' invalidation streams watch the keys, so a tracked read
    // is promised a notice, which a write made on the node directly brings.
    let (mut inv, mut reader) = redirect_tracking(&addr);
    wait_covered(&mut c);
    c.call(&["SET", "route:q1", "m1"]);
    assert_eq!(reader.call(&["GET", "route:q1"]), Resp::bulk("m1"));
    let owner = cluster.owner_of("route:q1");
    let mut direct = RawClient::connect(&cluster.nodes[owner].addr());
    assert_eq!(direct.call(&["SET", "route:q1", "m2"]), Resp::ok());
    assert_eq!(inv.read_reply(), invalidation(Some("route:q1")));
}

/// The message a RESP2 subscriber of `__redis__:invalidate` gets for `key`, or for a flush.
fn invalidation(key: Option<&str>) -> Resp {
    Resp::Array(vec![
        Resp::bulk("message"),
        Resp::bulk("__redis__:invalidate"),
        key.map_or(Resp::Nil, |k| Resp::bulks(&[k])),
    ])
}

/// Reads the subscriber's messages until one names `key` (flushes and others skipped).
fn until_told(inv: &mut RawClient, key: &str, what: &str) {
    poll_until(DEADLINE, what, || {
        (inv.read_reply() == invalidation(Some(key))).then_some(())
    });
}

/// A client subscribed to `__redis__:invalidate`, and a client with `CLIENT TRACKING ON
/// REDIRECT` to it (RESP2).
fn redirect_tracking(addr: &str) -> (RawClient, RawClient) {
    let mut inv = RawClient::connect(addr);
    let id = inv.call(&["CLIENT", "ID"]).int().to_string();
    inv.call(&["SUBSCRIBE", "__redis__:invalidate"]);
    let mut reader = RawClient::connect(addr);
    assert_eq!(
        reader.call(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]),
        Resp::ok()
    );
    (inv, reader)
}

/// `STRATA RELOAD` of strata's own file.
fn c_reload(strata: &Strata) -> Resp {
    RawClient::connect(&strata.addr().to_string()).call(&["STRATA", "RELOAD"])
}

/// Waits until the primaries' invalidation streams report every key to tracking clients.
fn wait_covered(c: &mut RawClient) {
    wait_tracking_covered(c);
    // The streams needed are the three primaries'.
    assert_eq!(stats_field(c, "strata_invalidation_streams"), 3);
    assert_eq!(stats_field(c, "strata_invalidation_streams_live"), 3);
}

#[test]
fn near_cache_and_tracking_follow_the_cluster_through_a_failover() {
    let cluster = RedisCluster::start(3, 1);
    let seeds = cluster.addrs()[..2].join("', '");
    let strata = StrataBuilder::with_addrs(Vec::new())
        .section(&format!(
            "backends:\n  - {{name: main, cluster: {{seeds: ['{seeds}']}}}}\n\
             defaults: {{backend: main}}\n\
             timeouts: {{connect: 500ms, request: 2s}}\n\
             health: {{heartbeat_interval: 100ms, node_timeout: 1s}}\n\
             layers:\n\
             \x20 - {{name: route, prefix: 'route:', ttl: 5m, near_cache: {{max_bytes: 1mb}}}}\n"
        ))
        .start_with_file();
    wait_for_map(&strata);
    // A reload keeps the cluster's nodes out of strata's own refill (Redis keeps their data),
    // and gives them the new `backend` credentials (for the connections opened after it).
    let path = strata.config_path();
    let yaml = std::fs::read_to_string(&path).unwrap();
    let rotated = yaml.replace("backend: {", "backend: {password: rotated, ");
    assert_ne!(rotated, yaml);
    std::fs::write(&path, rotated).unwrap();
    let reply = c_reload(&strata);
    assert!(!reply.is_error(), "{reply:?}\n{yaml}");
    let view = strata.handle().control.live.load();
    for n in view.topology.nodes.iter().filter(|n| n.cluster.is_some()) {
        let password = n.credentials().map(|c| c.password.expose().to_string());
        assert_eq!(password.as_deref(), Some("rotated"), "{}", n.id);
    }
    drop(view);
    std::fs::write(&path, yaml).unwrap();
    assert!(!c_reload(&strata).is_error());
    let view = strata.handle().control.live.load();
    let cluster_nodes: Vec<_> = view
        .topology
        .nodes
        .iter()
        .filter(|n| n.cluster.is_some())
        .collect();
    assert!(!cluster_nodes.is_empty());
    assert!(
        cluster_nodes.iter().all(|n| !n.refill.enabled()),
        "refill on for a cluster node after a reload"
    );
    drop(view);
    let addr = strata.addr().to_string();
    let mut c = RawClient::connect(&addr);
    let key = "route:gpt";
    assert_eq!(c.call(&["SET", key, "v1"]), Resp::ok());
    until_near_hit(&mut c, "route", key);

    // A write on the key's primary directly reaches the near cache through its stream.
    let owner = cluster.owner_of(key);
    let mut direct = RawClient::connect(&cluster.nodes[owner].addr());
    let removed = near_removals(&mut c);
    assert_eq!(direct.call(&["SET", key, "v2"]), Resp::ok());
    poll_until(DEADLINE, "the direct write to be seen", || {
        (c.call(&["GET", key]) == Resp::bulk("v2")).then_some(())
    });
    // Removed by its invalidation, or on a loaded machine by a flush (a stream whose PING was
    // late counts as lost).
    assert!(near_removals(&mut c) > removed);

    // A tracking client (RESP2, REDIRECT) is told of a direct write, not of its own read.
    let (mut inv, mut reader) = redirect_tracking(&addr);
    wait_covered(&mut c);
    assert_eq!(reader.call(&["GET", key]), Resp::bulk("v2"));
    inv.set_read_timeout(Duration::from_millis(300));
    // (A flush is no promise broken: on a loaded machine a stream whose PING was late counts
    // as lost, and every tracking client is told to flush.)
    let flush = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n".to_vec();
    let mut flushed = false;
    while let Ok(frame) = inv.read_frame() {
        assert_eq!(
            frame,
            flush,
            "a tracked read of a watched key was invalidated at once: {:?}",
            String::from_utf8_lossy(&frame)
        );
        flushed = true;
    }
    inv.set_read_timeout(Duration::from_secs(10));
    if flushed {
        // Read again once the streams are back, so that the key is the reader's again.
        wait_covered(&mut c);
        assert_eq!(reader.call(&["GET", key]), Resp::bulk("v2"));
    }
    assert_eq!(direct.call(&["SET", key, "v3"]), Resp::ok());
    until_told(
        &mut inv,
        key,
        "the direct write told to the tracking client",
    );

    // The key's replica takes over. The new primary's stream is needed now: the tracking
    // client is told to flush, and the near cache serves again once that stream is live.
    assert_eq!(reader.call(&["GET", key]), Resp::bulk("v3"));
    until_near_hit(&mut c, "route", key);
    let heir = cluster.replica_of(owner);
    cluster.failover(heir);
    let flush = invalidation(None);
    poll_until(DEADLINE, "the tracking client told to flush", || {
        (inv.read_reply() == flush).then_some(())
    });
    poll_until(DEADLINE, "strata to follow the failover", || {
        let ring = c.call(&["STRATA", "RING", key]);
        let serving = ring.array()[7].array()[0].clone();
        let heir_id = format!("main@{}", cluster.nodes[heir].addr());
        (serving == Resp::bulk(heir_id)).then_some(())
    });
    until_near_hit(&mut c, "route", key);
    // The new primary's writes reach the near cache and the tracking client.
    assert_eq!(reader.call(&["GET", key]), Resp::bulk("v3"));
    let mut promoted = RawClient::connect(&cluster.nodes[heir].addr());
    assert_eq!(promoted.call(&["SET", key, "v4"]), Resp::ok());
    poll_until(DEADLINE, "the new primary's write to be seen", || {
        (c.call(&["GET", key]) == Resp::bulk("v4")).then_some(())
    });
    until_told(
        &mut inv,
        key,
        "the tracking client told of the new primary's write",
    );
}

#[test]
fn a_ring_near_cache_needs_a_cluster_s_streams_only_while_clients_track() {
    let nodes = RedisNode::start_many(2);
    let cluster = RedisCluster::start(3, 0);
    let seeds = cluster.addrs()[..2].join("', '");
    let strata = StrataBuilder::with_addrs(nodes.iter().map(|n| n.addr()).collect())
        .section(&format!(
            "backends:\n  - {{name: main, cluster: {{seeds: ['{seeds}']}}}}\n\
             health: {{heartbeat_interval: 100ms, node_timeout: 1s}}\n\
             client_tracking: {{linger: 1s}}\n\
             layers:\n\
             \x20 - {{name: route, prefix: 'route:', near_cache: {{max_bytes: 1mb}}}}\n\
             \x20 - {{name: result, prefix: 'result:', backend: main}}\n"
        ))
        .start();
    wait_for_map(&strata);
    let addr = strata.addr().to_string();
    let mut c = RawClient::connect(&addr);
    assert_eq!(c.call(&["SET", "route:a", "1"]), Resp::ok());
    until_near_hit(&mut c, "route", "route:a");
    // The ring's two streams only: the cluster has no near-cached layer.
    assert_eq!(stats_field(&mut c, "strata_invalidation_streams"), 2);
    assert_eq!(stats_field(&mut c, "strata_invalidation_streams_live"), 2);

    // A tracking client: now the cluster's primaries are watched too, and a write made on
    // one directly reaches the client.
    let (mut inv, mut reader) = redirect_tracking(&addr);
    wait_tracking_covered(&mut c);
    assert_eq!(stats_field(&mut c, "strata_invalidation_streams"), 5);
    assert_eq!(c.call(&["SET", "result:q", "r1"]), Resp::ok());
    assert_eq!(reader.call(&["GET", "result:q"]), Resp::bulk("r1"));
    let owner = cluster.owner_of("result:q");
    let mut direct = RawClient::connect(&cluster.nodes[owner].addr());
    assert_eq!(direct.call(&["SET", "result:q", "r2"]), Resp::ok());
    until_told(
        &mut inv,
        "result:q",
        "the cluster write told to the tracking client",
    );
    // Tracking off and the linger over: back to the ring's streams.
    assert_eq!(reader.call(&["CLIENT", "TRACKING", "off"]), Resp::ok());
    poll_until(DEADLINE, "the cluster's streams to stop", || {
        (stats_field(&mut c, "strata_invalidation_streams") == 2).then_some(())
    });
    until_near_hit(&mut c, "route", "route:a");
}

#[test]
fn read_from_replica_reads_the_shards_replicas() {
    let cluster = RedisCluster::start(3, 1);
    let seeds = cluster.addrs()[..2].join("', '");
    let strata = StrataBuilder::with_addrs(Vec::new())
        .section(&format!(
            "backends:\n  - {{name: main, cluster: {{seeds: ['{seeds}'], refresh_interval: 1s}}}}\n\
             defaults: {{backend: main}}\n\
             health: {{heartbeat_interval: 100ms, node_timeout: 1s, failure_threshold: 2}}\n\
             layers:\n\
             \x20 - {{name: route, prefix: 'route:', read_from: replica, coalesce: true}}\n\
             \x20 - {{name: result, prefix: 'result:'}}\n"
        ))
        .start();
    wait_for_map(&strata);
    let addr = strata.addr().to_string();
    let mut c = RawClient::connect(&addr);
    // The cluster names a replica once it has synced: the map learns them at a refresh.
    poll_until(
        Duration::from_secs(30),
        "the map to name the replicas",
        || {
            let nodes = info_field(&mut c, "backends", "backend_main", "nodes")?;
            (nodes == "6").then_some(())
        },
    );
    let keys: Vec<String> = (0..30).map(|i| format!("route:{i}")).collect();
    for k in &keys {
        assert_eq!(c.call(&["SET", k, "v"]), Resp::ok());
        assert_eq!(c.call(&["SET", &format!("result:{k}"), "r"]), Resp::ok());
    }
    // The replicas have the writes (WAIT: each primary's replica acknowledged them).
    for k in &keys {
        let owner = cluster.owner_of(k);
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut cluster.nodes[owner].conn())
            .unwrap();
        assert_eq!(acked, 1, "{k}'s replica");
    }
    let primaries = cluster.primaries();
    let replicas: Vec<usize> = primaries.iter().map(|&p| cluster.replica_of(p)).collect();
    let served = |nodes: &[usize]| -> u64 {
        nodes
            .iter()
            .map(|&n| gets_served(&cluster.nodes[n].addr()))
            .sum()
    };
    let (p0, r0) = (served(&primaries), served(&replicas));
    for k in &keys {
        assert_eq!(c.call(&["GET", k]), Resp::bulk("v"), "GET {k}");
    }
    // MGET over several slots: each key from its replica.
    let mget: Vec<&str> = std::iter::once("MGET")
        .chain(keys.iter().map(String::as_str))
        .collect();
    let reply = c.call(&mget);
    assert!(
        reply.array().iter().all(|v| *v == Resp::bulk("v")),
        "{reply:?}"
    );
    let (p1, r1) = (served(&primaries), served(&replicas));
    assert_eq!(p1, p0, "reads of route: went to a primary");
    assert_eq!(r1 - r0, keys.len() as u64, "GETs of route: on the replicas");
    // A layer without read_from reads the primaries.
    for k in &keys {
        assert_eq!(c.call(&["GET", &format!("result:{k}")]), Resp::bulk("r"));
    }
    assert_eq!(served(&primaries) - p1, keys.len() as u64);
    assert_eq!(served(&replicas), r1);
    // Writes still go to the primaries.
    assert_eq!(c.call(&["SET", &keys[0], "w"]), Resp::ok());
    let owner = cluster.owner_of(&keys[0]);
    assert_eq!(
        cluster.nodes[owner].get(&keys[0]).unwrap(),
        Some("w".into())
    );
    // A tracked read goes to the primary (a replica may lag the invalidations).
    let mut t = RawClient::connect(&addr);
    assert_eq!(t.call(&["CLIENT", "TRACKING", "on"]), Resp::ok());
    let before = served(&primaries);
    t.call(&["GET", &keys[1]]);
    assert_eq!(served(&primaries), before + 1);

    // A tracked read does not join a coalesced read waiting on a replica: with the replica
    // paused, an untracked GET of a key waits there while a tracked GET of the same key is
    // answered by the primary.
    let shard = cluster.owner_of(&keys[3]);
    let paused = cluster.replica_of(shard);
    let mut pauser = RawClient::connect(&cluster.nodes[paused].addr());
    assert_eq!(pauser.call(&["CLIENT", "PAUSE", "2000", "ALL"]), Resp::ok());
    let mut untracked = RawClient::connect(&addr);
    untracked.send_cmd(&["GET", &keys[3]]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.call(&["GET", &keys[3]]), Resp::bulk("v"));
    assert_eq!(
        untracked.read_frame_now().unwrap(),
        None,
        "the untracked read was answered with the tracked one: they shared a flight"
    );
    assert_eq!(untracked.read_reply(), Resp::bulk("v"));
    pauser.call(&["CLIENT", "UNPAUSE"]);

    // A replica killed: its reads are asked of the primary, at once and once strata marks
    // it down; the client sees no error.
    let mut cluster = cluster;
    let shard = cluster.owner_of(&keys[2]);
    let victim = cluster.replica_of(shard);
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    let mut reads = 0;
    while killed.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            c.call(&["GET", &keys[2]]),
            Resp::bulk("v"),
            "after {reads} reads"
        );
        reads += 1;
    }
    let gone = format!("addr={},", cluster.nodes[victim].addr());
    poll_until(DEADLINE, "the replica marked down", || {
        let text = c.call(&["INFO", "backends"]).text();
        let line = text.lines().find(|l| l.contains(&gone))?;
        line.contains("state=down").then_some(())
    });
    assert_eq!(c.call(&["GET", &keys[2]]), Resp::bulk("v"));
}

#[test]
fn reload_keeps_the_running_backends() {
    // No cluster is needed: the seeds are never reached in this test.
    let strata = StrataBuilder::with_addrs(Vec::new())
        .section(
            "backends:\n  - {name: main, cluster: {seeds: ['127.0.0.1:1']}}\ndefaults: {backend: main}\n",
        )
        .start_with_file();
    let mut c = RawClient::connect(&strata.addr().to_string());
    // No slot map yet: Redis Cluster's own error, not a hang.
    assert_eq!(
        c.call(&["GET", "k"]),
        Resp::err("CLUSTERDOWN Hash slot not served")
    );
    let path = strata.config_path();
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        yaml.replace("name: main", "name: other")
            .replace("backend: main", "backend: other"),
    )
    .unwrap();
    let reply = c.call(&["STRATA", "RELOAD"]);
    assert!(
        reply.is_error()
            && reply
                .error_text()
                .contains("backends: adding, removing, renaming"),
        "{reply:?}"
    );
    std::fs::write(&path, yaml.replace("'127.0.0.1:1'", "'127.0.0.1:2'")).unwrap();
    let reply = c.call(&["STRATA", "RELOAD"]);
    assert!(!reply.is_error(), "{reply:?}");
    let text = format!("{reply:?}");
    assert!(
        text.contains("backends"),
        "restart needed for the seeds: {text}"
    );
}
