//! `strata load` (a hidden subcommand): the load of `scripts/failover-check.sh`. Concurrent
//! clients write and read back keys of their own in one layer of a running strata while one
//! node is SIGKILLed; afterwards every acknowledged write is read back. It prints what failed
//! and when (before the kill, in the failover window after it, after the window), how long
//! strata took to mark the node down, and whether any acknowledged write was lost.
//!
//! It talks RESP through the backend's [`RespClient`], so the
//! project has one client-side RESP implementation (this used to be a Python script with a
//! parser of its own). The workers share one thread, as the Python client's threads did: the
//! machine's other cores stay with strata and its nodes.
//!
//! - `worker`: the workers, their clock (phases of the run) and tallies.
//! - `report`: the tallies, the read-back of acknowledged writes, strata's INFO and `/healthz`.

mod report;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{CallError, RespClient};
use crate::config::Config;
use worker::{Clock, Tally, Value, Worker};

/// How long after the kill the watcher waits for the node to be marked down.
const WATCH_FOR: Duration = Duration::from_secs(10);
/// The watcher's poll interval (the down time it prints is up to this late).
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// What `strata load` is asked to do; the rest comes from the configuration strata runs with.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// strata (host:port).
    pub addr: String,
    /// strata's admin endpoint, for `/healthz` at the end.
    pub admin: Option<String>,
    /// Length of the load, seconds.
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
    runtime.block_on(load(opts, &prefix, &victim_addr, down_bound))
}

async fn load(
    opts: &LoadOptions,
    prefix: &str,
    victim_addr: &str,
    down_bound: Duration,
) -> Result<bool, LoadError> {
    let start = Instant::now();
    let clock = Arc::new(Clock::new(start, opts.seconds, opts.kill_at, opts.window));
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
    let workers: Vec<JoinHandle<Tally>> = (0..opts.workers)
        .map(|id| {
            let worker = Worker::new(id, addr.clone(), prefix.clone(), opts.keys, clock.clone());
            tokio::spawn(worker.run())
        })
        .collect();

    tokio::time::sleep_until(start + Duration::from_secs(opts.kill_at)).await;
    kill(opts.kill_pid)?;
    let kill_time = Instant::now();
    clock.killed(kill_time);
    println!(
        "t={:.2} s: SIGKILL {node} (pid {}, {victim_addr})",
        (kill_time - start).as_secs_f64(),
        opts.kill_pid
    );

    let down_after = watch_down(&opts.addr, node, kill_time).await;
    match down_after {
        None => println!(
            "{node} not marked down within {} s of the kill",
            WATCH_FOR.as_secs()
        ),
        Some(after) => println!(
            "{node} marked down {:.0} ms after the SIGKILL (bound: node_timeout + heartbeat = \
             {:.0} ms)",
            report::ms(after),
            report::ms(down_bound)
        ),
    }

    let give_up = clock.end + Duration::from_secs(opts.seconds + 60);
    let (tallies, stuck) = join(workers, give_up).await;
    if !stuck.is_empty() {
        println!("workers still running after the load: {stuck:?}");
    }
    let reads_failed = report::tallies(&tallies, (kill_time - start).as_secs());
    let lost = report::check(&opts.addr, &tallies).await?;
    report::status(&opts.addr, opts.admin.as_deref(), &opts.layer).await?;

    let late = down_after.is_none_or(|after| after > down_bound);
    let failed = reads_failed.after > 0 || lost > 0 || !stuck.is_empty() || late;
    println!();
    println!(
        "RESULT: {} (reads failed after the window: {}, acknowledged writes missing or \
         different: {lost}, {node} down after: {})",
        if failed { "FAIL" } else { "PASS" },
        reads_failed.after,
        down_after.map_or_else(
            || "never".to_owned(),
            |d| format!("{:.0} ms", report::ms(d))
        )
    );
    Ok(!failed)
}

/// SIGKILLs `pid` with kill(1): the crate forbids the unsafe a direct kill(2) would take. The
/// fork and exec cost about a millisecond, counted into the kill's moment by the caller.
fn kill(pid: u32) -> Result<(), LoadError> {
    let reason = match std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
    {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => format!("kill exited with {status}"),
        Err(e) => e.to_string(),
    };
    Err(LoadError::Kill { pid, reason })
}

/// Polls INFO nodes until `node` is marked down; the time from the kill, or `None` after
/// [`WATCH_FOR`].
async fn watch_down(addr: &str, node: &str, kill_time: Instant) -> Option<Duration> {
    let mut watcher = None;
    while kill_time.elapsed() < WATCH_FOR {
        if node_state(&mut watcher, addr, node).await.as_deref() == Some("down") {
            return Some(kill_time.elapsed());
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    None
}

/// The node's `state` in INFO nodes; `None` when strata could not be asked (the next poll
/// opens a new connection).
async fn node_state(watcher: &mut Option<RespClient>, addr: &str, node: &str) -> Option<String> {
    let conn = match watcher {
        Some(conn) => conn,
        None => watcher.insert(worker::connect(addr).await.ok()?),
    };
    let Ok(reply) = conn.call(&["INFO", "nodes"]).await else {
        *watcher = None;
        return None;
    };
    let info = Value::from_frame(reply.frame);
    let line = format!("node_{node}");
    let state = report::info_lines(&info, &line)
        .find(|(name, _)| *name == line)
        .and_then(|(_, fields)| fields.get("state").map(|s| s.to_string()));
    state
}

/// The workers' tallies, and the ids of those not finished by `give_up` (stopped).
async fn join(workers: Vec<JoinHandle<Tally>>, give_up: Instant) -> (Vec<Tally>, Vec<usize>) {
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
    (tallies, stuck)
}
