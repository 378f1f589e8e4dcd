//! A connection to a node: plain TCP, or TLS over it (`backend.tls`). Both read and write
//! through tokio's traits, so the connections, dedicated connections and `RespClient` serve
//! either without knowing which.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::tls::NodeTlsStream;

/// An open, authenticated connection to a node.
pub enum NodeStream {
    Plain(TcpStream),
    Tls(Box<NodeTlsStream<TcpStream>>),
}

/// The read side of a [`NodeStream`] split for a reader task.
pub enum NodeReader {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<NodeTlsStream<TcpStream>>),
}

/// The write side of a [`NodeStream`] split for a writer task.
pub enum NodeWriter {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<NodeTlsStream<TcpStream>>),
}

impl NodeStream {
    /// Splits for a reader and a writer task. A plain socket splits without a lock; a TLS
    /// session is one state both sides use, shared behind tokio's split lock.
    pub fn into_split(self) -> (NodeReader, NodeWriter) {
        match self {
            NodeStream::Plain(s) => {
                let (r, w) = s.into_split();
                (NodeReader::Plain(r), NodeWriter::Plain(w))
            }
            NodeStream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (NodeReader::Tls(r), NodeWriter::Tls(w))
            }
        }
    }
}

impl std::fmt::Debug for NodeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            NodeStream::Plain(_) => "plain",
            NodeStream::Tls(_) => "tls",
        };
        f.debug_tuple("NodeStream").field(&kind).finish()
    }
}

/// Forwards AsyncRead and AsyncWrite to whichever variant is there (every variant is Unpin).
macro_rules! forward {
    (read $ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
    (write $ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $ty::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::Plain(s) => s.is_write_vectored(),
                    $ty::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_flush(cx),
                    $ty::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $ty::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

forward!(read NodeStream);
forward!(write NodeStream);
forward!(read NodeReader);
forward!(write NodeWriter);
