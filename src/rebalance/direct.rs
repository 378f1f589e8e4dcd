//! A connection of the rebalancer's own to one node: pipelined commands, replies in order.
//! Kept apart from the pooled client connections so a walk of many keys never queues in front
//! of client requests, and so a node already removed from the ring can still be emptied.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::reply::command_bytes;
use crate::protocol::{decode_reply, NodeReply};

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
        let stream = tokio::time::timeout(connect, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
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
        let exchange = async {
            self.stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            let mut replies = Vec::with_capacity(commands.len());
            while replies.len() < commands.len() {
                match decode_reply(&mut self.buf)? {
                    Some(reply) => replies.push(reply),
                    None => {
                        self.buf.reserve(16 * 1024);
                        let n = self
                            .stream
                            .read_buf(&mut self.buf)
                            .await
                            .map_err(|e| format!("read failed: {e}"))?;
                        if n == 0 {
                            return Err("connection closed by node".to_string());
                        }
                    }
                }
            }
            Ok(replies)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| "no reply within the request timeout".to_string())?
    }

    /// One command.
    pub async fn call(&mut self, command: Vec<Bytes>) -> Result<NodeReply, String> {
        self.pipeline(&[command])
            .await?
            .pop()
            .ok_or_else(|| "no reply".to_string())
    }
}
