//! Keeping the API busy without tripping it: an adaptive rate for `--rate auto`, and a
//! concurrency that follows Little's law so that in-flight slots never cap the rate.
//!
//! Design: governor quotas cannot change once built, so the governor limiter stays as the
//! hard cap (`--rate`, or `--max-rate` under `auto`) and this controller is layered on top of
//! it. The controller paces requests on an absolute schedule (each request gets the next slot,
//! `1 / rate` after the previous one, so the schedule does not drift) and moves `rate` by the
//! answers it sees:
//! - slow start: from 1 request/s, double every second while nothing is throttled;
//! - on 429 / `RESOURCE_EXHAUSTED` (at most one cut per second): fall to 90% of the rate the
//!   server actually accepted over the last second, and remember it;
//! - then additive increase, 2% a second (at least 0.05 request/s), probing above the
//!   remembered limit slowly so that throttled requests stay rare.
//!
//! This is AIMD as in Vector's adaptive request concurrency, with the multiplicative cut
//! anchored to the accepted rate rather than the attempted one, which keeps the average close
//! to the server's limit.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

const START_RATE: f64 = 1.0;
const MIN_RATE: f64 = 0.5;

#[derive(Debug)]
struct PacerState {
    rate: f64,
    /// Whether the schedule holds requests back. A fixed `--rate` (a ceiling) engages it only
    /// once the server throttles below that rate, and lets go once the rate is back at it.
    engaged: bool,
    slow_start: bool,
    next: Instant,
    window_start: Instant,
    accepted: u32,
    throttled_in_window: bool,
    last_cut: Option<Instant>,
}

/// The adaptive rate of `--rate auto`, and the rate a fixed `--rate` falls back to when the
/// server throttles below it.
#[derive(Debug)]
pub struct Pacer {
    max_rate: f64,
    /// A fixed `--rate`: the pacer only steps in below it.
    ceiling: bool,
    state: Mutex<PacerState>,
}

impl Pacer {
    /// `--rate auto`: slow start from 1 request/s, never above `max_rate`.
    pub fn new(max_rate: f64) -> Pacer {
        Pacer::build(max_rate, false)
    }

    /// A fixed `--rate`: a ceiling. Requests go at it (the governor limiter paces them) until
    /// the server throttles; from then on at what the server accepts, climbing back to it.
    pub fn ceiling(rate: f64) -> Pacer {
        Pacer::build(rate, true)
    }

