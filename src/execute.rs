//! Sending the plan: one add request per chunk, through one shared governor limiter (retries
//! included) and a run-wide `Retry-After` pause, at most `concurrency` chunks in flight, with
//! retries, bisection of refused chunks, a stop on rejected credentials, a graceful stop on
//! SIGINT/SIGTERM, and every answer turned into per-membership outcomes.
//!
//! Each chunk is one task. A task keeps its members' outcomes in a shared registry while it
//! runs, so that a run cut short still knows what every attempted membership went through, and
//! which requests were in flight (their users may have been added: `unconfirmed`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use governor::{Quota, RateLimiter};
use indicatif::ProgressBar;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{AddResponse, VeltClient};
use crate::outcome::{Detail, Outcome, Status};
use crate::pace::{Concurrency, Pacer};
use crate::plan::{Group, Plan};
use crate::retry::{self, Budget, Class, Pause};
use crate::state::Journal;

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub chunk_size: usize,
    /// Requests per second; the ceiling when `adaptive`.
    pub rate: f64,
    /// `--rate auto`: find the server's limit.
    pub adaptive: bool,
    /// In-flight requests never go beyond this, however much rate x latency asks for.
    pub max_concurrency: usize,
    /// Requests the limiter lets through at once after a quiet spell.
    pub burst: u32,
    pub concurrency: usize,
    pub max_retries: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; a longer one fails the request's users.
    pub max_retry_after: Duration,
    /// How long in-flight requests may finish after the first interrupt.
    pub grace: Duration,
}

impl Default for ExecOptions {
    fn default() -> ExecOptions {
        ExecOptions {
            chunk_size: 100,
            rate: 10.0,
            adaptive: false,
            burst: 1,
            concurrency: 4,
            max_concurrency: 64,
            max_retries: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            grace: Duration::from_secs(10),
        }
    }
}

/// Signals received so far: how many, and the exit code of the first (130 or 143).
pub type Interrupts = watch::Receiver<(u32, u8)>;

/// What a run of requests produced.
#[derive(Debug)]
pub struct Execution {
    /// One per `Plan::memberships` entry.
    pub outcomes: Vec<Outcome>,
    pub requests: u64,
    /// Set when the API refused the credentials and the run stopped.
    pub auth_failure: Option<String>,
    /// The exit code of the signal that stopped the run.
    pub interrupted: Option<u8>,
}

/// The limiter's quota: one request every `1 / rate` seconds, with `burst` allowed at once, so
/// no 1-second window ever holds more than `rate + burst` requests.
pub fn quota(rate: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

type DirectLimiter = governor::DefaultDirectRateLimiter;

/// A running chunk task's view, kept where the main loop can read it if the run is cut short.
struct TaskState {
    members: Vec<u32>,
    outs: Vec<Outcome>,
    /// Positions (into `members`) of the request now on the wire.
    in_flight: Vec<usize>,
}

struct Ctx<'a> {
    plan: &'a Plan,
    client: &'a VeltClient,
    opts: &'a ExecOptions,
    limiter: DirectLimiter,
    pacer: Option<Pacer>,
    concurrency: Concurrency,
    pause: Pause,
    budget: Budget,
    stop: watch::Sender<bool>,
    auth_failure: Mutex<Option<String>>,
    chunk_limit: AtomicUsize,
    requests: AtomicU64,
    tasks: Mutex<HashMap<u64, TaskState>>,
    next_task: AtomicU64,
    lowered: AtomicBool,
}

impl Ctx<'_> {
    fn tasks(&self) -> MutexGuard<'_, HashMap<u64, TaskState>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|&s| s).await;
    }

    /// Waits for any `Retry-After` pause and for the limiter. False if the run is stopping.
    async fn wait_turn(&self) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            if let Some(until) = self.pause.active() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = self.stopped() => return false,
                }
                continue;
            }
            if let Some(pacer) = &self.pacer {
                tokio::select! {
                    _ = tokio::time::sleep_until(pacer.reserve()) => {}
                    _ = self.stopped() => return false,
                }
            }
            tokio::select! {
                _ = precise_until_ready(&self.limiter) => {}
                _ = self.stopped() => return false,
            }
            // A pause that began while this request queued holds it too.
            if self.pause.active().is_none() {
                return !self.stopping();
            }
        }
    }

    /// Sleeps, unless the run stops first. False if it did.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = self.stopped() => false,
        }
    }

    /// Feeds an answer to the rate controller and the concurrency.
    fn observe(&self, response: &AddResponse, latency: Duration) {
        let rate = match &self.pacer {
            Some(pacer) => {
                if is_throttle(response) {
                    pacer.on_throttled();
                } else {
                    pacer.on_accepted();
                }
                pacer.rate()
            }
            None => self.opts.rate,
        };
        self.concurrency.observe(latency, rate);
    }

    /// The server refused a chunk but took both its halves: it limits the list size.
    fn lower_chunk_size(&self, to: usize) {
        let before = self.chunk_limit.fetch_min(to, Ordering::AcqRel);
        if to < before && !self.lowered.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                event = "chunk_size_lowered",
                from = before,
                to = to,
                message = "the server refused a chunk whose halves it accepted; sending smaller chunks for the rest of the run"
            );
        }
    }

    fn set(&self, task: u64, positions: &[usize], f: impl Fn(&mut Outcome)) {
        if let Some(t) = self.tasks().get_mut(&task) {
            for &p in positions {
                f(&mut t.outs[p]);
            }
        }
    }
}

