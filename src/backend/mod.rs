//! The node side: multiplexed pipelined connections, per-worker pools, node identity and status,
//! and the request/reply client of the connections held by one caller at a time.

pub mod connect;
pub mod connection;
pub mod dedicated;
pub mod node;
pub mod pool;
pub mod queue;
pub mod resp_client;

pub use connection::{settle, Connection, ConnectionSettings, NodeResult, PendingReply};
pub use node::{NodeError, NodeInfo, NodeStatus};
pub use pool::{Lane, Pool};
pub use resp_client::{CallError, RespClient};
