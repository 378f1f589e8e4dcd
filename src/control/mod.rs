//! The control plane: the registry of connected clients, configuration reloads, membership
//! changes' key moves (rebalance), graceful shutdown, and the background layer key counts.

pub mod clients;
pub mod layer_keys;
pub mod rebalance;
pub mod reload;
pub mod shutdown;
