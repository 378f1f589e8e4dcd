//! CONFIG GET pattern [pattern ...]: the parameters strata owns (those describing the proxy:
//! its port, address, client limit, ...) answered by strata, every other parameter by the
//! first node that is up (`Topology::first_up`), merged as Redis 7 answers several patterns:
//! each parameter once, a literal name as it was typed, a glob (`*`, `?`, `[...]`, no case)
//! with the parameter's own name. A request naming only strata's parameters does not ask a node.

use crate::backend::Lane;
use crate::protocol::glob::{glob_match, Case};
use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::Router;
use crate::control::Control;
use crate::coordinator::scan::ask;
use crate::protocol::{Reply, Request};

/// strata's own parameters and their values. redis-benchmark asks for `save` and
/// `appendonly` (strata persists nothing itself); the rest describe the proxy, not a node.
fn own_params(control: &Control) -> Vec<(&'static str, String)> {
    let view = control.live.load();
    let config = &view.settings.config;
    vec![
        ("appendonly", "no".into()),
        ("bind", control.local_addr.ip().to_string()),
        ("cluster-enabled", "no".into()),
        ("databases", "1".into()),
        ("maxclients", config.limits.max_clients.to_string()),
        ("port", control.local_addr.port().to_string()),
        ("proto-max-bulk-len", config.limits.max_bulk_len.to_string()),
        ("save", String::new()),
        ("timeout", "0".into()),
    ]
}

/// Redis takes a pattern with `[`, `*` or `?` for a glob, anything else for a name.
fn is_glob(pattern: &[u8]) -> bool {
    pattern.iter().any(|c| matches!(c, b'[' | b'*' | b'?'))
}

/// CONFIG GET with its patterns (`args` from the command name on).
pub async fn config_get(
    router: &Router,
    control: &Control,
    lane: Lane,
    request: &Request,
) -> Reply {
    let patterns = request.args.get(2..).unwrap_or_default();
    let own = own_params(control);
    let is_own = |p: &[u8]| {
        own.iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(p))
    };
    let only_own = patterns.iter().all(|p| !is_glob(p) && is_own(p));
    let mut pairs: Vec<(Bytes, Bytes)> = Vec::new();
    if !only_own {
        let Some(node) = router.view().topology.first_up() else {
            return Reply::error_static("ERR strata: no node is up");
        };
        let args: Vec<&[u8]> = request.args.iter().map(|a| a.as_ref()).collect();
        match ask(router, lane, node, &args).await {
            Err(e) => return e,
            Ok(reply) => match node_pairs(reply.frame) {
                Some(p) => pairs = p,
                None => return Reply::error_static("ERR strata: unexpected reply from node"),
            },
        }
    }
    // strata's values replace the node's ...
    for (name, value) in pairs.iter_mut() {
        if let Some((_, v)) = own
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            *value = Bytes::from(v.clone());
        }
    }
    // ... and come in where the node did not give them (not asked).
    for pattern in patterns {
        for (name, value) in &own {
            let matched = if is_glob(pattern) {
                glob_match(pattern, name.as_bytes(), Case::Insensitive)
            } else {
                pattern.eq_ignore_ascii_case(name.as_bytes())
            };
            let listed = pairs
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
            if matched && !listed {
                let shown = if is_glob(pattern) {
                    Bytes::from_static(name.as_bytes())
                } else {
                    pattern.clone()
                };
                pairs.push((shown, Bytes::from(value.clone())));
            }
        }
    }
    Reply::Array(
        pairs
            .into_iter()
            .flat_map(|(n, v)| [Reply::Bulk(n), Reply::Bulk(v)])
            .collect(),
    )
}

/// A node's CONFIG GET reply (a flat name/value array) as pairs.
fn node_pairs(frame: BytesFrame) -> Option<Vec<(Bytes, Bytes)>> {
    let BytesFrame::Array(items) = frame else {
        return None;
    };
    let mut items = items.into_iter();
    let mut pairs = Vec::new();
    while let Some(name) = items.next() {
        match (name, items.next()) {
            (BytesFrame::BulkString(n), Some(BytesFrame::BulkString(v))) => pairs.push((n, v)),
            _ => return None,
        }
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::is_glob;

    #[test]
    fn globs() {
        assert!(is_glob(b"max*") && is_glob(b"[ab]") && !is_glob(b"maxmemory"));
    }
}
