//! Opening a connection to a node: TCP connect under `timeouts.connect`, no Nagle delay, TLS
//! when the node is set up for it (`backend.tls`, the node's `tls`), and the handshake: authentication with the node's credentials (`backend.username` /
//! `backend.password`, or the node's own) and the protocol the connection speaks (`HELLO 3`
//! for connections that serve RESP3 clients, so the node's replies reach them unchanged).
//! Every connection strata opens to a node opens here — multiplexed, dedicated, subscriber,
//! heartbeat, rebalance — so each one, and each reconnect, authenticates.
//!
//! The handshake is one round trip: `AUTH [username] password` on a RESP2 connection,
//! `HELLO 3 AUTH username password` on a RESP3 one, `HELLO 3` alone without credentials.
//! Then `INFO server`, whose `run_id` tells a node that restarted (`cluster::refill`).

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{ErrorKind, Failure};
use super::stream::NodeStream;
use crate::cluster::NodeInfo;
use crate::config::Credentials;
use crate::protocol::reply::command_bytes;
use crate::protocol::{decode_reply_as, NodeReply, Proto};
use crate::tls::NodeTls;

/// The beginning of the text of a failure to authenticate (the node's reason follows).
pub const AUTH_FAILED: &str = "authentication failed";

/// Redis's user when none is named (`requirepass` sets its password).
const DEFAULT_USER: &str = "default";

/// The beginning of the text of a failed TLS handshake (the reason follows).
pub const TLS_FAILED: &str = "TLS handshake failed";

/// Opens a connection to `node` with its current credentials and TLS client (see [`open`]),
/// and, unless `repair.refill` is off, reads the node's `run_id` before the connection is
/// used: a node that restarted is known to be refilling before any request reaches it.
pub async fn open_node(
    node: &NodeInfo,
    proto: Proto,
    timeout: Duration,
) -> Result<NodeStream, Failure> {
    let mut stream = open(
        &node.addr,
        node.credentials().as_deref(),
        node.tls().as_deref(),
        proto,
        timeout,
    )
    .await?;
    let replica_reads = |link: &crate::cluster::slots::ClusterLink| {
        !link.sentinel
            && link
                .replica_reads
                .load(std::sync::atomic::Ordering::Relaxed)
    };
    if node.cluster.as_deref().is_some_and(replica_reads) {
        within(timeout, "READONLY", read_only(node, &mut stream)).await?;
    }
    if node.refill.enabled() {
        within(timeout, "INFO server", observe_run_id(node, &mut stream)).await?;
    }
    Ok(stream)
}

/// `step` (`what`: the command it sends) of a new connection's set-up, within `timeout`.
async fn within(
    timeout: Duration,
    what: &str,
    step: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    tokio::time::timeout(timeout, step).await.map_err(|_| {
        Failure::new(
            ErrorKind::TimedOut,
            format!(
                "{what} not answered within {}",
                humantime::format_duration(timeout)
            ),
        )
    })?
}

/// `READONLY` on a new connection to a Redis Cluster node whose backend has a layer with
/// `read_from: replica`: a replica then serves reads of its slots instead of redirecting them
/// to the primary; a primary ignores it. (Without such a layer it is not sent: a primary
/// demoted by a failover then redirects reads instead of answering them from its now lagging
/// copy.) A node that refuses it is used as it is, and a warning says so once per backend.
async fn read_only<S: AsyncRead + AsyncWrite + Unpin>(
    node: &NodeInfo,
    stream: &mut S,
) -> Result<(), Failure> {
    stream
        .write_all(&command_bytes([&b"READONLY"[..]].into_iter()))
        .await
        .map_err(|e| Failure::io("write", &e))?;
    stream.flush().await.map_err(|e| Failure::io("write", &e))?;
    let reply = read_reply(stream).await?;
    let first = node.cluster.as_ref().is_some_and(|link| {
        !link
            .readonly_refused
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    });
    if reply.is_error() && first {
        let text = String::from_utf8_lossy(&reply.raw);
        tracing::warn!(node = %node.id, reply = %text.trim_end(), "READONLY refused: reads sent to this backend's replicas are redirected to their primaries");
    }
    Ok(())
}

