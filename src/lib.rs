//! strata: a Redis-protocol cache proxy that shards keys over plain Redis nodes.
//!
//! # The path of a `GET key`
//!
//! ```text
//! server.rs                  acceptor thread hands the socket to a worker (one event loop each)
//! client/session.rs          reads, parses (protocol/request.rs), keeps the pipeline in order
//! client/dispatch.rs         loads the request's one View (cluster/view.rs), then:
//!                            (with users configured: the access check, client/gate.rs)
//! coordinator/mod.rs         classify: command/classify.rs + command/table, the key's layer
//!                            (policy/layers.rs), the statistics record (coordinator/track.rs)
//! coordinator/plan/near.rs   a layer with a near cache: answered from memory (near/), or
//!                            sent with a PTTL to fill it
//! coordinator/coalesce.rs    a layer with `coalesce`: an identical read in flight is joined
//! coordinator/plan/mod.rs    the planner: one copy → the key's node (cluster/ring.rs), sent
//!                            as received by `forward`; several copies → plan/copies.rs →
//!                            read_one.rs / read_flight.rs (failover, R of N, repair) or
//!                            write_flight.rs (W of N acks; tails watched by repair/)
//! backend/router.rs          the worker's connection to that node (backend/pool.rs)
//! backend/connection.rs      multiplexed, pipelined, FIFO replies (backend/queue.rs);
//!                            replies decoded by protocol/codec.rs
//! coordinator/pending.rs     the pending reply the session polls
//! client/replies.rs          counts it (coordinator/track.rs → stats/) and encodes it
//!                            (client/output.rs); client/session.rs writes it out
//! ```
//!
//! Commands strata answers itself (PING, INFO, CONFIG, CLIENT, COMMAND, STRATA ...) leave the
//! path at `client/dispatch.rs` for `builtin/`.
//!
//! # Layers
//!
//! Modules depend one way, lower layers first (`tests/layering.rs` checks every import):
//!
//! - [`protocol`], [`tls`], [`config`], [`latch`], [`admin`]: RESP parsing, encoding and node
//!   reply decoding; TLS set-ups built from certificate files (rustls); the config schema and
//!   the layers as configured; a one-shot latch; the HTTP server of the admin endpoint.
//! - [`client_tracking`]: `CLIENT TRACKING` for strata's clients: who tracks what (the table
//!   of keys read, BCAST prefixes), and the invalidation messages waiting for each session.
//! - [`command`]: the command table, classification, key positions.
//! - [`stats`]: per-worker counters and latency histograms.
//! - [`near`]: the near cache's per-layer stores (values in strata's memory, bounded in bytes)
//!   and its coherence state (which invalidation streams are live, the fill race's counters).
//! - [`policy`]: the runtime layers (longest-prefix match, statistics, near cache stores) and
//!   TTL rules.
//! - [`acl`]: users and what each may run and touch, compiled from `security` (checked by
//!   `client/gate.rs` and `client/dispatch.rs` before a request runs).
//! - [`cluster`]: node records (identity, health state, hints owed), the ring, the topology
//!   and the [`cluster::View`] a request loads once (settings, topology, layers), swapped
//!   whole by reloads and membership changes; the state of a rebalance that reads consult.
//! - [`backend`]: opening node connections (`connect`: timeout, TLS, AUTH, `HELLO 3`), multiplexed
//!   and dedicated connections, pools, each worker's [`backend::Router`] to the nodes, and
//!   `RespClient`, the request/reply client of the connections one caller holds (heartbeats,
//!   the rebalancer, dedicated connections, `strata warm`, `strata load`); typed node errors.
//! - [`repair`], [`health`]: convergence (write tails, read repair, hinted handoff) and
//!   heartbeats.
//! - [`tracking`]: the near cache's invalidation streams, one RESP3 connection per node with
//!   `CLIENT TRACKING ON BCAST` (docs/near-cache.md).
//! - [`coordinator`]: classify → plan (one planner, one or several copies) → flights → merge.
//! - [`control`]: the client registry, reload, membership changes, rebalance, shutdown,
//!   layer key counts, and the process-wide [`control::Control`] handle.
//! - [`builtin`]: the commands strata answers itself and the `/metrics` rendering.
//! - [`client`]: sessions, their output and limits, transactions, pub/sub.
//! - [`server`], [`signals`]: the composition root (threads, listeners, signals); `main.rs`
//!   parses the command line. [`warm`] (`strata warm`) and [`load`] (`strata load`, the load of
//!   `scripts/failover-check.sh`) are clients of a running proxy; [`bench`] (`strata bench`) is
//!   a load generator for any Redis-protocol endpoint, built on [`protocol`] alone.

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

pub mod acl;
pub mod admin;
pub mod backend;
pub mod bench;
pub mod builtin;
pub mod client;
pub mod client_tracking;
pub mod cluster;
pub mod command;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod health;
pub mod latch;
pub mod load;
pub mod near;
pub mod policy;
pub mod protocol;
pub mod repair;
pub mod server;
pub mod signals;
pub mod stats;
pub mod tls;
pub mod tracking;
pub mod warm;
