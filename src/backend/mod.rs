//! The node side: multiplexed pipelined connections, per-worker pools, node identity and status.

pub mod connect;
pub mod connection;
pub mod dedicated;
pub mod node;
pub mod pool;
pub mod queue;

pub use connection::{settle, Connection, ConnectionSettings, NodeResult, PendingReply};
pub use node::{NodeError, NodeInfo, NodeStatus};
pub use pool::{Lane, Pool};
