//! An in-memory, Velt-compatible server for demos and tests.
//!
//! It serves, under `/v1` and `/v2`, add users to a group, delete users from a group, get users
//! (filtered by one or more groups, paged with `pageSize` / `nextPageToken`) and create groups,
//! with the request checks of the callable protocol (credential headers present,
//! `application/json`, a body of exactly `{"data": ...}`). It answers per user and keeps the
//! memberships where tests can see them (`Emulator::memberships`, or
//! `GET /__emulator/memberships` on a standalone server). Groups spring into being on the first
//! add, unless `groups_must_exist` asks for them to be created first. Faults for tests and
//! demos apply to every call alike: required credentials, a request rate limit answered 429
//! `RESOURCE_EXHAUSTED` with `Retry-After`, a cap on `userIds` per request, a latency, 503s,
//! 500s and dropped connections.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
// tokio's clock, so that tests on a paused clock see the emulator's windows move with it.
use tokio::time::Instant;

mod calls;
mod org_users;

#[derive(Debug, Clone, Default)]
pub struct EmulatorConfig {
    /// When set, requests must carry exactly this API key and auth token.
    pub credentials: Option<(String, String)>,
    /// Requests per second accepted (a token bucket); the rest get 429 with `Retry-After`.
    /// [`Emulator::set_rate_limit`] changes it while serving.
    pub rate_limit: Option<f64>,
    /// The token bucket's size: requests accepted at once. Default: one second's worth.
    pub rate_burst: Option<f64>,
    /// A quota of N requests per fixed window (`30` a minute), as Velt documents for other
    /// endpoints: the rest of a window get 429 `RESOURCE_EXHAUSTED` "Rate limit exceeded.
    /// Please try again after 1 minute.", with `Retry-After` until the window ends.
    pub window_limit: Option<(u32, Duration)>,
    /// How `window_limit`'s windows lie (real quota systems differ; see [`WindowShape`]).
    pub window_shape: WindowShape,
    /// Each request is counted by the quota this long after it arrives (drawn evenly from the
    /// range, before the answer's `latency`): the time between a request leaving and being
    /// counted that real servers have, and a job's clock cannot see.
    pub count_delay: (Duration, Duration),
    /// Seeds the emulator's draws (latencies, faults), so that a test meets the same ones
    /// every run; `None` draws a fresh seed.
    pub seed: Option<u64>,
    /// Leave `Retry-After` out of 429 answers.
    pub omit_retry_after: bool,
    /// Most `userIds` in one add request.
    pub max_user_ids: Option<usize>,
    /// Each answer waits a time drawn evenly from this range.
    pub latency: (Duration, Duration),
    /// Share of requests answered 503 `UNAVAILABLE`, from 0 to 1.
    pub unavailable_fraction: f64,
    /// Share of requests answered 500 `INTERNAL` (not applied).
    pub internal_fraction: f64,
    /// Share of connections dropped before the request is applied.
    pub drop_before_fraction: f64,
    /// Share of connections dropped after the request was applied: the answer is lost.
    pub drop_after_fraction: f64,
    /// A request with a user ID containing this is refused whole with 400 `INVALID_ARGUMENT`.
    pub invalid_user_marker: Option<String>,
    /// `Retry-After` on 429 as an HTTP-date instead of seconds.
    pub retry_after_http_date: bool,
    /// A fixed `Retry-After` in seconds instead of the time until the next free slot.
    pub retry_after_secs: Option<u64>,
    /// Adds to a group that was never created (or seeded) are answered 404 `NOT_FOUND`.
    pub groups_must_exist: bool,
    /// A group add for a user who is not a user of the organization (`/users/add`) is
    /// answered, for that user, `success: false` "User is not part of the organization.".
    /// Whether Velt does so is not documented; this shows what provisioning changes.
    pub require_org_users: bool,
    /// A broken or hostile `/users/get` listing (group members and organization users alike),
    /// for the tests of what removals may trust.
    pub listing_fault: Option<ListingFault>,
}

/// The windows of a `window_limit` quota of N requests per window of length L.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowShape {
    /// Windows on multiples of L, counted from `Aligned(offset)` before the emulator's start:
    /// wall-clock minutes, met at any phase.
    Aligned(Duration),
    /// A window opens at the first request after the previous one has run its L.
    Anchored,
    /// At most N requests in any span of L.
    Sliding,
    /// A token bucket of N tokens refilled at N per L.
    Bucket,
}

