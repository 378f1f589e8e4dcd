//! Invalidation messages on their way to one client's session: posted by whichever thread
//! learns of a change (a node's invalidation stream, another session's write), taken and
//! encoded by the session, between its replies. Bounded in bytes: past the bound the waiting
//! messages collapse into one flush, which tells the client everything it cached may have
//! changed (never less than it must be told).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::task::AtomicWaker;

/// One message for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// These keys changed.
    Keys(Vec<Bytes>),
    /// Everything may have changed (a node was flushed, or strata lost a node's stream).
    Flush,
    /// The client the tracking client redirects to is gone (sent once, RESP3 only).
    RedirectBroken(u64),
}

impl Message {
    /// Bytes counted against the inbox's bound.
    fn size(&self) -> usize {
        match self {
            Message::Keys(keys) => keys.iter().map(|k| k.len() + 16).sum::<usize>() + 32,
            _ => 32,
        }
    }
}

/// The messages waiting for one session.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: Mutex<Queue>,
    /// Messages wait (read without the lock by the session's every pass).
    waiting: AtomicBool,
    /// Set when the session ended: nothing more is taken.
    closed: AtomicBool,
    /// Set by the first post. Until then no wake has used up the waker the session left, so
    /// the session need not leave it again at every wait (see [`Inbox::poll_take`]).
    posted: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    bytes: usize,
}

impl Inbox {
    /// Posts `message`, or a flush in place of everything waiting when that would pass
    /// `max_bytes`. False when the session is gone.
    pub fn post(&self, message: Message, max_bytes: usize) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut q = self.lock();
            let size = message.size();
            if q.bytes + size > max_bytes {
                q.messages.clear();
                q.messages.push_back(Message::Flush);
                q.bytes = Message::Flush.size();
            } else if !(q.messages.back() == Some(&Message::Flush) && message == Message::Flush) {
                q.bytes += size;
                q.messages.push_back(message);
            }
        }
        self.posted.store(true, Ordering::Release);
        self.waiting.store(true, Ordering::Release);
        self.waker.wake();
        true
    }

    /// Every message waiting, once there is one (the session's select branch). `registered`
    /// is the session's memory of the waker it left here: polled again by the same task of an
    /// inbox never posted to, only the flags are read (registering on every pass of a session
    /// cost about 50 instructions per request, a client with no tracking included). Once
    /// posted to, the waker is left again at every wait: a post marks its message waiting and
    /// then wakes, and the session may take the message in between and wait again, so that
    /// the post's wake uses up the waker left for the next message (that next post then woke
    /// no one, and its message waited until the client sent a request).
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Option<Waker>,
    ) -> Poll<VecDeque<Message>> {
        if !self.waiting.load(Ordering::Acquire) {
            if !self.posted.load(Ordering::Acquire)
                && registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            {
                return Poll::Pending;
            }
            self.waker.register(cx.waker());
            *registered = Some(cx.waker().clone());
            // A post between the load and the registration woke no one: look again.
            if !self.waiting.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.take(registered))
    }

    /// Every message waiting now, if any, without waiting: the session's look right after it
    /// encoded replies, so that an invalidation a reply caused (the client's own write, a
    /// read an invalidation overtook) leaves in the same write as that reply, as Redis writes
    /// them. Through the select branch it left a pass later, in a write of its own, and a
    /// client that checks its socket for pushes before serving a read from memory (redis-py,
    /// node-redis) could find nothing there yet and return the value from before its own
    /// write. `registered` as in [`Inbox::poll_take`].
    pub fn take_ready(&self, registered: &mut Option<Waker>) -> Option<VecDeque<Message>> {
        self.waiting
            .load(Ordering::Acquire)
            .then(|| self.take(registered))
    }

    fn take(&self, registered: &mut Option<Waker>) -> VecDeque<Message> {
        // A post's wake took the waker out: register again next time.
        *registered = None;
        self.waiting.store(false, Ordering::Release);
        let mut q = self.lock();
        q.bytes = 0;
        std::mem::take(&mut q.messages)
    }

    /// The session ended: later posts fail (the redirect is broken).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut q = self.lock();
        q.messages.clear();
        q.bytes = 0;
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding it leaves at worst a message too many or too few counted.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The channel RESP2 clients receive invalidations on (as `message` frames).
pub const CHANNEL: &[u8] = b"__redis__:invalidate";

