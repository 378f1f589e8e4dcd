//! A replicated read in flight (a [`Flight`]): sent at dispatch to as many replicas as the
//! layer's read consistency asks, then awaited until the answers settle it.
//!
//! `one` asks one replica; a replica that fails (in a way another may not:
//! `ErrorKind::retryable`) or is slow (its share of the request timeout passes) is replaced by
//! the next one, and with miss failover a miss asks the next replica and a hit found there is
//! copied back. `quorum` and `all` ask R replicas and compare the raw replies; when they
//! differ every replica is asked, the majority wins (ties: a value beats nil, then the earlier
//! replica) and the others are repaired.
//!
//! A replica that restarted and is not refilled yet (`cluster::refill`) may lack keys: its
//! misses are not believed. A `one` read asks on past such a miss as miss failover would, and
//! in a vote such an answer ([`vote::may_lack`]) counts towards R but does not vote, unless no
//! other replica answered; R such answers alone ask the next replica too. So a key that
//! survives on one replica is returned and repaired, never outvoted by restarted replicas.
//!
//! A Redis error reply is an answer like any other: passed on, never retried. Writes are
//! `write_flight.rs`.

use crate::backend::Lane;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::time::{Instant, Sleep};

use crate::backend::{settle, NodeError, NodeResult, PendingReply};
use crate::cluster::NodeInfo;
use crate::cluster::View;
use crate::config::ReadConsistency;
use crate::policy::LayerId;
use crate::protocol::{NodeReply, Reply};
use crate::repair::Keys;

use super::Coordinator;

use crate::cluster::NodeList;

use super::track::Outcome;
use super::vote::{self, is_miss};

/// A replica's failure that asking another replica cannot help with
/// (`ErrorKind::retryable`): the read asks no further replica and ends with it.
fn final_failure(replicas: &[Replica]) -> Option<&NodeError> {
    replicas.iter().find_map(|r| match &r.state {
        State::Failed(e) if !e.retryable() => Some(e),
        _ => None,
    })
}

/// How a read is asked and judged.
#[derive(Debug, Clone, Copy)]
pub struct ReadOp {
    pub level: ReadConsistency,
    pub miss_failover: bool,
    /// How the command's replies read (what counts as a miss).
    pub outcome: Outcome,
}

enum State {
    /// Not asked (yet).
    Unsent,
    /// Marked down when the flight started: not asked.
    Down,
    Waiting(PendingReply),
    Answered(NodeReply),
    Failed(NodeError),
}

struct Replica {
    /// Its index in the node list is `node.index` (not a field of its own: the flight is
    /// moved as a whole while it runs, so every byte of a replica is copied several times).
    node: Arc<NodeInfo>,
    state: State,
    /// Restarted and not refilled yet when the flight started: its misses are not believed.
    refilling: bool,
}

/// A request in flight to the replicas of its keys.
pub struct Flight {
    coord: Arc<Coordinator>,
    lane: Lane,
    layer: LayerId,
    op: ReadOp,
    payload: Bytes,
    /// The request's keys (repaired as a whole).
    keys: Keys,
    /// In preference order: the primary first.
    replicas: SmallVec<[Replica; 3]>,
    deadline: Instant,
}

/// What a replicated read sends, and to whom.
pub struct ReadRequest {
    /// The keys' replicas in preference order.
    pub nodes: NodeList,
    pub payload: Bytes,
    pub keys: Keys,
    /// When the request arrived (its timeout runs from there).
    pub started: std::time::Instant,
}

/// Where a replica asked first stands when a `one` read goes on to the next replica.
pub enum NodeOutcome {
    /// Not answered yet (slow).
    Waiting(PendingReply),
    Answered(NodeReply),
    Failed(NodeError),
}

/// A flight's result: the reply to pass on, or strata's own error.
pub type Landed = Result<NodeReply, Reply>;

/// Why a read asks one more replica (the layer counter it bumps).
#[derive(Clone, Copy)]
enum Counted {
    /// The replicas asked failed or are slow.
    Failover,
    /// The replicas asked missed (miss failover).
    MissFailover,
}

/// What waiting produced.
enum Event {
    Reply(usize, NodeResult),
    /// The per-replica wait passed: time to ask another replica.
    Hedge,
    Deadline,
}

impl Flight {
    /// The flight before anything is sent: every replica unsent, or down.
    fn new(
        coord: &Arc<Coordinator>,
        view: &View,
        lane: Lane,
        layer: LayerId,
        op: ReadOp,
        request: ReadRequest,
    ) -> Flight {
        let topology = &view.topology;
        let replicas = request
            .nodes
            .iter()
            .filter_map(|&i| topology.node(i))
            .map(|node| Replica {
                node: node.clone(),
                state: if node.health.is_down() {
                    State::Down
                } else {
                    State::Unsent
                },
                refilling: node.refill.is_refilling(),
            })
            .collect();
        let deadline = Instant::from_std(request.started) + view.settings.config.timeouts.request;
        Flight {
            coord: coord.clone(),
            lane,
            layer,
            op,
            payload: request.payload,
            keys: request.keys,
            replicas,
            deadline,
        }
    }

