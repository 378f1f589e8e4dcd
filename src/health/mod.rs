//! Node health: whether strata sends a node requests. Each node is `up` or `down`; heartbeats
//! (`heartbeat.rs`) and what real requests see move it, with hysteresis so one lost packet
//! does not flap it:
//!
//! - `up` → `down` after `failure_threshold` consecutive failures (heartbeat, connection
//!   error, request timeout), or when nothing succeeded for `node_timeout`;
//! - `down` → `up` after `recovery_threshold` consecutive successful heartbeats (a down node
//!   gets no requests, so only heartbeats can bring it back).
//!
//! Every worker reads the state on each request (one relaxed load); transitions are rare and
//! decided with a compare-and-swap, so exactly one observer logs and counts each.

pub mod heartbeat;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::HealthConfig;

/// The thresholds of [`HealthConfig`], as the state machine uses them.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub failures: u32,
    pub recoveries: u32,
    pub node_timeout: Duration,
}

impl From<&HealthConfig> for Thresholds {
    fn from(c: &HealthConfig) -> Thresholds {
        Thresholds {
            failures: c.failure_threshold.max(1),
            recoveries: c.recovery_threshold.max(1),
            node_timeout: c.node_timeout,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds::from(&HealthConfig::default())
    }
}

/// A change of state, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Down(String),
    Up,
}

/// One node's health.
#[derive(Debug)]
pub struct NodeHealth {
    down: AtomicBool,
    /// Consecutive failures while up.
    failures: AtomicU32,
    /// Consecutive successful heartbeats while down.
    recoveries: AtomicU32,
    /// Milliseconds from `epoch` to the last success.
    last_success: AtomicU64,
    went_down: AtomicU64,
    came_up: AtomicU64,
    /// Why the node went down (or the last failure seen while up).
    reason: Mutex<Option<String>>,
    epoch: Instant,
    thresholds: Thresholds,
}

impl NodeHealth {
    /// A node starts `up`: it is tried until it proves otherwise.
    pub fn new(thresholds: Thresholds) -> NodeHealth {
        NodeHealth {
            down: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            recoveries: AtomicU32::new(0),
            last_success: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            came_up: AtomicU64::new(0),
            reason: Mutex::new(None),
            epoch: Instant::now(),
            thresholds,
        }
    }

    /// The hot-path question.
    #[inline]
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> &'static str {
        if self.is_down() {
            "down"
        } else {
            "up"
        }
    }

    /// Transitions so far: (to down, to up).
    pub fn transitions(&self) -> (u64, u64) {
        (
            self.went_down.load(Ordering::Relaxed),
            self.came_up.load(Ordering::Relaxed),
        )
    }

    /// Why the node is down, or the last failure seen.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Time since the last success.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last_success.load(Ordering::Relaxed));
        now.saturating_duration_since(self.epoch)
            .saturating_sub(last)
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A real request was answered. Resets the failure count; does not bring a down node up
    /// (late replies of a node that just went down must not flap it).
    pub fn request_ok(&self, now: Instant) {
        let ms = self.millis(now);
        // Loads first: on the common path nothing changes and no cache line is written.
        if self.last_success.load(Ordering::Relaxed) < ms {
            self.last_success.store(ms, Ordering::Relaxed);
        }
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A heartbeat was answered.
    pub fn heartbeat_ok(&self, now: Instant) -> Option<Transition> {
        self.request_ok(now);
        if !self.is_down() {
            return None;
        }
        let seen = self.recoveries.fetch_add(1, Ordering::Relaxed) + 1;
        if seen >= self.thresholds.recoveries
            && self
                .down
                .compare_exchange(true, false, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.recoveries.store(0, Ordering::Relaxed);
            self.came_up.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut r) = self.reason.lock() {
                *r = None;
            }
            return Some(Transition::Up);
        }
        None
    }

    /// A heartbeat or request failed (connection error, timeout, bad reply).
    pub fn failure(&self, reason: &str) -> Option<Transition> {
        self.recoveries.store(0, Ordering::Relaxed);
        if self.is_down() {
            return None;
        }
        let seen = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(reason.to_string());
        }
        if seen >= self.thresholds.failures {
            let why = format!("{seen} consecutive failures, last: {reason}");
            return self.mark_down(why);
        }
        None
    }

    /// Periodic check (each heartbeat): an up node silent for `node_timeout` goes down.
    pub fn check(&self, now: Instant) -> Option<Transition> {
        if self.is_down() {
            return None;
        }
        let silent = self.silent_for(now);
        if silent < self.thresholds.node_timeout {
            return None;
        }
        let last = self
            .reason()
            .map(|r| format!(", last: {r}"))
            .unwrap_or_default();
        self.mark_down(format!(
            "no answer for {}{last}",
            humantime::format_duration(Duration::from_millis(
                u64::try_from(silent.as_millis()).unwrap_or(u64::MAX)
            ))
        ))
    }

    fn mark_down(&self, why: String) -> Option<Transition> {
        if self
            .down
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.recoveries.store(0, Ordering::Relaxed);
        self.went_down.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(why.clone());
        }
        Some(Transition::Down(why))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn health() -> NodeHealth {
        NodeHealth::new(Thresholds {
            failures: 3,
            recoveries: 2,
            node_timeout: Duration::from_secs(3),
        })
    }

    #[test]
    fn goes_down_after_the_failure_threshold_only() {
        let h = health();
        assert_eq!(h.failure("refused"), None);
        assert_eq!(h.failure("refused"), None);
        assert!(!h.is_down());
        match h.failure("refused") {
            Some(Transition::Down(why)) => assert!(why.contains("3 consecutive failures")),
            other => panic!("expected down, got {other:?}"),
        }
        assert!(h.is_down());
        assert_eq!(
            h.failure("refused"),
            None,
            "already down: no new transition"
        );
        assert_eq!(h.transitions(), (1, 0));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let h = health();
        h.failure("x");
        h.failure("x");
        h.request_ok(Instant::now());
        h.failure("x");
        h.failure("x");
        assert!(!h.is_down());
    }

    #[test]
    fn comes_up_after_the_recovery_threshold_of_heartbeats() {
        let h = health();
        for _ in 0..3 {
            h.failure("x");
        }
        let now = Instant::now();
        h.request_ok(now);
        assert!(h.is_down(), "a late reply does not bring the node up");
        assert_eq!(h.heartbeat_ok(now), None);
        h.failure("again");
        assert_eq!(h.heartbeat_ok(now), None, "a failure restarts the count");
        assert_eq!(h.heartbeat_ok(now), Some(Transition::Up));
        assert!(!h.is_down());
        assert_eq!(h.transitions(), (1, 1));
        assert_eq!(h.reason(), None);
    }

    #[test]
    fn silence_longer_than_node_timeout_marks_down() {
        let h = health();
        let start = h.epoch;
        h.request_ok(start);
        assert_eq!(h.check(start + Duration::from_secs(2)), None);
        match h.check(start + Duration::from_secs(4)) {
            Some(Transition::Down(why)) => assert!(why.starts_with("no answer for 4s"), "{why}"),
            other => panic!("expected down, got {other:?}"),
        }
    }
}
