//! The coherence checker's model and verdict: what every key held and when (its history of
//! states, each acknowledged at a moment), what every read returned and when, and which reads
//! returned a state older than the bound allows.
//!
//! A key has one writer at a time, so its states form a sequence: each write's version, and
//! "absent" for a deletion (a FLUSHALL on its node, a node restarted empty, an expiry). Sorted
//! by acknowledgement, state `i` may be visible from the moment its write began until state
//! `i + 1` was acknowledged. A read over `[start, end]` that returned state `i` is fresh when
//! that interval meets `[start, end]`; otherwise it is stale by `start - ack(i + 1)`, and a
//! violation when that is more than the bound (0 when one of the newer states acknowledged
//! before the read began was written through strata: strata's clients read its writes at once).
//!
//! A read a client served from its own cache (client-side caching) is held to the bound even
//! then: the invalidation of a write through strata is on its way to the reader's connection
//! when the writer has its reply, and reaches it a moment later. Such a read may also return
//! a value whose TTL ran out for up to [`NODE_EXPIRY`] more: a node tells its tracking
//! clients (strata, and strata its own) of an expiry when it deletes the key, at the next
//! access to it or in its active expiry cycle, which a client cache nothing reads through
//! leaves to the cycle. (strata's near cache keeps each entry's TTL itself: its reads have no
//! such allowance.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after its TTL ran out a node may still hold a key nothing reads: Redis's active
/// expiry cycle runs `hz` times a second (10 by default: every 100 ms), and every cycle looks
/// at every key with a TTL when a node has as few as the checker's.
pub const NODE_EXPIRY: Duration = Duration::from_millis(100);

/// What a key held: a version (`Some(n)`, value `v<n>`) or nothing (`None`).
pub type Value = Option<u64>;

/// One state of a key.
#[derive(Debug, Clone, Copy)]
pub struct State {
    pub value: Value,
    /// Another value a read may return while this state is the newest: after a node restart,
    /// a key of two copies may be read from the other replica (its last version) or be gone.
    pub also: Option<Value>,
    /// Before the write (or the fault) began.
    pub start: Instant,
    /// When it was acknowledged: the reply read (or the fault over, the TTL run out).
    pub ack: Instant,
    /// Written through strata: newer reads must see it at once.
    pub via_strata: bool,
    /// The key's TTL running out: client-side caches are told when the node deletes it (up to
    /// [`NODE_EXPIRY`] later).
    pub expiry: bool,
}

impl State {
    fn accepts(&self, value: Value) -> bool {
        self.value == value || self.also == Some(value)
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Value(Value),
    /// An error reply or a failed connection (counted, not judged: a node may be down).
    Error(String),
    /// A reply that is no value any writer wrote.
    Garbage(String),
}

/// One read through strata, or from a reader's client-side cache.
#[derive(Debug, Clone)]
pub struct Read {
    pub reader: usize,
    pub key: usize,
    pub start: Instant,
    pub end: Instant,
    pub seen: Seen,
    /// Served from the reader's own cache (kept through strata's `CLIENT TRACKING`), no
    /// request sent.
    pub local: bool,
}

/// What a read's judgement found wrong.
#[derive(Debug, Clone)]
pub struct Violation {
    pub read: Read,
    pub what: String,
}

/// The verdict over a whole run.
#[derive(Debug, Default)]
pub struct Verdict {
    pub reads: usize,
    pub errors: usize,
    /// Every stale read's (fresh reads are not in it).
    pub stale: Vec<Stale>,
    /// Reads that went back to an older state than the same reader had seen, within the bound.
    pub backwards: usize,
    pub violations: Vec<Violation>,
}

/// How stale a stale read was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// From the acknowledgement of the first newer state to the read's start.
    pub by: Duration,
    /// Served from a client-side cache, and that first newer state was an expiry.
    pub expired: bool,
    /// Served from a client-side cache though a newer version written through strata had been
    /// acknowledged: from that acknowledgement to the read's start (how late strata's
    /// invalidation of a write through it reached the cache).
    pub behind_strata: Option<Duration>,
    /// The read's key and start (for the report's stalest reads).
    pub key: usize,
    pub at: Instant,
}

impl Verdict {
    /// How stale each of the stale reads `which` picks was.
    pub fn staleness(&self, which: impl Fn(&Stale) -> bool) -> Vec<Duration> {
        self.stale
            .iter()
            .filter(|s| which(s))
            .map(|s| s.by)
            .collect()
    }
}

/// Parses a value as the writers write it (`v<n>`).
pub fn parse_value(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes.strip_prefix(b"v")?)
        .ok()?
        .parse()
        .ok()
}

