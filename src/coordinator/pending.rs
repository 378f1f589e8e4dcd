//! A reply that is on its way: ready now, coming from one node, or being gathered from several
//! and merged. A client session keeps these in request order and polls the oldest.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::backend::{settle, NodeResult, PendingReply};
use crate::cluster::NodeInfo;
use crate::policy::LayerId;
use crate::protocol::Reply;

use super::merge::{merge, MergePlan};
use super::read_one::{Continued, ReadOne};
use super::write_flight::WriteFlight;

/// One request's reply-to-be.
pub enum Pending {
    /// Known already (local commands, errors found before any node was asked).
    Ready(Option<Reply>),
    /// One node answers; its reply is forwarded unchanged.
    Forward {
        rx: PendingReply,
        node: Arc<NodeInfo>,
    },
    /// Several node replies merged into one.
    Gather(Box<Gather>),
    /// A `one` read of a replicated key, waiting for the first replica (`read_one.rs`).
    ReadOne(Box<ReadOne>),
    /// A write to the replicas of its keys (`write_flight.rs`).
    Write(Box<WriteFlight>),
    /// A reply that takes more than waiting: replicated reads (`read_flight.rs`), which may
    /// ask more nodes, fail over and compare replies, and requests gathering several flights.
    Task(Continued),
    /// A command running on a dedicated connection (`blocking.rs`); a client that goes away
    /// drops it, which closes the connection.
    Dedicated(Continued),
    /// A task's reply was taken; what its TTL followers applied stays for the statistics.
    Finished(Vec<(LayerId, u32)>),
}

/// What a [`Pending::Task`] produces.
pub struct TaskOutput {
    pub reply: Reply,
    /// TTL followers that set a TTL, per layer.
    pub applied: Vec<(LayerId, u32)>,
}

/// The parts of a gathered reply and how to merge them.
pub struct Gather {
    parts: Vec<Part>,
    /// Commands sent after the parts whose replies are not merged but counted (the TTL
    /// policy's `PEXPIRE key ttl NX`): the reply waits for them, so a client that sees it can
    /// rely on the TTL being set.
    followers: Vec<Part>,
    /// Followers that answered `:1` (a TTL was set), per layer of their key.
    applied: Vec<(LayerId, u32)>,
    plan: MergePlan,
}

struct Part {
    rx: Option<PendingReply>,
    node: Arc<NodeInfo>,
    result: Option<NodeResult>,
    /// The layer of a follower's key (unused for parts).
    layer: LayerId,
}

impl Gather {
    pub fn new(plan: MergePlan) -> Gather {
        Gather {
            parts: Vec::new(),
            followers: Vec::new(),
            applied: Vec::new(),
            plan,
        }
    }

    /// Adds a follower (see [`Gather::followers`]) for a key of `layer`.
    pub fn follow(&mut self, rx: PendingReply, node: Arc<NodeInfo>, layer: LayerId) {
        self.followers.push(Part {
            rx: Some(rx),
            node,
            result: None,
            layer,
        });
    }

    /// Adds a part; parts are merged in the order they were added.
    pub fn push(&mut self, rx: PendingReply, node: Arc<NodeInfo>) {
        self.parts.push(Part {
            rx: Some(rx),
            node,
            result: None,
            layer: 0,
        });
    }

