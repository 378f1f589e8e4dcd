//! Why a node did not answer a request, typed where the failure arises (the connect path, a
//! connection's reader and writer, the health state) and carried unchanged to the three places
//! that act on it: the client's reply (the error's text), failover (whether another replica
//! may help: [`ErrorKind::retryable`]) and the node figures (counted per [`ErrorKind::label`]).
//!
//! A Redis error reply (`-WRONGTYPE ...`) is not one of these: the node answered, and its reply
//! is passed on.

use std::io;
use std::sync::Arc;

use crate::cluster::NodeInfo;
use crate::protocol::DecodeError;

/// What kind of failure kept a node from answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No connection could be opened: refused, unreachable or unresolvable address.
    Refused,
    /// The node did not answer in time: `timeouts.connect` while connecting (and during the
    /// `HELLO 3` handshake), `timeouts.request` once a request was written.
    TimedOut,
    /// The connection broke or was closed: by the node (EOF, reset), on a failed read or
    /// write, or with the request still queued on it; also when no connection could be had for
    /// the node.
    Closed,
    /// The node sent bytes that are not RESP, a reply nobody asked for, or refused the
    /// protocol handshake (`HELLO 3`).
    Protocol,
    /// strata does not send the node requests: marked down by health checks, or removed from
    /// the cluster.
    Down,
    /// strata's own limit of connections to the node is reached
    /// (`limits.max_dedicated_per_node`); nothing was sent.
    Busy,
    /// The node refused strata's credentials (`backend.password`, or the node's own): the
    /// `AUTH` or `HELLO 3 AUTH` of the connect path got an error (`connect.rs`).
    Auth,
    /// The TLS handshake with the node failed (`connect.rs`): its certificate did not verify,
    /// it refused strata's, or it does not speak TLS.
    Tls,
}

impl ErrorKind {
    /// Every kind, in the order figures list them.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Refused,
        ErrorKind::TimedOut,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Down,
        ErrorKind::Busy,
        ErrorKind::Auth,
        ErrorKind::Tls,
    ];

    /// The kinds a node connection fails requests with and counts in the node figures
    /// (`errors`, and by kind in `strata_node_errors_by_kind_total`). Not counted: requests
    /// to a node marked down are not sent, requests still queued when a node is removed fail
    /// as `down` uncounted (as before kinds existed), and the dedicated-connection limit refuses
    /// a lease rather than a request.
    pub const COUNTED: [ErrorKind; 6] = [
        ErrorKind::Refused,
        ErrorKind::TimedOut,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Auth,
        ErrorKind::Tls,
    ];

    /// A stable name for metric labels and INFO fields.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Down => "down",
            ErrorKind::Busy => "busy",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
        }
    }

    /// Whether asking another replica may help: yes for every kind. Refused credentials too:
    /// they are per node (a node's own `password` overrides `backend.password`, and a node's
    /// ACL may differ), so a replica whose credentials work still serves the read; when every
    /// replica refuses, the client gets the last node's error, which names it and says
    /// `authentication failed`.
    pub fn retryable(self) -> bool {
        true
    }

    /// Whether the node refused strata itself (its credentials or its TLS): nothing will change
    /// until the configuration or the node does, so the node is marked down at once rather
    /// than after `health.failure_threshold` failures.
    pub fn is_refusal(self) -> bool {
        matches!(self, ErrorKind::Auth | ErrorKind::Tls)
    }

    /// A failed connect: a timeout, else the connection could not be opened.
    pub fn of_connect(e: &io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            _ => ErrorKind::Refused,
        }
    }

    /// The index of the kind's slot in per-kind counters (`stats::NodeWorker::failed`).
    pub fn index(self) -> usize {
        self as usize
    }
}

// The node figures keep one counter per kind (`stats::node`, which does not know the kinds).
const _: () = assert!(ErrorKind::ALL.len() == crate::stats::node::ERROR_KINDS);

