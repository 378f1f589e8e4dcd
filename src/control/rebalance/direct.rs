//! A connection of the rebalancer's own to one node: pipelined commands, replies in order.
//! Kept apart from the pooled client connections so a walk of many keys never queues in front
//! of client requests, and so a node already removed from the ring can still be emptied.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::backend::dedicated::exchange;
use crate::protocol::reply::command_bytes;
use crate::protocol::NodeReply;

pub struct Direct {
    stream: TcpStream,
    buf: BytesMut,
    timeout: Duration,
}

impl Direct {
    /// Connects within `connect` and gives every later exchange `timeout`.
    pub async fn connect(
        addr: &str,
        connect: Duration,
        timeout: Duration,
    ) -> Result<Direct, String> {
        let stream = crate::backend::connect::open(addr, crate::protocol::Proto::Resp2, connect)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        Ok(Direct {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            timeout,
        })
    }

    /// Sends every command at once and reads their replies, in order.
    pub async fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<NodeReply>, String> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for c in commands {
            out.extend_from_slice(&command_bytes(c.iter().map(|a| a.as_ref())));
        }
        let replies = exchange(
            &mut self.stream,
            crate::protocol::Proto::Resp2,
            &mut self.buf,
            &out,
            commands.len(),
        );
        tokio::time::timeout(self.timeout, replies)
            .await
            .map_err(|_| "no reply within the request timeout".to_string())?
            .map_err(|e| e.to_string())
    }

    /// One command.
    pub async fn call(&mut self, command: Vec<Bytes>) -> Result<NodeReply, String> {
        self.pipeline(&[command])
            .await?
            .pop()
            .ok_or_else(|| "no reply".to_string())
    }
}
