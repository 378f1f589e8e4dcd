//! A client's connection: plain TCP, or TLS over it (accepted on `tls.listen`). The session
//! drives either through the same three operations: wait until the socket takes output or
//! input arrives ([`ClientStream::poll_io`]), write what the socket takes without waiting
//! ([`Sink`], used by `Output::flush`), and shut down.
//!
//! The plain path is the one it was before TLS existed: readiness and non-blocking writes on
//! the socket. TLS goes through tokio-rustls; since rustls encrypts into a buffer of its own,
//! the session also waits for the socket while rustls holds bytes not yet sent
//! ([`ClientStream::has_unsent`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::ClientTlsStream;

/// Longest a TLS client is given to take strata's close_notify before the socket is dropped.
const TLS_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// An accepted client connection.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// What [`ClientStream::poll_io`] saw.
pub enum Io {
    /// The socket takes output again (or failed: the client is gone).
    Writable(io::Result<()>),
    /// Bytes read into the input buffer; `Ok(0)` at the end of the client's stream.
    Read(io::Result<usize>),
}

/// Writing without waiting: as much as the socket takes now, `WouldBlock` when nothing.
pub trait Sink {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl ClientStream {
    /// The TCP socket underneath (its addresses and descriptor).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether TLS holds encrypted bytes the socket has not taken yet.
    pub fn has_unsent(&self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(s) => s.get_ref().1.wants_write(),
        }
    }

    /// Waits until the socket takes output (when `want_write`) or, with `read` (the input
    /// buffer and the room to offer a read), input arrived and was read. Output first: it
    /// frees the client's pipeline.
    ///
    /// A plain client's released input buffer (capacity 0) is taken again only once the
    /// socket is readable, so an idle client waits without one. Reads go through tokio's read
    /// path, which notices a drained socket without a second read.
    pub fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        want_write: bool,
        read: Option<(&mut BytesMut, usize)>,
    ) -> Poll<Io> {
        match self {
            ClientStream::Plain(tcp) => {
                if want_write {
                    if let Poll::Ready(r) = tcp.poll_write_ready(cx) {
                        return Poll::Ready(Io::Writable(r));
                    }
                }
                let Some((input, room)) = read else {
                    return Poll::Pending;
                };
                if input.capacity() == input.len() {
                    if let Err(e) = std::task::ready!(tcp.poll_read_ready(cx)) {
                        return Poll::Ready(Io::Read(Err(e)));
                    }
                    input.reserve(room);
                }
                // read_buf's future holds no state of its own between polls.
                pin!(tcp.read_buf(input)).poll(cx).map(Io::Read)
            }
            ClientStream::Tls(tls) => {
                if want_write {
                    if let Poll::Ready(r) = Pin::new(&mut **tls).poll_flush(cx) {
                        return Poll::Ready(Io::Writable(r));
                    }
                }
                let Some((input, room)) = read else {
                    return Poll::Pending;
                };
                // rustls keeps buffers of its own per connection; this one is taken as needed.
                if input.capacity() - input.len() < room.min(super::session::READ_SIZE) {
                    input.reserve(room);
                }
                pin!(tls.read_buf(input)).poll(cx).map(Io::Read)
            }
        }
    }

    /// Closes the connection: at once for plain TCP; TLS sends close_notify first, waiting at
    /// most a moment for the socket to take it.
    pub async fn shutdown(&mut self) {
        match self {
            ClientStream::Plain(tcp) => {
                let _ = tcp.shutdown().await;
            }
            ClientStream::Tls(tls) => {
                let _ = tokio::time::timeout(TLS_CLOSE_WAIT, tls.shutdown()).await;
            }
        }
    }
}

impl Sink for ClientStream {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_write(buf),
            ClientStream::Tls(tls) => now_or_would_block(
                Pin::new(&mut **tls).poll_write(&mut Context::from_waker(Waker::noop()), buf),
            ),
        }
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_write_vectored(bufs),
            ClientStream::Tls(tls) => now_or_would_block(
                Pin::new(&mut **tls)
                    .poll_write_vectored(&mut Context::from_waker(Waker::noop()), bufs),
            ),
        }
    }
}

/// A write polled once without a waker: the session waits for the socket through `poll_io`
/// (which polls TLS's flush with the session's own waker) whenever this says `WouldBlock`.
fn now_or_would_block(poll: Poll<io::Result<usize>>) -> io::Result<usize> {
    match poll {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}
