//! The planner: which nodes a request goes to, in what pieces, and how the replies come back
//! together; sends the pieces and returns the [`Pending`] reply. [`plan`] is the one entry for
//! every request that goes to nodes, planned with the request's one [`View`]: layers with one
//! copy here (multi-key commands split per node in `split.rs`), layers with several (and every
//! key while a rebalance runs) in `copies.rs`, the near cache in `near.rs`, coalescing in
//! `coalesced.rs`. The
//! sending helpers ([`forward`], [`fan_out`]) and the request rewrites ([`write_payload`]) are
//! also what transactions and the built-in commands use.

mod coalesced;
mod copies;
mod near;
mod replica_reads;
mod split;

pub use near::{before_write, then_apply, WriteEffect};

use crate::backend::Lane;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::command::keys::key_positions;
use std::sync::Arc;

use crate::backend::Router;
use crate::cluster::{Place, View};
use crate::command::spec::{CommandSpec, KeyError, KeySpec, Merge, Route, Split};
use crate::policy::ttl::{self, TtlPlan};
use crate::protocol::reply::{append_args, append_encoded, command_bytes};
use crate::protocol::{Reply, Request};

use crate::coordinator::coalesce::Join;
use crate::coordinator::merge::MergePlan;
use crate::coordinator::pending::{Gather, Pending};
use crate::coordinator::track::{Track, Traits};
use crate::coordinator::Coordinator;

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
fn down_reply(router: &Router, node: &std::sync::Arc<crate::cluster::NodeInfo>) -> Pending {
    if let Some(w) = node.stats.worker(router.worker) {
        w.errors.add(1);
    }
    Pending::ready(Reply::error(
        crate::backend::NodeError::down(node).to_string(),
    ))
}