/// Judges `reads` against `histories` (by key index). `names` name the keys in the report.
pub fn judge(
    histories: &[Vec<State>],
    names: &[String],
    reads: &[Read],
    bound: Duration,
) -> Verdict {
    let sorted: Vec<Vec<State>> = histories
        .iter()
        .map(|h| {
            let mut h = h.clone();
            h.sort_by_key(|s| s.ack);
            h
        })
        .collect();
    let mut verdict = Verdict::default();
    // Per reader and key: the newest state index it has seen, and when that read ended.
    let mut seen_by: HashMap<(usize, usize), (usize, Instant)> = HashMap::new();
    for read in reads {
        verdict.reads += 1;
        let name = names.get(read.key).map_or("?", String::as_str);
        let found = match &read.seen {
            Seen::Error(_) => {
                verdict.errors += 1;
                continue;
            }
            Seen::Garbage(text) => Err(format!("returned {text:?}, which no writer wrote")),
            Seen::Value(value) => match sorted.get(read.key) {
                Some(history) => judge_one(history, read, *value, bound, &mut verdict),
                None => Err("no history".to_string()),
            },
        };
        let at = match found {
            Ok(at) => at,
            Err(what) => {
                verdict.violations.push(Violation {
                    read: read.clone(),
                    what: format!("{name}: {what}"),
                });
                continue;
            }
        };
        // Monotonic reads, within the bound: once a reader saw a state, an older one may
        // come back only while the newer one's invalidation may still be on its way.
        let slot = seen_by
            .entry((read.reader, read.key))
            .or_insert((at, read.end));
        if at < slot.0 {
            let since = read.start.saturating_duration_since(slot.1);
            if since > bound {
                verdict.violations.push(Violation {
                    read: read.clone(),
                    what: format!("{name}: went back to an older state {since:?} after the reader saw a newer one"),
                });
            } else {
                verdict.backwards += 1;
            }
        } else {
            *slot = (at, read.end);
        }
    }
    verdict
}

/// One read of `value` against its key's sorted `history`: the index of the state it saw, or
/// what is wrong with it. A stale read's staleness goes to the verdict's `stale`.
fn judge_one(
    history: &[State],
    read: &Read,
    value: Value,
    bound: Duration,
    verdict: &mut Verdict,
) -> Result<usize, String> {
    // The latest state that shows this value and had begun before the read ended.
    let at = history
        .iter()
        .rposition(|s| s.accepts(value) && s.start <= read.end)
        .ok_or_else(|| format!("returned {} before any write of it began", show(value)))?;
    // Newer states acknowledged before the read began: the read should have seen one.
    let newer: Vec<&State> = history
        .iter()
        .skip(at + 1)
        .take_while(|s| s.ack < read.start)
        .collect();
    let Some(first) = newer.first() else {
        return Ok(at);
    };
    let staleness = read.start - first.ack;
    let node_expiry = |s: &State| read.local && s.expiry;
    let strata = newer.iter().find(|s| s.via_strata);
    verdict.stale.push(Stale {
        by: staleness,
        expired: node_expiry(first),
        behind_strata: strata.filter(|_| read.local).map(|s| read.start - s.ack),
        key: read.key,
        at: read.start,
    });
    if let Some(s) = strata {
        if !read.local {
            return Err(format!(
                "returned {} {:?} after {} written through strata was acknowledged",
                show(value),
                read.start - s.ack,
                show(s.value)
            ));
        }
    }
    // Each newer state: an expiry may reach a client-side cache later (see the module's doc).
    let late = newer.iter().find(|s| {
        let allowed = bound
            + if node_expiry(s) {
                NODE_EXPIRY
            } else {
                Duration::ZERO
            };
        read.start - s.ack > allowed
    });
    if let Some(s) = late {
        return Err(format!(
            "returned {} {:?} after {} was acknowledged (bound {bound:?}{})",
            show(value),
            read.start - s.ack,
            show(s.value),
            if node_expiry(s) {
                " + the node's expiry cycle"
            } else {
                ""
            }
        ));
    }
    Ok(at)
}

/// `v<n>` or `nil`.
pub fn show(value: Value) -> String {
    value.map_or_else(|| "nil".to_string(), |n| format!("v{n}"))
}

