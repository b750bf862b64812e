//! Throttling: what the run does when the server says "too many requests" (429 or
//! `RESOURCE_EXHAUSTED`). A throttle is not a verdict on a membership, so it never spends a
//! request's retries: the whole run pauses and the request is sent again afterwards.
//!
//! - The pause lasts for the `Retry-After` header when there is one; else for the wait the
//!   answer's message names ("try again after 1 minute"); else it grows, 1 s, 2 s, 4 s … 60 s,
//!   until a request passes.
//! - Throttled time is counted run-wide against `--max-throttle-wait`; past it the run stops
//!   sending and what was not sent is `not_attempted` (see `execute`).
//! - A stated wait of 10 s or more means a windowed quota (Velt documents "N requests per
//!   minute" for other endpoints). The quota is inferred from the requests the server accepted
//!   in the window's length before the throttled request, and from then on the run sends that
//!   many at each window's start and waits for the next, instead of probing a closed window.
//! - The job cannot see where the server's windows lie: a request is counted some 20-60 ms
//!   after it leaves, and windows may be anchored on traffic, aligned on the clock, sliding, or
//!   a per-minute token bucket. So each window starts the slowest answer seen (plus a margin)
//!   after the last one ran its length; a throttle on a window's first requests, before any
//!   was accepted, says the window's phase was misjudged, not that the allowance shrank: the
//!   window moves by that guard (doubled each time in a row), the allowance stays. A window
//!   that trips after accepting some requests is read again from what the server accepted in
//!   the length before: never less than that window showed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Stated waits this long or longer are taken as a windowed quota's window.
const WINDOW_MIN: Duration = Duration::from_secs(10);
/// The growing wait when the server names none: 1 s, doubling, at most this.
const GROWING_MAX: Duration = Duration::from_secs(60);
/// Accepted requests older than this are of no use for inferring a window.
const ACCEPTED_KEPT: Duration = Duration::from_secs(600);
/// Added to the slowest answer seen, for the guard between windows.
const GUARD_MARGIN: Duration = Duration::from_millis(100);
/// Answers slower than this say nothing about where a window lies.
const SLOWEST_KEPT: Duration = Duration::from_secs(5);

/// What to do with a throttled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it again once the pause is over.
    Wait,
    /// Waiting more would pass `--max-throttle-wait`: the run stops sending.
    Exhausted,
}

#[derive(Debug)]
struct Window {
    length: Duration,
    /// Requests the server takes per window.
    allowed: u32,
    start: Instant,
    /// Requests sent in the window that began at `start`.
    sent: u32,
    /// Of those, answered without a throttle.
    accepted: u32,
    /// When the quota was inferred: answers to requests sent before it still count.
    learned_at: Instant,
    /// Whether the wait for the next window was counted yet.
    wait_counted: bool,
    /// Time between one window's end and the next one's start: the slowest answer seen and
    /// a margin, doubled by each misjudged phase in a row.
    guard: Duration,
    /// Windows moved in a row for a misjudged phase.
    moved: u32,
}

#[derive(Debug, Default)]
struct State {
    until: Option<Instant>,
    /// When the latest pause began: throttles of requests sent before it say nothing new.
    began: Option<Instant>,
    /// Time paused after throttled answers (overlapping pauses counted once).
    paused: Duration,
    /// Time held back by a learned window.
    held: Duration,
    /// Doublings of the growing wait so far.
    step: u32,
    exhausted: bool,
    window: Option<Window>,
    /// When each accepted request was sent, oldest first.
    accepted: VecDeque<Instant>,
    /// The slowest answer seen, at most `SLOWEST_KEPT`.
    slowest: Duration,
    told: bool,
}

/// The run-wide throttle state, shared by every request.
#[derive(Debug)]
pub struct Throttle {
    max_wait: Duration,
    state: Mutex<State>,
}

