//! The pacer's schedule: each request gets the next slot, `1 / rate` after the one before, so
//! the schedule does not drift; after a run-wide pause, a burst may go at once; a schedule that
//! is not engaged holds nothing back (a fixed `--rate` at its ceiling, where the governor
//! limiter paces alone).

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Schedule {
    rate: f64,
    /// Whether the schedule holds requests back.
    engaged: bool,
    next: Instant,
    /// The last slot handed out.
    last_slot: Option<Instant>,
    /// Set by a throttle: the slots that follow start after the run-wide pause, with the
    /// server's bucket refilled. `run_start` is their first slot.
    after_pause: bool,
    run_start: Option<Instant>,
    /// Requests that go at once when the pause ends, on top of the schedule.
    burst: u32,
    burst_sent: bool,
}

impl Schedule {
    pub fn new(rate: f64, engaged: bool, now: Instant) -> Schedule {
        Schedule {
            rate,
            engaged,
            next: now,
            last_slot: None,
            after_pause: false,
            run_start: None,
            burst: 0,
            burst_sent: false,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn engaged(&self) -> bool {
        self.engaged
    }

    /// The next slot (`now` when not engaged, or when a burst goes).
    pub fn reserve(&mut self, now: Instant) -> Instant {
        if !self.engaged {
            return now;
        }
        let slot = self.next.max(now);
        if self.after_pause && self.burst > 0 {
            self.burst -= 1;
            self.burst_sent = true;
        } else {
            self.next = slot + Duration::from_secs_f64(1.0 / self.rate);
        }
        self.last_slot = Some(slot);
        if self.after_pause && self.run_start.is_none() {
            self.run_start = Some(slot);
        }
        slot
    }

    /// Goes on at `rate` from `now`. Slots taken at the old rate stand; the next is one new
    /// interval after the last. A schedule that engages starts at `now`.
    pub fn restart(&mut self, rate: f64, engaged: bool, now: Instant) {
        self.rate = rate;
        self.after_pause = false;
        self.run_start = None;
        self.burst = 0;
        self.burst_sent = false;
        if engaged && !self.engaged {
            self.next = now;
        }
        self.engaged = engaged;
        if let Some(last) = self.last_slot {
            self.next = self.next.min(last + Duration::from_secs_f64(1.0 / rate));
        }
    }

    /// A throttle: what follows starts after the pause it brings.
    pub fn pause(&mut self) {
        self.after_pause = true;
    }

    /// `n` requests go at once when the pause ends.
    pub fn burst_after_pause(&mut self, n: u32) {
        self.burst = n;
    }

    /// Whether the slots since the last restart follow a pause.
    pub fn after_pause(&self) -> bool {
        self.after_pause
    }

    /// The first slot after the pause: where a run from a refilled bucket began.
    pub fn run_start(&self) -> Option<Instant> {
        self.run_start
    }

    /// A run that began with a burst did not start from a full bucket.
    pub fn burst_sent(&self) -> bool {
        self.burst_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_one_interval_apart_and_a_burst_goes_at_once() {
        let now = Instant::now();
        let mut s = Schedule::new(10.0, true, now);
        let gap = Duration::from_millis(100);
        let slots: Vec<Instant> = (0..3).map(|_| s.reserve(now)).collect();
        assert_eq!(slots, [now, now + gap, now + 2 * gap]);
        // A faster rate: the next slot is one new interval after the last.
        s.restart(20.0, true, now);
        assert_eq!(s.reserve(now), now + 2 * gap + gap / 2);
        // After a pause with a burst of two: two at once beside the schedule's first, which
        // starts the run.
        s.pause();
        s.burst_after_pause(2);
        let later = now + Duration::from_secs(5);
        let slots: Vec<Instant> = (0..4).map(|_| s.reserve(later)).collect();
        assert_eq!(slots, [later, later, later, later + gap / 2]);
        assert_eq!(s.run_start(), Some(later));
        assert!(s.burst_sent() && s.after_pause());
        // Not engaged: nothing is held back.
        let mut free = Schedule::new(10.0, false, now);
        assert_eq!((free.reserve(now), free.reserve(now)), (now, now));
    }
}