impl Default for WindowShape {
    /// Windows on multiples of L from the emulator's start, as it always had them.
    fn default() -> WindowShape {
        WindowShape::Aligned(Duration::ZERO)
    }
}

/// How a listing goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingFault {
    /// Every entry of a page is listed this many times.
    Repeat(usize),
    /// Each page after the first starts this many entries before where the one before ended
    /// (a cursor bug).
    Overlap(usize),
    /// The listing ends after this many pages, without a token, however much is left.
    EndAfterPage(u64),
    /// This page (1 is the first) is answered with this error (`NOT_FOUND`, `INTERNAL`, ...).
    FailPage(u64, &'static str),
    /// Every page holds twice as many entries as asked for.
    Oversize,
    /// Every page hands back the first page's token.
    RepeatToken,
}

/// A user of an organization, as `/users/add` and `/users/update` set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUser {
    pub name: String,
    pub email: String,
    pub access_role: Option<String>,
}

/// The calls the emulator serves, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Add,
    Delete,
    GetUsers,
    CreateGroups,
    /// `/users/add`, `/users/update`, `/users/delete` (organization users).
    AddOrgUsers,
    UpdateOrgUsers,
    DeleteOrgUsers,
}

type Groups = BTreeMap<(String, String), BTreeSet<String>>;

struct Shared {
    config: EmulatorConfig,
    started: Instant,
    groups: Mutex<Groups>,
    requests: AtomicU64,
    arrivals: Mutex<Vec<Duration>>,
    received: Mutex<Vec<(String, Vec<String>)>>,
    /// When each answered-200 request arrived.
    accepted: Mutex<Vec<Duration>>,
    throttled: AtomicU64,
    bucket: Mutex<Bucket>,
    /// The token bucket's rate now (`rate_limit`, until changed), as `f64` bits.
    rate: AtomicU64,
    /// The quota's state: see `Quota`.
    quota: Mutex<Quota>,
    /// The emulator's draws (latencies, faults), seeded.
    rng: Mutex<fastrand::Rng>,
    /// Every request to a known call: (call, API version), in order of arrival.
    calls: Mutex<Vec<(Call, String)>>,
    /// The (group, user IDs) of every delete that got past the faults.
    deleted: Mutex<Vec<(String, Vec<String>)>>,
    /// Names given to created groups, by (organization, group).
    names: Mutex<BTreeMap<(String, String), String>>,
    /// Users of each organization, by user ID.
    org_users: Mutex<BTreeMap<String, BTreeMap<String, OrgUser>>>,
    /// Requests being worked on now (a request whose client went away is dropped).
    in_flight: AtomicU64,
}

/// Counts a request as being worked on for as long as it lives.
struct Working<'a>(&'a AtomicU64);

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `Shared::in_flight` for every request, cancelled ones included.
async fn track(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let _working = Working(&shared.in_flight);
    next.run(request).await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a `window_limit` quota has counted, for each shape.
#[derive(Debug, Default)]
struct Quota {
    /// Aligned: the window's number and its count.
    aligned: (u64, u32),
    /// Anchored: when the window opened, and its count.
    anchored: Option<(Instant, u32)>,
    /// Sliding: when each counted request of the last L was counted.
    sliding: std::collections::VecDeque<Instant>,
    /// Bucket: tokens, and when they were last topped up (`None`: full, untouched).
    bucket: Option<(f64, Instant)>,
}

impl Quota {
    /// Counts a request at `now`, or says how long until one would be counted.
    fn take(
        &mut self,
        shape: WindowShape,
        allowed: u32,
        length: Duration,
        started: Instant,
        now: Instant,
    ) -> Option<Duration> {
        match shape {
            WindowShape::Aligned(offset) => {
                let since = now.saturating_duration_since(started) + offset;
                let number = (since.as_nanos() / length.as_nanos()) as u64;
                if self.aligned.0 != number {
                    self.aligned = (number, 0);
                }
                if self.aligned.1 < allowed {
                    self.aligned.1 += 1;
                    return None;
                }
                let ends = length * u32::try_from(number + 1).unwrap_or(u32::MAX);
                Some(ends.saturating_sub(since))
            }
            WindowShape::Anchored => {
                let (opened, count) = match self.anchored {
                    Some((at, n)) if now < at + length => (at, n),
                    _ => (now, 0),
                };
                if count < allowed {
                    self.anchored = Some((opened, count + 1));
                    return None;
                }
                self.anchored = Some((opened, count));
                Some((opened + length).saturating_duration_since(now))
            }
            WindowShape::Sliding => {
                while self.sliding.front().is_some_and(|&t| t + length <= now) {
                    self.sliding.pop_front();
                }
                if (self.sliding.len() as u32) < allowed {
                    self.sliding.push_back(now);
                    return None;
                }
                let oldest = *self.sliding.front()?;
                Some((oldest + length).saturating_duration_since(now))
            }
            WindowShape::Bucket => {
                let capacity = f64::from(allowed);
                let rate = capacity / length.as_secs_f64();
                let (tokens, last) = self.bucket.unwrap_or((capacity, now));
                let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * rate)
                    .min(capacity);
                if tokens >= 1.0 {
                    self.bucket = Some((tokens - 1.0, now));
                    return None;
                }
                self.bucket = Some((tokens, now));
                Some(Duration::from_secs_f64(
                    (1.0 - tokens) / rate.max(f64::MIN_POSITIVE),
                ))
            }
        }
    }
}

