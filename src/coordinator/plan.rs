//! Planning: which nodes a request goes to, in what pieces, and how the replies come back
//! together. Sends the pieces and returns the [`Pending`] reply.

use crate::backend::Lane;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::command::keys::key_positions;
use crate::command::spec::{CommandSpec, KeyError, KeySpec, Merge, Split};
use crate::policy::ttl::{self, TtlPlan};
use crate::protocol::reply::{append_args, append_encoded, command_bytes};
use crate::protocol::{Reply, Request};
use crate::server::Worker;

use super::merge::MergePlan;
use super::pending::{Gather, Pending};
use super::track::Track;

/// `CROSSSLOT` is Redis Cluster's error for keys that do not share a slot; clients already know
/// what it means and how to fix it (hash tags).
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// The bytes to send a node for a request: as received when possible, re-encoded otherwise.
pub fn payload(request: &Request) -> Bytes {
    if let Some(raw) = &request.raw {
        return raw.clone();
    }
    command_bytes(request.args.iter().map(|a| a.as_ref()))
}

/// The reply of a request whose node is marked down: not sent (a hung node would hold it for
/// the whole request timeout), answered at once and counted as an error of the node.
fn down_reply(worker: &Worker, node: &std::sync::Arc<crate::cluster::NodeInfo>) -> Pending {
    if let Some(w) = node.stats.worker(worker.index) {
        w.errors.add(1);
    }
    Pending::ready(Reply::error(node.down_error().to_string()))
}

/// Sends `payload` to `node` and returns the pending reply, forwarded unchanged.
pub async fn forward(worker: &Worker, lane: Lane, node: usize, payload: Bytes) -> Pending {
    match worker.connection(node, lane) {
        // A node marked down is not sent requests: its clients get the error at once
        // instead of waiting out a hung node.
        Some(conn) if conn.node().health.is_down() => down_reply(worker, conn.node()),
        Some(conn) => {
            let rx = conn.send(payload).await;
            Pending::Forward {
                rx,
                node: conn.node().clone(),
            }
        }
        None => Pending::ready(Reply::error_static("ERR strata: no such node")),
    }
}

/// Like [`forward`], with the node's reply (when it is not an error) rewritten by `rewrite`
/// (strata's own additions to a reply Redis gives, such as its STRATA command in COMMAND).
pub async fn forward_then(
    worker: &Worker,
    lane: Lane,
    node: usize,
    payload: Bytes,
    rewrite: impl FnOnce(Bytes) -> Reply + Send + 'static,
) -> Pending {
    match forward(worker, lane, node, payload).await {
        Pending::Forward { rx, node } => Pending::task(async move {
            let reply = match crate::backend::settle(&node, rx.await) {
                Ok(reply) if reply.is_error() => Reply::Raw(reply.raw),
                Ok(reply) => rewrite(reply.raw),
                Err(e) => Reply::error(e.to_string()),
            };
            crate::coordinator::TaskOutput {
                reply,
                applied: Vec::new(),
            }
        }),
        // Not sent (node down or unknown): its error as it is.
        other => other,
    }
}

/// Sends the same payload to every node and merges the replies.
pub async fn fan_out(worker: &Worker, lane: Lane, payload: Bytes, plan: MergePlan) -> Pending {
    let mut gather = Gather::new(plan);
    let members = worker.shared.topology.load().members.clone();
    for node in members {
        if let Some(conn) = worker.connection(node, lane) {
            let rx = conn.send(payload.clone()).await;
            gather.push(rx, conn.node().clone());
        }
    }
    Pending::gather(gather)
}

