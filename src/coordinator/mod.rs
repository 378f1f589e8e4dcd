//! The coordinator: takes a parsed request to its reply. `classify` (command table) →
//! `policy` (the layer of the request's keys: TTL rules, statistics) → `plan` (ring, split per
//! node, TTL rewrite, send) → [`Pending`] (awaited by the session in request order) → `merge`
//! (one reply from several nodes). Beside each pending reply goes a [`Track`], which the
//! session hands to the statistics with the reply (`track.rs`). The keyspace-wide reads (KEYS,
//! SCAN, DBSIZE, RANDOMKEY, INFO's keyspace) count each key once whatever its copies
//! (`keyspace/`).

pub mod blocking;
pub mod invalidate;
pub mod keyspace;
pub mod merge;
pub mod pending;
pub mod plan;
pub mod read_flight;
pub mod read_one;
pub mod replicate;
pub mod scan;
pub mod track;
pub mod vote;
pub mod write_flight;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::builtin::local;
use crate::command::classify::classify;
use crate::command::spec::{CommandSpec, KeySpec, Route, Split};
use crate::command::table;
use crate::control::clients::ClientInfo;
use crate::protocol::{Reply, Request};
use crate::server::Worker;

pub use pending::{Gather, Pending, TaskOutput};
pub use track::{Recorder, Track};

/// What the session gets back for one request.
pub struct Dispatched {
    pub pending: Pending,
    /// Close the connection once this reply is written (QUIT).
    pub close: bool,
    /// The command, when it was recognised (CLIENT LIST's `cmd=`).
    pub spec: Option<&'static CommandSpec>,
    /// What the reply will add to the statistics.
    pub track: Track,
}

impl Dispatched {
    fn reply(reply: Reply, started: Instant) -> Dispatched {
        Dispatched {
            pending: Pending::ready(reply),
            close: false,
            spec: None,
            track: Track::new(started),
        }
    }
}

/// The key that decides a request's layer: its first key.
fn first_key<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Option<&'a Bytes> {
    match spec.keys {
        KeySpec::None => None,
        KeySpec::Range { first, .. } => args.get(first),
        KeySpec::NumKeys { fixed, numkeys_at } => match fixed.first() {
            Some(&at) => args.get(at),
            None => {
                let count = args
                    .get(numkeys_at)
                    .and_then(crate::command::spec::parse_count);
                count.filter(|&n| n > 0).and(args.get(numkeys_at + 1))
            }
        },
        KeySpec::Streams => {
            let at = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"streams"))?;
            args.get(at + 1)
        }
        KeySpec::KeyAndStore => args.get(1),
        KeySpec::SubcommandKey => args.get(2),
    }
}

