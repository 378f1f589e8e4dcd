//! The bench's figures: per target, round and kind of request (throughput, latency
//! percentiles and the percentile curve, hits, errors), medians over rounds, ratios between
//! targets; printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::router::{RouterFigures, LAYERS};
use super::tally::{OpTally, Tally};
use super::workload::OpKind;

/// One kind of request in one round (or, for a target's summary, over all its rounds).
#[derive(Debug, Clone, Serialize)]
pub struct OpFigures {
    pub requests: u64,
    /// Requests answered per second (for a summary: the median of the rounds).
    pub per_sec: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl OpFigures {
    pub fn of(t: &OpTally, seconds: f64) -> OpFigures {
        let h = &t.latency;
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |quantile: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(quantile))
            }
        };
        OpFigures {
            requests: t.requests(),
            per_sec: if seconds > 0.0 {
                t.requests() as f64 / seconds
            } else {
                0.0
            },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_us: q(0.50),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
            hits: t.hits,
            misses: t.misses,
            errors: t.errors,
        }
    }

    /// Hits among GETs that did not fail, 0..=1; None without any.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

/// One target's measured phase of one round.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    pub seconds: f64,
    /// All kinds together.
    pub per_sec: f64,
    pub ops: BTreeMap<OpKind, OpFigures>,
    pub errors: BTreeMap<String, u64>,
    /// Clients whose connection failed during the round.
    pub clients_failed: usize,
    /// With --rate: requests that fell due while their connection still waited for earlier
    /// replies (timed from when they were due).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    /// When the target is strata: its own per-layer figures over the round (INFO layers
    /// before and after). Empty for other servers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub strata_layers: BTreeMap<String, LayerCounts>,
    /// With --layer-mix: each layer's GET hits and misses and SETs, from the replies.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerCounts>,
}

/// The bench's per-key-space counts by layer name (the prefix without its colon).
pub fn layer_counts(prefixes: &[String], tally: &Tally) -> BTreeMap<String, LayerCounts> {
    prefixes
        .iter()
        .zip(&tally.layers)
        .map(|(prefix, &[hits, misses, writes])| {
            (
                prefix.trim_end_matches(':').to_string(),
                LayerCounts {
                    hits,
                    misses,
                    writes,
                },
            )
        })
        .collect()
}

/// A layer's hits and misses (as strata counted them, or as the replies showed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerCounts {
    pub hits: u64,
    pub misses: u64,
    pub writes: u64,
}

impl LayerCounts {
    pub fn add(&mut self, other: &LayerCounts) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.writes += other.writes;
    }

    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

/// Per-layer counts from an `INFO layers` reply (`layer_<name>:...,hits=..,misses=..,...`);
/// empty when the server has no such section (not strata).
pub fn parse_info_layers(text: &str) -> BTreeMap<String, LayerCounts> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, fields)) = line.strip_prefix("layer_").and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let mut c = LayerCounts::default();
        for pair in fields.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim().parse().unwrap_or(0);
            match k {
                "hits" => c.hits = v,
                "misses" => c.misses = v,
                "writes" => c.writes = v,
                _ => {}
            }
        }
        out.insert(name.to_string(), c);
    }
    out
}

/// What changed between two `INFO layers` readings (layers in both).
pub fn layer_delta(
    before: &BTreeMap<String, LayerCounts>,
    after: &BTreeMap<String, LayerCounts>,
) -> BTreeMap<String, LayerCounts> {
    after
        .iter()
        .filter_map(|(name, a)| {
            let b = before.get(name)?;
            Some((
                name.clone(),
                LayerCounts {
                    hits: a.hits.saturating_sub(b.hits),
                    misses: a.misses.saturating_sub(b.misses),
                    writes: a.writes.saturating_sub(b.writes),
                },
            ))
        })
        .collect()
}

impl Round {
    pub fn of(round: usize, tally: &Tally, seconds: f64, clients_failed: usize) -> Round {
        let mut ops = BTreeMap::new();
        for kind in OpKind::ALL {
            let t = tally.of(kind);
            if t.requests() > 0 {
                ops.insert(kind, OpFigures::of(t, seconds));
            }
        }
        Round {
            round,
            seconds,
            per_sec: if seconds > 0.0 {
                tally.requests() as f64 / seconds
            } else {
                0.0
            },
            ops,
            errors: tally.errors.clone(),
            clients_failed,
            late: None,
            strata_layers: BTreeMap::new(),
            layers: BTreeMap::new(),
        }
    }
}

/// A target over all its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub addr: String,
    pub rounds: Vec<Round>,
    /// Per kind: throughput = median of the rounds; latencies over every reply of every round.
    pub ops: BTreeMap<OpKind, OpFigures>,
    /// Per kind: the latency percentile curve over every reply of every round, as
    /// `(quantile, µs)` pairs at [`CURVE_QUANTILES`] (those the sample count resolves, and the
    /// maximum at 1.0). `--svg` draws it.
    pub percentiles: BTreeMap<OpKind, Vec<(f64, f64)>>,
    /// Median over rounds of all kinds' requests per second.
    pub per_sec: f64,
    pub errors: BTreeMap<String, u64>,
    /// The first error text of each kind.
    pub error_examples: BTreeMap<String, String>,
    /// With --rate: requests sent late over all rounds (see `Round::late`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    /// strata's own per-layer figures summed over the rounds (empty for other servers).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub strata_layers: BTreeMap<String, LayerCounts>,
    /// With --layer-mix: per layer, from the replies, summed over the rounds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerCounts>,
}

