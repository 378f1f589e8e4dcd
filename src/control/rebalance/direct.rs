//! A connection of the rebalancer's own to one node: pipelined commands, replies in order.
//! Kept apart from the pooled client connections so a walk of many keys never queues in front
//! of client requests, and so a node already removed from the ring can still be emptied.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

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
}
