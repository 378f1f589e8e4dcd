//! `client-output-buffer-limit` for one client: the bytes of replies waiting to be written to
//! it (it reads slower than it asks, or not at all). Past the hard limit, or past the soft limit
//! for longer than its seconds, the client is disconnected, as Redis does.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::OutputBufferLimit;

/// The soft-limit clock of one client.
#[derive(Debug, Default)]
pub struct OutputLimit {
    /// Since when the client's output has been past the soft limit.
    soft_since: Option<Instant>,
}

/// Why a client was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Hard { limit: u64 },
    Soft { limit: u64, seconds: u64 },
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Hard { limit } => write!(f, "hard limit {limit} bytes"),
            Exceeded::Soft { limit, seconds } => {
                write!(f, "soft limit {limit} bytes for over {seconds}s")
            }
        }
    }
}

impl OutputLimit {
    /// Checks `pending` bytes of output against `limit` at `now`.
    pub fn check(
        &mut self,
        pending: usize,
        limit: &OutputBufferLimit,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let pending = pending as u64;
        let hard = limit.hard.bytes();
        if hard > 0 && pending > hard {
            return Err(Exceeded::Hard { limit: hard });
        }
        let soft = limit.soft.bytes();
        if soft == 0 || pending <= soft {
            self.soft_since = None;
            return Ok(());
        }
        let since = *self.soft_since.get_or_insert(now);
        if now.saturating_duration_since(since) > Duration::from_secs(limit.soft_seconds) {
            return Err(Exceeded::Soft {
                limit: soft,
                seconds: limit.soft_seconds,
            });
        }
        Ok(())
    }

    /// The output is below every limit there can be: the soft clock stops.
    pub fn clear(&mut self) {
        self.soft_since = None;
    }

    /// When the soft limit runs out, if the client is past it now.
    pub fn soft_deadline(&self, limit: &OutputBufferLimit) -> Option<Instant> {
        self.soft_since
            .map(|since| since + Duration::from_secs(limit.soft_seconds) + Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn limit(hard: u64, soft: u64, seconds: u64) -> OutputBufferLimit {
        OutputBufferLimit {
            hard: ByteSize(hard),
            soft: ByteSize(soft),
            soft_seconds: seconds,
        }
    }

    #[test]
    fn hard_at_once_soft_after_its_seconds() {
        let t0 = Instant::now();
        let l = limit(1000, 100, 2);
        let mut o = OutputLimit::default();
        assert_eq!(o.check(1000, &l, t0), Ok(()));
        assert_eq!(o.check(1001, &l, t0), Err(Exceeded::Hard { limit: 1000 }));
        let mut o = OutputLimit::default();
        assert_eq!(o.check(500, &l, t0), Ok(()));
        assert_eq!(o.check(500, &l, t0 + Duration::from_secs(2)), Ok(()));
        assert_eq!(
            o.check(500, &l, t0 + Duration::from_millis(2001)),
            Err(Exceeded::Soft {
                limit: 100,
                seconds: 2
            })
        );
        // Back under the soft limit: the clock starts again.
        let mut o = OutputLimit::default();
        assert_eq!(o.check(500, &l, t0), Ok(()));
        assert_eq!(o.check(50, &l, t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(o.check(500, &l, t0 + Duration::from_secs(3)), Ok(()));
        assert_eq!(o.check(500, &l, t0 + Duration::from_secs(4)), Ok(()));
        // 0 turns a limit off.
        let mut o = OutputLimit::default();
        assert_eq!(o.check(usize::MAX / 2, &limit(0, 0, 0), t0), Ok(()));
    }
}