/// Runs one request: returns its pending reply once every node involved has been sent its part.
/// `started` is when the request was read (for latency figures).
pub async fn dispatch(
    worker: &Arc<Worker>,
    client: &ClientInfo,
    request: Request,
    started: Instant,
) -> Dispatched {
    let allow_dangerous = worker
        .shared
        .settings
        .load()
        .config
        .security
        .allow_dangerous_commands;
    let spec = match classify(&request, allow_dangerous) {
        Ok(spec) => spec,
        Err(reply) => {
            let mut refused = Dispatched::reply(reply, started);
            // A known command refused before it ran is one of its `rejected_calls`.
            let known = request.args.first().and_then(|n| table::lookup(n));
            refused.track.command = known
                .and_then(crate::builtin::introspect::command_index)
                .and_then(|i| u16::try_from(i).ok());
            refused.track.rejected = true;
            return refused;
        }
    };
    let index = crate::builtin::introspect::command_index(spec);
    let traits = track::traits(index);
    let layers = worker.shared.layers.load();
    let mut track = Track::new(started);
    track.command = index.and_then(|i| u16::try_from(i).ok());
    track.class = traits.class;
    track.outcome = traits.outcome;
    let lane = client.lane();
    track.proto = lane.proto;
    if traits.subcommands {
        if let Some(sub) = request.args.get(1) {
            client.set_subcommand(sub);
        }
    }
    match spec.route {
        Route::Split(split) => {
            let stride = if split == Split::Mset { 2 } else { 1 };
            track.set_keys(&layers, &request.args, stride);
        }
        _ => track.layer = first_key(spec, &request.args).map(|k| layers.resolve(k)),
    }
    if spec.name == "msetnx" {
        track.set_keys(&layers, &request.args, 2);
    }
    if matches!(spec.name, "sort" | "sort_ro") {
        if let Err(reply) = plan::sort_patterns(worker, &request) {
            return Dispatched::reply(reply, started);
        }
    }
    // Blocking commands (and XREAD/XREADGROUP with BLOCK) never use a shared connection.
    let blocks = spec.route == Route::Blocking
        || (spec.has(crate::command::spec::flags::BLOCKING)
            && crate::command::classify::has_block_option(&request));
    if blocks {
        return Dispatched {
            pending: blocking::plan_blocking(worker, lane, spec, request),
            close: false,
            spec: Some(spec),
            track,
        };
    }
    // Layers with several copies (or ejecting down nodes) take the replicated path; while a
    // rebalance runs every key does (its reads fall back to the key's previous owners).
    let rebalancing = worker.shared.rebalance.is_running();
    let replicated = (layers.any_replicated() || rebalancing)
        && match spec.route {
            Route::SameNode => {
                rebalancing
                    || track
                        .layer
                        .and_then(|l| layers.get(l))
                        .is_some_and(|l| l.replicated)
            }
            Route::Split(_) => true,
            _ => false,
        };
    if replicated {
        let pending = match spec.route {
            Route::Split(split) => {
                replicate::plan_split(worker, lane, spec, split, request, traits.ttl_rule, &track)
                    .await
            }
            _ => {
                let layer = track.layer.unwrap_or_default();
                replicate::plan_same_node(
                    worker,
                    lane,
                    spec,
                    request,
                    traits.ttl_rule,
                    &mut track,
                    layer,
                )
                .await
            }
        };
        return Dispatched {
            pending,
            close: false,
            spec: Some(spec),
            track,
        };
    }
    let (pending, close) = match spec.route {
        Route::SameNode => (
            plan::plan_same_node(worker, lane, spec, request, traits.ttl_rule, &mut track).await,
            false,
        ),
        Route::Split(split) => (
            plan::plan_split(worker, lane, spec, split, request, traits.ttl_rule).await,
            false,
        ),
        Route::FanOut(merge) => (
            plan::plan_fan_out(worker, lane, merge, request).await,
            false,
        ),
        Route::AnyNode => {
            let node = worker.shared.topology.load().pick(lane.client);
            let payload = plan::payload(&request);
            (plan::forward(worker, lane, node, payload).await, false)
        }
        Route::Local | Route::Subcommand => {
            // Local commands may describe the client (CLIENT LIST / INFO): record it first.
            client.touch(crate::builtin::introspect::command_index(spec));
            // Built by strata, these replies take their RESP3 types here. The shape is known
            // before the command runs, the protocol after (HELLO 3 answers in RESP3).
            let shape = crate::protocol::resp3::shape_of(spec.name, &request);
            // Boxed: local commands are rare, and their large future would otherwise make
            // every request's dispatch future as large.
            let done = Box::pin(local::execute(worker, client, spec, request)).await;
            track.proto = client.lane().proto;
            track.shape = shape;
            if let Some(layer) = done.layer {
                // STRATA WARM: a write of one key, counted as a warm operation.
                track.layer = Some(layer);
                track.outcome = track::Outcome::Warm;
                track.class = crate::stats::Class::Write;
                track.rewrites = done.rewrites;
            }
            (done.pending, done.close)
        }
        Route::Blocking => (blocking::plan_blocking(worker, lane, spec, request), false),
        Route::Unsupported => (
            Pending::ready(crate::command::classify::unsupported(spec.name)),
            false,
        ),
    };
    Dispatched {
        pending,
        close,
        spec: Some(spec),
        track,
    }
}
