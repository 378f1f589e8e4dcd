//! Redis's instantaneous rates (`instantaneous_ops_per_sec`, `instantaneous_input_kbps`,
//! `instantaneous_output_kbps`), computed as Redis's `trackInstantaneousMetric` does: every
//! [`SAMPLE_EVERY`] a sample of each rate since the previous sample is recorded, and a figure
//! is the mean of the last [`SAMPLES`] samples (1.6 s), so it follows the load within about
//! two seconds and falls to 0 that long after the load stops.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Samples averaged.
pub const SAMPLES: usize = 16;

/// The rates sampled: requests, bytes read from clients, bytes written to clients.
pub const METRICS: usize = 3;

#[derive(Debug, Default)]
pub struct Instantaneous(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// When the last sample was taken, and the readings then.
    last: Option<(Instant, [u64; METRICS])>,
    /// Per metric, the last samples (per second), a ring.
    samples: [[u64; SAMPLES]; METRICS],
    next: usize,
}

impl Instantaneous {
    /// Records a sample from the running totals `readings` (counters that only grow, except
    /// when CONFIG RESETSTAT clears them: that sample counts 0).
    pub fn sample(&self, now: Instant, readings: [u64; METRICS]) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, before)) = s.last {
            let ms = now.saturating_duration_since(at).as_millis();
            let slot = s.next;
            for (m, samples) in s.samples.iter_mut().enumerate() {
                let delta = readings
                    .get(m)
                    .zip(before.get(m))
                    .map_or(0, |(now, then)| now.saturating_sub(*then));
                let rate = (u128::from(delta) * 1000)
                    .checked_div(ms)
                    .map_or(0, |r| u64::try_from(r).unwrap_or(u64::MAX));
                if let Some(x) = samples.get_mut(slot) {
                    *x = rate;
                }
            }
            s.next = (slot + 1) % SAMPLES;
        }
        s.last = Some((now, readings));
    }

    /// The mean of the samples of each metric, per second.
    pub fn rates(&self) -> [u64; METRICS] {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.samples
            .map(|samples| samples.iter().sum::<u64>() / SAMPLES as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_fills_in_then_drains() {
        let inst = Instantaneous::default();
        let start = Instant::now();
        let at = |i: u32| start + SAMPLE_EVERY * i;
        // 1000 requests per second: 100 per sample.
        inst.sample(at(0), [0, 0, 0]);
        for i in 1..=8 {
            inst.sample(at(i), [100 * u64::from(i), 0, 0]);
        }
        // Half the samples so far.
        assert_eq!(inst.rates()[0], 500);
        for i in 9..=16 {
            inst.sample(at(i), [100 * u64::from(i), 0, 0]);
        }
        assert_eq!(inst.rates(), [1000, 0, 0]);
        // The load stops: 1.6 s later the rate is 0.
        for i in 17..=32 {
            inst.sample(at(i), [1600, 0, 0]);
        }
        assert_eq!(inst.rates()[0], 0);
        // A reset of the totals counts 0, not a huge rate.
        inst.sample(at(33), [0, 0, 0]);
        assert_eq!(inst.rates()[0], 0);
    }
}