/// `INFO server` on a new connection: a `run_id` other than the one seen before means the
/// node restarted (`cluster::refill`). A node that refuses the command (an ACL user without
/// `INFO`) is served as before, without restart detection, and a warning says so once.
async fn observe_run_id<S: AsyncRead + AsyncWrite + Unpin>(
    node: &NodeInfo,
    stream: &mut S,
) -> Result<(), Failure> {
    stream
        .write_all(&command_bytes([&b"INFO"[..], b"server"].into_iter()))
        .await
        .map_err(|e| Failure::io("write", &e))?;
    stream.flush().await.map_err(|e| Failure::io("write", &e))?;
    let reply = read_reply(stream).await?;
    match crate::cluster::refill::parse_run_id(&reply.raw) {
        Some(run_id) => {
            if node.refill.observe(run_id) {
                tracing::warn!(
                    node = %node.id,
                    addr = %node.addr,
                    run_id,
                    "node restarted (new run_id): its misses are not believed until it is refilled"
                );
            }
        }
        None => {
            if node.refill.info_refused() {
                let text = String::from_utf8_lossy(&reply.raw);
                tracing::warn!(
                    node = %node.id,
                    reply = %text.trim_end(),
                    "no run_id from INFO server: restarts of this node are not noticed (repair.refill)"
                );
            }
        }
    }
    Ok(())
}

