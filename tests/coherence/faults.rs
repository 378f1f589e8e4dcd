//! The coherence checker's fault steps, taking turns over the nodes: strata's tracking
//! connection killed on a node (`CLIENT KILL ID` of the client with flag `t`), every
//! connection of strata to a node killed at once, the tracking one among them
//! (`CLIENT KILL TYPE normal`), a node flushed (`FLUSHALL`), a node restarted empty. Each
//! records in the keys' histories what it deleted; after each, the run waits until strata
//! serves from its near cache again, and (with client-side caches) until every client-side
//! cache was told to empty itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::common::layers::{info, info_lines};
use super::common::{poll_until, RawClient, RedisNode, Resp, DEADLINE};
use super::history::{State, Value};
use super::workload::{self, Run};

/// The kinds of fault steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CLIENT KILL ID` of strata's tracking connection on the node.
    KillTracking,
    /// `CLIENT KILL TYPE normal`: every connection to the node but the killer's.
    KillAll,
    /// `FLUSHALL` on the node.
    Flush,
    /// The node restarted empty.
    Restart,
}

impl Kind {
    /// In the order they take turns.
    pub const ALL: [Kind; 4] = [
        Kind::KillTracking,
        Kind::KillAll,
        Kind::Flush,
        Kind::Restart,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillTracking => "CLIENT KILL ID",
            Kind::KillAll => "CLIENT KILL TYPE normal",
            Kind::Flush => "FLUSHALL",
            Kind::Restart => "restart",
        }
    }
}

/// A fault step and when it struck.
pub struct Fault {
    pub kind: Kind,
    pub what: String,
    pub start: Instant,
    pub end: Instant,
    /// For each client-side cache: how long after `start` it took a flush.
    pub flushed: Vec<Duration>,
}

/// Waits until strata serves from its near cache again: every node up and done refilling,
/// every invalidation stream live.
pub fn wait_settled(c: &mut RawClient, probe: &str) {
    poll_until(
        DEADLINE,
        "every node up, refilled, and the near cache live",
        || {
            let nodes = info_lines(&info(c, "nodes"));
            let settled = nodes
                .iter()
                .filter(|(name, _)| name.starts_with("node_"))
                .all(|(_, f)| {
                    f.iter().any(|(k, v)| k == "state" && v == "up")
                        && f.iter().any(|(k, v)| k == "refill" && v == "idle")
                });
            let live =
                fields(&c.call(&["STRATA", "NEARCACHE", "GET", probe]))["live"] == Resp::Int(1);
            (settled && live).then_some(())
        },
    );
}

/// A flat field/value array as a map.
pub fn fields(reply: &Resp) -> BTreeMap<String, Resp> {
    reply
        .array()
        .chunks(2)
        .map(|p| (p[0].text(), p[1].clone()))
        .collect()
}

/// A node's `restarts` count as strata saw it (INFO `# Nodes`).
fn restarts(c: &mut RawClient, node: usize) -> String {
    node_field(c, node, "restarts")
}

/// A field of a node's line in INFO `# Nodes`.
fn node_field(c: &mut RawClient, node: usize, field: &str) -> String {
    let nodes = info_lines(&info(c, "nodes"));
    nodes[&format!("node_node{}", node + 1)]
        .iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {field} in INFO nodes"))
}

/// A numeric field of a node's line in INFO `# Nodes`.
fn node_count(c: &mut RawClient, node: usize, field: &str) -> u64 {
    node_field(c, node, field).parse().unwrap()
}