    /// Sends the read to as many replicas as the level asks first.
    pub async fn start(
        coord: &Arc<Coordinator>,
        view: &View,
        lane: Lane,
        layer: LayerId,
        op: ReadOp,
        request: ReadRequest,
    ) -> Flight {
        let mut flight = Flight::new(coord, view, lane, layer, op, request);
        let first = match op.level {
            ReadConsistency::One => 1,
            _ => flight.need(),
        };
        for _ in 0..first {
            if !flight.send_next().await {
                break;
            }
        }
        flight
    }

    /// A `one` read that asked the replica at `position` first (`read_one.rs`) and has to go
    /// on: that replica missed, failed, or is slow (`first` still waiting), so the next
    /// replica is asked and the flight lands as [`Flight::land`] would.
    pub async fn continue_one(
        coord: &Arc<Coordinator>,
        lane: Lane,
        layer: LayerId,
        op: ReadOp,
        request: ReadRequest,
        position: usize,
        first: NodeOutcome,
    ) -> Landed {
        // Later than the request's planning: the view as it is now.
        let view = coord.router.view();
        let mut flight = Flight::new(coord, &view, lane, layer, op, request);
        drop(view);
        let slow = matches!(first, NodeOutcome::Waiting(_));
        if let Some(r) = flight.replicas.get_mut(position) {
            r.state = match first {
                NodeOutcome::Waiting(rx) => State::Waiting(rx),
                NodeOutcome::Answered(reply) => State::Answered(reply),
                NodeOutcome::Failed(e) => State::Failed(e),
            };
        }
        if slow {
            flight.ask_next(Counted::Failover).await;
        }
        flight.land().await
    }

    /// Replies the level needs.
    fn need(&self) -> usize {
        let n = self.replicas.len();
        match self.op.level {
            ReadConsistency::One => 1,
            ReadConsistency::Quorum => n / 2 + 1,
            ReadConsistency::All => n,
        }
    }

