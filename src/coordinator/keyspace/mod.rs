//! The keyspace-wide reads: KEYS, SCAN, DBSIZE, RANDOMKEY and INFO `# Keyspace`, with every key
//! counted once whatever the layers' `replication`. Each node reports only the keys it *owns*,
//! those it is the first live replica of (`owner.rs`); the nodes marked down are not asked
//! (a key whose every replica is down is not reported: reads of it fail too).
//!
//! When no key can have more than one copy and every key is on its owner (no replicated or
//! ejecting layer, no rebalance running or owed after a membership change), nothing is
//! filtered: DBSIZE and INFO `# Keyspace` stay the sum of the nodes' own figures (O(1) per
//! node) and KEYS and SCAN list what each node holds, as before replication existed.
//! Otherwise DBSIZE and INFO walk the nodes with SCAN and count the owned keys (`count.rs`),
//! and KEYS filters each node's reply. SCAN walks turn by turn (`cursor.rs`); RANDOMKEY picks
//! a node in proportion to its key count and retries when the key it gets is owned by
//! another node.

pub mod count;
pub mod cursor;
pub mod owner;

use crate::backend::Lane;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::Router;
use crate::cluster::rebalance::Rebalance;
use crate::cluster::View;
use crate::protocol::{Reply, Request};

use super::pending::{Pending, TaskOutput};
use super::scan::{ask, ask_each, scan_page};
use count::{count_owned, Count};
use cursor::Step;
use owner::Owners;

/// RANDOMKEY's tries at a key owned by the node that gave it; past them the last key found
/// is returned (it exists, on a node that holds a copy of it).
const RANDOMKEY_TRIES: usize = 32;

/// The owners as they are now (the nodes not marked down are live).
pub fn owners_now(view: &View, rebalance: &Rebalance) -> Owners {
    Owners::now(
        view.topology.clone(),
        view.layers.clone(),
        counts_by_owner(view, rebalance),
    )
}

/// True when the sum of the nodes' own key counts may count a key more than once or count
/// keys no read finds: a layer keeps several copies or ejects down nodes, or keys may still
/// sit on their owners before a membership change (a rebalance runs or is owed).
pub fn counts_by_owner(view: &View, rebalance: &Rebalance) -> bool {
    view.layers.any_replicated() || rebalance.is_running() || rebalance.pending_rings() > 0
}

fn no_node_up() -> Reply {
    Reply::error_static("ERR strata: no node is up")
}

fn done(reply: Reply) -> TaskOutput {
    TaskOutput {
        reply,
        applied: Vec::new(),
    }
}

fn unexpected() -> Reply {
    Reply::error_static("ERR strata: unexpected reply from node")
}

/// KEYS pattern: every live node's matches, each kept by its owner only.
pub fn keys(router: &Arc<Router>, owners: Owners, lane: Lane, request: Request) -> Pending {
    let nodes = owners.live_members();
    if nodes.is_empty() {
        return Pending::ready(no_node_up());
    }
    let router = router.clone();
    Pending::task(async move {
        let args: Vec<&[u8]> = request.args.iter().map(|a| a.as_ref()).collect();
        let replies = ask_each(&router, lane, &nodes, &args).await;
        let mut out = Vec::new();
        for (&node, reply) in nodes.iter().zip(replies) {
            match reply.map(|r| r.frame) {
                Err(e) => return done(e),
                Ok(BytesFrame::Array(items)) => {
                    out.extend(items.into_iter().filter_map(|k| match k {
                        BytesFrame::BulkString(k) if owners.reports(node, &k) => {
                            Some(Reply::Bulk(k))
                        }
                        _ => None,
                    }))
                }
                Ok(_) => return done(unexpected()),
            }
        }
        done(Reply::Array(out))
    })
}

