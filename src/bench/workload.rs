//! What `strata bench` asks: the operation mix, which keys (uniform or Zipf), how large the
//! values are, and the RESP bytes of each request.

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use rand::rngs::SmallRng;
use rand::RngExt;
use rand_distr::{Distribution, Zipf};

use crate::protocol::reply::encode_command;

/// The kind of a request, as the report groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Get,
    Set,
}

impl OpKind {
    pub const ALL: [OpKind; 2] = [OpKind::Get, OpKind::Set];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "GET",
            OpKind::Set => "SET",
        }
    }
}

/// `--workload`: which requests a client sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mix {
    /// SET only.
    Write,
    /// GET only (the key space is filled first).
    Read,
    /// GET with this probability, SET otherwise (the key space is filled first).
    Mixed { read_ratio: f64 },
}

impl Mix {
    /// Whether the keys are written before the measured run (so reads can hit).
    pub fn fills(self) -> bool {
        !matches!(self, Mix::Write)
    }
}

/// A bad `--key-dist` or `--value-size`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--key-dist: expected `uniform` or `zipf:<s>` with s > 0, got {0:?}")]
    KeyDist(String),
    #[error("--value-size: expected a size in bytes (`100`) or a range (`64-4096`), got {0:?}")]
    ValueSize(String),
    #[error("--layer-mix: expected `name=weight,...` with weights above 0 (e.g. `route=40,result=30,meta=20,load=10`), got {0:?}")]
    LayerMix(String),
}

/// `--key-dist`: how keys are picked from the key space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    Uniform,
    /// Zipf with exponent `s`: key rank k is picked with probability ∝ 1/k^s.
    Zipf(f64),
}