/// Sends `payload` to `node` and returns the pending reply, forwarded unchanged.
pub async fn forward(router: &Router, lane: Lane, node: usize, payload: Bytes) -> Pending {
    match router.connection(node, lane) {
        // A node marked down is not sent requests: its clients get the error at once
        // instead of waiting out a hung node.
        Some(conn) if conn.node().health.is_down() => down_reply(router, conn.node()),
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
    router: &Router,
    lane: Lane,
    node: usize,
    payload: Bytes,
    rewrite: impl FnOnce(Bytes) -> Reply + Send + 'static,
) -> Pending {
    match forward(router, lane, node, payload).await {
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

/// Sends the same payload to every node holding keys and merges the replies.
pub async fn fan_out(router: &Router, lane: Lane, payload: Bytes, plan: MergePlan) -> Pending {
    let mut gather = Gather::new(plan);
    // The ring's members and the cluster backends' primaries.
    let members = router.view().topology.serving();
    for node in members {
        if let Some(conn) = router.connection(node, lane) {
            let rx = conn.send(payload.clone()).await;
            gather.push(rx, conn.node().clone());
        }
    }
    Pending::gather(gather)
}

/// The node every key of the request hashes to; a keyless request goes to a node picked by
/// client id (spreads keyless scripts and the like).
pub fn same_node(
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    request: &Request,
) -> Result<usize, Reply> {
    let topology = &view.topology;
    if view.layers.any_cluster() {
        return same_place(view, lane, spec, request);
    }
    let ring = &topology.ring;
    // The common case, one key at position 1, without collecting positions.
    if spec.keys == KeySpec::FIRST_ONLY {
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

/// [`same_node`] when some layer is served by a Redis Cluster: every key must be in one place
/// (one ring node, or one slot of one cluster), as Redis Cluster requires.
fn same_place(
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    request: &Request,
) -> Result<usize, Reply> {
    if spec.keys == KeySpec::FIRST_ONLY {
        if let Some(key) = request.args.get(1) {
            return node_of(view, view.place(key));
        }
    }
    let mut positions = Vec::new();
    key_positions(spec, &request.args, &mut positions).map_err(|e| key_error(spec.name, e))?;
    let mut first: Option<Place> = None;
    for &pos in &positions {
        let Some(key) = request.args.get(pos) else {
            continue;
        };
        let place = view.place(key);
        match first {
            None => first = Some(place),
            Some(p) if !p.together(place) => return Err(Reply::error_static(CROSSSLOT)),
            Some(_) => {}
        }
    }
    match first {
        Some(place) => node_of(view, place),
        None => Ok(view.topology.pick(lane.client)),
    }
}

/// Redis Cluster's error for a key whose slot no node serves.
pub const CLUSTERDOWN: &str = "CLUSTERDOWN Hash slot not served";

/// The node serving `place`; `CLUSTERDOWN` for a cluster slot no node serves (strata's map
/// may be behind: a refresh is asked for).
pub fn node_of(view: &View, place: Place) -> Result<usize, Reply> {
    match place {
        Place::Ring(node) => Ok(node),
        Place::Slot {
            node: Some(node), ..
        } => Ok(node),
        Place::Slot { backend, .. } => {
            if let Some(map) = view.topology.clusters.get(backend) {
                map.link.refresh.ask();
            }
            Err(Reply::error_static(CLUSTERDOWN))
        }
    }
}

/// SORT / SORT_RO with BY or GET patterns: the keys a pattern forms must be on the sorted
/// key's node, which is only known when the pattern has a hash tag placing it there (or there
/// is one node); else `CROSSSLOT`. `BY nosort` and `GET #` form no key.
pub fn sort_patterns(view: &View, request: &Request) -> Result<(), Reply> {
    let topology = &view.topology;
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
    view: &View,
    spec: &CommandSpec,
    request: &Request,
) -> Result<Option<TtlPlan>, Reply> {
    let layers = &view.layers;
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
    router: &Router,
    view: &View,
    lane: Lane,
    node: usize,
    payload: Bytes,
    followers: Vec<Vec<Bytes>>,
) -> Pending {
    if followers.is_empty() {
        return forward(router, lane, node, payload).await;
    }
    let Some(conn) = router.connection(node, lane) else {
        return Pending::ready(Reply::error_static("ERR strata: no such node"));
    };
    if conn.node().health.is_down() {
        return down_reply(router, conn.node());
    }
    let mut gather = Gather::new(MergePlan::Forward);
    gather.push(conn.send(payload).await, conn.node().clone());
    send_followers(router, view, lane, &mut gather, followers).await;
    Pending::gather(gather)
}

/// Sends each follower command to the node owning its key (its second argument). The
/// client's own connection to that node carries it, right behind the write it follows.
async fn send_followers(
    router: &Router,
    view: &View,
    lane: Lane,
    gather: &mut Gather,
    followers: Vec<Vec<Bytes>>,
) {
    for follower in followers {
        let Some(key) = follower.get(1) else {
            continue;
        };
        let Some(node) = view.route(key) else {
            continue;
        };
        let layer = view.layers.resolve(key);
        if let Some(conn) = router.connection(node, lane) {
            let rx = conn
                .send(command_bytes(follower.iter().map(|a| a.as_ref())))
                .await;
            gather.follow(rx, conn.node().clone(), layer);
        }
    }
}

/// A key-addressed command (`Route::SameNode`) of a one-copy layer: the node of its keys,
/// and the bytes to send it (the TTL policy applied to writes that have a TTL rule when some
/// layer has one) with their TTL followers. Not async: the commonest request's plan adds no
/// future of its own to the ones that send it.
fn one_copy(
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    request: &Request,
    ttl_rule: bool,
    track: &mut Track,
) -> Result<(usize, Bytes, Vec<Vec<Bytes>>), Reply> {
    let node = same_node(view, lane, spec, request)?;
    let (payload, followers) = write_payload(view, spec, request, ttl_rule, track)?;
    Ok((node, payload, followers))
}

/// The bytes of a write after the TTL policy, and the TTL followers to send behind it.
pub fn write_payload(
    view: &View,
    spec: &CommandSpec,
    request: &Request,
    ttl_rule: bool,
    track: &mut Track,
) -> Result<(Bytes, Vec<Vec<Bytes>>), Reply> {
    if !ttl_rule || !view.layers.any_ttl() {
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
        let suffix = view.layers.get(layer).and_then(|l| l.set_suffix.as_ref());
        if let Some(payload) = suffix.and_then(|s| append_encoded(raw, 3, s, 2)) {
            track.rewrites = 1;
            return Ok((payload, Vec::new()));
        }
    }
    match ttl_plan(view, spec, request)? {
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

/// Routes keyspace-wide commands to every node; the keyspace reads count each key once
/// (`keyspace/`).
async fn fan_out_merged(
    coord: &Arc<Coordinator>,
    view: &View,
    lane: Lane,
    merge: Merge,
    request: Request,
) -> Pending {
    let router = &coord.router;
    let owners = || crate::coordinator::keyspace::owners_now(view, &coord.rebalance);
    let plan = match merge {
        Merge::AllOk => MergePlan::AllOk,
        Merge::AllOfArrays => MergePlan::AllOfArrays,
        Merge::FirstReply => MergePlan::FirstReply,
        Merge::DbSize => return crate::coordinator::keyspace::dbsize(router, owners(), lane),
        Merge::Keys => return crate::coordinator::keyspace::keys(router, owners(), lane, request),
        Merge::RandomKey => return crate::coordinator::keyspace::randomkey(router, owners(), lane),
        Merge::Scan => return crate::coordinator::keyspace::scan(router, owners(), lane, request),
    };
    fan_out(router, lane, payload(&request), plan).await
}

/// The planner: where a request goes and how, by its route and its keys' layers. Every
/// request that goes to nodes comes through here with its one snapshot (`view`):
///
/// - blocking commands → a dedicated connection (`blocking.rs`);
/// - with a near cache: a GET (an MGET, key by key) of its layer answered from memory or
///   sent as a fill, a write of its keys invalidated before it is sent (and again by the
///   session, `near.rs`);
/// - with `coalesce`: a read of one key joins an identical one in flight, or leads a flight
///   others may join (`coordinator/coalesce.rs`); writes of its keys end joining;
/// - key commands and splittable multi-key commands of layers with one copy → the owning
///   node's shared connection, TTL policy applied (`one_copy`, `split.rs`);
/// - the same of layers with several copies (or ejecting down nodes), and every key command
///   while a rebalance runs (reads fall back to the keys' previous owners) → flights to the
///   keys' replicas (`copies.rs`);
/// - keyspace-wide commands → every node, merged; keyless ones → a node picked by client.
pub async fn plan(
    coord: &Arc<Coordinator>,
    view: &View,
    lane: Lane,
    spec: &'static CommandSpec,
    traits: Traits,
    request: Request,
    track: &mut Track,
) -> Pending {
    let router = &coord.router;
    if matches!(spec.name, "sort" | "sort_ro") {
        if let Err(reply) = sort_patterns(view, &request) {
            return Pending::ready(reply);
        }
    }
    // Blocking commands (and XREAD/XREADGROUP with BLOCK) never use a shared connection.
    let blocks = spec.route == Route::Blocking
        || (spec.has(crate::command::spec::flags::BLOCKING)
            && crate::command::classify::has_block_option(&request));
    if blocks {
        return crate::coordinator::blocking::plan_blocking(router, view, lane, spec, request);
    }
    if view.layers.any_near() && spec.name == "get" {
        if let Some(reply) = near::hit(coord, view, &request, track) {
            return Pending::ready(reply);
        }
    }
    let mut lead = None;
    match coalesced::join(coord, view, lane, spec, &request, track) {
        None => {}
        Some(Join::Joined(flight)) => {
            return coalesced::joined(coord, flight, lane, spec, traits, request, track)
        }
        Some(Join::Lead(l)) => lead = Some(l),
    }
    // One body for every request, without a nested future of its own: a separate async fn
    // here cost every request about 160 instructions (callgrind).
    let pending = 'routed: {
        if view.layers.watch_writes() {
            if spec.name == "get" && view.layers.any_near() {
                if let Some(pending) = near::fill(coord, view, lane, &request, track).await {
                    break 'routed pending;
                }
            }
            if let (Route::Split(split @ Split::Mget), true) = (spec.route, view.layers.any_near())
            {
                match near::mget(coord, view, &request, track) {
                    near::Mget::Usual => {}
                    near::Mget::Served(reply) => break 'routed Pending::ready(reply),
                    near::Mget::Rest(rest, mut parts) => {
                        let pending = Box::pin(split::split_any(
                            coord, view, lane, spec, split, rest, traits, track,
                        ))
                        .await;
                        parts.send_pttls(coord, view, lane).await;
                        break 'routed parts.finish(pending);
                    }
                }
            }
            let effect = near::before_write(view, spec, &request, lane.client);
            if !effect.is_none() {
                // Applied again by the session when the reply is in (`Track::near_after`).
                track.near_after = Some(Box::new(effect));
            }
        }
        let layers = &view.layers;
        let rebalancing = coord.rebalance.is_running();
        // A key command of a layer with several copies, or any while keys move: flights.
        // A cluster backend's keys are never moved by a rebalance (and have one copy here).
        let layer = track.layer.and_then(|l| layers.get(l));
        let copies = (layers.any_replicated() || rebalancing)
            && spec.route == Route::SameNode
            && layer.is_none_or(|l| l.spec.backend.is_none())
            && (rebalancing || layer.is_some_and(|l| l.replicated));
        match spec.route {
            Route::SameNode if copies => {
                let layer = track.layer.unwrap_or_default();
                copies::key_command(
                    coord,
                    view,
                    lane,
                    spec,
                    request,
                    traits.ttl_rule,
                    track,
                    layer,
                )
                .await
            }
            Route::Split(split) => {
                split::split_any(coord, view, lane, spec, split, request, traits, track).await
            }
            Route::SameNode => match one_copy(view, lane, spec, &request, traits.ttl_rule, track) {
                Err(reply) => Pending::ready(reply),
                Ok((node, payload, followers)) if followers.is_empty() => {
                    let replica = replica_reads::may_use_replicas(view, spec, track)
                        .then(|| {
                            replica_reads::replica_for_request(view, spec, &request, lane.client)
                        })
                        .flatten();
                    match replica {
                        Some(replica) => {
                            replica_reads::read(&coord.router, lane, replica, node, payload).await
                        }
                        None => forward(router, lane, node, payload).await,
                    }
                }
                Ok((node, payload, followers)) => {
                    send_followed(router, view, lane, node, payload, followers).await
                }
            },
            Route::FanOut(merge) => {
                Box::pin(fan_out_merged(coord, view, lane, merge, request)).await
            }
            Route::AnyNode => {
                let node = view.topology.pick(lane.client);
                forward(router, lane, node, payload(&request)).await
            }
            Route::Blocking => {
                crate::coordinator::blocking::plan_blocking(router, view, lane, spec, request)
            }
            Route::Unsupported => Pending::ready(crate::command::classify::unsupported(spec.name)),
            // Answered by `builtin`, never planned.
            Route::Local | Route::Subcommand => Pending::ready(Reply::error_static(
                "ERR strata: internal error: a local command reached the planner",
            )),
        }
    };
    match lead {
        None => pending,
        Some(lead) => coalesced::led(lead, pending),
    }
}
