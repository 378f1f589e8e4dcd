//! A fleet: several strata processes with the same configuration in front of the same nodes,
//! as behind a TCP load balancer. They agree on where every key lives without talking to each
//! other (placement depends on the configuration only), and a membership change made the
//! supported way — the same config file on every instance, then a reload of each — reaches
//! all of them. Statistics are per instance.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::redis_cluster::RedisCluster;
use common::*;

const LAYERS: &str = "layers:\n  - {name: route, prefix: 'route:', ttl: 5m}\n  - {name: meta, prefix: 'meta:', replication: 2, write_consistency: strong}\n";

fn builder(nodes: &[&RedisNode]) -> StrataBuilder {
    StrataBuilder::with_addrs(nodes.iter().map(|n| n.addr()).collect())
        .workers(1)
        .section(LAYERS)
}

/// The config of `process` as `builder` makes it (its own listen port kept).
fn distribute(process: &StrataProcess, builder: StrataBuilder) {
    let yaml = builder
        .section(&format!("listen: 127.0.0.1:{}", process.port))
        .yaml();
    std::fs::write(process.config_path(), yaml).unwrap();
    process.signal("HUP");
}

fn info(c: &mut RawClient, section: &str) -> BTreeMap<String, String> {
    c.call(&["INFO", section])
        .text()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// `STRATA RING key`'s preference list (node ids).
fn preference(c: &mut RawClient, key: &str) -> Vec<String> {
    let reply = c.call(&["STRATA", "RING", key]);
    let items = reply.array();
    let at = items
        .iter()
        .position(|i| *i == Resp::bulk("preference"))
        .expect("preference field");
    items[at + 1].array().iter().map(|n| n.text()).collect()
}

fn keys() -> Vec<String> {
    (0..300)
        .map(|i| {
            if i % 3 == 0 {
                format!("meta:m{i}")
            } else {
                format!("route:q{i}")
            }
        })
        .collect()
}

#[test]
fn instances_agree_on_placement_and_follow_a_distributed_membership_change() {
    let nodes = RedisNode::start_many(4);
    let three: Vec<&RedisNode> = nodes[..3].iter().collect();
    let a = builder(&three).spawn();
    let b = builder(&three).spawn();
    let (mut ca, mut cb) = (a.client(), b.client());
    let keys = keys();
    // Writes through either instance, reads through the other.
    for (i, k) in keys.iter().enumerate() {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        assert_eq!(c.call(&["SET", k, &format!("v{i}")]), Resp::ok());
    }
    for (i, k) in keys.iter().enumerate() {
        let want = Resp::bulk(format!("v{i}"));
        assert_eq!(cb.call(&["GET", k]), want, "{k} through b");
        assert_eq!(ca.call(&["GET", k]), want, "{k} through a");
        assert_eq!(preference(&mut ca, k), preference(&mut cb, k), "{k}");
    }

    // node4 joins: the same file on both instances, each reloaded (SIGHUP).
    let four: Vec<&RedisNode> = nodes.iter().collect();
    distribute(&a, builder(&four));
    distribute(&b, builder(&four));
    for c in [&mut ca, &mut cb] {
        poll_until(DEADLINE, "the reload to add node4", || {
            (info(c, "ring")["ring_nodes"] == "4").then_some(())
        });
    }
    let mut moved = 0;
    for k in &keys {
        let (pa, pb) = (preference(&mut ca, k), preference(&mut cb, k));
        assert_eq!(pa, pb, "{k} after the change");
        moved += usize::from(pa.first().map(String::as_str) == Some("node4"));
    }
    assert!(
        moved > 20,
        "node4 became the primary of {moved} of {} keys",
        keys.len()
    );
    // Before the keys are moved, a key whose primary changed misses on both alike (a read
    // asks the previous owners only while a rebalance runs): the instances never disagree.
    let (mut misses, mut route_misses) = (0, 0u64);
    for k in &keys {
        let (ra, rb) = (ca.call(&["GET", k]), cb.call(&["GET", k]));
        assert_eq!(ra, rb, "{k}");
        misses += usize::from(ra == Resp::Nil);
        route_misses += u64::from(ra == Resp::Nil && k.starts_with("route:"));
    }
    assert!(
        misses > 0 && misses <= moved,
        "{misses} misses, {moved} keys moved"
    );
    // One instance moves the keys; the other reads them where they now are.
    assert!(!ca.call(&["STRATA", "REBALANCE"]).is_error());
    poll_until(Duration::from_secs(60), "the rebalance to finish", || {
        let r = info(&mut ca, "rebalance");
        (r["rebalance_running"] == "0" && r["rebalance_runs"] != "0").then_some(())
    });
    // The keys that missed were not lost: the rebalance moved them.
    for (i, k) in keys.iter().enumerate() {
        let owner = preference(&mut cb, k)[0].clone();
        let index: usize = owner.trim_start_matches("node").parse().unwrap();
        assert_eq!(
            nodes[index - 1].get(k),
            Some(format!("v{i}")),
            "{k} on its primary {owner}"
        );
        assert_eq!(cb.call(&["GET", k]), Resp::bulk(format!("v{i}")));
    }

    // b still remembers the ring before the change (it asks the old owners after a miss)
    // until it rebalances too: it finds every key in place and moves none.
    assert_eq!(info(&mut cb, "rebalance")["rebalance_rings_pending"], "1");
    assert!(!cb.call(&["STRATA", "REBALANCE"]).is_error());
    let done = poll_until(Duration::from_secs(60), "b's rebalance to finish", || {
        let r = info(&mut cb, "rebalance");
        (r["rebalance_running"] == "0" && r["rebalance_runs"] != "0").then_some(r)
    });
    assert_eq!(done["rebalance_keys_moved"], "0", "{done:?}");
    assert_eq!(done["rebalance_rings_pending"], "0");

    // Statistics are each instance's own: a counted only the reads sent to it.
    let hits = |c: &mut RawClient| -> u64 {
        let line = info(c, "layers")["layer_route"].clone();
        line.split(',')
            .find_map(|f| f.strip_prefix("hits="))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (ha, hb) = (hits(&mut ca), hits(&mut cb));
    let route_keys = keys.iter().filter(|k| k.starts_with("route:")).count() as u64;
    // a read each route: key twice before the change and once after it (a miss for the keys
    // that moved); b the same, and once more after the rebalance.
    assert_eq!(ha, 2 * route_keys - route_misses, "a's route: hits");
    assert_eq!(hb, 3 * route_keys - route_misses, "b's route: hits");
}

#[test]
fn instances_over_one_redis_cluster_agree_on_every_slot() {
    let cluster = RedisCluster::start(3, 0);
    let seeds = cluster.addrs().join("', '");
    let make = || {
        StrataBuilder::with_addrs(Vec::new())
            .workers(1)
            .section(&format!(
                "backends:\n  - {{name: main, cluster: {{seeds: ['{seeds}']}}}}\ndefaults: {{backend: main}}\n"
            ))
            .spawn()
    };
    let (a, b) = (make(), make());
    let (mut ca, mut cb) = (a.client(), b.client());
    for c in [&mut ca, &mut cb] {
        poll_until(Duration::from_secs(20), "the slot map", || {
            let text = c.call(&["INFO", "backends"]).text();
            text.contains("slots_covered=16384").then_some(())
        });
    }
    for i in 0..200 {
        let k = format!("k{i}");
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        assert_eq!(c.call(&["SET", &k, &i.to_string()]), Resp::ok());
    }
    for i in 0..200 {
        let k = format!("k{i}");
        assert_eq!(ca.call(&["GET", &k]), Resp::bulk(i.to_string()));
        assert_eq!(cb.call(&["GET", &k]), Resp::bulk(i.to_string()));
        let owner = cluster.owner_of(&k);
        assert_eq!(
            preference(&mut ca, &k)[0],
            format!("main@{}", cluster.nodes[owner].addr())
        );
        assert_eq!(preference(&mut ca, &k), preference(&mut cb, &k));
    }
}
