//! The node side: multiplexed pipelined connections, per-worker pools, node identity and status.

pub mod connect;
pub mod connection;
pub mod dedicated;
pub use crate::cluster::node::NodeError;
pub mod pool;
pub mod queue;
pub mod router;

pub use connection::{settle, Connection, ConnectionSettings, NodeResult, PendingReply};

pub use pool::{Lane, Pool};
pub use router::Router;
