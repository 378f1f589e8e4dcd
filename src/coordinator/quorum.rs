//! One request to the replicas of a key (a [`Flight`]): sent to the replicas at dispatch, then
//! awaited until the layer's consistency level is met.
//!
//! - **Writes** go to every replica not marked down (down ones get a hint). `eventual` answers
//!   with the primary's reply (or the first success when the primary fails), `quorum` after
//!   ⌊N/2⌋+1 replies, `strong` after N. Replies still outstanding then are watched in the
//!   background (`repair::watch_tail`): a failure hints the keys for that node.
//! - **Reads** ask one replica (`one`) or R of them (`quorum`, `all`). A replica that fails or
//!   is slow (its share of the request timeout passes) is replaced by the next one. `one`
//!   with miss failover asks the next replica after a miss, and copies a hit back. `quorum` and
//!   `all` compare the raw replies; when they differ every replica is asked, the majority wins
//!   (ties: a value beats nil, then the earlier replica) and the others are repaired.
//!
//! A Redis error reply is an answer like any other: passed on, never retried.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use tokio::time::Instant;

use crate::backend::{settle, NodeError, NodeInfo, NodeResult, PendingReply};
use crate::config::{ReadConsistency, WriteConsistency};
use crate::policy::LayerId;
use crate::protocol::{NodeReply, Reply};
use crate::server::Worker;

use super::track::Outcome;
use super::vote::{self, is_miss};

/// What a flight does.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Write(WriteConsistency),
    Read {
        level: ReadConsistency,
        miss_failover: bool,
        /// How the command's replies read (what counts as a miss).
        outcome: Outcome,
    },
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
    node: Arc<NodeInfo>,
    index: usize,
    state: State,
    /// TTL followers sent behind a write.
    followers: Vec<PendingReply>,
}

/// A request in flight to the replicas of its keys.
pub struct Flight {
    worker: Arc<Worker>,
    client_id: u64,
    layer: LayerId,
    op: Op,
    payload: Bytes,
    followers: Vec<Bytes>,
    /// The request's keys (hinted or repaired as a whole).
    keys: Arc<[Bytes]>,
    /// In preference order: the primary first.
    replicas: Vec<Replica>,
    deadline: Instant,
}

