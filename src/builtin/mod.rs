//! The commands strata answers itself (PING, HELLO, INFO, CONFIG, COMMAND, CLIENT, STRATA ...)
//! and what the admin endpoint answers (`/metrics`, `/healthz`): above the coordinator, whose
//! planning they use to ask nodes.

pub mod admin_endpoint;
pub mod client_tracking;
pub mod config_get;
pub mod info;
pub mod introspect;
pub mod local;

pub mod metrics;
pub mod nearcache;
pub mod pubsub_info;
pub mod report;
pub mod strata;
