//! Sending the plan: one add request per chunk, through one shared governor limiter (retries
//! included) and a run-wide `Retry-After` pause, at most `concurrency` chunks in flight, with
//! retries, bisection of refused chunks, a stop on rejected credentials, a graceful stop on
//! SIGINT/SIGTERM, and every answer turned into per-membership outcomes.
//!
//! Each chunk is one task. A task keeps its members' outcomes in a shared registry while it
//! runs, so that a run cut short still knows what every attempted membership went through, and
//! which requests were in flight (their users may have been added: `unconfirmed`).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use governor::{Quota, RateLimiter};
use indicatif::ProgressBar;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::{MaxRemovals, Mode};
use crate::client::{AddResponse, VeltClient};
use crate::outcome::{Detail, Outcome, Status};
use crate::pace::{Concurrency, Pacer};
use crate::plan::{Group, Plan};
use crate::retry::{self, Budget, Class};
use crate::state::Journal;
use crate::throttle::{Throttle, Verdict};

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
    /// Longest `Retry-After` honoured; a longer one gives the request's users up.
    pub max_retry_after: Duration,
    /// Most time the run as a whole waits on throttling before it stops sending.
    pub max_throttle_wait: Duration,
    /// How long in-flight requests may finish after the first interrupt.
    pub grace: Duration,
    pub mode: Mode,
    pub max_removals: MaxRemovals,
    pub allow_empty: bool,
    pub create_missing_groups: bool,
    /// Members per page when reading groups.
    pub page_size: u32,
    /// Read (delta and mirror) and plan, but send no writes.
    pub dry_run: bool,
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
            max_throttle_wait: Duration::from_secs(30 * 60),
            grace: Duration::from_secs(10),
            mode: Mode::Add,
            max_removals: MaxRemovals::Percent(10.0),
            allow_empty: false,
            create_missing_groups: false,
            page_size: 1000,
            dry_run: false,
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
    /// Mirror mode: groups whose members could not be read, so their removals are unknown.
    pub unread_groups: u64,
    /// Requests by HTTP status of the answer (`none`: no answer), reads and writes alike.
    pub requests_by_status: BTreeMap<String, u64>,
    /// Requests sent again.
    pub retries: u64,
    /// Requests answered 429 / `RESOURCE_EXHAUSTED`.
    pub throttled: u64,
    /// How long the run waited on throttling.
    pub throttled_for: Duration,
    /// Set when the run stopped sending because throttling outlasted `--max-throttle-wait`.
    pub throttle_exhausted: bool,
    /// The first failure to write the resume journal: a resume may resend what it missed.
    pub journal_error: Option<String>,
}

/// The limiter's quota: one request every `1 / rate` seconds, with `burst` allowed at once, so
/// no 1-second window ever holds more than `rate + burst` requests.
pub fn quota(rate: f64, burst: u32) -> Quota {
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

/// A running chunk task's view, kept where the main loop can read it if the run is cut short.
struct TaskState {
    members: Vec<u32>,
    outs: Vec<Outcome>,
    /// Positions (into `members`) of the request now on the wire.
    in_flight: Vec<usize>,
}

/// What every request of a run shares, reads and writes alike: the limiter, the pacer, the
/// concurrency, the `Retry-After` pause, the retry budget and the stop signal.
struct Shared<'a> {
    client: &'a VeltClient,
    opts: &'a ExecOptions,
    limiter: DirectLimiter,
    pacer: Pacer,
    concurrency: Concurrency,
    throttle: Throttle,
    budget: Budget,
    stop: watch::Sender<bool>,
    auth_failure: Mutex<Option<String>>,
    chunk_limit: AtomicUsize,
    lowered: AtomicBool,
    /// `--create-missing-groups`: each group is created at most once per run.
    created: Mutex<HashMap<GroupKey, Arc<Creation>>>,
    by_status: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
    throttled: AtomicU64,
    /// Whether answers naming users never sent were warned about.
    strays_warned: AtomicBool,
}

/// The creation of one group: done once, its result shared by every chunk that waited.
type Creation = tokio::sync::OnceCell<Result<(), String>>;
/// (organization, group).
type GroupKey = (Box<str>, Box<str>);

/// One run of chunk tasks over a plan.
struct Ctx<'a> {
    shared: &'a Shared<'a>,
    plan: &'a Plan,
    tasks: Mutex<HashMap<u64, TaskState>>,
    next_task: AtomicU64,
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Shared<'a>;

    fn deref(&self) -> &Shared<'a> {
        self.shared
    }
}

