//! `strata load` (a hidden subcommand): the load of `scripts/failover-check.sh`. Concurrent
//! clients write and read back keys of their own in one layer of a running strata while one
//! node is SIGKILLed; afterwards every acknowledged write is read back. It prints what failed
//! and when (before the kill, in the failover window after it, after the window), how long
//! strata took to mark the node down, and whether any acknowledged write was lost.
//!
//! It talks RESP through the backend's [`RespClient`], so the project has one client-side RESP
//! implementation (it used to be a Python script with a parser of its own). The workers share
//! one thread, as the Python client's did: the machine's other cores stay with strata and its
//! nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::backend::{CallError, RespClient};
use crate::config::Config;
use crate::protocol::reply::encode_command;
use crate::protocol::Proto;

/// Connect and request timeout of every connection: strata answers within its own request
/// timeout, so this only catches a hang.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after the kill the watcher waits for the node to be marked down.
const WATCH_FOR: Duration = Duration::from_secs(10);
/// The watcher's poll interval (the down time it prints is up to this late).
const WATCH_EVERY: Duration = Duration::from_millis(10);
/// GETs per pipeline when the acknowledged writes are read back.
const CHECK_BATCH: usize = 500;
/// Failures each worker keeps as examples; the report shows the first few of all workers.
const SAMPLES: usize = 5;
const SAMPLES_SHOWN: usize = 8;

/// What `strata load` is asked to do; the rest comes from the configuration strata runs with.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// strata (host:port).
    pub addr: String,
    /// strata's admin endpoint, for `/healthz` at the end.
    pub admin: Option<String>,
    /// Length of the load.
    pub seconds: u64,
    /// When the node is killed, seconds after the start.
    pub kill_at: u64,
    /// The failover window after the kill, seconds.
    pub window: u64,
    /// Concurrent client connections.
    pub workers: usize,
    /// Keys per worker (rewritten over time).
    pub keys: u64,
    /// The process to SIGKILL: the node's redis-server.
    pub kill_pid: u32,
    /// That node's id in the configuration.
    pub kill_node: String,
    /// The layer the keys are written in (its prefix starts every key).
    pub layer: String,
}

/// Why the load could not run to its report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the configuration has no layer named {0:?}")]
    NoLayer(String),
    #[error("the configuration has no node named {0:?}")]
    NoNode(String),
    #[error("cannot SIGKILL pid {pid}: {reason}")]
    Kill { pid: u32, reason: String },
    #[error("strata at {addr}: {source}")]
    Strata { addr: String, source: CallError },
}

/// Runs the load against the strata running with `config`; `Ok(true)` when nothing
/// acknowledged was lost, no read failed after the window and the node was marked down in
/// time (`health.node_timeout` + one heartbeat).
pub fn run(config: &Config, opts: &LoadOptions) -> Result<bool, LoadError> {
    let prefix = config
        .layers
        .iter()
        .find(|l| l.name == opts.layer)
        .map(|l| l.prefix.clone())
        .ok_or_else(|| LoadError::NoLayer(opts.layer.clone()))?;
    let victim_addr = config
        .nodes
        .iter()
        .find(|n| n.id == opts.kill_node)
        .map(|n| n.addr.clone())
        .ok_or_else(|| LoadError::NoNode(opts.kill_node.clone()))?;
    let down_bound = config.health.node_timeout + config.health.heartbeat_interval;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(load(opts, prefix, victim_addr, down_bound))
}

/// The three phases of the run; a request belongs to the phase it started in.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Before,
    Window,
    After,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Before, Phase::Window, Phase::After];

    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before the kill",
            Phase::Window => "during the failover window",
            Phase::After => "after the failover window",
        }
    }
}

/// One figure per phase.
#[derive(Debug, Default, Clone, Copy)]
struct ByPhase<T> {
    before: T,
    window: T,
    after: T,
}

