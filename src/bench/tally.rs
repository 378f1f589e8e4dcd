//! What a bench client counts: per kind of request, a latency histogram (hdrhistogram, in
//! nanoseconds), hits and misses; errors by kind. Clients count on their own and are merged.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::workload::OpKind;

/// The slowest latency a histogram holds (60 s); slower ones are recorded as this.
const MAX_NANOS: u64 = 60_000_000_000;

/// Figures of one kind of request.
#[derive(Debug, Clone)]
pub struct OpTally {
    /// Latency of every reply (errors included), ns.
    pub latency: Histogram<u64>,
    /// Replies that were not errors: a GET's hit or miss, a SET's acknowledgement.
    pub ok: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl Default for OpTally {
    fn default() -> Self {
        OpTally {
            latency: new_histogram(),
            ok: 0,
            hits: 0,
            misses: 0,
            errors: 0,
        }
    }
}

/// Three significant digits from 1 ns to 60 s (about 40 KB).
fn new_histogram() -> Histogram<u64> {
    // hdrhistogram refuses only bounds below 1, a high bound under twice the low one, or more
    // than 5 significant digits: these constants are none of those.
    match Histogram::new_with_bounds(1, MAX_NANOS, 3) {
        Ok(h) => h,
        Err(_) => std::process::abort(),
    }
}

impl OpTally {
    /// Requests answered (errors included).
    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }

    pub fn record(&mut self, nanos: u64) {
        self.latency.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    pub fn merge(&mut self, other: &OpTally) {
        // Both have the same bounds: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
    }
}

/// Everything a client (or, merged, a run) counted.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub get: OpTally,
    pub set: OpTally,
    /// Errors by kind: an error reply's first word (`ERR`, `MOVED`, `NOAUTH`, ...), or
    /// `connection` for a connection that failed.
    pub errors: BTreeMap<String, u64>,
    /// The first error text of each kind, for the report.
    pub examples: BTreeMap<String, String>,
    /// Per key space (`Workload::layer_prefixes`): GET hits, GET misses, SETs acknowledged.
    pub layers: Vec<[u64; 3]>,
    /// Open loop: requests that fell due while their connection still waited for earlier
    /// replies (the target did not keep up with the rate).
    pub late: u64,
}

impl Tally {
    pub fn op(&mut self, kind: OpKind) -> &mut OpTally {
        match kind {
            OpKind::Get => &mut self.get,
            OpKind::Set => &mut self.set,
        }
    }

    pub fn of(&self, kind: OpKind) -> &OpTally {
        match kind {
            OpKind::Get => &self.get,
            OpKind::Set => &self.set,
        }
    }

    /// The counts of key space `layer` (grown as needed).
    pub fn layer(&mut self, layer: usize) -> &mut [u64; 3] {
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, [0; 3]);
        }
        match self.layers.get_mut(layer) {
            Some(c) => c,
            // Just resized to hold it.
            None => std::process::abort(),
        }
    }

    /// Counts an error of `kind` (the first text seen is kept).
    pub fn error(&mut self, kind: &str, text: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        self.examples
            .entry(kind.to_string())
            .or_insert_with(|| text.chars().take(200).collect());
    }

    pub fn merge(&mut self, other: &Tally) {
        self.get.merge(&other.get);
        self.set.merge(&other.set);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        if self.layers.len() < other.layers.len() {
            self.layers.resize(other.layers.len(), [0; 3]);
        }
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        for (k, v) in &other.examples {
            self.examples.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self.late += other.late;
    }

    /// Requests answered, every kind.
    pub fn requests(&self) -> u64 {
        self.get.requests() + self.set.requests()
    }
}

/// The kind of an error reply: its first word (Redis's error codes), `ERR` when it has none.
pub fn error_kind(text: &str) -> &str {
    match text.split_whitespace().next() {
        Some(word) if word.chars().all(|c| c.is_ascii_uppercase() || c == '_') => word,
        _ => "ERR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_latencies() {
        let mut t = OpTally::default();
        // 1..=1000 µs, one each: p50 ≈ 500 µs, p99 ≈ 990 µs, max 1000 µs.
        for us in 1..=1000u64 {
            t.record(us * 1000);
            t.ok += 1;
        }
        let p = |q: f64| t.latency.value_at_quantile(q) as f64 / 1000.0;
        assert!((p(0.5) - 500.0).abs() <= 1.0, "{}", p(0.5));
        assert!((p(0.99) - 990.0).abs() <= 1.0, "{}", p(0.99));
        assert!((t.latency.max() as f64 / 1000.0 - 1000.0).abs() <= 1.0);
        assert_eq!(t.requests(), 1000);
    }

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.op(OpKind::Get).record(10_000);
        a.op(OpKind::Get).hits += 1;
        a.op(OpKind::Get).ok += 1;
        b.op(OpKind::Get).record(30_000);
        b.op(OpKind::Get).misses += 1;
        b.op(OpKind::Get).ok += 1;
        b.error("MOVED", "MOVED 1 h:1");
        b.op(OpKind::Set).errors += 1;
        a.merge(&b);
        let get = a.of(OpKind::Get);
        assert_eq!((get.hits, get.misses, get.requests()), (1, 1, 2));
        assert_eq!(get.latency.len(), 2);
        assert_eq!(a.requests(), 3);
        assert_eq!(a.errors.get("MOVED"), Some(&1));
        // Out-of-range latencies are kept, at the bound.
        a.op(OpKind::Set).record(u64::MAX);
        assert_eq!(a.of(OpKind::Set).latency.len(), 1);
    }

    #[test]
    fn error_kinds_are_redis_codes() {
        assert_eq!(error_kind("MOVED 3999 127.0.0.1:6381"), "MOVED");
        assert_eq!(error_kind("NOAUTH Authentication required."), "NOAUTH");
        assert_eq!(error_kind("ERR unknown command"), "ERR");
        assert_eq!(error_kind("strata: node1 unavailable"), "ERR");
        assert_eq!(error_kind(""), "ERR");
    }
}
