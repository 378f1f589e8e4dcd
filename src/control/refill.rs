//! Refilling a node that restarted (its Redis `run_id` changed, see `cluster::refill`): every
//! other member is walked with SCAN, and each key whose replicas (by its layer and the current
//! ring) include the restarted node is checked there with EXISTS; the keys it lacks are read
//! with DUMP and PTTL and written to it with `RESTORE key ttl payload`, without REPLACE (a value
//! written to the node since its restart is newer and stays). At most
//! `repair.refill_keys_per_sec` keys are copied per second.
//!
//! A node restarted empty has lost every key; hints bring back only the keys written while it
//! was down, so without a refill the other keys keep one copy fewer until rewritten, and a
//! second empty restart can leave a key on one replica, outvoted by two misses. Until the
//! refill completes, reads do not believe the node's misses (`coordinator::read_flight`).
//!
//! A key deleted by a client during the refill is remembered (`cluster::rebalance`) and
//! unlinked again on the node if the refill had restored it from an older copy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::cluster::NodeInfo;

use super::walk::{restored, Direct, Pace};
use super::Control;

/// Checks, every `health.heartbeat_interval`, for members that restarted and are up, and
/// refills each (one refill per node at a time, nodes in parallel). Runs until shutdown.
pub async fn watch(control: Arc<Control>) {
    loop {
        let interval = control
            .live
            .load()
            .settings
            .config
            .health
            .heartbeat_interval;
        tokio::time::sleep(interval).await;
        if control.drain.is_draining() {
            return;
        }
        let topology = control.live.load().topology.clone();
        for node in topology.member_nodes() {
            if node.health.is_down() || node.is_retired() {
                continue;
            }
            if let Some(generation) = node.refill.begin() {
                tokio::spawn(run(control.clone(), node.clone(), generation));
            }
        }
    }
}

/// What a refill walk did, and whether it reached its end.
#[derive(Default)]
struct Walked {
    scanned: u64,
    copied: u64,
    present: u64,
    failed: u64,
    /// Members that could not be walked, with why (their keys are not copied).
    unreachable: Vec<String>,
    /// Why the walk stopped early: the node went away, restarted again, or strata stops.
    stopped: Option<String>,
}

/// Refills `node` for its restart `generation` (claimed by [`watch`]).
async fn run(control: Arc<Control>, node: Arc<NodeInfo>, generation: u64) {
    let started = Instant::now();
    tracing::info!(node = %node.id, "refill started");
    control.rebalance.refill_started();
    let walked = walk(&control, &node, generation).await;
    control.rebalance.refill_ended();
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let unreachable = walked.unreachable.join("; ");
    let error = match (&walked.stopped, unreachable.is_empty()) {
        (Some(why), _) => Some(format!("stopped: {why}")),
        (None, false) => Some(format!("not walked: {unreachable}")),
        (None, true) => None,
    };
    if walked.stopped.is_some() {
        tracing::warn!(
            node = %node.id,
            copied = walked.copied,
            reason = error.as_deref().unwrap_or(""),
            "refill stopped; it starts over once the node is up"
        );
    } else {
        tracing::info!(
            node = %node.id,
            scanned = walked.scanned,
            copied = walked.copied,
            present = walked.present,
            failed = walked.failed,
            ms,
            unreachable,
            "refill finished"
        );
    }
    node.refill
        .end(generation, walked.stopped.is_none(), ms, error);
}

