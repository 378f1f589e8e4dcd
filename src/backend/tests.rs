//! How failures met on real sockets are classified (`error.rs`): connecting, the `HELLO 3`
//! handshake, and requests on a multiplexed connection to a "node" that refuses, never
//! answers, hangs up, or sends garbage; and how the node figures count them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::connection::{settle, Connection, ConnectionSettings, LiveTimeouts};
use super::error::{ErrorKind, NodeError};
use crate::cluster::NodeInfo;
use crate::protocol::Proto;
use crate::stats::NodeTotals;

// ---------------------------------------------------------------------------------------------
// Opening a connection
// ---------------------------------------------------------------------------------------------

/// A port nothing listens on (bound, then closed again).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_refused() {
    let addr = closed_port();
    let e = super::connect::open(&addr, None, None, Proto::Resp2, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert!(ErrorKind::Refused.retryable());
}

/// A listener that accepts and never answers: the RESP3 handshake times out.
#[tokio::test]
async fn a_handshake_a_node_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hung = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        // Held open, never written to.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let e = super::connect::open(&addr, None, None, Proto::Resp3, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TimedOut, "{e}");
    assert_eq!(e.detail, "connect timed out after 200ms");
    hung.abort();
}

/// A "node" that hangs up at once, and one that answers the handshake with garbage.
#[tokio::test]
async fn a_handshake_cut_short_is_closed_and_garbage_is_protocol() {
    async fn serve(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.write_all(answer).await;
            let _ = socket.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr
    }
    let open = |addr: String| async move {
        super::connect::open(&addr, None, None, Proto::Resp3, Duration::from_secs(2))
            .await
            .unwrap_err()
    };
    let e = open(serve(b"").await).await;
    assert_eq!(e.kind, ErrorKind::Closed, "{e}");
    assert_eq!(e.detail, "connection closed by node");
    let e = open(serve(b"?garbage\r\n").await).await;
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    let e = open(serve(b"-ERR unknown command 'HELLO'\r\n").await).await;
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert_eq!(
        e.detail,
        "node refused RESP3 (HELLO 3): -ERR unknown command 'HELLO'"
    );
}

/// A "node" that reads one request, hands it to the test and answers `answer`.
async fn answering(answer: &'static [u8]) -> (String, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = socket.read(&mut buf).await.unwrap();
        let _ = tx.send(buf[..n].to_vec());
        let _ = socket.write_all(answer).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    (addr, rx)
}

