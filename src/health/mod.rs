//! Node health checks: each member gets a heartbeat task whose observations drive the node's
//! up/down state (`cluster::health`, with hysteresis) and, when a node comes back, the replay of
//! its hints (`repair::handoff`).

pub mod heartbeat;
