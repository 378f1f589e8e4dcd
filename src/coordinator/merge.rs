//! Merging the replies of several nodes into the one reply the client expects.
//!
//! Any part that failed (node unavailable) makes the whole reply that error: a partial MGET or
//! DBSIZE would look like valid data. A Redis error reply from a node is passed on the same way.

use redis_protocol::resp2::types::BytesFrame;

use crate::backend::NodeResult;
use crate::protocol::Reply;

/// How to merge a gathered reply; built by the planner together with the parts.
#[derive(Debug)]
pub enum MergePlan {
    /// MGET split per node: `slots[i]` are the positions, in the client's reply, of the keys
    /// sent in part `i`.
    Mget {
        slots: Vec<Vec<usize>>,
        total: usize,
    },
    /// Every part must say OK (MSET, FLUSHDB, CONFIG SET, SCRIPT FLUSH, ...).
    AllOk,
    /// Integer replies summed (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
    Sum,
    /// Arrays concatenated (KEYS).
    Concat,
    /// The first non-nil reply, else nil (RANDOMKEY).
    FirstNonNil,
    /// Integer arrays AND-ed element by element (SCRIPT EXISTS: loaded everywhere).
    AllOfArrays,
    /// The first part's reply, once no part failed (SCRIPT LOAD, FUNCTION LOAD).
    FirstReply,
    /// One node's SCAN reply; its cursor is re-encoded with the node index.
    Scan { node: usize, node_count: usize },
    /// INFO: strata's own sections around the keyspace section summed over the nodes.
    Info { before: String, after: String },
    /// One part, forwarded unchanged (a write followed by TTL followers).
    Forward,
    /// Already merged (the plan is taken out when the merge runs).
    Done,
}

/// Merges the parts' results (in the order the parts were added).
pub fn merge(plan: MergePlan, results: Vec<NodeResult>) -> Reply {
    if let MergePlan::Info { before, after } = plan {
        // INFO still answers when nodes are down: the keyspace counts those that answered.
        return Reply::text(format!("{before}{}{after}", keyspace(&results)));
    }
    if let MergePlan::Forward = plan {
        return match results.into_iter().next() {
            Some(Ok(reply)) => Reply::Raw(reply.raw),
            Some(Err(e)) => Reply::error(e.to_string()),
            None => unexpected(),
        };
    }
    let mut frames = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Err(e) => return Reply::error(e.to_string()),
            Ok(reply) if reply.is_error() => return Reply::Raw(reply.raw),
            Ok(reply) => frames.push(reply.frame),
        }
    }
    match plan {
        MergePlan::Mget { slots, total } => merge_mget(frames, &slots, total),
        MergePlan::AllOk => Reply::ok(),
        MergePlan::Sum => {
            let mut sum: i64 = 0;
            for f in &frames {
                match f {
                    BytesFrame::Integer(n) => sum = sum.saturating_add(*n),
                    _ => return unexpected(),
                }
            }
            Reply::Integer(sum)
        }
        MergePlan::Concat => {
            let mut out = Vec::new();
            for f in frames {
                match f {
                    BytesFrame::Array(items) => {
                        out.extend(items.into_iter().map(Reply::from_frame))
                    }
                    _ => return unexpected(),
                }
            }
            Reply::Array(out)
        }
        MergePlan::FirstNonNil => frames
            .into_iter()
            .find(|f| !matches!(f, BytesFrame::Null))
            .map_or(Reply::Nil, Reply::from_frame),
        MergePlan::AllOfArrays => merge_all_of(frames),
        MergePlan::FirstReply => frames
            .into_iter()
            .next()
            .map_or_else(unexpected, Reply::from_frame),
        MergePlan::Scan { node, node_count } => merge_scan(frames, node, node_count),
        MergePlan::Info { .. } | MergePlan::Forward | MergePlan::Done => unexpected(),
    }
}

fn unexpected() -> Reply {
    Reply::error_static("ERR strata: unexpected reply from node")
}

fn merge_mget(frames: Vec<BytesFrame>, slots: &[Vec<usize>], total: usize) -> Reply {
    let mut out: Vec<Reply> = vec![Reply::Nil; total];
    for (frame, positions) in frames.into_iter().zip(slots) {
        let BytesFrame::Array(items) = frame else {
            return unexpected();
        };
        if items.len() != positions.len() {
            return unexpected();
        }
        for (item, &pos) in items.into_iter().zip(positions) {
            if let Some(slot) = out.get_mut(pos) {
                *slot = Reply::from_frame(item);
            }
        }
    }
    Reply::Array(out)
}

fn merge_all_of(frames: Vec<BytesFrame>) -> Reply {
    let mut acc: Option<Vec<i64>> = None;
    for frame in frames {
        let BytesFrame::Array(items) = frame else {
            return unexpected();
        };
        let values: Vec<i64> = items
            .iter()
            .map(|i| match i {
                BytesFrame::Integer(n) => *n,
                _ => 0,
            })
            .collect();
        acc = Some(match acc {
            None => values,
            Some(prev) => prev
                .iter()
                .zip(values.iter())
                .map(|(a, b)| i64::from(*a != 0 && *b != 0))
                .collect(),
        });
    }
    Reply::Array(
        acc.unwrap_or_default()
            .into_iter()
            .map(Reply::Integer)
            .collect(),
    )
}

/// SCAN cursors seen by clients: the node's own cursor shifted left by [`SCAN_NODE_BITS`], with
/// the node index in the low bits. Cursor 0 starts at node 0; a node's cursor 0 moves on to the
/// next node; after the last node the client gets 0.
pub const SCAN_NODE_BITS: u32 = 10;

