//! The near cache's coherence checker (docs/near-cache.md, "Coherence checker"): writers write
//! increasing versions of keys of near-cached layers, through strata and on the nodes
//! directly; readers read them through strata; faults strike mid-run (`coherence/faults.rs`:
//! strata's tracking connection killed, all its connections to a node killed, FLUSHALL on a
//! node, a node restarted empty; keys with short TTLs expire throughout). Every read is then judged against what had been acknowledged before it began
//! (`coherence/history.rs`). Also the invalidation delay: a write made on a node directly →
//! the entry gone from strata.
//!
//! The same run with client-side caches as readers besides (`coherence/csc.rs`): each keeps
//! a cache of its own through strata's `CLIENT TRACKING` (default mode, BCAST, OPTIN in
//! turn), as a client library does; their reads, those served from their cache included, are
//! judged by the same rules (with the allowances of `history.rs`), and every fault must make
//! strata tell each of them to empty its cache. Also the invalidation delay of client
//! tracking: a write (on a node directly, or through strata) → the push reaching a tracking
//! client; and the fill race of client tracking, which the run meets too seldom to be sure
//! of, provoked round after round.
//!
//! Defaults keep the runs short; `scripts/coherence-check.sh` runs them longer with
//! `STRATA_COHERENCE_SECS` and the other settings below.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "coherence/csc.rs"]
mod csc;
#[path = "coherence/faults.rs"]
mod faults;
#[path = "coherence/history.rs"]
mod history;
#[path = "coherence/stalls.rs"]
mod stalls;
#[path = "coherence/workload.rs"]
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::layers::{info_lines, stats_field};
use common::resp3::Frame;
use common::{encode_cmd, poll_until, RawClient, RedisNode, Resp, Strata, DEADLINE};
use csc::Incoming;
use faults::{deleted, fields, strike, wait_settled, Fault, Kind as FaultKind};
use history::{judge, percentiles, Read, State, Verdict};
use workload::{reader, ttl_writer, writer, Keys, Kind, Run, READERS, WRITERS};

/// `route:` near-cached with two copies and quorum writes, `meta:` near-cached with one copy
/// (as tests/near_cache.rs). `route:` has no miss failover: a FLUSHALL of a key's first
/// replica then leaves it gone for strata's reads, where with it the other replica's copy
/// would be read (and copied back), which a stale entry could not be told from. Other keys
/// (`plain:`, with client-side caches) are in the default layer: one copy, no near cache.
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

/// `Duration` in ms with µs, for the report.
fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `p50 … p99 … max …` of `samples`.
fn spread(samples: &mut [Duration]) -> String {
    let (p50, p99, max) = percentiles(samples);
    format!("p50 {} p99 {} max {}", ms(p50), ms(p99), ms(max))
}

