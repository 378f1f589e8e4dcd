//! The model-router workload: a simulated LLM router in front of the cache, as the cache's
//! design described it. Each query (Zipf popularity over a query space) reads its routing
//! decision, the chosen model's metadata and load, and the answer:
//!
//! ```text
//! GET route:<q>            miss: routing costs --route-ms, then SET route:<q> <model>
//! GET meta:<model>         miss: lookup costs --meta-ms, then SET meta:<model> <record>
//! GET load:<model>         miss: --load-ms, then SET; also SET now and then (--load-update)
//! GET result:<q>:<model>   miss: inference (log-normal, --inference-ms median), then SET
//! ```
//!
//! With `--result-variants N` above 1, each query asks for one of N answers (its context or
//! sampling settings differ from one asking to the next: `result:<q>:<variant>:<model>`), so
//! answers are reused less often than routing decisions.
//!
//! A query's response time is the sum of the simulated costs it incurred and the measured
//! time of its cache requests. The same query stream with the cache bypassed pays every cost.
//! `--time-scale K` runs K simulated seconds per real second: each worker keeps its queries on
//! simulated time divided by K (`Pace`) and the TTLs written are divided by K, so hit rates
//! include expiry as they would over K times the run's length.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::RngExt;
use rand_distr::{Distribution, LogNormal, Zipf};
use redis_protocol::resp2::types::BytesFrame;
use serde::Serialize;
use tokio::time::Instant;

use super::client::{Client, ClientError};
use super::tally::error_kind;

/// The four layers, in the order a query reads them.
pub const LAYERS: [&str; 4] = ["route", "meta", "load", "result"];

/// The router's settings.
#[derive(Debug, Clone)]
pub struct RouterSpec {
    /// Distinct queries (popularity: Zipf with exponent `zipf`).
    pub queries: u64,
    pub zipf: f64,
    pub models: u64,
    /// Simulated costs of a miss, ms.
    pub route_ms: f64,
    pub meta_ms: f64,
    pub load_ms: f64,
    /// Inference: log-normal with this median (ms) and sigma.
    pub inference_median_ms: f64,
    pub inference_sigma: f64,
    /// Probability that a query also refreshes its model's load entry.
    pub load_update: f64,
    /// Size of an answer, bytes (uniform in the range).
    pub result_size: (usize, usize),
    /// Distinct answers per query, drawn uniformly: 1 makes an answer as reusable as its route.
    pub result_variants: u64,
    /// TTLs written per layer (before scaling), as the default config.yaml has them.
    pub ttl: [Duration; 4],
    pub time_scale: f64,
}

impl Default for RouterSpec {
    fn default() -> Self {
        RouterSpec {
            queries: 10_000,
            zipf: 1.0,
            models: 8,
            route_ms: 3.0,
            meta_ms: 1.0,
            load_ms: 0.4,
            inference_median_ms: 17.0,
            inference_sigma: 0.92,
            load_update: 0.05,
            result_size: (500, 4000),
            result_variants: 1,
            ttl: [
                Duration::from_secs(300),
                Duration::from_secs(60),
                Duration::from_secs(5),
                Duration::from_secs(600),
            ],
            time_scale: 1.0,
        }
    }
}

/// What one router worker (or, merged, a run) counted.
#[derive(Debug, Clone, Default)]
pub struct RouterTally {
    /// Response time per query, µs (simulated costs + measured cache time).
    pub response: Option<hdrhistogram::Histogram<u64>>,
    pub queries: u64,
    /// Per layer: hits, misses.
    pub hits: [u64; 4],
    pub misses: [u64; 4],
    pub errors: BTreeMap<String, u64>,
    /// Per real second of the run: (queries, result hits) — the hit rate over time.
    pub timeline: Vec<(u64, u64)>,
    /// Simulated time the workers covered, ms (each worker's queries' response times), and
    /// the real time they took, ms: their ratio is the time scale reached.
    pub simulated_ms: f64,
    pub real_ms: f64,
}

fn histogram() -> hdrhistogram::Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits: valid constant bounds.
    match hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(_) => std::process::abort(),
    }
}

impl RouterTally {
    fn record(&mut self, micros: u64) {
        self.response
            .get_or_insert_with(histogram)
            .saturating_record(micros.clamp(1, 3_600_000_000));
        self.queries += 1;
    }

