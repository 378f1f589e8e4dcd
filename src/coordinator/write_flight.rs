//! A replicated write in flight: sent at dispatch to every replica of its keys that is not
//! marked down, polled by the client's session until the layer's write consistency is met.
//!
//! - `eventual` answers with the primary's reply, or with the first reply when the primary is
//!   down or fails; `quorum` after ⌊N/2⌋+1 replies; `strong` after N. A Redis error reply is a
//!   reply: the node processed the write (and refused it); it is passed on, never retried.
//! - Replicas marked down are not sent the write; their keys are hinted (`repair::hints`).
//!   A replica that fails is hinted too; one that has not answered when the level is met is
//!   watched in the background (`repair::watch_tail`) and hinted if it fails.
//! - While a replica refills after a restart (`cluster::refill`) it may lack the key: the
//!   reply is taken from a replica that is not refilling (DEL's count, INCR's value), waited
//!   for when one is still out.
//! - No timer of its own: every reply arrives or fails within `timeouts.request` of being
//!   written (the node connection fails requests older than that), which bounds the wait as
//!   it bounds a request to one node. This keeps the commonest replicated request free of
//!   timer-wheel work (measured: docs/benchmarks.md).

use crate::backend::Lane;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::backend::{NodeError, PendingReply};
use crate::cluster::View;
use crate::config::WriteConsistency;
use crate::policy::LayerId;
use crate::protocol::Reply;
use crate::repair::Keys;

use super::Coordinator;

enum State {
    /// Marked down when the write was sent: not sent, hinted.
    Down,
    Waiting(PendingReply),
    /// The raw reply (all a write passes on).
    Answered(Bytes),
    Failed(NodeError),
    /// Dealt with once the level was decided.
    Done,
}

struct Replica {
    /// Index into the node list (not a handle: the flight is per request, and the handle's
    /// reference count is shared by every worker). A u32 so that it and `refilling` share
    /// one word: the flight is moved while it runs, and each byte is copied several times.
    index: u32,
    /// Restarted and not refilled yet: its reply may be of a missing key.
    refilling: bool,
    state: State,
    /// The TTL followers sent behind the write.
    followers: SmallVec<[PendingReply; 1]>,
}

/// A write to the replicas of its keys, in preference order (the primary first).
pub struct WriteFlight {
    coord: Arc<Coordinator>,
    layer: LayerId,
    level: WriteConsistency,
    keys: Keys,
    replicas: SmallVec<[Replica; 3]>,
    /// Once decided: the reply (or strata's error) and the replica whose TTL followers the
    /// reply waits for.
    decided: Option<(Result<Bytes, Reply>, Option<usize>)>,
    /// TTL followers of the answering replica that set a TTL.
    applied: u32,
    /// Some replica is refilling (`Replica::refilling`): the reply waits for one that is not.
    refilling: bool,
}

/// A write flight's result.
pub struct WriteLanded {
    /// The raw reply to pass on, or strata's own error.
    pub reply: Result<Bytes, Reply>,
    /// TTL followers of the answering replica that set a TTL.
    pub applied: u32,
}