/// Walks every other member and copies to `node` the keys it should hold and lacks.
///
/// A member that cannot be reached (often one restarting at the same time) is tried again,
/// from where its walk broke off, every `health.heartbeat_interval` once the other members are
/// done, for as long as health needs to mark a node down and see it up again
/// (`node_timeout` + (`failure_threshold` + `recovery_threshold`) heartbeats); only then is it
/// reported as not walked. Without the second try, two nodes restarted one after the other left the first
/// one's refill without the second one's keys whenever the walk reached it mid-restart.
async fn walk(control: &Control, node: &Arc<NodeInfo>, generation: u64) -> Walked {
    let mut out = Walked::default();
    let view = control.live.load_full();
    let config = &view.settings.config;
    let (connect, timeout) = (config.timeouts.connect, config.timeouts.request);
    let mut target = match Direct::connect(node, connect, timeout).await {
        Ok(c) => c,
        Err(e) => {
            out.stopped = Some(e);
            return out;
        }
    };
    let mut pace = Pace::new(config.repair.refill_keys_per_sec);
    let mut pending: Vec<Source> = view
        .topology
        .member_nodes()
        .filter(|n| n.index != node.index && n.addr != node.addr)
        .map(|n| Source::new(n.clone()))
        .collect();
    let health = &config.health;
    let every = health.heartbeat_interval;
    let retry_for = health.node_timeout.saturating_add(
        every.saturating_mul(
            health
                .failure_threshold
                .saturating_add(health.recovery_threshold),
        ),
    );
    let mut retry_until: Option<Instant> = None;
    loop {
        let mut broken = Vec::new();
        for mut source in pending {
            match walk_source(
                control,
                node,
                generation,
                &mut source,
                &mut target,
                &mut pace,
                &mut out,
            )
            .await
            {
                Ok(()) => {}
                Err(Stop::Target(why)) => {
                    out.stopped = Some(why);
                    return out;
                }
                Err(Stop::Source(why)) => {
                    source.error = why;
                    broken.push(source);
                }
            }
        }
        if broken.is_empty() {
            return out;
        }
        let now = Instant::now();
        let deadline =
            *retry_until.get_or_insert_with(|| now.checked_add(retry_for).unwrap_or(now));
        if now.checked_add(every).is_none_or(|next| next > deadline) {
            out.unreachable = broken
                .iter()
                .map(|s| format!("{}: {}", s.node.id, s.error))
                .collect();
            return out;
        }
        tokio::time::sleep(every).await;
        if let Some(why) = stop_reason(control, node, generation) {
            out.stopped = Some(why);
            return out;
        }
        pending = broken;
    }
}

/// One member walked as a source, and where its walk stands.
struct Source {
    node: Arc<NodeInfo>,
    /// The SCAN cursor to go on from (`0`: from the start).
    cursor: Bytes,
    /// The member's restart count when `cursor` was returned: a restart voids the cursor.
    restarts: u64,
    /// Why the last try broke off.
    error: String,
}

impl Source {
    fn new(node: Arc<NodeInfo>) -> Self {
        let restarts = node.refill.restarts.load(Ordering::Relaxed);
        Source {
            node,
            cursor: Bytes::from_static(b"0"),
            restarts,
            error: String::new(),
        }
    }
}

/// Why walking one source ended early.
enum Stop {
    /// The refill as a whole stops (the target failed, or see [`stop_reason`]).
    Target(String),
    /// This source failed; it may be tried again.
    Source(String),
}

/// Walks `source` from its cursor to the end, copying to `node` what it lacks.
async fn walk_source(
    control: &Control,
    node: &Arc<NodeInfo>,
    generation: u64,
    source: &mut Source,
    target: &mut Direct,
    pace: &mut Pace,
    out: &mut Walked,
) -> Result<(), Stop> {
    let (connect, timeout, scan_count) = {
        let view = control.live.load();
        let c = &view.settings.config;
        (c.timeouts.connect, c.timeouts.request, c.limits.scan_count)
    };
    if source.node.is_retired() {
        return Ok(());
    }
    if source.node.health.is_down() {
        return Err(Stop::Source("marked down".into()));
    }
    let mut conn = Direct::connect(&source.node, connect, timeout)
        .await
        .map_err(Stop::Source)?;
    // Checked after connecting: the new connection's `run_id` is often what notices a restart.
    let restarts = source.node.refill.restarts.load(Ordering::Relaxed);
    if restarts != source.restarts {
        // The member restarted since its cursor was handed out: that cursor means nothing now.
        source.restarts = restarts;
        source.cursor = Bytes::from_static(b"0");
    }
    loop {
        if let Some(why) = stop_reason(control, node, generation) {
            return Err(Stop::Target(why));
        }
        let (next, keys) = conn
            .scan(&source.cursor, scan_count)
            .await
            .map_err(Stop::Source)?;
        out.scanned += keys.len() as u64;
        node.refill
            .scanned
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        // The ring as it is now: a membership change during the walk is the rebalance's.
        let now = control.live.load();
        let mine: Vec<Bytes> = keys
            .into_iter()
            .filter(|key| {
                let copies = now.layers.of(key).map_or(1, |l| l.spec.replication);
                copies > 1
                    && now
                        .topology
                        .ring
                        .preference_list(key, copies)
                        .contains(&node.index)
            })
            .collect();
        drop(now);
        if !mine.is_empty() {
            match copy_missing(control, node, &mut conn, target, mine).await {
                Ok(done) => {
                    pace.spend(done.copied).await;
                    out.copied += done.copied;
                    out.present += done.present;
                    out.failed += done.failed;
                }
                Err(Failed::Target(e)) => return Err(Stop::Target(format!("{}: {e}", node.id))),
                Err(Failed::Source(e)) => return Err(Stop::Source(e)),
            }
        }
        if next.as_ref() == b"0" {
            return Ok(());
        }
        source.cursor = next;
    }
}