    fn tick(&mut self, second: usize, result_hit: bool) {
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, (0, 0));
        }
        if let Some(slot) = self.timeline.get_mut(second) {
            slot.0 += 1;
            slot.1 += u64::from(result_hit);
        }
    }

    pub fn merge(&mut self, other: &RouterTally) {
        if let Some(h) = &other.response {
            let mine = self.response.get_or_insert_with(histogram);
            let _ = mine.add(h);
        }
        self.queries += other.queries;
        self.simulated_ms += other.simulated_ms;
        self.real_ms += other.real_ms;
        for i in 0..4 {
            if let (Some(a), Some(b)) = (self.hits.get_mut(i), other.hits.get(i)) {
                *a += b;
            }
            if let (Some(a), Some(b)) = (self.misses.get_mut(i), other.misses.get(i)) {
                *a += b;
            }
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), (0, 0));
        }
        for (a, b) in self.timeline.iter_mut().zip(&other.timeline) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

/// One router worker's query maker: its random stream and the spec's distributions.
pub struct Router {
    spec: RouterSpec,
    rng: SmallRng,
    popularity: Option<Zipf<f64>>,
    inference: Option<LogNormal<f64>>,
    answer: Vec<u8>,
}

/// A query's draw: which query, and what its misses would cost (ms).
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub q: u64,
    /// Which of the query's answers is asked for (0 with one variant).
    pub variant: u64,
    pub model: u64,
    pub inference_ms: f64,
    pub update_load: bool,
    pub answer_len: usize,
}

impl Router {
    pub fn new(spec: &RouterSpec, rng: SmallRng) -> Router {
        // ln(median) is mu; a bad sigma (validated by the caller) leaves inference at the median.
        let inference = LogNormal::new(
            spec.inference_median_ms.max(1e-9).ln(),
            spec.inference_sigma,
        )
        .ok();
        Router {
            popularity: Zipf::new(spec.queries.max(1) as f64, spec.zipf).ok(),
            inference,
            answer: (0..spec.result_size.1)
                .map(|i| b'a' + (i % 26) as u8)
                .collect(),
            spec: spec.clone(),
            rng,
        }
    }

    /// The next query of the stream.
    pub fn draw(&mut self) -> Query {
        let queries = self.spec.queries.max(1);
        let q = match &self.popularity {
            Some(z) => (z.sample(&mut self.rng) as u64).clamp(1, queries) - 1,
            None => self.rng.random_range(0..queries),
        };
        let inference_ms = match &self.inference {
            Some(d) => d.sample(&mut self.rng),
            None => self.spec.inference_median_ms,
        };
        let (lo, hi) = self.spec.result_size;
        let variants = self.spec.result_variants.max(1);
        Query {
            q,
            variant: if variants > 1 {
                self.rng.random_range(0..variants)
            } else {
                0
            },
            // The routing decision is a function of the query, as a router's would be.
            model: xxhash_rust::xxh3::xxh3_64(&q.to_le_bytes()) % self.spec.models.max(1),
            inference_ms,
            update_load: self.rng.random::<f64>() < self.spec.load_update,
            answer_len: if lo >= hi {
                hi
            } else {
                self.rng.random_range(lo..=hi)
            },
        }
    }

    /// What a query costs with no cache at all, ms.
    pub fn bypass_ms(&self, query: &Query) -> f64 {
        self.spec.route_ms + self.spec.meta_ms + self.spec.load_ms + query.inference_ms
    }

    fn ttl_ms(&self, layer: usize) -> u64 {
        let ttl = self.spec.ttl.get(layer).copied().unwrap_or_default();
        ((ttl.as_secs_f64() * 1000.0 / self.spec.time_scale.max(1e-9)) as u64).max(1)
    }

