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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::layers::{info, info_lines};
use common::{poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};
use history::{judge, parse_value, percentiles, Read, Seen, State, Value};

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

const ROUTE_KEYS: usize = 24;
const META_KEYS: usize = 24;
const TTL_KEYS: usize = 6;
const WRITERS: usize = 2;
const READERS: usize = 3;
/// A writer's pause between two writes: keys stay cached long enough to be hit.
const WRITE_PAUSE: Duration = Duration::from_millis(2);
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

/// A cheap deterministic random number generator (xorshift), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `route:` (two copies).
    Route,
    /// `meta:` (one copy).
    Meta,
    /// `meta:` written on its node with a short TTL, left to expire.
    Ttl,
}

/// The keys of the run, by index.
struct Keys {
    names: Vec<String>,
    kinds: Vec<Kind>,
    /// The nodes holding each key (preference order: the first is where reads go).
    replicas: Vec<Vec<usize>>,
}

impl Keys {
    fn new(s: &Strata) -> Keys {
        let ring = s.ring();
        let mut keys = Keys {
            names: Vec::new(),
            kinds: Vec::new(),
            replicas: Vec::new(),
        };
        let groups = [
            (Kind::Route, "route:c", ROUTE_KEYS, 2),
            (Kind::Meta, "meta:c", META_KEYS, 1),
            (Kind::Ttl, "meta:ttl", TTL_KEYS, 1),
        ];
        for (kind, prefix, n, copies) in groups {
            for i in 0..n {
                let name = format!("{prefix}{i}");
                keys.replicas
                    .push(ring.preference_list(name.as_bytes(), copies));
                keys.names.push(name);
                keys.kinds.push(kind);
            }
        }
        keys
    }

    fn of(&self, kind: Kind) -> Vec<usize> {
        (0..self.names.len())
            .filter(|&k| self.kinds[k] == kind)
            .collect()
    }
}

/// What the threads share.
struct Run {
    keys: Keys,
    strata: String,
    nodes: Vec<String>,
    /// Each key's states, in the order they were recorded.
    histories: Vec<Mutex<Vec<State>>>,
    /// Writers hold it (shared) while writing a version; a FLUSHALL or a restart holds it
    /// alone, so no write is in flight across one and each key's history stays a sequence.
    gate: RwLock<()>,
    stop: AtomicBool,
    /// Read-your-writes failures: a writer's read right after its write through strata.
    ryw: Mutex<Vec<String>>,
}

impl Run {
    fn record(&self, key: usize, state: State) {
        self.histories[key].lock().unwrap().push(state);
    }

    /// The value the key's newest state holds.
    fn last_value(&self, key: usize) -> Value {
        let h = self.histories[key].lock().unwrap();
        h.iter().max_by_key(|s| s.ack).and_then(|s| s.value)
    }
}

/// Connections straight to the nodes, opened again after a failure (a node restarts).
struct Direct {
    addrs: Vec<String>,
    conns: Vec<Option<RawClient>>,
}

impl Direct {
    fn new(addrs: &[String]) -> Direct {
        Direct {
            addrs: addrs.to_vec(),
            conns: addrs.iter().map(|_| None).collect(),
        }
    }

    fn call(&mut self, node: usize, args: &[&str]) -> Option<Resp> {
        if self.conns[node].is_none() {
            self.conns[node] = RawClient::try_connect(&self.addrs[node]).ok();
        }
        let reply = self.conns[node].as_mut()?.try_call(args);
        if reply.is_none() {
            self.conns[node] = None;
        }
        reply
    }
}

