//! The gate every request of a run passes before it is sent, reads and writes alike: the stop
//! signal, the run-wide throttle pause and learned quota window, the adaptive pacer, and the
//! governor limiter that holds the hard `--rate` cap; plus the in-flight slots and the retry
//! budget that the attempt loop draws on.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ExecOptions;
use super::concurrency::Concurrency;
use super::pace::Pacer;
use super::retry::Budget;
use super::throttle::Throttle;
use crate::client::Answer;

/// The limiter's quota: one request every `1 / rate` seconds, with `burst` allowed at once, so
/// no 1-second window ever holds more than `rate + burst` requests.
fn quota(rate: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

/// Governor's clock made tokio's, so that a test on a paused clock paces requests on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl governor::clock::Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

type DirectLimiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

pub(crate) struct Gate {
    limiter: DirectLimiter,
    pub pacer: Pacer,
    pub concurrency: Concurrency,
    pub throttle: Throttle,
    pub budget: Budget,
    /// Cancelled when the run sends nothing more: a signal, refused credentials, a spent
    /// throttle budget.
    stop: CancellationToken,
}

impl Gate {
    pub fn new(opts: &ExecOptions, stop: CancellationToken) -> Gate {
        Gate {
            limiter: RateLimiter::direct_with_clock(quota(opts.rate, opts.burst), TokioClock),
            pacer: if opts.adaptive {
                Pacer::new(opts.rate)
            } else {
                Pacer::ceiling(opts.rate)
            },
            concurrency: Concurrency::new(opts.concurrency, opts.max_concurrency),
            throttle: Throttle::new(opts.max_throttle_wait, opts.max_retry_after),
            budget: Budget::new(500, opts.rate.max(1.0)),
            stop,
        }
    }

    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops the run; true if this call did it (not an earlier one).
    pub fn stop(&self) -> bool {
        let first = !self.stop.is_cancelled();
        self.stop.cancel();
        first
    }

    /// Waits for any run-wide pause, the pacer, a learned quota window and the limiter.
    /// False if the run is stopping.
    pub async fn wait_turn(&self) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            let hold = self
                .throttle
                .paused_until()
                .or_else(|| self.throttle.window_slot());
            if let Some(until) = hold {
                if !self.sleep_until(until).await {
                    return false;
                }
                continue;
            }
            if !self.sleep_until(self.pacer.reserve()).await {
                return false;
            }
            tokio::select! {
                _ = precise_until_ready(&self.limiter) => {}
                _ = self.stop.cancelled() => return false,
            }
            // A pause that began while this request queued holds it too.
            if self.throttle.paused_until().is_none() {
                return !self.stopping();
            }
        }
    }

    /// Sleeps until `t`, unless the run stops first. False if it did.
    pub async fn sleep_until(&self, t: Instant) -> bool {
        // tokio's timer rounds a deadline up to the next millisecond: a slot that is due
        // already must not wait for it (at 200 requests/s that cost 5% of the rate).
        if t <= Instant::now() {
            return !self.stopping();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(t) => !self.stopping(),
            _ = self.stop.cancelled() => false,
        }
    }

    pub async fn sleep(&self, d: Duration) -> bool {
        self.sleep_until(Instant::now() + d).await
    }

    /// Feeds the answer to a request sent at `sent_at` (`None`: a read or creation that
    /// succeeded) to the pacer, the throttle and the in-flight slots.
    pub fn observe(&self, answer: Option<&Answer>, sent_at: Instant) {
        if answer.is_some_and(is_throttle) {
            self.pacer.on_throttled(sent_at);
        } else {
            self.pacer.on_accepted();
            if !matches!(answer, Some(Answer::Transport { .. })) {
                self.throttle.on_accepted(sent_at);
            }
        }
        if self
            .concurrency
            .observe(sent_at.elapsed(), self.pacer.rate())
        {
            self.pacer.on_slow();
        }
    }
}

pub fn is_throttle(answer: &Answer) -> bool {
    matches!(answer, Answer::Rejected { http_status, error_status, .. }
        if *http_status == 429 || error_status.as_deref() == Some("RESOURCE_EXHAUSTED"))
}

/// Like governor's `until_ready`, but on time. With no burst the limiter counts the next slot
/// from when a request actually went, so every late wake-up is lost for good: a timer that
/// wakes 0.5 ms late costs 10% at 200 requests/s. So this sleeps until just before the slot
/// and yields until it opens (at most ~1 ms of yielding per request).
///
/// A paused test clock only moves while the runtime sleeps, so yielding would spin for ever
/// there: once a sleep shows the clock jumping ahead of real time, or one run of yields lasts
/// longer than a real clock ever needs, it sleeps the whole wait instead.
async fn precise_until_ready(limiter: &DirectLimiter) {
    use governor::clock::Clock;
    const MOST_SPIN: Duration = Duration::from_millis(3);
    let mut spin_start: Option<std::time::Instant> = None;
    let mut exact_sleeps = false;
    loop {
        match limiter.check() {
            Ok(()) => return,
            Err(not_until) => {
                let wait = not_until.wait_time_from(TokioClock.now());
                if exact_sleeps {
                    tokio::time::sleep(wait).await;
                } else if wait > Duration::from_micros(1500) {
                    // Another request took the slot: a new run of yields starts after this.
                    spin_start = None;
                    let (clock, real) = (Instant::now(), std::time::Instant::now());
                    tokio::time::sleep(wait - Duration::from_micros(1200)).await;
                    exact_sleeps = clock.elapsed() > real.elapsed() + Duration::from_millis(1);
                } else {
                    let spun = spin_start.get_or_insert_with(std::time::Instant::now);
                    exact_sleeps = spun.elapsed() > MOST_SPIN;
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}