impl Throttle {
    pub fn new(max_wait: Duration) -> Throttle {
        Throttle {
            max_wait,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The end of the run-wide pause, if one is running.
    pub fn paused_until(&self) -> Option<Instant> {
        self.lock().until.filter(|&t| t > Instant::now())
    }

    /// Total time the run waited on throttling: pauses and learned windows.
    pub fn waited(&self) -> Duration {
        let s = self.lock();
        s.paused + s.held
    }

    pub fn exhausted(&self) -> bool {
        self.lock().exhausted
    }

    /// A `Retry-After` on an answer that is not a throttle (a 503): the run pauses, but the
    /// time is not throttling.
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.lock();
        if s.until.is_none_or(|cur| cur < until) {
            s.until = Some(until);
        }
    }

    /// An answer that was not a throttle, to a request sent at `sent_at`.
    pub fn on_accepted(&self, sent_at: Instant) {
        let now = Instant::now();
        let mut s = self.lock();
        s.step = 0;
        let took = now.saturating_duration_since(sent_at);
        if took <= SLOWEST_KEPT && took > s.slowest {
            s.slowest = took;
        }
        if let Some(w) = &mut s.window {
            if sent_at >= w.start {
                w.accepted += 1;
                w.moved = 0;
            } else if sent_at < w.learned_at && sent_at + w.length > w.learned_at {
                // In flight when the quota was inferred: the window took it too.
                w.allowed += 1;
            }
        }
        while s
            .accepted
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > ACCEPTED_KEPT)
        {
            s.accepted.pop_front();
        }
        s.accepted.push_back(sent_at);
    }

    /// A throttled answer to a request sent at `sent_at`.
    pub fn on_throttled(
        &self,
        sent_at: Instant,
        retry_after: Option<Duration>,
        message: &str,
    ) -> Verdict {
        let now = Instant::now();
        let mut s = self.lock();
        if s.exhausted {
            return Verdict::Exhausted;
        }
        // Sent before the latest pause began: the closed window that pause waits out.
        if s.began.is_some_and(|b| sent_at <= b) {
            return Verdict::Wait;
        }
        if let Some(wait) = misjudged_phase(&mut s, sent_at, now) {
            // A new pause even if one runs: throttles of the moved window's requests so far
            // belong to it.
            s.began = Some(now);
            return self.pause(&mut s, now, now + wait);
        }
        let stated = retry_after.or_else(|| stated_wait(message));
        let wait = stated.unwrap_or_else(|| {
            let w = Duration::from_secs(1u64 << s.step.min(6)).min(GROWING_MAX);
            s.step += 1;
            w
        });
        let until = now + wait;
        if s.until.is_none_or(|u| u <= now) {
            s.began = Some(now);
        }
        let verdict = self.pause(&mut s, now, until);
        if verdict == Verdict::Wait
            && let Some(length) = stated.filter(|&d| d >= WINDOW_MIN)
        {
            learn(&mut s, sent_at, now, until, length);
        }
        verdict
    }

    /// Pauses the run until `until`, counting only what lengthens the pause running; past
    /// `--max-throttle-wait` the run stops sending instead.
    fn pause(&self, s: &mut State, now: Instant, until: Instant) -> Verdict {
        let from = s.until.map_or(now, |u| u.max(now));
        let added = until.saturating_duration_since(from);
        if s.paused + added > self.max_wait {
            s.exhausted = true;
            return Verdict::Exhausted;
        }
        s.paused += added;
        if s.until.is_none_or(|u| u < until) {
            s.until = Some(until);
        }
        Verdict::Wait
    }

    /// Takes a place in the learned window; `Some(t)`: none is left, ask again at `t`.
    pub fn window_slot(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut s = self.lock();
        let s = &mut *s;
        let w = s.window.as_mut()?;
        let next = w.start + w.length + w.guard;
        if now >= next {
            // A window that took all it allowed, untripped, confirms the allowance.
            let confirmed = w.accepted >= w.allowed;
            // The next window, or (after an idle spell) one from now.
            w.start = if now < next + w.length { next } else { now };
            w.sent = 0;
            w.accepted = 0;
            w.wait_counted = false;
            if confirmed && !s.told {
                s.told = true;
                tell(w.allowed, w.length);
            }
        }
        if now < w.start {
            return Some(w.start);
        }
        if w.sent < w.allowed {
            w.sent += 1;
            return None;
        }
        let next = w.start + w.length + w.guard;
        if !w.wait_counted {
            w.wait_counted = true;
            s.held += next.saturating_duration_since(now);
        }
        Some(next)
    }
}

