//! One bench connection: a loop that writes a pipeline of requests, reads their replies with
//! the project's decoder, and times each reply. Closed loop (the default): the next pipeline
//! goes as soon as the last reply is in, and a reply is timed from the moment its pipeline was
//! written, as redis-benchmark does. Open loop (`--rate`): pipelines are due on a fixed
//! schedule, and a reply is timed from the moment its pipeline was due whenever the
//! connection was still busy then: the wait a slow target imposes is counted, not omitted
//! (coordinated omission, as wrk2 corrects it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tally::{error_kind, Tally};
use super::workload::{Generator, OpKind};
use crate::protocol::decode_reply;

/// When a run ends: after a number of requests (shared by its clients) or at a deadline.
#[derive(Debug)]
pub enum Budget {
    /// Requests not handed out yet.
    Requests(AtomicU64),
    Until(Instant),
}

impl Budget {
    /// Takes up to `want` requests; 0 when the run is over.
    pub fn take(&self, want: u64) -> u64 {
        match self {
            Budget::Requests(left) => {
                let mut now = left.load(Ordering::Relaxed);
                loop {
                    let take = now.min(want);
                    if take == 0 {
                        return 0;
                    }
                    match left.compare_exchange_weak(
                        now,
                        now - take,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return take,
                        Err(seen) => now = seen,
                    }
                }
            }
            Budget::Until(deadline) => {
                if Instant::now() < *deadline {
                    want
                } else {
                    0
                }
            }
        }
    }

    /// Whether a pipeline due at `due` falls after the end of a timed run.
    pub fn ended_by(&self, due: Instant) -> bool {
        matches!(self, Budget::Until(deadline) if due >= *deadline)
    }
}

/// An open-loop connection's timetable: one pipeline every `interval`, the next due at `next`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub interval: Duration,
    pub next: Instant,
}

impl Schedule {
    /// When the next pipeline is due; moves the timetable on by one.
    fn advance(&mut self) -> Instant {
        let due = self.next;
        self.next += self.interval;
        due
    }
}

/// Why a connection stopped before its run ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("unreadable reply: {0}")]
    Protocol(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Opens a connection to `addr` (TCP_NODELAY, as every Redis client does).
pub async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, ClientError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(ClientError::Connect {
                addr: addr.to_string(),
                source,
            })
        }
        Err(_) => return Err(ClientError::Timeout(timeout)),
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection and its buffers.
pub struct Client {
    stream: TcpStream,
    out: BytesMut,
    input: BytesMut,
    /// Longest wait for the replies of one pipeline.
    timeout: Duration,
}

impl Client {
    pub fn new(stream: TcpStream, timeout: Duration) -> Client {
        Client {
            stream,
            out: BytesMut::with_capacity(16 * 1024),
            input: BytesMut::with_capacity(16 * 1024),
            timeout,
        }
    }

