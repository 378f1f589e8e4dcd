//! A watch on the machine while the checker runs: a thread of the test process (strata runs in
//! it too) that sleeps 1 ms at a time and notes each wake-up that came much later, and, every
//! 10 ms, how long each of strata's worker threads waited for a core since the last look
//! (Linux's `/proc/self/task/<tid>/schedstat`, its second field). On a machine with more
//! runnable threads than cores a thread may wait long for one; the tracking connections'
//! tasks run on worker 0, so while it waits strata's other workers go on serving what the
//! invalidations not yet taken would have removed. The report sets these figures beside the
//! stalest reads and the violations, so that a read staler than the bound can be told from a
//! machine that stopped running strata. Nothing is excused by them: they are printed, not
//! judged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The watch's sleep.
const TICK: Duration = Duration::from_millis(1);
/// A wake-up this much later than asked is a stall.
pub const STALL: Duration = Duration::from_millis(20);

/// How often the worker threads' waits are read, in ticks.
const SAMPLE_TICKS: u32 = 10;

/// A running watch.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Seen>,
}

/// What a watch saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub stalls: Vec<Stall>,
    /// Each look at the worker threads that found one had waited for a core since the last.
    pub waits: Vec<Wait>,
}

/// A worker thread's wait for a core between two looks.
#[derive(Debug, Clone)]
pub struct Wait {
    /// When it was seen (the end of the interval).
    pub at: Instant,
    /// Its name and id (two strata of one test process have threads of the same name).
    pub thread: String,
    pub tid: String,
    pub waited: Duration,
}

impl Seen {
    /// Per worker thread, how long it waited for a core between `from` and `to`; the
    /// longest.
    pub fn longest_wait(&self, from: Instant, to: Instant) -> Option<(String, Duration)> {
        let mut by_thread: HashMap<&str, (&str, Duration)> = HashMap::new();
        for w in self.waits.iter().filter(|w| w.at > from && w.at <= to) {
            by_thread
                .entry(&w.tid)
                .or_insert((&w.thread, Duration::ZERO))
                .1 += w.waited;
        }
        by_thread
            .into_values()
            .max_by_key(|(_, d)| *d)
            .map(|(t, d)| (t.to_string(), d))
    }
}

/// One wake-up later than [`STALL`].
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// When the thread should have woken.
    pub due: Instant,
    /// How much later it did.
    pub late: Duration,
}

impl Watch {
    pub fn start() -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut seen = Seen::default();
            let mut delays: HashMap<String, (String, u64)> = HashMap::new();
            let mut ticks = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let due = Instant::now() + TICK;
                thread::sleep(TICK);
                let late = Instant::now().saturating_duration_since(due);
                if late >= STALL {
                    seen.stalls.push(Stall { due, late });
                }
                ticks += 1;
                if ticks % SAMPLE_TICKS == 0 {
                    look(&mut delays, &mut seen.waits);
                }
            }
            seen
        });
        Watch { stop, thread }
    }

    /// Stops the watch: what it saw.
    pub fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the stall watch failed")
    }
}

/// Reads each strata worker thread's time waited for a core (by thread id: its name, and the
/// nanoseconds read last), noting in `waits` those that grew since the last look. Nothing
/// when `/proc` cannot be read.
fn look(last: &mut HashMap<String, (String, u64)>, waits: &mut Vec<Wait>) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let now = Instant::now();
    for task in tasks.flatten() {
        let dir = task.path();
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = match last.get(&tid) {
            Some((name, _)) => name.clone(),
            None => std::fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        // The workers, and the thread that reads the invalidation streams.
        if !name.starts_with("strata-worker") && name != "strata-streams" {
            continue;
        }
        let Some(delay) = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        else {
            continue;
        };
        if let Some((_, before)) = last.get(&tid) {
            let waited = Duration::from_nanos(delay.saturating_sub(*before));
            if !waited.is_zero() {
                waits.push(Wait {
                    at: now,
                    thread: name.clone(),
                    tid: tid.clone(),
                    waited,
                });
            }
        }
        last.insert(tid, (name, delay));
    }
}
