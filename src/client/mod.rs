//! The client side: one session per connection, its output queue and limits, transactions
//! and pub/sub.

pub mod dispatch;
pub mod gate;
pub mod output;
pub mod output_limit;
pub mod pubsub;
mod replies;
pub mod session;
pub mod stream;
pub mod transaction;