    /// Runs one query through the cache; returns its response time in ms, and whether its
    /// answer came from the cache.
    pub async fn query(
        &mut self,
        client: &mut Client,
        query: &Query,
        tally: &mut RouterTally,
    ) -> Result<(f64, bool), ClientError> {
        let mut cost_ms = 0.0;
        let mut cache = Duration::ZERO;
        let model = query.model.to_string();
        let keys = [
            format!("route:{}", query.q),
            format!("meta:{model}"),
            format!("load:{model}"),
            if self.spec.result_variants > 1 {
                format!("result:{}:{}:{model}", query.q, query.variant)
            } else {
                format!("result:{}:{model}", query.q)
            },
        ];
        let mut result_hit = false;
        for (layer, key) in keys.iter().enumerate() {
            let asked = Instant::now();
            let hit = self.get(client, key, tally).await?;
            cache += asked.elapsed();
            if let Some(h) = tally.hits.get_mut(layer) {
                *h += u64::from(hit);
            }
            if let Some(m) = tally.misses.get_mut(layer) {
                *m += u64::from(!hit);
            }
            let refresh = layer == 2 && query.update_load;
            if hit && !refresh {
                result_hit |= layer == 3;
                continue;
            }
            let miss_cost = match layer {
                0 => self.spec.route_ms,
                1 => self.spec.meta_ms,
                2 => self.spec.load_ms,
                _ => query.inference_ms,
            };
            if !hit {
                cost_ms += miss_cost;
            }
            let value: Vec<u8> = match layer {
                0 => model.clone().into_bytes(),
                1 => format!("{{\"model\":{model},\"ctx\":32768,\"price\":0.002}}").into_bytes(),
                2 => self.rng.random_range(0u32..100).to_string().into_bytes(),
                _ => self
                    .answer
                    .get(..query.answer_len)
                    .unwrap_or(&self.answer)
                    .to_vec(),
            };
            let ttl = self.ttl_ms(layer).to_string();
            let asked = Instant::now();
            let reply = client
                .request(&[b"SET", key.as_bytes(), &value, b"PX", ttl.as_bytes()])
                .await?;
            cache += asked.elapsed();
            if let BytesFrame::Error(text) = reply {
                *tally
                    .errors
                    .entry(error_kind(&text).to_string())
                    .or_default() += 1;
            }
        }
        // The simulated costs count whole (they were slept for 1/scale of their length), the
        // cache's requests as measured.
        Ok((cost_ms + cache.as_secs_f64() * 1000.0, result_hit))
    }

    async fn get(
        &mut self,
        client: &mut Client,
        key: &str,
        tally: &mut RouterTally,
    ) -> Result<bool, ClientError> {
        match client.request(&[b"GET", key.as_bytes()]).await? {
            BytesFrame::Null => Ok(false),
            BytesFrame::Error(text) => {
                *tally
                    .errors
                    .entry(error_kind(&text).to_string())
                    .or_default() += 1;
                Ok(false)
            }
            _ => Ok(true),
        }
    }
}

/// Keeps a router worker on simulated time: after each query, it waits until the real time
/// elapsed is the simulated time elapsed divided by the time scale. The simulated costs are
/// "paid" that way (the timer's millisecond granularity evens out over queries), and the
/// query rate per simulated second — what decides how often a TTL runs out between two
/// reads — is the router's, whatever the scale.
struct Pace {
    started: Instant,
    simulated_ms: f64,
    scale: f64,
}

impl Pace {
    fn new(scale: f64) -> Pace {
        Pace {
            started: Instant::now(),
            simulated_ms: 0.0,
            scale: scale.max(1e-9),
        }
    }

    /// Adds the worker's simulated and real time to its tally.
    fn close(&self, tally: &mut RouterTally) {
        tally.simulated_ms += self.simulated_ms;
        tally.real_ms += self.started.elapsed().as_secs_f64() * 1000.0;
    }

