//! A client's output: replies encoded and not yet taken by the socket.
//!
//! Small replies are encoded into one growing buffer (the tail); a node's large reply is kept as
//! the `Bytes` it arrived in and queued whole, so it is never copied, and the output never
//! doubles a buffer holding megabytes. Writes are vectored over the queue. [`Output::len`] is
//! what `limits.client_output_buffer_limit` is checked against.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use super::stream::Sink;

/// Node replies at least this large are queued as they are instead of copied.
const QUEUE_WHOLE: usize = 16 * 1024;
/// Buffers handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Size of the tail when a reply takes one.
const TAIL_SIZE: usize = 1024;
/// A tail grown past this is dropped once written out, not kept for the connection's life.
const TAIL_KEEP: usize = 4 * 1024 * 1024;

/// Replies waiting for the socket, in order: `queued` first, then `tail`.
pub struct Output {
    queued: VecDeque<Bytes>,
    tail: BytesMut,
    /// Bytes in `queued`.
    queued_len: usize,
}

impl Default for Output {
    fn default() -> Output {
        Output {
            queued: VecDeque::new(),
            tail: BytesMut::new(),
            queued_len: 0,
        }
    }
}

impl Output {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.queued_len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in the buffer small replies are encoded into.
    pub fn tail_len(&self) -> usize {
        self.tail.len()
    }

    /// Large replies queued whole.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The buffer to encode the next reply into (taken from the allocator after a release).
    pub fn tail(&mut self) -> &mut BytesMut {
        if self.tail.capacity() == 0 {
            self.tail.reserve(TAIL_SIZE);
        }
        &mut self.tail
    }

    /// Gives the tail's buffer back to the allocator when nothing waits in it and it grew past
    /// its first size: an idle client holds at most a small one.
    pub fn release(&mut self) {
        if self.tail.is_empty() && self.tail.capacity() > TAIL_SIZE {
            // Unconditionally: a tail written out to its end has no capacity left but still
            // holds its allocation.
            self.tail = BytesMut::new();
        }
    }

    /// Adds a node's reply as it is: queued whole when large, else copied to the tail.
    pub fn push_raw(&mut self, raw: &Bytes) {
        if raw.len() < QUEUE_WHOLE {
            self.tail().extend_from_slice(raw);
            return;
        }
        if !self.tail.is_empty() {
            let before = self.tail.split().freeze();
            self.queue(before);
        }
        self.queue(raw.clone());
    }

    fn queue(&mut self, bytes: Bytes) {
        self.queued_len += bytes.len();
        self.queued.push_back(bytes);
    }

    /// Writes as much as the socket takes without waiting; returns the bytes written.
    pub fn flush(&mut self, stream: &mut impl Sink) -> std::io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            let result = if self.queued.is_empty() {
                stream.try_write(&self.tail)
            } else {
                let mut slices: Vec<IoSlice<'_>> = self
                    .queued
                    .iter()
                    .take(MAX_SLICES)
                    .map(|b| IoSlice::new(b))
                    .collect();
                if slices.len() < MAX_SLICES && !self.tail.is_empty() {
                    slices.push(IoSlice::new(&self.tail));
                }
                stream.try_write_vectored(&slices)
            };
            match result {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n);
                    written += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.tail.is_empty() && self.tail.capacity() > TAIL_KEEP {
            self.tail = BytesMut::new();
        }
        Ok(written)
    }

    /// Drops `n` written bytes from the front.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.queued.front_mut() {
                Some(front) if n >= front.len() => {
                    n -= front.len();
                    self.queued_len -= front.len();
                    self.queued.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    self.queued_len -= n;
                    return;
                }
                None => {
                    self.tail.advance(n.min(self.tail.len()));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_counts_bytes() {
        let mut out = Output::default();
        out.tail().extend_from_slice(b"+OK\r\n");
        let big = Bytes::from(vec![b'x'; QUEUE_WHOLE]);
        out.push_raw(&big);
        out.push_raw(&Bytes::from_static(b":1\r\n"));
        assert_eq!(out.len(), 5 + QUEUE_WHOLE + 4);
        assert_eq!(
            out.queued.len(),
            2,
            "the tail before the big reply, then the reply"
        );
        out.advance(3);
        assert_eq!(out.len(), 2 + QUEUE_WHOLE + 4);
        out.advance(2 + QUEUE_WHOLE);
        assert_eq!(out.len(), 4);
        assert_eq!(&out.tail[..], b":1\r\n");
        out.advance(4);
        assert!(out.is_empty());
    }
}
