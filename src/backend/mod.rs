//! The node side: multiplexed pipelined connections, per-worker pools, node identity and
//! status, and the typed errors of node failures (`error.rs`).

pub mod connect;
pub mod connection;
pub mod dedicated;
pub mod error;
pub mod pool;
pub mod queue;
pub mod router;

pub use connection::{settle, Connection, ConnectionSettings, NodeResult, PendingReply};

pub use error::{ErrorKind, Failure, NodeError};
pub use pool::{Lane, Pool};
pub use router::Router;

#[cfg(test)]
mod tests;