    fn build(max_rate: f64, ceiling: bool) -> Pacer {
        let now = Instant::now();
        Pacer {
            max_rate,
            ceiling,
            state: Mutex::new(PacerState {
                rate: if ceiling {
                    max_rate
                } else {
                    START_RATE.min(max_rate)
                },
                engaged: !ceiling,
                slow_start: !ceiling,
                next: now,
                window_start: now,
                accepted: 0,
                throttled_in_window: false,
                last_cut: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Takes the next slot on the schedule; the caller waits until then.
    pub fn reserve(&self) -> Instant {
        let mut s = self.lock();
        let now = Instant::now();
        if !s.engaged {
            return now;
        }
        let slot = s.next.max(now);
        s.next = slot + Duration::from_secs_f64(1.0 / s.rate);
        slot
    }

    /// An answer that the server accepted (not throttled).
    pub fn on_accepted(&self) {
        let mut s = self.lock();
        s.accepted += 1;
        self.roll_window(&mut s);
    }

    /// A 429 / `RESOURCE_EXHAUSTED`.
    pub fn on_throttled(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        s.throttled_in_window = true;
        if s.last_cut
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        let elapsed = now.duration_since(s.window_start).as_secs_f64();
        // The accepted rate over the window so far is the best estimate of the limit; a window
        // too young to say anything falls back to the rate tried.
        let accepted = if elapsed >= 0.25 {
            f64::from(s.accepted) / elapsed
        } else {
            s.rate
        };
        let before = s.rate;
        s.rate = (0.9 * accepted.min(s.rate)).clamp(MIN_RATE, self.max_rate);
        if !s.engaged {
            s.engaged = true;
            s.next = now;
        }
        s.slow_start = false;
        s.last_cut = Some(now);
        s.window_start = now;
        s.accepted = 0;
        s.throttled_in_window = false;
        tracing::debug!(event = "rate_cut", from = before, to = s.rate);
    }

    fn roll_window(&self, s: &mut PacerState) {
        let now = Instant::now();
        if now.duration_since(s.window_start) < Duration::from_secs(1) {
            return;
        }
        if !s.throttled_in_window {
            s.rate = if s.slow_start {
                s.rate * 2.0
            } else {
                s.rate + (s.rate * 0.02).max(0.05)
            }
            .min(self.max_rate);
            if self.ceiling && s.rate >= self.max_rate {
                s.engaged = false;
            }
        }
        s.window_start = now;
        s.accepted = 0;
        s.throttled_in_window = false;
    }
}

/// In-flight slots that grow to what the rate needs: rate x latency (Little's law), with room
/// for slow answers, up to `--max-concurrency`. They never shrink: a slot that is not needed
/// costs nothing.
#[derive(Debug)]
pub struct Concurrency {
    pub permits: Semaphore,
    state: Mutex<(usize, f64)>,
    max: usize,
}

impl Concurrency {
    pub fn new(initial: usize, max: usize) -> Concurrency {
        let initial = initial.clamp(1, max.max(1));
        Concurrency {
            permits: Semaphore::new(initial),
            state: Mutex::new((initial, 0.0)),
            max: max.max(initial),
        }
    }

    pub fn current(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Feeds one answer's latency; raises the slots when `rate` needs more.
    pub fn observe(&self, latency: Duration, rate: f64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let l = latency.as_secs_f64();
        s.1 = if s.1 == 0.0 { l } else { 0.8 * s.1 + 0.2 * l };
        // (Less a hair, so that float noise does not round 15.000000000000002 up to 16.)
        let needed = ((rate * s.1 * 1.5 - 1e-9).ceil() as usize + 1).min(self.max);
        if needed > s.0 {
            tracing::info!(
                event = "concurrency_raised",
                from = s.0,
                to = needed,
                latency_ms = (s.1 * 1000.0).round(),
                message = "raising in-flight requests to what rate x latency needs"
            );
            self.permits.add_permits(needed - s.0);
            s.0 = needed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_start_doubles_then_a_throttle_cuts_to_the_accepted_rate() {
        let p = Pacer::new(1000.0);
        assert_eq!(p.rate(), 1.0);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_millis(1001)).await;
            p.on_accepted();
        }
        assert_eq!(p.rate(), 32.0);
        // The server took 20 a second of the 32 tried.
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..10 {
            p.on_accepted();
        }
        p.on_throttled();
        let cut = p.rate();
        assert!((cut - 0.9 * 10.0 / 0.5).abs() < 0.5, "{cut}");
        p.on_throttled();
        assert_eq!(p.rate(), cut, "one cut per second at most");
        tokio::time::advance(Duration::from_millis(1001)).await;
        p.on_accepted();
        assert_eq!(
            p.rate(),
            cut,
            "no increase over a second that was throttled"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        p.on_accepted();
        assert!(
            p.rate() > cut && p.rate() < cut * 1.05,
            "additive from here"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slots_follow_the_schedule() {
        let p = Pacer::new(10.0);
        let a = p.reserve();
        let b = p.reserve();
        let c = p.reserve();
        assert_eq!(b - a, Duration::from_secs_f64(1.0 / p.rate()));
        assert_eq!(c - b, b - a);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ceiling_paces_only_after_a_throttle_and_lets_go_at_the_ceiling() {
        let p = Pacer::ceiling(10.0);
        let now = Instant::now();
        assert_eq!(
            (p.reserve(), p.reserve()),
            (now, now),
            "the limiter paces alone"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..3 {
            p.on_accepted();
        }
        p.on_throttled();
        assert!((p.rate() - 0.9 * 6.0).abs() < 0.01, "{}", p.rate());
        let a = p.reserve();
        assert!(p.reserve() > a, "engaged below the ceiling");
        for _ in 0..200 {
            tokio::time::advance(Duration::from_millis(1001)).await;
            p.on_accepted();
        }
        assert_eq!(p.rate(), 10.0);
        let now = Instant::now();
        assert_eq!(
            (p.reserve(), p.reserve()),
            (now, now),
            "let go at the ceiling"
        );
    }

    #[test]
    fn concurrency_follows_rate_times_latency() {
        let c = Concurrency::new(4, 64);
        c.observe(Duration::from_millis(50), 10.0);
        assert_eq!(c.current(), 4, "10/s x 50 ms needs fewer than 4");
        c.observe(Duration::from_millis(50), 200.0);
        assert_eq!(c.current(), 16);
        assert_eq!(c.permits.available_permits(), 16);
        c.observe(Duration::from_secs(5), 200.0);
        assert_eq!(c.current(), 64, "capped");
    }
}