impl Ctx<'_> {
    fn tasks(&self) -> MutexGuard<'_, HashMap<u64, TaskState>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, task: u64, positions: &[usize], f: impl Fn(&mut Outcome)) {
        if let Some(t) = self.tasks().get_mut(&task) {
            for &p in positions {
                f(&mut t.outs[p]);
            }
        }
    }
}

impl<'a> Shared<'a> {
    fn new(client: &'a VeltClient, opts: &'a ExecOptions) -> Shared<'a> {
        Shared {
            client,
            opts,
            limiter: RateLimiter::direct_with_clock(quota(opts.rate, opts.burst), TokioClock),
            pacer: if opts.adaptive {
                Pacer::new(opts.rate)
            } else {
                Pacer::ceiling(opts.rate)
            },
            concurrency: Concurrency::new(opts.concurrency, opts.max_concurrency),
            throttle: Throttle::new(opts.max_throttle_wait, opts.max_retry_after),
            budget: Budget::new(500, opts.rate.max(1.0)),
            stop: watch::channel(false).0,
            auth_failure: Mutex::new(None),
            chunk_limit: AtomicUsize::new(opts.chunk_size.max(1)),
            lowered: AtomicBool::new(false),
            created: Mutex::new(HashMap::new()),
            by_status: Mutex::new(BTreeMap::new()),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            strays_warned: AtomicBool::new(false),
        }
    }

    /// Counts one request and its answer (`None`: a read or creation that succeeded).
    fn count(&self, response: Option<&AddResponse>) {
        let code = match response {
            None => "200".to_string(),
            Some(
                AddResponse::PerUser { http_status, .. }
                | AddResponse::Rejected { http_status, .. },
            ) => http_status.to_string(),
            Some(AddResponse::Transport { .. }) => "none".to_string(),
        };
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
        if response.is_some_and(is_throttle) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The run's result, with the request counts so far.
    fn execution(
        &self,
        outcomes: Vec<Outcome>,
        interrupted: Option<u8>,
        unread_groups: u64,
    ) -> Execution {
        let by_status = self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Execution {
            outcomes,
            requests: by_status.values().sum(),
            auth_failure: self.take_auth_failure(),
            interrupted,
            unread_groups,
            requests_by_status: by_status,
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            throttled_for: self.throttle.waited(),
            throttle_exhausted: self.throttle.exhausted(),
            journal_error: None,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|&s| s).await;
    }

    /// Waits for any run-wide pause, the pacer, a learned quota window and the limiter.
    /// False if the run is stopping.
    async fn wait_turn(&self) -> bool {
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
                _ = self.stopped() => return false,
            }
            // A pause that began while this request queued holds it too.
            if self.throttle.paused_until().is_none() {
                return !self.stopping();
            }
        }
    }

    /// Sleeps until `t`, unless the run stops first. False if it did.
    async fn sleep_until(&self, t: Instant) -> bool {
        // tokio's timer rounds a deadline up to the next millisecond: a slot that is due
        // already must not wait for it (at 200 requests/s that cost 5% of the rate).
        if t <= Instant::now() {
            return !self.stopping();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(t) => !self.stopping(),
            _ = self.stopped() => false,
        }
    }

    /// Sleeps, unless the run stops first. False if it did.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = self.stopped() => false,
        }
    }

    /// Feeds the answer to a request sent at `sent_at` (`None`: a read or creation that
    /// succeeded) to the rate controller, the throttle and the concurrency.
    fn observe(&self, response: Option<&AddResponse>, sent_at: Instant) {
        if response.is_some_and(is_throttle) {
            self.pacer.on_throttled();
        } else {
            self.pacer.on_accepted();
            if !matches!(response, Some(AddResponse::Transport { .. })) {
                self.throttle.on_accepted(sent_at);
            }
        }
        self.concurrency
            .observe(sent_at.elapsed(), self.pacer.rate());
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

    fn auth_failure_seen(&self) -> bool {
        self.auth_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn take_auth_failure(&self) -> Option<String> {
        self.auth_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn fail_auth(&self, message: String) {
        let mut first = self.auth_failure.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(message);
        }
        self.stop.send_replace(true);
    }

    /// One call that is not a chunk of users (a page read, a group creation), with the same
    /// limiter, classification, backoff, `Retry-After` and budget as the adds.
    async fn call<T, F, Fut>(&self, what: &str, group: &Group, mut send: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AddResponse>>,
    {
        let opts = self.opts;
        let mut attempt = 0u32;
        let mut retry_cost = None;
        loop {
            let permit = tokio::select! {
                p = self.concurrency.permits.acquire() => p,
                _ = self.stopped() => return Err(CallError::Stopped),
            };
            if !self.wait_turn().await {
                return Err(CallError::Stopped);
            }
            tracing::debug!(
                event = what,
                organizationId = &*group.org,
                organizationUserGroupId = &*group.id,
                attempt = attempt + 1,
            );
            let sent_at = Instant::now();
            let result = send().await;
            drop(permit);
            let elapsed = sent_at.elapsed();
            self.count(result.as_ref().err());
            self.observe(result.as_ref().err(), sent_at);
            let response = match result {
                Ok(value) => {
                    self.budget.on_success(retry_cost);
                    tracing::debug!(
                        event = "response",
                        call = what,
                        organizationId = &*group.org,
                        organizationUserGroupId = &*group.id,
                        httpStatus = 200,
                        attempt = attempt + 1,
                        elapsed_ms = elapsed.as_millis() as u64,
                    );
                    return Ok(value);
                }
                Err(response) => response,
            };
            let class = retry::classify(&response);
            log_response(group, &response, attempt + 1, class, elapsed);
            if is_throttle(&response) {
                match self.on_throttle(sent_at, &response) {
                    // Not an attempt: the same request goes again after the pause.
                    Verdict::Wait => continue,
                    Verdict::TooLong(ra) => {
                        return Err(CallError::Refused(too_long(ra, opts, &response)));
                    }
                    Verdict::Exhausted(_) => return Err(CallError::Stopped),
                }
            }
            let (http, status, message) = rejection(&response);
            let refused = |message| CallError::Refused(detail(message, status.clone(), http));
            match class {
                Class::Stop => {
                    self.fail_auth(message.clone());
                    return Err(refused(message));
                }
                Class::Refuse { .. } | Class::Answered => return Err(refused(message)),
                Class::Retry { cost, .. } => {
                    let retry_after = match &response {
                        AddResponse::Rejected { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    if let Some(ra) = retry_after.filter(|&ra| ra > opts.max_retry_after) {
                        return Err(CallError::Refused(too_long(ra, opts, &response)));
                    }
                    if attempt >= opts.max_retries {
                        return Err(refused(format!(
                            "no definite answer after {} attempt(s): {message}",
                            attempt + 1
                        )));
                    }
                    if !self.wait_to_retry(attempt, retry_after, http, cost).await {
                        return Err(CallError::Stopped);
                    }
                    retry_cost = Some(cost);
                }
            }
            attempt += 1;
        }
    }

    /// A throttled answer to a request sent at `sent_at`: what the throttle makes of it. A
    /// request that will go again counts as a retry; a spent throttle budget stops the run.
    fn on_throttle(&self, sent_at: Instant, response: &AddResponse) -> Verdict {
        let (retry_after, message) = match response {
            AddResponse::Rejected {
                retry_after,
                message,
                ..
            } => (*retry_after, message.as_str()),
            _ => (None, ""),
        };
        let verdict = self.throttle.on_throttled(sent_at, retry_after, message);
        match verdict {
            Verdict::Wait => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Exhausted(_) => {
                if !self.stop.send_replace(true) {
                    tracing::error!(
                        event = "throttle_budget_spent",
                        waited_s = self.throttle.waited().as_secs(),
                        message = "the server kept throttling for as long as --max-throttle-wait allows; sending nothing more"
                    );
                }
            }
            Verdict::TooLong(_) => {}
        }
        verdict
    }

    /// Waits before retry number `attempt + 1`: a run-wide pause for `Retry-After`, else
    /// backoff; and a retry token from the budget. False if the run stops meanwhile.
    async fn wait_to_retry(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        http: Option<u16>,
        cost: u32,
    ) -> bool {
        let opts = self.opts;
        let wait = match retry_after {
            Some(ra) => {
                // The whole run waits, not only this request.
                self.throttle.pause_until(Instant::now() + ra);
                tracing::info!(event = "retry_after", seconds = ra.as_secs_f64());
                Duration::ZERO
            }
            None => retry::backoff(
                attempt,
                opts.base_backoff,
                opts.max_backoff,
                retry_floor(http),
            ),
        };
        while let Err(more) = self.budget.try_take(cost) {
            if !self.sleep(more).await {
                return false;
            }
        }
        if !self.sleep(wait).await {
            return false;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Every member of a group, page by page. A group the server does not know has none.
    async fn read_members(&self, group: &Group) -> Result<Vec<String>, CallError> {
        let mut members = Vec::new();
        let mut token: Option<String> = None;
        let mut tokens = std::collections::HashSet::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut pages = 0u64;
        let most_pages = MAX_GROUP_MEMBERS.div_ceil(u64::from(self.opts.page_size.max(1)));
        loop {
            let page = self
                .call("read_page", group, || {
                    self.client.get_members(
                        &group.org,
                        &group.id,
                        self.opts.page_size,
                        token.as_deref(),
                    )
                })
                .await;
            let page = match page {
                Ok(p) => p,
                Err(CallError::Refused(d)) if d.error_status.as_deref() == Some("NOT_FOUND") => {
                    return Ok(members);
                }
                Err(e) => return Err(e),
            };
            pages += 1;
            let before = members.len();
            members.extend(page.users);
            let brought_new = members[before..].iter().any(|u| !seen.contains(u.as_str()));
            seen.extend(members[before..].iter().cloned());
            let Some(next) = page.next_page_token else {
                return Ok(members);
            };
            // A server that hands back a token it gave before, or pages without end, would
            // keep the run reading for ever.
            let problem = if !tokens.insert(next.clone()) {
                Some("the server returned a page token it had returned before".to_string())
            } else if !brought_new {
                Some("the server returned a page with no member it had not returned before, and another page token".to_string())
            } else if pages >= most_pages {
                Some(format!(
                    "the server keeps returning pages: {pages} pages of {} exceed the {MAX_GROUP_MEMBERS} members a group is taken to hold at most",
                    self.opts.page_size
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CallError::Refused(detail(
                    format!("{problem}; cannot read the group"),
                    None,
                    None,
                )));
            }
            token = Some(next);
        }
    }

    /// Creates the group once per run (later callers wait for the first and share its result).
    async fn ensure_group(&self, group: &Group) -> Result<(), String> {
        let cell = self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((group.org.clone(), group.id.clone()))
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let name = group.name.as_deref().unwrap_or(&group.id);
            let made = self
                .call("create_group", group, || {
                    self.client.create_group(&group.org, &group.id, name)
                })
                .await;
            match made {
                Ok(Ok(())) => {
                    tracing::info!(
                        event = "group_created",
                        organizationId = &*group.org,
                        organizationUserGroupId = &*group.id,
                    );
                    Ok(())
                }
                Ok(Err(message)) => Err(format!("could not create the group: {message}")),
                Err(CallError::Refused(d)) => {
                    Err(format!("could not create the group: {}", d.message))
                }
                Err(CallError::Stopped) => {
                    Err("the run stopped before the group was created".into())
                }
            }
        })
        .await
        .clone()
    }
}

/// The most members a group is taken to hold when reading it: a server that pages past this
/// is taken to be paging without end.
const MAX_GROUP_MEMBERS: u64 = 10_000_000;

/// Why a call other than a chunk's gave no result.
#[derive(Debug)]
enum CallError {
    /// The run is stopping.
    Stopped,
    Refused(Arc<Detail>),
}

/// Shortest wait before retrying after this HTTP status (the protocol owners' guidance).
fn retry_floor(http: Option<u16>) -> Duration {
    match http {
        Some(500 | 503) => Duration::from_secs(1),
        Some(429) => Duration::from_secs(2),
        _ => Duration::ZERO,
    }
}

/// Runs the plan: in delta and mirror modes reads every group first and works out what to add
/// and remove (removals join `plan` as rows of their own), then sends every chunk, skipping the
/// memberships in `already_added` (from a journal). In a dry run only the reads are sent.
pub async fn execute(
    plan: &mut Plan,
    client: &VeltClient,
    opts: &ExecOptions,
    progress: &ProgressBar,
    mut interrupts: Interrupts,
    mut journal: Option<&mut Journal>,
    already_added: &[u32],
) -> Execution {
    let shared = Shared::new(client, opts);
    let mut outcomes = vec![Outcome::new(Status::NotAttempted); plan.memberships.len()];
    let confirmed = Arc::new(Detail {
        message: "confirmed added by an earlier run (--state)".into(),
        ..Detail::default()
    });
    for &i in already_added {
        outcomes[i as usize].status = Status::Added;
        outcomes[i as usize].detail = Some(confirmed.clone());
    }
    let mut unread_groups = 0;
    if opts.mode != Mode::Add {
        let read = read_groups(&shared, plan, &mut interrupts).await;
        let Some(current) = read else {
            // Interrupted while reading: nothing was written.
            let code = interrupts.borrow().1;
            return shared.execution(outcomes, Some(code), 0);
        };
        if shared.auth_failure_seen() {
            return shared.execution(outcomes, None, 0);
        }
        unread_groups = reconcile(plan, current, opts, &mut outcomes);
    }
    if opts.dry_run {
        for o in &mut outcomes {
            if still_to_send(o) {
                o.status = Status::Planned;
            }
        }
        return shared.execution(outcomes, None, unread_groups);
    }
    let plan = &*plan;
    progress.set_length(plan.memberships.len() as u64);
    // Done already: from the journal, unchanged, or refused removals (which are never sent).
    progress.inc(outcomes.iter().filter(|o| !still_to_send(o)).count() as u64);

    let ctx = Ctx {
        shared: &shared,
        plan,
        tasks: Mutex::new(HashMap::new()),
        next_task: AtomicU64::new(0),
    };
    // Adds of every group first, then removals: a run cut short has done the safe half.
    let mut pending: Vec<(&Group, Vec<u32>, Kind)> = Vec::new();
    for kind in [Kind::Add, Kind::Remove] {
        for g in &plan.groups {
            let list = match kind {
                Kind::Add => &g.members,
                Kind::Remove => &g.removals,
            };
            let members: Vec<u32> = list
                .iter()
                .copied()
                .filter(|&i| still_to_send(&outcomes[i as usize]))
                .collect();
            if !members.is_empty() {
                pending.push((g, members, kind));
            }
        }
    }
    let chunks = Chunks {
        pending: &pending,
        group: 0,
        offset: 0,
        limit: &ctx.chunk_limit,
    };

    let mut answers = futures_util::stream::iter(chunks)
        .map(|(group, members, kind)| run_chunk(&ctx, group, members, kind))
        // Chunk tasks may queue up to the most slots there can be; the slots themselves (see
        // `Concurrency`) bound what is on the wire.
        .buffer_unordered(opts.max_concurrency.max(opts.concurrency).max(1));
    let mut interrupted = None;
    let mut grace_until: Option<Instant> = None;
    let mut signals_open = true;
    let mut aborted = false;
    let mut journal_error: Option<String> = None;
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
                    && journal_error.is_none()
                {
                    tracing::error!(event = "state_write_failed", path = %j.path().display(), message = %e);
                    journal_error = Some(e.to_string());
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
    if shared.throttle.exhausted() {
        let why = detail(
            format!(
                "not sent: the server kept throttling and the run had waited {} s, all that \
                 --max-throttle-wait allows; re-run later",
                shared.throttle.waited().as_secs()
            ),
            Some("RESOURCE_EXHAUSTED".into()),
            None,
        );
        for o in &mut outcomes {
            if still_to_send(o) {
                o.detail = Some(why.clone());
            }
        }
    }
    if let Some(j) = journal.as_deref()
        && let Err(e) = j.sync()
    {
        tracing::error!(event = "state_write_failed", path = %j.path().display(), message = %e);
        journal_error.get_or_insert(e.to_string());
    }
    let mut execution = shared.execution(outcomes, interrupted, unread_groups);
    execution.journal_error = journal_error;
    execution
}

/// Not sent yet, and not held back for a reason (a refused removal carries its reason).
fn still_to_send(o: &Outcome) -> bool {
    o.status == Status::NotAttempted && o.detail.is_none()
}

/// Add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Remove,
}

/// Reads every group's members, at most `max_concurrency` groups at once. `None` if a signal
/// came first (reads change nothing, so they are simply dropped).
async fn read_groups(
    shared: &Shared<'_>,
    plan: &Plan,
    interrupts: &mut Interrupts,
) -> Option<Vec<Result<Vec<String>, CallError>>> {
    let mut reads = futures_util::stream::iter(plan.groups.iter().enumerate())
        .map(|(i, g)| async move { (i, shared.read_members(g).await) })
        .buffer_unordered(shared.opts.max_concurrency.max(1));
    let mut current: Vec<Option<Result<Vec<String>, CallError>>> =
        (0..plan.groups.len()).map(|_| None).collect();
    let mut signals_open = true;
    loop {
        tokio::select! {
            biased;
            changed = interrupts.changed(), if signals_open => {
                if changed.is_err() {
                    signals_open = false;
                } else if interrupts.borrow_and_update().0 > 0 {
                    tracing::warn!(event = "interrupted", message = "stopping while reading groups; nothing was written");
                    shared.stop.send_replace(true);
                    return None;
                }
            }
            next = reads.next() => {
                let Some((i, members)) = next else { break };
                current[i] = Some(members);
            }
        }
    }
    Some(
        current
            .into_iter()
            .map(|c| c.unwrap_or(Err(CallError::Stopped)))
            .collect(),
    )
}

/// Compares each group's current members with the input: members already there become
/// `unchanged`; in mirror mode, members the input does not list become removals, unless the
/// group's safety limits refuse them. Returns how many groups could not be read in mirror mode.
fn reconcile(
    plan: &mut Plan,
    current: Vec<Result<Vec<String>, CallError>>,
    opts: &ExecOptions,
    outcomes: &mut Vec<Outcome>,
) -> u64 {
    let mut unread = 0;
    for (g, members) in current.into_iter().enumerate() {
        let group = &plan.groups[g];
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                let why = match e {
                    CallError::Refused(d) => d.message.clone(),
                    CallError::Stopped => "the run stopped".into(),
                };
                if opts.mode == Mode::Mirror {
                    unread += 1;
                }
                tracing::error!(
                    event = "read_failed",
                    organizationId = &*group.org,
                    organizationUserGroupId = &*group.id,
                    message = %why,
                    consequence = if opts.mode == Mode::Mirror {
                        "its users are added as in add mode; nothing is removed from it"
                    } else {
                        "its users are added as in add mode"
                    },
                );
                continue;
            }
        };
        let current: std::collections::HashSet<&str> = members.iter().map(String::as_str).collect();
        let mut listed = std::collections::HashSet::with_capacity(group.members.len());
        for &i in &group.members {
            let user = plan.user_at(i);
            listed.insert(user);
            let o = &mut outcomes[i as usize];
            if current.contains(user) && o.status == Status::NotAttempted {
                o.status = Status::Unchanged;
            }
        }
        if opts.mode != Mode::Mirror {
            continue;
        }
        // Members the input does not list, in the server's order, each once.
        let mut seen = std::collections::HashSet::new();
        let extra: Vec<&str> = members
            .iter()
            .map(String::as_str)
            .filter(|u| !listed.contains(u) && seen.insert(*u))
            .collect();
        if extra.is_empty() {
            continue;
        }
        let limit = opts.max_removals.limit(current.len());
        let refusal = if extra.len() == current.len() && !opts.allow_empty {
            Some(format!(
                "not removed: mirroring would remove every one of the group's {} current members \
                 (the input lists none of them); check the input, or pass --allow-empty",
                current.len()
            ))
        } else if extra.len() > limit {
            Some(format!(
                "not removed: the group needs {} removals of {} current members, more than \
                 --max-removals allows ({limit}); check the input, or raise --max-removals",
                extra.len(),
                current.len()
            ))
        } else {
            None
        };
        if let Some(message) = &refusal {
            tracing::error!(
                event = "removals_refused",
                organizationId = &*group.org,
                organizationUserGroupId = &*group.id,
                removals = extra.len(),
                current = current.len(),
                limit = limit,
                message = %message,
            );
        }
        let refused = refusal.map(|message| {
            Arc::new(Detail {
                message,
                ..Detail::default()
            })
        });
        let extra: Vec<String> = extra.into_iter().map(str::to_string).collect();
        for user in extra {
            plan.push_removal(g as u32, &user);
            outcomes.push(Outcome {
                status: Status::NotAttempted,
                attempts: 0,
                detail: refused.clone(),
            });
        }
    }
    unread
}

/// Like governor's `until_ready`, but on time. With no burst the limiter counts the next slot
/// from when a request actually went, so every late wake-up is lost for good: a timer that
/// wakes 0.5 ms late costs 10% at 200 requests/s. So this sleeps until just before the slot
/// and yields until it opens (at most ~1 ms of yielding per request).
///
/// A paused test clock only moves while the runtime sleeps, so yielding would spin for ever
/// there: once a sleep shows the clock jumping ahead of real time, or yields do not get
/// anywhere, it sleeps the whole wait instead.
async fn precise_until_ready(limiter: &DirectLimiter) {
    use governor::clock::Clock;
    // One run of yields longer than this (real time) means the clock does not move by itself:
    // a run is at most ~1.5 ms on a real clock.
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
    pending: &'p [(&'a Group, Vec<u32>, Kind)],
    group: usize,
    offset: usize,
    limit: &'p AtomicUsize,
}

impl<'a, 'p> Iterator for Chunks<'a, 'p> {
    type Item = (&'a Group, &'p [u32], Kind);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (group, members, kind) = self.pending.get(self.group)?;
            if self.offset >= members.len() {
                self.group += 1;
                self.offset = 0;
                continue;
            }
            let size = self.limit.load(Ordering::Acquire).max(1);
            let end = (self.offset + size).min(members.len());
            let chunk = &members[self.offset..end];
            self.offset = end;
            return Some((*group, chunk, *kind));
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
async fn run_chunk(ctx: &Ctx<'_>, group: &Group, members: &[u32], kind: Kind) -> u64 {
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
                let sent = send_with_retries(
                    ctx,
                    id,
                    (group, kind),
                    members,
                    &positions,
                    &mut maybe_applied,
                )
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
    (group, kind): (&Group, Kind),
    members: &[u32],
    positions: &[usize],
    maybe_applied: &mut [bool],
) -> Sent {
    let opts = ctx.opts;
    let mut pending = positions.to_vec();
    let mut attempt = 0u32;
    let mut retry_cost = None;
    let mut created = false;
    let done = match kind {
        Kind::Add => Status::Added,
        Kind::Remove => Status::Removed,
    };
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
            event = match kind {
                Kind::Add => "request",
                Kind::Remove => "remove_request",
            },
            organizationId = &*group.org,
            organizationUserGroupId = &*group.id,
            users = users.len(),
            attempt = attempt + 1,
        );
        let sent_at = Instant::now();
        let response = match kind {
            Kind::Add => ctx.client.add_users(&group.org, &group.id, &users).await,
            Kind::Remove => ctx.client.remove_users(&group.org, &group.id, &users).await,
        };
        drop(permit);
        let elapsed = sent_at.elapsed();
        ctx.count(Some(&response));
        ctx.observe(Some(&response), sent_at);
        if let Some(t) = ctx.tasks().get_mut(&task) {
            t.in_flight.clear();
        }
        let class = retry::classify(&response);
        log_response(group, &response, attempt + 1, class, elapsed);
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
                            out.status = done;
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
                // Entries for users this request did not carry say nothing about any row.
                let answered = pending
                    .iter()
                    .filter(|&&p| entries.contains_key(ctx.plan.user_at(members[p])))
                    .count();
                if entries.len() > answered && !ctx.strays_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        event = "unsent_users_answered",
                        organizationId = &*group.org,
                        organizationUserGroupId = &*group.id,
                        entries = entries.len() - answered,
                        message = "the answer has results for users this request did not send; they are ignored (said once)"
                    );
                }
                // Users the answer left out are sent again: an add is idempotent.
                if missing.is_empty() || attempt >= opts.max_retries {
                    return Sent::Done;
                }
                ctx.retries.fetch_add(1, Ordering::Relaxed);
                pending = missing;
            }
            (Class::Stop, response) => {
                let (http, status, message) = rejection(&response);
                ctx.set(task, &pending, |o| {
                    o.status = Status::Failed;
                    o.detail = Some(detail(message.clone(), status.clone(), http));
                });
                ctx.fail_auth(message);
                return Sent::Done;
            }
            (Class::Refuse { invalid_argument }, response) => {
                let (http, status, mut message) = rejection(&response);
                if kind == Kind::Add && status.as_deref() == Some("NOT_FOUND") {
                    if opts.create_missing_groups && !created {
                        // Create the group, then send the same users again.
                        created = true;
                        match ctx.ensure_group(group).await {
                            Ok(()) => {
                                attempt += 1;
                                continue;
                            }
                            Err(why) => message = format!("{message}; {why}"),
                        }
                    } else if !opts.create_missing_groups {
                        message = format!(
                            "{message} (the group may not exist; pass --create-missing-groups to create it)"
                        );
                    }
                }
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
                if is_throttle(&response) {
                    // Throttling is no verdict on the users: they stay not attempted (or
                    // unconfirmed, if an earlier attempt may have applied) while they wait.
                    let verdict = ctx.on_throttle(sent_at, &response);
                    let why = match verdict {
                        Verdict::TooLong(ra) => Some(too_long(ra, opts, &response)),
                        _ => None,
                    };
                    if let Some(t) = ctx.tasks().get_mut(&task) {
                        for &p in &pending {
                            let o = &mut t.outs[p];
                            if maybe_applied[p] {
                                o.status = Status::Unconfirmed;
                            } else {
                                o.status = Status::NotAttempted;
                                o.detail.clone_from(&why);
                            }
                        }
                    }
                    if verdict == Verdict::Wait {
                        continue;
                    }
                    return Sent::Done;
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
                if let Some(ra) = retry_after.filter(|&ra| ra > opts.max_retry_after) {
                    let d = too_long(ra, opts, &response);
                    ctx.set(task, &pending, |o| {
                        o.status = Status::NotAttempted;
                        o.detail = Some(d.clone());
                    });
                    return Sent::Done;
                }
                give_up(
                    format!("no definite answer after {attempts} attempt(s): {message}"),
                    status,
                );
                if attempt >= opts.max_retries {
                    return Sent::Done;
                }
                if !ctx.wait_to_retry(attempt, retry_after, http, cost).await {
                    return Sent::Done;
                }
                retry_cost = Some(cost);
            }
            (Class::Answered, _) => return Sent::Done,
        }
        attempt += 1;
    }
}