/// Strikes fault `step` (they take turns, as [`Kind::ALL`]) on node `node`, and records in the
/// histories what it deleted. Every kind makes strata tell its tracking clients to drop
/// everything (a stream lost, a node flushed): with client-side caches, it returns once each
/// took that flush.
pub fn strike(
    run: &Run,
    nodes: &mut [RedisNode],
    c: &mut RawClient,
    step: usize,
    node: usize,
) -> Fault {
    let mut direct = RawClient::connect(&nodes[node].addr());
    let primary_here = |k: usize| run.keys.replicas[k][0] == node;
    let kind = Kind::ALL[step % Kind::ALL.len()];
    let (what, start, end) = match kind {
        Kind::KillTracking => {
            // strata's tracking connection is the one in tracking mode (flag `t`).
            let start = Instant::now();
            let list = direct.call(&["CLIENT", "LIST"]).text();
            let ids: Vec<&str> = list
                .lines()
                .filter(|l| {
                    l.split(' ')
                        .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
                })
                .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
                .collect();
            assert_eq!(
                ids.len(),
                1,
                "one tracking connection on node {node}: {list}"
            );
            assert_eq!(direct.call(&["CLIENT", "KILL", "ID", ids[0]]), Resp::Int(1));
            let what = format!("CLIENT KILL of the tracking connection on node{}", node + 1);
            (what, start, Instant::now())
        }
        Kind::KillAll => {
            // Every connection but this one: strata's tracking connection and its data
            // connections, and the writers' own. Writers pause across it, as for a FLUSHALL
            // or a restart, until strata has its connections to the node back: a write that
            // failed on one replica there leaves a hint, and replaying the hint can put an
            // older version back over a newer one (a fault of the replication, reported
            // apart, not of the caches this checks).
            let _gate = run.gate.write().unwrap();
            let connected = node_count(c, node, "connections");
            let failures = node_count(c, node, "failures");
            let start = Instant::now();
            let killed = direct.call(&["CLIENT", "KILL", "TYPE", "normal"]).int();
            let end = Instant::now();
            assert!(
                killed >= 2,
                "CLIENT KILL TYPE normal killed {killed} clients"
            );
            poll_until(DEADLINE, "strata to connect to the node again", || {
                let seen = node_count(c, node, "failures") > failures;
                let back = node_count(c, node, "connections") >= connected;
                let hints = node_count(c, node, "hints_pending");
                (seen && back && hints == 0).then_some(())
            });
            let what = format!(
                "CLIENT KILL TYPE normal on node{} ({killed} killed)",
                node + 1
            );
            (what, start, end)
        }
        Kind::Flush => {
            let _gate = run.gate.write().unwrap();
            let start = Instant::now();
            assert_eq!(direct.call(&["FLUSHALL"]), Resp::ok());
            let end = Instant::now();
            // Reads go to a key's first replica and believe its miss: the keys whose first
            // replica this is are gone, the others (two copies) are read elsewhere as before.
            for k in (0..run.keys.names.len()).filter(|&k| primary_here(k)) {
                run.record(k, deleted(start, end, None));
            }
            (format!("FLUSHALL on node{}", node + 1), start, end)
        }
        Kind::Restart => {
            let _gate = run.gate.write().unwrap();
            let before = restarts(c, node);
            let start = Instant::now();
            nodes[node].restart();
            let end = Instant::now();
            // A key of two copies whose first replica restarted may be read from the other
            // replica (a refilling node's misses are not believed; the refill copies it back)
            // or be gone. The other replica holds the last version written, even when this
            // node's FLUSHALL deleted it since (that deleted this copy only), or nothing.
            for k in (0..run.keys.names.len()).filter(|&k| primary_here(k)) {
                let also =
                    (run.keys.kinds[k] == workload::Kind::Route).then(|| run.last_written(k));
                run.record(k, deleted(start, end, also));
            }
            // Writes resume once strata saw the restart and refilled the node: a write racing
            // the refill's copies is the replication's business (docs/replication.md), not the
            // near cache's.
            poll_until(DEADLINE, "strata to see the restart", || {
                (restarts(c, node) != before).then_some(())
            });
            wait_settled(c, &run.keys.names[0]);
            let what = format!("node{} restarted empty", node + 1);
            (what, start, end)
        }
    };
    let flushed = poll_until(
        DEADLINE,
        &format!(
            "every client-side cache to be flushed after the {}",
            kind.name()
        ),
        || {
            run.flushes
                .iter()
                .map(|f| {
                    let f = f.lock().unwrap();
                    f.iter().find(|&&t| t >= start).map(|&t| t - start)
                })
                .collect::<Option<Vec<Duration>>>()
        },
    );
    Fault {
        kind,
        what,
        start,
        end,
        flushed,
    }
}

/// A deletion (a fault's, or a key's initial absence) between `start` and `end`; `also`: a
/// value reads may still return (another replica's).
pub fn deleted(start: Instant, end: Instant, also: Option<Value>) -> State {
    State {
        value: None,
        also,
        start,
        ack: end,
        via_strata: false,
        expiry: false,
    }
}
