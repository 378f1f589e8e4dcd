//! Unit tests of the bench's figures: medians, ratios, INFO layers, the table.

use super::*;

#[test]
fn info_layers_are_read_and_subtracted() {
    let before = parse_info_layers(
        "# Layers\r\nlayer_route:prefix=route:,ttl_ms=300000,hits=5,misses=2,hit_rate=0.71,writes=7\r\nlayer_default:prefix=,hits=0,misses=0,writes=0\r\n",
    );
    let after = parse_info_layers(
        "# Layers\r\nlayer_route:prefix=route:,ttl_ms=300000,hits=15,misses=2,hit_rate=0.88,writes=9\r\nlayer_default:prefix=,hits=0,misses=1,writes=0\r\n",
    );
    let d = layer_delta(&before, &after);
    assert_eq!(
        d["route"],
        LayerCounts {
            hits: 10,
            misses: 0,
            writes: 2
        }
    );
    assert_eq!(d["default"].misses, 1);
    // A Redis server has no such section.
    assert!(parse_info_layers("").is_empty());
}

#[test]
fn medians() {
    assert_eq!(median([].into_iter()), 0.0);
    assert_eq!(median([3.0].into_iter()), 3.0);
    assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
    assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
}

fn tally(gets: u64, hits: u64, us: u64) -> Tally {
    let mut t = Tally::default();
    for i in 0..gets {
        let op = t.op(OpKind::Get);
        op.record(us * 1000);
        op.ok += 1;
        if i < hits {
            op.hits += 1;
        } else {
            op.misses += 1;
        }
    }
    t
}

#[test]
fn ratios_compare_each_target_with_the_first() {
    let a = tally(1000, 900, 100);
    let b = tally(2000, 1000, 50);
    let ra = vec![Round::of(1, &a, 1.0, 0), Round::of(2, &a, 2.0, 0)];
    let rb = vec![Round::of(1, &b, 1.0, 0), Round::of(2, &b, 1.0, 0)];
    let mut all_a = a.clone();
    all_a.merge(&a);
    let mut all_b = b.clone();
    all_b.merge(&b);
    let report = Report::new(
        BTreeMap::new(),
        vec![
            TargetReport::new("direct", "h:1", ra, &all_a),
            TargetReport::new("strata", "h:2", rb, &all_b),
        ],
    );
    let get = &report.targets[0].ops[&OpKind::Get];
    // Rounds of 1000/s and 500/s: median 750.
    assert_eq!(get.per_sec, 750.0);
    assert_eq!(get.requests, 2000);
    assert_eq!(get.hit_rate(), Some(0.9));
    let r = &report.ratios[0];
    assert_eq!(
        (r.target.as_str(), r.against.as_str()),
        ("strata", "direct")
    );
    assert!((r.per_sec - 2000.0 / 750.0).abs() < 1e-9);
    // Per round: 2000/1000 and 2000/500.
    assert!((r.paired - 3.0).abs() < 1e-9);
    assert!((r.p50 - 0.5).abs() < 0.01);
    let table = report.table();
    assert!(table.contains("strata/direct"), "{table}");
    assert!(table.contains("90.0"), "{table}");
}
