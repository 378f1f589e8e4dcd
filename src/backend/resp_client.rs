//! A request/reply RESP client over one connection of its own: requests out, replies back in
//! order, decoded by the project's node reply decoder (`protocol::codec`), requests encoded by
//! `protocol::reply`. It opens through [`connect::open`](super::connect::open), the one connect
//! path (timeout, no Nagle delay, AUTH with the node's credentials, `HELLO 3`; TLS will plug in
//! there).
//!
//! For the connections strata and its tools hold one caller at a time: heartbeats, the
//! rebalancer's walks, dedicated connections (blocking commands, transactions), `strata warm`
//! and `strata load`. The pooled client connections are not this: many clients share one of
//! those, through a driver task matching replies FIFO (`connection.rs`).
//!
//! Not `backend::client`: `crate::client` is the client *sessions*, and two `client` modules
//! would invite the wrong import.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{ErrorKind, Failure};
use super::stream::NodeStream;
use crate::cluster::NodeInfo;
use crate::config::Credentials;
use crate::protocol::reply::command_bytes;
use crate::protocol::{decode_reply_as, NodeReply, Proto};
use crate::tls::NodeTls;

/// Bytes the read buffer grows by when a reply is still incomplete.
const READ_CHUNK: usize = 16 * 1024;

/// Why a call got no reply. Small on purpose: the backend's error kinds are being gathered in
/// one place, and these are meant to merge into them. The texts are the ones node failures
/// have always shown in logs and INFO (`health_reason`, `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Opening the connection failed (refused, timed out, handshake refused), as
    /// `connect::open` found it.
    #[error("{0}")]
    Connect(Failure),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// The peer closed the connection before the reply was whole.
    #[error("connection closed by node")]
    Closed,
    /// No whole reply within the request timeout.
    #[error("no reply within the request timeout")]
    TimedOut,
    /// The peer sent something that is not RESP (the decoder's reason), or a reply longer
    /// than the client's limit: the connection cannot be trusted any more.
    #[error("{0}")]
    Protocol(String),
}

impl From<CallError> for Failure {
    /// The kind of failure a call met, for the callers that report node failures by kind
    /// (dedicated connections).
    fn from(e: CallError) -> Failure {
        match e {
            CallError::Connect(f) => f,
            CallError::TimedOut => Failure::new(ErrorKind::TimedOut, e.to_string()),
            CallError::Protocol(_) => Failure::new(ErrorKind::Protocol, e.to_string()),
            CallError::Write(_) | CallError::Read(_) | CallError::Closed => {
                Failure::new(ErrorKind::Closed, e.to_string())
            }
        }
    }
}

/// One connection, its read buffer, and the protocol its replies are decoded in.
#[derive(Debug)]
pub struct RespClient {
    stream: NodeStream,
    proto: Proto,
    buf: BytesMut,
    /// Bounds each call (write and reply together), each [`send`](RespClient::send) and
    /// each [`read`](RespClient::read); `None`: wait as long as the peer takes (a blocking
    /// command's own timeout decides).
    timeout: Option<Duration>,
    /// Largest incomplete reply kept before giving up on the peer.
    max_reply: Option<usize>,
}

impl RespClient {
    /// Opens a connection to `addr` speaking `proto`, within `connect_timeout`, without
    /// credentials (strata's tools: `strata warm`, `strata load`). No request timeout until
    /// [`with_timeout`](RespClient::with_timeout).
    pub async fn connect(
        addr: &str,
        proto: Proto,
        connect_timeout: Duration,
    ) -> Result<RespClient, CallError> {
        RespClient::connect_with(addr, None, None, proto, connect_timeout).await
    }

    /// Opens a connection to `node`, authenticated with its current credentials (heartbeats,
    /// the rebalancer).
    pub async fn connect_node(
        node: &NodeInfo,
        proto: Proto,
        connect_timeout: Duration,
    ) -> Result<RespClient, CallError> {
        let stream = super::connect::open_node(node, proto, connect_timeout)
            .await
            .map_err(CallError::Connect)?;
        Ok(RespClient::from_stream(stream, proto))
    }

    /// Opens a connection to `addr`, over TLS with `tls` and authenticated with `credentials`
    /// when they are given.
    pub async fn connect_with(
        addr: &str,
        credentials: Option<&Credentials>,
        tls: Option<&NodeTls>,
        proto: Proto,
        connect_timeout: Duration,
    ) -> Result<RespClient, CallError> {
        let stream = super::connect::open(addr, credentials, tls, proto, connect_timeout)
            .await
            .map_err(CallError::Connect)?;
        Ok(RespClient::from_stream(stream, proto))
    }

