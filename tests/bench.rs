//! `strata bench` as a user runs it: the binary against strata (over three real Redis nodes)
//! and a direct Redis node in one run. Checks the report's structure and that its counts add
//! up — per round and kind, requests = hits + misses + errors; strata's own INFO counted the
//! same hits and writes — never the speed; and that `--svg` draws charts naming every target.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::layers::*;
use common::{RawClient, RedisNode};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Runs `strata bench <args> --json <file>`, which must succeed; its table and JSON report.
fn bench(args: &[String]) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, report)
}

/// Arguments as owned strings.
fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

#[test]
fn a_mixed_run_against_strata_and_redis_adds_up() {
    let nodes = RedisNode::start_many(3);
    let direct = RedisNode::start();
    let strata = start(&nodes, "");
    let (keys, requests, rounds) = (200u64, 3000u64, 2usize);

    let (stdout, report) = bench(&args(&[
        "--target",
        &format!("direct={}", direct.addr()),
        "--target",
        &format!("strata={}", strata.addr()),
        "--workload",
        "mixed",
        "--read-ratio",
        "0.6",
        "--keys",
        &keys.to_string(),
        "--key-dist",
        "zipf:0.99",
        "--key-prefix",
        "route:bench:",
        "--value-size",
        "10-100",
        "--requests",
        &requests.to_string(),
        "--rounds",
        &rounds.to_string(),
        "--clients",
        "4",
        "--pipeline",
        "8",
    ]));
    assert!(stdout.contains("strata/direct"), "{stdout}");
    assert!(
        stdout.contains("strata: strata's INFO layers over the run: route 100.0%"),
        "{stdout}"
    );

    assert_eq!(report["settings"]["key_dist"], "zipf:0.99");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    let mut strata_gets_hit = 0;
    let mut strata_sets = 0;
    for t in targets {
        let name = t["name"].as_str().unwrap();
        let rs = t["rounds"].as_array().unwrap();
        assert_eq!(rs.len(), rounds, "{name}");
        for r in rs {
            let get = &r["ops"]["get"];
            let set = &r["ops"]["set"];
            // Every request of the round was answered, and each kind adds up.
            assert_eq!(
                u(&get["requests"]) + u(&set["requests"]),
                requests,
                "{name}: {r}"
            );
            assert_eq!(
                u(&get["requests"]),
                u(&get["hits"]) + u(&get["misses"]) + u(&get["errors"]),
                "{name}: {get}"
            );
            assert_eq!(u(&get["errors"]) + u(&set["errors"]), 0, "{name}: {r}");
            // The key space was filled first and nothing expires: every GET hits.
            assert_eq!(u(&get["misses"]), 0, "{name}: {get}");
            // 60% reads, give or take (binomial, n = 3000: sd ≈ 27).
            assert!((1600..2000).contains(&u(&get["requests"])), "{name}: {get}");
            let p50 = get["p50_us"].as_f64().unwrap();
            let p99 = get["p99_us"].as_f64().unwrap();
            let max = get["max_us"].as_f64().unwrap();
            assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{name}: {get}");
            assert!(get["per_sec"].as_f64().unwrap() > 0.0, "{name}: {get}");
            if name == "strata" {
                strata_gets_hit += u(&get["hits"]);
                strata_sets += u(&set["requests"]);
                // The report read strata's own figures for the round: the same GETs and SETs.
                let route = &r["strata_layers"]["route"];
                assert_eq!(u(&route["hits"]), u(&get["hits"]), "{r}");
                assert_eq!(u(&route["misses"]), 0, "{r}");
                assert_eq!(u(&route["writes"]), u(&set["requests"]), "{r}");
            } else {
                assert!(r.get("strata_layers").is_none(), "{name}: {r}");
            }
        }
        assert!(t["errors"].as_object().unwrap().is_empty(), "{name}: {t}");
    }
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 2, "{ratios:?}");
    assert!(ratios
        .iter()
        .all(|r| r["target"] == "strata" && r["against"] == "direct"));

    // strata counted the same: the bench's hits, and its SETs plus the fill's.
    let mut c = strata.raw();
    let route = &layers(&mut c)["route"];
    assert_eq!(num(route, "hits") as u64, strata_gets_hit, "{route:?}");
    assert_eq!(num(route, "misses"), 0, "{route:?}");
    assert_eq!(num(route, "writes") as u64, strata_sets + keys, "{route:?}");
}