    fn level_name(&self) -> &'static str {
        match self.op.level {
            ReadConsistency::One => "one",
            ReadConsistency::Quorum => "quorum",
            ReadConsistency::All => "all",
        }
    }

    /// Sends the request to replica `i` if it is unsent.
    async fn send(&mut self, i: usize) {
        let Some(r) = self.replicas.get_mut(i) else {
            return;
        };
        if !matches!(r.state, State::Unsent) {
            return;
        }
        let Some(conn) = self.coord.router.connection(r.node.index, self.lane) else {
            r.state = State::Failed(NodeError::no_connection(&r.node));
            return;
        };
        r.state = State::Waiting(conn.send(self.payload.clone()).await);
    }

    /// Asks the next replica not asked yet that is not down now; false when there is none, or
    /// when a replica failed in a way another cannot help with ([`final_failure`]).
    async fn send_next(&mut self) -> bool {
        if final_failure(&self.replicas).is_some() {
            return false;
        }
        let next = self
            .replicas
            .iter()
            .position(|r| matches!(r.state, State::Unsent) && !r.node.health.is_down());
        match next {
            Some(i) => {
                self.send(i).await;
                true
            }
            None => false,
        }
    }

    /// Asks the next replica (see [`Flight::send_next`]) and counts why in the layer's
    /// figures; false when there is none left.
    async fn ask_next(&mut self, why: Counted) -> bool {
        if !self.send_next().await {
            return false;
        }
        self.coord.router.live().layer_figures(
            self.layer,
            self.coord.router.worker,
            |s| match why {
                Counted::Failover => s.failovers.add(1),
                Counted::MissFailover => s.miss_failovers.add(1),
            },
        );
        true
    }

    fn count(&self, f: impl Fn(&State) -> bool) -> usize {
        self.replicas.iter().filter(|r| f(&r.state)).count()
    }

    fn answered(&self) -> usize {
        self.count(|s| matches!(s, State::Answered(_)))
    }

    fn waiting(&self) -> usize {
        self.count(|s| matches!(s, State::Waiting(_)))
    }

    fn unsent(&self) -> usize {
        self.replicas
            .iter()
            .filter(|r| matches!(r.state, State::Unsent) && !r.node.health.is_down())
            .count()
    }

    /// Waits for the next reply, the hedge time or the deadline. `timer` is the flight's one
    /// timer, moved to whichever of hedge time and deadline comes first.
    async fn wait(&mut self, hedge: Option<Instant>, mut timer: Pin<&mut Sleep>) -> Event {
        let until = hedge.map_or(self.deadline, |h| h.min(self.deadline));
        if timer.deadline() != until {
            timer.as_mut().reset(until);
        }
        let replicas = &mut self.replicas;
        let next = poll_fn(|cx| {
            for (i, r) in replicas.iter_mut().enumerate() {
                if let State::Waiting(rx) = &mut r.state {
                    if let Poll::Ready(got) = Pin::new(rx).poll(cx) {
                        return Poll::Ready((i, settle(&r.node, got)));
                    }
                }
            }
            Poll::Pending
        });
        tokio::select! {
            biased;
            (i, result) = next => Event::Reply(i, result),
            _ = timer => {
                if until < self.deadline { Event::Hedge } else { Event::Deadline }
            }
        }
    }

    fn record(&mut self, i: usize, result: NodeResult) {
        if let Some(r) = self.replicas.get_mut(i) {
            r.state = match result {
                Ok(reply) => State::Answered(reply),
                Err(e) => State::Failed(e),
            };
        }
    }

    /// The time one more replica gets before the next is asked too: an equal share of what
    /// is left of the request timeout.
    fn hedge_time(&self) -> Option<Instant> {
        let unsent = self.unsent();
        if unsent == 0 {
            return None;
        }
        let now = Instant::now();
        let left = self.deadline.saturating_duration_since(now);
        Some(now + left / (unsent as u32 + 1))
    }

    /// Awaits the flight until its level is met (or cannot be).
    pub async fn land(self) -> Landed {
        let timer = tokio::time::sleep_until(self.deadline);
        tokio::pin!(timer);
        match self.op.level {
            ReadConsistency::One => self.land_one(timer).await,
            _ => self.land_compared(timer).await,
        }
    }

    /// `one`: the first replica that answers; failover on errors and slowness; with miss
    /// failover, past misses to the first hit.
    async fn land_one(mut self, mut timer: Pin<&mut Sleep>) -> Landed {
        let ReadOp {
            miss_failover,
            outcome,
            ..
        } = self.op;
        let mut hedge = self.hedge_time();
        loop {
            let first_hit = self.replicas.iter().position(|r| match &r.state {
                State::Answered(a) => !(miss_failover || r.refilling) || !is_miss(outcome, &a.raw),
                _ => false,
            });
            if let Some(hit) = first_hit {
                // The misses before it are of miss failover or refilling replicas.
                self.copy_back(hit, outcome);
                return self.answer(hit);
            }
            if self.waiting() == 0 {
                // Every answer so far (if any) is a miss: ask on, or give the miss.
                let counted = if self.answered() > 0 {
                    Counted::MissFailover
                } else {
                    Counted::Failover
                };
                if self.ask_next(counted).await {
                    hedge = self.hedge_time();
                    continue;
                }
                return self.miss_or_failed();
            }
            match self.wait(hedge, timer.as_mut()).await {
                Event::Reply(i, result) => self.record(i, result),
                Event::Hedge => {
                    self.ask_next(Counted::Failover).await;
                    hedge = self.hedge_time();
                }
                // A miss already answered stands when the replicas asked after it are late.
                Event::Deadline => return self.miss_or_failed(),
            }
        }
    }

    /// `one` found no value: the first miss answered, else the failure.
    fn miss_or_failed(self) -> Landed {
        match self
            .replicas
            .iter()
            .position(|r| matches!(r.state, State::Answered(_)))
        {
            Some(miss) => self.answer(miss),
            None => self.read_failed(),
        }
    }

    /// `quorum` / `all`: R answers compared; on disagreement every replica, majority wins.
    async fn land_compared(mut self, mut timer: Pin<&mut Sleep>) -> Landed {
        let outcome = self.op.outcome;
        let need = self.need();
        let mut hedge = self.hedge_time();
        let mut everyone = false;
        loop {
            if !everyone && self.answered() >= need {
                let agreed = self.agree(outcome);
                if agreed && self.strong_answers() > 0 {
                    return self.majority(outcome);
                }
                if agreed {
                    // Only refilling replicas' misses: a replica whose answer votes is asked
                    // too, or awaited when one was asked already.
                    if self.waiting() == 0 {
                        if self.ask_next(Counted::MissFailover).await {
                            hedge = self.hedge_time();
                            continue;
                        }
                        return self.majority(outcome);
                    }
                } else {
                    // Disagreement: ask the rest too, then take the majority of all.
                    everyone = true;
                    while self.send_next().await {}
                    hedge = None;
                }
            }
            if self.waiting() == 0 {
                if everyone {
                    return self.majority(outcome);
                }
                if self.ask_next(Counted::Failover).await {
                    hedge = self.hedge_time();
                    continue;
                }
                return self.read_failed();
            }
            match self.wait(hedge, timer.as_mut()).await {
                Event::Reply(i, result) => self.record(i, result),
                Event::Hedge => {
                    self.ask_next(Counted::Failover).await;
                    hedge = self.hedge_time();
                }
                // Enough answered (refilling replicas' misses) while a voter was awaited.
                Event::Deadline if everyone || self.answered() >= need => {
                    return self.majority(outcome)
                }
                Event::Deadline => return self.read_failed(),
            }
        }
    }

    /// True when every answer so far is the same (see [`vote::same_answer`]).
    fn agree(&self, outcome: Outcome) -> bool {
        let answers = self.answers();
        answers.iter().all(|(_, raw)| {
            answers
                .first()
                .is_none_or(|(_, f)| vote::same_answer(outcome, f, raw))
        })
    }

    /// Whether replica `i`'s answer is a refilling replica's may-lack answer (no vote).
    fn weak(&self, i: usize) -> bool {
        self.replicas.get(i).is_some_and(|r| {
            r.refilling
                && matches!(&r.state, State::Answered(a) if vote::may_lack(self.op.outcome, a))
        })
    }

    /// Answers that vote.
    fn strong_answers(&self) -> usize {
        if !self.replicas.iter().any(|r| r.refilling) {
            return self.answered();
        }
        self.answers()
            .iter()
            .filter(|(i, _)| !self.weak(*i))
            .count()
    }

    /// The majority answer among those that vote (all of them when none does); replicas
    /// that answered otherwise are repaired from it.
    fn majority(self, outcome: Outcome) -> Landed {
        let answers = self.answers();
        let mut voters: Vec<(usize, &[u8])> = Vec::new();
        if self.replicas.iter().any(|r| r.refilling) {
            voters.extend(answers.iter().copied().filter(|(i, _)| !self.weak(*i)));
        }
        let ballot = if voters.is_empty() { &answers } else { &voters };
        let Some(winner) = vote::winner(ballot, outcome) else {
            return self.read_failed();
        };
        let losers: Vec<usize> = answers
            .iter()
            .filter(|(_, raw)| !vote::same_answer(outcome, raw, winner.1))
            .filter_map(|(i, _)| self.replicas.get(*i).map(|r| r.node.index))
            .collect();
        let winner = winner.0;
        if !losers.is_empty() {
            if let Some(source) = self.replicas.get(winner).map(|r| r.node.index) {
                crate::repair::spawn_repair(
                    &self.coord.router,
                    &self.coord.repairs.background,
                    self.layer,
                    self.keys.clone(),
                    source,
                    losers,
                );
            }
        }
        self.answer(winner)
    }

    /// (replica position, raw reply) of every replica that answered, in preference order.
    fn answers(&self) -> Vec<(usize, &[u8])> {
        self.replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.state {
                State::Answered(a) => Some((i, a.raw.as_ref())),
                _ => None,
            })
            .collect()
    }

    /// Miss failover found a value at `hit`: copy it to the replicas that missed before it.
    fn copy_back(&self, hit: usize, outcome: Outcome) {
        let missed: Vec<usize> = self
            .replicas
            .iter()
            .take(hit)
            .filter(|r| matches!(&r.state, State::Answered(a) if is_miss(outcome, &a.raw)))
            .map(|r| r.node.index)
            .collect();
        if missed.is_empty() {
            return;
        }
        if let Some(source) = self.replicas.get(hit).map(|r| r.node.index) {
            crate::repair::spawn_repair(
                &self.coord.router,
                &self.coord.repairs.background,
                self.layer,
                self.keys.clone(),
                source,
                missed,
            );
        }
    }

    fn answer(mut self, i: usize) -> Landed {
        match self
            .replicas
            .get_mut(i)
            .map(|r| std::mem::replace(&mut r.state, State::Unsent))
        {
            Some(State::Answered(a)) => Ok(a),
            _ => Err(Reply::error_static("ERR strata: internal error: no answer")),
        }
    }

    fn read_failed(self) -> Landed {
        for r in &self.replicas {
            if let State::Failed(e) = &r.state {
                tracing::debug!(node = %r.node.id, reason = %e.reason, kind = e.kind.label(), "replica read failed");
            }
        }
        if let Some(e) = final_failure(&self.replicas) {
            // Its own text names the cause, which the replica count would hide.
            return Err(Reply::error(e.to_string()));
        }
        let answered = self.answered();
        Err(Reply::error(format!(
            "ERR strata: read reached {answered} of {} replicas ({} needs {})",
            self.replicas.len(),
            self.level_name(),
            self.need()
        )))
    }
}

#[cfg(test)]
mod tests;