impl FromStr for KeyDist {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        if s == "uniform" {
            return Ok(KeyDist::Uniform);
        }
        match s.strip_prefix("zipf:").map(str::parse::<f64>) {
            Some(Ok(exp)) if exp.is_finite() && exp > 0.0 => Ok(KeyDist::Zipf(exp)),
            _ => Err(SpecError::KeyDist(s.to_string())),
        }
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform => f.write_str("uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// `--value-size`: a fixed size or a range, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    pub min: usize,
    pub max: usize,
}

/// Values larger than this are refused: the bench client keeps a whole pipeline of them.
pub const MAX_VALUE_SIZE: usize = 64 * 1024 * 1024;

impl FromStr for ValueSize {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::ValueSize(s.to_string());
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let n = s.trim().parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if min > max || max > MAX_VALUE_SIZE {
            return Err(bad());
        }
        Ok(ValueSize { min, max })
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// `--layer-mix`: key prefixes (strata's layers) and their shares of the requests.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMix(pub Vec<(String, f64)>);

impl FromStr for LayerMix {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::LayerMix(s.to_string());
        let mut shares = Vec::new();
        for part in s.split(',') {
            let (name, weight) = part.split_once('=').ok_or_else(bad)?;
            let weight: f64 = weight.trim().parse().map_err(|_| bad())?;
            let name = name.trim();
            if name.is_empty() || !(weight.is_finite() && weight > 0.0) {
                return Err(bad());
            }
            shares.push((name.to_string(), weight));
        }
        Ok(LayerMix(shares))
    }
}

impl fmt::Display for LayerMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(n, w)| format!("{n}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// Everything a client needs to make requests; shared, read-only.
#[derive(Debug, Clone)]
pub struct Workload {
    pub mix: Mix,
    /// Size of the key space: keys `<prefix>0` .. `<prefix>{keys-1}`.
    pub keys: u64,
    pub key_dist: KeyDist,
    pub key_prefix: String,
    pub value_size: ValueSize,
    /// Layers the keys are spread over (`<layer>:` before the prefix), by weight; none: one
    /// key space.
    pub layers: Option<LayerMix>,
}

impl Workload {
    /// The key spaces: each layer's prefix (`route:`), or one empty prefix without a mix.
    pub fn layer_prefixes(&self) -> Vec<String> {
        match &self.layers {
            Some(mix) => mix.0.iter().map(|(n, _)| format!("{n}:")).collect(),
            None => vec![String::new()],
        }
    }
}

/// One client's request maker: its own random stream, the workload's distributions.
pub struct Generator {
    workload: Workload,
    rng: SmallRng,
    zipf: Option<Zipf<f64>>,
    /// The largest value, filled once; a request's value is a prefix of it.
    value: Vec<u8>,
    key: Vec<u8>,
    /// Each key space's prefix and its cumulative share (the last is 1).
    layers: Vec<(String, f64)>,
}

impl Generator {
    pub fn new(workload: &Workload, rng: SmallRng) -> Generator {
        let zipf = match workload.key_dist {
            // A Zipf over 0 keys cannot be built; `keys` is validated to be at least 1.
            KeyDist::Zipf(s) => Zipf::new(workload.keys.max(1) as f64, s).ok(),
            KeyDist::Uniform => None,
        };
        Generator {
            workload: workload.clone(),
            rng,
            zipf,
            value: (0..workload.value_size.max)
                .map(|i| b'a' + (i % 26) as u8)
                .collect(),
            key: Vec::with_capacity(workload.key_prefix.len() + 40),
            layers: cumulative(workload),
        }
    }

    /// The next key's number: uniform, or by Zipf rank (rank 1 is key 0, the hottest).
    pub fn key_index(&mut self) -> u64 {
        let keys = self.workload.keys.max(1);
        match &self.zipf {
            Some(z) => (z.sample(&mut self.rng) as u64).clamp(1, keys) - 1,
            None => self.rng.random_range(0..keys),
        }
    }

    fn op(&mut self) -> OpKind {
        match self.workload.mix {
            Mix::Write => OpKind::Set,
            Mix::Read => OpKind::Get,
            Mix::Mixed { read_ratio } => {
                if self.rng.random::<f64>() < read_ratio {
                    OpKind::Get
                } else {
                    OpKind::Set
                }
            }
        }
    }

    fn value_len(&mut self) -> usize {
        let ValueSize { min, max } = self.workload.value_size;
        if min == max {
            min
        } else {
            self.rng.random_range(min..=max)
        }
    }

    /// The next request's key space (an index into `Workload::layer_prefixes`).
    fn layer(&mut self) -> usize {
        if self.layers.len() <= 1 {
            return 0;
        }
        let x = self.rng.random::<f64>();
        self.layers
            .iter()
            .position(|(_, upto)| x < *upto)
            .unwrap_or(self.layers.len() - 1)
    }

    /// Appends the next request to `out` and says what it is and which key space it used.
    pub fn next(&mut self, out: &mut BytesMut) -> (OpKind, usize) {
        let op = self.op();
        let layer = self.layer();
        let index = self.key_index();
        self.encode(op, layer, index, out);
        (op, layer)
    }

    /// Appends `op` of key number `index` of key space `layer` to `out`.
    pub fn encode(&mut self, op: OpKind, layer: usize, index: u64, out: &mut BytesMut) {
        self.key.clear();
        if let Some((prefix, _)) = self.layers.get(layer) {
            self.key.extend_from_slice(prefix.as_bytes());
        }
        self.key
            .extend_from_slice(self.workload.key_prefix.as_bytes());
        self.key
            .extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        match op {
            OpKind::Get => encode_command(out, [&b"GET"[..], &self.key].into_iter()),
            OpKind::Set => {
                let len = self.value_len();
                let value = self.value.get(..len).unwrap_or(&self.value);
                encode_command(out, [&b"SET"[..], &self.key, value].into_iter());
            }
        }
    }
}

/// The key spaces' prefixes with cumulative shares.
fn cumulative(workload: &Workload) -> Vec<(String, f64)> {
    let prefixes = workload.layer_prefixes();
    let weights: Vec<f64> = match &workload.layers {
        Some(mix) => mix.0.iter().map(|(_, w)| *w).collect(),
        None => vec![1.0],
    };
    let total: f64 = weights.iter().sum();
    let mut upto = 0.0;
    prefixes
        .into_iter()
        .zip(weights)
        .map(|(p, w)| {
            upto += w / total;
            (p, upto)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn workload(mix: Mix, keys: u64, key_dist: KeyDist) -> Workload {
        Workload {
            mix,
            keys,
            key_dist,
            key_prefix: "k:".into(),
            value_size: ValueSize { min: 3, max: 3 },
            layers: None,
        }
    }

    #[test]
    fn specs_parse_and_refuse() {
        assert_eq!("uniform".parse(), Ok(KeyDist::Uniform));
        assert_eq!("zipf:0.99".parse(), Ok(KeyDist::Zipf(0.99)));
        for bad in ["zipf", "zipf:", "zipf:-1", "zipf:0", "zipf:nan", "normal"] {
            assert!(bad.parse::<KeyDist>().is_err(), "{bad}");
        }
        assert_eq!("100".parse(), Ok(ValueSize { min: 100, max: 100 }));
        assert_eq!("64-4096".parse(), Ok(ValueSize { min: 64, max: 4096 }));
        for bad in ["", "x", "10-5", "-5", "1-", "99999999999"] {
            assert!(bad.parse::<ValueSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_resp_commands_of_the_key_space() {
        let w = Workload {
            value_size: ValueSize { min: 5, max: 9 },
            ..workload(Mix::Mixed { read_ratio: 0.5 }, 10, KeyDist::Uniform)
        };
        let mut g = Generator::new(&w, SmallRng::seed_from_u64(7));
        let mut out = BytesMut::new();
        let mut parser = crate::protocol::RequestParser::default();
        let mut kinds = [0u32; 2];
        for _ in 0..1000 {
            out.clear();
            let (op, layer) = g.next(&mut out);
            assert_eq!(layer, 0);
            kinds[usize::from(op == OpKind::Set)] += 1;
            let req = match parser.parse(&mut out) {
                Ok(crate::protocol::Parsed::Request(r)) => r,
                other => panic!("not a request: {other:?}"),
            };
            assert_eq!(req.args[0].as_ref(), op.name().as_bytes());
            let key = std::str::from_utf8(&req.args[1]).unwrap();
            let n: u64 = key.strip_prefix("k:").unwrap().parse().unwrap();
            assert!(n < 10);
            if op == OpKind::Set {
                assert!((5..=9).contains(&req.args[2].len()));
            } else {
                assert_eq!(req.args.len(), 2);
            }
        }
        // Half and half, give or take (binomial, n = 1000: sd ≈ 16).
        assert!((400..600).contains(&kinds[0]), "{kinds:?}");
    }

    /// The Zipf key picker against the law it claims: rank k (key k-1) drawn with probability
    /// (1/k^s) / H(n, s). A chi-squared test over the 20 hottest keys and the rest.
    #[test]
    fn zipf_keys_follow_the_zipf_law() {
        let (n, s, draws) = (1000u64, 1.0f64, 200_000u64);
        let mut g = Generator::new(
            &workload(Mix::Read, n, KeyDist::Zipf(s)),
            SmallRng::seed_from_u64(42),
        );
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            counts[g.key_index() as usize] += 1;
        }
        let h: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).sum();
        let expected = |k: u64| draws as f64 / (k as f64).powf(s) / h;
        let mut chi2 = 0.0;
        for k in 1..=20u64 {
            let e = expected(k);
            let o = counts[(k - 1) as usize] as f64;
            chi2 += (o - e) * (o - e) / e;
        }
        let rest_e: f64 = (21..=n).map(expected).sum();
        let rest_o: u64 = counts[20..].iter().sum();
        chi2 += (rest_o as f64 - rest_e).powi(2) / rest_e;
        // 20 degrees of freedom: the 0.999 quantile of chi-squared is 45.3.
        assert!(chi2 < 45.3, "chi2 {chi2}, first counts {:?}", &counts[..5]);
        // And it is skewed: key 0 about 1/H ≈ 13% of draws, far above uniform's 0.1%.
        assert!(counts[0] > draws / 10, "{}", counts[0]);
    }

    #[test]
    fn a_layer_mix_spreads_requests_by_weight() {
        assert!("route=1,x".parse::<LayerMix>().is_err());
        assert!("route=0".parse::<LayerMix>().is_err());
        assert!("=3".parse::<LayerMix>().is_err());
        let w = Workload {
            layers: Some("route=60,meta=30,load=10".parse().unwrap()),
            ..workload(Mix::Read, 100, KeyDist::Uniform)
        };
        assert_eq!(w.layer_prefixes(), ["route:", "meta:", "load:"]);
        let mut g = Generator::new(&w, SmallRng::seed_from_u64(5));
        let mut counts = [0u32; 3];
        let mut out = BytesMut::new();
        let mut parser = crate::protocol::RequestParser::default();
        for _ in 0..10_000 {
            out.clear();
            let (_, layer) = g.next(&mut out);
            counts[layer] += 1;
            let Ok(crate::protocol::Parsed::Request(req)) = parser.parse(&mut out) else {
                panic!("not a request");
            };
            let prefix = ["route:k:", "meta:k:", "load:k:"][layer];
            assert!(
                req.args[1].starts_with(prefix.as_bytes()),
                "{:?}",
                req.args[1]
            );
        }
        // 6000 / 3000 / 1000, give or take (sd below 50).
        assert!((5800..6200).contains(&counts[0]), "{counts:?}");
        assert!((2800..3200).contains(&counts[1]), "{counts:?}");
        assert!((850..1150).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn uniform_keys_cover_the_space_evenly() {
        let n = 50u64;
        let mut g = Generator::new(
            &workload(Mix::Read, n, KeyDist::Uniform),
            SmallRng::seed_from_u64(1),
        );
        let draws = 100_000u64;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            counts[g.key_index() as usize] += 1;
        }
        let e = draws as f64 / n as f64;
        let chi2: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
        // 49 degrees of freedom: the 0.999 quantile is 85.4.
        assert!(chi2 < 85.4, "chi2 {chi2}");
    }
}
