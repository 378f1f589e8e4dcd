//! The node side: multiplexed pipelined connections, per-worker pools, the worker's router,
//! the request/reply client of the connections held by one caller at a time, and the typed
//! errors of node failures (`error.rs`).

pub mod connect;
pub mod connection;
pub mod dedicated;
pub mod error;
pub mod pool;
pub mod queue;
pub mod redirect;
pub mod resp_client;
pub mod router;
pub mod stream;

pub use connection::{settle, Connection, ConnectionSettings, NodeResult, PendingReply};

pub use error::{ErrorKind, Failure, NodeError};
pub use pool::{Lane, Pool};
pub use resp_client::{CallError, RespClient};
pub use router::Router;

#[cfg(test)]
mod tests;
