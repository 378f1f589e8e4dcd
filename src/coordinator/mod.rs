//! The coordinator: takes a parsed request to its reply. `classify` (command table) →
//! `plan` (ring, split per node, send) → [`Pending`] (awaited by the session in request order)
//! → `merge` (one reply from several nodes).
//!
//! The policy seam for later issues sits here: a request's layer policy (replication, TTL,
//! consistency) will be resolved between classify and plan.

pub mod merge;
pub mod pending;
pub mod plan;

use crate::client::registry::ClientInfo;
use crate::command::classify::classify;
use crate::command::local;
use crate::command::spec::{CommandSpec, Route};
use crate::protocol::{Reply, Request};
use crate::server::Worker;

pub use pending::{Gather, Pending};

/// What the session gets back for one request.
pub struct Dispatched {
    pub pending: Pending,
    /// Close the connection once this reply is written (QUIT).
    pub close: bool,
    /// The command, when it was recognised (CLIENT LIST's `cmd=`).
    pub spec: Option<&'static CommandSpec>,
}

impl Dispatched {
    fn reply(reply: Reply) -> Dispatched {
        Dispatched {
            pending: Pending::ready(reply),
            close: false,
            spec: None,
        }
    }
}

/// Runs one request: returns its pending reply once every node involved has been sent its part.
pub async fn dispatch(worker: &Worker, client: &ClientInfo, request: Request) -> Dispatched {
    let allow_dangerous = worker
        .shared
        .settings
        .config
        .security
        .allow_dangerous_commands;
    let spec = match classify(&request, allow_dangerous) {
        Ok(spec) => spec,
        Err(reply) => return Dispatched::reply(reply),
    };
    let id = client.id;
    let (pending, close) = match spec.route {
        Route::SameNode => (plan::plan_same_node(worker, id, spec, request).await, false),
        Route::Split(split) => (
            plan::plan_split(worker, id, spec, split, request).await,
            false,
        ),
        Route::FanOut(merge) => (plan::plan_fan_out(worker, id, merge, request).await, false),
        Route::AnyNode => {
            let node = (id % worker.pool.node_count().max(1) as u64) as usize;
            let payload = plan::payload(&request);
            (plan::forward(worker, id, node, payload).await, false)
        }
        Route::Local | Route::Subcommand => {
            // Local commands may describe the client (CLIENT LIST / INFO): record it first.
            client.touch(crate::command::introspect::command_index(spec));
            // Boxed: local commands are rare, and their large future would otherwise make
            // every request's dispatch future as large.
            let done = Box::pin(local::execute(worker, client, spec, request)).await;
            (done.pending, done.close)
        }
        Route::Unsupported => (
            Pending::ready(crate::command::classify::unsupported(spec.name)),
            false,
        ),
    };
    Dispatched {
        pending,
        close,
        spec: Some(spec),
    }
}
