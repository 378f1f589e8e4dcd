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

use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// One read through strata.
#[derive(Debug, Clone)]
pub struct Read {
    pub reader: usize,
    pub key: usize,
    pub start: Instant,
    pub end: Instant,
    pub seen: Seen,
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
    /// Staleness of every stale read (fresh reads are not in it).
    pub stale: Vec<Duration>,
    /// Reads that went back to an older state than the same reader had seen, within the bound.
    pub backwards: usize,
    pub violations: Vec<Violation>,
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
                Some(history) => judge_one(history, read, *value, bound, &mut verdict.stale),
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
/// what is wrong with it. A stale read's staleness goes to `stale`.
fn judge_one(
    history: &[State],
    read: &Read,
    value: Value,
    bound: Duration,
    stale: &mut Vec<Duration>,
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
    stale.push(staleness);
    if let Some(s) = newer.iter().find(|s| s.via_strata) {
        return Err(format!(
            "returned {} {:?} after {} written through strata was acknowledged",
            show(value),
            read.start - s.ack,
            show(s.value)
        ));
    }
    if staleness > bound {
        return Err(format!(
            "returned {} {staleness:?} after {} was acknowledged (bound {bound:?})",
            show(value),
            show(first.value)
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
        }
    }

    fn read(t0: Instant, reader: usize, start: u64, end: u64, value: Value) -> Read {
        Read {
            reader,
            key: 0,
            start: t0 + MS * start as u32,
            end: t0 + MS * end as u32,
            seen: Seen::Value(value),
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
}
