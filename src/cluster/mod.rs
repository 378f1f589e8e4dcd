//! The cluster as requests see it: the node records (identity, weight, up/down state, hints
//! owed, figures), the consistent-hash ring, the topology (members and ring at one moment) and
//! the slot maps of Redis Cluster backends (`slots.rs`), the [`View`] a request loads once: settings, topology and layers from one moment, swapped
//! whole by reloads and membership changes.

pub mod health;
pub mod hints;
pub mod node;
pub mod rebalance;
pub mod refill;
pub mod ring;
pub mod slots;
pub mod topology;
pub mod view;

pub use node::{NodeInfo, NodeStatus};
pub use topology::Topology;
pub use view::{LiveView, NodeList, Place, View};