/// The near-cache fields of INFO `# Layers`, by near-cached layer.
fn near_figures(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, u64>> {
    let lines = info_lines(&common::layers::info(c, "layers"));
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

/// What the report's tables judge against.
struct Judged<'a> {
    histories: &'a [Vec<State>],
    names: &'a [String],
    faults: &'a [Fault],
    began: Instant,
    bound: Duration,
    /// The machine's stalls over the run (`stalls.rs`).
    stalls: &'a [stalls::Stall],
}

impl Judged<'_> {
    fn judge(&self, reads: &[Read]) -> Verdict {
        judge(self.histories, self.names, reads, self.bound)
    }

    /// One line per window: the reads that began outside any fault's window, then those that
    /// began during each fault or up to [`WINDOW_TAIL`] after it (with the reads served from
    /// a client-side cache, when there are any).
    fn print_windows(&self, reads: &[Read]) {
        let local = reads.iter().any(|r| r.local);
        let head = if local { "   local" } else { "" };
        println!(
            "{:<50} {:>8}{head} {:>7} {:>7} {:>12} {:>10}",
            "window", "reads", "errors", "stale", "max stale", "violations"
        );
        let in_window = |r: &Read, f: &Fault| r.start >= f.start && r.start <= f.end + WINDOW_TAIL;
        let mut rows: Vec<(String, Vec<Read>)> = self
            .faults
            .iter()
            .map(|f| {
                let at = f.start.duration_since(self.began);
                let rs = reads.iter().filter(|r| in_window(r, f)).cloned().collect();
                (format!("{:>5.1}s {}", at.as_secs_f64(), f.what), rs)
            })
            .collect();
        let steady: Vec<Read> = reads
            .iter()
            .filter(|r| !self.faults.iter().any(|f| in_window(r, f)))
            .cloned()
            .collect();
        rows.insert(0, ("no fault".to_string(), steady));
        for (name, rs) in &rows {
            let v = self.judge(rs);
            let max = v.stale.iter().map(|s| s.by).max().unwrap_or_default();
            let hits = if local {
                format!(" {:>8}", rs.iter().filter(|r| r.local).count())
            } else {
                String::new()
            };
            println!(
                "{name:<50} {:>8}{hits} {:>7} {:>7} {:>12} {:>10}",
                v.reads,
                v.errors,
                v.stale.len(),
                ms(max),
                v.violations.len()
            );
        }
    }

    /// The stale reads' figures, then the violations (the first ten).
    fn print_verdict(&self, v: &Verdict) {
        let mut stale = v.staleness(|_| true);
        println!(
            "stale reads: {} of {} ({:.3}%): staleness {}; {} errors; {} went back within the bound",
            stale.len(),
            v.reads,
            100.0 * stale.len() as f64 / v.reads.max(1) as f64,
            spread(&mut stale),
            v.errors,
            v.backwards
        );
        let mut stalest: Vec<&history::Stale> = v.stale.iter().collect();
        stalest.sort_by_key(|s| std::cmp::Reverse(s.by));
        for s in stalest.iter().take(5) {
            println!(
                "  stale {} ({}{}) at {:.3?}{}",
                ms(s.by),
                self.names[s.key],
                if s.expired { ", past its expiry" } else { "" },
                s.at.saturating_duration_since(self.began),
                self.stall_before(s.at)
            );
        }
        println!("violations: {}", v.violations.len());
        for x in v.violations.iter().take(10) {
            println!(
                "  {} (reader {}{}, read at {:.3?}..{:.3?}{})",
                x.what,
                x.read.reader,
                if x.read.local { ", from its cache" } else { "" },
                x.read.start.duration_since(self.began),
                x.read.end.duration_since(self.began),
                self.stall_before(x.read.start)
            );
        }
    }

    /// The largest stall of the machine in the second before `at`, for a violation's line.
    fn stall_before(&self, at: Instant) -> String {
        let since = at.checked_sub(Duration::from_secs(1)).unwrap_or(at);
        self.stalls
            .iter()
            .filter(|s| s.due + s.late >= since && s.due <= at)
            .max_by_key(|s| s.late)
            .map_or_else(String::new, |s| {
                format!(
                    "; the machine stalled {} at {:.3?}",
                    ms(s.late),
                    s.due.saturating_duration_since(self.began)
                )
            })
    }

    /// The machine's stalls: how many, the largest, and when the five largest were.
    fn print_stalls(&self) {
        let mut by_size: Vec<&stalls::Stall> = self.stalls.iter().collect();
        by_size.sort_by_key(|s| std::cmp::Reverse(s.late));
        let largest: Vec<String> = by_size
            .iter()
            .take(5)
            .map(|s| {
                format!(
                    "{} at {:.3?}",
                    ms(s.late),
                    s.due.saturating_duration_since(self.began)
                )
            })
            .collect();
        println!(
            "machine stalls (a 1 ms sleep of a thread of this process woke {} or more late): {}; largest: {}",
            ms(stalls::STALL),
            self.stalls.len(),
            if largest.is_empty() { "none".to_string() } else { largest.join(", ") }
        );
    }
}

#[test]
fn reads_through_the_near_cache_are_never_staler_than_the_bound() {
    check(0);
}

/// The same run with client-side caches as readers besides (`coherence/csc.rs`), and keys of
/// a layer without a near cache (client tracking covers every key).
#[test]
fn client_side_caches_through_client_tracking_are_never_staler_than_the_bound() {
    check(env_u64("STRATA_COHERENCE_CSC_READERS", 3) as usize);
}

