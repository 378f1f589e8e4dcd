//! `strata bench`: strata's own load generator and benchmark. Concurrent pipelined clients
//! (the project's RESP encoder and decoder, not redis-benchmark) run a workload against one or
//! more targets — strata, a Redis server, twemproxy — alternated round by round so their
//! figures are measured side by side, and report throughput, latency percentiles
//! (hdrhistogram), hit rates and errors per target and kind of request, with the ratios of each
//! target to the first.
//!
//! - `workload`: the request mix, key distributions (uniform, Zipf) and value sizes.
//! - `client`: one connection's closed loop and the shared request budget.
//! - `phase`: one measured phase against a target, the fill, strata's INFO layers.
//! - `tally`: what a client counts (histograms, hits, errors), merged per run.
//! - `report`: the figures, medians over rounds, ratios, the table and the JSON.
//! - `chart`: the report drawn as SVG charts (`--svg`).
//! - `router`: the model-router workload (a simulated LLM router in front of the cache).

mod chart;
mod client;
mod phase;
mod report;
mod router;
mod tally;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use chart::ChartError;
pub use client::ClientError;
use client::{connect, Client};
pub use report::{OpFigures, Ratio, Report, Round, RouterReport, TargetReport};
pub use router::{RouterFigures, RouterSpec};
use tally::Tally;
pub use workload::{KeyDist, LayerMix, Mix, OpKind, SpecError, ValueSize, Workload};

/// A place to send the load: `name=host:port` or `host:port` (named after itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: String,
}

impl std::str::FromStr for Target {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, BenchError> {
        let (name, addr) = match s.split_once('=') {
            Some((n, a)) => (n.trim(), a.trim()),
            None => (s.trim(), s.trim()),
        };
        if name.is_empty() || addr.is_empty() || !addr.contains(':') {
            return Err(BenchError::Target(s.to_string()));
        }
        Ok(Target {
            name: name.to_string(),
            addr: addr.to_string(),
        })
    }
}

impl Target {
    /// The error of a client of this target.
    fn failed(&self, source: ClientError) -> BenchError {
        BenchError::Client {
            name: self.name.clone(),
            addr: self.addr.clone(),
            source,
        }
    }
}

/// When a measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Requests(u64),
    Duration(Duration),
}

/// Everything `strata bench` is asked.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub targets: Vec<Target>,
    pub workload: Workload,
    /// `--workload router`: the router simulation instead of `workload`'s mix.
    pub router: Option<RouterSpec>,
    /// Connections per target.
    pub clients: usize,
    /// Requests each connection sends before reading their replies.
    pub pipeline: usize,
    /// Open loop: requests per second per target, all clients together (None: closed loop).
    pub rate: Option<f64>,
    pub length: Length,
    pub rounds: usize,
    /// Load before each measured phase, not counted.
    pub warmup: Duration,
    /// Threads of the client's runtime.
    pub threads: usize,
    /// Seed of the clients' random streams (each client derives its own).
    pub seed: u64,
    /// Longest wait for a connection or a pipeline's replies.
    pub timeout: Duration,
    pub json: Option<PathBuf>,
    /// Also draw the report as charts in this SVG file (`chart`).
    pub svg: Option<PathBuf>,
    /// Show progress on stderr (a terminal).
    pub progress: bool,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--target: expected `host:port` or `name=host:port`, got {0:?}")]
    Target(String),
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--read-ratio must be between 0 and 1, got {0}")]
    ReadRatio(f64),
    #[error("--rate must be a number of requests per second above 0, got {0}")]
    Rate(f64),
    #[error("--rate applies to the write, read and mixed workloads; the router workload is a closed loop of --clients concurrent queries")]
    RouterRate,
    #[error("{0}")]
    Router(String),
    #[error("{name} ({addr}): {source}")]
    Client {
        name: String,
        addr: String,
        source: ClientError,
    },
    #[error("{name} ({addr}): the fill was refused: {first}")]
    Fill {
        name: String,
        addr: String,
        first: String,
    },
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Json {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Svg { path: PathBuf, source: ChartError },
}