/// A throttle of one of a learned window's first requests, before the window accepted any:
/// the server's window had not closed yet. The window moves by its guard (doubled each time
/// in a row) and keeps its allowance; returns the wait. `None` for any other throttle.
fn misjudged_phase(s: &mut State, sent_at: Instant, now: Instant) -> Option<Duration> {
    let slowest = s.slowest;
    let w = s.window.as_mut()?;
    if sent_at < w.start || w.accepted > 0 || w.moved >= 3 {
        return None;
    }
    w.guard = (w.guard * 2).max(slowest + GUARD_MARGIN);
    w.moved += 1;
    w.start = now + w.guard;
    w.sent = 0;
    w.wait_counted = false;
    Some(w.guard)
}

/// Infers (or corrects) the windowed quota after a throttle at `now`; the next window starts
/// when the pause ends. The allowance is what the server accepted in the window's length
/// before the throttled request: never less than the window showed.
fn learn(s: &mut State, sent_at: Instant, now: Instant, resume: Instant, length: Duration) {
    let seen = s
        .accepted
        .iter()
        .filter(|&&t| t <= sent_at && t + length > sent_at)
        .count() as u32;
    let (allowed, moved) = match &s.window {
        Some(w) if w.length == length && sent_at >= w.start => (seen.max(w.accepted), w.moved),
        _ => (seen, 0),
    };
    s.window = Some(Window {
        length,
        allowed: allowed.max(1),
        start: resume,
        sent: 0,
        accepted: 0,
        learned_at: now,
        wait_counted: false,
        guard: s.slowest + GUARD_MARGIN,
        moved,
    });
}

/// Says the allowance once, when a window has confirmed it.
fn tell(allowed: u32, length: Duration) {
    let per_minute = f64::from(allowed) * 60.0 / length.as_secs_f64();
    tracing::info!(
        event = "quota_inferred",
        requests = allowed,
        window_s = length.as_secs_f64(),
        message = %format!(
            "the server allows about {} requests a minute; sending that many per window",
            per_minute.round()
        ),
    );
}

