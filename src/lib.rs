//! strata: a Redis-protocol cache proxy that shards keys over plain Redis nodes.
//!
//! # Request path
//!
//! ```text
//! TcpStream
//!   → client::session      read buffer, resumable Redis-exact parser, pipeline of pending replies;
//!                          keeps reading while replies wait (client::output, bounded by
//!                          client::output_limit)
//!   → protocol::Request    arguments as slices of one frozen buffer (no copy)
//!   → command::classify    static command table: arity, flags, key positions, route
//!   → policy::Layers       the key's layer (longest prefix): TTL rules, statistics
//!   → coordinator::plan    ring → owning node; TTL rewrite; multi-key split per node; fan-out
//!   → coordinator::replicate  layers with several copies: replicas and key groups, then
//!                          write_flight (every replica written, W of N acks), read_one (one
//!                          replica, hedged), read_flight (failover, R of N compared, repaired)
//!   → backend::Connection  per worker, node and protocol (a RESP3 client's requests go to RESP3
//!                          node connections, so replies pass unchanged): multiplexed,
//!                          pipelined, FIFO reply matching
//!   → coordinator::merge   one reply from several nodes (MGET order, sums, SCAN cursors)
//!   → client::session      replies written in request order, batched, counted
//! ```
//!
//! # Modules
//!
//! - [`config`]: `config.yaml` schema, defaults, validation.
//! - [`server`]: listener, worker threads (one event loop and one set of node connections
//!   each), connection limit.
//! - [`client`]: client sessions, their output queue and limits, and the client registry
//!   (CLIENT LIST).
//! - [`protocol`]: request parser, reply encoding (RESP2, RESP3), node reply decoding (RESP2,
//!   RESP3), Redis's glob patterns.
//! - [`command`]: the command table, classification, locally answered commands, INFO.
//! - [`coordinator`]: planning, pending replies, merging; the keyspace-wide reads, each key
//!   once.
//! - [`ring`]: the consistent-hash ring and preference lists.
//! - [`backend`]: opening node connections (`connect`), multiplexed and dedicated connections,
//!   pools, node status; `RespClient`, the request/reply client of the connections held by one
//!   caller (heartbeats, the rebalancer, dedicated connections, `strata warm`, `strata load`).
//! - [`health`]: node up/down state with hysteresis; heartbeats.
//! - [`repair`]: background convergence: write tails, read repair, hinted handoff.
//! - [`policy`]: layers (longest-prefix match), key templates, TTL rules.
//! - [`stats`]: per-worker counters and latency histograms behind INFO, STRATA STATS and
//!   `/metrics`.
//! - [`admin`]: the HTTP admin endpoint (`/metrics`, `/healthz`).
//! - [`warm`]: `strata warm`, loading a file of entries through a running proxy.
//! - [`load`]: `strata load`, the load of `scripts/failover-check.sh` (a node killed under
//!   load, acknowledged writes read back).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admin;
pub mod backend;
pub mod client;
pub mod command;
pub mod config;
pub mod coordinator;
pub mod health;
pub mod latch;
pub mod load;
pub mod policy;
pub mod protocol;
pub mod rebalance;
pub mod reload;
pub mod repair;
pub mod ring;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod topology;
pub mod warm;
