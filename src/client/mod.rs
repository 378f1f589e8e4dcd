//! The client side: one session per connection, and the registry of connected clients.

pub mod output;
pub mod output_limit;
pub mod pubsub;
pub mod registry;
pub mod session;
pub mod transaction;
