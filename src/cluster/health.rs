//! Node health: whether strata sends a node requests. Each node is `up` or `down`; heartbeats
//! (`health::heartbeat`) and what real requests see move it, with hysteresis so one lost packet
//! does not flap it:
//!
//! - `up` → `down` after `failure_threshold` consecutive failures (heartbeat, connection
//!   error, request timeout), or when nothing succeeded for `node_timeout`. Failures less than
//!   half a heartbeat interval after the last one counted are the same event and count once:
//!   every connection to a node sees its close (or its hang) at about the same moment, and a
//!   node that closed strata's connections (CLIENT KILL, an idle `timeout`) but answers on new
//!   ones must not be marked down for it;
//! - `down` → `up` after `recovery_threshold` consecutive successful heartbeats (a down node
//!   gets no requests, so only heartbeats can bring it back).
//!
//! Every worker reads the state on each request (one relaxed load); transitions are rare and
//! decided with a compare-and-swap, so exactly one observer logs and counts each.

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
    /// Failures closer than this to the last one counted are not counted again (half the
    /// heartbeat interval: a failing node fails every heartbeat, so each of those counts).
    pub same_event: Duration,
}

impl From<&HealthConfig> for Thresholds {
    fn from(c: &HealthConfig) -> Thresholds {
        Thresholds {
            failures: c.failure_threshold.max(1),
            recoveries: c.recovery_threshold.max(1),
            node_timeout: c.node_timeout,
            same_event: c.heartbeat_interval / 2,
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

/// No failure counted.
const NONE: u64 = u64::MAX;

/// One node's health.
#[derive(Debug)]
pub struct NodeHealth {
    down: AtomicBool,
    /// Consecutive failures while up.
    failures: AtomicU32,
    /// Milliseconds from `epoch` to the last failure counted in `failures` ([`NONE`] when
    /// none is, since the last success).
    last_failure: AtomicU64,
    /// Consecutive successful heartbeats while down.
    recoveries: AtomicU32,
    /// Milliseconds from `epoch` to the last success.
    last_success: AtomicU64,
    went_down: AtomicU64,
    came_up: AtomicU64,
    /// Why the node went down (or the last failure seen while up).
    reason: Mutex<Option<String>>,
    epoch: Instant,
    /// Replaced by a reload.
    thresholds: Mutex<Thresholds>,
}

impl NodeHealth {
    /// A node starts `up`: it is tried until it proves otherwise.
    pub fn new(thresholds: Thresholds) -> NodeHealth {
        NodeHealth {
            down: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            last_failure: AtomicU64::new(NONE),
            recoveries: AtomicU32::new(0),
            last_success: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            came_up: AtomicU64::new(0),
            reason: Mutex::new(None),
            epoch: Instant::now(),
            thresholds: Mutex::new(thresholds),
        }
    }

    fn thresholds(&self) -> Thresholds {
        *self.thresholds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New thresholds (a reload); they apply from the next observation.
    pub fn set_thresholds(&self, thresholds: Thresholds) {
        *self.thresholds.lock().unwrap_or_else(|e| e.into_inner()) = thresholds;
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
            self.last_failure.store(NONE, Ordering::Relaxed);
        }
    }

    /// A heartbeat was answered.
    pub fn heartbeat_ok(&self, now: Instant) -> Option<Transition> {
        self.request_ok(now);
        if !self.is_down() {
            return None;
        }
        let seen = self.recoveries.fetch_add(1, Ordering::Relaxed) + 1;
        if seen >= self.thresholds().recoveries
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
        self.failure_at(reason, Instant::now())
    }

    fn failure_at(&self, reason: &str, now: Instant) -> Option<Transition> {
        self.recoveries.store(0, Ordering::Relaxed);
        if self.is_down() {
            return None;
        }
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(reason.to_string());
        }
        if !self.new_event(now) {
            return None;
        }
        let seen = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if seen >= self.thresholds().failures {
            let why = format!("{seen} consecutive failures, last: {reason}");
            return self.mark_down(why);
        }
        None
    }

    /// Claims the failure at `now` as a new event: false when one was counted less than
    /// `same_event` before (or concurrently, by another connection).
    fn new_event(&self, now: Instant) -> bool {
        let ms = self.millis(now);
        let window = u64::try_from(self.thresholds().same_event.as_millis()).unwrap_or(u64::MAX);
        let mut last = self.last_failure.load(Ordering::Relaxed);
        loop {
            if last != NONE && ms.saturating_sub(last) < window {
                return false;
            }
            match self.last_failure.compare_exchange_weak(
                last,
                ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now_last) => last = now_last,
            }
        }
    }

    /// The node refused strata's credentials: down at once, with `reason` as the reason. No
    /// threshold: a refusal is not a chance event that the next attempt may not meet, and
    /// requests sent meanwhile would only fail the same way. Heartbeats bring it back up as
    /// after any failure (once a reload gave it the right credentials).
    pub fn refused(&self, reason: &str) -> Option<Transition> {
        self.recoveries.store(0, Ordering::Relaxed);
        self.mark_down(reason.to_string())
    }

    /// Periodic check (each heartbeat): an up node silent for `node_timeout` goes down.
    pub fn check(&self, now: Instant) -> Option<Transition> {
        if self.is_down() {
            return None;
        }
        let silent = self.silent_for(now);
        if silent < self.thresholds().node_timeout {
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
        // The reason's lock is held across the flip: a reader that sees `down` and then asks
        // for the reason (INFO, STRATA NODES) waits for this one instead of reading the
        // state before it was given.
        let mut reason = self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self
            .down
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.last_failure.store(NONE, Ordering::Relaxed);
        self.recoveries.store(0, Ordering::Relaxed);
        self.went_down.fetch_add(1, Ordering::Relaxed);
        *reason = Some(why.clone());
        Some(Transition::Down(why))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAME_EVENT: Duration = Duration::from_millis(500);

    fn health() -> NodeHealth {
        NodeHealth::new(Thresholds {
            failures: 3,
            recoveries: 2,
            node_timeout: Duration::from_secs(3),
            same_event: SAME_EVENT,
        })
    }

    #[test]
    fn refused_credentials_mark_down_at_once_and_once() {
        let h = health();
        let t = h.refused("authentication failed: WRONGPASS");
        assert!(
            matches!(&t, Some(Transition::Down(r)) if r == "authentication failed: WRONGPASS"),
            "{t:?}"
        );
        assert!(h.is_down());
        assert_eq!(h.refused("authentication failed: WRONGPASS"), None);
        assert_eq!(h.transitions(), (1, 0));
    }

    /// The instant `n` same-event windows after the node's creation.
    fn at(h: &NodeHealth, n: u32) -> Instant {
        h.epoch + SAME_EVENT * n
    }

    #[test]
    fn goes_down_after_the_failure_threshold_only() {
        let h = health();
        assert_eq!(h.failure_at("refused", at(&h, 1)), None);
        assert_eq!(h.failure_at("refused", at(&h, 2)), None);
        assert!(!h.is_down());
        match h.failure_at("refused", at(&h, 3)) {
            Some(Transition::Down(why)) => assert!(why.contains("3 consecutive failures")),
            other => panic!("expected down, got {other:?}"),
        }
        assert!(h.is_down());
        assert_eq!(
            h.failure_at("refused", at(&h, 4)),
            None,
            "already down: no new transition"
        );
        assert_eq!(h.transitions(), (1, 0));
    }

    #[test]
    fn failures_at_the_same_moment_count_once() {
        let h = health();
        // Every connection sees the node close them: one event.
        for _ in 0..10 {
            assert_eq!(h.failure_at("connection closed by node", at(&h, 1)), None);
        }
        let almost = at(&h, 2) - Duration::from_millis(1);
        assert_eq!(h.failure_at("heartbeat: closed", almost), None);
        assert!(!h.is_down(), "one burst of failures is one failure");
        assert_eq!(h.reason().as_deref(), Some("heartbeat: closed"));
        // A window later it counts again.
        assert_eq!(h.failure_at("refused", at(&h, 2)), None);
        assert!(h.failure_at("refused", at(&h, 3)).is_some());
        assert!(h.is_down());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let h = health();
        h.failure_at("x", at(&h, 1));
        h.failure_at("x", at(&h, 2));
        h.request_ok(at(&h, 2));
        // A failure right after a success counts, even within the window.
        h.failure_at("x", at(&h, 2));
        h.failure_at("x", at(&h, 3));
        assert!(!h.is_down());
        assert!(h.failure_at("x", at(&h, 4)).is_some());
    }

    #[test]
    fn comes_up_after_the_recovery_threshold_of_heartbeats() {
        let h = health();
        for n in 1..=3 {
            h.failure_at("x", at(&h, n));
        }
        assert!(h.is_down());
        let now = at(&h, 4);
        h.request_ok(now);
        assert!(h.is_down(), "a late reply does not bring the node up");
        assert_eq!(h.heartbeat_ok(now), None);
        h.failure("again");
        assert_eq!(h.heartbeat_ok(now), None, "a failure restarts the count");
        assert_eq!(h.heartbeat_ok(now), Some(Transition::Up));
        assert!(!h.is_down());
        assert_eq!(h.transitions(), (1, 1));
        assert_eq!(h.reason(), None);
        // Up again: failures count from zero.
        assert_eq!(h.failure_at("y", at(&h, 5)), None);
        assert_eq!(h.failure_at("y", at(&h, 6)), None);
        assert!(h.failure_at("y", at(&h, 7)).is_some());
        assert_eq!(h.transitions(), (2, 1));
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
