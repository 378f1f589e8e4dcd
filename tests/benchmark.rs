//! Smoke test with a real tool: `redis-benchmark` (when installed) runs SET/GET through strata,
//! plain and pipelined, without errors and without failing to read strata's CONFIG.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{RedisNode, Strata};

fn benchmark_available() -> bool {
    Command::new("redis-benchmark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs redis-benchmark against strata (killed after 30 s) and returns stdout + stderr.
fn run_benchmark(strata: &Strata, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.txt");
    let err_path = dir.path().join("err.txt");
    let port = strata.port().to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "set,get",
        "-n",
        "2000",
        "-c",
        "10",
        "-q",
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new("redis-benchmark")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn redis-benchmark");
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-benchmark {args:?} still running after 30 s");
        }
        std::thread::sleep(common::POLL_STEP);
    };
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap()
    );
    assert!(
        status.success(),
        "redis-benchmark {args:?} failed ({status}):\n{output}"
    );
    output
}

fn check_output(output: &str) {
    assert!(
        !output.contains("Could not fetch server CONFIG"),
        "redis-benchmark could not read CONFIG:\n{output}"
    );
    assert!(!output.contains("rror"), "errors reported:\n{output}");
    for test in ["SET:", "GET:"] {
        assert!(
            output
                .lines()
                .any(|l| l.contains(test) && l.contains("requests per second")),
            "no {test} result in:\n{output}"
        );
    }
}

#[test]
fn redis_benchmark_set_get() {
    if !benchmark_available() {
        println!("note: redis-benchmark is not on PATH; skipping the benchmark smoke test");
        return;
    }
    let nodes = RedisNode::start_many(3);
    let strata = Strata::start(&nodes);

    check_output(&run_benchmark(&strata, &[]));
    check_output(&run_benchmark(&strata, &["-P", "16"]));

    // Its key (no -r: the placeholder stays) went where the ring says, with a 3-byte value.
    let key = "key:__rand_int__";
    let value = strata.raw().call(&["GET", key]).text();
    assert_eq!(value.len(), 3, "{value:?}");
    for (n, node) in nodes.iter().enumerate() {
        let want = (n == strata.owner(key)).then(|| value.clone());
        assert_eq!(node.get(key), want, "node{}", n + 1);
    }
}
