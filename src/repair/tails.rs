//! Write tails: the replies of replicas a replicated write did not wait for (`eventual`, or
//! past its quorum). Each worker keeps them in one queue per node, oldest first, watched by a
//! single task: a node answers a connection in order, so only the oldest tail of each node
//! needs polling, and a write costs a queue push instead of a task of its own. A tail that
//! fails hints its keys for that node (`hints.rs`).

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::backend::{settle, PendingReply};
use crate::cluster::NodeInfo;

use super::{Keys, Ticket};

struct Tail {
    rx: PendingReply,
    node: Arc<NodeInfo>,
    keys: Keys,
    /// The background budget unit, given back when the tail is settled.
    _ticket: Ticket,
}

/// One worker's write tails.
#[derive(Default)]
pub struct Tails {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By node slot.
    queues: HashMap<usize, VecDeque<Tail>>,
    /// The watcher's waker, to wake it when a queue stops being empty.
    waker: Option<Waker>,
}

impl Tails {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a tail (its budget `ticket` already taken).
    pub fn push(&self, rx: PendingReply, node: Arc<NodeInfo>, keys: Keys, ticket: Ticket) {
        let mut state = self.lock();
        let queue = state.queues.entry(node.index).or_default();
        let first = queue.is_empty();
        queue.push_back(Tail {
            rx,
            node,
            keys,
            _ticket: ticket,
        });
        if first {
            // The watcher polls only the oldest tail of each node: a new oldest needs a poll.
            if let Some(w) = state.waker.take() {
                drop(state);
                w.wake();
            }
        }
    }

    /// Settles tails as their replies come, for as long as the worker runs.
    pub async fn watch(self: Arc<Self>) {
        poll_fn(|cx| {
            let mut state = self.lock();
            state.waker = Some(cx.waker().clone());
            for queue in state.queues.values_mut() {
                while let Some(tail) = queue.front_mut() {
                    match Pin::new(&mut tail.rx).poll(cx) {
                        Poll::Pending => break,
                        Poll::Ready(got) => {
                            if let Err(e) = settle(&tail.node, got) {
                                tail.node.failed(&e.reason);
                                for key in tail.keys.iter() {
                                    tail.node.hints.add(key);
                                }
                            }
                            queue.pop_front();
                        }
                    }
                }
            }
            Poll::<()>::Pending
        })
        .await;
    }
}
