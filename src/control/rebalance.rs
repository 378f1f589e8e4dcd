//! Rebalance: after membership changes, walks every node with SCAN and moves each key the node
//! no longer holds a copy of (by the key's layer and the current ring) to the nodes that should:
//! DUMP and PTTL on the old holder, `RESTORE key ttl payload` (without REPLACE: a value
//! written to the new owner since the change is newer and stays) on each new replica, then
//! UNLINK on the old holder. At most `rebalance.max_keys_per_sec` keys are moved per second.
//!
//! While a rebalance runs, reads that miss also ask the key's owners on the rings before the
//! change (`fallback`), so a key not moved yet is still found (and copied to its new owner).
//! A run that ends while the ring changed again starts over on the new ring.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::cluster::View;

use super::walk::{restored, Direct, Pace};
use super::Control;

/// What a walk found (DRY) or did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub scanned: u64,
    /// Keys to move (DRY) or moved.
    pub moved: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Per node walked: (id, keys scanned, keys to move / moved).
    pub nodes: Vec<(String, u64, u64)>,
    /// Nodes that could not be walked, with why.
    pub unreachable: Vec<(String, String)>,
}

/// Starts a rebalance in the background on the current runtime; `Err` when one runs.
pub fn start(control: &Arc<Control>) -> Result<(), String> {
    let me = &control.rebalance;
    if me
        .running
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err("a rebalance is already running".into());
    }
    tokio::spawn(run(control.clone()));
    Ok(())
}

