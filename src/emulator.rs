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
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
// tokio's clock, so that tests on a paused clock see the emulator's windows move with it.
use tokio::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct EmulatorConfig {
    /// When set, requests must carry exactly this API key and auth token.
    pub credentials: Option<(String, String)>,
    /// Requests per second accepted (a token bucket of one second's worth); the rest get 429
    /// with `Retry-After`.
    pub rate_limit: Option<f64>,
    /// A quota of N requests per fixed window (`30` a minute), as Velt documents for other
    /// endpoints: the rest of a window get 429 `RESOURCE_EXHAUSTED` "Rate limit exceeded.
    /// Please try again after 1 minute.", with `Retry-After` until the window ends.
    pub window_limit: Option<(u32, Duration)>,
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
}

/// The calls the emulator serves, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Add,
    Delete,
    GetUsers,
    CreateGroups,
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
    /// Requests counted in the current fixed window, and the window's number.
    window: Mutex<(u32, u64)>,
    /// Every request to a known call: (call, API version), in order of arrival.
    calls: Mutex<Vec<(Call, String)>>,
    /// The (group, user IDs) of every delete that got past the faults.
    deleted: Mutex<Vec<(String, Vec<String>)>>,
    /// Names given to created groups, by (organization, group).
    names: Mutex<BTreeMap<(String, String), String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    /// `None` if the request may proceed, or the seconds to wait.
    fn throttle(&self, now: Instant) -> Option<u64> {
        if let Some((allowed, length)) = self.config.window_limit {
            let length = length.max(Duration::from_millis(1));
            let since = now.saturating_duration_since(self.started);
            let number = (since.as_nanos() / length.as_nanos()) as u64;
            let mut w = lock(&self.window);
            if w.1 != number {
                *w = (0, number);
            }
            if w.0 < allowed {
                w.0 += 1;
            } else {
                let ends = length * u32::try_from(number + 1).unwrap_or(u32::MAX);
                return Some((ends.saturating_sub(since).as_secs_f64().ceil() as u64).max(1));
            }
        }
        let rate = self.config.rate_limit?;
        let capacity = rate.max(1.0);
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
        let rate = config.rate_limit.unwrap_or(0.0);
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
                tokens: rate.max(1.0),
                last: Instant::now(),
            }),
            window: Mutex::new((0, 0)),
            calls: Mutex::new(Vec::new()),
            deleted: Mutex::new(Vec::new()),
            names: Mutex::new(BTreeMap::new()),
        });
        let router = Router::new()
            .route(
                "/{version}/organizations/usergroups/users/add",
                post(add_users),
            )
            .route(
                "/{version}/organizations/usergroups/users/delete",
                post(delete_users),
            )
            .route("/{version}/users/get", post(get_users))
            .route(
                "/{version}/organizations/usergroups/add",
                post(create_groups),
            )
            .route("/__emulator/memberships", get(list_memberships))
            .fallback(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "no such endpoint on the emulator",
                )
            })
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

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "status": code}}).to_string(),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// What every call goes through before its own work: arrival records, the rate limit, the
/// latency, the faults, the credentials and the protocol's body checks. `Ok` holds the `data`
/// object and whether the connection is to drop after the work is applied.
async fn gate(
    shared: &Shared,
    call: Call,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Passed, Response> {
    let arrived = Instant::now();
    shared.requests.fetch_add(1, Ordering::Relaxed);
    lock(&shared.arrivals).push(arrived.duration_since(shared.started));
    lock(&shared.calls).push((call, version.to_string()));
    let throttled = shared.throttle(arrived);
    let (lo, hi) = shared.config.latency;
    if hi > Duration::ZERO {
        let wait = lo + (hi - lo).mul_f64(fastrand::f64());
        tokio::time::sleep(wait).await;
    }
    if version != "v1" && version != "v2" {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such API version; use /v1 or /v2",
        ));
    }
    let config = &shared.config;
    if let Some(seconds) = throttled {
        shared.throttled.fetch_add(1, Ordering::Relaxed);
        let seconds = config.retry_after_secs.unwrap_or(seconds);
        let message = match config.window_limit {
            Some((_, length)) => format!(
                "Rate limit exceeded. Please try again after {}.",
                spoken(length)
            ),
            None => "Rate limit exceeded. Try again later.".to_string(),
        };
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            &message,
        );
        let value = if config.omit_retry_after {
            None
        } else if config.retry_after_http_date {
            // HTTP-dates have whole seconds: round up so the wait is never shorter.
            let at = std::time::SystemTime::now() + Duration::from_secs(seconds + 1);
            HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
        } else {
            Some(HeaderValue::from(seconds))
        };
        if let Some(v) = value {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    // One draw decides which fault, if any, this request meets.
    let draw = fastrand::f64();
    let mut edge = config.unavailable_fraction;
    if draw < edge {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ));
    }
    edge += config.internal_fraction;
    if draw < edge {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error.",
        ));
    }
    edge += config.drop_before_fraction;
    if draw < edge {
        return Err(dropped_connection());
    }
    let drop_after = draw < edge + config.drop_after_fraction;
    if let Some(r) = check_credentials(&shared.config, headers) {
        return Err(r);
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/json"));
    if !json_type {
        return Err(invalid(
            "Bad Request: content-type must be application/json",
        ));
    }
    let data = parse_data(body).map_err(|m| invalid(&m))?;
    Ok(Passed {
        data,
        drop_after,
        arrived: arrived.duration_since(shared.started),
    })
}

