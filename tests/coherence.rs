//! The near cache's coherence checker (docs/near-cache.md, "Coherence checker"): writers write
//! increasing versions of keys of near-cached layers, through strata and on the nodes
//! directly; readers read them through strata; faults strike mid-run (`coherence/faults.rs`:
//! strata's tracking connection killed, all its connections to a node killed, FLUSHALL on a
//! node, a node restarted empty; keys with short TTLs expire throughout). Every read is then
//! judged against what had been acknowledged before it began (`coherence/history.rs`), and
//! the report printed (`coherence/report.rs`).
//!
//! The same run with client-side caches as readers besides (`coherence/csc.rs`): each keeps
//! a cache of its own through strata's `CLIENT TRACKING` (default mode, BCAST, OPTIN in
//! turn), as a client library does; their reads, those served from their cache included, are
//! judged by the same rules (with the allowances of `history.rs`), and every fault must make
//! strata tell each of them to empty its cache.
//!
//! Also (`coherence/delays.rs`): the invalidation delay of the near cache (a write made on a
//! node directly → the entry gone from strata) and of client tracking (a write on a node or
//! through strata → the push reaching a tracking client), and the fill race of client
//! tracking, which the run meets too seldom to be sure of, provoked round after round.
//!
//! Defaults keep the runs short; `scripts/coherence-check.sh` runs them longer with
//! `STRATA_COHERENCE_SECS` and the other settings each test reads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "coherence/csc.rs"]
mod csc;
#[path = "coherence/delays.rs"]
mod delays;
#[path = "coherence/faults.rs"]
mod faults;
#[path = "coherence/history.rs"]
mod history;
#[path = "coherence/report.rs"]
mod report;
#[path = "coherence/stalls.rs"]
mod stalls;
#[path = "coherence/workload.rs"]
mod workload;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::layers::stats_field;
use common::{poll_until, RawClient, RedisNode, Strata, DEADLINE};
use faults::{deleted, strike, wait_settled, Kind as FaultKind};
use history::{Read, State};
use report::{near_figures, report_caches, Judged};
use workload::{reader, ttl_writer, writer, Keys, Kind, Run, READERS, WRITERS};

/// `route:` near-cached with two copies and quorum writes, `meta:` near-cached with one copy
/// (as tests/near_cache.rs). `route:` has no miss failover: a FLUSHALL of a key's first
/// replica then leaves it gone for strata's reads, where with it the other replica's copy
/// would be read (and copied back), which a stale entry could not be told from. Other keys
/// (`plain:`, with client-side caches) are in the default layer: one copy, no near cache.
pub const LAYERS: &str = r#"layers:
  - { name: route, prefix: "route:", replication: 2, write_consistency: quorum, miss_failover: false, near_cache: { max_bytes: 1mb, max_ttl: 30s } }
  - { name: meta,  prefix: "meta:",  near_cache: { max_bytes: 1mb } }
health: { heartbeat_interval: 100ms, node_timeout: 1s }
stats: { layer_keys_interval: 0s }
"#;

pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
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
    let seen = watch.stop();
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
        seen: &seen,
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
    // Hinted handoff and read repair copy values between replicas behind the writers' backs
    // (docs/replication.md): a copy that lands after a newer write brings an older version back.
    let repair = common::layers::info(&mut c, "repair");
    let field = |name: &str| {
        repair
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    println!(
        "repair: hints_stored {} hints_replayed {} hints_dropped {} repairs_failed {}",
        field("hints_stored"),
        field("hints_replayed"),
        field("hints_dropped"),
        field("repairs_failed")
    );
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
