//! The near cache's coherence checker (docs/near-cache.md, "Coherence checker"): writers write
//! increasing versions of keys of near-cached layers, through strata and on the nodes
//! directly; readers read them through strata; faults strike mid-run (strata's tracking
//! connection killed, FLUSHALL on a node, a node restarted empty; keys with short TTLs expire
//! throughout). Every read is then judged against what had been acknowledged before it began
//! (`coherence/history.rs`). Also the invalidation delay: a write made on a node directly →
//! the entry gone from strata.
//!
//! Defaults keep the run short; `scripts/coherence-check.sh` runs it longer with
//! `STRATA_COHERENCE_SECS` and the other settings below.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "coherence/history.rs"]
mod history;
#[path = "coherence/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::layers::{info, info_lines};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};
use history::{judge, percentiles, Read, State, Value};
use workload::{reader, ttl_writer, writer, Keys, Kind, Run, READERS, WRITERS};

/// `route:` near-cached with two copies and quorum writes, `meta:` near-cached with one copy
/// (as tests/near_cache.rs). `route:` has no miss failover: a FLUSHALL of a key's first
/// replica then leaves it gone for strata's reads, where with it the other replica's copy
/// would be read (and copied back), which a stale entry could not be told from.
const LAYERS: &str = r#"layers:
  - { name: route, prefix: "route:", replication: 2, write_consistency: quorum, miss_failover: false, near_cache: { max_bytes: 1mb, max_ttl: 30s } }
  - { name: meta,  prefix: "meta:",  near_cache: { max_bytes: 1mb } }
health: { heartbeat_interval: 100ms, node_timeout: 1s }
stats: { layer_keys_interval: 0s }
"#;

/// Reads that begin this long after a fault ended still count in its window.
const WINDOW_TAIL: Duration = Duration::from_millis(500);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// A fault step and when it struck.
struct Fault {
    what: String,
    start: Instant,
    end: Instant,
}

/// Waits until strata serves from its near cache again: every node up and done refilling,
/// every invalidation stream live.
fn wait_settled(c: &mut RawClient, probe: &str) {
    poll_until(
        DEADLINE,
        "every node up, refilled, and the near cache live",
        || {
            let nodes = info_lines(&info(c, "nodes"));
            let settled = nodes
                .iter()
                .filter(|(name, _)| name.starts_with("node_"))
                .all(|(_, f)| {
                    f.iter().any(|(k, v)| k == "state" && v == "up")
                        && f.iter().any(|(k, v)| k == "refill" && v == "idle")
                });
            let live =
                fields(&c.call(&["STRATA", "NEARCACHE", "GET", probe]))["live"] == Resp::Int(1);
            (settled && live).then_some(())
        },
    );
}

/// A flat field/value array as a map.
fn fields(reply: &Resp) -> BTreeMap<String, Resp> {
    reply
        .array()
        .chunks(2)
        .map(|p| (p[0].text(), p[1].clone()))
        .collect()
}

/// A node's `restarts` count as strata saw it (INFO `# Nodes`).
fn restarts(c: &mut RawClient, node: usize) -> String {
    let nodes = info_lines(&info(c, "nodes"));
    nodes[&format!("node_node{}", node + 1)]
        .iter()
        .find(|(k, _)| k == "restarts")
        .map(|(_, v)| v.clone())
        .unwrap()
}

