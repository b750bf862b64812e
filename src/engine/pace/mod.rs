//! Keeping the API busy without tripping it: an adaptive rate for `--rate auto`, and a
//! concurrency that follows Little's law so that in-flight slots never cap the rate.
//!
//! Governor quotas cannot change once built, so the governor limiter stays as the hard cap
//! (`--rate`, or `--max-rate` under `auto`) and this controller is layered on top of it. Three
//! parts, each with its own tests: the [`schedule`] hands out slots on an absolute schedule
//! (each request gets the next slot, `1 / rate` after the previous one, so the schedule does
//! not drift), the [`fit`] reads the server's token bucket off the runs that ended in a
//! throttle, and this module is the policy that moves the schedule's rate by the answers it
//! sees and what the fit tells.
//!
//! What shapes it: every throttle costs a run-wide `Retry-After` pause (a whole second of
//! sending at `Retry-After: 1`), so the controller's job is to find the limit with few
//! throttles and then stay just under it, rather than to oscillate around it as AIMD does
//! (which cost 10-18% of the limit in pauses). As TCP CUBIC does, it remembers where
//! throttling began, returns quickly to just under it, holds there, and probes beyond only
//! after a while, less often each time a probe fails; as the AWS SDKs' adaptive mode, it is
//! driven by throttling answers.
//!
//! - **Slow start**: from 1 request/s, double every half second until the first throttle. The
//!   rate that tripped is an upper bound (`hi`); half of it, a guess at a lower one (`lo`).
//! - **Search**: try `lo` until it is confirmed (held for 2 s worth of requests, at least 30,
//!   without a fresh throttle), then the geometric middle of `lo` and `hi`: held, it becomes
//!   `lo`; throttled, `hi`. Once `hi / lo` is within 2%, hold `lo`. Without a `hi` (after a
//!   probe that passed) the steps grow, 6%, 12%, 24%, ..., so a raised limit is found fast.
//! - **Hold** `lo`. After `probe_after` (30 s, doubling after each failed probe up to 240 s)
//!   **probe** above it for 4 s worth of requests: 3% above, or 5 requests a second above
//!   where 3% is less than that (at most 50% above, at 10 requests/s and below), so that at a
//!   low rate a probe's excess outlasts the server's burst; a probe that passes means the limit
//!   rose: search upwards. A failed probe costs one pause and goes back to `lo`; the
//!   server's bucket, refilled by the pause, goes at once (less one request), since a held
//!   rate under the limit would leave it full for good.
//! - A throttle while holding means `lo` was a little high (the server's burst hid it while
//!   searching) or the limit fell: hold 2% lower, and twice as much lower for each further
//!   throttle that comes within 10 s of the last (2, 4, 8, 16, 32%), so a small excess costs a
//!   small cut and a halved limit is found in five throttles (three once the bucket fit below
//!   knows the server's bucket: the run of each throttle in a row then tells the new limit;
//!   a run too short to tell it to 1% is read high on purpose, so that the next throttle
//!   comes in a longer run that tells it exactly, rather than a low reading being held for
//!   good). After a fall of more than 10% the rate held before is remembered, and probes go
//!   straight back to it every 10 s, six times, so a limit that comes back is followed
//!   within about 10 s. Each failed return probe costs one pause (a
//!   second of sending at `Retry-After: 1`), so the interval trades following a return fast
//!   against holding the fallen limit: 10 s is two pauses in 20 s, about 9% of it.
//! - **Bucket fit**: a throttled run at rate `r` that started from a refilled bucket (after a
//!   pause) emptied it in `t` seconds; `r = L + c / t` across runs gives the limit `L` and
//!   the bucket `c`. The controller holds 0.5% under `L`. A run ends at its first refused
//!   request, not at the first refusal to come back: answers return out of order, so a
//!   refusal of an earlier request of the run that comes back during the pause judges the
//!   run again. A throttle below the fitted limit starts the fit afresh, and throttles in a
//!   row at a held rate do not refit the bucket: runs from before a fall and after it fit no
//!   single bucket.
//!
//! Only fresh throttles count: one answering a request sent before the rate last changed says
//! nothing about the new rate. Confirmations count requests, not time, so a run-wide pause
//! confirms nothing. A fixed `--rate` is a ceiling: the controller steps in below it only
//! after a throttle, and lets go once it holds the ceiling again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub mod fit;
mod schedule;