/// Retries `write` until it succeeds (a node may be restarting); panics after [`DEADLINE`].
fn until_written(key: &str, mut write: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !write() {
        assert!(
            Instant::now() < end,
            "writes of {key} failed for {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Writes versions of `keys`, each through strata or directly on every node holding it.
fn writer(run: &Run, keys: Vec<usize>, seed: u64) {
    let mut rng = Rng(seed);
    let mut strata = RawClient::connect(&run.strata);
    let mut direct = Direct::new(&run.nodes);
    let mut versions = vec![0u64; run.keys.names.len()];
    while !run.stop.load(Ordering::Relaxed) {
        let k = keys[rng.below(keys.len())];
        let name = run.keys.names[k].as_str();
        versions[k] += 1;
        let value = format!("v{}", versions[k]);
        let via_strata = rng.next() % 2 == 0;
        let gate = run.gate.read().unwrap();
        let start = Instant::now();
        if via_strata {
            until_written(name, || {
                strata.try_call(&["SET", name, &value]) == Some(Resp::ok())
            });
        } else {
            // With two copies the version counts as written once both nodes have it: the
            // first is where strata's reads go, the second where they fail over.
            until_written(name, || {
                run.keys.replicas[k]
                    .iter()
                    .all(|&n| direct.call(n, &["SET", name, &value]) == Some(Resp::ok()))
            });
        }
        let ack = Instant::now();
        run.record(
            k,
            State {
                value: Some(versions[k]),
                also: None,
                start,
                ack,
                via_strata,
            },
        );
        if via_strata {
            // Read-your-writes is exact: no wait, no bound.
            let got = strata.try_call(&["GET", name]);
            if got != Some(Resp::bulk(&value)) {
                run.ryw
                    .lock()
                    .unwrap()
                    .push(format!("{name}: wrote {value}, read back {got:?}"));
            }
        }
        drop(gate);
        thread::sleep(WRITE_PAUSE);
    }
}

/// Writes `SET key v<n> PX <ttl>` on the key's node, then leaves the key to expire (and stay
/// gone a while) before its next version.
fn ttl_writer(run: &Run, keys: Vec<usize>, seed: u64) {
    let mut rng = Rng(seed);
    let mut direct = Direct::new(&run.nodes);
    let mut versions = vec![0u64; run.keys.names.len()];
    let mut free_at = vec![Instant::now(); run.keys.names.len()];
    while !run.stop.load(Ordering::Relaxed) {
        let k = keys[rng.below(keys.len())];
        if free_at[k] > Instant::now() {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        let name = run.keys.names[k].as_str();
        versions[k] += 1;
        let value = format!("v{}", versions[k]);
        let ttl = Duration::from_millis(30 + rng.next() % 120);
        let px = ttl.as_millis().to_string();
        let node = run.keys.replicas[k][0];
        let gate = run.gate.read().unwrap();
        let start = Instant::now();
        until_written(name, || {
            direct.call(node, &["SET", name, &value, "PX", &px]) == Some(Resp::ok())
        });
        let ack = Instant::now();
        let version = State {
            value: Some(versions[k]),
            also: None,
            start,
            ack,
            via_strata: false,
        };
        run.record(k, version);
        // The node set the expiry between `start` and `ack`.
        run.record(
            k,
            State {
                value: None,
                start: start + ttl,
                ack: ack + ttl,
                ..version
            },
        );
        drop(gate);
        free_at[k] = ack + ttl + Duration::from_millis(5 + rng.next() % 100);
    }
}

/// Reads random keys through strata until told to stop.
fn reader(run: &Run, id: usize, seed: u64) -> Vec<Read> {
    let mut rng = Rng(seed);
    let mut strata = RawClient::connect(&run.strata);
    let mut reads = Vec::new();
    while !run.stop.load(Ordering::Relaxed) {
        let key = rng.below(run.keys.names.len());
        let start = Instant::now();
        let reply = strata.try_call(&["GET", &run.keys.names[key]]);
        let end = Instant::now();
        let seen = match reply {
            Some(Resp::Nil) => Seen::Value(None),
            Some(Resp::Bulk(b)) => match parse_value(&b) {
                Some(n) => Seen::Value(Some(n)),
                None => Seen::Garbage(String::from_utf8_lossy(&b).into_owned()),
            },
            Some(Resp::Error(e)) => Seen::Error(e),
            Some(other) => Seen::Garbage(format!("{other:?}")),
            None => {
                strata = RawClient::connect(&run.strata);
                Seen::Error("connection failed".to_string())
            }
        };
        reads.push(Read {
            reader: id,
            key,
            start,
            end,
            seen,
        });
    }
    reads
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
        let v = judge(&histories, &run.keys.names, rs, bound);
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
    for layer in ["route", "meta"] {
        let lines = info_lines(&info(&mut c, "layers"));
        let f: BTreeMap<_, _> = lines[&format!("layer_{layer}")].iter().cloned().collect();
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
    let hits: u64 = ["route", "meta"]
        .iter()
        .map(|l| {
            let lines = info_lines(&info(&mut c, "layers"));
            lines[&format!("layer_{l}")]
                .iter()
                .find(|(k, _)| k == "near_hits")
                .unwrap()
                .1
                .parse::<u64>()
                .unwrap()
        })
        .sum();
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
        loop {
            let sent = Instant::now();
            let gone = !cached(&mut c, key);
            let seen = Instant::now();
            round_trips.push(seen - sent);
            if gone {
                delays.push(seen - ack);
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
        "invalidation delay over {writes} direct writes (write acknowledged → entry gone, at most): p50 {} p99 {} max {}; poll round trip p50 {}",
        ms(p50),
        ms(p99),
        ms(max),
        ms(rt50)
    );
}