/// A flight's result.
pub struct Landed {
    /// The reply to pass on, or strata's own error.
    pub reply: Result<NodeReply, Reply>,
    /// TTL followers of the answering replica that set a TTL.
    pub applied: u32,
}

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
    /// Sends the request: writes to every replica that is up, reads to as many as the level
    /// asks first. `nodes` are the key's replicas in preference order.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        worker: &Arc<Worker>,
        client_id: u64,
        layer: LayerId,
        op: Op,
        nodes: &[usize],
        payload: Bytes,
        followers: Vec<Bytes>,
        keys: Arc<[Bytes]>,
        started: std::time::Instant,
    ) -> Flight {
        let shared = &worker.shared;
        let replicas = nodes
            .iter()
            .filter_map(|&i| shared.nodes.get(i))
            .map(|node| Replica {
                node: node.clone(),
                index: node.index,
                state: if node.health.is_down() {
                    State::Down
                } else {
                    State::Unsent
                },
                followers: Vec::new(),
            })
            .collect();
        let deadline = Instant::from_std(started) + shared.settings.config.timeouts.request;
        let mut flight = Flight {
            worker: worker.clone(),
            client_id,
            layer,
            op,
            payload,
            followers,
            keys,
            replicas,
            deadline,
        };
        match op {
            Op::Write(_) => {
                for i in 0..flight.replicas.len() {
                    flight.send(i).await;
                }
                for r in &flight.replicas {
                    if matches!(r.state, State::Down) {
                        for key in flight.keys.iter() {
                            r.node.hints.add(key);
                        }
                    }
                }
            }
            Op::Read { level, .. } => {
                let first = match level {
                    ReadConsistency::One => 1,
                    _ => flight.need(),
                };
                for _ in 0..first {
                    if !flight.send_next().await {
                        break;
                    }
                }
            }
        }
        flight
    }

    /// Replies (or acks) the level needs.
    fn need(&self) -> usize {
        let n = self.replicas.len();
        match self.op {
            Op::Write(WriteConsistency::Eventual)
            | Op::Read {
                level: ReadConsistency::One,
                ..
            } => 1,
            Op::Write(WriteConsistency::Quorum)
            | Op::Read {
                level: ReadConsistency::Quorum,
                ..
            } => n / 2 + 1,
            Op::Write(WriteConsistency::Strong)
            | Op::Read {
                level: ReadConsistency::All,
                ..
            } => n,
        }
    }

    fn level_name(&self) -> &'static str {
        match self.op {
            Op::Write(WriteConsistency::Eventual) => "eventual",
            Op::Write(WriteConsistency::Quorum) => "quorum",
            Op::Write(WriteConsistency::Strong) => "strong",
            Op::Read { level, .. } => match level {
                ReadConsistency::One => "one",
                ReadConsistency::Quorum => "quorum",
                ReadConsistency::All => "all",
            },
        }
    }

    /// Sends the request (and, for writes, the followers) to replica `i` if it is unsent.
    async fn send(&mut self, i: usize) {
        let Some(r) = self.replicas.get_mut(i) else {
            return;
        };
        if !matches!(r.state, State::Unsent) {
            return;
        }
        let Some(conn) = self.worker.pool.connection(r.index, self.client_id) else {
            r.state = State::Failed(NodeError::new(&r.node, "no connection"));
            return;
        };
        r.state = State::Waiting(conn.send(self.payload.clone()).await);
        if matches!(self.op, Op::Write(_)) {
            for f in &self.followers {
                r.followers.push(conn.send(f.clone()).await);
            }
        }
    }

    /// Asks the next replica not asked yet that is not down now; false when there is none.
    async fn send_next(&mut self) -> bool {
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
        if let Some(s) = self.layer_stats() {
            match why {
                Counted::Failover => s.failovers.add(1),
                Counted::MissFailover => s.miss_failovers.add(1),
            }
        }
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

    /// Waits for the next reply, the hedge time or the deadline.
    async fn wait(&mut self, hedge: Option<Instant>) -> Event {
        let until = hedge.map_or(self.deadline, |h| h.min(self.deadline));
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
            _ = tokio::time::sleep_until(until) => {
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

    fn layer_stats(&self) -> Option<&crate::stats::LayerWorker> {
        self.worker
            .shared
            .layers
            .get(self.layer)
            .and_then(|l| l.stats.worker(self.worker.index))
    }

    /// Awaits the flight until its level is met (or cannot be).
    pub async fn land(self) -> Landed {
        match self.op {
            Op::Write(_) => self.land_write().await,
            Op::Read {
                level: ReadConsistency::One,
                miss_failover,
                outcome,
            } => self.land_one(miss_failover, outcome).await,
            Op::Read { outcome, .. } => self.land_compared(outcome).await,
        }
    }

    async fn land_write(mut self) -> Landed {
        let need = self.need();
        let eventual = matches!(self.op, Op::Write(WriteConsistency::Eventual));
        loop {
            let acks = self.answered();
            let decided = if eventual {
                match self.replicas.first().map(|r| &r.state) {
                    Some(State::Waiting(_)) => false,
                    Some(State::Answered(_)) => true,
                    _ => acks >= 1,
                }
            } else {
                acks >= need
            };
            if decided || self.waiting() == 0 {
                break;
            }
            match self.wait(None).await {
                Event::Reply(i, result) => self.record(i, result),
                Event::Hedge | Event::Deadline => break,
            }
        }
        let acks = self.answered();
        let chosen = self
            .replicas
            .iter()
            .position(|r| matches!(r.state, State::Answered(_)));
        // Whatever did not answer: watched in the background, or hinted now.
        let keys = self.keys.clone();
        let mut applied = 0;
        let mut reply = None;
        for (i, r) in self.replicas.iter_mut().enumerate() {
            let followers = std::mem::take(&mut r.followers);
            match std::mem::replace(&mut r.state, State::Unsent) {
                State::Waiting(rx) => {
                    crate::repair::watch_tail(&self.worker, rx, r.node.clone(), keys.clone());
                }
                State::Failed(_) => {
                    for key in keys.iter() {
                        r.node.hints.add(key);
                    }
                }
                State::Answered(answer) if Some(i) == chosen => {
                    // The client sees the TTL set once it sees the reply (as without
                    // replication).
                    for rx in followers {
                        if let Ok(Ok(Ok(f))) = tokio::time::timeout_at(self.deadline, rx).await {
                            if f.raw.as_ref() == b":1\r\n" {
                                applied += 1;
                            }
                        }
                    }
                    reply = Some(answer);
                }
                State::Answered(_) | State::Unsent | State::Down => {}
            }
        }
        let reply = match reply {
            Some(answer) if acks >= need => Ok(answer),
            _ => {
                if let Some(s) = self.layer_stats() {
                    s.write_failures.add(1);
                }
                Err(Reply::error(format!(
                    "ERR strata: write reached {acks} of {} replicas ({} needs {need})",
                    self.replicas.len(),
                    self.level_name()
                )))
            }
        };
        Landed { reply, applied }
    }

    /// `one`: the first replica that answers; failover on errors and slowness; with miss
    /// failover, past misses to the first hit.
    async fn land_one(mut self, miss_failover: bool, outcome: Outcome) -> Landed {
        let mut hedge = self.hedge_time();
        loop {
            let first_hit = self.replicas.iter().position(|r| match &r.state {
                State::Answered(a) => !miss_failover || !is_miss(outcome, &a.raw),
                _ => false,
            });
            if let Some(hit) = first_hit {
                if miss_failover {
                    self.copy_back(hit, outcome);
                }
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
            match self.wait(hedge).await {
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
    async fn land_compared(mut self, outcome: Outcome) -> Landed {
        let need = self.need();
        let mut hedge = self.hedge_time();
        let mut everyone = false;
        loop {
            if !everyone && self.answered() >= need {
                if self.agree(outcome) {
                    return self.majority(outcome);
                }
                // Disagreement: ask the rest too, then take the majority of all.
                everyone = true;
                while self.send_next().await {}
                hedge = None;
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
            match self.wait(hedge).await {
                Event::Reply(i, result) => self.record(i, result),
                Event::Hedge => {
                    self.ask_next(Counted::Failover).await;
                    hedge = self.hedge_time();
                }
                Event::Deadline if everyone => return self.majority(outcome),
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

    /// The majority answer; replicas that answered otherwise are repaired from it.
    fn majority(self, outcome: Outcome) -> Landed {
        let answers = self.answers();
        let Some(winner) = vote::winner(&answers, outcome) else {
            return self.read_failed();
        };
        let losers: Vec<usize> = answers
            .iter()
            .filter(|(_, raw)| !vote::same_answer(outcome, raw, winner.1))
            .filter_map(|(i, _)| self.replicas.get(*i).map(|r| r.index))
            .collect();
        let winner = winner.0;
        if !losers.is_empty() {
            if let Some(source) = self.replicas.get(winner).map(|r| r.index) {
                crate::repair::spawn_repair(
                    &self.worker,
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
            .map(|r| r.index)
            .collect();
        if missed.is_empty() {
            return;
        }
        if let Some(source) = self.replicas.get(hit).map(|r| r.index) {
            crate::repair::spawn_repair(
                &self.worker,
                self.layer,
                self.keys.clone(),
                source,
                missed,
            );
        }
    }

    fn answer(mut self, i: usize) -> Landed {
        let reply = match self
            .replicas
            .get_mut(i)
            .map(|r| std::mem::replace(&mut r.state, State::Unsent))
        {
            Some(State::Answered(a)) => Ok(a),
            _ => Err(Reply::error_static("ERR strata: internal error: no answer")),
        };
        Landed { reply, applied: 0 }
    }

    fn read_failed(self) -> Landed {
        for r in &self.replicas {
            if let State::Failed(e) = &r.state {
                tracing::debug!(node = %r.node.id, reason = %e.reason, "replica read failed");
            }
        }
        let answered = self.answered();
        Landed {
            reply: Err(Reply::error(format!(
                "ERR strata: read reached {answered} of {} replicas ({} needs {})",
                self.replicas.len(),
                self.level_name(),
                self.need()
            ))),
            applied: 0,
        }
    }
}
