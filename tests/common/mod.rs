//! Test harness shared by the integration tests: real `redis-server` child processes, an
//! in-process strata server on top of them, and a tiny raw RESP client for exact-byte checks.
//!
//! Every test builds its own nodes and its own strata (free ports), so the tests of one file can
//! run in parallel threads. Nothing here sleeps to wait for a condition: readiness and recovery
//! are polled against a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod layers;
mod node;
mod proxy;
mod raw;
pub mod redis_cluster;
pub mod resp3;
pub mod sentinel;
pub mod tls;
pub mod traffic;

pub use node::*;
pub use proxy::*;
pub use raw::*;

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use strata::cluster::ring::Ring;
use strata::server::{Server, ServerHandle};

/// Default deadline for anything the tests wait on.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Poll interval while waiting on a condition.
pub const POLL_STEP: Duration = Duration::from_millis(20);
/// Read timeout of [`RawClient`]: a bug gives a failed read, never a hung test.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls `check` every [`POLL_STEP`] until it returns `Some`, or panics naming `what` once
/// `deadline` has passed.
pub fn poll_until<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL_STEP);
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Next candidate for a node port. Node ports are taken below the kernel's ephemeral range, so
/// the outgoing connections strata opens (whose local ports come from that range) can never
/// take the port of a node that is down and about to be restarted on it.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

/// A port nothing listens on right now (checked by binding it).
pub fn free_port() -> u16 {
    let high = ephemeral_low().clamp(12_000, 65_000);
    let low = 10_000u32;
    let span = high - low;
    // Start somewhere depending on the process, so two test binaries running at once do not walk
    // the same sequence.
    let _ = NEXT_PORT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7919) % span) + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = low + (n % span);
        if let Ok(port) = u16::try_from(port) {
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    // Fall back to whatever the kernel hands out.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A deterministic permutation of `items` (an LCG-driven Fisher–Yates), so failures reproduce.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = ((state >> 33) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