impl BenchOptions {
    /// Refuses settings that cannot run.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.targets.is_empty() {
            return Err(BenchError::Zero("--target"));
        }
        for (what, n) in [
            ("--clients", self.clients),
            ("--pipeline", self.pipeline),
            ("--rounds", self.rounds),
            ("--threads", self.threads),
        ] {
            if n == 0 {
                return Err(BenchError::Zero(what));
            }
        }
        if self.workload.keys == 0 {
            return Err(BenchError::Zero("--keys"));
        }
        match self.length {
            Length::Requests(0) => return Err(BenchError::Zero("--requests")),
            Length::Duration(d) if d.is_zero() => return Err(BenchError::Zero("--duration")),
            _ => {}
        }
        if let Some(rate) = self.rate {
            // Below 1e-3 a client's interval overflows what a Duration holds.
            if !(rate.is_finite() && rate >= 1e-3) {
                return Err(BenchError::Rate(rate));
            }
            if self.router.is_some() {
                return Err(BenchError::RouterRate);
            }
        }
        if let Some(r) = &self.router {
            let positive = [r.route_ms, r.meta_ms, r.load_ms, r.inference_median_ms];
            if r.queries == 0 || r.models == 0 || r.result_variants == 0 {
                return Err(BenchError::Zero(
                    "--queries, --models and --result-variants",
                ));
            }
            if !(r.zipf.is_finite() && r.zipf > 0.0) {
                return Err(BenchError::Router(format!(
                    "--zipf must be above 0, got {}",
                    r.zipf
                )));
            }
            if positive.iter().any(|v| !(v.is_finite() && *v >= 0.0))
                || !(r.inference_sigma.is_finite() && r.inference_sigma >= 0.0)
            {
                return Err(BenchError::Router(
                    "the simulated costs (--route-ms, --meta-ms, --load-ms, --inference-ms, --inference-sigma) must be 0 or more".into(),
                ));
            }
            if !(r.time_scale.is_finite() && r.time_scale >= 1.0) {
                return Err(BenchError::Router(format!(
                    "--time-scale must be 1 or more, got {}",
                    r.time_scale
                )));
            }
            if !(0.0..=1.0).contains(&r.load_update) {
                return Err(BenchError::Router(format!(
                    "--load-update must be between 0 and 1, got {}",
                    r.load_update
                )));
            }
        }
        if let Mix::Mixed { read_ratio } = self.workload.mix {
            if !(0.0..=1.0).contains(&read_ratio) {
                return Err(BenchError::ReadRatio(read_ratio));
            }
        }
        Ok(())
    }

    /// The settings as the report echoes them.
    fn settings(&self) -> BTreeMap<String, String> {
        let w = &self.workload;
        let mut s = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            s.insert(k.to_string(), v);
        };
        put(
            "workload",
            match w.mix {
                Mix::Write => "write".into(),
                Mix::Read => "read".into(),
                Mix::Mixed { read_ratio } => format!("mixed (read ratio {read_ratio})"),
            },
        );
        put("keys", w.keys.to_string());
        put("key_dist", w.key_dist.to_string());
        put("key_prefix", w.key_prefix.clone());
        if let Some(mix) = &w.layers {
            put("layer_mix", mix.to_string());
        }
        put("value_size", w.value_size.to_string());
        put("clients", self.clients.to_string());
        put("pipeline", self.pipeline.to_string());
        if let Some(rate) = self.rate {
            put("rate", format!("{rate} requests/s (open loop)"));
        }
        put(
            "length",
            match self.length {
                Length::Requests(n) => format!("{n} requests"),
                Length::Duration(d) => humantime::format_duration(d).to_string(),
            },
        );
        put("rounds", self.rounds.to_string());
        put(
            "warmup",
            humantime::format_duration(self.warmup).to_string(),
        );
        put("threads", self.threads.to_string());
        put("seed", self.seed.to_string());
        if let Some(r) = &self.router {
            put("workload", "router".into());
            put("queries", r.queries.to_string());
            put("zipf", r.zipf.to_string());
            put("models", r.models.to_string());
            put(
                "costs_ms",
                format!(
                    "route {} meta {} load {} inference log-normal median {} sigma {}",
                    r.route_ms, r.meta_ms, r.load_ms, r.inference_median_ms, r.inference_sigma
                ),
            );
            put("load_update", r.load_update.to_string());
            put("result_variants", r.result_variants.to_string());
            put(
                "result_size",
                format!("{}-{}", r.result_size.0, r.result_size.1),
            );
            put("time_scale", r.time_scale.to_string());
            for k in ["keys", "key_dist", "key_prefix", "value_size", "pipeline"] {
                s.remove(k);
            }
        }
        s
    }
}

/// Runs the bench and returns its report (also written as JSON and drawn as SVG when asked).
pub fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    opts.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let report = runtime.block_on(run_all(opts))?;
    if let Some(path) = &opts.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::from)
            .and_then(|text| std::fs::write(path, text + "\n"));
        written.map_err(|source| BenchError::Json {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &opts.svg {
        chart::write(&report, path).map_err(|source| BenchError::Svg {
            path: path.clone(),
            source,
        })?;
    }
    Ok(report)
}

async fn run_all(opts: &BenchOptions) -> Result<Report, BenchError> {
    if let Some(spec) = &opts.router {
        let router = run_router(opts, spec).await?;
        let mut report = Report::new(opts.settings(), Vec::new());
        report.router = Some(router);
        return Ok(report);
    }
    if opts.workload.mix.fills() {
        for target in &opts.targets {
            phase::fill(opts, target).await?;
        }
    }
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); opts.targets.len()];
    let mut totals: Vec<Tally> = vec![Tally::default(); opts.targets.len()];
    for round in 1..=opts.rounds {
        for i in round_order(opts.targets.len(), round) {
            let Some(target) = opts.targets.get(i) else {
                continue;
            };
            if !opts.warmup.is_zero() {
                phase::run(opts, target, round, Length::Duration(opts.warmup)).await?;
            }
            let before = phase::info_layers(opts, target).await;
            let (tally, seconds, failed) = phase::run(opts, target, round, opts.length).await?;
            let mut r = Round::of(round, &tally, seconds, failed);
            r.late = opts.rate.map(|_| tally.late);
            if opts.workload.layers.is_some() {
                r.layers = report::layer_counts(&opts.workload.layer_prefixes(), &tally);
            }
            r.strata_layers = report::layer_delta(&before, &phase::info_layers(opts, target).await);
            if opts.progress {
                eprintln!(
                    "round {round}/{}: {:<16} {:>10.0} req/s{}",
                    opts.rounds,
                    target.name,
                    r.per_sec,
                    if failed > 0 {
                        format!(" ({failed} connections failed)")
                    } else {
                        String::new()
                    }
                );
            }
            if let (Some(list), Some(total)) = (rounds.get_mut(i), totals.get_mut(i)) {
                list.push(r);
                total.merge(&tally);
            }
        }
    }
    let targets = opts
        .targets
        .iter()
        .zip(rounds)
        .zip(&totals)
        .map(|((t, r), all)| TargetReport::new(&t.name, &t.addr, r, all))
        .collect();
    Ok(Report::new(opts.settings(), targets))
}

