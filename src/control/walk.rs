//! What the walks over every node's keys share (the rebalance after membership changes, the
//! refill of a restarted node): a connection of their own to each node, SCAN pages, reading
//! keys as DUMP payloads with their TTLs, RESTORE's outcome, and a pace of so many keys a
//! second.
//!
//! The connection is kept apart from the pooled client connections so a walk of many keys
//! never queues in front of client requests, and so a node already removed from the ring can
//! still be emptied.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;

use crate::backend::RespClient;
use crate::cluster::NodeInfo;
use crate::protocol::reply::encode_command;
use crate::protocol::{NodeReply, Proto};

pub struct Direct {
    client: RespClient,
}

impl Direct {
    /// Connects within `connect` and gives every later exchange `timeout`.
    /// Authenticates with the node's credentials, as every connection to a node does.
    pub async fn connect(
        node: &NodeInfo,
        connect: Duration,
        timeout: Duration,
    ) -> Result<Direct, String> {
        let client = RespClient::connect_node(node, Proto::Resp2, connect)
            .await
            .map_err(|e| format!("connect to {}: {e}", node.addr))?
            .with_timeout(timeout);
        Ok(Direct { client })
    }

    /// Sends every command at once and reads their replies, in order.
    pub async fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<NodeReply>, String> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = BytesMut::new();
        for c in commands {
            encode_command(&mut out, c.iter().map(|a| a.as_ref()));
        }
        self.client
            .pipeline(&out, commands.len())
            .await
            .map_err(|e| e.to_string())
    }

    /// One command.
    pub async fn call(&mut self, command: Vec<Bytes>) -> Result<NodeReply, String> {
        self.client.call(&command).await.map_err(|e| e.to_string())
    }

    /// One page of `SCAN cursor COUNT count`: the next cursor (`0` at the end) and the keys.
    pub async fn scan(
        &mut self,
        cursor: &Bytes,
        count: usize,
    ) -> Result<(Bytes, Vec<Bytes>), String> {
        let reply = self
            .call(vec![
                Bytes::from_static(b"SCAN"),
                cursor.clone(),
                Bytes::from_static(b"COUNT"),
                Bytes::from(count.to_string()),
            ])
            .await?;
        parse_scan(reply).ok_or_else(|| "unexpected SCAN reply".to_string())
    }

    /// DUMP and PTTL of each key, pipelined (each pair describes one moment). The keys gone
    /// since they were listed are left out; `Err` when the node could not be asked.
    pub async fn read_copies<T>(&mut self, keys: Vec<(Bytes, T)>) -> Result<Vec<Copy<T>>, String> {
        let reads: Vec<Vec<Bytes>> = keys
            .iter()
            .flat_map(|(key, _)| {
                [
                    vec![Bytes::from_static(b"DUMP"), key.clone()],
                    vec![Bytes::from_static(b"PTTL"), key.clone()],
                ]
            })
            .collect();
        let replies = self.pipeline(&reads).await?;
        let mut copies = Vec::with_capacity(keys.len());
        for ((key, with), pair) in keys.into_iter().zip(replies.chunks(2)) {
            let (Some(dump), Some(pttl)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            let payload = match &dump.frame {
                BytesFrame::BulkString(p) => p.clone(),
                // Gone (expired or deleted) since the SCAN: nothing to copy.
                _ => continue,
            };
            let ttl = match pttl.frame {
                BytesFrame::Integer(-2) => continue,
                BytesFrame::Integer(ms) if ms > 0 => ms,
                // An expiry due this very millisecond still needs one: 0 would make it
                // persistent.
                BytesFrame::Integer(0) => 1,
                _ => 0,
            };
            copies.push(Copy {
                key,
                payload,
                ttl,
                with,
            });
        }
        Ok(copies)
    }
}

/// A key read for copying, and what the walk carries along with it.
pub struct Copy<T> {
    pub key: Bytes,
    pub payload: Bytes,
    /// Milliseconds to live; 0: no expiry.
    pub ttl: i64,
    pub with: T,
}

impl<T> Copy<T> {
    /// `RESTORE key ttl payload`, without REPLACE: a value the target has is newer and stays.
    pub fn restore(&self) -> Vec<Bytes> {
        vec![
            Bytes::from_static(b"RESTORE"),
            self.key.clone(),
            Bytes::from(self.ttl.to_string()),
            self.payload.clone(),
        ]
    }
}

/// RESTORE landed, or the target already had the key (BUSYKEY: a newer value, kept).
pub fn restored(reply: &NodeReply) -> bool {
    match &reply.frame {
        BytesFrame::SimpleString(_) => true,
        BytesFrame::Error(e) => e.starts_with("BUSYKEY"),
        _ => false,
    }
}

/// A SCAN reply: the next cursor and the keys.
fn parse_scan(reply: NodeReply) -> Option<(Bytes, Vec<Bytes>)> {
    let BytesFrame::Array(parts) = reply.frame else {
        return None;
    };
    let mut parts = parts.into_iter();
    let cursor = match parts.next()? {
        BytesFrame::BulkString(c) => c,
        _ => return None,
    };
    let keys = match parts.next()? {
        BytesFrame::Array(keys) => keys
            .into_iter()
            .filter_map(|k| match k {
                BytesFrame::BulkString(k) => Some(k),
                _ => None,
            })
            .collect(),
        _ => return None,
    };
    Some((cursor, keys))
}

/// Keeps a walk under `max` keys per second.
pub struct Pace {
    max: u64,
    started: Instant,
    spent: u64,
}

impl Pace {
    pub fn new(max: usize) -> Pace {
        Pace {
            max: (max as u64).max(1),
            started: Instant::now(),
            spent: 0,
        }
    }

    pub async fn spend(&mut self, keys: u64) {
        self.spent += keys;
        let due = Duration::from_secs_f64(self.spent as f64 / self.max as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}
