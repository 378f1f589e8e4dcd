//! A request's way from the session: classified once against the request's view, then
//! answered by strata itself (`builtin`: PING, INFO, CONFIG, CLIENT, STRATA ...) or planned and
//! sent to the nodes (`coordinator`).

use std::sync::Arc;
use std::time::Instant;

use crate::acl::Acl;
use crate::cluster::View;
use crate::command::spec::Route;
use crate::command::table::command_index;
use crate::control::clients::ClientInfo;
use crate::control::Control;
use crate::coordinator::plan::plan;
use crate::coordinator::{self, track, Classified, Coordinator, Dispatched};
use crate::protocol::Request;

use super::gate::Gate;

/// Runs one request with `view` (the session's, loaded once for a batch of requests):
/// returns its pending reply once every node involved has been sent its part. `started` is
/// when the request was read (for latency figures).
pub async fn dispatch(
    coord: &Arc<Coordinator>,
    control: &Arc<Control>,
    client: &ClientInfo,
    view: &View,
    request: Request,
    started: Instant,
    access: Option<(&Arc<Acl>, &mut Gate)>,
) -> Dispatched {
    let lane = client.lane();
    let classified = match coordinator::classify(view, lane, &request, started) {
        Ok(classified) => classified,
        Err(refused) => return *refused,
    };
    // The access rules (`gate.rs`), with the command already looked up.
    if let Some((acl, gate)) = access {
        if let Err(refusal) =
            gate.check_spec(acl, client, classified.spec, &request, &control.stats)
        {
            // Counted as one of the command's `rejected_calls`, as Redis counts ACL refusals.
            let mut refused = Dispatched::reply(refusal, started);
            refused.track.proto = lane.proto;
            refused.track.command = classified.track.command;
            refused.track.rejected = true;
            return refused;
        }
    }
    if classified.traits.subcommands {
        if let Some(sub) = request.args.get(1) {
            client.set_subcommand(sub);
        }
    }
    let Classified {
        spec,
        traits,
        mut track,
    } = classified;
    if !matches!(spec.route, Route::Local | Route::Subcommand) {
        if client.is_tracking() {
            if let Some(tracker) = client.tracker() {
                track.tracked = crate::coordinator::tracked::tracked_read(
                    &view.layers,
                    tracker,
                    client.caching(),
                    spec,
                    &request,
                );
            }
            // CLIENT CACHING applies to one command (Redis clears it after any command but
            // CLIENT ...).
            client.clear_caching();
        }
        let pending = plan(coord, view, lane, spec, traits, request, &mut track).await;
        return Dispatched {
            pending,
            close: false,
            spec: Some(spec),
            track,
        };
    }
    // Built-in commands load what they need themselves (some wait on nodes for long, some
    // change the view: the session then loads the next one for the requests after it).
    // Local commands may describe the client (CLIENT LIST / INFO): record it first.
    client.touch(command_index(spec));
    if spec.name != "client" {
        client.clear_caching();
    }
    // Built by strata, these replies take their RESP3 types here. The shape is known before
    // the command runs, the protocol after (HELLO 3 answers in RESP3).
    let shape = crate::protocol::resp3::shape_of(spec.name, &request);
    // Boxed: built-in commands are rare, and their large future would otherwise make every
    // request's dispatch future as large.
    let done = Box::pin(crate::builtin::local::execute(
        coord, control, client, spec, request,
    ))
    .await;
    track.proto = client.lane().proto;
    track.shape = shape;
    if let Some(layer) = done.layer {
        // STRATA WARM: a write of one key, counted as a warm operation.
        track.layer = Some(layer);
        track.outcome = track::Outcome::Warm;
        track.class = crate::stats::Class::Write;
        track.rewrites = done.rewrites;
    }
    Dispatched {
        pending: done.pending,
        close: done.close,
        spec: Some(spec),
        track,
    }
}