/// A token bucket of one second's worth of requests.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Shared {
    fn groups(&self) -> MutexGuard<'_, Groups> {
        // A panic while holding the lock cannot leave the sets half-changed; keep serving.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A draw from `range`, evenly.
    fn draw(&self, (lo, hi): (Duration, Duration)) -> Duration {
        lo + hi.saturating_sub(lo).mul_f64(lock(&self.rng).f64())
    }

    /// `None` if the request may proceed, or the seconds to wait.
    fn throttle(&self, now: Instant) -> Option<u64> {
        if let Some((allowed, length)) = self.config.window_limit {
            let length = length.max(Duration::from_millis(1));
            let wait = lock(&self.quota).take(
                self.config.window_shape,
                allowed,
                length,
                self.started,
                now,
            );
            if let Some(wait) = wait {
                return Some((wait.as_secs_f64().ceil() as u64).max(1));
            }
        }
        self.config.rate_limit?;
        let rate = f64::from_bits(self.rate.load(Ordering::Relaxed));
        let capacity = self.config.rate_burst.unwrap_or(rate).max(1.0);
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some((((1.0 - b.tokens) / rate).ceil() as u64).max(1))
        }
    }
}

/// The route of one organization-user call.
fn org_users_route(call: Call) -> axum::routing::MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>,
              Path(version): Path<String>,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| async move {
            org_users::change_org_users(&shared, call, &version, &headers, &body).await
        },
    )
}

/// The base URL of an in-process emulator: nothing listens there.
pub const IN_PROCESS_URL: &str = "http://emulator.in-process";