/// Runs every chunk of `plan`, skipping the memberships in `already_added` (from a journal).
pub async fn execute(
    plan: &Plan,
    client: &VeltClient,
    opts: &ExecOptions,
    progress: &ProgressBar,
    mut interrupts: Interrupts,
    mut journal: Option<&mut Journal>,
    already_added: &[u32],
) -> Execution {
    let mut outcomes = vec![Outcome::new(Status::NotAttempted); plan.memberships.len()];
    let confirmed = Arc::new(Detail {
        message: "confirmed added by an earlier run (--state)".into(),
        ..Detail::default()
    });
    for &i in already_added {
        outcomes[i as usize].status = Status::Added;
        outcomes[i as usize].detail = Some(confirmed.clone());
    }
    progress.inc(already_added.len() as u64);

    let ctx = Ctx {
        plan,
        client,
        opts,
        limiter: RateLimiter::direct(quota(opts.rate, opts.burst)),
        pacer: opts.adaptive.then(|| Pacer::new(opts.rate)),
        concurrency: Concurrency::new(opts.concurrency, opts.max_concurrency),
        pause: Pause::default(),
        budget: Budget::new(500, opts.rate.max(1.0)),
        stop: watch::channel(false).0,
        auth_failure: Mutex::new(None),
        chunk_limit: AtomicUsize::new(opts.chunk_size.max(1)),
        requests: AtomicU64::new(0),
        tasks: Mutex::new(HashMap::new()),
        next_task: AtomicU64::new(0),
        lowered: AtomicBool::new(false),
    };
    let pending: Vec<(&Group, Vec<u32>)> = plan
        .groups
        .iter()
        .map(|g| {
            let members = g
                .members
                .iter()
                .copied()
                .filter(|&i| outcomes[i as usize].status != Status::Added)
                .collect();
            (g, members)
        })
        .collect();
    let chunks = Chunks {
        pending: &pending,
        group: 0,
        offset: 0,
        limit: &ctx.chunk_limit,
    };

    let mut answers = futures_util::stream::iter(chunks)
        .map(|(group, members)| run_chunk(&ctx, group, members))
        // Chunk tasks may queue up to the most slots there can be; the slots themselves (see
        // `Concurrency`) bound what is on the wire.
        .buffer_unordered(opts.max_concurrency.max(opts.concurrency).max(1));
    let mut interrupted = None;
    let mut grace_until: Option<Instant> = None;
    let mut signals_open = true;
    let mut aborted = false;
    let mut journal_warned = false;
    loop {
        tokio::select! {
            biased;
            changed = interrupts.changed(), if signals_open => {
                if changed.is_err() {
                    signals_open = false;
                    continue;
                }
                let (count, code) = *interrupts.borrow_and_update();
                if count == 0 {
                    continue;
                }
                if interrupted.is_none() {
                    interrupted = Some(code);
                    tracing::warn!(event = "interrupted", message = "stopping: no new requests; letting in-flight ones finish (a second signal stops at once)");
                    ctx.stop.send_replace(true);
                    grace_until = Some(Instant::now() + opts.grace);
                }
                if count >= 2 {
                    aborted = true;
                    break;
                }
            }
            _ = sleep_until_opt(grace_until) => {
                tracing::warn!(event = "grace_expired", message = "requests still in flight after --grace; stopping");
                aborted = true;
                break;
            }
            next = answers.next() => {
                let Some(id) = next else { break };
                let Some(task) = ctx.tasks().remove(&id) else { continue };
                progress.inc(task.members.len() as u64);
                let mut added = Vec::new();
                for (&i, o) in task.members.iter().zip(task.outs) {
                    if o.status == Status::Added {
                        added.push(i);
                    }
                    outcomes[i as usize] = o;
                }
                if let Some(j) = journal.as_deref_mut()
                    && let Err(e) = j.record(added)
                    && !journal_warned
                {
                    journal_warned = true;
                    tracing::error!(event = "state_write_failed", path = %j.path().display(), message = %e);
                }
            }
        }
    }
    drop(answers);
    if aborted {
        // Tasks cut short: keep what they learnt; a request on the wire may have been applied.
        let cut = Arc::new(Detail {
            message:
                "the run stopped while this request was in flight; the server may have applied it"
                    .into(),
            ..Detail::default()
        });
        for (_, task) in ctx.tasks().drain() {
            let mut outs = task.outs;
            for &p in &task.in_flight {
                outs[p].status = Status::Unconfirmed;
                outs[p].detail = Some(cut.clone());
            }
            for (&i, o) in task.members.iter().zip(outs) {
                outcomes[i as usize] = o;
            }
        }
    }
    if let Some(j) = journal.as_deref()
        && let Err(e) = j.sync()
    {
        tracing::error!(event = "state_write_failed", path = %j.path().display(), message = %e);
    }
    let auth_failure = ctx
        .auth_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    Execution {
        outcomes,
        requests: ctx.requests.load(Ordering::Relaxed),
        auth_failure,
        interrupted,
    }
}

