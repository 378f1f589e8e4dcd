//! One target at a time: a measured phase (clients connect, run a shared budget, their
//! tallies merge), the fill before a read workload, strata's `INFO layers`, and the pieces the
//! router runs share (budgets, per-client random streams).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::time::Instant;

use super::client::{connect, Budget, Client, Schedule};
use super::report;
use super::tally::Tally;
use super::workload::{Generator, OpKind};
use super::{BenchError, BenchOptions, Length, Target};

pub fn budget_of(length: Length) -> Budget {
    match length {
        Length::Requests(n) => Budget::Requests(AtomicU64::new(n)),
        Length::Duration(d) => Budget::Until(Instant::now() + d),
    }
}

/// Client `c`'s random stream in `round`: the same for every target, so each sees the same
/// requests.
pub fn client_rng(seed: u64, round: usize, c: usize) -> SmallRng {
    SmallRng::seed_from_u64(
        seed.wrapping_add((round as u64) << 32)
            .wrapping_add(c as u64 + 1),
    )
}

/// strata's per-layer counts (`INFO layers`); empty for another server or on any failure
/// (the figures are an extra, not a reason to stop the run).
pub async fn info_layers(
    opts: &BenchOptions,
    target: &Target,
) -> BTreeMap<String, report::LayerCounts> {
    let Ok(stream) = connect(&target.addr, opts.timeout).await else {
        return BTreeMap::new();
    };
    let mut client = Client::new(stream, opts.timeout);
    match client.request(&[b"INFO", b"layers"]).await {
        Ok(redis_protocol::resp2::types::BytesFrame::BulkString(b)) => {
            report::parse_info_layers(&String::from_utf8_lossy(&b))
        }
        _ => BTreeMap::new(),
    }
}

/// Writes every key of the key space once (not measured), so reads can hit.
pub async fn fill(opts: &BenchOptions, target: &Target) -> Result<(), BenchError> {
    let stream = connect(&target.addr, opts.timeout)
        .await
        .map_err(|e| target.failed(e))?;
    let mut client = Client::new(stream, opts.timeout);
    let mut gen = Generator::new(&opts.workload, SmallRng::seed_from_u64(opts.seed));
    let mut out = BytesMut::new();
    const BATCH: u64 = 1000;
    let spaces = opts.workload.layer_prefixes().len() as u64;
    let total = opts.workload.keys.saturating_mul(spaces);
    let mut next = 0;
    while next < total {
        let end = (next + BATCH).min(total);
        out.clear();
        for n in next..end {
            let layer = (n / opts.workload.keys) as usize;
            gen.encode(OpKind::Set, layer, n % opts.workload.keys, &mut out);
        }
        let count = usize::try_from(end - next).unwrap_or(0);
        let errors = client
            .call_all(&out, count)
            .await
            .map_err(|e| target.failed(e))?;
        if let Some(first) = errors.into_iter().next() {
            return Err(BenchError::Fill {
                name: target.name.clone(),
                addr: target.addr.clone(),
                first,
            });
        }
        next = end;
    }
    Ok(())
}

/// One phase against `target`: every client connects, then all run for `length` (its clock
/// starts once they are connected). Returns the merged tally, the seconds from the start of
/// the load to the last reply, and how many clients' connections failed on the way.
pub async fn run(
    opts: &BenchOptions,
    target: &Target,
    round: usize,
    length: Length,
) -> Result<(Tally, f64, usize), BenchError> {
    let mut streams = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let stream = connect(&target.addr, opts.timeout)
            .await
            .map_err(|e| target.failed(e))?;
        streams.push(stream);
    }
    let shared = Arc::new(budget_of(length));
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let bar = opts
        .progress
        .then(|| progress_bar(length, &format!("{} round {round}", target.name)));
    let ticker = bar.clone().map(|bar| {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.set_position(match length {
                    Length::Requests(_) => done.load(Ordering::Relaxed),
                    Length::Duration(_) => started.elapsed().as_millis() as u64,
                });
            }
        })
    });
    let mut tasks = Vec::with_capacity(opts.clients);
    for (i, stream) in streams.into_iter().enumerate() {
        let budget = shared.clone();
        let done = done.clone();
        let workload = opts.workload.clone();
        let (pipeline, timeout) = (opts.pipeline, opts.timeout);
        let rng = client_rng(opts.seed, round, i);
        let schedule = opts.rate.map(|rate| schedule(rate, opts, i, started));
        tasks.push(tokio::spawn(async move {
            let mut gen = Generator::new(&workload, rng);
            let mut client = Client::new(stream, timeout);
            let mut tally = Tally::default();
            let result = client
                .run(&mut gen, pipeline, &budget, schedule, &mut tally, &done)
                .await;
            if let Err(e) = &result {
                tally.error("connection", &e.to_string());
            }
            (tally, result.is_err())
        }));
    }
    let mut tally = Tally::default();
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok((t, lost)) => {
                tally.merge(&t);
                failed += usize::from(lost);
            }
            Err(e) => {
                tally.error("connection", &e.to_string());
                failed += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((tally, seconds, failed))
}

/// Client `i`'s share of an open loop of `rate` requests per second over all clients: one
/// pipeline every `pipeline × clients / rate` seconds, the clients' timetables staggered
/// evenly across one interval so the target sees a steady stream, not bursts.
fn schedule(rate: f64, opts: &BenchOptions, i: usize, started: Instant) -> Schedule {
    let interval = Duration::from_secs_f64(opts.pipeline as f64 * opts.clients as f64 / rate);
    let offset = interval.mul_f64(i as f64 / opts.clients as f64);
    Schedule {
        interval,
        next: started + offset,
    }
}

/// A progress bar on stderr for one measured phase: requests answered, or time elapsed.
fn progress_bar(length: Length, label: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let (total, template) = match length {
        Length::Requests(n) => (n, "{msg} [{wide_bar}] {pos}/{len} requests"),
        Length::Duration(d) => (d.as_millis() as u64, "{msg} [{wide_bar}] {elapsed}"),
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template)
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}
