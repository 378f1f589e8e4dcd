//! A watch on the machine while the checker runs: a thread of the test process (strata runs in
//! it too) that sleeps 1 ms at a time and notes each wake-up that came much later. On a
//! machine with more runnable threads than cores, a thread may wait that long for a core,
//! strata's threads as well as the test's; the report lists these stalls beside the
//! violations, so that a read staler than the bound can be told from a machine that stopped
//! running strata for as long. Nothing is excused by them: they are printed, not judged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The watch's sleep.
const TICK: Duration = Duration::from_millis(1);
/// A wake-up this much later than asked is a stall.
pub const STALL: Duration = Duration::from_millis(20);

/// A running watch.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<Stall>>,
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
            let mut stalls = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let due = Instant::now() + TICK;
                thread::sleep(TICK);
                let late = Instant::now().saturating_duration_since(due);
                if late >= STALL {
                    stalls.push(Stall { due, late });
                }
            }
            stalls
        });
        Watch { stop, thread }
    }

    /// Stops the watch: the stalls it saw.
    pub fn stop(self) -> Vec<Stall> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the stall watch failed")
    }
}