/// Connects to `addr`, over TLS with `tls` when given, authenticates with `credentials` when
/// there are some, and prepares the connection to speak `proto`. The failure's kind is
/// `refused` or `timed_out` for the connect; `tls` when the TLS handshake failed (the node's
/// certificate was refused, or the node refused strata's); `auth` when the node refused the credentials (text `authentication failed: <the
/// node's error>`, never the password); `timed_out`, `closed` or `protocol` for the rest of
/// the handshake. Its text is the reason shown in logs and INFO.
pub async fn open(
    addr: &str,
    credentials: Option<&Credentials>,
    tls: Option<&NodeTls>,
    proto: Proto,
    timeout: Duration,
) -> Result<NodeStream, Failure> {
    let timed_out = || {
        Failure::new(
            ErrorKind::TimedOut,
            format!(
                "connect timed out after {}",
                humantime::format_duration(timeout)
            ),
        )
    };
    // One deadline for the whole of it: connect, TLS and the handshake request.
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(Failure::new(ErrorKind::of_connect(&e), e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    // Small requests must leave at once; batching is done by the writers.
    let _ = tcp.set_nodelay(true);
    let mut stream = match tls {
        None => NodeStream::Plain(tcp),
        Some(tls) => match tokio::time::timeout_at(deadline, tls.connect(tcp)).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(tls_failed(&e)),
            Ok(Ok(stream)) => NodeStream::Tls(Box::new(stream)),
        },
    };
    if let Some(handshake) = Handshake::of(credentials, proto) {
        tokio::time::timeout_at(deadline, handshake.run(&mut stream))
            .await
            .map_err(|_| timed_out())??;
    }
    Ok(stream)
}

/// The one request a new connection sends before anything else.
enum Handshake<'a> {
    /// `HELLO 3`, with `AUTH` when there are credentials.
    Hello3(Option<&'a Credentials>),
    /// `AUTH [username] password` on a RESP2 connection.
    Auth(&'a Credentials),
}

impl<'a> Handshake<'a> {
    fn of(credentials: Option<&'a Credentials>, proto: Proto) -> Option<Handshake<'a>> {
        match (proto, credentials) {
            (Proto::Resp3, credentials) => Some(Handshake::Hello3(credentials)),
            (Proto::Resp2, Some(credentials)) => Some(Handshake::Auth(credentials)),
            (Proto::Resp2, None) => None,
        }
    }

    fn request(&self) -> bytes::Bytes {
        match self {
            Handshake::Hello3(None) => command_bytes([&b"HELLO"[..], b"3"].into_iter()),
            Handshake::Hello3(Some(c)) => command_bytes(
                [
                    &b"HELLO"[..],
                    b"3",
                    b"AUTH",
                    c.username.as_deref().unwrap_or(DEFAULT_USER).as_bytes(),
                    c.password.expose().as_bytes(),
                ]
                .into_iter(),
            ),
            Handshake::Auth(c) => match &c.username {
                Some(user) => command_bytes(
                    [
                        &b"AUTH"[..],
                        user.as_bytes(),
                        c.password.expose().as_bytes(),
                    ]
                    .into_iter(),
                ),
                None => command_bytes([&b"AUTH"[..], c.password.expose().as_bytes()].into_iter()),
            },
        }
    }

    /// Sends the request and checks the node agreed.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(self, stream: &mut S) -> Result<(), Failure> {
        stream
            .write_all(&self.request())
            .await
            .map_err(|e| Failure::io("write", &e))?;
        // TLS keeps what it encrypted until flushed (a no-op on plain TCP).
        stream.flush().await.map_err(|e| Failure::io("write", &e))?;
        // The node answers HELLO 3 in RESP3 (a map), or with an error in RESP2 if it is older
        // than Redis 6; AUTH with +OK or an error: all parse as RESP3.
        let reply = read_reply(stream).await?;
        if !reply.is_error() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(reply.raw.strip_suffix(b"\r\n").unwrap_or(&reply.raw))
            .trim_start_matches('-')
            .to_string();
        match self {
            Handshake::Auth(_) => Err(auth_failed(&text)),
            Handshake::Hello3(Some(_)) if refused_credentials(&text) => Err(auth_failed(&text)),
            Handshake::Hello3(_) => Err(Failure::new(
                ErrorKind::Protocol,
                format!("node refused RESP3 (HELLO 3): -{text}"),
            )),
        }
    }
}

/// `authentication failed: <the node's error>`. The node's texts (`WRONGPASS invalid
/// username-password pair or user is disabled.`, `ERR AUTH <password> called without any
/// password configured ...` — Redis writes the word, not the value) never carry the password.
fn auth_failed(node_text: &str) -> Failure {
    Failure::new(ErrorKind::Auth, format!("{AUTH_FAILED}: {node_text}"))
}

/// `TLS handshake failed: <why>`. Kind `tls` (the node is marked down at once, as for refused
/// credentials) when TLS itself failed: the node's certificate did not verify, an alert from
/// the node (it refused strata's certificate, or none was common of versions and ciphers), or
/// bytes that are not TLS (a plain port). Kind `closed` when the connection dropped during
/// the handshake: a node restarting does that, and it counts towards the failure threshold
/// like any lost connection.
fn tls_failed(e: &std::io::Error) -> Failure {
    let kind = match e.kind() {
        std::io::ErrorKind::InvalidData => ErrorKind::Tls,
        _ => ErrorKind::Closed,
    };
    Failure::new(kind, format!("{TLS_FAILED}: {e}"))
}

/// Whether a `HELLO 3 AUTH ...` error is about the credentials rather than the protocol
/// (`NOPROTO`, or an unknown command on a node older than Redis 6).
fn refused_credentials(text: &str) -> bool {
    text.starts_with("WRONGPASS")
        || text.starts_with("NOAUTH")
        || text.starts_with("NOPERM")
        || text.contains("password")
}

/// Reads one whole reply; nothing may follow it (the node answers one request).
async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> Result<NodeReply, Failure> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(reply) = decode_reply_as(&mut buf, Proto::Resp3)? {
            if !buf.is_empty() {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "unexpected bytes after the handshake reply",
                ));
            }
            return Ok(reply);
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| Failure::io("read", &e))?;
        if n == 0 {
            return Err(Failure::closed_by_node());
        }
    }
}
