//! A flag that is set once and can be awaited: node retirement, CLIENT KILL, the start of a
//! drain. Waiters registered before the check are woken by the set that follows it.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Latch {
    set: AtomicBool,
    wake: Notify,
}

impl Latch {
    /// Sets the flag and wakes every waiter; true when this call set it.
    pub fn set(&self) -> bool {
        let first = !self.set.swap(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        first
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Completes once the flag is set.
    pub async fn wait(&self) {
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if self.is_set() {
                return;
            }
            wake.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_is_woken_by_a_later_set_and_a_set_latch_does_not_wait() {
        let latch = Arc::new(Latch::default());
        let l = latch.clone();
        let waiter = tokio::spawn(async move { l.wait().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(latch.set());
        assert!(!latch.set(), "only the first set counts");
        waiter.await.ok();
        latch.wait().await;
        assert!(latch.is_set());
    }
}
