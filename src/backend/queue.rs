//! The two hand-off queues of a node connection: requests from clients to the writer, and
//! reply slots from the writer to the reader.
//!
//! Both are a mutex-guarded buffer that the consumer takes whole (or pops from) and a `Notify`
//! to wake it. They live on one worker thread, so the lock is never contended: a request costs
//! one uncontended lock instead of a channel's semaphore and atomics, and the writer takes a
//! whole batch with one lock. Both are bounded; producers wait for room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::connection::{BackendRequest, NodeResult};

/// Requests waiting for the writer.
pub struct RequestQueue {
    state: Mutex<Requests>,
    /// Wakes the writer when the queue stops being empty (or closes).
    ready: Notify,
    /// Wakes senders waiting for room.
    room: Notify,
    depth: usize,
}

struct Requests {
    items: Vec<BackendRequest>,
    closed: bool,
}

impl RequestQueue {
    pub fn new(depth: usize) -> RequestQueue {
        RequestQueue {
            state: Mutex::new(Requests {
                items: Vec::new(),
                closed: false,
            }),
            ready: Notify::new(),
            room: Notify::new(),
            depth: depth.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Requests> {
        // A poisoned lock only means another task panicked mid-push; the Vec is still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request, waiting while the queue is full. On a closed queue the request is
    /// dropped, which its waiting client sees as "connection lost".
    pub async fn push(&self, request: BackendRequest) {
        // Room now (nearly always): no waiter registration.
        let Some(request) = self.try_push(request) else {
            return;
        };
        let mut request = Some(request);
        loop {
            // Registered before looking, so room made after the check still wakes us.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(r) = request.take() {
                request = self.try_push(r);
            }
            if request.is_none() {
                return;
            }
            room.await;
        }
    }

    /// Queues the request when there is room (or drops it when closed); gives it back when
    /// the queue is full.
    fn try_push(&self, request: BackendRequest) -> Option<BackendRequest> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        if state.items.len() >= self.depth {
            return Some(request);
        }
        state.items.push(request);
        let first = state.items.len() == 1;
        drop(state);
        if first {
            self.ready.notify_one();
        }
        None
    }

    /// Waits until there is something to take (true) or the queue is closed and empty (false).
    pub async fn wait(&self) -> bool {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let state = self.lock();
                if !state.items.is_empty() {
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            ready.await;
        }
    }

    /// Moves every queued request into `out` (which must be empty) and wakes waiting senders.
    pub fn take(&self, out: &mut Vec<BackendRequest>) {
        std::mem::swap(&mut self.lock().items, out);
        self.room.notify_waiters();
    }

    /// Refuses further requests; the writer finishes what is queued and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.room.notify_waiters();
    }
}

/// A request written to the node and not answered yet: where its reply goes, when it left,
/// and, on a connection to a Redis Cluster node, its bytes (to send again where a `MOVED` or
/// `ASK` reply points, `redirect.rs`).
pub type Slot = (oneshot::Sender<NodeResult>, Instant, Option<Bytes>);

/// Reply slots in the order their requests were written; the reader pops one per reply.
pub struct InFlight {
    slots: Mutex<VecDeque<Slot>>,
    /// Wakes the reader when slots appear.
    added: Notify,
    /// Wakes the writer when slots are freed; only signalled while it waits (`writer_waits`),
    /// so the reader's per-reply pop stays a plain lock.
    freed: Notify,
    writer_waits: AtomicBool,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight {
            slots: Mutex::new(VecDeque::new()),
            added: Notify::new(),
            freed: Notify::new(),
            writer_waits: AtomicBool::new(false),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the slots of a batch about to be written, waiting while the connection already
    /// has `max_in_flight` unanswered requests (a batch larger than that waits for an empty
    /// queue, so it cannot wait forever).
    pub async fn add(
        &self,
        batch: impl Iterator<Item = (oneshot::Sender<NodeResult>, Option<Bytes>)>,
        count: usize,
    ) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let slots = self.lock();
                if slots.is_empty() || slots.len() + count <= self.max {
                    break;
                }
                self.writer_waits.store(true, Ordering::Relaxed);
            }
            freed.await;
            self.writer_waits.store(false, Ordering::Relaxed);
        }
        let sent_at = Instant::now();
        let mut slots = self.lock();
        let was_empty = slots.is_empty();
        slots.extend(batch.map(|(tx, resend)| (tx, sent_at, resend)));
        drop(slots);
        if was_empty {
            self.added.notify_one();
        }
    }

    /// The slot of the oldest unanswered request.
    pub fn pop(&self) -> Option<Slot> {
        let slot = self.lock().pop_front();
        if slot.is_some() && self.writer_waits.load(Ordering::Relaxed) {
            self.freed.notify_one();
        }
        slot
    }

    /// When the oldest unanswered request was written.
    pub fn oldest(&self) -> Option<Instant> {
        self.lock().front().map(|(_, at, _)| *at)
    }

    /// Waits until a slot is added.
    pub async fn wait_added(&self) {
        let added = self.added.notified();
        tokio::pin!(added);
        added.as_mut().enable();
        if !self.lock().is_empty() {
            return;
        }
        added.await;
    }

    /// Removes every slot (to fail them).
    pub fn drain(&self) -> Vec<Slot> {
        let slots = self.lock().drain(..).collect();
        self.freed.notify_one();
        slots
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn request() -> (BackendRequest, oneshot::Receiver<NodeResult>) {
        let (reply, rx) = oneshot::channel();
        (
            BackendRequest {
                payload: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
                reply,
                follow: true,
            },
            rx,
        )
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_full_queue_makes_senders_wait_until_the_writer_takes() {
        let queue = Arc::new(RequestQueue::new(2));
        queue.push(request().0).await;
        queue.push(request().0).await;
        let q = queue.clone();
        let third = tokio::spawn(async move { q.push(request().0).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!third.is_finished(), "the third push must wait for room");
        let mut batch = Vec::new();
        assert!(queue.wait().await);
        queue.take(&mut batch);
        assert_eq!(batch.len(), 2);
        third.await.unwrap();
        batch.clear();
        queue.take(&mut batch);
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_queue_drops_requests_and_stops_the_writer() {
        let queue = RequestQueue::new(4);
        queue.close();
        let (req, rx) = request();
        queue.push(req).await;
        assert!(
            rx.await.is_err(),
            "the reply slot is dropped: connection lost"
        );
        assert!(!queue.wait().await);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn in_flight_is_bounded_and_fifo() {
        let in_flight = Arc::new(InFlight::new(2));
        let (a, mut ra) = oneshot::channel();
        let (b, _rb) = oneshot::channel();
        in_flight.add([(a, None), (b, None)].into_iter(), 2).await;
        let (c, _rc) = oneshot::channel();
        let f = in_flight.clone();
        let adder = tokio::spawn(async move { f.add(std::iter::once((c, None)), 1).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!adder.is_finished(), "over max_in_flight the writer waits");
        let (first, _, _) = in_flight.pop().unwrap();
        first.send(Err(test_error())).unwrap();
        assert!(ra.try_recv().is_ok(), "the oldest slot is popped first");
        adder.await.unwrap();
        assert_eq!(in_flight.drain().len(), 2);
        assert!(in_flight.oldest().is_none());
    }

    fn test_error() -> super::super::NodeError {
        let node = Arc::new(crate::cluster::NodeInfo::new(
            0,
            "n".into(),
            "h:1".into(),
            1,
            1,
        ));
        super::super::NodeError::new(&node, super::super::ErrorKind::Closed, "test")
    }
}