#[tokio::test]
async fn credentials_go_first_as_auth_or_hello_3_auth_and_a_refusal_is_auth() {
    use crate::config::{Credentials, Secret};
    let user = Credentials {
        username: Some("app".into()),
        password: Secret::new("pw"),
    };
    let default = Credentials {
        username: None,
        password: Secret::new("pw"),
    };
    let wrongpass: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    for (proto, credentials, request) in [
        (
            Proto::Resp2,
            &user,
            &b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n"[..],
        ),
        (Proto::Resp2, &default, b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"),
        (
            Proto::Resp3,
            &default,
            b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n",
        ),
    ] {
        // (A real node answers HELLO with a map; any reply that is not an error will do.)
        let (addr, sent) = answering(b"+OK\r\n").await;
        super::connect::open(
            &addr,
            Some(credentials),
            None,
            proto,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!(sent.await.unwrap(), request, "{proto:?}");

        let (addr, _) = answering(wrongpass).await;
        let e = super::connect::open(
            &addr,
            Some(credentials),
            None,
            proto,
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        assert_eq!(
            e.detail,
            "authentication failed: WRONGPASS invalid username-password pair or user is disabled."
        );
    }
    // Without credentials a RESP2 connection sends nothing before the first request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap() });
    let _stream = super::connect::open(&addr, None, None, Proto::Resp2, Duration::from_secs(2))
        .await
        .unwrap();
    let (mut socket, _) = accepted.await.unwrap();
    let mut buf = [0u8; 16];
    let idle = tokio::time::timeout(Duration::from_millis(100), socket.read(&mut buf)).await;
    assert!(idle.is_err(), "nothing sent: {idle:?}");
}

// ---------------------------------------------------------------------------------------------
// Requests on a multiplexed connection
// ---------------------------------------------------------------------------------------------

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

fn settings(request: Duration) -> ConnectionSettings {
    ConnectionSettings {
        timeouts: Arc::new(LiveTimeouts::new(Duration::from_secs(2), request)),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        queue_depth: 64,
        max_in_flight: 64,
        worker: 0,
        redirects: None,
    }
}

/// One PING through a new connection to `addr`: its error, and the node's figures.
async fn ping_fails(addr: String, request: Duration) -> (NodeError, NodeTotals) {
    let node = fake_node(addr);
    let conn = Connection::spawn(node.clone(), settings(request), Proto::Resp2);
    let rx = conn.send(Bytes::from_static(PING)).await;
    let error = settle(&node, rx.await).expect_err("no reply expected");
    (error, node.stats.totals())
}

/// A "node" that reads requests and answers each read with `answer` (`None`: never
/// answers; empty: closes the connection).
/// The record of a fake node: it answers nothing but its canned bytes, so strata does not ask
/// it for its run_id (`repair.refill` off).
fn fake_node(addr: String) -> Arc<NodeInfo> {
    let node = NodeInfo::new(0, "n1".into(), addr, 1, 1);
    node.refill.set_enabled(false);
    Arc::new(node)
}

async fn node(answer: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    match answer {
                        _ if n == 0 => return,
                        None => {}
                        Some(b"") => return,
                        Some(bytes) => {
                            let _ = socket.write_all(bytes).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The counts by kind add up to the errors, and `timeouts` to the timed-out ones.
fn assert_counted(t: &NodeTotals, kind: ErrorKind) {
    assert!(t.errors >= 1, "{t:?}");
    assert_eq!(t.errors_by_kind.iter().sum::<u64>(), t.errors, "{t:?}");
    assert_eq!(t.errors_by_kind[kind.index()], t.errors, "{t:?}");
    let timed_out = t.errors_by_kind[ErrorKind::TimedOut.index()];
    assert_eq!(t.timeouts, timed_out, "{t:?}");
}

#[tokio::test]
async fn a_closed_port_fails_requests_as_refused() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let (e, t) = ping_fails(addr.clone(), Duration::from_secs(2)).await;
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert!(e.retryable());
    assert!(
        e.to_string()
            .starts_with(&format!("ERR strata: node n1 ({addr}) unavailable: ")),
        "{e}"
    );
    assert_counted(&t, ErrorKind::Refused);
}

#[tokio::test]
async fn a_node_that_never_answers_times_out() {
    let addr = node(None).await;
    let (e, t) = ping_fails(addr, Duration::from_millis(150)).await;
    assert_eq!(e.kind, ErrorKind::TimedOut, "{e}");
    assert_eq!(&*e.reason, "request timed out after 150ms");
    assert_counted(&t, ErrorKind::TimedOut);
    assert_eq!(t.timeouts, 1);
}

#[tokio::test]
async fn a_node_that_hangs_up_is_closed() {
    let addr = node(Some(b"")).await;
    let (e, t) = ping_fails(addr, Duration::from_secs(2)).await;
    assert_eq!(e.kind, ErrorKind::Closed, "{e}");
    assert_eq!(&*e.reason, "connection closed by node");
    assert_counted(&t, ErrorKind::Closed);
    assert_eq!(t.timeouts, 0);
}

#[tokio::test]
async fn a_node_sending_garbage_is_a_protocol_error() {
    let addr = node(Some(b"?garbage\r\n")).await;
    let (e, t) = ping_fails(addr, Duration::from_secs(2)).await;
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert!(e.reason.starts_with("bad reply from node: "), "{e}");
    assert_counted(&t, ErrorKind::Protocol);
}

#[tokio::test]
async fn a_reply_nobody_asked_for_is_a_protocol_error() {
    // Two replies to one request.
    let addr = node(Some(b"+PONG\r\n+PONG\r\n")).await;
    let node = fake_node(addr);
    let conn = Connection::spawn(node.clone(), settings(Duration::from_secs(2)), Proto::Resp2);
    let first = conn.send(Bytes::from_static(PING)).await;
    assert!(settle(&node, first.await).is_ok());
    // The connection broke on the extra reply: the next request meets the failure.
    let e = poll_error(&node, &conn).await;
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    assert_eq!(&*e.reason, "reply without a request");
}

/// Sends PINGs until one fails (a broken connection fails them at once until it is back).
async fn poll_error(node: &Arc<NodeInfo>, conn: &Connection) -> NodeError {
    for _ in 0..100 {
        let rx = conn.send(Bytes::from_static(PING)).await;
        if let Err(e) = settle(node, rx.await) {
            return e;
        }
    }
    panic!("no request failed");
}

#[tokio::test]
async fn a_removed_node_fails_queued_requests_as_down_uncounted() {
    let addr = node(None).await;
    let node = fake_node(addr);
    node.retire();
    let conn = Connection::spawn(node.clone(), settings(Duration::from_secs(2)), Proto::Resp2);
    let rx = conn.send(Bytes::from_static(PING)).await;
    // Either failed as queued on the removed node or dropped by the closed queue.
    match settle(&node, rx.await) {
        Err(e) if e.kind == ErrorKind::Down => {
            assert_eq!(&*e.reason, "node removed from the cluster");
        }
        Err(e) => assert_eq!(e.kind, ErrorKind::Closed, "{e}"),
        Ok(r) => panic!("unexpected reply {r:?}"),
    }
    assert_eq!(node.stats.totals().errors, 0);
}
