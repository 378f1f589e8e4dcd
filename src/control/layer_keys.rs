//! The layer key count: every `stats.layer_keys_interval`, a SCAN of every live node sorts the
//! keys it owns (each key once, whatever its copies: `keyspace::owner`) into layers, and each
//! layer's `keys` figure (INFO, STRATA LAYERS, `/metrics`) is replaced by the new count. A pass
//! that cannot finish (a node failing) leaves the previous figures.

use std::sync::Arc;

use crate::coordinator::Coordinator;

use crate::coordinator::scan::NodeScan;

/// The client id the counter's requests use (picks its backend connection).
const COUNTER_CLIENT: u64 = u64::MAX;

/// Runs until the worker's runtime stops; counts nothing while the interval is 0 (the
/// interval is read again each time: a reload may change it).
pub async fn run(coord: Arc<Coordinator>) {
    loop {
        let interval = coord
            .router
            .view()
            .settings
            .config
            .stats
            .layer_keys_interval;
        if interval.is_zero() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        if let Err(reason) = count_once(&coord).await {
            tracing::debug!(%reason, "layer key count skipped");
        }
        tokio::time::sleep(interval).await;
    }
}

/// One pass over every live node.
pub async fn count_once(coord: &Coordinator) -> Result<(), String> {
    let view = coord.router.view_full();
    let layers = &view.layers;
    let owners = crate::coordinator::keyspace::owners_now(&view, &coord.rebalance);
    let mut counts = vec![0u64; layers.len()];
    let batch = view.settings.config.limits.scan_count;
    for node in owners.live_members() {
        let mut scan = NodeScan::new(node, None, batch);
        loop {
            match scan
                .next(
                    &coord.router,
                    crate::backend::Lane::internal(COUNTER_CLIENT),
                )
                .await
            {
                Ok(Some(keys)) => {
                    for key in keys.iter().filter(|k| owners.reports(node, k)) {
                        if let Some(c) = counts.get_mut(usize::from(layers.resolve(key))) {
                            *c += 1;
                        }
                    }
                }
                Ok(None) => break,
                Err(reply) => return Err(format!("{reply:?}")),
            }
        }
    }
    for ((_, layer), n) in layers.iter().zip(counts) {
        layer.stats.set_keys(n);
    }
    Ok(())
}