#[test]
fn bad_settings_and_an_unreachable_target_are_refused_with_exit_2() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--key-dist", "zipf:-1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--key-dist"), "{err}");
    let (code, err) = run(&["--value-size", "9-3"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--value-size"), "{err}");
    let (code, err) = run(&["--clients", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--clients must be at least 1"), "{err}");
    let (code, err) = run(&["--rate", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--rate must be"), "{err}");
    let (code, err) = run(&["--workload", "router", "--rate", "10"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("closed loop"), "{err}");
    let port = common::free_port();
    let (code, err) = run(&[
        "--target",
        &format!("gone=127.0.0.1:{port}"),
        "--requests",
        "10",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("gone (127.0.0.1:"), "{err}");
}

#[test]
fn the_router_workload_counts_what_strata_counts() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let queries = 400u64;
    let (stdout, report) = bench(&args(&[
        "--workload",
        "router",
        "--target",
        &format!("strata={}", strata.addr()),
        "--requests",
        &queries.to_string(),
        "--queries",
        "50",
        "--models",
        "3",
        // Simulated costs paced at 1/100 of their length: a short test (TTLs: route: 3 s).
        "--time-scale",
        "100",
        "--clients",
        "2",
        // Three answers per query: result: keys are `result:<q>:<variant>:<model>`.
        "--result-variants",
        "3",
    ]));
    assert!(
        stdout.contains("speed-up with the cache (strata)"),
        "{stdout}"
    );

    let router = &report["router"];
    let cached = &router["cached"][0];
    assert_eq!(cached[0], "strata");
    let f = &cached[1];
    assert_eq!(u(&f["queries"]), queries);
    let mut c = strata.raw();
    let layers = layers(&mut c);
    for layer in ["route", "meta", "load", "result"] {
        let (hits, misses) = (u(&f["hits"][layer]), u(&f["misses"][layer]));
        // Each query reads each layer once.
        assert_eq!(hits + misses, queries, "{layer}: {f}");
        // strata saw the same GETs.
        assert_eq!(
            num(&layers[layer], "hits") as u64,
            hits,
            "{layer}: {:?}",
            layers[layer]
        );
        assert_eq!(num(&layers[layer], "misses") as u64, misses, "{layer}");
        // The report read them too.
        assert_eq!(u(&f["strata_layers"][layer]["hits"]), hits, "{layer}: {f}");
        assert_eq!(
            u(&f["strata_layers"][layer]["misses"]),
            misses,
            "{layer}: {f}"
        );
    }
    // 50 distinct queries, and route: keys outlive the run: a query misses its route once
    // (twice when both workers draw it at the same moment).
    assert!(u(&f["misses"]["route"]) <= 2 * 50, "{f}");
    assert!(u(&f["hits"]["route"]) >= queries - 2 * 50, "{f}");
    // 150 distinct answers: each missed once (or twice in a race), never more.
    assert!(u(&f["misses"]["result"]) <= 2 * 150, "{f}");
    assert_eq!(report["settings"]["result_variants"], "3");
    let answers: usize = nodes
        .iter()
        .map(|node| {
            let mut c = RawClient::connect(&node.addr());
            c.call(&["KEYS", "result:*"]).array().len()
        })
        .sum();
    assert!(
        answers > 50,
        "{answers} result keys for 50 queries of 3 answers each"
    );
    let none = &router["no_cache"];
    assert_eq!(u(&none["queries"]), queries);
    assert_eq!(none["overall_hit_rate"].as_f64(), Some(0.0));
    // Without the cache every query pays routing and inference: slower on average.
    assert!(
        none["avg_ms"].as_f64().unwrap() > f["avg_ms"].as_f64().unwrap(),
        "{none} vs {f}"
    );
}

#[test]
fn a_layer_mix_is_counted_per_layer_as_strata_counts_it() {
    let nodes = RedisNode::start_many(3);
    let strata = start(&nodes, "");
    let (stdout, report) = bench(&args(&[
        "--target",
        &format!("strata={}", strata.addr()),
        "--workload",
        "mixed",
        "--layer-mix",
        "route=40,result=30,meta=20,load=10",
        "--keys",
        "100",
        "--requests",
        "2000",
        "--clients",
        "3",
        "--pipeline",
        "4",
    ]));
    assert!(
        stdout.contains("strata: layers from the replies: load "),
        "{stdout}"
    );

    assert_eq!(
        report["settings"]["layer_mix"],
        "route=40,result=30,meta=20,load=10"
    );
    let t = &report["targets"][0];
    let (replies, seen) = (&t["layers"], &t["strata_layers"]);
    let mut total = 0;
    for layer in ["route", "result", "meta", "load"] {
        let r = &replies[layer];
        // Each layer got its share and strata counted exactly what the replies showed.
        total += u(&r["hits"]) + u(&r["misses"]) + u(&r["writes"]);
        assert!(u(&r["hits"]) > 0, "{layer}: {r}");
        for field in ["hits", "misses", "writes"] {
            assert_eq!(u(&r[field]), u(&seen[layer][field]), "{layer} {field}: {t}");
        }
    }
    assert_eq!(total, 2000, "{t}");
    // route (40%) got more requests than load (10%).
    let n = |l: &str| u(&replies[l]["hits"]) + u(&replies[l]["misses"]) + u(&replies[l]["writes"]);
    assert!(n("route") > 2 * n("load"), "{t}");
}

#[test]
fn an_open_loop_keeps_to_its_rate_and_reports_late_requests() {
    let direct = RedisNode::start();
    // 400 requests/s for 1 s over 4 connections: the schedule holds at most 400 requests (one
    // per connection may be due at the very start), and a Redis on loopback keeps up with it.
    let (stdout, report) = bench(&args(&[
        "--target",
        &format!("direct={}", direct.addr()),
        "--workload",
        "write",
        "--clients",
        "4",
        "--rate",
        "400",
        "--duration",
        "1s",
    ]));
    let t = &report["targets"][0];
    let sent = u(&t["ops"]["set"]["requests"]);
    assert!(
        sent <= 404,
        "an open loop sent more than its schedule: {sent}"
    );
    assert!(
        sent >= 100,
        "far fewer requests than scheduled: {sent}\n{stdout}"
    );
    let late = u(&t["late"]);
    assert!(late <= sent, "{late} late of {sent}");
    assert!(
        report["settings"]["rate"].as_str().unwrap().contains("400"),
        "{report}"
    );
    assert!(stdout.contains("fell due while"), "{stdout}");

    // A request budget at a rate takes the schedule's time at least: 200 requests at 400/s.
    let (_, report) = bench(&args(&[
        "--target",
        &format!("direct={}", direct.addr()),
        "--workload",
        "write",
        "--clients",
        "2",
        "--rate",
        "400",
        "--requests",
        "200",
    ]));
    let round = &report["targets"][0]["rounds"][0];
    assert_eq!(u(&round["ops"]["set"]["requests"]), 200);
    let seconds = round["seconds"].as_f64().unwrap();
    assert!(seconds >= 0.45, "200 requests at 400/s took {seconds} s");

    // A closed loop has no schedule, so no late count.
    let (_, report) = bench(&args(&[
        "--target",
        &direct.addr(),
        "--workload",
        "write",
        "--requests",
        "100",
    ]));
    assert!(report["targets"][0].get("late").is_none(), "{report}");
}

/// Asserts that `path` is an SVG file with no NaN coordinate, showing each of `wants` as a
/// text of its own (a legend entry may go on: `direct (12.3x faster on average)`).
fn assert_svg_shows(path: &std::path::Path, wants: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(!svg.contains("NaN"), "{svg}");
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
        .collect();
    for want in wants {
        assert!(
            texts
                .iter()
                .any(|t| t == want || t.starts_with(&format!("{want} ("))),
            "{want}: {texts:?}"
        );
    }
}

#[test]
fn svg_charts_of_a_mixed_run_name_both_targets() {
    let (a, b) = (RedisNode::start(), RedisNode::start());
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("latency.svg");
    let (_, report) = bench(&args(&[
        "--target",
        &format!("first={}", a.addr()),
        "--target",
        &format!("second={}", b.addr()),
        "--workload",
        "mixed",
        "--keys",
        "100",
        "--requests",
        "2000",
        "--clients",
        "2",
        "--svg",
        svg.to_str().unwrap(),
    ]));
    assert_svg_shows(
        &svg,
        &[
            "first GET",
            "first SET",
            "second GET",
            "second SET",
            "percentile",
            "latency (µs)",
            "50%",
            "99%",
        ],
    );
    // The curves the chart drew are in the JSON: quantiles rising to the maximum, latencies
    // never falling.
    for t in report["targets"].as_array().unwrap() {
        let get = t["percentiles"]["get"].as_array().unwrap();
        let first = get.first().unwrap();
        let last = get.last().unwrap();
        assert_eq!(first[0].as_f64(), Some(0.5), "{t}");
        assert_eq!(last[0].as_f64(), Some(1.0), "{t}");
        let us: Vec<f64> = get.iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert!(us.windows(2).all(|w| w[0] <= w[1]), "{us:?}");
        assert!(
            (last[1].as_f64().unwrap() - t["ops"]["get"]["max_us"].as_f64().unwrap()).abs() < 1e-6
        );
    }
}

#[test]
fn svg_charts_of_a_router_run_show_both_charts() {
    let node = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("router.svg");
    bench(&args(&[
        "--workload",
        "router",
        "--target",
        &format!("direct={}", node.addr()),
        "--requests",
        "200",
        "--queries",
        "20",
        "--models",
        "2",
        "--time-scale",
        "100",
        "--clients",
        "2",
        "--svg",
        svg.to_str().unwrap(),
    ]));
    assert_svg_shows(
        &svg,
        &[
            "Router: response time per query, with and without the cache",
            "Router: result-layer hit rate over time",
            "direct",
            "no cache",
            "average",
            "p99",
            "result: hit rate (%)",
        ],
    );
}

#[test]
fn a_router_run_with_refused_writes_exits_1() {
    let node = RedisNode::start();
    let mut c = RawClient::connect(&node.addr());
    // No memory for any write: every SET is refused with OOM, GETs still answer.
    assert_eq!(
        c.call(&["CONFIG", "SET", "maxmemory", "1"]),
        common::Resp::ok()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "--workload", "router", "--target"])
        .arg(format!("full={}", node.addr()))
        .args(["--requests", "20", "--clients", "1", "--time-scale", "100"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let f = &report["router"]["cached"][0][1];
    assert!(u(&f["errors"]["OOM"]) > 0, "{f}");
}
