//! The coordinator: takes a request to its pending reply. [`classify`] (command table, the
//! layer of the request's keys) → [`plan::plan`] (the one planner: the keys' node or
//! replicas, split per node, TTL rewrite, send; flights for several copies) → [`Pending`]
//! (awaited by the session in request order) → `merge` (one reply from several nodes). Beside each pending reply goes a [`Track`], which the
//! session hands to the statistics with the reply (`track.rs`). The keyspace-wide reads (KEYS,
//! SCAN, DBSIZE, RANDOMKEY, INFO's keyspace) count each key once whatever its copies
//! (`keyspace/`).

pub mod blocking;
pub mod coalesce;
pub mod invalidate;
pub mod keyspace;
pub mod merge;
pub mod pending;
pub mod plan;
pub mod read_flight;
pub mod read_one;
pub mod scan;
pub mod track;
pub mod tracked;
pub mod vote;
pub mod write_flight;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::backend::{Lane, Router};
use crate::cluster::rebalance::Rebalance;
use crate::cluster::View;
use crate::command::spec::{CommandSpec, KeySpec, Route, Split};
use crate::command::table;
use crate::protocol::{Reply, Request};
use crate::repair::Repairs;

pub use pending::{Gather, Pending, TaskOutput};
pub use track::{Recorder, Track, Traits};

/// One worker's coordinator: its router to the nodes, its convergence work (write tails,
/// repairs) and the state of key moves after membership changes. Flights keep a reference to
/// it until they land.
pub struct Coordinator {
    pub router: Arc<Router>,
    pub repairs: Repairs,
    pub rebalance: Arc<Rebalance>,
    /// Reads of coalescing layers in flight (`coalesce.rs`).
    pub coalesce: Arc<coalesce::Coalescer>,
}

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
    pub fn reply(reply: Reply, started: Instant) -> Dispatched {
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

/// A request classified: its command, what the command is (for statistics and planning), and
/// the statistics record its reply will be counted in.
pub struct Classified {
    pub spec: &'static CommandSpec,
    pub traits: Traits,
    pub track: Track,
}

/// Classifies `request` (command table, arity, dangerous commands) and opens its statistics
/// record with the layer of its keys; a refused request comes back as its finished reply.
/// `started` is when the request was read (for latency figures).
// Inlined into dispatch: called once per request, and its result (with the request's
// `Track`) is then built in place rather than returned through memory.
#[inline]
pub fn classify(
    view: &View,
    lane: Lane,
    request: &Request,
    started: Instant,
) -> Result<Classified, Box<Dispatched>> {
    let allow_dangerous = view.settings.config.security.allow_dangerous_commands;
    let spec = match crate::command::classify::classify(request, allow_dangerous) {
        Ok(spec) => spec,
        Err(reply) => {
            let mut refused = Dispatched::reply(reply, started);
            // A known command refused before it ran is one of its `rejected_calls`.
            let known = request.args.first().and_then(|n| table::lookup(n));
            refused.track.command = known
                .and_then(table::command_index)
                .and_then(|i| u16::try_from(i).ok());
            refused.track.rejected = true;
            return Err(Box::new(refused));
        }
    };
    let index = table::command_index(spec);
    let traits = track::traits(index);
    let layers = &view.layers;
    let mut track = Track::new(started);
    track.command = index.and_then(|i| u16::try_from(i).ok());
    track.class = traits.class;
    track.outcome = traits.outcome;
    track.proto = lane.proto;
    match spec.route {
        Route::Split(split) => {
            let stride = if split == Split::Mset { 2 } else { 1 };
            track.set_keys(layers, &request.args, stride);
        }
        _ => track.layer = first_key(spec, &request.args).map(|k| layers.resolve(k)),
    }
    if spec.name == "msetnx" {
        track.set_keys(layers, &request.args, 2);
    }
    Ok(Classified {
        spec,
        traits,
        track,
    })
}
