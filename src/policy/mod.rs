//! Per-layer policy: which layer a key belongs to (longest prefix), and what that layer asks
//! for — default and maximum TTL, replication, consistency — resolved between classify and plan.
//!
//! `layers.rs` turns the config into [`LayerSpec`]s and finds a key's layer; `template.rs` reads
//! key templates (`result:{query}:{model}`) for invalidation; `ttl.rs` rewrites writes so their
//! keys follow the layer's TTL rules.

pub mod layers;

pub mod ttl;

pub use crate::config::template::KeyTemplate;
pub use layers::{resolve_layers, Layer, LayerId, LayerSpec, Layers, DEFAULT_LAYER};
