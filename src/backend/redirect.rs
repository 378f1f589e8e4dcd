//! Redis Cluster redirects, followed where the client cannot see them. A node of a cluster
//! backend answers `-MOVED <slot> <host:port>` for a key whose slot another node serves now,
//! and `-ASK <slot> <host:port>` for a key of a slot being migrated that is already at the
//! target. A connection to such a node keeps each request's bytes until its reply
//! (`connection.rs`); a redirect reply is not passed up but handed, with those bytes and the
//! place its reply goes, to the worker's [`Follower`], which sends the request where the
//! redirect points (`ASKING` first for `ASK`, on a dedicated connection so nothing comes
//! between the two) and answers with what comes back. Everything above the connection (a
//! plain forward, a split MGET, TTL followers, a transaction's reads) gets the final reply and
//! never knows.
//!
//! The usual reply costs one comparison of its first byte. A `MOVED` also asks for a new slot
//! map, so the next requests of the slot go to the right node at once. At most
//! `max_redirects` are followed per request; then the client gets the last redirect as the
//! error Redis Cluster clients know.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::connection::NodeResult;
use super::pool::Lane;
use super::Router;
use crate::cluster::slots::ClusterLink;
use crate::cluster::NodeInfo;
use crate::protocol::{NodeReply, Proto};

/// Redirects waiting for the worker's follower, at most; past it the client gets the
/// redirect itself (a storm of them means the map is far behind, and the refresh is on its
/// way).
pub const QUEUE: usize = 4096;

/// A request a cluster node redirected.
pub struct Redirected {
    pub payload: Bytes,
    pub reply: oneshot::Sender<NodeResult>,
    /// The redirect reply.
    pub first: NodeReply,
    /// The node that redirected, and the protocol of its connection.
    pub from: Arc<NodeInfo>,
    pub proto: Proto,
}

/// Where a connection hands its redirects (one per worker).
pub type RedirectSink = mpsc::Sender<Redirected>;

/// A redirect reply, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK` (one request, after `ASKING`) rather than `MOVED` (the slot's new owner).
    pub ask: bool,
    pub slot: u16,
    pub addr: String,
}

/// True when `raw` is a redirect reply: checked on every error reply of a cluster node.
pub fn is_redirect(raw: &[u8]) -> bool {
    raw.starts_with(b"-MOVED ") || raw.starts_with(b"-ASK ")
}

/// Parses `-MOVED 3999 127.0.0.1:6381\r\n` or `-ASK ...`.
pub fn parse(raw: &[u8]) -> Option<Redirect> {
    let text = std::str::from_utf8(raw).ok()?.trim_end();
    let (ask, rest) = if let Some(rest) = text.strip_prefix("-MOVED ") {
        (false, rest)
    } else {
        (true, text.strip_prefix("-ASK ")?)
    };
    let (slot, addr) = rest.split_once(' ')?;
    let slot: u16 = slot.parse().ok()?;
    if usize::from(slot) >= crate::cluster::slots::SLOT_COUNT || addr.is_empty() {
        return None;
    }
    // A node reports `:port` when it does not know its own host (`cluster-announce-ip`
    // unset on some set-ups): the host is the redirecting node's.
    Some(Redirect {
        ask,
        slot,
        addr: addr.to_string(),
    })
}

/// Follows the redirects of one worker's connections (`serve`).
pub struct Follower {
    router: Arc<Router>,
}

impl Follower {
    /// Runs until every sink is dropped: each redirect is followed in a task of its own, so a
    /// slow one (waiting for a new map) holds up no other.
    pub async fn serve(router: Arc<Router>, mut rx: mpsc::Receiver<Redirected>) {
        let follower = Arc::new(Follower { router });
        while let Some(r) = rx.recv().await {
            let follower = follower.clone();
            tokio::spawn(async move {
                let result = follower.follow(&r.payload, r.first, &r.from, r.proto).await;
                let _ = r.reply.send(result);
            });
        }
    }

