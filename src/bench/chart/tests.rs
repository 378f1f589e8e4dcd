//! Unit tests of `chart.rs`: hand-built reports drawn to SVG text, read back for their labels.
use std::collections::BTreeMap;

use super::*;
use crate::bench::report::{percentile_curve, TargetReport};
use crate::bench::tally::Tally;

/// A target whose GETs took 1..=n µs and whose SETs took `set_us` each (none: no SETs).
fn target(name: &str, gets: u64, set_us: Option<u64>) -> TargetReport {
    let mut t = Tally::default();
    for us in 1..=gets {
        let op = t.op(OpKind::Get);
        op.record(us * 1000);
        op.ok += 1;
    }
    if let Some(us) = set_us {
        for _ in 0..100 {
            let op = t.op(OpKind::Set);
            op.record(us * 1000);
            op.ok += 1;
        }
    }
    TargetReport::new(name, "h:1", Vec::new(), &t)
}

/// The text of every `<text>` element, in order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_string())
        })
        .collect()
}

#[test]
fn a_latency_chart_has_labelled_axes_and_a_legend_of_every_target_and_kind() {
    let report = Report::new(
        BTreeMap::from([("workload".to_string(), "mixed".to_string())]),
        vec![
            target("direct", 10_000, Some(40)),
            target("strata&co", 1000, None),
        ],
    );
    let svg = render(&report).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    let texts = texts(&svg);
    for want in [
        "percentile",
        "latency (µs)",
        "50%",
        "90%",
        "99%",
        "99.9%",
        "99.99%",
        "direct GET",
        "direct SET",
        // Escaped for XML.
        "strata&amp;co GET",
        "Latency by percentile (mixed)",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want}: {texts:?}");
    }
    // strata&co sent no SET: no such line.
    assert!(!texts.iter().any(|t| t == "strata&amp;co SET"), "{texts:?}");
    // Three curves: two solid, one dashed.
    assert!(svg.matches("<polyline").count() >= 3, "{svg}");
}

#[test]
fn curves_keep_the_quantiles_the_samples_resolve_and_the_maximum() {
    let t = target("a", 1000, None);
    let curve = &t.percentiles[&OpKind::Get];
    let qs: Vec<f64> = curve.iter().map(|p| p.0).collect();
    assert_eq!(qs, [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0]);
    let max = curve.last().unwrap().1;
    assert!((max - 1000.0).abs() <= 1.0, "{curve:?}");
    assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "{curve:?}");
    // One sample: only the maximum; none: nothing.
    let mut one = Tally::default();
    one.op(OpKind::Get).record(5000);
    // (hdrhistogram's maximum is the top of its bucket: 3 significant digits.)
    match percentile_curve(&one.get.latency)[..] {
        [(q, us)] => assert!(q == 1.0 && (us - 5.0).abs() < 0.01, "{us}"),
        ref other => panic!("{other:?}"),
    }
    assert!(percentile_curve(&Tally::default().get.latency).is_empty());
}

#[test]
fn empty_zero_and_odd_figures_draw_without_nan() {
    // No targets at all, and a target whose only latencies are zero or not finite.
    let mut zero = target("zero", 10, None);
    zero.percentiles.insert(
        OpKind::Get,
        vec![
            (0.5, 0.0),
            (0.9, f64::NAN),
            (f64::NAN, 3.0),
            (1.0, f64::INFINITY),
        ],
    );
    zero.ops.clear();
    for report in [
        Report::new(BTreeMap::new(), Vec::new()),
        Report::new(BTreeMap::new(), vec![zero]),
    ] {
        let svg = render(&report).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(texts(&svg).iter().any(|t| t == "latency (µs)"));
    }
    assert_eq!(percentile_x(1.0, 0, 100.0), 1000.0);
    assert_eq!(percentile_x(0.0, 10, X_MIN), X_MIN);
    assert_eq!(percentile_label(1000.0), "99.9%");
    assert_eq!(percentile_label(2.0), "50%");
    assert_eq!(number_label(0.002), "0.002");
    assert_eq!(number_label(2000.0), "2000");
    assert_eq!(
        log_ticks(1.0, 100.0),
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    );
}

fn figures(avg: f64, over_time: Vec<Option<f64>>) -> RouterFigures {
    RouterFigures {
        queries: 100,
        avg_ms: avg,
        p50_ms: avg * 0.8,
        p99_ms: avg * 4.0,
        throughput: 0.0,
        hit_rate: BTreeMap::new(),
        hits: BTreeMap::new(),
        misses: BTreeMap::new(),
        overall_hit_rate: 0.0,
        errors: BTreeMap::new(),
        result_hit_rate_over_time: over_time,
        time_scale_reached: 1.0,
        strata_layers: BTreeMap::new(),
    }
}

#[test]
fn a_router_run_draws_both_charts_in_one_file() {
    let mut report = Report::new(BTreeMap::new(), Vec::new());
    report.router = Some(RouterReport::new(
        vec![
            (
                "strata".into(),
                figures(2.5, vec![Some(0.0), None, Some(0.75), Some(0.9)]),
            ),
            // An empty timeline and NaN figures must not break the chart.
            ("redis".into(), figures(f64::NAN, Vec::new())),
        ],
        figures(20.0, vec![Some(0.0), Some(0.0)]),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.svg");
    write(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    let texts = texts(&svg);
    for want in [
        "Router: response time per query, with and without the cache",
        "Router: result-layer hit rate over time",
        "strata (8.0x faster on average)",
        "redis",
        "no cache",
        "average",
        "p50",
        "p99",
        "ms",
        "seconds into the run",
        "result: hit rate (%)",
        "100%",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want}: {texts:?}");
    }
    // A directory that does not exist: an I/O error, not a panic.
    let err = write(&report, &dir.path().join("no/such/dir.svg")).unwrap_err();
    assert!(matches!(err, ChartError::Write(_)), "{err}");
}
