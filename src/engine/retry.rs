//! How long a retry waits (backoff with jitter), and a retry budget so that a failing API is
//! not met with a retry storm. Which answers are worth a retry is the gate's decision (see
//! `gate::decide`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base * 2^n)]`, but at
/// least `floor` (the protocol's owners ask for at least 1 s after 500/503).
pub fn backoff(
    attempt: u32,
    base: Duration,
    cap: Duration,
    floor: Duration,
    rng: &mut fastrand::Rng,
) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    ceiling.mul_f64(rng.f64()).max(floor.min(cap))
}

/// A retry quota in the spirit of the AWS SDKs': retries spend tokens, successes earn them
/// back. Where the SDKs then fail the request, this job must still add every membership, so an
/// empty budget makes retries wait for tokens, which come back slowly with time. While most
/// attempts fail, retries therefore slow to `refill_per_sec / cost` per second, and since a
/// waiting retry keeps its concurrency slot, new requests slow down with them.
#[derive(Debug)]
pub struct Budget {
    state: Mutex<(f64, Instant)>,
    capacity: f64,
    refill_per_sec: f64,
    warned: AtomicBool,
}

impl Budget {
    pub fn new(capacity: u32, refill_per_sec: f64) -> Budget {
        Budget {
            state: Mutex::new((capacity as f64, Instant::now())),
            capacity: capacity as f64,
            refill_per_sec: refill_per_sec.max(0.01),
            warned: AtomicBool::new(false),
        }
    }

    /// Takes `cost` tokens, or says how long until they are there.
    pub fn try_take(&self, cost: u32) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(s.1).as_secs_f64() * self.refill_per_sec;
        s.0 = (s.0 + earned).min(self.capacity);
        s.1 = now;
        let cost = cost as f64;
        if s.0 >= cost {
            s.0 -= cost;
            return Ok(());
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                event = "retry_budget_exhausted",
                message = "most recent attempts failed; slowing retries down"
            );
        }
        // At least a millisecond: a wait that rounds to nothing would spin.
        Err(Duration::from_secs_f64((cost - s.0) / self.refill_per_sec)
            .max(Duration::from_millis(1)))
    }

    /// A success earns tokens back: the retry's cost for a retried request, 1 otherwise.
    pub fn on_success(&self, retry_cost: Option<u32>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = (s.0 + retry_cost.map_or(1.0, f64::from)).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_an_exponential_cap() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        let mut rng = fastrand::Rng::with_seed(11);
        for attempt in 0..12 {
            let ceiling = (base * 2u32.pow(attempt)).min(cap);
            for _ in 0..50 {
                let d = backoff(attempt, base, cap, Duration::ZERO, &mut rng);
                assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            }
        }
        let waits: Vec<_> = (0..50)
            .map(|_| backoff(3, base, cap, Duration::ZERO, &mut rng))
            .collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "jitter varies");
        let floor = Duration::from_secs(1);
        assert!(backoff(0, base, cap, floor, &mut rng) >= floor);
        assert_eq!(
            backoff(100, base, cap, Duration::from_secs(60), &mut rng),
            cap
        );
    }

    #[test]
    fn budget_runs_dry_and_refills() {
        let b = Budget::new(10, 100.0);
        assert!(b.try_take(5).is_ok());
        assert!(b.try_take(5).is_ok());
        let wait = b.try_take(5).unwrap_err();
        assert!(wait <= Duration::from_millis(51), "{wait:?}");
        b.on_success(Some(5));
        assert!(b.try_take(5).is_ok());
    }
}