/// Splits a client SCAN cursor into (node index, node cursor); `None` when it is not one strata
/// handed out.
pub fn decode_scan_cursor(cursor: u64, node_count: usize) -> Option<(usize, u64)> {
    let node = (cursor & ((1 << SCAN_NODE_BITS) - 1)) as usize;
    if node >= node_count {
        return None;
    }
    Some((node, cursor >> SCAN_NODE_BITS))
}

/// Combines a node index and that node's cursor; `None` when the node cursor is too large.
pub fn encode_scan_cursor(node: usize, node_cursor: u64) -> Option<u64> {
    if node_cursor >> (64 - SCAN_NODE_BITS) != 0 {
        return None;
    }
    Some((node_cursor << SCAN_NODE_BITS) | node as u64)
}

fn merge_scan(frames: Vec<BytesFrame>, node: usize, node_count: usize) -> Reply {
    let Some(BytesFrame::Array(mut parts)) = frames.into_iter().next() else {
        return unexpected();
    };
    if parts.len() != 2 {
        return unexpected();
    }
    let keys = parts.pop();
    let cursor = parts.pop();
    let node_cursor = match cursor {
        Some(BytesFrame::BulkString(c)) => std::str::from_utf8(&c)
            .ok()
            .and_then(|s| s.parse::<u64>().ok()),
        _ => None,
    };
    let Some(node_cursor) = node_cursor else {
        return unexpected();
    };
    let next = if node_cursor == 0 {
        if node + 1 >= node_count {
            Some(0)
        } else {
            encode_scan_cursor(node + 1, 0)
        }
    } else {
        encode_scan_cursor(node, node_cursor)
    };
    let Some(next) = next else {
        return Reply::error_static("ERR strata: node cursor too large to encode");
    };
    let keys = keys.map_or(Reply::Array(Vec::new()), Reply::from_frame);
    Reply::Array(vec![Reply::bulk(next.to_string()), keys])
}

/// The `# Keyspace` section summed over the nodes that answered `INFO keyspace`.
fn keyspace(results: &[NodeResult]) -> String {
    // db index → (keys, expires, avg_ttl × expires)
    let mut dbs: std::collections::BTreeMap<u64, (u64, u64, u128)> = Default::default();
    for result in results.iter().flatten() {
        let BytesFrame::BulkString(text) = &result.frame else {
            continue;
        };
        let text = String::from_utf8_lossy(text);
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
    use crate::backend::{NodeError, NodeInfo};
    use crate::protocol::NodeReply;
    use bytes::Bytes;
    use std::sync::Arc;

    fn ok(frame: BytesFrame) -> NodeResult {
        Ok(NodeReply {
            frame,
            raw: Bytes::new(),
        })
    }

    fn bulk(s: &'static str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn mget_restores_argument_order() {
        let plan = MergePlan::Mget {
            slots: vec![vec![0, 2], vec![1]],
            total: 3,
        };
        let r = merge(
            plan,
            vec![
                ok(BytesFrame::Array(vec![bulk("a"), BytesFrame::Null])),
                ok(BytesFrame::Array(vec![bulk("b")])),
            ],
        );
        assert_eq!(
            r,
            Reply::Array(vec![Reply::bulk("a"), Reply::bulk("b"), Reply::Nil])
        );
    }

    #[test]
    fn sums_and_errors() {
        assert_eq!(
            merge(
                MergePlan::Sum,
                vec![ok(BytesFrame::Integer(2)), ok(BytesFrame::Integer(3))]
            ),
            Reply::Integer(5)
        );
        let node = Arc::new(NodeInfo::new(1, "n2".into(), "127.0.0.1:1".into(), 1, 1));
        let r = merge(
            MergePlan::Sum,
            vec![
                ok(BytesFrame::Integer(2)),
                Err(NodeError::new(&node, "connection lost")),
            ],
        );
        assert_eq!(
            r,
            Reply::error("ERR strata: node n2 (127.0.0.1:1) unavailable: connection lost")
        );
    }

    #[test]
    fn scan_cursor_walks_nodes() {
        assert_eq!(decode_scan_cursor(0, 3), Some((0, 0)));
        let c = encode_scan_cursor(2, 17).unwrap();
        assert_eq!(decode_scan_cursor(c, 3), Some((2, 17)));
        assert_eq!(decode_scan_cursor(5, 3), None);
        let reply = |cursor: &'static str| {
            merge(
                MergePlan::Scan {
                    node: 0,
                    node_count: 2,
                },
                vec![ok(BytesFrame::Array(vec![
                    bulk(cursor),
                    BytesFrame::Array(vec![]),
                ]))],
            )
        };
        // Node 0 finished: continue with node 1 at cursor 0, encoded as 1.
        assert_eq!(
            reply("0"),
            Reply::Array(vec![Reply::bulk("1"), Reply::Array(vec![])])
        );
        assert_eq!(
            reply("5"),
            Reply::Array(vec![
                Reply::bulk((5u64 << SCAN_NODE_BITS).to_string()),
                Reply::Array(vec![])
            ])
        );
    }

    #[test]
    fn keyspace_is_summed() {
        let r = merge(
            MergePlan::Info {
                before: "A\r\n".into(),
                after: "B\r\n".into(),
            },
            vec![
                ok(bulk("# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\n")),
                ok(bulk("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=300\r\n")),
            ],
        );
        assert_eq!(
            r,
            Reply::text("A\r\n# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=200\r\nB\r\n".into())
        );
    }
}
