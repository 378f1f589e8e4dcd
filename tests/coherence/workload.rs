//! The coherence checker's workload: the keys, the writers (versions through strata and on the
//! nodes directly, short-TTL versions left to expire) and the readers (GETs through strata;
//! the readers with a client-side cache are in `csc.rs`), recording what was acknowledged and
//! what was read when.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use super::common::{RawClient, Resp, Strata, DEADLINE};
use super::history::{parse_value, Read, Seen, State, Value, NODE_EXPIRY};

const ROUTE_KEYS: usize = 24;
const META_KEYS: usize = 24;
const TTL_KEYS: usize = 6;
const PLAIN_KEYS: usize = 24;
pub const WRITERS: usize = 2;
pub const READERS: usize = 3;
/// A writer's pause between two writes: keys stay cached long enough to be hit.
const WRITE_PAUSE: Duration = Duration::from_millis(2);
/// A cheap deterministic random number generator (xorshift), one per thread.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `route:` (two copies).
    Route,
    /// `meta:` (one copy).
    Meta,
    /// `meta:` written on its node with a short TTL, left to expire.
    Ttl,
    /// `plain:`, a layer without a near cache (one copy): only in runs with client-side
    /// caches, whose invalidations cover every key.
    Plain,
}

/// The keys of the run, by index.
pub struct Keys {
    pub names: Vec<String>,
    pub kinds: Vec<Kind>,
    /// The nodes holding each key (preference order: the first is where reads go).
    pub replicas: Vec<Vec<usize>>,
}

impl Keys {
    /// The keys of a run; with `plain`, [`Kind::Plain`] keys too.
    pub fn new(s: &Strata, plain: bool) -> Keys {
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
            (
                Kind::Plain,
                "plain:c",
                if plain { PLAIN_KEYS } else { 0 },
                1,
            ),
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

    pub fn of(&self, kind: Kind) -> Vec<usize> {
        (0..self.names.len())
            .filter(|&k| self.kinds[k] == kind)
            .collect()
    }
}

/// What the threads share.
pub struct Run {
    pub keys: Keys,
    pub strata: String,
    pub nodes: Vec<String>,
    /// Each key's states, in the order they were recorded.
    pub histories: Vec<Mutex<Vec<State>>>,
    /// Writers hold it (shared) while writing a version; a FLUSHALL or a restart holds it
    /// alone, so no write is in flight across one and each key's history stays a sequence.
    pub gate: RwLock<()>,
    pub stop: AtomicBool,
    /// Read-your-writes failures: a writer's read right after its write through strata.
    pub ryw: Mutex<Vec<String>>,
    /// Such reads answered with an error (a fault killed strata's connections to the node):
    /// counted, not judged.
    pub ryw_errors: AtomicUsize,
    /// For each client-side cache (`csc.rs`): when it took a null `invalidate` push (emptied
    /// itself).
    pub flushes: Vec<Mutex<Vec<Instant>>>,
    /// A client-side cache reader's pause between two reads.
    pub csc_pause: Duration,
    /// The staleness bound the reads are judged by.
    pub bound: Duration,
}

impl Run {
    pub fn record(&self, key: usize, state: State) {
        self.histories[key].lock().unwrap().push(state);
    }

    /// The newest version written of the key (what every replica got), `None` before the
    /// first.
    pub fn last_written(&self, key: usize) -> Value {
        let h = self.histories[key].lock().unwrap();
        h.iter()
            .filter(|s| s.value.is_some())
            .max_by_key(|s| s.ack)
            .and_then(|s| s.value)
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
pub fn writer(run: &Run, keys: Vec<usize>, seed: u64) {
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
                expiry: false,
            },
        );
        if via_strata {
            // Read-your-writes is exact: no wait, no bound.
            let got = strata.try_call(&["GET", name]);
            if matches!(got, Some(Resp::Error(_))) {
                run.ryw_errors.fetch_add(1, Ordering::Relaxed);
            } else if got != Some(Resp::bulk(&value)) {
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
/// gone a while) before its next version. Every other time it stays gone longer than the
/// bound and a node's expiry cycle together (`history::NODE_EXPIRY`): a client-side cache
/// that missed the expiry's invalidation then serves the old value past what is allowed,
/// where the invalidation of a next version written soon after would hide that.
pub fn ttl_writer(run: &Run, keys: Vec<usize>, seed: u64) {
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
            expiry: false,
        };
        run.record(k, version);
        // The node set the expiry between `start` and `ack`.
        run.record(
            k,
            State {
                value: None,
                start: start + ttl,
                ack: ack + ttl,
                expiry: true,
                ..version
            },
        );
        drop(gate);
        let gone = if rng.next() % 2 == 0 {
            Duration::from_millis(5 + rng.next() % 100)
        } else {
            run.bound + NODE_EXPIRY + Duration::from_millis(100 + rng.next() % 200)
        };
        free_at[k] = ack + ttl + gone;
    }
}

/// Reads random keys through strata until told to stop.
pub fn reader(run: &Run, id: usize, seed: u64) -> Vec<Read> {
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
            local: false,
        });
    }
    reads
}
