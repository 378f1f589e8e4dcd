//! The near cache: values of hot keys of some layers (`layers[].near_cache`) kept in strata's
//! own memory and served without a node round trip, kept coherent by the nodes' own
//! invalidations (client-side caching's BCAST tracking, read by `tracking/`), by strata's
//! writes, and by a life bounded by the key's TTL. docs/near-cache.md says what it promises.
//!
//! - `store`: one layer's entries, bounded in bytes.
//! - `coherence`: which nodes' invalidation streams are live, the fill race's counters, the
//!   invalidation and flush of every store.

mod coherence;
mod store;

pub use coherence::{Coherence, FillToken};
pub use store::{Entry, Store, StoreCounts, StoreError, StoreFigures, ENTRY_OVERHEAD, SHARDS};

#[cfg(test)]
mod tests;