impl TargetReport {
    pub fn new(name: &str, addr: &str, rounds: Vec<Round>, all: &Tally) -> TargetReport {
        let mut ops = BTreeMap::new();
        let mut percentiles = BTreeMap::new();
        for kind in OpKind::ALL {
            let t = all.of(kind);
            if t.requests() == 0 {
                continue;
            }
            percentiles.insert(kind, percentile_curve(&t.latency));
            let mut figures = OpFigures::of(t, 0.0);
            figures.per_sec = median(
                rounds
                    .iter()
                    .filter_map(|r| r.ops.get(&kind).map(|o| o.per_sec)),
            );
            ops.insert(kind, figures);
        }
        let sum = |pick: fn(&Round) -> &BTreeMap<String, LayerCounts>| {
            let mut out: BTreeMap<String, LayerCounts> = BTreeMap::new();
            for r in &rounds {
                for (name, c) in pick(r) {
                    out.entry(name.clone()).or_default().add(c);
                }
            }
            out
        };
        let strata_layers = sum(|r| &r.strata_layers);
        let layers = sum(|r| &r.layers);
        TargetReport {
            name: name.to_string(),
            addr: addr.to_string(),
            strata_layers,
            layers,
            per_sec: median(rounds.iter().map(|r| r.per_sec)),
            late: rounds
                .iter()
                .map(|r| r.late)
                .reduce(|a, b| Some(a? + b?))
                .flatten(),
            rounds,
            ops,
            percentiles,
            errors: all.errors.clone(),
            error_examples: all.examples.clone(),
        }
    }
}

/// The quantiles of a percentile curve: HdrHistogram's plot from the median to the maximum,
/// denser where the tail bends.
pub const CURVE_QUANTILES: [f64; 11] = [
    0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

/// `(quantile, µs)` at each of [`CURVE_QUANTILES`] that the histogram's sample count
/// resolves — q below 1 needs at least one sample above it, n·(1−q) ≥ 1, else it is only the
/// maximum again — and the maximum at 1.0. Empty for an empty histogram.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    CURVE_QUANTILES
        .iter()
        // (a hair under 1: 1 − 0.999 is not exactly 0.001 in binary)
        .filter(|&&q| q >= 1.0 || n * (1.0 - q) >= 1.0 - 1e-9)
        .map(|&q| {
            let ns = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            (q, ns as f64 / 1000.0)
        })
        .collect()
}

/// One target against the first, per kind of request.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub target: String,
    pub against: String,
    pub op: OpKind,
    /// Median throughput over median throughput.
    pub per_sec: f64,
    /// Median of the per-round throughput ratios (cancels a shared machine's drift).
    pub paired: f64,
    pub p50: f64,
    pub p99: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked, as text (`--workload mixed --read-ratio 0.7 ...`).
    pub settings: BTreeMap<String, String>,
    pub targets: Vec<TargetReport>,
    pub ratios: Vec<Ratio>,
    /// `--workload router`: its figures (then `targets` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterReport>,
}

/// The router workload: each target with the cache, and the same stream without it.
#[derive(Debug, Clone, Serialize)]
pub struct RouterReport {
    pub cached: Vec<(String, RouterFigures)>,
    pub no_cache: RouterFigures,
    /// Per target: no-cache average over cached average, and cached throughput over
    /// no-cache throughput.
    pub speedup: Vec<(String, f64)>,
}

impl RouterReport {
    pub fn new(cached: Vec<(String, RouterFigures)>, no_cache: RouterFigures) -> RouterReport {
        let speedup = cached
            .iter()
            .map(|(name, f)| (name.clone(), ratio(no_cache.avg_ms, f.avg_ms)))
            .collect();
        RouterReport {
            cached,
            no_cache,
            speedup,
        }
    }

    fn table(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6}",
            "router",
            "queries",
            "avg ms",
            "p50 ms",
            "p99 ms",
            "queries/s",
            "route%",
            "meta%",
            "load%",
            "result%",
            "overall%",
            "errors",
            "scale"
        );
        let rows = self
            .cached
            .iter()
            .map(|(n, f)| (n.as_str(), f))
            .chain(std::iter::once(("no cache", &self.no_cache)));
        for (name, f) in rows {
            let pct = |layer: &str| f.hit_rate.get(layer).map_or(0.0, |r| r * 100.0);
            let _ = writeln!(
                s,
                "{:<22} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>7} {:>6.1}",
                name,
                f.queries,
                f.avg_ms,
                f.p50_ms,
                f.p99_ms,
                f.throughput,
                pct(LAYERS[0]),
                pct(LAYERS[1]),
                pct(LAYERS[2]),
                pct(LAYERS[3]),
                f.overall_hit_rate * 100.0,
                f.errors.values().sum::<u64>(),
                f.time_scale_reached
            );
        }
        for (name, x) in &self.speedup {
            let _ = writeln!(
                s,
                "speed-up with the cache ({name}): {x:.2}x (average response)"
            );
        }
    }
}