/// A running emulator, stopped when dropped.
pub struct Emulator {
    addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    router: Router,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// An emulator with no socket, for tests on a paused clock: requests reach it through
    /// [`Emulator::router`] (see `client::VeltClient::in_process`).
    pub fn in_process(config: EmulatorConfig) -> Emulator {
        let seed = config.seed;
        let rate = config.rate_limit.unwrap_or(0.0);
        let burst = config.rate_burst.unwrap_or(rate).max(1.0);
        let shared = Arc::new(Shared {
            config,
            started: Instant::now(),
            groups: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            throttled: AtomicU64::new(0),
            bucket: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            }),
            rate: AtomicU64::new(rate.to_bits()),
            quota: Mutex::new(Quota::default()),
            rng: Mutex::new(seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed)),
            calls: Mutex::new(Vec::new()),
            deleted: Mutex::new(Vec::new()),
            names: Mutex::new(BTreeMap::new()),
            org_users: Mutex::new(BTreeMap::new()),
            in_flight: AtomicU64::new(0),
        });
        let router = Router::new()
            .route(
                "/{version}/organizations/usergroups/users/add",
                post(calls::add_users),
            )
            .route(
                "/{version}/organizations/usergroups/users/delete",
                post(calls::delete_users),
            )
            .route("/{version}/users/get", post(calls::get_users))
            .route("/{version}/users/add", org_users_route(Call::AddOrgUsers))
            .route(
                "/{version}/users/update",
                org_users_route(Call::UpdateOrgUsers),
            )
            .route(
                "/{version}/users/delete",
                org_users_route(Call::DeleteOrgUsers),
            )
            .route(
                "/{version}/organizations/usergroups/add",
                post(calls::create_groups),
            )
            .route("/__emulator/memberships", get(calls::list_memberships))
            .fallback(|| async {
                calls::error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "no such endpoint on the emulator",
                )
            })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), track))
            .with_state(shared.clone());
        Emulator {
            addr: None,
            shared,
            router,
            shutdown: None,
            task: None,
        }
    }

    /// Starts on `addr` (use port 0 for a free one) in the current tokio runtime.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut emu = Emulator::in_process(config);
        emu.addr = Some(listener.local_addr()?);
        let router = emu.router.clone();
        let (tx, rx) = oneshot::channel::<()>();
        emu.task = Some(tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(event = "emulator_failed", message = %e);
            }
        }));
        emu.shutdown = Some(tx);
        Ok(emu)
    }

    /// Changes the `rate_limit` while serving (a limit that moves mid-run). No effect on an
    /// emulator started without one.
    pub fn set_rate_limit(&self, rate: f64) {
        self.shared.rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// The service that answers requests, for calling in-process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The address it listens on; `None` in-process.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn base_url(&self) -> String {
        match self.addr {
            Some(addr) => format!("http://{addr}"),
            None => IN_PROCESS_URL.to_string(),
        }
    }

    /// Every membership held, as (organization, group, user), sorted.
    pub fn memberships(&self) -> Vec<(String, String, String)> {
        self.shared
            .groups()
            .iter()
            .flat_map(|((org, group), users)| {
                users
                    .iter()
                    .map(move |u| (org.clone(), group.clone(), u.clone()))
            })
            .collect()
    }

    /// Puts users in a group (creating it) before a test, as if added earlier.
    pub fn seed<I, S>(&self, org: &str, group: &str, users: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shared
            .groups()
            .entry((org.to_string(), group.to_string()))
            .or_default()
            .extend(users.into_iter().map(Into::into));
    }

    /// The users of `org`, by user ID.
    pub fn org_users(&self, org: &str) -> BTreeMap<String, OrgUser> {
        lock(&self.shared.org_users)
            .get(org)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes users of an organization before a test, as if provisioned earlier.
    pub fn seed_org_user(&self, org: &str, user: &str, name: &str, email: &str) {
        lock(&self.shared.org_users)
            .entry(org.to_string())
            .or_default()
            .insert(
                user.to_string(),
                OrgUser {
                    name: name.to_string(),
                    email: email.to_string(),
                    access_role: None,
                },
            );
    }

    /// The name each created group was given, by (organization, group).
    pub fn group_names(&self) -> BTreeMap<(String, String), String> {
        lock(&self.shared.names).clone()
    }

    /// Requests received for `call`, answered or not.
    pub fn calls(&self, call: Call) -> u64 {
        lock(&self.shared.calls)
            .iter()
            .filter(|(c, _)| *c == call)
            .count() as u64
    }

    /// The call of every request, in order of arrival.
    pub fn call_order(&self) -> Vec<Call> {
        lock(&self.shared.calls).iter().map(|(c, _)| *c).collect()
    }

    /// The API version (`v1`, `v2`) of every request, in order of arrival.
    pub fn versions(&self) -> Vec<String> {
        lock(&self.shared.calls)
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The (group, user IDs) of every delete request that got past the faults.
    pub fn deleted(&self) -> Vec<(String, Vec<String>)> {
        lock(&self.shared.deleted).clone()
    }

    /// Requests received, on every call, answered or not.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests being worked on now: 0 once every request that arrived was answered or its
    /// client went away.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// When each request arrived, measured from the emulator's start.
    pub fn arrivals(&self) -> Vec<Duration> {
        self.shared
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The (group, user IDs) of every well-formed add request that got past the faults, in
    /// order of arrival, whether or not its answer reached the client.
    pub fn received(&self) -> Vec<(String, Vec<String>)> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Arrival times of the requests answered 200, from the emulator's start.
    pub fn accepted(&self) -> Vec<Duration> {
        self.shared
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests answered 429.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::Relaxed)
    }

    /// Stops serving and waits for open connections to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
