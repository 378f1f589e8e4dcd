//! Heartbeats: every `health.heartbeat_interval`, a `PING` to each node on a connection of its
//! own (never queued behind client traffic), answered within the interval or counted as a
//! failure. Each beat also applies the `node_timeout` rule and, when the node is up and has
//! hints, starts their replay (`repair::handoff`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backend::Router;
use crate::cluster::NodeInfo;

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
    let mut conn: Option<TcpStream> = None;
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
            Ok(Err(reason)) => {
                conn = None;
                node.failed(&format!("heartbeat: {reason}"));
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

/// One PING on the heartbeat connection, opening it first when needed.
async fn ping(
    node: &NodeInfo,
    conn: &mut Option<TcpStream>,
    connect_timeout: Duration,
) -> Result<(), String> {
    if conn.is_none() {
        let stream = crate::backend::connect::open(
            &node.addr,
            crate::protocol::Proto::Resp2,
            connect_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
        *conn = Some(stream);
    }
    let Some(stream) = conn.as_mut() else {
        return Err("no connection".into());
    };
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    let mut buf = [0u8; 256];
    let mut len = 0;
    // A reply is one line: +PONG, or an error such as -LOADING while the node loads its data.
    loop {
        let Some(room) = buf.get_mut(len..) else {
            return Err("reply too long".into());
        };
        let n = stream
            .read(room)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("connection closed by node".into());
        }
        len += n;
        let got = buf.get(..len).unwrap_or_default();
        if got.ends_with(b"\r\n") {
            return if got == b"+PONG\r\n" {
                Ok(())
            } else {
                Err(format!(
                    "unexpected reply {}",
                    String::from_utf8_lossy(got).trim_end()
                ))
            };
        }
    }
}