impl Report {
    pub fn new(settings: BTreeMap<String, String>, targets: Vec<TargetReport>) -> Report {
        let mut ratios = Vec::new();
        if let Some((first, rest)) = targets.split_first() {
            for t in rest {
                for (kind, mine) in &t.ops {
                    let Some(theirs) = first.ops.get(kind) else {
                        continue;
                    };
                    let per_round = t.rounds.iter().zip(&first.rounds).filter_map(|(a, b)| {
                        let (a, b) = (a.ops.get(kind)?, b.ops.get(kind)?);
                        (b.per_sec > 0.0).then(|| a.per_sec / b.per_sec)
                    });
                    ratios.push(Ratio {
                        target: t.name.clone(),
                        against: first.name.clone(),
                        op: *kind,
                        per_sec: ratio(mine.per_sec, theirs.per_sec),
                        paired: median(per_round),
                        p50: ratio(mine.p50_us, theirs.p50_us),
                        p99: ratio(mine.p99_us, theirs.p99_us),
                    });
                }
            }
        }
        Report {
            settings,
            targets,
            ratios,
            router: None,
        }
    }

    /// Requests that got an error reply or lost their connection, over every target (and,
    /// for the router workload, every cached run).
    pub fn failed_requests(&self) -> u64 {
        let targets = self.targets.iter().flat_map(|t| t.errors.values());
        let router = self
            .router
            .iter()
            .flat_map(|r| r.cached.iter().flat_map(|(_, f)| f.errors.values()));
        targets.chain(router).sum()
    }

    /// The report as a person reads it.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(router) = &self.router {
            router.table(&mut s);
            return s;
        }
        let _ = writeln!(
            s,
            "{:<22} {:<4} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8}",
            "target",
            "op",
            "req/s",
            "p50 µs",
            "p95 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "hit%",
            "errors"
        );
        for t in &self.targets {
            for (kind, o) in &t.ops {
                let hit = match (kind, o.hit_rate()) {
                    (OpKind::Get, Some(r)) => format!("{:.1}", r * 100.0),
                    _ => "-".to_string(),
                };
                let _ = writeln!(
                    s,
                    "{:<22} {:<4} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>8}",
                    t.name,
                    kind.name(),
                    o.per_sec,
                    o.p50_us,
                    o.p95_us,
                    o.p99_us,
                    o.p999_us,
                    o.max_us,
                    hit,
                    o.errors
                );
            }
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<22} {:<4} {:>10} {:>8} {:>8} {:>8}",
                "ratio", "op", "req/s", "paired", "p50", "p99"
            );
            for r in &self.ratios {
                let _ = writeln!(
                    s,
                    "{:<22} {:<4} {:>10.2} {:>8.2} {:>8.2} {:>8.2}",
                    format!("{}/{}", r.target, r.against),
                    r.op.name(),
                    r.per_sec,
                    r.paired,
                    r.p50,
                    r.p99
                );
            }
        }
        for t in &self.targets {
            let lists = [
                ("layers from the replies", &t.layers),
                ("strata's INFO layers over the run", &t.strata_layers),
            ];
            for (what, counts) in lists {
                let seen: Vec<String> = counts
                    .iter()
                    .filter(|(_, c)| c.hits + c.misses + c.writes > 0)
                    .map(|(name, c)| {
                        let rate = c
                            .hit_rate()
                            .map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
                        format!(
                            "{name} {rate} ({} hits, {} misses, {} writes)",
                            c.hits, c.misses, c.writes
                        )
                    })
                    .collect();
                if !seen.is_empty() {
                    let _ = writeln!(s, "{}: {what}: {}", t.name, seen.join("; "));
                }
            }
            if let Some(late) = t.late {
                let all: u64 = t.ops.values().map(|o| o.requests).sum();
                let share = if all > 0 {
                    late as f64 * 100.0 / all as f64
                } else {
                    0.0
                };
                let _ = writeln!(
                    s,
                    "{}: {late} of {all} requests fell due while their connection still waited ({share:.2}%): latencies are timed from when each was due",
                    t.name
                );
            }
            for (kind, n) in &t.errors {
                let example = t.error_examples.get(kind).map_or("", String::as_str);
                let _ = writeln!(s, "{}: {n} errors {kind} (first: {example})", t.name);
            }
        }
        s
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let Some(&upper) = v.get(n / 2) else {
        return 0.0;
    };
    match (n % 2, (n / 2).checked_sub(1).and_then(|i| v.get(i))) {
        (0, Some(&lower)) => (upper + lower) / 2.0,
        _ => upper,
    }
}

#[cfg(test)]
mod tests;