/// Encodes `message` as the session's client receives it: a RESP3 push, or, for a RESP2
/// client in subscribed mode (a redirect target), a `message` of [`CHANNEL`]. Returns false
/// when the client cannot receive it (RESP2 and not subscribed: Redis sends nothing then).
pub fn encode(message: &Message, resp3: bool, subscribed: bool, out: &mut BytesMut) -> bool {
    if resp3 {
        match message {
            Message::Keys(keys) => {
                out.put_slice(b">2\r\n$10\r\ninvalidate\r\n");
                keys_array(keys, out);
            }
            Message::Flush => out.put_slice(b">2\r\n$10\r\ninvalidate\r\n_\r\n"),
            Message::RedirectBroken(id) => {
                out.put_slice(b">2\r\n$21\r\ntracking-redir-broken\r\n:");
                out.put_slice(itoa::Buffer::new().format(*id).as_bytes());
                out.put_slice(b"\r\n");
            }
        }
        return true;
    }
    if !subscribed {
        return false;
    }
    match message {
        Message::Keys(keys) => {
            out.put_slice(b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n");
            keys_array(keys, out);
        }
        // The null of RESP2 is the null bulk string here, as Redis writes it.
        Message::Flush => {
            out.put_slice(b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n")
        }
        // Redis tells only RESP3 clients.
        Message::RedirectBroken(_) => return false,
    }
    true
}

fn keys_array(keys: &[Bytes], out: &mut BytesMut) {
    let mut n = itoa::Buffer::new();
    out.put_u8(b'*');
    out.put_slice(n.format(keys.len()).as_bytes());
    out.put_slice(b"\r\n");
    for key in keys {
        out.put_u8(b'$');
        out.put_slice(n.format(key.len()).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(key);
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn message() -> Message {
        Message::Keys(vec![Bytes::from_static(b"k")])
    }

    /// A post marks its message waiting, then wakes the session. The session may take the
    /// message between the two and wait again: the post's wake then finds the waker the
    /// session left for the next message, and uses it up. The next post must still wake the
    /// session (found by the coherence checker's fill-race test: a BCAST client, posted to
    /// from two threads at once, stopped receiving invalidations while it sent nothing).
    #[test]
    fn a_wake_that_comes_after_its_message_was_taken_loses_no_later_post() {
        let inbox = Inbox::default();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut registered = None;
        assert!(inbox.poll_take(&mut cx, &mut registered).is_pending());
        // A post (what `post` does before its wake), its wake not made yet.
        inbox.lock().messages.push_back(message());
        inbox.posted.store(true, Ordering::Release);
        inbox.waiting.store(true, Ordering::Release);
        // The session takes the message, and waits again.
        let Poll::Ready(taken) = inbox.poll_take(&mut cx, &mut registered) else {
            panic!("the message is waiting");
        };
        assert_eq!(taken.len(), 1);
        assert!(inbox.poll_take(&mut cx, &mut registered).is_pending());
        // The post's wake: the session runs, finds nothing, waits.
        inbox.waker.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(inbox.poll_take(&mut cx, &mut registered).is_pending());
        // The next post must wake it.
        assert!(inbox.post(message(), 1 << 20));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "the second post woke no one"
        );
        let Poll::Ready(taken) = inbox.poll_take(&mut cx, &mut registered) else {
            panic!("the second message is waiting");
        };
        assert_eq!(taken.len(), 1);
    }
}
