//! Hinted handoff, the replay side: once a node is up again, every key it missed (its hints)
//! is copied to it from a live replica of the key, or deleted on it when no replica has the
//! key any more.

use std::sync::Arc;

use crate::backend::Router;

use super::copy::copy_key;

/// Copies the hinted keys of node `target` to it, batch by batch, while it stays up. Returns
/// how many hints were replayed.
pub async fn replay(router: Arc<Router>, target: usize) -> u64 {
    let Some(node) = router.view().topology.node(target).cloned() else {
        return 0;
    };
    let batch = router.view().settings.config.repair.replay_batch;
    let mut replayed = 0;
    while !node.health.is_down() {
        let keys = node.hints.take(batch);
        if keys.is_empty() {
            break;
        }
        for (i, key) in keys.iter().enumerate() {
            let view = router.view();
            let replication = view.layers.of(key).map_or(1, |l| l.spec.replication);
            let topology = &view.topology;
            let source = topology
                .ring
                .preference_list(key, replication)
                .into_iter()
                .filter(|&n| n != target)
                .find(|&n| topology.node(n).is_some_and(|n| !n.health.is_down()));
            drop(view);
            let Some(source) = source else {
                // No live copy to take the value from.
                node.hints.dropped(1);
                continue;
            };
            match copy_key(&router, key, source, &[target]).await {
                Ok(()) => {
                    node.hints.replayed(1);
                    replayed += 1;
                }
                Err(reason) => {
                    tracing::debug!(node = %node.id, %reason, "hint replay failed; kept for later");
                    // Keep this key and the rest of the batch for the next attempt.
                    node.hints.put_back(keys.get(i..).unwrap_or_default());
                    return replayed;
                }
            }
        }
    }
    if replayed > 0 {
        tracing::info!(node = %node.id, replayed, "hinted handoff: keys copied to recovered node");
    }
    replayed
}
