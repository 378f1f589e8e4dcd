//! Coalescing on the planner's side (docs/coalescing.md): which reads may share a flight
//! (`coordinator/coalesce.rs` keeps the flights), and the pending replies of a read that
//! joined one or leads one.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::Lane;
use crate::cluster::View;
use crate::command::spec::{flags, CommandSpec, KeySpec, Route};
use crate::coordinator::coalesce::{Flight, Join, Lead};
use crate::coordinator::pending::{Pending, TaskOutput};
use crate::coordinator::track::{Track, Traits};
use crate::coordinator::Coordinator;
use crate::protocol::{Reply, Request};

/// Joins an identical read in flight or leads a new flight, for a read coalescing may share
/// (counted as `coalesced` when it joins); `None` for every other request.
pub(super) fn join(
    coord: &Coordinator,
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    request: &Request,
    track: &Track,
) -> Option<Join> {
    let key = coalescable(view, spec, request, track)?;
    let coherence = view.layers.coherence();
    let join = coord
        .coalesce
        .join(coherence, key, lane.proto, super::payload(request));
    if let Join::Joined(_) = join {
        let layer = track.layer.and_then(|l| view.layers.get(l));
        if let Some(w) = layer.and_then(|l| l.stats.worker(coord.router.worker)) {
            w.coalesced.add(1);
        }
    }
    Some(join)
}

/// The leader's pending reply: its read, sent, shared as the flight others join.
pub(super) fn led(lead: Lead, pending: Pending) -> Pending {
    let flight = lead.share(pending);
    Pending::task(async move {
        TaskOutput {
            reply: flight.reply().await.unwrap_or_else(|| {
                Reply::error_static("ERR strata: internal error: a read was lost")
            }),
            applied: Vec::new(),
        }
    })
}

/// A read that waits for an identical one in flight. Should that one's leader be gone before
/// it sent the read (its client disconnected mid-request), this read is sent by itself.
pub(super) fn joined(
    coord: &Arc<Coordinator>,
    flight: Flight,
    lane: Lane,
    spec: &'static CommandSpec,
    traits: Traits,
    request: Request,
    track: &Track,
) -> Pending {
    let coord = coord.clone();
    let (started, layer) = (track.started, track.layer);
    Pending::task(async move {
        if let Some(reply) = flight.reply().await {
            return TaskOutput {
                reply,
                applied: Vec::new(),
            };
        }
        let view = coord.router.view_full();
        let mut track = Track::new(started);
        track.layer = layer;
        let mut pending = Box::pin(super::plan(
            &coord, &view, lane, spec, traits, request, &mut track,
        ))
        .await;
        let reply = std::future::poll_fn(|cx| pending.poll_reply(cx)).await;
        TaskOutput {
            reply,
            applied: pending.applied().to_vec(),
        }
    })
}

/// The key of a read that coalescing may share: a read (not a random pick) of one key, at
/// position 1, of a layer with `coalesce: true`.
fn coalescable<'r>(
    view: &View,
    spec: &CommandSpec,
    request: &'r Request,
    track: &Track,
) -> Option<&'r Bytes> {
    let layer = view.layers.get(track.layer?)?;
    // A tracked read stays on the primary; a flight of a `read_from: replica` layer may be
    // reading a replica that lags the invalidation the client would rely on.
    if track.tracked.is_some() && layer.spec.read_from == crate::config::ReadFrom::Replica {
        return None;
    }
    let read = spec.has(flags::READONLY)
        && !spec.has(flags::WRITE)
        && spec.route == Route::SameNode
        && spec.keys == KeySpec::FIRST_ONLY
        // Two clients asking for a random member expect two draws.
        && !matches!(spec.name, "srandmember" | "hrandfield" | "zrandmember");
    (layer.spec.coalesce && read)
        .then(|| request.args.get(1))
        .flatten()
}
