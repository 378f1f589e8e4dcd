//! SCAN through strata: one *turn* per member, in member order; turn `t` returns the keys whose
//! primary (position 0 of the preference list, whatever the nodes' health) is member `t`, so
//! every key belongs to exactly one turn and a scan over unchanging nodes returns it once.
//!
//! - While member `t` is up, its turn scans it and keeps the keys whose primary it is (the
//!   copies it holds for other primaries are returned in their own turns).
//! - While it is down, its turn scans every other live member in turn and keeps, of the keys
//!   whose primary is `t`, those the member is the first live replica of, passing over `t`
//!   (`Owners::owner_without`): the keys of replicated and ejecting layers are still returned,
//!   once; a one-copy layer's keys on the down node are not (nothing can read them either).
//!   Without replicated layers such a turn has nothing to return and is skipped.
//!
//! A node found down in the middle of its own turn restarts the turn from the other nodes (the
//! keys already returned come again: SCAN may repeat keys, never miss one present throughout);
//! a turn that started from the other nodes finishes that way even if the node comes back.
//!
//! The client's cursor is `node cursor << 21 | sub << 10 | turn`: `sub` 0 while the turn's own
//! node is scanned, `s` > 0 while member `s - 1` is scanned for a down member's keys.

use bytes::Bytes;

use crate::protocol::{Reply, Request};

use super::owner::Owners;

/// Bits of the client cursor holding the turn (the member's position).
const TURN_BITS: u32 = 10;
/// Bits holding the sub-position.
const SUB_BITS: u32 = 11;
const NODE_SHIFT: u32 = TURN_BITS + SUB_BITS;

/// Where a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Position of the member whose keys are being returned.
    pub turn: usize,
    /// 0: the turn's own node; `s` > 0: member `s - 1`, for a down member's keys.
    pub sub: usize,
    /// The scanned node's own cursor.
    pub node_cursor: u64,
}

impl Position {
    const START: Position = Position {
        turn: 0,
        sub: 0,
        node_cursor: 0,
    };

    fn next_turn(self) -> Position {
        Position {
            turn: self.turn + 1,
            ..Position::START
        }
    }

    fn next_sub(self) -> Position {
        Position {
            sub: self.sub + 1,
            node_cursor: 0,
            ..self
        }
    }
}

/// Parses a client cursor; `None` when it is not one strata hands out for `members` members.
pub fn decode(cursor: u64, members: usize) -> Option<Position> {
    let turn = (cursor & ((1 << TURN_BITS) - 1)) as usize;
    let sub = ((cursor >> TURN_BITS) & ((1 << SUB_BITS) - 1)) as usize;
    if turn >= members || sub > members {
        return None;
    }
    Some(Position {
        turn,
        sub,
        node_cursor: cursor >> NODE_SHIFT,
    })
}

/// The client cursor of a position (0 once every turn is done); `None` when the node cursor
/// is too large to fit.
pub fn encode(at: Position, members: usize) -> Option<u64> {
    let at = settle(at, members);
    if at.turn >= members {
        return Some(0);
    }
    if at.node_cursor >> (64 - NODE_SHIFT) != 0
        || at.turn >= 1 << TURN_BITS
        || at.sub >= 1 << SUB_BITS
    {
        return None;
    }
    Some((at.node_cursor << NODE_SHIFT) | ((at.sub as u64) << TURN_BITS) | at.turn as u64)
}

/// Moves past sub-positions that cannot be scanned whatever the nodes' health (past the last
/// member), so that the cursor after the last node is 0 at once.
fn settle(at: Position, members: usize) -> Position {
    if at.sub > members {
        at.next_turn()
    } else {
        at
    }
}

/// What to scan next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Scan `node` (a slot) at `at`.
    Scan { at: Position, node: usize },
    /// Every turn is done.
    End,
}

/// The next node to scan from `at`, given which nodes are live now.
pub fn next_scan(mut at: Position, members: &[usize], owners: &Owners) -> Step {
    loop {
        let Some(&own) = members.get(at.turn) else {
            return Step::End;
        };
        if at.sub == 0 {
            if owners.is_live(own) {
                return Step::Scan { at, node: own };
            }
            // Down (perhaps since the last call: the turn starts again from the others).
            at = if owners.has_copies() {
                at.next_sub()
            } else {
                at.next_turn()
            };
            continue;
        }
        match members.get(at.sub - 1) {
            None => at = at.next_turn(),
            Some(&other) if other == own || !owners.is_live(other) => at = at.next_sub(),
            Some(&other) => return Step::Scan { at, node: other },
        }
    }
}

/// The position after `at` once its node answered with `node_cursor`.
pub fn after(at: Position, node_cursor: u64) -> Position {
    match (node_cursor, at.sub) {
        (0, 0) => at.next_turn(),
        (0, _) => at.next_sub(),
        (c, _) => Position {
            node_cursor: c,
            ..at
        },
    }
}

/// True when a key the node scanned at `at` belongs to this turn and to that node (every key
/// of the turn's own node when keys are not filtered by owner).
pub fn keeps(at: Position, members: &[usize], node: usize, owners: &Owners, key: &[u8]) -> bool {
    let Some(&own) = members.get(at.turn) else {
        return false;
    };
    if !owners.by_owner() {
        return at.sub == 0;
    }
    owners.primary(key) == own && (at.sub == 0 || owners.owner_without(key, own) == Some(node))
}

/// The client's cursor argument: Redis reads an empty one as 0.
pub fn client_cursor(request: &Request) -> Option<u64> {
    match request.args.get(1) {
        Some(c) if c.is_empty() => Some(0),
        c => c
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u64>().ok()),
    }
}