impl WriteFlight {
    /// Sends `payload`, then `followers`, to each of `nodes` (the keys' replicas, primary
    /// first) that is not marked down. Boxed from the start: the flight is large and is kept
    /// in the client's queue of pending replies.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        coord: &Arc<Coordinator>,
        view: &View,
        lane: Lane,
        layer: LayerId,
        level: WriteConsistency,
        nodes: &[usize],
        payload: Bytes,
        followers: &[Bytes],
        keys: Keys,
    ) -> Box<WriteFlight> {
        let mut flight = Box::new(WriteFlight {
            coord: coord.clone(),
            layer,
            level,
            keys,
            replicas: SmallVec::new(),
            decided: None,
            applied: 0,
            refilling: false,
        });
        let topology = &view.topology;
        for &index in nodes {
            let Some(node) = topology.node(index) else {
                continue;
            };
            // Node lists are far shorter than u32::MAX (`limits.max_nodes` is at most 65535).
            let Ok(slot) = u32::try_from(index) else {
                continue;
            };
            let mut replica = Replica {
                index: slot,
                refilling: node.refill.is_refilling(),
                state: State::Down,
                followers: SmallVec::new(),
            };
            if node.health.is_down() {
                for key in &flight.keys {
                    node.hints.add(key);
                }
            } else if let Some(conn) = coord.router.connection(index, lane) {
                replica.state = State::Waiting(conn.send(payload.clone()).await);
                for f in followers {
                    replica.followers.push(conn.send(f.clone()).await);
                }
            } else {
                replica.state = State::Failed(NodeError::no_connection(node));
            }
            flight.refilling |= replica.refilling;
            flight.replicas.push(replica);
        }
        flight
    }

    /// The layer whose figures count the write.
    pub fn layer(&self) -> LayerId {
        self.layer
    }

    /// Replies the level needs.
    fn need(&self) -> usize {
        let n = self.replicas.len();
        match self.level {
            WriteConsistency::Eventual => 1,
            WriteConsistency::Quorum => n / 2 + 1,
            WriteConsistency::Strong => n,
        }
    }

    fn level_name(&self) -> &'static str {
        match self.level {
            WriteConsistency::Eventual => "eventual",
            WriteConsistency::Quorum => "quorum",
            WriteConsistency::Strong => "strong",
        }
    }

    /// Polls until the level is decided and the answering replica's TTL followers are in.
    pub fn poll_land(&mut self, cx: &mut Context<'_>) -> Poll<WriteLanded> {
        if self.decided.is_none() {
            if self.poll_replies(cx).is_pending() {
                return Poll::Pending;
            }
            self.decide();
        }
        // The client sees the TTL set once it sees the reply (as without replication).
        if let Some((_, Some(chosen))) = &self.decided {
            if let Some(r) = self.replicas.get_mut(*chosen) {
                while let Some(rx) = r.followers.first_mut() {
                    match Pin::new(rx).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(got) => {
                            if matches!(got, Ok(Ok(ref f)) if f.raw.as_ref() == b":1\r\n") {
                                self.applied += 1;
                            }
                            r.followers.remove(0);
                        }
                    }
                }
            }
        }
        let reply = match self.decided.take() {
            Some((reply, _)) => reply,
            None => Err(Reply::error_static(
                "ERR strata: internal error: write landed twice",
            )),
        };
        Poll::Ready(WriteLanded {
            reply,
            applied: self.applied,
        })
    }

    /// Collects the replies that are in; ready once the level is met or nothing is left to
    /// wait for.
    fn poll_replies(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut acks = 0;
        let mut waiting = 0;
        for r in self.replicas.iter_mut() {
            if let State::Waiting(rx) = &mut r.state {
                if let Poll::Ready(got) = Pin::new(rx).poll(cx) {
                    r.state = match got {
                        Ok(Ok(reply)) => State::Answered(reply.raw),
                        Ok(Err(e)) => State::Failed(e),
                        Err(_) => match self.coord.router.view().topology.node(r.index as usize) {
                            Some(node) => State::Failed(NodeError::connection_lost(node)),
                            None => State::Done,
                        },
                    };
                }
            }
            match r.state {
                State::Answered(_) => acks += 1,
                State::Waiting(_) => waiting += 1,
                _ => {}
            }
        }
        let met = match self.level {
            // The primary's reply when it can give one, else the first.
            WriteConsistency::Eventual => match self.replicas.first().map(|r| &r.state) {
                Some(State::Waiting(_)) => false,
                Some(State::Answered(_)) => true,
                _ => acks >= 1,
            },
            _ => acks >= self.need(),
        };
        let met = met && (!self.refilling || self.sure_reply_or_none_coming());
        if met || waiting == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether a replica that is not refilling answered, or none is still out: the reply
    /// can be chosen.
    fn sure_reply_or_none_coming(&self) -> bool {
        let mut coming = false;
        for r in self.replicas.iter().filter(|r| !r.refilling) {
            match r.state {
                State::Answered(_) => return true,
                State::Waiting(_) => coming = true,
                _ => {}
            }
        }
        !coming
    }

    /// Settles the flight: the reply, background watches for replicas still out, hints for
    /// replicas that failed.
    fn decide(&mut self) {
        let need = self.need();
        let total = self.replicas.len();
        let mut acks = 0;
        let mut chosen = None;
        let mut chosen_refilling = false;
        let mut reply = None;
        for (i, r) in self.replicas.iter_mut().enumerate() {
            let state = std::mem::replace(&mut r.state, State::Done);
            // Only a replica still out or failed needs its node (loaded only then: the
            // usual write has every replica answered).
            let node = match state {
                State::Waiting(_) | State::Failed(_) => self
                    .coord
                    .router
                    .view()
                    .topology
                    .node(r.index as usize)
                    .cloned(),
                _ => None,
            };
            match state {
                State::Answered(answer) => {
                    acks += 1;
                    // The first reply, or a later one of a replica that is not refilling.
                    if reply.is_none() || (chosen_refilling && !r.refilling) {
                        reply = Some(answer);
                        chosen = Some(i);
                        chosen_refilling = r.refilling;
                    }
                }
                State::Waiting(rx) => {
                    if let Some(node) = node {
                        crate::repair::watch_tail(&self.coord.repairs, rx, node, self.keys.clone());
                    }
                }
                State::Failed(e) => {
                    tracing::debug!(node = %e.node.id, reason = %e.reason, kind = e.kind.label(), "replica write failed: keys hinted");
                    if let Some(node) = node {
                        for key in &self.keys {
                            node.hints.add(key);
                        }
                    }
                }
                State::Down | State::Done => {}
            }
        }
        self.decided = Some(match reply {
            Some(answer) if acks >= need => (Ok(answer), chosen),
            _ => {
                self.coord
                    .router
                    .live()
                    .layer_figures(self.layer, self.coord.router.worker, |s| {
                        s.write_failures.add(1)
                    });
                let error = Reply::error(format!(
                    "ERR strata: write reached {acks} of {total} replicas ({} needs {need})",
                    self.level_name()
                ));
                (Err(error), None)
            }
        });
    }

    /// Awaits the flight (for requests that gather several flights).
    pub async fn land(mut self) -> WriteLanded {
        std::future::poll_fn(|cx| self.poll_land(cx)).await
    }
}