/// Strikes fault `step` (they take turns: tracking connection killed, FLUSHALL, restart) on
/// node `node`, and records in the histories what it deleted.
fn strike(
    run: &Run,
    nodes: &mut [RedisNode],
    c: &mut RawClient,
    step: usize,
    node: usize,
) -> Fault {
    let mut direct = RawClient::connect(&nodes[node].addr());
    let primary_here = |k: usize| run.keys.replicas[k][0] == node;
    match step % 3 {
        0 => {
            // strata's tracking connection is the one in tracking mode (flag `t`).
            let start = Instant::now();
            let list = direct.call(&["CLIENT", "LIST"]).text();
            let ids: Vec<&str> = list
                .lines()
                .filter(|l| {
                    l.split(' ')
                        .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
                })
                .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
                .collect();
            assert_eq!(
                ids.len(),
                1,
                "one tracking connection on node {node}: {list}"
            );
            assert_eq!(direct.call(&["CLIENT", "KILL", "ID", ids[0]]), Resp::Int(1));
            Fault {
                what: format!("CLIENT KILL of the tracking connection on node{}", node + 1),
                start,
                end: Instant::now(),
            }
        }
        1 => {
            let _gate = run.gate.write().unwrap();
            let start = Instant::now();
            assert_eq!(direct.call(&["FLUSHALL"]), Resp::ok());
            let end = Instant::now();
            // Reads go to a key's first replica and believe its miss: the keys whose first
            // replica this is are gone, the others (two copies) are read elsewhere as before.
            for k in (0..run.keys.names.len()).filter(|&k| primary_here(k)) {
                run.record(k, deleted(start, end, None));
            }
            Fault {
                what: format!("FLUSHALL on node{}", node + 1),
                start,
                end,
            }
        }
        _ => {
            let _gate = run.gate.write().unwrap();
            let before = restarts(c, node);
            let start = Instant::now();
            nodes[node].restart();
            let end = Instant::now();
            // A key of two copies whose first replica restarted may be read from the other
            // replica (a refilling node's misses are not believed) or be gone.
            for k in (0..run.keys.names.len()).filter(|&k| primary_here(k)) {
                let also = (run.keys.kinds[k] == Kind::Route).then(|| run.last_value(k));
                run.record(k, deleted(start, end, also));
            }
            // Writes resume once strata saw the restart and refilled the node: a write racing
            // the refill's copies is the replication's business (docs/replication.md), not the
            // near cache's.
            poll_until(DEADLINE, "strata to see the restart", || {
                (restarts(c, node) != before).then_some(())
            });
            wait_settled(c, &run.keys.names[0]);
            Fault {
                what: format!("node{} restarted empty", node + 1),
                start,
                end,
            }
        }
    }
}

fn deleted(start: Instant, end: Instant, also: Option<Value>) -> State {
    State {
        value: None,
        also,
        start,
        ack: end,
        via_strata: false,
    }
}

