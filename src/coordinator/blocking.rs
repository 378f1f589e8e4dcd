//! Commands that block (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP,
//! XREAD / XREADGROUP with BLOCK, WAIT): run on a dedicated connection to the keys' node
//! (`backend::dedicated`), every key on one node else `CROSSSLOT`, with the client's own
//! timeout. The shared connections never carry them, so other clients are not held up.
//!
//! With replication the command runs on the key's primary only: a pop is not replicated to the
//! other copies (queues belong in a one-copy layer; see docs/commands.md).

use crate::backend::Lane;
use std::sync::Arc;

use crate::backend::NodeError;
use crate::backend::Router;
use crate::cluster::View;
use crate::command::spec::CommandSpec;
use crate::protocol::{Reply, Request};

use super::pending::{Pending, TaskOutput};
use super::plan;

/// Plans a blocking command: the node, then a task that leases a dedicated connection.
pub fn plan_blocking(
    router: &Arc<Router>,
    view: &View,
    lane: Lane,
    spec: &CommandSpec,
    request: Request,
) -> Pending {
    let slot = match plan::same_node(view, lane, spec, &request) {
        Ok(slot) => slot,
        Err(reply) => return Pending::ready(reply),
    };
    if let Some(node) = view.topology.node(slot) {
        if node.health.is_down() {
            return Pending::ready(Reply::error(
                crate::backend::NodeError::down(node).to_string(),
            ));
        }
    }
    let payload = plan::payload(&request);
    let router = router.clone();
    Pending::Dedicated(Box::pin(async move {
        let reply = match router.dedicated_lease(slot, lane.proto).await {
            Err(reply) => reply,
            Ok(mut lease) => match lease.call(&payload).await {
                Ok(reply) => Reply::Raw(reply.raw),
                Err(e) => Reply::error(NodeError::of(lease.node(), &e).to_string()),
            },
        };
        TaskOutput {
            reply,
            applied: Vec::new(),
        }
    }))
}