use fit::Fit;
use schedule::Schedule;

const START_RATE: f64 = 1.0;
/// How far a search's lower bound falls when it is throttled itself.
const LO_CUT: f64 = 0.8;
/// A held rate that trips only after this long without a throttle was right until the limit
/// moved: a streak of cuts from it is a fall worth probing back from.
const LONG_HELD: Duration = Duration::from_secs(10);
const MIN_RATE: f64 = 0.5;
/// A bracket narrower than this (`hi / lo`) is done: hold `lo`.
const TOLERANCE: f64 = 1.02;
/// How far above the held rate a probe goes, and the first growth step after it passes.
const PROBE_STEP: f64 = 0.03;
/// The first cut for a throttle at the held rate; it doubles for each further throttle
/// within `STREAK_WITHIN` of the last, up to `MOST_CUT`.
const FIRST_CUT: f64 = 0.02;
const MOST_CUT: f64 = 0.32;
const STREAK_WITHIN: Duration = Duration::from_secs(10);
/// A streak of cuts that took the rate below this share of where it began: the limit fell.
const FELL_BELOW: f64 = 0.9;
const FIRST_PROBE_AFTER: Duration = Duration::from_secs(30);
const MOST_PROBE_AFTER: Duration = Duration::from_secs(240);
/// After a fall, probes back to the remembered rate this often, this many times.
const RETURN_PROBE_AFTER: Duration = Duration::from_secs(10);
const RETURN_PROBES: u32 = 6;

/// How many requests a rate must send without a fresh throttle to count as held: while
/// searching, 2 s worth (at least 30); a probe above a held rate, 4 s worth (at least 30),
/// since the server's burst hides a small excess for a while. Counted in requests, not time,
/// so that a run-wide pause confirms nothing.
fn confirm_for(rate: f64, phase: Phase) -> u64 {
    let (seconds, least) = match phase {
        Phase::Probe => (4.0, 30),
        Phase::SlowStart => (0.5, 1),
        _ => (2.0, 30),
    };
    ((rate * seconds).ceil() as u64).max(least)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SlowStart,
    Search,
    Hold,
    Probe,
}

/// The policy's state: where the search stands, what a fall left to probe back to, with the
/// schedule it sets and the fit it reads.
#[derive(Debug, Clone)]
struct PacerState {
    schedule: Schedule,
    fit: Fit,
    phase: Phase,
    /// When the rate was last set: throttles of requests sent before then are stale.
    since: Instant,
    /// Requests sent since then.
    sent: u64,
    /// The highest rate held without a throttle, and the lowest that was throttled.
    lo: f64,
    hi: f64,
    /// Whether `lo` was held for a whole confirmation (slow start's half second is too short
    /// to tell).
    lo_confirmed: bool,
    /// Growth steps taken since a probe passed (each twice the last).
    growth: i32,
    probe_after: Duration,
    /// Throttles at the held rate in a row (each within `STREAK_WITHIN` of the last), when
    /// the last came, and the rate held before the first if it held long enough to be worth
    /// coming back to.
    streak: u32,
    streak_at: Option<Instant>,
    streak_from: Option<f64>,
    /// The rate held before the limit last fell, and the probes back to it still to make.
    remembered: Option<f64>,
    return_probes: u32,
    /// How to take back the last judgement of a run, should an earlier request of the same
    /// run turn out to have been throttled too.
    undo: Option<Undo>,
}

/// The state before a run was judged, and the run: from its first slot to the request that
/// was judged throttled.
#[derive(Debug, Clone)]
struct Undo {
    run_start: Instant,
    ended: Instant,
    before: Box<PacerState>,
}

impl PacerState {
    /// How far above `lo` a probe goes: 3%, or enough to send 5 requests a second more (so
    /// that at a low rate a probe's excess outlasts the server's burst within the probe), at
    /// most half as much again.
    fn probe_step(&self) -> f64 {
        (5.0 / self.lo.max(MIN_RATE)).clamp(PROBE_STEP, 0.5)
    }
}

