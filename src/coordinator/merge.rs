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
    /// Integer replies summed (DEL, UNLINK, EXISTS, TOUCH).
    Sum,
    /// Integer arrays AND-ed element by element (SCRIPT EXISTS: loaded everywhere).
    AllOfArrays,
    /// The first part's reply, once no part failed (SCRIPT LOAD, FUNCTION LOAD).
    FirstReply,
    /// One part, forwarded unchanged (a write followed by TTL followers).
    Forward,
    /// Already merged (the plan is taken out when the merge runs).
    Done,
}

/// Merges the parts' results (in the order the parts were added).
pub fn merge(plan: MergePlan, results: Vec<NodeResult>) -> Reply {
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
        MergePlan::AllOfArrays => merge_all_of(frames),
        MergePlan::FirstReply => frames
            .into_iter()
            .next()
            .map_or_else(unexpected, Reply::from_frame),
        MergePlan::Forward | MergePlan::Done => unexpected(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::backend::NodeError;
    use crate::cluster::NodeInfo;
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
                Err(NodeError::connection_lost(&node)),
            ],
        );
        assert_eq!(
            r,
            Reply::error("ERR strata: node n2 (127.0.0.1:1) unavailable: connection lost")
        );
    }
}