/// A request that passed the gate.
struct Passed {
    data: serde_json::Map<String, Value>,
    /// Drop the connection after applying the work.
    drop_after: bool,
    /// Since the emulator's start.
    arrived: Duration,
}

/// A 200 answer, unless the connection is to drop after the work was applied.
fn success(shared: &Shared, passed: &Passed, result: Value) -> Response {
    if passed.drop_after {
        return dropped_connection();
    }
    lock(&shared.accepted).push(passed.arrived);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "result": result }).to_string(),
    )
        .into_response()
}

/// A window's length as Velt's messages say it: `1 minute`, `30 seconds`.
fn spoken(d: Duration) -> String {
    let s = d.as_secs().max(1);
    match (s % 60, s / 60) {
        (0, 1) => "1 minute".into(),
        (0, m) => format!("{m} minutes"),
        (1, 0) => "1 second".into(),
        _ => format!("{s} seconds"),
    }
}

fn group_not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Organization user group not found.",
    )
}

async fn add_users(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_members(&shared, Call::Add, &version, &headers, &body).await
}

async fn delete_users(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_members(&shared, Call::Delete, &version, &headers, &body).await
}

/// Add or delete users: the same body, checks and per-user answer.
async fn change_members(
    shared: &Shared,
    call: Call,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let passed = match gate(shared, call, version, headers, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let data = match parse_users(&passed.data, shared.config.max_user_ids) {
        Ok(d) => d,
        Err(message) => return invalid(&message),
    };
    let log = if call == Call::Add {
        &shared.received
    } else {
        &shared.deleted
    };
    lock(log).push((data.group.clone(), data.users.clone()));
    if let Some(marker) = &shared.config.invalid_user_marker
        && let Some(bad) = data.users.iter().find(|u| u.contains(marker.as_str()))
    {
        return invalid(&format!("Invalid userId: {bad}"));
    }
    let (user_message, message) = if call == Call::Add {
        (
            "User added to organization user group.",
            "Added organization users to group successfully.",
        )
    } else {
        (
            "User removed from organization user group.",
            "Deleted organization users from group successfully.",
        )
    };
    let mut entries = serde_json::Map::new();
    {
        let mut groups = shared.groups();
        let key = (data.org.clone(), data.group.clone());
        let known = groups.contains_key(&key);
        if !known && (call == Call::Delete || shared.config.groups_must_exist) {
            return group_not_found();
        }
        let members = groups.entry(key).or_default();
        for user in data.users {
            // Removing a user who is not a member leaves the group as asked: a success.
            if call == Call::Add {
                members.insert(user.clone());
            } else {
                members.remove(&user);
            }
            entries.insert(
                user,
                json!({"success": true, "organizationUserGroupId": data.group,
                       "message": user_message}),
            );
        }
    }
    success(
        shared,
        &passed,
        json!({"status": "success", "message": message, "data": entries}),
    )
}

async fn get_users(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let passed = match gate(&shared, Call::GetUsers, &version, &headers, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let data = &passed.data;
    let Some(Value::String(org)) = data.get("organizationId") else {
        return invalid("organizationId is required and must be a non-empty string");
    };
    let group_ids: Vec<String> = match data.get("organizationUserGroupIds") {
        None => Vec::new(),
        Some(Value::Array(ids)) if ids.len() <= 30 => ids
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            return invalid("organizationUserGroupIds must be an array of at most 30 IDs");
        }
    };
    let page_size = match data.get("pageSize") {
        None => 1000,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1000) => n as usize,
            _ => return invalid("pageSize must be a number from 1 to 1000"),
        },
    };
    // The token is the last user ID of the previous page: each page is read from there, so
    // paging through a large group costs a page's work per call, not the whole group's.
    let after: Option<String> = match data.get("pageToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match t.strip_prefix("after:") {
            Some(last) => Some(last.to_string()),
            None => return invalid("pageToken is not one this server handed out"),
        },
        Some(_) => return invalid("pageToken must be a string"),
    };
    let users: Vec<String> = {
        let groups = shared.groups();
        let mut users = BTreeSet::new();
        let from = match &after {
            Some(last) => Bound::Excluded(last.clone()),
            None => Bound::Unbounded,
        };
        for ((o, g), members) in groups.iter() {
            if o == org && (group_ids.is_empty() || group_ids.contains(g)) {
                let range = members.range((from.clone(), Bound::Unbounded));
                users.extend(range.take(page_size + 1).cloned());
            }
        }
        users.into_iter().take(page_size + 1).collect()
    };
    let more = users.len() > page_size;
    let page: Vec<Value> = users
        .iter()
        .take(page_size)
        .map(|u| json!({"userId": u, "name": u, "email": format!("{u}@example.com")}))
        .collect();
    let mut result = json!({"status": "success", "message": "Users fetched.", "data": page});
    if more {
        result["nextPageToken"] = json!(format!("after:{}", users[page_size - 1]));
    }
    success(&shared, &passed, result)
}