/// DBSIZE: the nodes' DBSIZE summed, or the owned keys counted (see the module doc).
pub fn dbsize(router: &Arc<Router>, owners: Owners, lane: Lane) -> Pending {
    let owners = Arc::new(owners);
    let nodes = owners.live_members();
    if nodes.is_empty() {
        return Pending::ready(no_node_up());
    }
    let router = router.clone();
    Pending::task(async move {
        if !owners.by_owner() {
            return done(match dbsizes(&router, lane, &nodes).await {
                Ok(sizes) => Reply::Integer(
                    i64::try_from(sizes.iter().fold(0u64, |a, &n| a.saturating_add(n)))
                        .unwrap_or(i64::MAX),
                ),
                Err(e) => e,
            });
        }
        let mut total = Count::default();
        for walk in count_owned(&router, lane, owners, false).await {
            match walk {
                Ok(c) => total.add(c),
                Err(e) => return done(e),
            }
        }
        done(Reply::Integer(
            i64::try_from(total.keys).unwrap_or(i64::MAX),
        ))
    })
}

/// Each node's own DBSIZE, in the order of `nodes`; the first failure or odd reply as the error.
async fn dbsizes(router: &Router, lane: Lane, nodes: &[usize]) -> Result<Vec<u64>, Reply> {
    let mut sizes = Vec::with_capacity(nodes.len());
    for reply in ask_each(router, lane, nodes, &[b"DBSIZE"]).await {
        match reply?.frame {
            BytesFrame::Integer(n) => sizes.push(u64::try_from(n).unwrap_or(0)),
            _ => return Err(unexpected()),
        }
    }
    Ok(sizes)
}

/// A random number below `n` (0 for 0): std's per-instance random hash keys, no RNG crate.
fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() % n
}

/// RANDOMKEY: a node picked in proportion to its DBSIZE, then its RANDOMKEY, kept when that
/// node owns the key (every key is then equally likely, whatever its number of copies).
pub fn randomkey(router: &Arc<Router>, owners: Owners, lane: Lane) -> Pending {
    let nodes = owners.live_members();
    if nodes.is_empty() {
        return Pending::ready(no_node_up());
    }
    let router = router.clone();
    Pending::task(async move {
        let sizes = match dbsizes(&router, lane, &nodes).await {
            Ok(sizes) => sizes,
            Err(e) => return done(e),
        };
        let total = sizes.iter().fold(0u64, |a, &n| a.saturating_add(n));
        let mut last: Option<Bytes> = None;
        for _ in 0..RANDOMKEY_TRIES {
            if total == 0 {
                break;
            }
            let mut pick = random_below(total);
            let Some(at) = sizes.iter().position(|&n| {
                let here = pick < n;
                pick = pick.saturating_sub(n);
                here
            }) else {
                break;
            };
            let Some(&node) = nodes.get(at) else {
                break;
            };
            match ask(&router, lane, node, &[b"RANDOMKEY"]).await {
                Err(e) => return done(e),
                Ok(reply) => match reply.frame {
                    BytesFrame::BulkString(key) if owners.reports(node, &key) => {
                        return done(Reply::Bulk(key));
                    }
                    BytesFrame::BulkString(key) => last = Some(key),
                    // Emptied since its DBSIZE: pick again.
                    BytesFrame::Null => {}
                    _ => return done(unexpected()),
                },
            }
        }
        done(last.map_or(Reply::Nil, Reply::Bulk))
    })
}

