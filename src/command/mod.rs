//! Commands: the static table, classification, key positions, and the commands strata answers
//! itself.

pub mod classify;
pub mod config_get;
pub mod info;
pub mod introspect;
pub mod keys;
pub mod local;
pub mod membership;
pub mod pubsub_info;
pub mod report;
pub mod spec;
pub mod strata;
pub mod table;