async fn create_groups(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let passed = match gate(&shared, Call::CreateGroups, &version, &headers, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let data = &passed.data;
    let Some(Value::String(org)) = data.get("organizationId") else {
        return invalid("organizationId is required and must be a non-empty string");
    };
    let Some(Value::Array(new)) = data.get("organizationUserGroups") else {
        return invalid("organizationUserGroups is required and must be an array");
    };
    let mut entries = serde_json::Map::new();
    {
        let mut groups = shared.groups();
        for g in new {
            let (Some(id), Some(name)) = (
                g.get("groupId").and_then(Value::as_str),
                g.get("groupName").and_then(Value::as_str),
            ) else {
                return invalid("every organizationUserGroup needs groupId and groupName");
            };
            let key = (org.clone(), id.to_string());
            let entry = if groups.contains_key(&key) {
                json!({"success": false, "id": id, "message": "Group already exists."})
            } else {
                groups.insert(key.clone(), BTreeSet::new());
                lock(&shared.names).insert(key, name.to_string());
                json!({"success": true, "id": id, "message": "Group created."})
            };
            entries.insert(id.to_string(), entry);
        }
    }
    success(
        &shared,
        &passed,
        json!({"status": "success", "message": "Groups processed.", "data": entries}),
    )
}

/// A response whose body fails at once: hyper sends the head, then cuts the connection, and
/// the client sees an answer that never completes.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "emulated connection drop",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(failing))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn check_credentials(config: &EmulatorConfig, headers: &HeaderMap) -> Option<Response> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (key, token) = (get("x-velt-api-key"), get("x-velt-auth-token"));
    if key.is_empty() || token.is_empty() {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Missing x-velt-api-key or x-velt-auth-token header.",
        ));
    }
    match &config.credentials {
        Some((k, t)) if k != key || t != token => Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Invalid API key or auth token.",
        )),
        _ => None,
    }
}

struct AddData {
    org: String,
    group: String,
    users: Vec<String>,
}

/// The callable protocol's checks: a body of exactly `{"data": {...}}`.
fn parse_data(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "Bad Request: the body is not JSON".to_string())?;
    let Value::Object(mut top) = value else {
        return Err("Bad Request: the body must be an object".into());
    };
    if top.len() != 1 {
        return Err("Bad Request: the body must have exactly one key, `data`".into());
    }
    match top.remove("data") {
        Some(Value::Object(data)) => Ok(data),
        _ => Err("Bad Request: the body must have exactly one key, `data`, an object".into()),
    }
}

/// The add and delete calls' own checks.
fn parse_users(
    data: &serde_json::Map<String, Value>,
    max_user_ids: Option<usize>,
) -> Result<AddData, String> {
    let text = |key: &str| match data.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("{key} is required and must be a non-empty string")),
    };
    let org = text("organizationId")?;
    let group = text("organizationUserGroupId")?;
    let Some(Value::Array(ids)) = data.get("userIds") else {
        return Err("userIds is required and must be an array".into());
    };
    if ids.is_empty() {
        return Err("userIds must not be empty".into());
    }
    if let Some(max) = max_user_ids
        && ids.len() > max
    {
        return Err(format!("userIds must have at most {max} items"));
    }
    let users = ids
        .iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err("every userId must be a non-empty string".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AddData { org, group, users })
}

async fn list_memberships(State(shared): State<Arc<Shared>>) -> Response {
    let memberships: Vec<Value> = shared
        .groups()
        .iter()
        .flat_map(|((org, group), users)| {
            users.iter().map(move |u| {
                json!({"organizationId": org, "organizationUserGroupId": group, "userId": u})
            })
        })
        .collect();
    let body = json!({"requests": shared.requests.load(Ordering::Relaxed),
                      "memberships": memberships});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