/// SCAN cursor [MATCH ..] [COUNT ..] [TYPE ..]: one node's page of the current turn, filtered
/// (see `cursor.rs`); MATCH, COUNT and TYPE go to the node as they are.
pub fn scan(router: &Arc<Router>, owners: Owners, lane: Lane, request: Request) -> Pending {
    let members = owners.topology().members.clone();
    let Some(at) = cursor::client_cursor(&request).and_then(|c| cursor::decode(c, members.len()))
    else {
        return Pending::ready(Reply::error_static("ERR invalid cursor"));
    };
    let router = router.clone();
    Pending::task(async move {
        let (at, node) = match cursor::next_scan(at, &members, &owners) {
            Step::End => return done(cursor::reply(Some(0), Vec::new())),
            Step::Scan { at, node } => (at, node),
        };
        let node_cursor = at.node_cursor.to_string();
        let args: Vec<&[u8]> = request
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == 1 {
                    node_cursor.as_bytes()
                } else {
                    a.as_ref()
                }
            })
            .collect();
        let page = match ask(&router, lane, node, &args).await {
            Err(e) => return done(e),
            Ok(reply) => scan_page(reply.frame),
        };
        let Some((next, keys)) = page else {
            return done(unexpected());
        };
        let Some(next) = std::str::from_utf8(&next)
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            return done(unexpected());
        };
        let keys = keys
            .into_iter()
            .filter(|k| cursor::keeps(at, &members, node, &owners, k))
            .collect();
        let next = cursor::encode(cursor::after(at, next), members.len());
        done(cursor::reply(next, keys))
    })
}

/// INFO `# Keyspace`: the nodes' `INFO keyspace` summed, or (see the module doc) the owned
/// keys counted with their TTLs. Nodes that do not answer are left out: INFO still answers.
pub async fn info_section(router: &Arc<Router>, owners: Owners, lane: Lane) -> String {
    let owners = Arc::new(owners);
    let nodes = owners.live_members();
    if !owners.by_owner() {
        let replies = ask_each(router, lane, &nodes, &[b"INFO", b"keyspace"]).await;
        return summed_keyspace(replies.into_iter().flatten().map(|r| r.frame));
    }
    let mut total = Count::default();
    for c in count_owned(router, lane, owners, true)
        .await
        .into_iter()
        .flatten()
    {
        total.add(c);
    }
    let mut out = String::from("# Keyspace\r\n");
    if total.keys > 0 {
        out.push_str(&format!(
            "db0:keys={},expires={},avg_ttl={}\r\n",
            total.keys,
            total.expires,
            total.avg_ttl_ms()
        ));
    }
    out
}

/// The `# Keyspace` section summed over the nodes' `INFO keyspace` replies.
fn summed_keyspace(frames: impl Iterator<Item = BytesFrame>) -> String {
    // db index → (keys, expires, avg_ttl × expires)
    let mut dbs: std::collections::BTreeMap<u64, (u64, u64, u128)> = Default::default();
    for frame in frames {
        let BytesFrame::BulkString(text) = frame else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        for line in text.lines() {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            let Some(index) = db.strip_prefix("db").and_then(|d| d.parse::<u64>().ok()) else {
                continue;
            };
            let mut keys = 0u64;
            let mut expires = 0u64;
            let mut avg_ttl = 0u64;
            for field in fields.split(',') {
                match field.split_once('=') {
                    Some(("keys", v)) => keys = v.trim().parse().unwrap_or(0),
                    Some(("expires", v)) => expires = v.trim().parse().unwrap_or(0),
                    Some(("avg_ttl", v)) => avg_ttl = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let entry = dbs.entry(index).or_default();
            entry.0 += keys;
            entry.1 += expires;
            entry.2 += u128::from(avg_ttl) * u128::from(expires);
        }
    }
    let mut out = String::from("# Keyspace\r\n");
    for (index, (keys, expires, weighted)) in dbs {
        let avg = if expires > 0 {
            weighted / u128::from(expires)
        } else {
            0
        };
        out.push_str(&format!(
            "db{index}:keys={keys},expires={expires},avg_ttl={avg}\r\n"
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn bulk(s: &'static str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn keyspace_is_summed() {
        let text = summed_keyspace(
            [
                bulk("# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\n"),
                bulk("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=300\r\n"),
            ]
            .into_iter(),
        );
        assert_eq!(text, "# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=200\r\n");
    }

    #[test]
    fn random_below_stays_below_and_spreads() {
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let r = random_below(4);
            assert!(r < 4);
            seen[r as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
        assert_eq!(random_below(0), 0);
    }
}