/// The targets' order in `round`: every other round in reverse, since a target run right after
/// another meets the machine in another state, so none always follows the same one.
fn round_order(targets: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..targets).collect();
    if round % 2 == 0 {
        order.reverse();
    }
    order
}

/// The router workload: each round runs every target, then the same stream with the cache
/// bypassed; figures are merged over rounds.
async fn run_router(opts: &BenchOptions, spec: &RouterSpec) -> Result<RouterReport, BenchError> {
    let mut cached: Vec<router::RouterTally> = vec![Default::default(); opts.targets.len()];
    let mut seen: Vec<BTreeMap<String, report::LayerCounts>> =
        vec![BTreeMap::new(); opts.targets.len()];
    let mut bypassed = router::RouterTally::default();
    for round in 1..=opts.rounds {
        for i in round_order(opts.targets.len(), round) {
            let Some(target) = opts.targets.get(i) else {
                continue;
            };
            let mut clients = Vec::with_capacity(opts.clients);
            for _ in 0..opts.clients {
                let stream = connect(&target.addr, opts.timeout)
                    .await
                    .map_err(|e| target.failed(e))?;
                clients.push(Client::new(stream, opts.timeout));
            }
            let before = phase::info_layers(opts, target).await;
            let budget = Arc::new(phase::budget_of(opts.length));
            let started = Instant::now();
            let tasks: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(c, mut client)| {
                    let budget = budget.clone();
                    let mut r = router::Router::new(spec, phase::client_rng(opts.seed, round, c));
                    tokio::spawn(async move {
                        router::run_cached(&mut r, &mut client, &budget, started).await
                    })
                })
                .collect();
            for task in tasks {
                let (tally, error) = match task.await {
                    Ok(done) => done,
                    Err(e) => (
                        Default::default(),
                        Some(ClientError::Protocol(e.to_string())),
                    ),
                };
                if let Some(all) = cached.get_mut(i) {
                    all.merge(&tally);
                    if let Some(e) = error {
                        *all.errors.entry("connection".into()).or_default() += 1;
                        tracing::warn!(target = %target.name, error = %e, "a router client stopped");
                    }
                }
            }
            let delta = report::layer_delta(&before, &phase::info_layers(opts, target).await);
            if let Some(sum) = seen.get_mut(i) {
                for (name, c) in delta {
                    sum.entry(name).or_default().add(&c);
                }
            }
            if opts.progress {
                eprintln!("round {round}/{}: {} done", opts.rounds, target.name);
            }
        }
        // The same streams (same seeds) with no cache.
        let budget = Arc::new(phase::budget_of(opts.length));
        let started = Instant::now();
        let tasks: Vec<_> = (0..opts.clients)
            .map(|c| {
                let budget = budget.clone();
                let mut r = router::Router::new(spec, phase::client_rng(opts.seed, round, c));
                tokio::spawn(async move { router::run_bypassed(&mut r, &budget, started).await })
            })
            .collect();
        for task in tasks {
            if let Ok(t) = task.await {
                bypassed.merge(&t);
            }
        }
        if opts.progress {
            eprintln!("round {round}/{}: no cache done", opts.rounds);
        }
    }
    Ok(RouterReport::new(
        opts.targets
            .iter()
            .zip(&cached)
            .zip(seen)
            .map(|((t, tally), layers)| {
                let mut f = RouterFigures::of(tally, opts.clients);
                f.strata_layers = layers;
                (t.name.clone(), f)
            })
            .collect(),
        RouterFigures::of(&bypassed, opts.clients),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_or_without_a_name() {
        let t: Target = "127.0.0.1:6379".parse().unwrap();
        assert_eq!(
            (t.name.as_str(), t.addr.as_str()),
            ("127.0.0.1:6379", "127.0.0.1:6379")
        );
        let t: Target = "direct=127.0.0.1:6379".parse().unwrap();
        assert_eq!(
            (t.name.as_str(), t.addr.as_str()),
            ("direct", "127.0.0.1:6379")
        );
        for bad in ["", "direct=", "=h:1", "localhost"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