/// `Duration` in ms with µs, for the report.
fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The near-cache fields of INFO `# Layers`, by near-cached layer.
fn near_figures(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, u64>> {
    let lines = info_lines(&info(c, "layers"));
    ["route", "meta"]
        .iter()
        .map(|layer| {
            let fields = lines[&format!("layer_{layer}")]
                .iter()
                .filter(|(k, _)| k.starts_with("near_"))
                .map(|(k, v)| (k.clone(), v.parse().unwrap()))
                .collect();
            (layer.to_string(), fields)
        })
        .collect()
}

/// One line per window: the reads that began outside any fault's window, then those that
/// began during each fault or up to [`WINDOW_TAIL`] after it.
fn print_windows(
    histories: &[Vec<State>],
    names: &[String],
    reads: &[Read],
    faults: &[Fault],
    began: Instant,
    bound: Duration,
) {
    println!(
        "{:<50} {:>8} {:>7} {:>7} {:>12} {:>10}",
        "window", "reads", "errors", "stale", "max stale", "violations"
    );
    let in_window = |r: &Read, f: &Fault| r.start >= f.start && r.start <= f.end + WINDOW_TAIL;
    let mut rows: Vec<(String, Vec<Read>)> = faults
        .iter()
        .map(|f| {
            let at = f.start.duration_since(began);
            let rs = reads.iter().filter(|r| in_window(r, f)).cloned().collect();
            (format!("{:>5.1}s {}", at.as_secs_f64(), f.what), rs)
        })
        .collect();
    let steady: Vec<Read> = reads
        .iter()
        .filter(|r| !faults.iter().any(|f| in_window(r, f)))
        .cloned()
        .collect();
    rows.insert(0, ("no fault".to_string(), steady));
    for (name, rs) in &rows {
        let v = judge(histories, names, rs, bound);
        let max = v.stale.iter().max().copied().unwrap_or_default();
        println!(
            "{name:<50} {:>8} {:>7} {:>7} {:>12} {:>10}",
            v.reads,
            v.errors,
            v.stale.len(),
            ms(max),
            v.violations.len()
        );
    }
}

#[test]
fn reads_through_the_near_cache_are_never_staler_than_the_bound() {
    let secs = env_u64("STRATA_COHERENCE_SECS", 6);
    let bound = Duration::from_millis(env_u64("STRATA_COHERENCE_BOUND_MS", 100));
    let gap = Duration::from_millis(env_u64("STRATA_COHERENCE_FAULT_GAP_MS", 1500));
    let mut nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    let keys = Keys::new(&s);
    let mut c = s.raw();
    wait_settled(&mut c, &keys.names[0]);
    let run = Arc::new(Run {
        // Every key starts absent.
        histories: keys
            .names
            .iter()
            .map(|_| {
                let t0 = Instant::now();
                Mutex::new(vec![deleted(t0, t0, None)])
            })
            .collect(),
        strata: s.addr().to_string(),
        nodes: nodes.iter().map(RedisNode::addr).collect(),
        keys,
        gate: RwLock::new(()),
        stop: AtomicBool::new(false),
        ryw: Mutex::new(Vec::new()),
    });
    let normal: Vec<usize> = [run.keys.of(Kind::Route), run.keys.of(Kind::Meta)].concat();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (run, mine) = (
            run.clone(),
            normal.iter().copied().skip(w).step_by(WRITERS).collect(),
        );
        writers.push(thread::spawn(move || {
            writer(&run, mine, 0x9E37_79B9 + w as u64)
        }));
    }
    let (r, ttl) = (run.clone(), run.keys.of(Kind::Ttl));
    writers.push(thread::spawn(move || ttl_writer(&r, ttl, 0x51ED_2701)));
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let run = run.clone();
            thread::spawn(move || reader(&run, i, 0xA076_1D64 + i as u64))
        })
        .collect();

    let began = Instant::now();
    let mut faults = Vec::new();
    let mut step = 0;
    // Every kind of fault at least once, then as many as the run has time for.
    while step < 3 || began.elapsed() + gap < Duration::from_secs(secs) {
        thread::sleep(gap);
        wait_settled(&mut c, &run.keys.names[0]);
        faults.push(strike(&run, &mut nodes, &mut c, step, (step / 3) % 3));
        step += 1;
    }
    thread::sleep(Duration::from_secs(secs).saturating_sub(began.elapsed()));
    run.stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("a writer failed");
    }
    let mut reads: Vec<Read> = readers
        .into_iter()
        .flat_map(|r| r.join().expect("a reader failed"))
        .collect();
    reads.sort_by_key(|r| r.start);
    let elapsed = began.elapsed();

    let histories: Vec<Vec<State>> = run
        .histories
        .iter()
        .map(|h| h.lock().unwrap().clone())
        .collect();
    let writes: usize = histories
        .iter()
        .map(|h| h.iter().filter(|s| s.value.is_some()).count())
        .sum();
    let verdict = judge(&histories, &run.keys.names, &reads, bound);

    // The report.
    println!(
        "coherence checker: {elapsed:.1?}, bound {bound:?}, {writes} versions written, {} reads",
        verdict.reads
    );
    print_windows(&histories, &run.keys.names, &reads, &faults, began, bound);
    let mut stale = verdict.stale.clone();
    let (p50, p99, max) = percentiles(&mut stale);
    println!(
        "stale reads: {} of {} ({:.3}%): staleness p50 {} p99 {} max {}; {} errors; {} went back within the bound",
        stale.len(),
        verdict.reads,
        100.0 * stale.len() as f64 / verdict.reads.max(1) as f64,
        ms(p50),
        ms(p99),
        ms(max),
        verdict.errors,
        verdict.backwards
    );
    let layers = near_figures(&mut c);
    for (layer, f) in &layers {
        println!(
            "{layer}: near_hits {} near_misses {} near_fills {} near_fills_dropped {} near_invalidations {} near_flushes {}",
            f["near_hits"], f["near_misses"], f["near_fills"], f["near_fills_dropped"], f["near_invalidations"], f["near_flushes"]
        );
    }
    let ryw = run.ryw.lock().unwrap().clone();
    println!("read-your-writes failures: {}", ryw.len());
    println!("violations: {}", verdict.violations.len());
    for v in verdict.violations.iter().take(10) {
        println!(
            "  {} (reader {}, read at {:.3?}..{:.3?})",
            v.what,
            v.read.reader,
            v.read.start.duration_since(began),
            v.read.end.duration_since(began)
        );
    }

    assert!(
        ryw.is_empty(),
        "read-your-writes failed: {:?}",
        &ryw[..ryw.len().min(10)]
    );
    assert!(
        verdict.violations.is_empty(),
        "{} reads staler than the bound (above)",
        verdict.violations.len()
    );
    // The run must have exercised what it checks.
    let hits: u64 = layers.values().map(|f| f["near_hits"]).sum();
    assert!(hits > 0, "no read was served from the near cache");
    assert!(writes > 100, "only {writes} versions written");
}