    /// Sends `pipeline` requests at a time from `gen` until `budget` runs out — as fast as
    /// the replies come, or on `schedule` — counting every reply into `tally` and the replies
    /// of each pipeline into `done` (the progress bar's). A failed connection ends the loop
    /// (counted, and returned).
    pub async fn run(
        &mut self,
        gen: &mut Generator,
        pipeline: usize,
        budget: &Budget,
        mut schedule: Option<Schedule>,
        tally: &mut Tally,
        done: &AtomicU64,
    ) -> Result<(), ClientError> {
        let mut kinds: Vec<(OpKind, usize)> = Vec::with_capacity(pipeline);
        loop {
            let n = budget.take(pipeline as u64);
            if n == 0 {
                return Ok(());
            }
            self.out.clear();
            kinds.clear();
            for _ in 0..n {
                kinds.push(gen.next(&mut self.out));
            }
            let sent = match schedule.as_mut() {
                None => Instant::now(),
                Some(schedule) => {
                    let due = schedule.advance();
                    if budget.ended_by(due) {
                        return Ok(());
                    }
                    let now = Instant::now();
                    if now < due {
                        // Idle until due. The timer may wake a little late (tokio's has a
                        // millisecond's grain): that lateness is the generator's, not the
                        // target's, so the reply is timed from the actual send.
                        tokio::time::sleep_until(due).await;
                        Instant::now()
                    } else {
                        // Still busy with earlier replies when this pipeline fell due: the
                        // target's slowness delayed it, and the delay counts.
                        tally.late += n;
                        due
                    }
                }
            };
            self.stream.write_all(&self.out).await?;
            for &(kind, layer) in &kinds {
                let reply = self.read_reply().await?;
                let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let op = tally.op(kind);
                op.record(nanos);
                // [GET hits, GET misses, SETs acknowledged] of the key space.
                let slot = match (&reply, kind) {
                    (BytesFrame::Error(text), _) => {
                        op.errors += 1;
                        tally.error(error_kind(text), text);
                        continue;
                    }
                    (BytesFrame::Null, OpKind::Get) => {
                        op.misses += 1;
                        1
                    }
                    (_, OpKind::Get) => {
                        op.hits += 1;
                        0
                    }
                    (_, OpKind::Set) => 2,
                };
                op.ok += 1;
                if let Some(c) = tally.layer(layer).get_mut(slot) {
                    *c += 1;
                }
            }
            done.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Writes `requests` (already encoded) and waits for their `count` replies; the error
    /// replies' texts are returned. For the fill before a run.
    pub async fn call_all(
        &mut self,
        requests: &[u8],
        count: usize,
    ) -> Result<Vec<String>, ClientError> {
        self.stream.write_all(requests).await?;
        let mut errors = Vec::new();
        for _ in 0..count {
            if let BytesFrame::Error(text) = self.read_reply().await? {
                errors.push(text.to_string());
            }
        }
        Ok(errors)
    }

    /// Sends one request and waits for its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> Result<BytesFrame, ClientError> {
        self.out.clear();
        crate::protocol::reply::encode_command(&mut self.out, args.iter().copied());
        self.stream.write_all(&self.out).await?;
        self.read_reply().await
    }

    /// The next reply, reading as needed.
    async fn read_reply(&mut self) -> Result<BytesFrame, ClientError> {
        loop {
            match decode_reply(&mut self.input) {
                Ok(Some(reply)) => return Ok(reply.frame),
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            let read = tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.input));
            match read.await {
                Ok(Ok(0)) => return Err(ClientError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ClientError::Io(e)),
                Err(_) => return Err(ClientError::Timeout(self.timeout)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_budget_is_shared_out_exactly() {
        let b = Budget::Requests(AtomicU64::new(10));
        assert_eq!(b.take(4), 4);
        assert_eq!(b.take(4), 4);
        assert_eq!(b.take(4), 2);
        assert_eq!(b.take(4), 0);
    }

    #[tokio::test]
    async fn a_schedule_moves_on_by_its_interval_and_stops_at_a_deadline() {
        let start = Instant::now();
        let mut s = Schedule {
            interval: Duration::from_millis(5),
            next: start,
        };
        assert_eq!(s.advance(), start);
        assert_eq!(s.advance(), start + Duration::from_millis(5));
        assert_eq!(s.next, start + Duration::from_millis(10));
        let timed = Budget::Until(start + Duration::from_millis(10));
        assert!(!timed.ended_by(start + Duration::from_millis(9)));
        assert!(timed.ended_by(s.next));
        // A request budget ends by count, never by time.
        assert!(!Budget::Requests(AtomicU64::new(1)).ended_by(start + Duration::from_secs(9)));
    }

    #[tokio::test]
    async fn a_deadline_budget_ends_at_its_time() {
        let b = Budget::Until(Instant::now() + Duration::from_millis(20));
        assert_eq!(b.take(16), 16);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(b.take(16), 0);
    }
}
