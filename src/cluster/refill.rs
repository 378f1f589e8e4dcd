//! What strata knows of a node's Redis process: its `run_id`, read on every connection strata
//! opens to the node (`backend::connect`). A new `run_id` means the node restarted, perhaps
//! empty. From that moment until a refill has copied to the node every key it should hold
//! (`control::refill`), the node is *refilling*: a miss from it is not believed (a read asks
//! the next replica, and a vote does not count it), so a key whose other copies survive is
//! neither reported missing nor deleted by read repair.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One node's restarts and refills.
#[derive(Debug)]
pub struct Refill {
    /// `repair.refill`: watch for restarts at all (off: nothing is ever refilling).
    enabled: AtomicBool,
    run_id: Mutex<Option<String>>,
    /// Bumped at each restart seen: a refill that started before the latest one does not
    /// end the refilling.
    generation: AtomicU64,
    /// A restart was seen and no refill completed since: the node's misses are not believed.
    due: AtomicBool,
    /// A refill walk runs for the node now.
    running: AtomicBool,
    /// The node refused `INFO server` (an ACL user without it): logged once.
    info_refused: AtomicBool,
    /// Restarts seen.
    pub restarts: AtomicU64,
    /// Refills completed.
    pub runs: AtomicU64,
    /// Keys of other nodes looked at, copied to the node, found there already, and not
    /// copied because of an error.
    pub scanned: AtomicU64,
    pub copied: AtomicU64,
    pub present: AtomicU64,
    pub failed: AtomicU64,
    /// How long the last completed refill took.
    pub last_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for Refill {
    fn default() -> Self {
        Refill {
            enabled: AtomicBool::new(true),
            run_id: Mutex::new(None),
            generation: AtomicU64::new(0),
            due: AtomicBool::new(false),
            running: AtomicBool::new(false),
            info_refused: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            scanned: AtomicU64::new(0),
            copied: AtomicU64::new(0),
            present: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

/// A node's refill state, as INFO shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefillState {
    /// Nothing to do.
    Idle,
    /// Restarted; the refill has not started (the node is down, or the next check is due).
    Due,
    Running,
}

impl RefillState {
    pub fn label(self) -> &'static str {
        match self {
            RefillState::Idle => "idle",
            RefillState::Due => "due",
            RefillState::Running => "running",
        }
    }
}

impl Refill {
    fn lock_run_id(&self) -> MutexGuard<'_, Option<String>> {
        self.run_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `repair.refill` (set at start and by reloads). Turning it off ends any refilling.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        if !on {
            self.due.store(false, Ordering::Relaxed);
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// A connection found the node's `run_id`. True when it differs from the one seen before:
    /// the node restarted and is refilling from now on. The first `run_id` seen only is
    /// remembered (strata cannot know what the node held before it started).
    pub fn observe(&self, run_id: &str) -> bool {
        let mut known = self.lock_run_id();
        let restarted = match known.as_deref() {
            None => false,
            Some(old) => old != run_id,
        };
        if known.as_deref() != Some(run_id) {
            *known = Some(run_id.to_string());
        }
        if restarted {
            // Set under the lock: a connection of another worker that sees this run_id next
            // also sees the node refilling.
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.restarts.fetch_add(1, Ordering::Relaxed);
            if self.enabled() {
                self.due.store(true, Ordering::SeqCst);
            }
        }
        restarted
    }

    /// The `run_id` seen last.
    pub fn run_id(&self) -> Option<String> {
        self.lock_run_id().clone()
    }

    /// The node refused `INFO server`: true the first time (worth a warning).
    pub fn info_refused(&self) -> bool {
        !self.info_refused.swap(true, Ordering::Relaxed)
    }

    /// Whether the node's misses are not to be believed (read on every replicated read).
    #[inline]
    pub fn is_refilling(&self) -> bool {
        self.due.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> RefillState {
        if self.running.load(Ordering::Relaxed) {
            RefillState::Running
        } else if self.is_refilling() {
            RefillState::Due
        } else {
            RefillState::Idle
        }
    }

    /// Claims the refill of the node: `Some(generation)` when one is due and none runs.
    pub fn begin(&self) -> Option<u64> {
        if !self.is_refilling() {
            return None;
        }
        self.running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        Some(self.generation.load(Ordering::SeqCst))
    }

    /// Whether the node restarted again since the refill of `generation` began.
    pub fn superseded(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) != generation
    }

    /// A refill walk ended. `completed`: it walked every node it could (the node is refilled
    /// unless it restarted again meanwhile); otherwise it stays refilling and the refill is
    /// tried again.
    pub fn end(&self, generation: u64, completed: bool, ms: u64, error: Option<String>) {
        if completed {
            self.runs.fetch_add(1, Ordering::Relaxed);
            self.last_ms.store(ms, Ordering::Relaxed);
            // Compare and clear under the run_id lock, which `observe` bumps under.
            let _known = self.lock_run_id();
            if !self.superseded(generation) {
                self.due.store(false, Ordering::SeqCst);
            }
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
        self.running.store(false, Ordering::SeqCst);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The figures, as (name, value), for INFO and `/metrics`.
    pub fn figures(&self) -> [(&'static str, u64); 7] {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("restarts", get(&self.restarts)),
            ("refills", get(&self.runs)),
            ("refill_scanned", get(&self.scanned)),
            ("refill_copied", get(&self.copied)),
            ("refill_present", get(&self.present)),
            ("refill_failed", get(&self.failed)),
            ("refill_last_ms", get(&self.last_ms)),
        ]
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for a in [
            &self.restarts,
            &self.runs,
            &self.scanned,
            &self.copied,
            &self.present,
            &self.failed,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// The `run_id` in an `INFO server` reply (either protocol: the text is searched).
pub fn parse_run_id(info: &[u8]) -> Option<&str> {
    let at = info.windows(7).position(|w| w == b"run_id:")? + 7;
    let rest = info.get(at..)?;
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    let id = std::str::from_utf8(rest.get(..end)?).ok()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_id_starts_refilling_until_a_refill_of_that_restart_completes() {
        let r = Refill::default();
        assert!(!r.observe("a"), "the first run_id is only remembered");
        assert!(!r.observe("a"));
        assert_eq!(r.state(), RefillState::Idle);
        assert!(r.begin().is_none(), "nothing due");
        assert!(r.observe("b"));
        assert!(r.is_refilling());
        let generation = r.begin().expect("due");
        assert!(r.begin().is_none(), "one refill at a time");
        assert_eq!(r.state(), RefillState::Running);
        // Restarted again during the walk: the walk completing does not end the refilling.
        assert!(r.observe("c"));
        assert!(r.superseded(generation));
        r.end(generation, true, 5, None);
        assert!(r.is_refilling());
        let generation = r.begin().expect("due again");
        r.end(generation, false, 0, Some("node down".into()));
        assert!(r.is_refilling(), "an incomplete walk leaves it refilling");
        assert_eq!(r.last_error().as_deref(), Some("node down"));
        let generation = r.begin().expect("tried again");
        r.end(generation, true, 7, None);
        assert!(!r.is_refilling());
        assert_eq!(r.state(), RefillState::Idle);
        assert_eq!(r.figures()[0], ("restarts", 2));
        assert_eq!(r.figures()[1], ("refills", 2));
    }

    #[test]
    fn disabled_never_refills() {
        let r = Refill::default();
        r.set_enabled(false);
        r.observe("a");
        assert!(r.observe("b"));
        assert!(!r.is_refilling());
    }

    #[test]
    fn run_id_from_info_in_either_protocol() {
        let id = "3f2b6e6c0c8d4a1e9b7f5d3c1a2b4c6d8e0f1a2b";
        let resp2 = format!(
            "$40\r\n# Server\r\nredis_version:7.0.15\r\nrun_id:{id}\r\ntcp_port:6379\r\n\r\n"
        );
        assert_eq!(parse_run_id(resp2.as_bytes()), Some(id));
        let resp3 = format!("=50\r\ntxt:# Server\r\nrun_id:{id}\r\n\r\n");
        assert_eq!(parse_run_id(resp3.as_bytes()), Some(id));
        assert_eq!(parse_run_id(b"-NOPERM no\r\n"), None);
        assert_eq!(parse_run_id(b"run_id:\r\n"), None);
    }
}
