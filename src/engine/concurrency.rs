//! In-flight slots: as many as rate x latency needs (Little's law), held back when the API
//! slows down.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

/// In-flight slots that grow to what the rate needs: rate x latency (Little's law), with room
/// for slow answers, up to `--max-concurrency`. They never shrink: a slot that is not needed
/// costs nothing.
///
/// As in Vector's adaptive request concurrency, latency is a signal too: once answers take
/// more than twice as long as the fastest the run has seen (an API that is struggling), the
/// slots stop growing, and [`Concurrency::observe`] says so, so that the rate stops climbing
/// instead of pushing more requests into a queue.
#[derive(Debug)]
pub struct Concurrency {
    pub permits: Semaphore,
    state: Mutex<Slots>,
    max: usize,
}

#[derive(Debug)]
struct Slots {
    current: usize,
    initial: usize,
    /// Moving average of the latency, in seconds, and how many answers it has seen.
    latency: f64,
    samples: u32,
    /// The lowest moving average seen once it had settled: the API's unhurried latency.
    baseline: f64,
}

/// Answers the moving average needs before it is trusted as a baseline.
const SETTLED: u32 = 20;

impl Concurrency {
    pub fn new(initial: usize, max: usize) -> Concurrency {
        let initial = initial.clamp(1, max.max(1));
        Concurrency {
            permits: Semaphore::new(initial),
            state: Mutex::new(Slots {
                current: initial,
                initial,
                latency: 0.0,
                samples: 0,
                baseline: f64::INFINITY,
            }),
            max: max.max(initial),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current(&self) -> usize {
        self.lock().current
    }

    /// Where the slots started and where they ended, for the run's log.
    pub fn raised(&self) -> Option<(usize, usize)> {
        let s = self.lock();
        (s.current > s.initial).then_some((s.initial, s.current))
    }

    /// Feeds one answer's latency; raises the slots when `rate` needs more. True when the
    /// API is slowing down (latency well above its baseline): the caller should not push.
    pub fn observe(&self, latency: Duration, rate: f64) -> bool {
        let mut s = self.lock();
        let l = latency.as_secs_f64();
        s.latency = if s.samples == 0 {
            l
        } else {
            0.8 * s.latency + 0.2 * l
        };
        s.samples = s.samples.saturating_add(1);
        if s.samples >= SETTLED {
            s.baseline = s.baseline.min(s.latency);
        }
        let slow = s.latency > 2.0 * s.baseline + 0.02;
        // (Less a hair, so that float noise does not round 15.000000000000002 up to 16.)
        let needed = ((rate * s.latency * 1.5 - 1e-9).ceil() as usize + 1).min(self.max);
        if needed > s.current && !slow {
            tracing::debug!(
                event = "concurrency_raised",
                from = s.current,
                to = needed,
                latency_ms = (s.latency * 1000.0).round(),
                message = "raising in-flight requests to what rate x latency needs"
            );
            self.permits.add_permits(needed - s.current);
            s.current = needed;
        }
        slow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_follows_rate_times_latency_until_the_api_slows_down() {
        let c = Concurrency::new(4, 64);
        assert!(!c.observe(Duration::from_millis(50), 10.0));
        assert_eq!(c.current(), 4, "10/s x 50 ms needs fewer than 4");
        for _ in 0..SETTLED {
            c.observe(Duration::from_millis(50), 200.0);
        }
        assert_eq!(c.current(), 16);
        assert_eq!(c.permits.available_permits(), 16);
        // The API slows to ten times its latency: no more slots, and the caller is told.
        let mut slow = false;
        for _ in 0..20 {
            slow = c.observe(Duration::from_millis(500), 200.0);
        }
        assert!(slow);
        assert_eq!(c.current(), 16, "not raised against a struggling API");
        assert_eq!(c.raised(), Some((4, 16)));
    }
}
