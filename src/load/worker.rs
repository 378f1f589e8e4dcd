//! The load's workers: each one client connection writing fresh values to its own keys and
//! reading back keys it had acknowledged, tallying what failed in which phase of the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_protocol::resp2::types::BytesFrame;
use tokio::time::Instant;

use crate::backend::{CallError, RespClient};
use crate::protocol::Proto;

/// Connect and request timeout of every connection: strata answers within its own request
/// timeout, so this only catches a hang.
pub(super) const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures each worker keeps as examples.
const SAMPLES: usize = 5;

/// The three phases of the run; a request belongs to the phase it started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Before,
    Window,
    After,
}

impl Phase {
    pub(super) const ALL: [Phase; 3] = [Phase::Before, Phase::Window, Phase::After];

    pub(super) fn name(self) -> &'static str {
        match self {
            Phase::Before => "before the kill",
            Phase::Window => "during the failover window",
            Phase::After => "after the failover window",
        }
    }
}

/// One figure per phase.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ByPhase<T> {
    pub(super) before: T,
    pub(super) window: T,
    pub(super) after: T,
}

impl<T: Copy> ByPhase<T> {
    pub(super) fn get(&self, phase: Phase) -> T {
        match phase {
            Phase::Before => self.before,
            Phase::Window => self.window,
            Phase::After => self.after,
        }
    }

    fn get_mut(&mut self, phase: Phase) -> &mut T {
        match phase {
            Phase::Before => &mut self.before,
            Phase::Window => &mut self.window,
            Phase::After => &mut self.after,
        }
    }
}

/// The run's clock, shared by the workers: the kill's planned moment is replaced by the
/// measured one once it happened.
pub(super) struct Clock {
    pub(super) start: Instant,
    pub(super) end: Instant,
    /// Nanoseconds from `start` to the kill.
    kill: AtomicU64,
    window: Duration,
}

impl Clock {
    pub(super) fn new(start: Instant, seconds: u64, kill_at: u64, window: u64) -> Clock {
        Clock {
            start,
            end: start + Duration::from_secs(seconds),
            kill: AtomicU64::new(kill_at.saturating_mul(1_000_000_000)),
            window: Duration::from_secs(window),
        }
    }

    /// The kill happened at `at`.
    pub(super) fn killed(&self, at: Instant) {
        let nanos = u64::try_from((at - self.start).as_nanos()).unwrap_or(u64::MAX);
        self.kill.store(nanos, Ordering::Relaxed);
    }

    fn phase(&self, t: Instant) -> Phase {
        let kill = self.start + Duration::from_nanos(self.kill.load(Ordering::Relaxed));
        if t < kill {
            Phase::Before
        } else if t < kill + self.window {
            Phase::Window
        } else {
            Phase::After
        }
    }
}

/// A reply as the load compares and prints it; a failed request (no reply) is an error.
#[derive(Clone, PartialEq)]
pub(super) enum Value {
    Status(String),
    Error(String),
    Int(i64),
    Text(String),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    pub(super) fn from_frame(frame: BytesFrame) -> Value {
        match frame {
            BytesFrame::SimpleString(s) => Value::Status(String::from_utf8_lossy(&s).into()),
            BytesFrame::Error(e) => Value::Error(e.to_string()),
            BytesFrame::Integer(n) => Value::Int(n),
            BytesFrame::BulkString(b) => Value::Text(String::from_utf8_lossy(&b).into()),
            BytesFrame::Null => Value::Nil,
            BytesFrame::Array(items) => {
                Value::Array(items.into_iter().map(Value::from_frame).collect())
            }
        }
    }

    fn failed(error: &CallError) -> Value {
        Value::Error(format!("client: {error}"))
    }

    fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The text of a bulk or status reply.
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Value::Text(t) | Value::Status(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Status(s) | Value::Text(s) => write!(f, "{s:?}"),
            Value::Error(e) => write!(f, "error {e:?}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Nil => write!(f, "nil"),
            Value::Array(items) => f.debug_list().entries(items).finish(),
        }
    }
}

/// splitmix64: a fixed sequence per worker, so a run's choice of keys repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// What one worker did.
#[derive(Default)]
pub(super) struct Tally {
    /// Key → last acknowledged value.
    pub(super) acked: HashMap<String, String>,
    /// The same keys, to pick one at random.
    acked_keys: Vec<String>,
    /// Key → values written without an acknowledgement since its last acknowledged write
    /// (a failed write may still have landed).
    pub(super) unacked: HashMap<String, HashSet<String>>,
    pub(super) writes_ok: u64,
    pub(super) writes_failed: ByPhase<u64>,
    pub(super) reads_ok: u64,
    pub(super) reads_failed: ByPhase<u64>,
    /// Reads that saw a write that had failed (it landed after all).
    pub(super) reads_unacked: u64,
    pub(super) slowest: ByPhase<Duration>,
    /// (time since the start, what) of the first few failures.
    pub(super) samples: Vec<(Duration, String)>,
    /// Second since the start → [requests, failed writes, failed reads].
    pub(super) per_second: BTreeMap<u64, [u64; 3]>,
}

impl Tally {
    fn note(&mut self, at: Duration, what: String) {
        if self.samples.len() < SAMPLES {
            self.samples.push((at, what));
        }
    }
}

/// One client connection writing and reading its own keys until the end of the run.
pub(super) struct Worker {
    id: usize,
    addr: Arc<str>,
    /// Key prefix: the layer's prefix.
    prefix: Arc<str>,
    keys: u64,
    clock: Arc<Clock>,
    rng: Rng,
    conn: Option<RespClient>,
    tally: Tally,
}