/// Why the walk must stop now, if it must.
fn stop_reason(control: &Control, node: &NodeInfo, generation: u64) -> Option<String> {
    if control.drain.is_draining() {
        Some("shutting down".into())
    } else if node.is_retired() {
        Some("the node was removed".into())
    } else if node.health.is_down() {
        Some("the node is marked down".into())
    } else if node.refill.superseded(generation) {
        Some("the node restarted again".into())
    } else if !node.refill.enabled() {
        Some("repair.refill was turned off".into())
    } else {
        None
    }
}

/// Which side of a copy failed.
enum Failed {
    Source(String),
    Target(String),
}

/// What one batch did.
#[derive(Default)]
struct Batch {
    copied: u64,
    present: u64,
    failed: u64,
}

/// Copies those of `keys` that `target` lacks from `source`.
async fn copy_missing(
    control: &Control,
    node: &NodeInfo,
    source: &mut Direct,
    target: &mut Direct,
    keys: Vec<Bytes>,
) -> Result<Batch, Failed> {
    let mut out = Batch::default();
    let exists: Vec<Vec<Bytes>> = keys
        .iter()
        .map(|k| vec![Bytes::from_static(b"EXISTS"), k.clone()])
        .collect();
    let found = target.pipeline(&exists).await.map_err(Failed::Target)?;
    let missing: Vec<(Bytes, ())> = keys
        .into_iter()
        .zip(found.iter())
        .filter(|(_, reply)| !matches!(reply.frame, BytesFrame::Integer(1)))
        .map(|(k, _)| (k, ()))
        .collect();
    out.present += (found.len() - missing.len()) as u64;
    if missing.is_empty() {
        node.refill
            .present
            .fetch_add(out.present, Ordering::Relaxed);
        return Ok(out);
    }
    let copies = source.read_copies(missing).await.map_err(Failed::Source)?;
    let restores: Vec<Vec<Bytes>> = copies.iter().map(|c| c.restore()).collect();
    let replies = target.pipeline(&restores).await.map_err(Failed::Target)?;
    let mut undo = Vec::new();
    for (copy, reply) in copies.iter().zip(replies.iter()) {
        if !restored(reply) {
            out.failed += 1;
            tracing::debug!(node = %node.id, key = ?copy.key, reply = ?reply.frame, "refill: RESTORE refused");
        } else if reply.is_error() {
            // BUSYKEY: written since the EXISTS; the newer value stays.
            out.present += 1;
        } else {
            out.copied += 1;
            // Deleted by a client since the DUMP: the restored copy goes too.
            if control.rebalance.is_tombstone(&copy.key) {
                undo.push(vec![Bytes::from_static(b"UNLINK"), copy.key.clone()]);
            }
        }
    }
    if !undo.is_empty() {
        target.pipeline(&undo).await.map_err(Failed::Target)?;
    }
    let r = &node.refill;
    r.copied.fetch_add(out.copied, Ordering::Relaxed);
    r.present.fetch_add(out.present, Ordering::Relaxed);
    r.failed.fetch_add(out.failed, Ordering::Relaxed);
    Ok(out)
}