/// The wait an answer's message names: "try again after 1 minute", "after 30 seconds",
/// "retry in 2 minutes".
pub fn stated_wait(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '.')
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        if !matches!(*w, "after" | "in") {
            continue;
        }
        let (Some(count), Some(unit)) = (words.get(i + 1), words.get(i + 2)) else {
            continue;
        };
        let count = match *count {
            "a" | "an" | "one" => 1.0,
            n => match n.trim_end_matches('.').parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 && v < 1e6 => v,
                _ => continue,
            },
        };
        let scale = match unit.trim_end_matches('.') {
            "second" | "seconds" | "sec" | "secs" | "s" => 1.0,
            "minute" | "minutes" | "min" | "mins" => 60.0,
            "hour" | "hours" | "h" => 3600.0,
            _ => continue,
        };
        return Some(Duration::from_secs_f64(count * scale));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_named_in_messages() {
        let m = |s| stated_wait(s).map(|d| d.as_secs());
        assert_eq!(
            m("Rate limit exceeded. Please try again after 1 minute."),
            Some(60)
        );
        assert_eq!(m("Too many requests; try again after 30 seconds"), Some(30));
        assert_eq!(m("retry in 2 minutes"), Some(120));
        assert_eq!(m("Try again after a minute."), Some(60));
        assert_eq!(m("Rate limit exceeded. Try again later."), None);
        assert_eq!(m("quota exceeded"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn growing_waits_without_a_hint_and_one_escalation_per_pause() {
        let t = Throttle::new(Duration::from_secs(1800));
        let sent = Instant::now();
        assert_eq!(t.on_throttled(sent, None, "busy"), Verdict::Wait);
        let first = t.paused_until().expect("paused");
        assert_eq!(first - Instant::now(), Duration::from_secs(1));
        // Another request of the same burst does not double the wait.
        assert_eq!(t.on_throttled(sent, None, "busy"), Verdict::Wait);
        assert_eq!(t.paused_until(), Some(first));
        tokio::time::advance(Duration::from_secs(1)).await;
        let resent = Instant::now();
        t.on_throttled(resent, None, "busy");
        assert_eq!(
            t.paused_until().expect("paused") - Instant::now(),
            Duration::from_secs(2)
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        t.on_accepted(Instant::now());
        t.on_throttled(Instant::now(), None, "busy");
        assert_eq!(
            t.paused_until().expect("paused") - Instant::now(),
            Duration::from_secs(1),
            "a request that passed resets the growth"
        );
        assert_eq!(t.waited(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_ends_waiting() {
        let t = Throttle::new(Duration::from_secs(90));
        assert_eq!(
            t.on_throttled(Instant::now(), Some(Duration::from_secs(60)), ""),
            Verdict::Wait
        );
        // Every request throttled: the window is first taken to be misjudged (moved a little,
        // three times at most), then the stated minute would pass the 90 s budget.
        let mut verdicts = Vec::new();
        while let Some(until) = t.paused_until() {
            tokio::time::advance(until - Instant::now()).await;
            verdicts.push(t.on_throttled(Instant::now(), Some(Duration::from_secs(60)), ""));
        }
        assert_eq!(verdicts.last(), Some(&Verdict::Exhausted), "{verdicts:?}");
        assert!(verdicts.len() <= 5, "{verdicts:?}");
        assert!(t.exhausted());
        assert!(t.waited() <= Duration::from_secs(90), "{:?}", t.waited());
    }

    /// 30 accepted in 3 s, then a throttle saying "1 minute".
    async fn learned_thirty() -> (Throttle, Instant) {
        let t = Throttle::new(Duration::from_secs(1800));
        for _ in 0..30 {
            t.on_accepted(Instant::now());
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let msg = "Rate limit exceeded. Please try again after 1 minute.";
        assert_eq!(t.on_throttled(Instant::now(), None, msg), Verdict::Wait);
        let resume = t.paused_until().expect("paused");
        (t, resume)
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_is_learned_from_what_was_accepted_before_the_throttle() {
        let (t, resume) = learned_thirty().await;
        assert_eq!(t.window_slot(), Some(resume), "nothing before the window");
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..30 {
            assert_eq!(t.window_slot(), None);
        }
        // The next window starts a guard after this one has run its minute.
        let next = resume + Duration::from_secs(60) + GUARD_MARGIN;
        assert_eq!(t.window_slot(), Some(next));
        tokio::time::advance(next - Instant::now()).await;
        assert_eq!(t.window_slot(), None, "the next window opens");
        assert_eq!(t.waited(), Duration::from_secs(120) + GUARD_MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_at_a_windows_start_moves_it_and_keeps_the_allowance() {
        let (t, resume) = learned_thirty().await;
        tokio::time::advance(resume - Instant::now()).await;
        assert_eq!(t.window_slot(), None);
        let first = Instant::now();
        tokio::time::advance(Duration::from_millis(40)).await;
        // The server's window had not closed: the first request of ours is throttled.
        let msg = "Rate limit exceeded. Please try again after 1 minute.";
        assert_eq!(t.on_throttled(first, None, msg), Verdict::Wait);
        let until = t.paused_until().expect("paused");
        assert!(
            until - Instant::now() < Duration::from_secs(1),
            "moved by a guard, not a minute: {:?}",
            until - Instant::now()
        );
        tokio::time::advance(until - Instant::now()).await;
        for i in 0..30 {
            assert_eq!(t.window_slot(), None, "slot {i}: the allowance stays 30");
        }
        assert!(t.window_slot().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_trips_early_is_read_again_never_below_what_it_showed() {
        let (t, resume) = learned_thirty().await;
        tokio::time::advance(resume - Instant::now()).await;
        for _ in 0..12 {
            assert_eq!(t.window_slot(), None);
            t.on_accepted(Instant::now());
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Others took the rest of this window: throttled after 12.
        let msg = "Rate limit exceeded. Please try again after 1 minute.";
        assert_eq!(t.window_slot(), None);
        assert_eq!(t.on_throttled(Instant::now(), None, msg), Verdict::Wait);
        let until = t.paused_until().expect("paused");
        tokio::time::advance(until - Instant::now()).await;
        let mut slots = 0;
        while t.window_slot().is_none() {
            slots += 1;
        }
        assert_eq!(slots, 12, "what the window showed, not 1");
    }
}