/// A node failure before it is tied to a node (the connect path, dedicated connections): its
/// kind and its text, as shown in logs and INFO's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Failure {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    /// `what failed: <io error>` on an open connection (a failed read or write): closed.
    pub fn io(what: &str, e: &io::Error) -> Failure {
        Failure::new(ErrorKind::Closed, format!("{what} failed: {e}"))
    }

    /// The node closed the connection.
    pub fn closed_by_node() -> Failure {
        Failure::new(ErrorKind::Closed, "connection closed by node")
    }
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Failure {
        Failure::new(ErrorKind::Protocol, e.to_string())
    }
}

/// Why a request could not be answered by its node: the node, the kind of failure and its
/// text. Cheap to clone: one error is handed to every request that was waiting on the same
/// connection. Its text is the client's reply.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ERR strata: node {} ({}) unavailable: {reason}", .node.id, .node.addr)]
pub struct NodeError {
    pub node: Arc<NodeInfo>,
    pub kind: ErrorKind,
    pub reason: Arc<str>,
}

impl NodeError {
    pub fn new(node: &Arc<NodeInfo>, kind: ErrorKind, reason: &str) -> NodeError {
        NodeError {
            node: node.clone(),
            kind,
            reason: Arc::from(reason),
        }
    }

    /// `failure` met on a connection to `node`.
    pub fn of(node: &Arc<NodeInfo>, failure: &Failure) -> NodeError {
        NodeError::new(node, failure.kind, &failure.detail)
    }

    /// The error a request gets when its node is marked down (it is not sent).
    pub fn down(node: &Arc<NodeInfo>) -> NodeError {
        NodeError::new(node, ErrorKind::Down, &node.down_reason())
    }

    /// The pending reply was dropped unanswered: its connection went away.
    pub fn connection_lost(node: &Arc<NodeInfo>) -> NodeError {
        NodeError::new(node, ErrorKind::Closed, "connection lost")
    }

    /// The worker has no connection for the node.
    pub fn no_connection(node: &Arc<NodeInfo>) -> NodeError {
        NodeError::new(node, ErrorKind::Closed, "no connection")
    }

    /// See [`ErrorKind::retryable`].
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(addr: &str) -> Arc<NodeInfo> {
        Arc::new(NodeInfo::new(0, "node1".into(), addr.into(), 1, 1))
    }

    #[test]
    fn error_text_names_node_and_reason() {
        let e = NodeError::new(
            &node("127.0.0.1:7001"),
            ErrorKind::Refused,
            "Connection refused (os error 111)",
        );
        assert_eq!(
            e.to_string(),
            "ERR strata: node node1 (127.0.0.1:7001) unavailable: Connection refused (os error 111)"
        );
        let lost = NodeError::connection_lost(&node("h:1"));
        assert_eq!(
            lost.to_string(),
            "ERR strata: node node1 (h:1) unavailable: connection lost"
        );
        assert_eq!(lost.kind, ErrorKind::Closed);
    }

    #[test]
    fn a_node_marked_down_gives_a_down_error() {
        let n = Arc::new(
            NodeInfo::new(0, "node1".into(), "h:1".into(), 1, 1).configured(
                crate::cluster::health::Thresholds {
                    failures: 1,
                    recoveries: 1,
                    node_timeout: Duration::from_secs(1),
                    same_event: Duration::ZERO,
                },
                &crate::config::RepairConfig::default(),
            ),
        );
        n.failed("refused");
        assert!(n.health.is_down());
        let e = NodeError::down(&n);
        assert_eq!(e.kind, ErrorKind::Down);
        assert!(e.retryable());
        assert_eq!(
            e.to_string(),
            "ERR strata: node node1 (h:1) unavailable: marked down: 1 consecutive failures, last: refused"
        );
    }

    #[test]
    fn labels_are_distinct_and_every_kind_fails_over() {
        let labels: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "ALL is in declaration order");
            assert!(kind.retryable(), "{kind:?}");
        }
    }

    #[test]
    fn an_undecodable_reply_is_a_protocol_failure_with_the_decoder_text() {
        let mut buf = bytes::BytesMut::from(&b"?what\r\n"[..]);
        let e = Failure::from(crate::protocol::decode_reply(&mut buf).unwrap_err());
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.detail.starts_with("bad reply from node: "), "{e}");
    }
}
