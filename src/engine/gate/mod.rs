//! The gate every request of a run passes before it is sent, reads and writes alike: the stop
//! signal, the run-wide throttle pause and learned quota window, the adaptive pacer, and the
//! governor limiter that holds the hard `--rate` cap; plus the in-flight slots and the retry
//! budget that the attempt loop draws on. What an answer means is decided in one place,
//! [`decide::decide`]; the gate carries out the waits that decision asks for.

mod decide;

#[cfg(test)]
pub(crate) use decide::{Class, classify};
pub(crate) use decide::{GaveUp, Limits, Next, Tries, Wait, is_throttle};

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ExecOptions;
use super::concurrency::Concurrency;
use super::pace::Pacer;
use super::retry::{self, Budget};
use super::throttle::{Throttle, Verdict};
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
    pacer: Pacer,
    concurrency: Concurrency,
    throttle: Throttle,
    budget: Budget,
    limits: Limits,
    /// Backoff: exponential with this much (seeded by `ExecOptions::seed`) jitter.
    base_backoff: Duration,
    max_backoff: Duration,
    jitter: std::sync::Mutex<fastrand::Rng>,
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
            throttle: Throttle::new(opts.max_throttle_wait),
            budget: Budget::new(500, opts.rate.max(1.0)),
            limits: Limits {
                max_retries: opts.max_retries,
                max_retry_after: opts.max_retry_after,
            },
            base_backoff: opts.base_backoff,
            max_backoff: opts.max_backoff,
            jitter: std::sync::Mutex::new(
                opts.seed
                    .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            ),
            stop,
        }
    }

    /// What happens after `answer` (`None`: a result) to a request at `tries`.
    pub fn decide(&self, answer: Option<&Answer>, tries: Tries) -> Next {
        decide::decide(answer, tries, self.limits)
    }

    /// An in-flight slot, held through every retry and backoff of one call: while most
    /// attempts fail, new requests slow down instead of joining them. None if the run stops.
    pub async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::select! {
            p = self.concurrency.permits.acquire() => p.ok(),
            _ = self.stopped() => None,
        }
    }

    /// A request succeeded: the retry budget earns back what its retry cost.
    pub fn succeeded(&self, retry_cost: Option<u32>) {
        self.budget.on_success(retry_cost);
    }

    /// Carries out `Next::Pause` for a request sent at `sent_at`: the run pauses as long as
    /// the throttle works out. False if that passes `--max-throttle-wait`: the run stops.
    pub fn pause(&self, sent_at: Instant, retry_after: Option<Duration>, message: &str) -> bool {
        match self.throttle.on_throttled(sent_at, retry_after, message) {
            Verdict::Wait => true,
            Verdict::Exhausted => {
                if self.stop() {
                    tracing::error!(
                        event = "throttle_budget_spent",
                        waited_s = self.throttle.waited().as_secs(),
                        message = "the server kept throttling for as long as --max-throttle-wait allows; sending nothing more"
                    );
                }
                false
            }
        }
    }

    /// Carries out `Next::Retry`'s wait before retry number `retries`, and takes its tokens
    /// from the retry budget. False if the run stops meanwhile.
    pub async fn wait_to_retry(&self, wait: Wait, retries: u32, cost: u32) -> bool {
        let wait = match wait {
            Wait::RunPause(ra) => {
                // The whole run waits, not only this request.
                self.throttle.pause_until(Instant::now() + ra);
                tracing::info!(event = "retry_after", seconds = ra.as_secs_f64());
                Duration::ZERO
            }
            Wait::Backoff { floor } => {
                let mut rng = self.jitter.lock().unwrap_or_else(|e| e.into_inner());
                let n = retries.saturating_sub(1);
                retry::backoff(n, self.base_backoff, self.max_backoff, floor, &mut rng)
            }
        };
        while let Err(more) = self.budget.try_take(cost) {
            if !self.sleep(more).await {
                return false;
            }
        }
        self.sleep(wait).await
    }

    /// How long the run waited on throttling, and whether that spent `--max-throttle-wait`.
    pub fn throttled(&self) -> (Duration, bool) {
        (self.throttle.waited(), self.throttle.exhausted())
    }

    /// The in-flight slots' growth over the run, if they grew.
    pub fn slots_raised(&self) -> Option<(usize, usize)> {
        self.concurrency.raised()
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