/// Why a request whose `Retry-After` is beyond `--max-retry-after` was given up.
fn too_long(ra: Duration, opts: &ExecOptions, response: &AddResponse) -> Arc<Detail> {
    let (http, _, message) = rejection(response);
    detail(
        format!(
            "not sent again: the server asked to wait {} s, more than --max-retry-after ({} s); {message}",
            ra.as_secs(),
            opts.max_retry_after.as_secs()
        ),
        Some("RESOURCE_EXHAUSTED".into()),
        http,
    )
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

fn log_response(
    group: &Group,
    response: &AddResponse,
    attempt: u32,
    class: Class,
    elapsed: Duration,
) {
    let org = &*group.org;
    let group = &*group.id;
    let will_retry = matches!(class, Class::Retry { .. });
    let elapsed_ms = elapsed.as_millis() as u64;
    match response {
        AddResponse::PerUser { http_status, .. } => tracing::debug!(
            event = "response",
            organizationId = org,
            organizationUserGroupId = group,
            httpStatus = http_status,
            attempt = attempt,
            elapsed_ms = elapsed_ms,
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
            elapsed_ms = elapsed_ms,
            retry = will_retry,
            message = message.as_str(),
        ),
        AddResponse::Transport { message, .. } => tracing::warn!(
            event = "request_failed",
            organizationId = org,
            organizationUserGroupId = group,
            attempt = attempt,
            elapsed_ms = elapsed_ms,
            retry = will_retry,
            message = message.as_str(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Defaults, Planner, Sink};

    /// Whatever the input and the server hold, mirror never lets through more removals than
    /// the limit, and never all of a group's members without `allow_empty`.
    #[test]
    fn mirror_never_removes_beyond_its_limits() {
        let mut rng = fastrand::Rng::with_seed(7);
        for case in 0..2_000 {
            let universe = rng.usize(1..40);
            let mut planner = Planner::new(Defaults::default());
            let listed: Vec<usize> = (0..universe).filter(|_| rng.bool()).collect();
            for (line, &u) in (2..).zip(&listed) {
                planner.record(line, Some("o"), Some("g"), &format!("u{u}"));
            }
            if listed.is_empty() {
                continue;
            }
            let current: Vec<String> = (0..universe)
                .filter(|_| rng.u8(..) < 100)
                .map(|u| format!("u{u}"))
                .collect();
            let max_removals = if rng.bool() {
                MaxRemovals::Count(rng.u64(0..10))
            } else {
                MaxRemovals::Percent(rng.f64() * 100.0)
            };
            let opts = ExecOptions {
                mode: Mode::Mirror,
                max_removals,
                allow_empty: rng.bool(),
                ..ExecOptions::default()
            };
            let mut plan = planner.finish();
            let mut outcomes = vec![Outcome::new(Status::NotAttempted); plan.memberships.len()];
            reconcile(&mut plan, vec![Ok(current.clone())], &opts, &mut outcomes);
            let removals = &plan.groups[0].removals;
            let cleared: Vec<&str> = removals
                .iter()
                .filter(|&&i| outcomes[i as usize].detail.is_none())
                .map(|&i| plan.user_at(i))
                .collect();
            let extra = current
                .iter()
                .filter(|u| !listed.iter().any(|l| format!("u{l}") == **u))
                .count();
            assert_eq!(
                removals.len(),
                extra,
                "case {case}: every extra member is a row"
            );
            assert!(
                cleared.len() <= max_removals.limit(current.len()),
                "case {case}: {} removals let through, limit {}",
                cleared.len(),
                max_removals.limit(current.len())
            );
            if !opts.allow_empty && !current.is_empty() {
                assert!(cleared.len() < current.len(), "case {case}: group emptied");
            }
            assert!(cleared.iter().all(|u| current.iter().any(|c| c == u)));
        }
    }
}