impl Worker {
    pub(super) fn new(
        id: usize,
        addr: Arc<str>,
        prefix: Arc<str>,
        keys: u64,
        clock: Arc<Clock>,
    ) -> Worker {
        Worker {
            id,
            addr,
            prefix,
            keys: keys.max(1),
            clock,
            rng: Rng(1000 + id as u64),
            conn: None,
            tally: Tally::default(),
        }
    }

    pub(super) async fn run(mut self) -> Tally {
        let mut seq: u64 = 0;
        loop {
            let t0 = Instant::now();
            if t0 >= self.clock.end {
                break;
            }
            let phase = self.clock.phase(t0);
            let since_start = t0 - self.clock.start;
            // [requests, failed writes, failed reads] of this request.
            let mut row = [1, 0, 0];
            if !self.tally.acked_keys.is_empty() && self.rng.coin() {
                if !self.read_back(since_start, phase).await {
                    row[2] = 1;
                }
            } else {
                seq += 1;
                if !self.write(since_start, phase, seq).await {
                    row[1] = 1;
                }
            }
            let took = t0.elapsed();
            let slowest = self.tally.slowest.get_mut(phase);
            *slowest = (*slowest).max(took);
            let counts = self
                .tally
                .per_second
                .entry(since_start.as_secs())
                .or_default();
            for (count, add) in counts.iter_mut().zip(row) {
                *count += add;
            }
        }
        self.tally
    }

    /// GET of an acknowledged key: whether it held the acknowledged value (or a value whose
    /// write had failed but landed).
    async fn read_back(&mut self, since_start: Duration, phase: Phase) -> bool {
        let pick = self.rng.below(self.tally.acked_keys.len() as u64);
        let key = self
            .tally
            .acked_keys
            .get(usize::try_from(pick).unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        let got = self.op(&[b"GET", key.as_bytes()]).await;
        let want = self.tally.acked.get(&key).cloned().unwrap_or_default();
        if !got.is_error() {
            if got.text() == Some(want.as_str()) {
                self.tally.reads_ok += 1;
                return true;
            }
            let landed = self.tally.unacked.get(&key);
            if got
                .text()
                .is_some_and(|v| landed.is_some_and(|l| l.contains(v)))
            {
                self.tally.reads_ok += 1;
                self.tally.reads_unacked += 1;
                return true;
            }
        }
        *self.tally.reads_failed.get_mut(phase) += 1;
        let what = format!("GET {key} -> {got:?} (acknowledged {want:?})");
        self.tally.note(since_start, what);
        false
    }

    /// SET of a fresh value to one of the worker's keys: whether it was acknowledged.
    async fn write(&mut self, since_start: Duration, phase: Phase, seq: u64) -> bool {
        let key = format!("{}w{}:{}", self.prefix, self.id, self.rng.below(self.keys));
        let value = format!("w{}-{seq}", self.id);
        let got = self.op(&[b"SET", key.as_bytes(), value.as_bytes()]).await;
        if got == Value::Status("OK".into()) {
            self.tally.writes_ok += 1;
            if !self.tally.acked.contains_key(&key) {
                self.tally.acked_keys.push(key.clone());
            }
            self.tally.unacked.remove(&key);
            self.tally.acked.insert(key, value);
            true
        } else {
            *self.tally.writes_failed.get_mut(phase) += 1;
            self.tally
                .note(since_start, format!("SET {key} -> {got:?}"));
            self.tally.unacked.entry(key).or_default().insert(value);
            false
        }
    }

    /// One request; a lost connection is an error reply (and a new connection next time).
    async fn op(&mut self, args: &[&[u8]]) -> Value {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => match connect(&self.addr).await {
                Ok(conn) => self.conn.insert(conn),
                Err(e) => return Value::failed(&e),
            },
        };
        match conn.call(args).await {
            Ok(reply) => Value::from_frame(reply.frame),
            Err(e) => {
                self.conn = None;
                Value::failed(&e)
            }
        }
    }
}

/// A connection to strata with [`SOCKET_TIMEOUT`] for the connect and every request.
pub(super) async fn connect(addr: &str) -> Result<RespClient, CallError> {
    Ok(RespClient::connect(addr, Proto::Resp2, SOCKET_TIMEOUT)
        .await?
        .with_timeout(SOCKET_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_measured_kill() {
        let start = Instant::now();
        let clock = Clock::new(start, 30, 10, 3);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(clock.phase(at(9_999)), Phase::Before);
        assert_eq!(clock.phase(at(10_000)), Phase::Window);
        assert_eq!(clock.phase(at(13_000)), Phase::After);
        clock.killed(at(10_500));
        assert_eq!(clock.phase(at(10_000)), Phase::Before);
        assert_eq!(clock.phase(at(13_000)), Phase::Window);
        assert_eq!(clock.phase(at(13_500)), Phase::After);
    }

    #[test]
    fn replies_compare_as_values() {
        let ok = Value::from_frame(BytesFrame::SimpleString("OK".into()));
        assert_eq!(ok, Value::Status("OK".into()));
        let bulk = Value::from_frame(BytesFrame::BulkString("w1-2".into()));
        assert_eq!(bulk.text(), Some("w1-2"));
        assert!(Value::failed(&CallError::Closed).is_error());
        assert_eq!(format!("{:?}", Value::Nil), "nil");
    }

    #[test]
    fn rng_repeats_and_stays_below() {
        let (mut a, mut b) = (Rng(1001), Rng(1001));
        for _ in 0..1000 {
            let n = a.below(7);
            assert_eq!(n, b.below(7));
            assert!(n < 7);
        }
    }
}
