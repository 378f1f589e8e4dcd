//! A counter one worker thread adds to and any thread reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// A counter owned by one worker thread. Adding is a plain load and store rather than an atomic
/// read-modify-write: only the owning thread ever adds, so no update can be lost, and the hot
/// path avoids a locked instruction per count. Readers (INFO, `/metrics`) on other threads see
/// a recent value. A reset from another thread can be overwritten by an add that read the old
/// value just before it; CONFIG RESETSTAT runs on the caller's worker, where that cannot happen.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker thread may call it.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_reads_resets() {
        let c = Counter::default();
        c.incr();
        c.add(41);
        assert_eq!(c.get(), 42);
        c.reset();
        assert_eq!(c.get(), 0);
    }
}