    async fn after(&mut self, ms: f64) {
        self.simulated_ms += ms;
        let due = self.started + Duration::from_secs_f64(self.simulated_ms / self.scale / 1000.0);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Runs router queries on `client` until `until`, counting into a tally.
pub async fn run_cached(
    router: &mut Router,
    client: &mut Client,
    until: &super::client::Budget,
    started: Instant,
) -> (RouterTally, Option<ClientError>) {
    let mut tally = RouterTally::default();
    let mut pace = Pace::new(router.spec.time_scale);
    while until.take(1) == 1 {
        let query = router.draw();
        match router.query(client, &query, &mut tally).await {
            Ok((ms, result_hit)) => {
                tally.record((ms * 1000.0) as u64);
                tally.tick(started.elapsed().as_secs() as usize, result_hit);
                pace.after(ms).await;
            }
            Err(e) => {
                pace.close(&mut tally);
                return (tally, Some(e));
            }
        }
    }
    pace.close(&mut tally);
    (tally, None)
}

/// The same query stream with the cache bypassed: every cost paid.
pub async fn run_bypassed(
    router: &mut Router,
    until: &super::client::Budget,
    started: Instant,
) -> RouterTally {
    let mut tally = RouterTally::default();
    let mut pace = Pace::new(router.spec.time_scale);
    while until.take(1) == 1 {
        let query = router.draw();
        let ms = router.bypass_ms(&query);
        pace.after(ms).await;
        for m in tally.misses.iter_mut() {
            *m += 1;
        }
        tally.record((ms * 1000.0) as u64);
        tally.tick(started.elapsed().as_secs() as usize, false);
    }
    pace.close(&mut tally);
    tally
}

/// A router run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RouterFigures {
    pub queries: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Closed loop: clients / average response time (Little's law), queries per second.
    pub throughput: f64,
    /// Per layer hit rate, 0..=1, and the GETs behind it.
    pub hit_rate: BTreeMap<String, f64>,
    pub hits: BTreeMap<String, u64>,
    pub misses: BTreeMap<String, u64>,
    /// All four layers' GETs together.
    pub overall_hit_rate: f64,
    pub errors: BTreeMap<String, u64>,
    /// Per real second: the share of queries answered from the cache (None for a second in
    /// which no query finished: no rate, not a rate of 0).
    pub result_hit_rate_over_time: Vec<Option<f64>>,
    /// Simulated seconds per real second the workers kept up (at most --time-scale: a cache
    /// round trip cannot be shortened, so a high scale may not be reached).
    pub time_scale_reached: f64,
    /// When the target is strata: its own per-layer counts over the runs (INFO layers).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub strata_layers: BTreeMap<String, super::report::LayerCounts>,
}

impl RouterFigures {
    pub fn of(t: &RouterTally, clients: usize) -> RouterFigures {
        let (avg, p50, p99) = match &t.response {
            Some(h) if !h.is_empty() => (
                h.mean() / 1000.0,
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
            ),
            _ => (0.0, 0.0, 0.0),
        };
        let rate = |h: u64, m: u64| {
            if h + m > 0 {
                h as f64 / (h + m) as f64
            } else {
                0.0
            }
        };
        let hit_rate = LAYERS
            .iter()
            .zip(t.hits.iter().zip(&t.misses))
            .map(|(name, (&h, &m))| (name.to_string(), rate(h, m)))
            .collect();
        let per_layer = |counts: &[u64; 4]| {
            LAYERS
                .iter()
                .zip(counts)
                .map(|(name, &n)| (name.to_string(), n))
                .collect()
        };
        RouterFigures {
            hits: per_layer(&t.hits),
            misses: per_layer(&t.misses),
            queries: t.queries,
            avg_ms: avg,
            p50_ms: p50,
            p99_ms: p99,
            throughput: if avg > 0.0 {
                clients as f64 * 1000.0 / avg
            } else {
                0.0
            },
            hit_rate,
            overall_hit_rate: rate(t.hits.iter().sum(), t.misses.iter().sum()),
            errors: t.errors.clone(),
            strata_layers: BTreeMap::new(),
            time_scale_reached: if t.real_ms > 0.0 {
                t.simulated_ms / t.real_ms
            } else {
                0.0
            },
            result_hit_rate_over_time: t
                .timeline
                .iter()
                .map(|&(q, h)| (q > 0).then(|| h as f64 / q as f64))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_bypassed_router_lands_near_the_design_s_30_ms() {
        let spec = RouterSpec::default();
        let mut r = Router::new(&spec, SmallRng::seed_from_u64(3));
        let n = 200_000;
        let mut sum = 0.0;
        let mut all = Vec::with_capacity(n);
        for _ in 0..n {
            let q = r.draw();
            let ms = r.bypass_ms(&q);
            sum += ms;
            all.push(ms);
        }
        all.sort_by(f64::total_cmp);
        let avg = sum / n as f64;
        let p99 = all[n * 99 / 100];
        assert!((avg - 30.4).abs() < 1.0, "avg {avg}");
        assert!((130.0..170.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn a_query_s_model_is_a_function_of_the_query() {
        let spec = RouterSpec::default();
        let mut a = Router::new(&spec, SmallRng::seed_from_u64(1));
        let mut seen = BTreeMap::new();
        for _ in 0..10_000 {
            let q = a.draw();
            assert!(q.model < spec.models);
            assert_eq!(*seen.entry(q.q).or_insert(q.model), q.model);
            assert!((500..=4000).contains(&q.answer_len));
        }
        // Zipf popularity: query 0 is the most drawn.
        let mut counts = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(a.draw().q).or_insert(0u32) += 1;
        }
        let top = counts.iter().max_by_key(|(_, c)| **c).map(|(q, _)| *q);
        assert_eq!(top, Some(0));
    }

    #[test]
    fn result_variants_spread_a_query_s_answers() {
        let one = RouterSpec::default();
        let mut r = Router::new(&one, SmallRng::seed_from_u64(5));
        assert!((0..1000).all(|_| r.draw().variant == 0));
        let four = RouterSpec {
            result_variants: 4,
            ..RouterSpec::default()
        };
        let mut r = Router::new(&four, SmallRng::seed_from_u64(5));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let q = r.draw();
            assert!(q.variant < 4);
            seen.insert(q.variant);
        }
        assert_eq!(seen.len(), 4);
    }
}