    /// A client on a stream already opened by `connect::open` and speaking `proto` (a
    /// dedicated connection, counted against its node's limit before it was opened).
    pub fn from_stream(stream: NodeStream, proto: Proto) -> RespClient {
        RespClient {
            stream,
            proto,
            buf: BytesMut::new(),
            timeout: None,
            max_reply: None,
        }
    }

    /// Sets the request timeout (see the field).
    pub fn with_timeout(mut self, timeout: Duration) -> RespClient {
        self.timeout = Some(timeout);
        self
    }

    /// Refuses replies longer than `bytes` (a peer that is not what it should be must not
    /// fill memory until the timeout).
    pub fn with_reply_limit(mut self, bytes: usize) -> RespClient {
        self.max_reply = Some(bytes);
        self
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Sends one command (its arguments) and reads its reply.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<NodeReply, CallError> {
        let request = command_bytes(args.iter().map(AsRef::as_ref));
        let mut replies = self.pipeline(&request, 1).await?;
        replies.pop().ok_or(CallError::Closed)
    }

    /// Writes `payload` (one or more encoded commands, e.g. a client's request bytes as they
    /// came) and reads `count` replies, in order, all within one request timeout.
    pub async fn pipeline(
        &mut self,
        payload: &[u8],
        count: usize,
    ) -> Result<Vec<NodeReply>, CallError> {
        let timeout = self.timeout;
        within(timeout, async {
            self.write(payload).await?;
            let mut replies = Vec::with_capacity(count);
            while replies.len() < count {
                replies.push(self.next_reply().await?);
            }
            Ok(replies)
        })
        .await
    }

    /// Writes `payload` (encoded commands) without reading: the first half of a pipeline
    /// whose replies [`read`](RespClient::read) collects.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), CallError> {
        let timeout = self.timeout;
        within(timeout, self.write(payload)).await
    }

    /// Reads the next reply.
    pub async fn read(&mut self) -> Result<NodeReply, CallError> {
        let timeout = self.timeout;
        within(timeout, self.next_reply()).await
    }

    /// Bytes read past the last reply returned (none when the peer answered only what was
    /// asked); after a protocol error, the bytes that could not be decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Lets go of a read buffer grown by a large reply (before the connection waits idle).
    pub fn shrink_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > READ_CHUNK {
            self.buf = BytesMut::new();
        }
    }

    async fn write(&mut self, payload: &[u8]) -> Result<(), CallError> {
        self.stream
            .write_all(payload)
            .await
            .map_err(CallError::Write)?;
        // TLS keeps what it encrypted until flushed (a no-op on plain TCP).
        self.stream.flush().await.map_err(CallError::Write)
    }

    /// Reads the next frame as its bytes, without decoding it into a frame (a RESP3
    /// connection's pushes, read by a caller that parses the few shapes it expects itself).
    /// No timeout: the caller bounds the wait.
    pub async fn read_raw(&mut self) -> Result<bytes::Bytes, CallError> {
        self.read_until(|buf, _| {
            let len = crate::protocol::resp3_reply::frame_len(buf)
                .map_err(|e| CallError::Protocol(e.to_string()))?;
            Ok(len.map(|len| buf.split_to(len).freeze()))
        })
        .await
    }

    async fn next_reply(&mut self) -> Result<NodeReply, CallError> {
        self.read_until(|buf, proto| {
            decode_reply_as(buf, proto).map_err(|e| CallError::Protocol(e.to_string()))
        })
        .await
    }

    /// Reads until `take` finds a whole frame at the start of the buffer (`Ok(None)`: more
    /// bytes needed), within the reply limit.
    async fn read_until<T>(
        &mut self,
        mut take: impl FnMut(&mut BytesMut, Proto) -> Result<Option<T>, CallError>,
    ) -> Result<T, CallError> {
        loop {
            if let Some(frame) = take(&mut self.buf, self.proto)? {
                return Ok(frame);
            }
            if let Some(max) = self.max_reply.filter(|&max| self.buf.len() > max) {
                return Err(CallError::Protocol(format!(
                    "reply longer than {max} bytes"
                )));
            }
            self.buf.reserve(READ_CHUNK);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(CallError::Read)?;
            if n == 0 {
                return Err(CallError::Closed);
            }
        }
    }
}

