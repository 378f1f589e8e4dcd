//! The commonest replicated read, `one` consistency with a replica up, without a flight: the
//! read goes to the first replica that is up and its reply is passed on as it comes, as for
//! an unreplicated key. Only when that replica misses (with miss failover), fails (in a way
//! another replica may not: `ErrorKind::retryable`), or is still silent at the hedge time
//! does the read become a [`Flight`] (`read_flight.rs`), which asks the next replica and
//! carries on from there.
//!
//! The hedge time needs no timer per read: the client's session keeps one timer for the
//! oldest reply it waits for (`Pending::hedge_at`), and replies behind it were sent later, so
//! their hedge times come later too.

use crate::backend::Lane;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::backend::{settle, NodeResult, PendingReply};
use crate::cluster::NodeInfo;
use crate::cluster::View;
use crate::policy::LayerId;
use crate::protocol::Reply;

use super::Coordinator;

use super::pending::TaskOutput;
use super::read_flight::{Flight, Landed, NodeOutcome, ReadOp, ReadRequest};
use super::vote::is_miss;

/// What a read that has to go on becomes.
pub type Continued = Pin<Box<dyn Future<Output = TaskOutput> + Send>>;

/// A `one` read waiting for the first replica it asked.
pub struct ReadOne {
    coord: Arc<Coordinator>,
    lane: Lane,
    layer: LayerId,
    op: ReadOp,
    request: ReadRequest,
    /// Position in `request.nodes` of the replica asked, and that node.
    position: usize,
    node: Arc<NodeInfo>,
    rx: PendingReply,
    /// Replicas not asked that are up (where a miss, failure or slowness can go on to).
    others: usize,
    /// When to ask the next replica too; `None` when no other replica is up.
    hedge_at: Option<Instant>,
}

impl ReadOne {
    /// Sends the read to the first replica that is up; gives the request back when there is
    /// none (the flight reports the failure).
    pub async fn start(
        coord: &Arc<Coordinator>,
        view: &View,
        lane: Lane,
        layer: LayerId,
        op: ReadOp,
        request: ReadRequest,
    ) -> Result<Box<ReadOne>, ReadRequest> {
        let topology = &view.topology;
        let up = |&n: &usize| topology.node(n).is_some_and(|n| !n.health.is_down());
        let Some(position) = request.nodes.iter().position(up) else {
            return Err(request);
        };
        let others = request
            .nodes
            .iter()
            .skip(position + 1)
            .filter(|n| up(n))
            .count();
        let Some(conn) = request
            .nodes
            .get(position)
            .and_then(|&n| coord.router.connection(n, lane))
        else {
            return Err(request);
        };
        let rx = conn.send(request.payload.clone()).await;
        // As the flight would: an equal share of the request timeout for each replica.
        let timeout = view.settings.config.timeouts.request;
        let hedge_at = (others > 0).then(|| request.started + timeout / (others as u32 + 1));
        Ok(Box::new(ReadOne {
            coord: coord.clone(),
            lane,
            layer,
            op,
            request,
            position,
            node: conn.node().clone(),
            rx,
            others,
            hedge_at,
        }))
    }

    /// When the next replica should be asked if this one has not answered.
    pub fn hedge_at(&self) -> Option<Instant> {
        self.hedge_at
    }

    /// Polls the replica asked.
    pub fn poll_first(&mut self, cx: &mut Context<'_>) -> Poll<NodeResult> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => Poll::Ready(settle(&self.node, got)),
        }
    }

    /// The reply, or the flight that goes on when the replica missed (and miss failover
    /// may find the key elsewhere) or failed in a way another replica may not
    /// (`ErrorKind::retryable`; otherwise the failure is the reply).
    pub fn finish(self: Box<Self>, result: NodeResult) -> Result<Reply, Continued> {
        match result {
            // A refilling replica's miss is not believed: asked on as with miss failover.
            Ok(reply)
                if self.others == 0
                    || !(self.op.miss_failover || self.node.refill.is_refilling()) =>
            {
                Ok(Reply::Raw(reply.raw))
            }
            Ok(reply) if !is_miss(self.op.outcome, &reply.raw) => Ok(Reply::Raw(reply.raw)),
            Ok(miss) => Err(self.go_on(Some(NodeOutcome::Answered(miss)))),
            Err(e) if e.retryable() => Err(self.go_on(Some(NodeOutcome::Failed(e)))),
            Err(e) => Ok(Reply::error(e.to_string())),
        }
    }

    /// The hedge time passed: the next replica is asked too.
    pub fn hedge(self: Box<Self>) -> Continued {
        self.go_on(None)
    }

    /// The read as a flight, from where the first replica stands (`None`: still waiting).
    fn go_on(self: Box<Self>, first: Option<NodeOutcome>) -> Continued {
        let ReadOne {
            coord,
            lane,
            layer,
            op,
            request,
            position,
            rx,
            ..
        } = *self;
        let first = first.unwrap_or(NodeOutcome::Waiting(rx));
        Box::pin(async move {
            let landed =
                Flight::continue_one(&coord, lane, layer, op, request, position, first).await;
            output(landed)
        })
    }
}

/// A read's reply as the client gets it.
pub fn output(landed: Landed) -> TaskOutput {
    TaskOutput {
        reply: match landed {
            Ok(r) => Reply::Raw(r.raw),
            Err(e) => e,
        },
        applied: Vec::new(),
    }
}