    /// Sets the merge plan (when it is only known once every part was sent).
    pub fn set_plan(&mut self, plan: MergePlan) {
        self.plan = plan;
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl Pending {
    pub fn ready(reply: Reply) -> Pending {
        Pending::Ready(Some(reply))
    }

    pub fn gather(g: Gather) -> Pending {
        Pending::Gather(Box::new(g))
    }

    pub fn task(f: impl Future<Output = TaskOutput> + Send + 'static) -> Pending {
        Pending::Task(Box::pin(f))
    }

    /// TTL followers that set a TTL, per layer; read once the reply is ready.
    pub fn applied(&self) -> &[(LayerId, u32)] {
        match self {
            Pending::Gather(g) => &g.applied,
            Pending::Finished(applied) => applied,
            _ => &[],
        }
    }

    /// True when the reply is known already (nothing to wait for).
    pub fn is_ready(&self) -> bool {
        matches!(self, Pending::Ready(Some(_)))
    }

    /// True for a command on a dedicated connection (it may block for long).
    pub fn is_dedicated(&self) -> bool {
        matches!(self, Pending::Dedicated(_))
    }

    /// When the session should call [`Pending::hedge`] if the reply is not in by then.
    pub fn hedge_at(&self) -> Option<std::time::Instant> {
        match self {
            Pending::ReadOne(read) => read.hedge_at(),
            _ => None,
        }
    }

    /// The hedge time passed: a read waiting for one replica asks the next one too.
    pub fn hedge(&mut self) {
        if let Pending::ReadOne(_) = self {
            if let Pending::ReadOne(read) = std::mem::replace(self, Pending::Finished(Vec::new())) {
                *self = Pending::Task(read.hedge());
            }
        }
    }

    /// Polls for the reply; registers the waker of the first part not yet answered.
    pub fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Reply> {
        match self {
            Pending::ReadOne(read) => {
                let Poll::Ready(result) = read.poll_first(cx) else {
                    return Poll::Pending;
                };
                let Pending::ReadOne(read) = std::mem::replace(self, Pending::Finished(Vec::new()))
                else {
                    return Poll::Ready(internal_error());
                };
                match read.finish(result) {
                    Ok(reply) => Poll::Ready(reply),
                    // Missed or failed: the read goes on as a flight, polled at once.
                    Err(flight) => {
                        *self = Pending::Task(flight);
                        self.poll_reply(cx)
                    }
                }
            }
            Pending::Ready(reply) => Poll::Ready(reply.take().unwrap_or_else(internal_error)),
            Pending::Finished(_) => Poll::Ready(internal_error()),
            Pending::Write(flight) => match flight.poll_land(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(landed) => {
                    let applied = if landed.applied > 0 {
                        vec![(flight.layer(), landed.applied)]
                    } else {
                        Vec::new()
                    };
                    *self = Pending::Finished(applied);
                    Poll::Ready(match landed.reply {
                        Ok(raw) => Reply::Raw(raw),
                        Err(e) => e,
                    })
                }
            },
            Pending::Task(task) | Pending::Dedicated(task) => match task.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(out) => {
                    *self = Pending::Finished(out.applied);
                    Poll::Ready(out.reply)
                }
            },
            Pending::Forward { rx, node } => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(got) => Poll::Ready(match settle(node, got) {
                    Ok(reply) => Reply::Raw(reply.raw),
                    Err(e) => Reply::error(e.to_string()),
                }),
            },
            Pending::Gather(g) => {
                for part in g.parts.iter_mut().chain(g.followers.iter_mut()) {
                    if let Some(rx) = part.rx.as_mut() {
                        match Pin::new(rx).poll(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(got) => {
                                part.result = Some(settle(&part.node, got));
                                part.rx = None;
                            }
                        }
                    }
                }
                for follower in g.followers.drain(..) {
                    match follower.result {
                        Some(Ok(reply)) if reply.raw.as_ref() == b":1\r\n" => {
                            match g.applied.iter_mut().find(|(l, _)| *l == follower.layer) {
                                Some((_, n)) => *n += 1,
                                None => g.applied.push((follower.layer, 1)),
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            // The write itself succeeded or failed on its own; only its TTL is
                            // in doubt. Say so in the log rather than fail a write that landed.
                            tracing::warn!(error = %e, "TTL policy: PEXPIRE after a write failed");
                        }
                        None => {}
                    }
                }
                let results = g
                    .parts
                    .iter_mut()
                    .filter_map(|p| p.result.take())
                    .collect::<Vec<_>>();
                let plan = std::mem::replace(&mut g.plan, MergePlan::Done);
                Poll::Ready(merge(plan, results))
            }
        }
    }
}

fn internal_error() -> Reply {
    Reply::error_static("ERR strata: internal error: reply taken twice")
}
