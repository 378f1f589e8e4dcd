//! `STRATA NEARCACHE GET <key>` (is the key's value in the near cache, since when, for how
//! much longer) and `STRATA NEARCACHE FLUSH [<layer>]` (empty every near cache, or one
//! layer's). docs/near-cache.md.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::command::classify::{unknown_subcommand, wrong_arity};
use crate::control::Control;
use crate::protocol::Reply;

const NO_NEAR_CACHE: &str = "has no near cache";

/// `STRATA NEARCACHE ...` (args[0] = STRATA, args[1] = NEARCACHE).
pub fn command(control: &Control, args: &[Bytes]) -> Reply {
    let sub = args
        .get(2)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match (sub.as_slice(), args.len()) {
        (b"get", 4) => get(control, args.get(3).map_or(&b""[..], |k| k)),
        (b"get", _) => wrong_arity("strata|nearcache|get"),
        (b"flush", 3) => flush(control, None),
        (b"flush", 4) => flush(control, args.get(3).map(|l| l.as_ref())),
        (b"flush", _) => wrong_arity("strata|nearcache|flush"),
        (b"", _) => wrong_arity("strata|nearcache"),
        _ => unknown_subcommand("strata|nearcache", args.get(2).map_or(&b""[..], |s| s)),
    }
}

fn int(n: u64) -> Reply {
    Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A flat field/value array: `layer`, `live` (entries may be served: every invalidation
/// stream is up), `cached`, and for a cached key `bytes`, `filled_unix_ms`, `age_ms` and
/// `ttl_ms` (its remaining life, 0 once run out).
fn get(control: &Control, key: &[u8]) -> Reply {
    let view = control.live.load();
    let Some(layer) = view.layers.of(key) else {
        return Reply::error_static("ERR strata: internal error: no layer");
    };
    let Some(store) = &layer.near else {
        return Reply::error(format!(
            "ERR strata: layer '{}' {NO_NEAR_CACHE}",
            layer.spec.name
        ));
    };
    let mut f = vec![
        Reply::bulk("layer"),
        Reply::text(layer.spec.name.clone()),
        Reply::bulk("live"),
        int(u64::from(store.coherence().ready())),
    ];
    let entry = store.peek(key);
    f.push(Reply::bulk("cached"));
    f.push(int(u64::from(entry.is_some())));
    if let Some(e) = entry {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let left = e.expires.saturating_duration_since(Instant::now());
        f.extend([
            Reply::bulk("bytes"),
            int(e.value().len() as u64),
            Reply::bulk("filled_unix_ms"),
            int(e.filled_unix_ms),
            Reply::bulk("age_ms"),
            int(now_ms.saturating_sub(e.filled_unix_ms)),
            Reply::bulk("ttl_ms"),
            int(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
        ]);
    }
    Reply::Array(f)
}

/// Empties every near cache (or `layer`'s); replies with the entries removed. Fills under
/// way are dropped too.
fn flush(control: &Control, layer: Option<&[u8]>) -> Reply {
    let view = control.live.load();
    let stores: Vec<_> = match layer {
        None => view
            .layers
            .iter()
            .filter_map(|(_, l)| l.near.clone())
            .collect(),
        Some(name) => match view.layers.by_name(name) {
            None => {
                return Reply::error(format!(
                    "ERR strata: no layer named '{}'",
                    String::from_utf8_lossy(name)
                ))
            }
            Some((_, l)) => match &l.near {
                Some(store) => vec![store.clone()],
                None => {
                    return Reply::error(format!(
                        "ERR strata: layer '{}' {NO_NEAR_CACHE}",
                        l.spec.name
                    ))
                }
            },
        },
    };
    let removed: u64 = stores.iter().map(|s| s.entries()).sum();
    if layer.is_none() {
        view.layers.coherence().flush_near("STRATA NEARCACHE FLUSH");
    } else {
        // Fills under way of any layer are dropped with it: they may be this layer's.
        view.layers.coherence().drop_fills();
        for store in &stores {
            store.flush();
        }
    }
    int(removed)
}

/// After `STRATA INVALIDATE KEY|LAYER|WHERE ...`: the key's entry, the layer's near cache, or
/// (WHERE: keys of any layer) every near cache goes.
pub fn after_invalidate(control: &Control, args: &[Bytes]) {
    let view = control.live.load();
    if !view.layers.watch_writes() {
        return;
    }
    let coherence = view.layers.coherence();
    let how = args
        .get(2)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match (how.as_slice(), args.get(3)) {
        (b"key", Some(key)) => coherence.invalidate(key),
        (b"layer", Some(name)) => {
            if let Some(store) = view.layers.by_name(name).and_then(|(_, l)| l.near.clone()) {
                coherence.drop_fills();
                store.flush();
            }
        }
        (b"where", Some(_)) => coherence.flush("STRATA INVALIDATE WHERE"),
        _ => {}
    }
}