/// The adaptive rate of `--rate auto`, and the rate a fixed `--rate` falls back to when the
/// server throttles below it.
#[derive(Debug)]
pub struct Pacer {
    max_rate: f64,
    /// A fixed `--rate`: the pacer only steps in below it.
    ceiling: bool,
    state: Mutex<PacerState>,
    /// When it was made, for the log.
    born: Instant,
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
        let rate = if ceiling {
            max_rate
        } else {
            START_RATE.min(max_rate)
        };
        Pacer {
            max_rate,
            ceiling,
            born: now,
            state: Mutex::new(PacerState {
                schedule: Schedule::new(rate, !ceiling, now),
                fit: Fit::default(),
                phase: if ceiling {
                    Phase::Hold
                } else {
                    Phase::SlowStart
                },
                since: now,
                sent: 0,
                lo: if ceiling { max_rate } else { 0.0 },
                hi: f64::INFINITY,
                lo_confirmed: ceiling,
                growth: 0,
                probe_after: FIRST_PROBE_AFTER,
                streak: 0,
                streak_at: None,
                streak_from: None,
                remembered: None,
                return_probes: 0,
                undo: None,
            }),
        }
    }

    /// A pacer that knows the server's bucket already, as an earlier fit found it.
    pub fn knowing(self, fit: Fit) -> Pacer {
        self.lock().fit = fit;
        self
    }

    /// What the bucket fit has seen and found so far.
    pub fn fit(&self) -> Fit {
        self.lock().fit.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rate(&self) -> f64 {
        self.lock().schedule.rate()
    }

    /// Takes the next slot on the schedule; the caller waits until then.
    pub fn reserve(&self) -> Instant {
        let mut s = self.lock();
        let now = Instant::now();
        self.tick(&mut s, now);
        if s.schedule.engaged() {
            s.sent += 1;
        }
        s.schedule.reserve(now)
    }

    /// An answer that the server accepted (not throttled).
    pub fn on_accepted(&self) {
        let mut s = self.lock();
        self.tick(&mut s, Instant::now());
    }

    /// Moves to `rate` now.
    fn set(&self, s: &mut PacerState, rate: f64, phase: Phase, now: Instant) {
        let before = s.schedule.rate();
        let rate = rate.clamp(MIN_RATE, self.max_rate);
        s.phase = phase;
        s.since = now;
        s.sent = 0;
        // A ceiling lets the limiter pace alone while it holds the ceiling.
        let engaged = !(self.ceiling && phase == Phase::Hold && rate >= self.max_rate);
        s.schedule.restart(rate, engaged, now);
        if rate != before {
            tracing::debug!(
                event = "rate",
                at_s = format!("{:.2}", (now - self.born).as_secs_f64()),
                from = format!("{before:.2}"),
                to = format!("{rate:.2}"),
                phase = ?phase,
                lo = format!("{:.2}", s.lo),
                hi = format!("{:.2}", s.hi),
            );
        }
    }

    /// Hold `lo`, or search between it and `hi`.
    fn search_or_hold(&self, s: &mut PacerState, now: Instant) {
        if !s.lo_confirmed {
            self.set(s, s.lo, Phase::Search, now);
        } else if s.lo >= self.max_rate {
            self.set(s, self.max_rate, Phase::Hold, now);
        } else if s.hi.is_finite() {
            if s.hi <= s.lo * TOLERANCE {
                self.set(s, s.lo, Phase::Hold, now);
            } else {
                let middle = (s.lo * s.hi).sqrt();
                self.set(s, middle, Phase::Search, now);
            }
        } else {
            let step = s.probe_step() * 2f64.powi(s.growth);
            s.growth += 1;
            self.set(s, s.lo * (1.0 + step), Phase::Search, now);
        }
    }

    /// Time-driven moves: a rate held long enough.
    fn tick(&self, s: &mut PacerState, now: Instant) {
        let held = now.saturating_duration_since(s.since);
        let confirmed = s.sent >= confirm_for(s.schedule.rate(), s.phase);
        match s.phase {
            Phase::SlowStart if held >= Duration::from_millis(500) && confirmed => {
                s.lo = s.schedule.rate();
                if s.schedule.rate() >= self.max_rate {
                    self.set(s, self.max_rate, Phase::Hold, now);
                } else {
                    self.set(s, s.schedule.rate() * 2.0, Phase::SlowStart, now);
                }
            }
            Phase::Probe if confirmed && s.remembered.is_some_and(|r| s.schedule.rate() >= r) => {
                // Back where the limit was before it fell: hold there again.
                s.lo = s.schedule.rate();
                s.hi = f64::INFINITY;
                s.remembered = None;
                s.probe_after = FIRST_PROBE_AFTER;
                self.set(s, s.lo, Phase::Hold, now);
            }
            Phase::Search | Phase::Probe if confirmed => {
                if s.phase == Phase::Probe {
                    // The limit rose: search upwards from here.
                    s.hi = f64::INFINITY;
                    s.growth = 1;
                    s.probe_after = FIRST_PROBE_AFTER;
                }
                s.lo = if s.lo_confirmed {
                    s.lo.max(s.schedule.rate())
                } else {
                    s.schedule.rate()
                };
                s.lo_confirmed = true;
                if s.remembered.is_some_and(|r| s.lo >= r * (1.0 - FIRST_CUT)) {
                    s.remembered = None;
                }
                self.search_or_hold(s, now);
            }
            Phase::Hold if s.schedule.rate() < self.max_rate => {
                let back = s
                    .remembered
                    .filter(|&r| s.return_probes > 0 && r > s.lo * (1.0 + PROBE_STEP));
                let wait = if back.is_some() {
                    RETURN_PROBE_AFTER
                } else {
                    s.probe_after
                };
                if held >= wait {
                    if back.is_some() {
                        s.return_probes -= 1;
                    }
                    let target = back.unwrap_or(s.lo * (1.0 + s.probe_step()));
                    self.set(s, target, Phase::Probe, now);
                }
            }
            _ => {}
        }
    }

    /// The API is slowing down (see `Concurrency::observe`): stop climbing, back to the rate
    /// last held.
    pub fn on_slow(&self) {
        let mut s = self.lock();
        if matches!(s.phase, Phase::Search | Phase::Probe)
            && s.lo_confirmed
            && s.schedule.rate() > s.lo
        {
            let now = Instant::now();
            s.hi = s.hi.min(s.schedule.rate());
            tracing::debug!(
                event = "slowing",
                message = "latency well above its baseline: holding"
            );
            let lo = s.lo;
            self.set(&mut s, lo, Phase::Hold, now);
        }
    }

    /// A 429 / `RESOURCE_EXHAUSTED` to a request sent at `sent_at`.
    pub fn on_throttled(&self, sent_at: Instant) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let now = Instant::now();
        // A throttle answers an earlier rate when its request went before the rate last
        // changed, or, after a throttle, before the pause it brought was over.
        let pause = s.schedule.after_pause();
        if sent_at < s.since || (pause && s.schedule.run_start().is_none_or(|r| sent_at < r)) {
            // Answers come back in random order: a request of the run that was just judged,
            // sent before the one that decided, ended the run sooner. While nothing has
            // gone at the new rate (the pause), the decision is made again with it.
            if s.sent == 0
                && let Some(undo) = s.undo.take()
            {
                if sent_at >= undo.run_start && sent_at < undo.ended {
                    *s = *undo.before;
                    self.judge(s, sent_at, now);
                } else {
                    s.undo = Some(undo);
                }
            }
            return;
        }
        self.judge(s, sent_at, now);
    }

    /// The throttle of a request sent at `sent_at` at the current rate.
    fn judge(&self, s: &mut PacerState, sent_at: Instant, now: Instant) {
        // The snapshot must not hold the one before it.
        s.undo = None;
        let before = s
            .schedule
            .run_start()
            .map(|start| (start, Box::new(s.clone())));
        let tried = s.schedule.rate();
        let this_run = record_run(s, sent_at, tried);
        let in_a_row = s
            .streak_at
            .is_some_and(|t| now.saturating_duration_since(t) < STREAK_WITHIN);
        // Throttles in a row at a held rate: the limit may have moved, and a fit across runs
        // from before and after would mislead (the bucket's size above all).
        let estimate = if s.phase == Phase::Hold && in_a_row {
            None
        } else {
            s.fit.estimate()
        };
        match s.phase {
            Phase::SlowStart => {
                // The rate before held only half a second: a guess to confirm first.
                s.hi = tried;
                s.lo = tried / 2.0;
                s.lo_confirmed = false;
                self.search_or_hold(s, now);
            }
            Phase::Search => {
                s.hi = tried;
                if tried <= s.lo {
                    // `lo` itself is throttled: the limit is lower still, most likely a
                    // little (slow start's last good rate held only half a second).
                    s.lo = tried * LO_CUT;
                    s.lo_confirmed = false;
                }
                match estimate {
                    Some(limit) => self.hold_under(s, limit, tried, now),
                    None => self.search_or_hold(s, now),
                }
            }
            Phase::Probe => {
                if s.remembered.is_none() {
                    s.probe_after = (s.probe_after * 2).min(MOST_PROBE_AFTER);
                }
                s.hi = s.hi.min(tried);
                self.set(s, s.lo, Phase::Hold, now);
                // Back to a rate that held: the bucket the pause refills can go at once.
                let burst = s.fit.bucket().map_or(0, |size| size.floor() as u32);
                s.schedule.burst_after_pause(burst.saturating_sub(1));
            }
            Phase::Hold => self.throttled_holding(s, tried, this_run, estimate, in_a_row, now),
        }
        // What follows starts after the pause this throttle brings.
        s.schedule.pause();
        s.undo = before.map(|(run_start, before)| Undo {
            run_start,
            ended: sent_at,
            before,
        });
    }

    /// A throttle while holding `tried`: hold lower, by more for each throttle in a row, or
    /// just under the limit the bucket fit (or this run, with the bucket's size known) tells.
    fn throttled_holding(
        &self,
        s: &mut PacerState,
        tried: f64,
        this_run: Option<f64>,
        mut estimate: Option<f64>,
        in_a_row: bool,
        now: Instant,
    ) {
        if !in_a_row {
            s.streak = 0;
            // Only a rate that held a while is worth coming back to.
            s.streak_from = (now.saturating_duration_since(s.since) >= LONG_HELD).then_some(tried);
        }
        s.streak += 1;
        s.streak_at = Some(now);
        if s.streak >= 2 {
            // Throttles in a row: the limit may have moved, and runs from before it
            // would mislead the fit. With the bucket's size known, this one run tells
            // the new limit: it emptied the bucket in `took` seconds.
            estimate = s.fit.after_fall(tried, this_run);
        }
        let cut = (FIRST_CUT * 2f64.powi(s.streak as i32 - 1)).min(MOST_CUT);
        s.lo = tried * (1.0 - cut);
        s.hi = tried;
        if let Some(limit) = estimate {
            s.lo = (limit * UNDER).min(tried * (1.0 - FIRST_CUT));
        }
        if let Some(from) = s.streak_from
            && s.lo < from * FELL_BELOW
            && s.remembered.is_none_or(|r| r < from)
        {
            // The limit fell: probe back to where it was, soon and often.
            s.remembered = Some(from);
            s.return_probes = RETURN_PROBES;
        }
        self.set(s, s.lo, Phase::Hold, now);
    }

    /// Holds just under the limit the bucket fit estimates.
    fn hold_under(&self, s: &mut PacerState, limit: f64, tried: f64, now: Instant) {
        s.lo = (limit * UNDER).min(tried * (1.0 - FIRST_CUT));
        s.lo_confirmed = true;
        s.hi = s.hi.min(tried);
        self.set(s, s.lo, Phase::Hold, now);
    }
}

/// Adds the run that ended at the request sent at `sent_at` at rate `tried` to the runs the
/// bucket fit reads, unless it began with the burst after a pause. Returns how long it took.
fn record_run(s: &mut PacerState, sent_at: Instant, tried: f64) -> Option<f64> {
    let start = s
        .schedule
        .run_start()
        .filter(|_| !s.schedule.burst_sent())?;
    let took = sent_at.saturating_duration_since(start).as_secs_f64();
    if took <= 0.0 {
        return None;
    }
    s.fit.record(tried, took);
    tracing::debug!(
        event = "run",
        rate = format!("{tried:.2}"),
        took = format!("{took:.3}")
    );
    Some(took)
}

/// How far under the fitted limit to hold.
const UNDER: f64 = 0.995;

#[cfg(test)]
mod tests;
