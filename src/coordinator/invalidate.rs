//! STRATA INVALIDATE: remove one key from every replica, every key of a layer, or the keys whose
//! template fields have given values (`model=gpt-4`), and count them in the layers' statistics.
//!
//! Layer-wide removal walks every node with SCAN MATCH and UNLINKs in batches of
//! `limits.scan_count` (never KEYS, which would block a node). A scanned key is removed only if
//! it really belongs to the layer: a longer prefix may give it to another layer.

use crate::backend::Lane;
use bytes::Bytes;

use crate::backend::Router;
use crate::config::template::escape_glob;
use crate::policy::LayerId;
use crate::protocol::Reply;

use super::scan::{ask, unlink, NodeScan};

const USAGE: &str =
    "ERR strata: INVALIDATE takes KEY <key>, LAYER <name> or WHERE <field>=<value> [...]";

/// `STRATA INVALIDATE ...` (args[0] = STRATA, args[1] = INVALIDATE).
pub async fn command(router: &Router, lane: Lane, args: &[Bytes]) -> Reply {
    let sub = args
        .get(2)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let result = match (sub.as_slice(), args.get(3)) {
        (b"key", Some(key)) if args.len() == 4 => invalidate_key(router, lane, key).await,
        (b"layer", Some(name)) if args.len() == 4 => invalidate_layer(router, lane, name).await,
        (b"where", Some(_)) => {
            invalidate_where(router, lane, args.get(3..).unwrap_or_default()).await
        }
        _ => Err(Reply::error_static(USAGE)),
    };
    match result {
        Ok(n) => Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        Err(reply) => reply,
    }
}

/// Adds `n` removed keys to the layer's invalidations.
fn count(router: &Router, layer: LayerId, n: u64) {
    router
        .live()
        .layer_figures(layer, router.worker, |w| w.invalidations.add(n));
}

/// Removes the key from each of its replicas; 1 when some replica had it.
async fn invalidate_key(router: &Router, lane: Lane, key: &Bytes) -> Result<u64, Reply> {
    let (layer, nodes) = {
        let view = router.view();
        let layer = view.layers.resolve(key);
        let copies = view
            .layers
            .get(layer)
            .map_or(1, |l| l.spec.replication.max(1));
        (layer, view.topology.ring.preference_list(key, copies))
    };
    let mut removed = 0;
    for node in nodes {
        let reply = ask(router, lane, node, &[b"UNLINK", key]).await?;
        if let redis_protocol::resp2::types::BytesFrame::Integer(n) = reply.frame {
            removed = removed.max(u64::try_from(n).unwrap_or(0));
        }
    }
    count(router, layer, removed);
    Ok(removed)
}

async fn invalidate_layer(router: &Router, lane: Lane, name: &Bytes) -> Result<u64, Reply> {
    let layers = router.view().layers.clone();
    let Some((id, layer)) = layers.by_name(name) else {
        return Err(Reply::error(format!(
            "ERR strata: no layer named '{}'",
            String::from_utf8_lossy(name)
        )));
    };
    // The default layer has no prefix: every key is a candidate, filtered by its layer.
    let pattern = if layer.spec.prefix.is_empty() {
        None
    } else {
        let mut p = Vec::new();
        escape_glob(layer.spec.prefix.as_bytes(), &mut p);
        p.push(b'*');
        Some(p)
    };
    remove_matching(router, lane, id, pattern).await
}

async fn invalidate_where(router: &Router, lane: Lane, conditions: &[Bytes]) -> Result<u64, Reply> {
    let mut values: Vec<(&str, &[u8])> = Vec::with_capacity(conditions.len());
    for c in conditions {
        let parsed = c.iter().position(|&b| b == b'=').and_then(|at| {
            let field = std::str::from_utf8(c.get(..at)?).ok()?;
            (!field.is_empty()).then_some((field, c.get(at + 1..)?))
        });
        match parsed {
            Some(v) => values.push(v),
            None => {
                return Err(Reply::error(format!(
                    "ERR strata: expected <field>=<value>, got '{}'",
                    String::from_utf8_lossy(c)
                )))
            }
        }
    }
    let targets: Vec<(LayerId, Vec<u8>)> = router
        .view()
        .layers
        .iter()
        .filter_map(|(id, l)| Some((id, l.spec.key.as_ref()?.pattern(&values)?)))
        .collect();
    if targets.is_empty() {
        let fields: Vec<&str> = values.iter().map(|(f, _)| *f).collect();
        return Err(Reply::error(format!(
            "ERR strata: no layer's key template has the field(s) {}",
            fields.join(", ")
        )));
    }
    let mut total = 0;
    for (id, pattern) in targets {
        total += remove_matching(router, lane, id, Some(pattern)).await?;
    }
    Ok(total)
}

/// Scans every node for keys matching `pattern` that belong to `layer`, and unlinks them.
async fn remove_matching(
    router: &Router,
    lane: Lane,
    layer: LayerId,
    pattern: Option<Vec<u8>>,
) -> Result<u64, Reply> {
    let (batch, members) = {
        let view = router.view();
        let members = view.topology.serving();
        (view.settings.config.limits.scan_count, members)
    };
    let mut removed = 0;
    for node in members {
        let mut scan = NodeScan::new(node, pattern.clone(), batch);
        while let Some(keys) = scan.next(router, lane).await? {
            let mine: Vec<Bytes> = keys
                .into_iter()
                .filter(|k| router.view().layers.resolve(k) == layer)
                .collect();
            for chunk in mine.chunks(batch) {
                let n = unlink(router, lane, node, chunk).await?;
                removed += n;
                count(router, layer, n);
            }
        }
    }
    Ok(removed)
}