/// One run of the checker, with `csc_readers` client-side caches reading besides the readers
/// through strata.
fn check(csc_readers: usize) {
    let secs = env_u64("STRATA_COHERENCE_SECS", 6);
    let bound = Duration::from_millis(env_u64("STRATA_COHERENCE_BOUND_MS", 100));
    let gap = Duration::from_millis(env_u64("STRATA_COHERENCE_FAULT_GAP_MS", 1200));
    let csc_pause = Duration::from_micros(env_u64("STRATA_COHERENCE_CSC_PAUSE_US", 100));
    let mut nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    let keys = Keys::new(&s, csc_readers > 0);
    let mut c = s.raw();
    // Tracking turned on first: the nodes' streams then report every key, and until they
    // all do, strata tells a tracking client right after each read that its key changed.
    let conns: Vec<RawClient> = (0..csc_readers)
        .map(|i| {
            csc::connect(&s.addr().to_string(), csc::Mode::of(i)).expect("a tracking connection")
        })
        .collect();
    wait_settled(&mut c, &keys.names[0]);
    if csc_readers > 0 {
        poll_until(DEADLINE, "the streams to report every key", || {
            (stats_field(&mut c, "strata_tracking_covered") == 1).then_some(())
        });
    }
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
        ryw_errors: AtomicUsize::new(0),
        flushes: (0..csc_readers).map(|_| Mutex::default()).collect(),
        csc_pause,
        bound,
    });
    let normal: Vec<usize> = [Kind::Route, Kind::Meta, Kind::Plain]
        .iter()
        .flat_map(|&k| run.keys.of(k))
        .collect();
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
    // Reader ids go on after those of the readers through strata.
    let caches: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let run = run.clone();
            let seed = 0xC2B2_AE35 + i as u64;
            thread::spawn(move || csc::reader(&run, READERS + i, i, conn, seed))
        })
        .collect();

    let watch = stalls::Watch::start();
    let began = Instant::now();
    let mut faults = Vec::new();
    let mut step = 0;
    // Every kind of fault at least once, then as many as the run has time for.
    let kinds = FaultKind::ALL.len();
    while step < kinds || began.elapsed() + gap < Duration::from_secs(secs) {
        thread::sleep(gap);
        wait_settled(&mut c, &run.keys.names[0]);
        let node = (step / kinds) % nodes.len();
        faults.push(strike(&run, &mut nodes, &mut c, step, node));
        step += 1;
    }
    thread::sleep(Duration::from_secs(secs).saturating_sub(began.elapsed()));
    run.stop.store(true, Ordering::Relaxed);
    let stalls = watch.stop();
    for w in writers {
        w.join().expect("a writer failed");
    }
    let mut reads: Vec<Read> = readers
        .into_iter()
        .flat_map(|r| r.join().expect("a reader failed"))
        .collect();
    reads.sort_by_key(|r| r.start);
    let mut cached: Vec<Read> = Vec::new();
    let mut counts = csc::Counts::default();
    for handle in caches {
        let (rs, n) = handle.join().expect("a client-side cache reader failed");
        cached.extend(rs);
        counts.keys_named += n.keys_named;
        counts.dropped += n.dropped;
        counts.flushes += n.flushes;
        counts.reconnects += n.reconnects;
    }
    cached.sort_by_key(|r| r.start);
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
    let judged = Judged {
        histories: &histories,
        names: &run.keys.names,
        faults: &faults,
        began,
        bound,
        stalls: &stalls,
    };
    let verdict = judged.judge(&reads);

    // The report.
    println!(
        "coherence checker: {elapsed:.1?}, bound {bound:?}, {writes} versions written, {} reads through strata",
        verdict.reads
    );
    judged.print_stalls();
    judged.print_windows(&reads);
    let layers = near_figures(&mut c);
    for (layer, f) in &layers {
        println!(
            "{layer}: near_hits {} near_misses {} near_fills {} near_fills_dropped {} near_invalidations {} near_flushes {}",
            f["near_hits"], f["near_misses"], f["near_fills"], f["near_fills_dropped"], f["near_invalidations"], f["near_flushes"]
        );
    }
    let ryw = run.ryw.lock().unwrap().clone();
    println!(
        "read-your-writes failures: {} ({} error replies)",
        ryw.len(),
        run.ryw_errors.load(Ordering::Relaxed)
    );
    judged.print_verdict(&verdict);
    let csc_verdict = (csc_readers > 0).then(|| {
        report_caches(&judged, &cached, counts, &mut c);
        judged.judge(&cached)
    });

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
    if let Some(v) = csc_verdict {
        assert!(
            v.violations.is_empty(),
            "{} reads of client-side caches staler than the bound (above)",
            v.violations.len()
        );
        let local = cached.iter().filter(|r| r.local).count();
        assert!(local > 0, "no read was served from a client-side cache");
        assert!(counts.dropped > 0, "no push dropped a cached value");
    }
    // The run must have exercised what it checks.
    let hits: u64 = layers.values().map(|f| f["near_hits"]).sum();
    assert!(hits > 0, "no read was served from the near cache");
    assert!(writes > 100, "only {writes} versions written");
}

