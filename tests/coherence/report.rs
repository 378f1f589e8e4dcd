//! The coherence checker's report: the tables of windows, the stale reads and violations,
//! the machine's stalls, and the client-side caches' part.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::common::layers::{info, info_lines, stats_field};
use super::common::RawClient;
use super::csc;
use super::faults::{Fault, Kind as FaultKind};
use super::history::{self, judge, percentiles, Read, State, Verdict, NODE_EXPIRY};
use super::stalls;
use super::workload::READERS;

/// Reads that begin this long after a fault ended still count in its window.
const WINDOW_TAIL: Duration = Duration::from_millis(500);
/// The span over which a worker thread's waits for a core are added up.
const WAIT_WINDOW: Duration = Duration::from_millis(200);
/// How often the watch reads them (`stalls.rs`): a look this much after a read still covers
/// the time before it.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// `Duration` in ms with µs, for the report.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `p50 … p99 … max …` of `samples`.
pub fn spread(samples: &mut [Duration]) -> String {
    let (p50, p99, max) = percentiles(samples);
    format!("p50 {} p99 {} max {}", ms(p50), ms(p99), ms(max))
}

/// The near-cache fields of INFO `# Layers`, by near-cached layer.
pub fn near_figures(c: &mut RawClient) -> BTreeMap<String, BTreeMap<String, u64>> {
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

/// What the report's tables judge against.
pub struct Judged<'a> {
    pub histories: &'a [Vec<State>],
    pub names: &'a [String],
    pub faults: &'a [Fault],
    pub began: Instant,
    pub bound: Duration,
    /// What the machine did over the run (`stalls.rs`).
    pub seen: &'a stalls::Seen,
}

impl Judged<'_> {
    pub fn judge(&self, reads: &[Read]) -> Verdict {
        judge(self.histories, self.names, reads, self.bound)
    }

    /// One line per window: the reads that began outside any fault's window, then those that
    /// began during each fault or up to [`WINDOW_TAIL`] after it (with the reads served from
    /// a client-side cache, when there are any).
    pub fn print_windows(&self, reads: &[Read]) {
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
    pub fn print_verdict(&self, v: &Verdict) {
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

    /// The largest stall of the machine in the second before `at`, and the longest a strata
    /// worker thread waited for a core in the 200 ms before it, for a read's line.
    pub fn stall_before(&self, at: Instant) -> String {
        let since = at.checked_sub(Duration::from_secs(1)).unwrap_or(at);
        let stall = self
            .seen
            .stalls
            .iter()
            .filter(|s| s.due + s.late >= since && s.due <= at)
            .max_by_key(|s| s.late)
            .map_or_else(String::new, |s| {
                format!(
                    "; the machine stalled {} at {:.3?}",
                    ms(s.late),
                    s.due.saturating_duration_since(self.began)
                )
            });
        let from = at.checked_sub(WAIT_WINDOW).unwrap_or(at);
        let wait = self.seen.longest_wait(from, at + WAIT_STEP).map_or_else(
            String::new,
            |(thread, waited)| {
                format!(
                    "; {thread} waited {} for a core in the {} before",
                    ms(waited),
                    ms(WAIT_WINDOW)
                )
            },
        );
        format!("{stall}{wait}")
    }

    /// The machine's stalls: how many, the largest, and when the five largest were; and the
    /// longest a strata worker thread waited for a core over any [`WAIT_WINDOW`].
    pub fn print_stalls(&self) {
        let mut by_size: Vec<&stalls::Stall> = self.seen.stalls.iter().collect();
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
            self.seen.stalls.len(),
            if largest.is_empty() { "none".to_string() } else { largest.join(", ") }
        );
        // Per thread, a window sliding over its waits (in the order they were seen).
        let mut worst: Option<(Duration, String, Instant)> = None;
        let threads: BTreeSet<&str> = self.seen.waits.iter().map(|w| w.tid.as_str()).collect();
        for tid in threads {
            let waits: Vec<&stalls::Wait> =
                self.seen.waits.iter().filter(|w| w.tid == tid).collect();
            let thread = waits.first().map_or("", |w| w.thread.as_str());
            let (mut first, mut sum) = (0, Duration::ZERO);
            for w in &waits {
                sum += w.waited;
                while waits[first].at + WAIT_WINDOW < w.at {
                    sum -= waits[first].waited;
                    first += 1;
                }
                if worst.as_ref().is_none_or(|(d, _, _)| sum > *d) {
                    worst = Some((sum, thread.to_string(), w.at));
                }
            }
        }
        match worst {
            Some((waited, thread, at)) => println!(
                "strata worker threads waiting for a core: the longest over {}: {thread}, {} up to {:.3?}",
                ms(WAIT_WINDOW),
                ms(waited),
                at.saturating_duration_since(self.began)
            ),
            None => println!("strata worker threads waiting for a core: not seen (no /proc/self/task/*/schedstat)"),
        }
    }
}

/// The client-side caches' part of the report: their reads (and those served from their own
/// cache), per window, the staleness, what the pushes did, how soon each fault emptied them.
pub fn report_caches(judged: &Judged, cached: &[Read], counts: csc::Counts, c: &mut RawClient) {
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
        ms(NODE_EXPIRY)
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