/// Runs until a walk completes on the ring that is still current.
async fn run(control: Arc<Control>) {
    let me = &control.rebalance;
    loop {
        let view = control.live.load_full();
        let topology = &view.topology;
        let started = Instant::now();
        tracing::info!(ring_version = topology.version, "rebalance started");
        let summary = walk(&control, &view, false).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        me.last_ms.store(ms, Ordering::Relaxed);
        me.last_version.store(topology.version, Ordering::Relaxed);
        me.runs.fetch_add(1, Ordering::Relaxed);
        let error = (!summary.unreachable.is_empty()).then(|| {
            summary
                .unreachable
                .iter()
                .map(|(id, why)| format!("{id}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
        tracing::info!(
            ring_version = topology.version,
            scanned = summary.scanned,
            moved = summary.moved,
            skipped = summary.skipped,
            failed = summary.failed,
            ms,
            unreachable = error.as_deref().unwrap_or(""),
            "rebalance finished"
        );
        *me.lock_error() = error;
        me.forget_deleted();
        if control.drain.is_draining() || control.live.load().topology.version == topology.version {
            me.forget_previous();
            break;
        }
    }
    me.running.store(false, Ordering::SeqCst);
}

/// Walks every node of `topology` (members, and removed nodes still reachable) and moves, or
/// with `dry` only counts, the keys each holds but should not.
pub async fn walk(control: &Control, view: &View, dry: bool) -> Summary {
    let topology = &view.topology;
    let config = &view.settings.config;
    let mut summary = Summary::default();
    let mut targets: HashMap<usize, Direct> = HashMap::new();
    let mut pace = Pace::new(config.rebalance.max_keys_per_sec);
    let mut walked: Vec<&str> = Vec::new();
    // Members first, then removed nodes; one walk per address (a node removed and added back
    // is the same server under two slots).
    let order = topology
        .members
        .iter()
        .copied()
        .chain((0..topology.nodes.len()).filter(|s| !topology.members.contains(s)));
    for slot in order {
        let Some(node) = topology.node(slot) else {
            continue;
        };
        if walked.contains(&node.addr.as_str()) {
            continue;
        }
        walked.push(&node.addr);
        let member = topology.members.contains(&slot);
        let mut source =
            match Direct::connect(node, config.timeouts.connect, config.timeouts.request).await {
                Ok(c) => c,
                Err(e) => {
                    // A removed node that is gone has nothing left to give.
                    if member {
                        summary.unreachable.push((node.id.clone(), e));
                    }
                    continue;
                }
            };
        let mut node_scanned = 0;
        let mut node_moved = 0;
        let mut cursor = Bytes::from_static(b"0");
        loop {
            if control.drain.is_draining() {
                // Shutting down: stop between two batches (what is not moved stays put).
                summary
                    .unreachable
                    .push((node.id.clone(), "stopped: shutting down".into()));
                return summary;
            }
            let (next, keys) = match source.scan(&cursor, config.limits.scan_count).await {
                Ok(page) => page,
                Err(e) => {
                    summary.unreachable.push((node.id.clone(), e));
                    break;
                }
            };
            let page = keys.len() as u64;
            node_scanned += page;
            if !dry {
                control.rebalance.scanned.fetch_add(page, Ordering::Relaxed);
            }
            // Keys this node should not hold, with where they belong.
            let moves: Vec<(Bytes, Vec<usize>)> = keys
                .into_iter()
                .filter_map(|key| {
                    let copies = view.layers.of(&key).map_or(1, |l| l.spec.replication);
                    let owners = topology.ring.preference_list(&key, copies);
                    (!owners.contains(&slot)).then_some((key, owners))
                })
                .collect();
            if dry {
                node_moved += moves.len() as u64;
            } else if !moves.is_empty() {
                let done = move_keys(control, view, &mut source, &mut targets, moves).await;
                node_moved += done.moved;
                summary.skipped += done.skipped;
                summary.failed += done.failed;
                let me = &control.rebalance;
                me.moved.fetch_add(done.moved, Ordering::Relaxed);
                me.skipped.fetch_add(done.skipped, Ordering::Relaxed);
                me.failed.fetch_add(done.failed, Ordering::Relaxed);
                pace.spend(done.moved + done.skipped + done.failed).await;
            }
            if next.as_ref() == b"0" {
                break;
            }
            cursor = next;
        }
        summary.scanned += node_scanned;
        summary.moved += node_moved;
        summary
            .nodes
            .push((node.id.clone(), node_scanned, node_moved));
    }
    summary
}

/// What moving one batch did.
#[derive(Default)]
struct Moved {
    moved: u64,
    skipped: u64,
    failed: u64,
}

/// Copies each key to its owners that lack it, then unlinks it on `source` when every owner
/// has it.
async fn move_keys(
    control: &Control,
    view: &View,
    source: &mut Direct,
    targets: &mut HashMap<usize, Direct>,
    moves: Vec<(Bytes, Vec<usize>)>,
) -> Moved {
    let topology = &view.topology;
    let config = &view.settings.config;
    let mut out = Moved::default();
    let count = moves.len() as u64;
    let Ok(copies) = source.read_copies(moves).await else {
        out.failed += count;
        return out;
    };
    // Which keys every owner now has.
    let mut ok = vec![true; copies.len()];
    let mut by_target: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, copy) in copies.iter().enumerate() {
        for &o in &copy.with {
            by_target.entry(o).or_default().push(i);
        }
    }
    let fail = |ok: &mut Vec<bool>, items: &[usize]| {
        for &i in items {
            if let Some(flag) = ok.get_mut(i) {
                *flag = false;
            }
        }
    };
    for (target, items) in by_target {
        let Some(node) = topology.node(target) else {
            fail(&mut ok, &items);
            continue;
        };
        let conn = match targets.entry(target) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match Direct::connect(node, config.timeouts.connect, config.timeouts.request).await
                {
                    Ok(c) => e.insert(c),
                    Err(_) => {
                        fail(&mut ok, &items);
                        continue;
                    }
                }
            }
        };
        let restores: Vec<Vec<Bytes>> = items
            .iter()
            .filter_map(|&i| copies.get(i))
            .map(|copy| copy.restore())
            .collect();
        match conn.pipeline(&restores).await {
            Ok(replies) => {
                let mut undo = Vec::new();
                for (&i, reply) in items.iter().zip(replies.iter()) {
                    if let Some(flag) = ok.get_mut(i) {
                        if !restored(reply) {
                            *flag = false;
                        } else if reply.is_error() {
                            out.skipped += 1;
                        } else if let Some(copy) = copies.get(i) {
                            // Deleted by a client meanwhile: the restored copy goes too.
                            if control.rebalance.is_tombstone(&copy.key) {
                                undo.push(vec![Bytes::from_static(b"UNLINK"), copy.key.clone()]);
                            }
                        }
                    }
                }
                if !undo.is_empty() && conn.pipeline(&undo).await.is_err() {
                    targets.remove(&target);
                }
            }
            Err(_) => {
                // The connection is in an unknown state: drop it, the next batch reconnects.
                targets.remove(&target);
                fail(&mut ok, &items);
            }
        }
    }
    let unlinks: Vec<Vec<Bytes>> = copies
        .iter()
        .zip(ok.iter())
        .filter(|(_, &done)| done)
        .map(|(copy, _)| vec![Bytes::from_static(b"UNLINK"), copy.key.clone()])
        .collect();
    let failed = ok.iter().filter(|&&done| !done).count() as u64;
    out.failed += failed;
    if source.pipeline(&unlinks).await.is_ok() {
        out.moved += unlinks.len() as u64;
    } else {
        out.failed += unlinks.len() as u64;
    }
    out
}