/// The client-side caches' part of the report: their reads (and those served from their own
/// cache), per window, the staleness, what the pushes did, how soon each fault emptied them.
fn report_caches(judged: &Judged, cached: &[Read], counts: csc::Counts, c: &mut RawClient) {
    let v = judged.judge(cached);
    let local = cached.iter().filter(|r| r.local).count();
    let readers = cached
        .iter()
        .map(|r| r.reader)
        .collect::<BTreeSet<_>>()
        .len();
    println!(
        "client-side caches ({readers} readers, CLIENT TRACKING): {} reads, {local} served from their own cache ({:.1}%)",
        v.reads,
        100.0 * local as f64 / v.reads.max(1) as f64
    );
    judged.print_windows(cached);
    judged.print_verdict(&v);
    for mode in [csc::Mode::Default, csc::Mode::Bcast, csc::Mode::Optin] {
        // Reader ids go on after those of the readers through strata.
        let mine: Vec<Read> = cached
            .iter()
            .filter(|r| csc::Mode::of(r.reader - READERS) == mode)
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let m = judged.judge(&mine);
        println!(
            "  {} mode: {} reads, {} from its cache, {} stale, {} violations",
            mode.name(),
            m.reads,
            mine.iter().filter(|r| r.local).count(),
            m.stale.len(),
            m.violations.len()
        );
    }
    let mut expired = v.staleness(|s| s.expired);
    println!(
        "  served from a cache, a value whose TTL had run out: {}: since it ran out {} (allowed: the bound + {})",
        expired.len(),
        spread(&mut expired),
        ms(history::NODE_EXPIRY)
    );
    let mut others = v.staleness(|s| !s.expired);
    println!(
        "  the others: {}: staleness {}",
        others.len(),
        spread(&mut others)
    );
    let mut behind: Vec<Duration> = v.stale.iter().filter_map(|s| s.behind_strata).collect();
    println!(
        "  served from a cache, older than a version written through strata: {}: since its acknowledgement {}",
        behind.len(),
        spread(&mut behind)
    );
    println!(
        "pushes taken: {} keys named, {} cached values dropped, {} flushes; {} connections lost",
        counts.keys_named, counts.dropped, counts.flushes, counts.reconnects
    );
    // `strike` waited for each cache to take a flush after each fault.
    for kind in FaultKind::ALL {
        let faults: Vec<&Fault> = judged.faults.iter().filter(|f| f.kind == kind).collect();
        let mut delays: Vec<Duration> = faults
            .iter()
            .flat_map(|f| f.flushed.iter().copied())
            .collect();
        println!(
            "every cache emptied after each of {} {} faults; flush taken after the fault's start: {}",
            faults.len(),
            kind.name(),
            spread(&mut delays)
        );
    }
    println!(
        "strata: strata_tracking_invalidation_messages {} strata_tracking_invalidated_keys {} strata_tracking_flushes {}",
        stats_field(c, "strata_tracking_invalidation_messages"),
        stats_field(c, "strata_tracking_invalidated_keys"),
        stats_field(c, "strata_tracking_flushes")
    );
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
    // Reads right after a write that still returned the key's previous value: its
    // invalidation was still on its way, as it may be (the bound).
    let mut previous_read = 0;
    for i in 0..writes {
        let n = i % nodes.len();
        let key = keys[n].as_str();
        let old = format!("v{i}");
        let previous = (i >= nodes.len()).then(|| format!("v{}'", i - nodes.len()));
        assert_eq!(direct[n].call(&["SET", key, &old]), Resp::ok());
        poll_until(DEADLINE, "the key to be cached", || {
            let got = c.call(&["GET", key]);
            if got != Resp::bulk(&old) {
                assert_eq!(Some(got), previous.as_ref().map(Resp::bulk), "GET {key}");
                previous_read += 1;
                return None;
            }
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
        "invalidation delay over {writes} direct writes (write acknowledged → entry gone, at most): p50 {} p99 {} max {}; poll round trip p50 {}; gone at the first poll: {first_poll}; reads of the previous value right after a write: {previous_read}",
        ms(p50),
        ms(p99),
        ms(max),
        ms(rt50)
    );
}

/// A client's frames, read by a thread of their own: each with when it came.
struct Frames {
    rx: mpsc::Receiver<Result<(Instant, Vec<u8>), String>>,
    thread: thread::JoinHandle<()>,
}

impl Frames {
    /// Starts reading `client`'s frames; requests go out on the handle returned. The reads
    /// wait longer than anything waits for a frame: a frame not come is the waiter's failure,
    /// named by it.
    fn start(client: RawClient) -> (Frames, std::net::TcpStream) {
        client.set_read_timeout(2 * DEADLINE);
        let requests = client.try_clone_stream();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut client = client;
            loop {
                let frame = client.read_frame().map(|f| (Instant::now(), f));
                let failed = frame.is_err();
                if tx.send(frame).is_err() || failed {
                    break;
                }
            }
        });
        (Frames { rx, thread }, requests)
    }

    /// The next frame before `until`; `None` past it.
    fn next(&self, until: Instant) -> Option<(Instant, Incoming)> {
        let left = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Ok((at, bytes))) => Some((at, csc::incoming(&bytes))),
            Ok(Err(e)) => panic!("a tracking connection failed: {e}"),
            Err(_) => None,
        }
    }

    /// Whether a push naming `key` has come (and every frame that has come, taken).
    fn told_of(&self, key: &str) -> bool {
        self.rx
            .try_iter()
            .map(|f| f.map(|(_, b)| csc::incoming(&b)))
            .fold(false, |told, f| match f {
                Ok(Incoming::Invalidate(ks)) => told || ks.iter().any(|k| k == key.as_bytes()),
                Ok(_) => told,
                Err(e) => panic!("a tracking connection failed: {e}"),
            })
    }
}