/// A write made on a node directly → the entry gone from strata: for each write, the key is
/// made cached, written on its node, and `STRATA NEARCACHE GET` polled until it is gone. The
/// delay printed is from the write's reply to the reply of the first poll that saw the entry
/// gone (an upper bound, by one poll's round trip). Figures only: nothing timed is asserted,
/// but each entry must go (within [`DEADLINE`]).
#[test]
fn invalidation_delay_of_a_write_made_on_a_node() {
    let writes = env_u64("STRATA_INVALIDATION_WRITES", 200) as usize;
    let nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    // One key on each node, written in turn.
    let keys: Vec<String> = (0..nodes.len())
        .map(|n| s.key_on(n, "meta:delay", &[]))
        .collect();
    let mut direct: Vec<RawClient> = nodes
        .iter()
        .map(|n| RawClient::connect(&n.addr()))
        .collect();
    let mut c = s.raw();
    wait_settled(&mut c, &keys[0]);
    let cached = |c: &mut RawClient, key: &str| {
        fields(&c.call(&["STRATA", "NEARCACHE", "GET", key]))["cached"] == Resp::Int(1)
    };
    let mut delays = Vec::with_capacity(writes);
    let mut round_trips = Vec::new();
    // Writes whose entry was already gone at the first poll: the delay is below one poll's
    // round trip, the resolution of this measurement.
    let mut first_poll = 0;
    for i in 0..writes {
        let n = i % nodes.len();
        let key = keys[n].as_str();
        let old = format!("v{i}");
        assert_eq!(direct[n].call(&["SET", key, &old]), Resp::ok());
        poll_until(DEADLINE, "the key to be cached", || {
            assert_eq!(c.call(&["GET", key]), Resp::bulk(&old));
            cached(&mut c, key).then_some(())
        });
        let new = format!("v{i}'");
        assert_eq!(direct[n].call(&["SET", key, &new]), Resp::ok());
        let ack = Instant::now();
        let end = ack + DEADLINE;
        for poll in 0.. {
            let sent = Instant::now();
            let gone = !cached(&mut c, key);
            let seen = Instant::now();
            round_trips.push(seen - sent);
            if gone {
                delays.push(seen - ack);
                first_poll += usize::from(poll == 0);
                break;
            }
            assert!(
                seen < end,
                "the entry of {key} was not invalidated in {DEADLINE:?}"
            );
        }
        assert_eq!(c.call(&["GET", key]), Resp::bulk(&new));
    }
    let (p50, p99, max) = percentiles(&mut delays);
    let (rt50, _, _) = percentiles(&mut round_trips);
    println!(
        "invalidation delay over {writes} direct writes (write acknowledged → entry gone, at most): p50 {} p99 {} max {}; poll round trip p50 {}; gone at the first poll: {first_poll}",
        ms(p50),
        ms(p99),
        ms(max),
        ms(rt50)
    );
}