/// The SCAN reply: the next client cursor and the keys kept.
pub fn reply(next: Option<u64>, keys: Vec<Bytes>) -> Reply {
    match next {
        Some(next) => Reply::Array(vec![
            Reply::bulk(next.to_string()),
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        ]),
        None => Reply::error_static("ERR strata: node cursor too large to encode"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::cluster::topology::Topology;
    use crate::cluster::NodeInfo;
    use crate::config::Config;
    use crate::policy::Layers;
    use std::sync::Arc;

    fn owners(layers: &str, live: [bool; 3]) -> Owners {
        let yaml = format!(
            "nodes:\n  - {{id: a, addr: '127.0.0.1:1'}}\n  - {{id: b, addr: '127.0.0.1:2'}}\n  - {{id: c, addr: '127.0.0.1:3'}}\n{layers}"
        );
        let settings = Config::parse(&yaml, "test").unwrap();
        let nodes = (0..3)
            .map(|i| {
                let id = ["a", "b", "c"][i].to_string();
                Arc::new(NodeInfo::new(i, id, format!("127.0.0.1:{}", i + 1), 1, 1))
            })
            .collect();
        let topology = Topology::new(nodes, 100, settings.hash_tag, 3);
        let layers = Layers::new(&settings.layers, 1);
        Owners::with_live(Arc::new(topology), Arc::new(layers), live.to_vec(), true)
    }

    const TWO: &str = "layers:\n  - {name: two, prefix: 'two:', replication: 2}\n";
    const MEMBERS: [usize; 3] = [0, 1, 2];

    #[test]
    fn cursors_round_trip() {
        let at = Position {
            turn: 2,
            sub: 3,
            node_cursor: 12345,
        };
        let c = encode(at, 3).unwrap();
        assert_eq!(decode(c, 3), Some(at));
        assert_eq!(decode(0, 3), Some(Position::START));
        assert_eq!(encode(Position::START, 3), Some(0));
        // Past the last member: done.
        assert_eq!(
            encode(Position::START.next_turn().next_turn().next_turn(), 3),
            Some(0)
        );
        // The last sub-position of the last turn settles to the end.
        let last = Position {
            turn: 2,
            sub: 4,
            node_cursor: 0,
        };
        assert_eq!(encode(last, 3), Some(0));
        assert_eq!(decode(3, 3), None, "turn 3 of 3 members");
        assert_eq!(decode(5 << TURN_BITS, 3), None, "sub past the members");
        assert_eq!(
            encode(
                Position {
                    node_cursor: 1 << 44,
                    ..at
                },
                3
            ),
            None
        );
    }

    #[test]
    fn every_node_up_each_turn_scans_its_own_node() {
        let o = owners(TWO, [true; 3]);
        let mut at = Position::START;
        let mut scanned = Vec::new();
        while let Step::Scan { at: here, node } = next_scan(at, &MEMBERS, &o) {
            assert_eq!(here.sub, 0);
            scanned.push(node);
            at = after(here, 0);
        }
        assert_eq!(scanned, [0, 1, 2]);
    }

    #[test]
    fn a_down_nodes_turn_scans_the_others() {
        let o = owners(TWO, [true, false, true]);
        let mut at = Position::START;
        let mut scanned = Vec::new();
        while let Step::Scan { at: here, node } = next_scan(at, &MEMBERS, &o) {
            scanned.push((here.turn, node));
            at = after(here, 0);
        }
        assert_eq!(scanned, [(0, 0), (1, 0), (1, 2), (2, 2)]);
        // Without replicated layers the turn is skipped.
        let o = owners("", [true, false, true]);
        let mut at = Position::START;
        let mut scanned = Vec::new();
        while let Step::Scan { at: here, node } = next_scan(at, &MEMBERS, &o) {
            scanned.push((here.turn, node));
            at = after(here, 0);
        }
        assert_eq!(scanned, [(0, 0), (2, 2)]);
    }

    #[test]
    fn a_node_going_down_mid_turn_restarts_its_turn_from_the_others() {
        let o = owners(TWO, [false, true, true]);
        let mid = Position {
            turn: 0,
            sub: 0,
            node_cursor: 77,
        };
        assert_eq!(
            next_scan(mid, &MEMBERS, &o),
            Step::Scan {
                at: Position {
                    turn: 0,
                    sub: 2,
                    node_cursor: 0
                },
                node: 1
            }
        );
    }

    #[test]
    fn each_key_is_kept_by_exactly_one_scan_whatever_is_down() {
        let layers = "layers:\n  - {name: two, prefix: 'two:', replication: 2}\n  - {name: three, prefix: 'three:', replication: 3}\n  - {name: eject, prefix: 'e:', eject_on_down: true}\n";
        for live in [
            [true; 3],
            [false, true, true],
            [true, false, true],
            [true, true, false],
        ] {
            let o = owners(layers, live);
            for i in 0..500 {
                for prefix in ["two:", "three:", "e:"] {
                    let key = format!("{prefix}{i}");
                    let k = key.as_bytes();
                    let copies = match prefix {
                        "two:" => 2,
                        "three:" => 3,
                        _ => 3, // an ejecting layer's key may sit on any node
                    };
                    let holders = o.topology().ring.preference_list(k, copies);
                    let mut kept = 0;
                    let mut at = Position::START;
                    while let Step::Scan { at: here, node } = next_scan(at, &MEMBERS, &o) {
                        if holders.contains(&node) && keeps(here, &MEMBERS, node, &o, k) {
                            kept += 1;
                        }
                        at = after(here, 0);
                    }
                    assert_eq!(kept, 1, "{key} with live {live:?}");
                }
            }
        }
    }
}