/// `step` under `timeout`, when there is one.
async fn within<T>(
    timeout: Option<Duration>,
    step: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, step)
            .await
            .map_err(|_| CallError::TimedOut)?,
        None => step.await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use redis_protocol::resp2::types::BytesFrame;
    use tokio::net::TcpListener;

    enum Step {
        /// Reads once (a small request arrives in one piece on loopback).
        Read,
        Write(&'static [u8]),
    }

    /// A peer that plays `script`, then reads until the client hangs up; it returns every
    /// byte it read.
    async fn peer(script: Vec<Step>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            for step in script {
                match step {
                    Step::Read => {
                        let mut chunk = [0u8; 1024];
                        let n = s.read(&mut chunk).await.unwrap();
                        got.extend_from_slice(&chunk[..n]);
                    }
                    Step::Write(bytes) => s.write_all(bytes).await.unwrap(),
                }
            }
            let _ = s.read_to_end(&mut got).await;
            got
        });
        (addr, task)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn call_encodes_and_decodes() {
        let (addr, peer) = peer(vec![Step::Read, Step::Write(b"$3\r\nbar\r\n")]).await;
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap()
            .with_timeout(SECOND);
        let reply = c.call(&["GET", "foo"]).await.unwrap();
        assert_eq!(
            reply.frame,
            BytesFrame::BulkString(Bytes::from_static(b"bar"))
        );
        assert!(c.buffered().is_empty());
        drop(c);
        assert_eq!(peer.await.unwrap(), b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n");
    }

    #[tokio::test]
    async fn pipeline_reads_replies_in_order_and_keeps_the_rest() {
        let script = vec![
            Step::Read,
            Step::Write(b"+OK\r\n:2\r\n*1\r\n$1\r\na\r\n+extra"),
        ];
        let (addr, _peer) = peer(script).await;
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap();
        let replies = c.pipeline(b"whatever", 3).await.unwrap();
        let raw: Vec<&[u8]> = replies.iter().map(|r| &r.raw[..]).collect();
        assert_eq!(raw, [&b"+OK\r\n"[..], b":2\r\n", b"*1\r\n$1\r\na\r\n"]);
        assert_eq!(c.buffered(), b"+extra");
    }

    #[tokio::test]
    async fn send_then_read() {
        let (addr, peer) = peer(vec![Step::Read, Step::Write(b"-ERR no\r\n:7\r\n")]).await;
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap()
            .with_timeout(SECOND);
        c.send(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n")
            .await
            .unwrap();
        assert!(c.read().await.unwrap().is_error());
        assert_eq!(c.read().await.unwrap().frame, BytesFrame::Integer(7));
        drop(c);
        assert_eq!(peer.await.unwrap().len(), 28);
    }

    #[tokio::test]
    async fn closed_timed_out_and_garbage_are_typed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hang_up = tokio::spawn(async move { drop(listener.accept().await.unwrap()) });
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap();
        hang_up.await.unwrap();
        assert!(matches!(c.read().await, Err(CallError::Closed)));

        let (addr, _peer) = peer(vec![Step::Read, Step::Write(b"+PON")]).await;
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(50));
        assert!(matches!(c.call(&["PING"]).await, Err(CallError::TimedOut)));

        let (addr, _peer) = peer(vec![Step::Read, Step::Write(b"?what\r\n")]).await;
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap();
        let err = c.call(&["PING"]).await.unwrap_err();
        assert!(matches!(err, CallError::Protocol(_)), "{err:?}");
        assert_eq!(c.buffered(), b"?what\r\n");
    }

    #[tokio::test]
    async fn a_reply_past_the_limit_is_refused() {
        let long = Step::Write(b"+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let (addr, _peer) = peer(vec![Step::Read, long]).await;
        let mut c = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap()
            .with_timeout(SECOND)
            .with_reply_limit(16);
        let err = c.call(&["PING"]).await.unwrap_err();
        assert_eq!(err.to_string(), "reply longer than 16 bytes");
    }

    #[tokio::test]
    async fn connect_failure_keeps_the_connect_path_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = RespClient::connect(&addr, Proto::Resp2, SECOND)
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Connect(_)), "{err:?}");
    }

    #[tokio::test]
    async fn resp3_replies_decode_as_resp3() {
        // HELLO 3 is answered first (by connect), then the call.
        let script = vec![
            Step::Read,
            Step::Write(b"%1\r\n+proto\r\n:3\r\n"),
            Step::Read,
            Step::Write(b"_\r\n"),
        ];
        let (addr, _peer) = peer(script).await;
        let mut c = RespClient::connect(&addr, Proto::Resp3, SECOND)
            .await
            .unwrap();
        assert_eq!(c.proto(), Proto::Resp3);
        let reply = c.call(&["GET", "missing"]).await.unwrap();
        assert_eq!(reply.frame, BytesFrame::Null);
        assert_eq!(&reply.raw[..], b"_\r\n");
    }
}