/// The node every key of the request hashes to; a keyless request goes to a node picked by
/// client id (spreads keyless scripts and the like).
pub fn same_node(
    worker: &Worker,
    lane: Lane,
    spec: &CommandSpec,
    request: &Request,
) -> Result<usize, Reply> {
    let topology = worker.shared.topology.load();
    let ring = &topology.ring;
    // The common case, one key at position 1, without collecting positions.
    if spec.keys
        == (KeySpec::Range {
            first: 1,
            last: 1,
            step: 1,
        })
    {
        if let Some(key) = request.args.get(1) {
            return Ok(ring.primary(key));
        }
    }
    let mut positions = Vec::new();
    key_positions(spec, &request.args, &mut positions).map_err(|e| key_error(spec.name, e))?;
    let mut node = None;
    for &pos in &positions {
        let Some(key) = request.args.get(pos) else {
            continue;
        };
        let owner = ring.primary(key);
        match node {
            None => node = Some(owner),
            Some(n) if n != owner => return Err(Reply::error_static(CROSSSLOT)),
            Some(_) => {}
        }
    }
    Ok(node.unwrap_or_else(|| topology.pick(lane.client)))
}

/// SORT / SORT_RO with BY or GET patterns: the keys a pattern forms must be on the sorted
/// key's node, which is only known when the pattern has a hash tag placing it there (or there
/// is one node); else `CROSSSLOT`. `BY nosort` and `GET #` form no key.
pub fn sort_patterns(worker: &Worker, request: &Request) -> Result<(), Reply> {
    let topology = worker.shared.topology.load();
    let ring = &topology.ring;
    let Some(key) = request.args.get(1) else {
        return Ok(());
    };
    let node = ring.primary(key);
    let mut i = 2;
    while let Some(arg) = request.args.get(i) {
        let is_pattern = arg.eq_ignore_ascii_case(b"by") || arg.eq_ignore_ascii_case(b"get");
        if let (true, Some(pattern)) = (is_pattern, request.args.get(i + 1)) {
            let nothing = pattern.as_ref() == b"#" || pattern.eq_ignore_ascii_case(b"nosort");
            // `key->field` patterns name a hash key: the part before `->`.
            let key_part = match memchr::memmem::find(pattern, b"->") {
                Some(at) => pattern.get(..at).unwrap_or_default(),
                None => pattern.as_ref(),
            };
            let tagged = ring.hashed_part(key_part) != key_part;
            let together =
                topology.members.len() == 1 || (tagged && ring.primary(key_part) == node);
            if !nothing && !together {
                return Err(Reply::error_static(CROSSSLOT));
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Redis's reply for arguments whose keys cannot be found (`command` names XREAD's variant).
pub fn key_error(command: &str, e: KeyError) -> Reply {
    match e {
        KeyError::BadNumKeys(text) => Reply::error_static(text),
        KeyError::BadStreams => Reply::error(format!(
            "ERR Unbalanced {} list of streams: for each stream key an ID or '$' must be specified.",
            command.to_ascii_uppercase()
        )),
    }
}

/// Applies the layers' TTL policy to a write (`policy::ttl`); `Ok(None)` when it changes
/// nothing, `Err` with the refusal when the policy forbids it.
pub fn ttl_plan(
    worker: &Worker,
    spec: &CommandSpec,
    request: &Request,
) -> Result<Option<TtlPlan>, Reply> {
    let layers = worker.shared.layers.load();
    // The clock is read only for absolute expiry times; most writes do not need it.
    let now_ms = if ttl::needs_clock(spec.name, &request.args) {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        0
    };
    let limits = |key: &[u8]| layers.ttl_limits(key);
    match ttl::apply(spec.name, &request.args, &limits, now_ms) {
        Err(text) => Err(Reply::error(text)),
        Ok(plan) if plan == TtlPlan::default() => Ok(None),
        Ok(plan) => Ok(Some(plan)),
    }
}

/// The request's arguments followed by `extra`, encoded (inline requests have no raw bytes).
fn with_appended(request: &Request, extra: &[Bytes]) -> Bytes {
    let args: Vec<&[u8]> = request
        .args
        .iter()
        .chain(extra)
        .map(|a| a.as_ref())
        .collect();
    command_bytes(args.into_iter())
}

/// Sends `payload` to `node`, then the TTL followers, each to its key's node. Without
/// followers this is [`forward`].
async fn send_followed(
    worker: &Worker,
    lane: Lane,
    node: usize,
    payload: Bytes,
    followers: Vec<Vec<Bytes>>,
) -> Pending {
    if followers.is_empty() {
        return forward(worker, lane, node, payload).await;
    }
    let Some(conn) = worker.connection(node, lane) else {
        return Pending::ready(Reply::error_static("ERR strata: no such node"));
    };
    if conn.node().health.is_down() {
        return down_reply(worker, conn.node());
    }
    let mut gather = Gather::new(MergePlan::Forward);
    gather.push(conn.send(payload).await, conn.node().clone());
    send_followers(worker, lane, &mut gather, followers).await;
    Pending::gather(gather)
}

/// Sends each follower command to the node owning its key (its second argument). The
/// client's own connection to that node carries it, right behind the write it follows.
async fn send_followers(
    worker: &Worker,
    lane: Lane,
    gather: &mut Gather,
    followers: Vec<Vec<Bytes>>,
) {
    for follower in followers {
        let Some(key) = follower.get(1) else {
            continue;
        };
        let node = worker.shared.topology.load().ring.primary(key);
        let layer = worker.shared.layers.load().resolve(key);
        if let Some(conn) = worker.connection(node, lane) {
            let rx = conn
                .send(command_bytes(follower.iter().map(|a| a.as_ref())))
                .await;
            gather.follow(rx, conn.node().clone(), layer);
        }
    }
}

/// Routes a key-addressed command (`Route::SameNode`), applying the TTL policy to writes
/// that have a TTL rule when some layer has one.
pub async fn plan_same_node(
    worker: &Worker,
    lane: Lane,
    spec: &CommandSpec,
    request: Request,
    ttl_rule: bool,
    track: &mut Track,
) -> Pending {
    let node = match same_node(worker, lane, spec, &request) {
        Ok(node) => node,
        Err(reply) => return Pending::ready(reply),
    };
    match write_payload(worker, spec, &request, ttl_rule, track) {
        Err(reply) => Pending::ready(reply),
        Ok((payload, followers)) => send_followed(worker, lane, node, payload, followers).await,
    }
}

/// The bytes of a write after the TTL policy, and the TTL followers to send behind it.
pub fn write_payload(
    worker: &Worker,
    spec: &CommandSpec,
    request: &Request,
    ttl_rule: bool,
    track: &mut Track,
) -> Result<(Bytes, Vec<Vec<Bytes>>), Reply> {
    if !ttl_rule || !worker.shared.layers.load().any_ttl() {
        return Ok((payload(request), Vec::new()));
    }
    // The commonest write of a TTL layer, `SET key value`, gains the layer's `PX <ttl>`
    // without the general rules' parsing: the same result as `ttl::apply`, precomputed.
    // The layer is the one dispatch resolved for the key (`track.layer`).
    if let (true, Some(raw), Some(layer)) = (
        spec.name == "set" && request.args.len() == 3,
        &request.raw,
        track.layer,
    ) {
        let layers = worker.shared.layers.load();
        let suffix = layers.get(layer).and_then(|l| l.set_suffix.as_ref());
        if let Some(payload) = suffix.and_then(|s| append_encoded(raw, 3, s, 2)) {
            track.rewrites = 1;
            return Ok((payload, Vec::new()));
        }
    }
    match ttl_plan(worker, spec, request)? {
        None => Ok((payload(request), Vec::new())),
        Some(plan) => {
            track.rewrites = plan.rewrites;
            let payload = match (&plan.args, &request.raw) {
                (Some(args), _) => command_bytes(args.iter().map(|a| a.as_ref())),
                (None, _) if plan.append.is_empty() => payload(request),
                (None, Some(raw)) => append_args(raw, request.args.len(), &plan.append)
                    .unwrap_or_else(|| with_appended(request, &plan.append)),
                (None, None) => with_appended(request, &plan.append),
            };
            Ok((payload, plan.followers))
        }
    }
}

/// Groups argument positions by owning node, keeping argument order inside each group.
/// `stride` is 1 for key lists, 2 for key/value pairs.
fn group_by_node(worker: &Worker, request: &Request, stride: usize) -> Vec<(usize, Vec<usize>)> {
    let topology = worker.shared.topology.load();
    let ring = &topology.ring;
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut pos = 1;
    while let Some(key) = request.args.get(pos) {
        let node = ring.primary(key);
        match groups.iter_mut().find(|(n, _)| *n == node) {
            Some((_, positions)) => positions.push(pos),
            None => groups.push((node, vec![pos])),
        }
        pos += stride;
    }
    groups
}

/// Routes MGET / MSET / DEL / UNLINK / EXISTS / TOUCH: one sub-command per node, merged.
/// MSET's keys get the TTL policy's followers.
pub async fn plan_split(
    worker: &Worker,
    lane: Lane,
    spec: &CommandSpec,
    split: Split,
    request: Request,
    ttl_rule: bool,
) -> Pending {
    let stride = match split {
        Split::Mset => {
            if request.args.len() % 2 == 0 {
                return Pending::ready(crate::command::classify::wrong_arity(spec.name));
            }
            2
        }
        Split::Mget | Split::SumKeys => 1,
    };
    let followers = if ttl_rule && worker.shared.layers.load().any_ttl() {
        match ttl_plan(worker, spec, &request) {
            Err(reply) => return Pending::ready(reply),
            Ok(plan) => plan.map(|p| p.followers).unwrap_or_default(),
        }
    } else {
        Vec::new()
    };
    let groups = group_by_node(worker, &request, stride);
    if let [(node, _)] = groups.as_slice() {
        // Every key on one node: forward the request as it is.
        return send_followed(worker, lane, *node, payload(&request), followers).await;
    }
    let name = request.args.first().cloned().unwrap_or_default();
    let total = request.args.len().saturating_sub(1) / stride;
    let mut slots = Vec::with_capacity(groups.len());
    let mut gather = Gather::new(MergePlan::Done);
    for (node, positions) in groups {
        let args = std::iter::once(name.as_ref()).chain(positions.iter().flat_map(|&p| {
            (p..p + stride).filter_map(|i| request.args.get(i).map(|a| a.as_ref()))
        }));
        let args: Vec<&[u8]> = args.collect();
        let Some(conn) = worker.connection(node, lane) else {
            continue;
        };
        if conn.node().health.is_down() {
            return down_reply(worker, conn.node());
        }
        let rx = conn.send(command_bytes(args.into_iter())).await;
        gather.push(rx, conn.node().clone());
        slots.push(positions.iter().map(|p| (p - 1) / stride).collect());
    }
    let plan = match split {
        Split::Mget => MergePlan::Mget { slots, total },
        Split::Mset => MergePlan::AllOk,
        Split::SumKeys => MergePlan::Sum,
    };
    let mut gather = gather;
    gather.set_plan(plan);
    send_followers(worker, lane, &mut gather, followers).await;
    Pending::gather(gather)
}

/// Routes keyspace-wide commands to every node; the keyspace reads count each key once
/// (`keyspace/`).
pub async fn plan_fan_out(
    worker: &std::sync::Arc<Worker>,
    lane: Lane,
    merge: Merge,
    request: Request,
) -> Pending {
    let plan = match merge {
        Merge::AllOk => MergePlan::AllOk,
        Merge::AllOfArrays => MergePlan::AllOfArrays,
        Merge::FirstReply => MergePlan::FirstReply,
        Merge::DbSize => return super::keyspace::dbsize(worker, lane),
        Merge::Keys => return super::keyspace::keys(worker, lane, request),
        Merge::RandomKey => return super::keyspace::randomkey(worker, lane),
        Merge::Scan => return super::keyspace::scan(worker, lane, request),
    };
    fan_out(worker, lane, payload(&request), plan).await
}
