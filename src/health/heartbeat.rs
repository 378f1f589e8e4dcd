//! Heartbeats: every `health.heartbeat_interval`, a `PING` to each node on a connection of its
//! own (never queued behind client traffic), answered within the interval or counted as a
//! failure. Each beat also applies the `node_timeout` rule and, when the node is up and has
//! hints, starts their replay (`repair::handoff`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::backend::{ErrorKind, Failure, RespClient, Router};
use crate::cluster::NodeInfo;
use crate::config::Credentials;
use crate::protocol::Proto;
use crate::tls::NodeTls;

/// Longest reply taken from a node to a PING.
const MAX_REPLY: usize = 256;

/// Starts one heartbeat task per member node on the current runtime.
pub fn start(router: &Arc<Router>) {
    let members = router.view().topology.members.clone();
    for slot in members {
        start_one(router, slot);
    }
}

/// Starts the heartbeat of the node in `slot` (a node added at run time) on the current
/// runtime. It stops when the node is removed.
pub fn start_one(router: &Arc<Router>, slot: usize) {
    tokio::spawn(beat(router.clone(), slot));
}

async fn beat(router: Arc<Router>, index: usize) {
    let Some(node) = router.view().topology.node(index).cloned() else {
        return;
    };
    let mut interval = router.view().settings.config.health.heartbeat_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<Beating> = None;
    let mut replay: Option<tokio::task::JoinHandle<u64>> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = node.retired() => return,
        }
        // A reload may have changed the interval or the connect timeout.
        let (now_interval, connect_timeout) = {
            let view = router.view();
            let c = &view.settings.config;
            (c.health.heartbeat_interval, c.timeouts.connect)
        };
        if now_interval != interval {
            interval = now_interval;
            ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let outcome = tokio::time::timeout(interval, ping(&node, &mut conn, connect_timeout)).await;
        let now = Instant::now().into_std();
        match outcome {
            Ok(Ok(())) => {
                node.log_transition(node.health.heartbeat_ok(now));
            }
            Ok(Err(failure)) if failure.kind.is_refusal() => {
                conn = None;
                node.refused(&failure.detail);
            }
            Ok(Err(failure)) => {
                conn = None;
                node.failed(&format!("heartbeat: {failure}"));
            }
            Err(_) => {
                conn = None;
                node.failed(&format!(
                    "heartbeat: no PONG within {}",
                    humantime::format_duration(interval)
                ));
            }
        }
        node.log_transition(node.health.check(now));
        let idle = replay.as_ref().is_none_or(|r| r.is_finished());
        if idle && !node.health.is_down() && !node.hints.is_empty() {
            replay = Some(tokio::spawn(crate::repair::handoff::replay(
                router.clone(),
                index,
            )));
        }
    }
}

/// The heartbeat's connection, and the credentials and TLS client it was opened with.
type Beating = (RespClient, Option<Arc<Credentials>>, Option<Arc<NodeTls>>);

/// One PING on the heartbeat connection, opening it first when needed, and again when a
/// reload changed the node's credentials or TLS set-up (a connection opened with the old ones
/// must not keep the node up while every new connection is refused). A refusal of the
/// credentials is a failure of kind `auth`, of the TLS handshake one of kind `tls`.
async fn ping(
    node: &NodeInfo,
    conn: &mut Option<Beating>,
    connect_timeout: Duration,
) -> Result<(), Failure> {
    let credentials = node.credentials();
    let tls = node.tls();
    let same_tls = |used: &Option<Arc<NodeTls>>| match (used, &tls) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if conn
        .as_ref()
        .is_some_and(|(_, used, used_tls)| *used != credentials || !same_tls(used_tls))
    {
        *conn = None;
    }
    let (client, _, _) = match conn {
        Some(open) => open,
        None => conn.insert((
            RespClient::connect_node(node, Proto::Resp2, connect_timeout)
                .await
                .map_err(Failure::from)?
                // A reply is one short line: +PONG, or an error such as -LOADING while the
                // node loads its data.
                .with_reply_limit(MAX_REPLY),
            credentials,
            tls,
        )),
    };
    let reply = client.call(&["PING"]).await.map_err(Failure::from)?;
    if &reply.raw[..] == b"+PONG\r\n" {
        Ok(())
    } else if reply.raw.starts_with(b"-NOAUTH") {
        // The node wants credentials and strata has none for it: as a refusal.
        Err(Failure::new(
            ErrorKind::Auth,
            format!(
                "{}: {}",
                crate::backend::connect::AUTH_FAILED,
                String::from_utf8_lossy(reply.raw.get(1..).unwrap_or_default()).trim_end()
            ),
        ))
    } else {
        Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "unexpected reply {}",
                String::from_utf8_lossy(&reply.raw).trim_end()
            ),
        ))
    }
}
