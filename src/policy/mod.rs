//! Per-layer policy (TTL, replication, consistency) — resolved between classify and plan.
//!
//! The core proxy applies one policy to every key: a single copy on the key's primary node, so
//! nothing calls `resolve` yet. The layers issue fills this module in and calls it from
//! `coordinator::dispatch` between classify and plan, where `Ring::preference_list` then gives
//! the key's N replicas.

/// What the policy says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Copies of the key (the first N distinct nodes of its preference list).
    pub replication: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { replication: 1 }
    }
}

/// The policy of a key. Today every key gets the default (not yet called, see above).
pub fn resolve(_key: &[u8]) -> Policy {
    Policy::default()
}