/// p50, p99 and max of `samples` (sorted in place); zeros when empty.
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    (
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    //! The checker must be able to fail: each rule on a hand-made history.
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn state(t0: Instant, value: Value, start: u64, ack: u64, via_strata: bool) -> State {
        State {
            value,
            also: None,
            start: t0 + MS * start as u32,
            ack: t0 + MS * ack as u32,
            via_strata,
            expiry: false,
        }
    }

    fn read(t0: Instant, reader: usize, start: u64, end: u64, value: Value) -> Read {
        Read {
            reader,
            key: 0,
            start: t0 + MS * start as u32,
            end: t0 + MS * end as u32,
            seen: Seen::Value(value),
            local: false,
        }
    }

    /// A read served from the reader's client-side cache.
    fn local(t0: Instant, reader: usize, start: u64, value: Value) -> Read {
        Read {
            local: true,
            ..read(t0, reader, start, start, value)
        }
    }

    #[test]
    fn stale_reads_beyond_the_bound_are_violations() {
        let t0 = Instant::now();
        let h = vec![vec![
            state(t0, Some(1), 0, 1, false),
            state(t0, Some(2), 10, 11, false),
            state(t0, Some(3), 20, 21, true),
            state(t0, None, 40, 41, false),
        ]];
        let names = vec!["k".to_string()];
        let reads = [
            read(t0, 0, 5, 6, Some(1)),   // fresh
            read(t0, 1, 12, 13, Some(1)), // 1 ms stale, within 5 ms
            read(t0, 2, 18, 19, Some(1)), // 7 ms stale: violation
            read(t0, 3, 22, 23, Some(2)), // v3 was written through strata: violation
            read(t0, 4, 42, 43, Some(3)), // 1 ms after the deletion: within
            read(t0, 5, 60, 61, Some(3)), // 19 ms after it: violation
            read(t0, 6, 2, 3, Some(9)),   // never written
            read(t0, 7, 45, 46, None),    // the deletion, fresh
            read(t0, 8, 5, 6, Some(2)),   // v2 before its write began
        ];
        let v = judge(&h, &names, &reads, 5 * MS);
        assert_eq!(v.reads, 9);
        assert_eq!(v.stale.len(), 5, "{v:?}");
        let bad: Vec<usize> = v.violations.iter().map(|x| x.read.reader).collect();
        assert_eq!(bad, vec![2, 3, 5, 6, 8], "{v:?}");
    }

    #[test]
    fn a_reader_going_back_is_a_violation_beyond_the_bound() {
        let t0 = Instant::now();
        // v2's write is slow: readers may see it before its acknowledgement.
        let h = vec![vec![
            state(t0, Some(1), 0, 1, false),
            state(t0, Some(2), 10, 100, false),
        ]];
        let names = vec!["k".to_string()];
        let reads = [
            read(t0, 0, 11, 12, Some(2)),
            read(t0, 0, 13, 14, Some(1)), // back, 1 ms later: allowed
            read(t0, 1, 11, 12, Some(2)),
            read(t0, 1, 30, 31, Some(1)), // back, 18 ms later: violation
        ];
        let v = judge(&h, &names, &reads, 5 * MS);
        assert_eq!(v.backwards, 1);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].read.reader, 1);
    }

    #[test]
    fn a_restart_accepts_the_other_replica_s_copy() {
        let t0 = Instant::now();
        let mut restart = state(t0, None, 20, 30, false);
        restart.also = Some(Some(1));
        let h = vec![vec![state(t0, Some(1), 0, 1, true), restart]];
        let names = vec!["k".to_string()];
        let reads = [
            read(t0, 0, 40, 41, Some(1)),
            read(t0, 0, 42, 43, None),
            read(t0, 0, 44, 45, Some(1)),
        ];
        let v = judge(&h, &names, &reads, 5 * MS);
        assert!(v.violations.is_empty(), "{v:?}");
        assert!(v.stale.is_empty());
    }

    #[test]
    fn a_client_side_cache_is_held_to_the_bound_after_a_write_through_strata() {
        let t0 = Instant::now();
        let h = vec![vec![
            state(t0, Some(1), 0, 1, false),
            state(t0, Some(2), 10, 11, true),
        ]];
        let names = vec!["k".to_string()];
        let reads = [
            local(t0, 0, 12, Some(1)), // 1 ms after v2's reply: its invalidation on its way
            local(t0, 1, 18, Some(1)), // 7 ms after: violation
            read(t0, 2, 12, 13, Some(1)), // a request sent after v2's reply: violation
        ];
        let v = judge(&h, &names, &reads, 5 * MS);
        assert_eq!(v.stale.len(), 3, "{v:?}");
        let behind: Vec<_> = v.stale.iter().filter_map(|s| s.behind_strata).collect();
        assert_eq!(behind, vec![MS, 7 * MS], "{v:?}");
        let bad: Vec<usize> = v.violations.iter().map(|x| x.read.reader).collect();
        assert_eq!(bad, vec![1, 2], "{v:?}");
    }

    #[test]
    fn a_client_side_cache_learns_of_an_expiry_when_the_node_deletes_the_key() {
        let t0 = Instant::now();
        let expiry = |start, ack| State {
            expiry: true,
            ..state(t0, None, start, ack, false)
        };
        let h = vec![
            vec![
                state(t0, Some(1), 0, 1, false),
                expiry(10, 11),
                state(t0, Some(2), 200, 201, false),
            ],
            vec![
                state(t0, Some(1), 0, 1, false),
                expiry(60, 61),
                state(t0, Some(2), 150, 151, false),
            ],
        ];
        let names = vec!["k".to_string(), "l".to_string()];
        let on_l = |r: Read| Read { key: 1, ..r };
        let reads = [
            local(t0, 0, 50, Some(1)),    // 39 ms after the TTL ran out: within 5 + 100
            local(t0, 1, 120, Some(1)),   // 109 ms after it: violation
            read(t0, 2, 20, 21, Some(1)), // a request: no allowance, violation
            on_l(local(t0, 3, 153, Some(1))), // 92 ms after the expiry, 2 after v2: within
            on_l(local(t0, 4, 160, Some(1))), // 9 ms after v2: violation
        ];
        let v = judge(&h, &names, &reads, 5 * MS);
        assert_eq!(v.staleness(|s| s.expired).len(), 4, "{v:?}");
        let bad: Vec<usize> = v.violations.iter().map(|x| x.read.reader).collect();
        assert_eq!(bad, vec![1, 2, 4], "{v:?}");
    }
}