/// Like governor's `until_ready`, but on time. With no burst the limiter counts the next slot
/// from when a request actually went, so every late wake-up is lost for good: a timer that
/// wakes 0.5 ms late costs 10% at 200 requests/s. So this sleeps until just before the slot
/// and yields until it opens (at most ~1 ms of yielding per request).
async fn precise_until_ready(limiter: &DirectLimiter) {
    use governor::clock::Clock;
    let clock = governor::clock::DefaultClock::default();
    loop {
        match limiter.check() {
            Ok(()) => return,
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now());
                if wait > Duration::from_micros(1500) {
                    tokio::time::sleep(wait - Duration::from_micros(1200)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

fn is_throttle(response: &AddResponse) -> bool {
    matches!(response, AddResponse::Rejected { http_status, error_status, .. }
        if *http_status == 429 || error_status.as_deref() == Some("RESOURCE_EXHAUSTED"))
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Cuts each group's pending members into chunks of the current size limit, which may drop
/// during the run.
struct Chunks<'a, 'p> {
    pending: &'p [(&'a Group, Vec<u32>)],
    group: usize,
    offset: usize,
    limit: &'p AtomicUsize,
}

impl<'a, 'p> Iterator for Chunks<'a, 'p> {
    type Item = (&'a Group, &'p [u32]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (group, members) = self.pending.get(self.group)?;
            if self.offset >= members.len() {
                self.group += 1;
                self.offset = 0;
                continue;
            }
            let size = self.limit.load(Ordering::Acquire).max(1);
            let end = (self.offset + size).min(members.len());
            let chunk = &members[self.offset..end];
            self.offset = end;
            return Some((*group, chunk));
        }
    }
}

enum Work {
    Send(Vec<usize>),
    /// After both halves of a refused request: were they taken without another refusal?
    CheckHalves {
        parent_len: usize,
        refusals: u64,
    },
}

enum Sent {
    Done,
    RefusedInvalid,
}

/// Runs one chunk to the end: retries, bisection of refused requests, and smaller pieces when
/// the size limit dropped. Returns the task id under which its outcomes wait in the registry.
async fn run_chunk(ctx: &Ctx<'_>, group: &Group, members: &[u32]) -> u64 {
    let id = ctx.next_task.fetch_add(1, Ordering::Relaxed);
    let n = members.len();
    ctx.tasks().insert(
        id,
        TaskState {
            members: members.to_vec(),
            outs: vec![Outcome::new(Status::NotAttempted); n],
            in_flight: Vec::new(),
        },
    );
    let mut maybe_applied = vec![false; n];
    let mut refusals = 0u64;
    let mut work = vec![Work::Send((0..n).collect())];
    while let Some(item) = work.pop() {
        match item {
            Work::CheckHalves {
                parent_len,
                refusals: before,
            } => {
                if refusals == before {
                    ctx.lower_chunk_size(parent_len.div_ceil(2));
                }
            }
            Work::Send(positions) => {
                if ctx.stopping() {
                    continue;
                }
                let limit = ctx.chunk_limit.load(Ordering::Acquire).max(1);
                if positions.len() > limit {
                    for piece in positions.chunks(limit).rev() {
                        work.push(Work::Send(piece.to_vec()));
                    }
                    continue;
                }
                let sent =
                    send_with_retries(ctx, id, group, members, &positions, &mut maybe_applied)
                        .await;
                if let Sent::RefusedInvalid = sent {
                    refusals += 1;
                    if positions.len() > 1 {
                        // One bad ID sinks the whole request: split until it stands alone.
                        let (left, right) = positions.split_at(positions.len() / 2);
                        work.push(Work::CheckHalves {
                            parent_len: positions.len(),
                            refusals,
                        });
                        work.push(Work::Send(right.to_vec()));
                        work.push(Work::Send(left.to_vec()));
                    }
                }
            }
        }
    }
    id
}

/// Sends `positions` of a chunk until they have a definite answer, the retries run out, or the
/// run stops. The task's outcomes in the registry always hold the latest word.
async fn send_with_retries(
    ctx: &Ctx<'_>,
    task: u64,
    group: &Group,
    members: &[u32],
    positions: &[usize],
    maybe_applied: &mut [bool],
) -> Sent {
    let opts = ctx.opts;
    let mut pending = positions.to_vec();
    let mut attempt = 0u32;
    let mut retry_cost = None;
    loop {
        let permit = tokio::select! {
            p = ctx.concurrency.permits.acquire() => p,
            _ = ctx.stopped() => return Sent::Done,
        };
        if !ctx.wait_turn().await {
            return Sent::Done;
        }
        let users: Vec<&str> = pending
            .iter()
            .map(|&p| ctx.plan.user_at(members[p]))
            .collect();
        if let Some(t) = ctx.tasks().get_mut(&task) {
            t.in_flight.clone_from(&pending);
            for &p in &pending {
                t.outs[p].attempts += 1;
            }
        }
        tracing::debug!(
            event = "request",
            organizationId = &*group.org,
            organizationUserGroupId = &*group.id,
            users = users.len(),
            attempt = attempt + 1,
        );
        let sent_at = Instant::now();
        let response = ctx.client.add_users(&group.org, &group.id, &users).await;
        drop(permit);
        ctx.requests.fetch_add(1, Ordering::Relaxed);
        ctx.observe(&response, sent_at.elapsed());
        if let Some(t) = ctx.tasks().get_mut(&task) {
            t.in_flight.clear();
        }
        let class = retry::classify(&response);
        log_response(group, &response, attempt + 1, class);
        match (class, response) {
            (
                Class::Answered,
                AddResponse::PerUser {
                    http_status,
                    entries,
                },
            ) => {
                ctx.budget.on_success(retry_cost);
                let mut missing = Vec::new();
                let mut details: HashMap<&str, Arc<Detail>> = HashMap::new();
                let mut tasks = ctx.tasks();
                let Some(t) = tasks.get_mut(&task) else {
                    return Sent::Done;
                };
                for &p in &pending {
                    let user = ctx.plan.user_at(members[p]);
                    let out = &mut t.outs[p];
                    match entries.get(user).map(|e| (e.success, e.message.as_deref())) {
                        Some((Some(true), _)) => {
                            out.status = Status::Added;
                            out.detail = None;
                        }
                        Some((Some(false), message)) => {
                            let message = message.unwrap_or("the server reported success: false");
                            out.status = Status::Failed;
                            out.detail = Some(
                                details
                                    .entry(message)
                                    .or_insert_with(|| {
                                        detail(message.to_string(), None, Some(http_status))
                                    })
                                    .clone(),
                            );
                        }
                        other => {
                            let why = if other.is_some() {
                                "the answer's entry for this user has no success flag"
                            } else {
                                "the answer has no entry for this user"
                            };
                            out.status = Status::Unconfirmed;
                            out.detail = Some(detail(why.into(), None, Some(http_status)));
                            missing.push(p);
                        }
                    }
                }
                drop(tasks);
                // Users the answer left out are sent again: an add is idempotent.
                if missing.is_empty() || attempt >= opts.max_retries {
                    return Sent::Done;
                }
                pending = missing;
            }
            (Class::Stop, response) => {
                let (http, status, message) = rejection(&response);
                ctx.set(task, &pending, |o| {
                    o.status = Status::Failed;
                    o.detail = Some(detail(message.clone(), status.clone(), http));
                });
                let mut first = ctx.auth_failure.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(message);
                }
                ctx.stop.send_replace(true);
                return Sent::Done;
            }
            (Class::Refuse { invalid_argument }, response) => {
                let (http, status, message) = rejection(&response);
                let d = detail(message, status, http);
                ctx.set(task, &pending, |o| {
                    o.status = Status::Failed;
                    o.detail = Some(d.clone());
                });
                return if invalid_argument {
                    Sent::RefusedInvalid
                } else {
                    Sent::Done
                };
            }
            (
                Class::Retry {
                    maybe_applied: may,
                    cost,
                },
                response,
            ) => {
                for &p in &pending {
                    maybe_applied[p] |= may;
                }
                let (http, status, message) = rejection(&response);
                let retry_after = match &response {
                    AddResponse::Rejected { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let attempts = attempt + 1;
                let give_up = |message: String, status: Option<String>| {
                    let d = detail(message, status, http);
                    if let Some(t) = ctx.tasks().get_mut(&task) {
                        for &p in &pending {
                            // Never `failed` when an attempt may have been applied.
                            t.outs[p].status = if maybe_applied[p] {
                                Status::Unconfirmed
                            } else {
                                Status::Failed
                            };
                            t.outs[p].detail = Some(d.clone());
                        }
                    }
                };
                if let Some(ra) = retry_after
                    && ra > opts.max_retry_after
                {
                    give_up(
                        format!(
                            "rate limited: the server asked to wait {} s, more than --max-retry-after ({} s); {message}",
                            ra.as_secs(),
                            opts.max_retry_after.as_secs()
                        ),
                        Some("RESOURCE_EXHAUSTED".into()),
                    );
                    return Sent::Done;
                }
                give_up(
                    format!("no definite answer after {attempts} attempt(s): {message}"),
                    status,
                );
                if attempt >= opts.max_retries {
                    return Sent::Done;
                }
                let wait = match retry_after {
                    Some(ra) => {
                        // The whole run waits, not only this request.
                        ctx.pause.extend(Instant::now() + ra);
                        tracing::info!(event = "retry_after", seconds = ra.as_secs_f64());
                        Duration::ZERO
                    }
                    None => {
                        let floor = match http {
                            Some(500 | 503) => Duration::from_secs(1),
                            Some(429) => Duration::from_secs(2),
                            _ => Duration::ZERO,
                        };
                        retry::backoff(attempt, opts.base_backoff, opts.max_backoff, floor)
                    }
                };
                while let Err(more) = ctx.budget.try_take(cost) {
                    if !ctx.sleep(more).await {
                        return Sent::Done;
                    }
                }
                if !ctx.sleep(wait).await {
                    return Sent::Done;
                }
                retry_cost = Some(cost);
            }
            (Class::Answered, _) => return Sent::Done,
        }
        attempt += 1;
    }
}

fn detail(message: String, error_status: Option<String>, http_status: Option<u16>) -> Arc<Detail> {
    Arc::new(Detail {
        message,
        error_status,
        http_status,
    })
}

/// (HTTP status, error status, message) of an answer that is not a per-user result.
fn rejection(response: &AddResponse) -> (Option<u16>, Option<String>, String) {
    match response {
        AddResponse::Rejected {
            http_status,
            error_status,
            message,
            ..
        } => (Some(*http_status), error_status.clone(), message.clone()),
        AddResponse::Transport {
            message,
            maybe_applied,
            ..
        } => {
            let text = if *maybe_applied {
                format!("no answer; the server may have applied it: {message}")
            } else {
                format!("could not connect: {message}")
            };
            (None, None, text)
        }
        AddResponse::PerUser { http_status, .. } => {
            (Some(*http_status), None, "answered".to_string())
        }
    }
}

fn log_response(group: &Group, response: &AddResponse, attempt: u32, class: Class) {
    let org = &*group.org;
    let group = &*group.id;
    let will_retry = matches!(class, Class::Retry { .. });
    match response {
        AddResponse::PerUser { http_status, .. } => tracing::debug!(
            event = "response",
            organizationId = org,
            organizationUserGroupId = group,
            httpStatus = http_status,
            attempt = attempt,
        ),
        AddResponse::Rejected {
            http_status,
            error_status,
            message,
            ..
        } => tracing::warn!(
            event = "request_failed",
            organizationId = org,
            organizationUserGroupId = group,
            httpStatus = http_status,
            errorStatus = error_status.as_deref().unwrap_or(""),
            attempt = attempt,
            retry = will_retry,
            message = message.as_str(),
        ),
        AddResponse::Transport { message, .. } => tracing::warn!(
            event = "request_failed",
            organizationId = org,
            organizationUserGroupId = group,
            attempt = attempt,
            retry = will_retry,
            message = message.as_str(),
        ),
    }
}