    /// Sends `payload` where `reply` redirects it, and again while the answers redirect, up to
    /// the backend's bound; the last reply.
    async fn follow(
        &self,
        payload: &Bytes,
        mut reply: NodeReply,
        from: &Arc<NodeInfo>,
        proto: Proto,
    ) -> NodeResult {
        let Some(link) = from.cluster.clone() else {
            return Ok(reply);
        };
        let mut from = from.clone();
        for _ in 0..link.max_redirects {
            let Some(redirect) = parse(&reply.raw) else {
                return Ok(reply);
            };
            let counter = if redirect.ask {
                &link.refresh.asked
            } else {
                // The map is behind: learn the new one while this request goes on.
                link.refresh.ask();
                &link.refresh.moved
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Near-cache fills and tracked reads under way do not trust what comes back.
            self.router.view().layers.coherence().note_redirect();
            let addr = full_addr(&redirect.addr, &from.addr);
            let Some(target) = self.locate(&link, &addr).await else {
                tracing::warn!(backend = %link.name, %addr, "redirected to a node the cluster does not report");
                break;
            };
            let sent = if redirect.ask {
                self.asking(&target, proto, payload).await
            } else {
                self.moved(&target, proto, payload).await
            };
            reply = sent?;
            from = target;
        }
        if is_redirect(&reply.raw) {
            link.refresh
                .redirect_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(reply)
    }

    /// The node at `addr` of the backend; when the map does not know it yet, waits (up to the
    /// request timeout) for the refresh a `MOVED` asked for.
    async fn locate(&self, link: &ClusterLink, addr: &str) -> Option<Arc<NodeInfo>> {
        let find = || {
            let view = self.router.view();
            let slot = view.topology.cluster_node(link.backend, addr)?;
            view.topology.node(slot).cloned()
        };
        if let Some(node) = find() {
            return Some(node);
        }
        let version = link.refresh.version();
        link.refresh.ask();
        let within = self.router.timeouts().request();
        if link.refresh.newer_than(version, within).await {
            return find();
        }
        None
    }

    /// Sends `payload` to `target`'s shared connection, redirects not followed there (this
    /// loop follows them).
    async fn moved(&self, target: &Arc<NodeInfo>, proto: Proto, payload: &Bytes) -> NodeResult {
        let lane = Lane { client: 0, proto };
        let Some(conn) = self.router.connection(target.index, lane) else {
            return Err(super::NodeError::no_connection(target));
        };
        let rx = conn.send_unfollowed(payload.clone()).await;
        super::settle(target, rx.await)
    }

    /// `ASKING` then `payload` on a dedicated connection to `target`: nothing else may come
    /// between them on the connection.
    async fn asking(&self, target: &Arc<NodeInfo>, proto: Proto, payload: &Bytes) -> NodeResult {
        let mut lease = match self.router.dedicated_lease(target.index, proto).await {
            Ok(lease) => lease,
            Err(_) => return Err(super::NodeError::no_connection(target)),
        };
        let mut both = Vec::with_capacity(payload.len() + 16);
        both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
        both.extend_from_slice(payload);
        // A dedicated connection has no request timeout of its own (blocking commands use
        // them); this one does.
        let within = self.router.timeouts().request();
        match tokio::time::timeout(within, lease.call_many(&both, 2)).await {
            Ok(Ok(mut replies)) if replies.len() == 2 => match replies.pop() {
                Some(reply) => Ok(reply),
                None => Err(super::NodeError::connection_lost(target)),
            },
            Ok(Ok(_)) => Err(super::NodeError::connection_lost(target)),
            Ok(Err(failure)) => Err(super::NodeError::of(target, &failure)),
            Err(_) => Err(super::NodeError::new(
                target,
                super::ErrorKind::TimedOut,
                "ASK redirect: no reply within the request timeout",
            )),
        }
    }
}

/// `addr` with the redirecting node's host when it gave only `:port`.
fn full_addr(addr: &str, from: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => {
            let host = crate::config::split_host_port(from).map_or("127.0.0.1", |(h, _)| h);
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        None => addr.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redirects_parse() {
        assert_eq!(
            parse(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect {
                ask: false,
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        let ask = parse(b"-ASK 12182 10.0.0.2:7002\r\n").unwrap();
        assert!(ask.ask);
        assert_eq!(ask.slot, 12182);
        assert!(parse(b"-MOVED 16384 h:1\r\n").is_none());
        assert!(parse(b"-MOVED x h:1\r\n").is_none());
        assert!(parse(b"-ERR MOVED 1 h:1\r\n").is_none());
        assert!(is_redirect(b"-ASK 1 h:1\r\n"));
        assert!(!is_redirect(
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
        ));
        assert_eq!(full_addr(":7001", "10.1.2.3:7000"), "10.1.2.3:7001");
        assert_eq!(full_addr("h:7001", "10.1.2.3:7000"), "h:7001");
    }
}