impl<T: Copy> ByPhase<T> {
    fn get(&self, phase: Phase) -> T {
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
struct Clock {
    start: Instant,
    end: Instant,
    /// Nanoseconds from `start` to the kill.
    kill: AtomicU64,
    window: Duration,
}

impl Clock {
    fn kill_time(&self) -> Instant {
        self.start + Duration::from_nanos(self.kill.load(Ordering::Relaxed))
    }

    fn phase(&self, t: Instant) -> Phase {
        let kill = self.kill_time();
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
enum Value {
    Status(String),
    Error(String),
    Int(i64),
    Text(String),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    fn from_frame(frame: BytesFrame) -> Value {
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

    fn text(&self) -> Option<&str> {
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
struct Tally {
    /// Key → last acknowledged value.
    acked: HashMap<String, String>,
    /// The same keys, to pick one at random.
    acked_keys: Vec<String>,
    /// Key → values written without an acknowledgement since its last acknowledged write
    /// (a failed write may still have landed).
    unacked: HashMap<String, HashSet<String>>,
    writes_ok: u64,
    writes_failed: ByPhase<u64>,
    reads_ok: u64,
    reads_failed: ByPhase<u64>,
    /// Reads that saw a write that had failed (it landed after all).
    reads_unacked: u64,
    slowest: ByPhase<Duration>,
    /// (time since the start, what) of the first few failures.
    samples: Vec<(Duration, String)>,
    /// Second since the start → [requests, failed writes, failed reads].
    per_second: BTreeMap<u64, [u64; 3]>,
}

impl Tally {
    fn note(&mut self, at: Duration, what: String) {
        if self.samples.len() < SAMPLES {
            self.samples.push((at, what));
        }
    }
}

/// One client connection writing and reading its own keys until the end of the run.
struct Worker {
    id: usize,
    addr: Arc<str>,
    prefix: Arc<str>,
    keys: u64,
    clock: Arc<Clock>,
    rng: Rng,
    conn: Option<RespClient>,
    tally: Tally,
}

impl Worker {
    async fn run(mut self) -> Tally {
        let mut seq: u64 = 0;
        loop {
            let t0 = Instant::now();
            if t0 >= self.clock.end {
                break;
            }
            let phase = self.clock.phase(t0);
            let since_start = t0 - self.clock.start;
            // [requests, failed writes, failed reads] of this second.
            let mut row = [1, 0, 0];
            if !self.tally.acked_keys.is_empty() && self.rng.coin() {
                let pick = self.rng.below(self.tally.acked_keys.len() as u64);
                let key = self
                    .tally
                    .acked_keys
                    .get(usize::try_from(pick).unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                let got = self.op(&[b"GET", key.as_bytes()]).await;
                let want = self.tally.acked.get(&key).cloned().unwrap_or_default();
                let mut ok = got.text() == Some(want.as_str()) && !got.is_error();
                if !ok && !got.is_error() {
                    let landed = self.tally.unacked.get(&key);
                    if got
                        .text()
                        .is_some_and(|v| landed.is_some_and(|l| l.contains(v)))
                    {
                        ok = true;
                        self.tally.reads_unacked += 1;
                    }
                }
                if ok {
                    self.tally.reads_ok += 1;
                } else {
                    *self.tally.reads_failed.get_mut(phase) += 1;
                    row[2] = 1;
                    let what = format!("GET {key} -> {got:?} (acknowledged {want:?})");
                    self.tally.note(since_start, what);
                }
            } else {
                let key = format!("{}w{}:{}", self.prefix, self.id, self.rng.below(self.keys));
                seq += 1;
                let value = format!("w{}-{seq}", self.id);
                let got = self.op(&[b"SET", key.as_bytes(), value.as_bytes()]).await;
                if got == Value::Status("OK".into()) {
                    self.tally.writes_ok += 1;
                    if !self.tally.acked.contains_key(&key) {
                        self.tally.acked_keys.push(key.clone());
                    }
                    self.tally.unacked.remove(&key);
                    self.tally.acked.insert(key, value);
                } else {
                    *self.tally.writes_failed.get_mut(phase) += 1;
                    row[1] = 1;
                    self.tally
                        .note(since_start, format!("SET {key} -> {got:?}"));
                    self.tally.unacked.entry(key).or_default().insert(value);
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

async fn connect(addr: &str) -> Result<RespClient, CallError> {
    Ok(RespClient::connect(addr, Proto::Resp2, SOCKET_TIMEOUT)
        .await?
        .with_timeout(SOCKET_TIMEOUT))
}

/// One request on a connection of its own, for the reports (an error is the run's end).
async fn ask(addr: &str, args: &[&str]) -> Result<Value, LoadError> {
    let strata = |source| LoadError::Strata {
        addr: addr.to_owned(),
        source,
    };
    let mut conn = connect(addr).await.map_err(strata)?;
    let reply = conn.call(args).await.map_err(strata)?;
    Ok(Value::from_frame(reply.frame))
}

/// The `node_<id>` (or `layer_<name>`) lines of an INFO section: name and fields. Fields are
/// split at commas, so a field after one holding a comma (a reason text) is cut short.
fn info_lines<'a>(
    info: &'a Value,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, HashMap<&'a str, &'a str>)> + 'a {
    info.text()
        .unwrap_or_default()
        .lines()
        .filter(move |line| line.starts_with(prefix))
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            Some((
                name,
                fields
                    .split(',')
                    .filter_map(|f| f.split_once('='))
                    .collect(),
            ))
        })
}

/// The node's `state` in INFO nodes; `None` when strata could not be asked.
async fn node_state(watcher: &mut Option<RespClient>, addr: &str, node: &str) -> Option<String> {
    let conn = match watcher {
        Some(conn) => conn,
        None => watcher.insert(connect(addr).await.ok()?),
    };
    let Ok(reply) = conn.call(&["INFO", "nodes"]).await else {
        *watcher = None;
        return None;
    };
    let info = Value::from_frame(reply.frame);
    let line = format!("node_{node}");
    let state = info_lines(&info, &line)
        .find(|(name, _)| *name == line)
        .and_then(|(_, fields)| fields.get("state").map(|s| s.to_string()));
    state
}

/// `GET /healthz` on the admin endpoint: the body, or what went wrong.
async fn healthz(admin: &str) -> String {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: strata\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(SOCKET_TIMEOUT, get).await {
        Err(_) => return "no answer within 5s".into(),
        Ok(Err(e)) => return e.to_string(),
        Ok(Ok(response)) => response,
    };
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        body.trim().to_owned()
    } else {
        status.to_owned()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn load(
    opts: &LoadOptions,
    prefix: String,
    victim_addr: String,
    down_bound: Duration,
) -> Result<bool, LoadError> {
    let start = Instant::now();
    let clock = Arc::new(Clock {
        start,
        end: start + Duration::from_secs(opts.seconds),
        kill: AtomicU64::new(opts.kill_at.saturating_mul(1_000_000_000)),
        window: Duration::from_secs(opts.window),
    });
    let node = &opts.kill_node;
    println!(
        "load: {} workers for {} s, SET {prefix}w<worker>:<0..{}> and GET of acknowledged keys; \
         SIGKILL {node} at t={} s; failover window {} s",
        opts.workers,
        opts.seconds,
        opts.keys.saturating_sub(1),
        opts.kill_at,
        opts.window
    );
    let addr: Arc<str> = opts.addr.as_str().into();
    let prefix: Arc<str> = prefix.into();
    let workers: Vec<_> = (0..opts.workers)
        .map(|id| {
            let worker = Worker {
                id,
                addr: addr.clone(),
                prefix: prefix.clone(),
                keys: opts.keys.max(1),
                clock: clock.clone(),
                rng: Rng(1000 + id as u64),
                conn: None,
                tally: Tally::default(),
            };
            tokio::spawn(worker.run())
        })
        .collect();

    tokio::time::sleep_until(start + Duration::from_secs(opts.kill_at)).await;
    // A fork and exec of kill(1) (the crate forbids the unsafe a direct kill(2) would take):
    // about a millisecond, measured into the kill's moment below.
    let pid = opts.kill_pid;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    match killed {
        Ok(status) if status.success() => {}
        Ok(status) => {
            let reason = format!("kill exited with {status}");
            return Err(LoadError::Kill { pid, reason });
        }
        Err(e) => {
            let reason = e.to_string();
            return Err(LoadError::Kill { pid, reason });
        }
    }
    let kill_time = Instant::now();
    let kill_nanos = u64::try_from((kill_time - start).as_nanos()).unwrap_or(u64::MAX);
    clock.kill.store(kill_nanos, Ordering::Relaxed);
    let kill_second = (kill_time - start).as_secs();
    println!(
        "t={:.2} s: SIGKILL {node} (pid {pid}, {victim_addr})",
        (kill_time - start).as_secs_f64()
    );

    // Time from the kill until strata marks the node down.
    let mut down_after = None;
    let mut watcher = None;
    while kill_time.elapsed() < WATCH_FOR {
        if node_state(&mut watcher, &opts.addr, node).await.as_deref() == Some("down") {
            down_after = Some(kill_time.elapsed());
            break;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    drop(watcher);
    match down_after {
        None => println!(
            "{node} not marked down within {} s of the kill",
            WATCH_FOR.as_secs()
        ),
        Some(after) => println!(
            "{node} marked down {:.0} ms after the SIGKILL (bound: node_timeout + heartbeat = {:.0} ms)",
            ms(after),
            ms(down_bound)
        ),
    }

    let give_up = clock.end + Duration::from_secs(opts.seconds + 60);
    let mut tallies = Vec::new();
    let mut stuck = Vec::new();
    for (id, mut worker) in workers.into_iter().enumerate() {
        match tokio::time::timeout_at(give_up, &mut worker).await {
            Ok(Ok(tally)) => tallies.push(tally),
            _ => {
                worker.abort();
                stuck.push(id);
            }
        }
    }
    if !stuck.is_empty() {
        println!("workers still running after the load: {stuck:?}");
    }

    println!("\nper second: t  requests  failed-writes  failed-reads");
    let mut rows: BTreeMap<u64, [u64; 3]> = BTreeMap::new();
    for tally in &tallies {
        for (second, counts) in &tally.per_second {
            let row = rows.entry(*second).or_default();
            for (sum, count) in row.iter_mut().zip(counts) {
                *sum += count;
            }
        }
    }
    for (second, [requests, writes, reads]) in &rows {
        let mark = if *second == kill_second {
            "  <- kill"
        } else {
            ""
        };
        println!("  {second:>3}  {requests:>7}  {writes:>5}  {reads:>5}{mark}");
    }

    let sum = |f: &dyn Fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let writes_failed = ByPhase {
        before: sum(&|t| t.writes_failed.before),
        window: sum(&|t| t.writes_failed.window),
        after: sum(&|t| t.writes_failed.after),
    };
    let reads_failed = ByPhase {
        before: sum(&|t| t.reads_failed.before),
        window: sum(&|t| t.reads_failed.window),
        after: sum(&|t| t.reads_failed.after),
    };
    println!();
    println!(
        "writes acknowledged:                       {}",
        sum(&|t| t.writes_ok)
    );
    println!(
        "writes failed:                             {} (before the kill {}, in the window {}, after it {})",
        writes_failed.before + writes_failed.window + writes_failed.after,
        writes_failed.before,
        writes_failed.window,
        writes_failed.after
    );
    println!(
        "reads ok:                                  {} (of which {} saw a later unacknowledged write)",
        sum(&|t| t.reads_ok),
        sum(&|t| t.reads_unacked)
    );
    for phase in Phase::ALL {
        let name = format!("{}:", phase.name());
        println!("reads failed {name:<29} {}", reads_failed.get(phase));
    }
    for phase in Phase::ALL {
        let name = format!("{}:", phase.name());
        let slowest = tallies
            .iter()
            .map(|t| t.slowest.get(phase))
            .max()
            .unwrap_or_default();
        println!("slowest request {name:<26} {:.0} ms", ms(slowest));
    }
    let mut samples: Vec<&(Duration, String)> =
        tallies.iter().flat_map(|t| t.samples.iter()).collect();
    samples.sort();
    if !samples.is_empty() {
        println!("first failures:");
        for (at, what) in samples.into_iter().take(SAMPLES_SHOWN) {
            println!("  t={:.3} s  {what}", at.as_secs_f64());
        }
    }

    let lost = check(&opts.addr, &tallies).await?;

    let info = ask(&opts.addr, &["INFO", "nodes"]).await?;
    let layers = ask(&opts.addr, &["INFO", "layers"]).await?;
    let field =
        |f: &HashMap<&str, &str>, name: &str| f.get(name).copied().unwrap_or("?").to_owned();
    for (name, f) in info_lines(&info, "node_") {
        println!(
            "{name}: state={} down_transitions={} up_transitions={} hints_pending={} health_reason={}",
            field(&f, "state"),
            field(&f, "down_transitions"),
            field(&f, "up_transitions"),
            field(&f, "hints_pending"),
            field(&f, "health_reason")
        );
    }
    let layer_line = format!("layer_{}", opts.layer);
    for (name, f) in info_lines(&layers, &layer_line) {
        if name != layer_line {
            continue;
        }
        println!(
            "layer {}: writes={} write_failures={} failovers={} repairs={} errors={}",
            opts.layer,
            field(&f, "writes"),
            field(&f, "write_failures"),
            field(&f, "failovers"),
            field(&f, "repairs"),
            field(&f, "errors")
        );
    }
    if let Some(admin) = &opts.admin {
        println!("/healthz: {}", healthz(admin).await);
    }

    let late = down_after.is_none_or(|after| after > down_bound);
    let failed = reads_failed.after > 0 || lost > 0 || !stuck.is_empty() || late;
    println!();
    println!(
        "RESULT: {} (reads failed after the window: {}, acknowledged writes missing or different: {lost}, {node} down after: {})",
        if failed { "FAIL" } else { "PASS" },
        reads_failed.after,
        down_after.map_or_else(|| "never".to_owned(), |d| format!("{:.0} ms", ms(d)))
    );
    Ok(!failed)
}

/// Reads every acknowledged key back (pipelined GETs through strata, the layer's read
/// consistency) and prints what differs; returns the count of acknowledged writes missing,
/// different or unreadable.
async fn check(addr: &str, tallies: &[Tally]) -> Result<u64, LoadError> {
    let mut expected: BTreeMap<&str, &str> = BTreeMap::new();
    let mut later: HashMap<&str, &HashSet<String>> = HashMap::new();
    for tally in tallies {
        expected.extend(tally.acked.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        later.extend(tally.unacked.iter().map(|(k, v)| (k.as_str(), v)));
    }
    let (mut missing, mut different, mut superseded, mut read_errors) = (0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let strata = |source| LoadError::Strata {
        addr: addr.to_owned(),
        source,
    };
    let mut conn = connect(addr).await.map_err(strata)?;
    let items: Vec<(&str, &str)> = expected.into_iter().collect();
    for batch in items.chunks(CHECK_BATCH) {
        let mut payload = BytesMut::new();
        for (key, _) in batch {
            encode_command(&mut payload, [&b"GET"[..], key.as_bytes()].into_iter());
        }
        let replies = conn.pipeline(&payload, batch.len()).await.map_err(strata)?;
        for (&(key, want), reply) in batch.iter().zip(replies) {
            let got = Value::from_frame(reply.frame);
            let problem = match &got {
                Value::Error(e) => {
                    read_errors += 1;
                    format!("error {e}")
                }
                _ if got.text() == Some(want) => continue,
                _ if got
                    .text()
                    .is_some_and(|v| later.get(key).is_some_and(|l| l.contains(v))) =>
                {
                    superseded += 1;
                    continue;
                }
                Value::Nil => {
                    missing += 1;
                    "missing".to_owned()
                }
                other => {
                    different += 1;
                    format!("holds {other:?}")
                }
            };
            if examples.len() < SAMPLES_SHOWN {
                examples.push(format!("  {key}: acknowledged {want:?}, {problem}"));
            }
        }
    }
    let lost = missing + different + read_errors;
    println!();
    println!(
        "final check: {} acknowledged keys read back with quorum reads",
        items.len()
    );
    println!(
        "acknowledged writes missing or different:  {lost} (missing {missing}, another value {different}, read errors {read_errors})"
    );
    println!(
        "keys holding a later unacknowledged write: {superseded} (a failed write may have landed: not a loss)"
    );
    for example in examples {
        println!("{example}");
    }
    Ok(lost)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_measured_kill() {
        let start = Instant::now();
        let clock = Clock {
            start,
            end: start + Duration::from_secs(30),
            kill: AtomicU64::new(10_000_000_000),
            window: Duration::from_secs(3),
        };
        let at = |s: u64| start + Duration::from_millis(s);
        assert!(matches!(clock.phase(at(9_999)), Phase::Before));
        assert!(matches!(clock.phase(at(10_000)), Phase::Window));
        assert!(matches!(clock.phase(at(13_000)), Phase::After));
        clock.kill.store(10_500_000_000, Ordering::Relaxed);
        assert!(matches!(clock.phase(at(10_000)), Phase::Before));
        assert!(matches!(clock.phase(at(13_000)), Phase::Window));
    }

    #[test]
    fn info_lines_give_fields() {
        let info = Value::Text(
            "# Nodes\r\nnode_node1:addr=127.0.0.1:1,state=up,health_reason=\r\n\
             node_node2:addr=127.0.0.1:2,state=down,health_reason=heartbeat: x, y\r\n"
                .into(),
        );
        let lines: Vec<_> = info_lines(&info, "node_").collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].0, "node_node2");
        assert_eq!(lines[1].1.get("state"), Some(&"down"));
        assert_eq!(lines[1].1.get("addr"), Some(&"127.0.0.1:2"));
        assert_eq!(lines[1].1.get("health_reason"), Some(&"heartbeat: x"));
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