/// Keys per node the client-tracking delay test cycles through: a key is read again only after
/// the others were, by then long done with the reports of its last write (strata's own and
/// its node's stream's: the first one to come is sent, the other finds the key no longer read).
const DELAY_KEYS_PER_NODE: usize = 8;

/// A write → the `invalidate` push reaching a tracking client (RESP3, `CLIENT TRACKING on`),
/// for writes made on a node directly and writes through strata by another client, in turn:
/// for each, the tracking client GETs the key (so strata notes that it read it), the key is
/// written, and a thread reading the client's connection notes when the push naming it came.
/// The delay is from the write's reply, 0 when the push came first (a write through strata
/// tells tracking clients before its writer has the reply; a node tells strata's stream
/// before its writer has the reply), and also from the write's request being sent. Figures
/// only: nothing timed is asserted, but each push must come (within [`DEADLINE`]).
#[test]
fn invalidation_delay_of_client_tracking() {
    let writes = env_u64("STRATA_INVALIDATION_WRITES", 200) as usize;
    let nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    let mut keys: Vec<(String, usize)> = Vec::new();
    for n in 0..nodes.len() {
        for _ in 0..DELAY_KEYS_PER_NODE {
            let taken: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
            keys.push((s.key_on(n, "meta:csc", &taken), n));
        }
    }
    let tracking =
        csc::connect(&s.addr().to_string(), csc::Mode::Default).expect("a tracking connection");
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams to report every key", || {
        (stats_field(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    // Requests go out on a second handle of the socket; a thread reads every frame.
    let (frames, mut requests) = Frames::start(tracking);
    let next = |until: Instant, what: &str| -> (Instant, Incoming) {
        frames
            .next(until)
            .unwrap_or_else(|| panic!("no {what} in {DEADLINE:?}"))
    };
    let mut strata = s.raw();
    let mut direct: Vec<RawClient> = nodes
        .iter()
        .map(|n| RawClient::connect(&n.addr()))
        .collect();
    // By kind (0: on the node, 1: through strata): from the acknowledgement, from the
    // request sent, and how many pushes came before the acknowledgement.
    let mut from_ack: [Vec<Duration>; 2] = Default::default();
    let mut from_sent: [Vec<Duration>; 2] = Default::default();
    let mut early = [0usize; 2];
    for i in 0..2 * writes {
        let via_strata = i % 2;
        let (key, node) = &keys[(i / 2) % keys.len()];
        // The key read, and no push naming it come since (a late report of an earlier write
        // would leave the next one untold): read again if one did.
        for attempt in 0.. {
            assert!(
                attempt < 10,
                "{key} was invalidated right after each of 10 reads"
            );
            requests.write_all(&encode_cmd(&["GET", key])).unwrap();
            let until = Instant::now() + DEADLINE;
            while !matches!(next(until, "GET's reply").1, Incoming::Reply(_)) {}
            if !frames.told_of(key) {
                break;
            }
        }
        let value = format!("v{i}");
        let sent = Instant::now();
        let reply = if via_strata == 1 {
            strata.call(&["SET", key, &value])
        } else {
            direct[*node].call(&["SET", key, &value])
        };
        let ack = Instant::now();
        assert_eq!(reply, Resp::ok());
        let until = sent + DEADLINE;
        let at = loop {
            match next(until, &format!("invalidation of {key}")) {
                (at, Incoming::Invalidate(ks)) if ks.iter().any(|k| k == key.as_bytes()) => {
                    break at
                }
                (_, Incoming::Invalidate(_)) => {}
                (_, other) => panic!("waiting for the invalidation of {key}: {other:?}"),
            }
        };
        from_ack[via_strata].push(at.saturating_duration_since(ack));
        from_sent[via_strata].push(at - sent);
        early[via_strata] += usize::from(at < ack);
    }
    requests.shutdown(Shutdown::Both).unwrap();
    frames.thread.join().expect("the frames' reader failed");
    for (kind, what) in ["made on a node directly", "through strata"]
        .iter()
        .enumerate()
    {
        println!(
            "client tracking: invalidation delay over {writes} writes {what} (write acknowledged → push received): {}; {} pushes came before the acknowledgement; from the write sent: {}",
            spread(&mut from_ack[kind]),
            early[kind],
            spread(&mut from_sent[kind])
        );
    }
}

/// Writes per round of the fill-race test: enough for reads to be sent while they go on.
const RACE_WRITES: usize = 20;

/// The fill race of client tracking (docs/client-tracking.md, "No stale value is kept
/// unreported"): a read's reply comes from a node on strata's data connection and the
/// invalidation of a write that overtook it on the node's stream, and strata may take the
/// invalidation first, before it knows the client read the key. Each round, a writer writes a
/// key [`RACE_WRITES`] times in a row (on its node directly, or through strata) while a client
/// with tracking on (default mode, or BCAST) keeps a cache of it: GET whenever it holds no
/// value, drop it on a push naming it. Once the writes are over, the value it holds must be
/// the last one written, or a push must come to drop it (within [`DEADLINE`]: an untold value
/// would be kept for ever). The coherence run meets this race too rarely to be sure of it.
#[test]
fn a_tracked_read_that_a_write_overtook_is_told() {
    let rounds = env_u64("STRATA_RACE_ROUNDS", 200) as usize;
    let nodes = RedisNode::start_many(3);
    let s = Strata::builder(&nodes).section(LAYERS).start();
    // A key of its own for each round (a push of an earlier round's writes cannot stand in
    // for the one a round waits for), on node 0: in turns of four rounds, of a layer without
    // a near cache and of a near-cached one.
    let mut keys: Vec<String> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let prefix = ["plain:race", "meta:race"][(round / 4) % 2];
        keys.push(s.key_on(0, prefix, &keys));
    }
    let clients: Vec<(Frames, std::net::TcpStream)> = [csc::Mode::Default, csc::Mode::Bcast]
        .iter()
        .map(|&mode| {
            Frames::start(csc::connect(&s.addr().to_string(), mode).expect("a tracking connection"))
        })
        .collect();
    let mut probe = s.raw();
    poll_until(DEADLINE, "the streams to report every key", || {
        (stats_field(&mut probe, "strata_tracking_covered") == 1).then_some(())
    });
    // The writer: a round's writes on request, the last value written back.
    let (to_writer, orders) = mpsc::channel::<(String, bool, usize)>();
    let (written, from_writer) = mpsc::channel::<(String, Instant)>();
    let (strata_addr, node_addr) = (s.addr().to_string(), nodes[0].addr());
    let writer = thread::spawn(move || {
        let mut strata = RawClient::connect(&strata_addr);
        let mut direct = RawClient::connect(&node_addr);
        for (key, via_strata, round) in orders {
            let mut last = String::new();
            for i in 0..RACE_WRITES {
                last = format!("v{}", round * RACE_WRITES + i);
                let c = if via_strata { &mut strata } else { &mut direct };
                assert_eq!(c.call(&["SET", &key, &last]), Resp::ok());
            }
            written.send((last, Instant::now())).unwrap();
        }
    });
    // Rounds that ended with an older value held (a push still to come), and how long after
    // the last write's reply that push came.
    let mut held_older = 0;
    let mut told_after = Vec::new();
    let mut gets = 0;
    for round in 0..rounds {
        let (frames, requests) = &clients[round % 2];
        let mode = if round % 2 == 0 { "default" } else { "BCAST" };
        let via_strata = (round / 2) % 2 == 1;
        let key = &keys[round];
        to_writer.send((key.clone(), via_strata, round)).unwrap();
        // The value held, `Some(None)` for a nil (cached as well).
        let mut held: Option<Option<Vec<u8>>> = None;
        let mut in_flight = false;
        let mut last: Option<(String, Instant)> = None;
        let until = Instant::now() + DEADLINE;
        loop {
            if last.is_none() {
                last = from_writer.try_recv().ok();
            }
            if !in_flight && held.is_none() {
                if last.is_some() {
                    break;
                }
                let mut out = requests;
                out.write_all(&encode_cmd(&["GET", key])).unwrap();
                in_flight = true;
                gets += 1;
            }
            if !in_flight && last.is_some() {
                break;
            }
            // Short waits while the writes go on: the writer's reply is polled between them.
            let wait = Instant::now() + Duration::from_millis(1);
            match frames.next(wait.min(until)) {
                Some((_, Incoming::Invalidate(ks))) => {
                    if ks.iter().any(|k| k == key.as_bytes()) {
                        held = None;
                    }
                }
                Some((_, Incoming::Flush)) => held = None,
                Some((_, Incoming::Reply(reply))) => {
                    in_flight = false;
                    held = match reply {
                        Frame::Blob(b'$', Some(v)) => Some(Some(v)),
                        Frame::Line(b'_', _) => Some(None),
                        other => panic!("GET {key} answered {other:?}"),
                    };
                }
                None => assert!(
                    Instant::now() < until,
                    "round {round} took over {DEADLINE:?}"
                ),
            }
        }
        let (last, acked) = last.unwrap();
        let Some(value) = held
            .take()
            .filter(|v| v.as_deref() != Some(last.as_bytes()))
        else {
            continue;
        };
        // An older value held: a push naming the key must come.
        held_older += 1;
        let until = Instant::now() + DEADLINE;
        let at = loop {
            match frames.next(until) {
                Some((at, Incoming::Invalidate(ks))) if ks.iter().any(|k| k == key.as_bytes()) => {
                    break at
                }
                Some((at, Incoming::Flush)) => break at,
                Some(_) => {}
                None => panic!(
                    "round {round} ({mode} mode, writes {}): {key} holds {:?} though {last} was written, and no push came in {DEADLINE:?}",
                    if via_strata { "through strata" } else { "on the node" },
                    value.as_deref().map(String::from_utf8_lossy)
                ),
            }
        };
        told_after.push(at.saturating_duration_since(acked));
    }
    drop(to_writer);
    writer.join().expect("the writer failed");
    for (frames, requests) in clients {
        requests.shutdown(Shutdown::Both).unwrap();
        frames.thread.join().expect("a frames' reader failed");
    }
    println!(
        "fill race: {rounds} rounds of {RACE_WRITES} writes, {gets} GETs; {held_older} rounds ended holding an older value, each told after the last write's reply: {}",
        spread(&mut told_after)
    );
}
