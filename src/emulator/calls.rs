//! The calls the emulator answers, and the gate every one of them goes through first: the
//! rate limits, the latency, the faults, the credentials and the protocol's body checks.

use std::collections::BTreeSet;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Call, EmulatorConfig, ListingFault, Shared, lock};

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "status": code}}).to_string(),
    )
        .into_response()
}

pub(super) fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// What every call goes through before its own work: arrival records, the rate limit, the
/// latency, the faults, the credentials and the protocol's body checks. `Ok` holds the `data`
/// object and whether the connection is to drop after the work is applied.
pub(super) async fn gate(
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
    // Counted by the quota a moment after arriving, as real servers do.
    if shared.config.count_delay.1 > Duration::ZERO {
        let delay = shared.draw(shared.config.count_delay);
        tokio::time::sleep(delay).await;
    }
    let throttled = shared.throttle(Instant::now());
    if shared.config.latency.1 > Duration::ZERO {
        let wait = shared.draw(shared.config.latency);
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
        return Err(throttled_answer(config, seconds));
    }
    let drop_after = fault(shared).map_err(|r| *r)?;
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

/// The 429 `RESOURCE_EXHAUSTED` answer to a throttled request, with a `Retry-After` of
/// `seconds` (or the configured one) in the configured form.
fn throttled_answer(config: &EmulatorConfig, seconds: u64) -> Response {
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
    r
}

/// One draw decides which fault, if any, this request meets: an answer instead of the work,
/// or `Ok(true)` for a connection to drop after the work is applied.
fn fault(shared: &Shared) -> Result<bool, Box<Response>> {
    let config = &shared.config;
    let draw = lock(&shared.rng).f64();
    let mut edge = config.unavailable_fraction;
    if draw < edge {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )));
    }
    edge += config.internal_fraction;
    if draw < edge {
        return Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error.",
        )));
    }
    edge += config.drop_before_fraction;
    if draw < edge {
        return Err(Box::new(dropped_connection()));
    }
    Ok(draw < edge + config.drop_after_fraction)
}

/// A request that passed the gate.
pub(super) struct Passed {
    pub data: serde_json::Map<String, Value>,
    /// Drop the connection after applying the work.
    drop_after: bool,
    /// Since the emulator's start.
    arrived: Duration,
}

/// A 200 answer, unless the connection is to drop after the work was applied.
pub(super) fn success(shared: &Shared, passed: &Passed, result: Value) -> Response {
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

pub(super) async fn add_users(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_members(&shared, Call::Add, &version, &headers, &body).await
}

pub(super) async fn delete_users(
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
    let entries = match apply_members(shared, call, data, user_message) {
        Ok(entries) => entries,
        Err(r) => return *r,
    };
    success(
        shared,
        &passed,
        json!({"status": "success", "message": message, "data": entries}),
    )
}

/// Adds the users to the group, or removes them from it; the per-user answer. A user the
/// organization does not hold (`require_org_users`) is not added.
fn apply_members(
    shared: &Shared,
    call: Call,
    data: AddData,
    user_message: &str,
) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    let mut entries = serde_json::Map::new();
    let mut groups = shared.groups();
    let key = (data.org.clone(), data.group.clone());
    let known = groups.contains_key(&key);
    if !known && (call == Call::Delete || shared.config.groups_must_exist) {
        return Err(Box::new(group_not_found()));
    }
    let members = groups.entry(key).or_default();
    // Held with the groups (always taken in this order), not copied: an organization may
    // hold many users.
    let org_users = shared
        .config
        .require_org_users
        .then(|| lock(&shared.org_users));
    for user in data.users {
        if call == Call::Add
            && org_users.as_ref().is_some_and(|all| {
                !all.get(&data.org)
                    .is_some_and(|known| known.contains_key(&user))
            })
        {
            entries.insert(
                user,
                json!({"success": false, "organizationUserGroupId": data.group,
                       "message": "User is not part of the organization."}),
            );
            continue;
        }
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
    Ok(entries)
}

pub(super) async fn get_users(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let passed = match gate(&shared, Call::GetUsers, &version, &headers, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let UsersQuery {
        org,
        group_ids,
        page_size,
        number,
        after,
    } = match UsersQuery::parse(&passed.data) {
        Ok(q) => q,
        Err(message) => return invalid(message),
    };
    let fault = shared.config.listing_fault;
    if let Some(ListingFault::FailPage(p, status)) = fault
        && p == number
    {
        return error(status_code(status), status, "The listing failed.");
    }
    let size = match fault {
        Some(ListingFault::Oversize) => page_size * 2,
        _ => page_size,
    };
    let users = listed(&shared, &org, &group_ids, after.as_deref(), size + 1);
    let mut more = users.len() > size;
    if let Some(ListingFault::EndAfterPage(last)) = fault
        && number >= last
    {
        more = false;
    }
    let repeat = match fault {
        Some(ListingFault::Repeat(n)) => n.max(1),
        _ => 1,
    };
    let all = lock(&shared.org_users);
    let known = all.get(&org);
    let page: Vec<Value> = users
        .iter()
        .take(size)
        .flat_map(|u| std::iter::repeat_n(u, repeat))
        .map(|u| match known.and_then(|k| k.get(u)) {
            Some(k) => json!({"userId": u, "name": k.name, "email": k.email}),
            None => json!({"userId": u, "name": u, "email": format!("{u}@example.com")}),
        })
        .collect();
    let mut result = json!({"status": "success", "message": "Users fetched.", "data": page});
    drop(all);
    if more {
        let last = match fault {
            Some(ListingFault::Overlap(k)) => size.saturating_sub(1 + k),
            _ => size - 1,
        };
        let token = match (fault, &after) {
            (Some(ListingFault::RepeatToken), Some(after)) => format!("after:{number}:{after}"),
            _ => format!("after:{}:{}", number + 1, users[last]),
        };
        result["nextPageToken"] = json!(token);
    }
    success(&shared, &passed, result)
}

/// A `/organizations/users/get` request's query.
struct UsersQuery {
    org: String,
    group_ids: Vec<String>,
    page_size: usize,
    /// The page's number, from 1.
    number: u64,
    /// The last user ID of the page before.
    after: Option<String>,
}

impl UsersQuery {
    fn parse(data: &serde_json::Map<String, Value>) -> Result<UsersQuery, &'static str> {
        let Some(Value::String(org)) = data.get("organizationId") else {
            return Err("organizationId is required and must be a non-empty string");
        };
        let group_ids: Vec<String> = match data.get("organizationUserGroupIds") {
            None => Vec::new(),
            Some(Value::Array(ids)) if ids.len() <= 30 => ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => return Err("organizationUserGroupIds must be an array of at most 30 IDs"),
        };
        let page_size = match data.get("pageSize") {
            None => 1000,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=1000) => n as usize,
                _ => return Err("pageSize must be a number from 1 to 1000"),
            },
        };
        // The token is the page's number and the last user ID of the page before: each page
        // is read from there, so paging through a large group costs a page's work per call,
        // not the whole group's.
        let (number, after): (u64, Option<String>) = match data.get("pageToken") {
            None | Some(Value::Null) => (1, None),
            Some(Value::String(t)) => match t
                .strip_prefix("after:")
                .and_then(|t| t.split_once(':'))
                .and_then(|(n, last)| Some((n.parse().ok()?, last)))
            {
                Some((n, last)) => (n, Some(last.to_string())),
                None => return Err("pageToken is not one this server handed out"),
            },
            Some(_) => return Err("pageToken must be a string"),
        };
        Ok(UsersQuery {
            org: org.clone(),
            group_ids,
            page_size,
            number,
            after,
        })
    }
}

/// At most `most` users of `org` after `after`, in order: the members of its groups (those
/// in `group_ids`, or all), and its own users when no group narrows the read.
fn listed(
    shared: &Shared,
    org: &str,
    group_ids: &[String],
    after: Option<&str>,
    most: usize,
) -> Vec<String> {
    let groups = shared.groups();
    let mut users = BTreeSet::new();
    let from = match after {
        Some(last) => Bound::Excluded(last.to_string()),
        None => Bound::Unbounded,
    };
    for ((o, g), members) in groups.iter() {
        if o == org && (group_ids.is_empty() || group_ids.contains(g)) {
            let range = members.range((from.clone(), Bound::Unbounded));
            users.extend(range.take(most).cloned());
        }
    }
    // The organization's own users (`/users/add`) count when no group narrows the read.
    if group_ids.is_empty()
        && let Some(known) = lock(&shared.org_users).get(org)
    {
        let range = known.range::<String, _>((from.clone(), Bound::Unbounded));
        users.extend(range.take(most).map(|(u, _)| u.clone()));
    }
    users.into_iter().take(most).collect()
}

/// The HTTP status the callable protocol gives an error status.
fn status_code(status: &str) -> StatusCode {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => StatusCode::BAD_REQUEST,
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "PERMISSION_DENIED" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "ALREADY_EXISTS" | "ABORTED" => StatusCode::CONFLICT,
        "RESOURCE_EXHAUSTED" => StatusCode::TOO_MANY_REQUESTS,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "DEADLINE_EXCEEDED" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(super) async fn create_groups(
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

pub(super) async fn list_memberships(State(shared): State<Arc<Shared>>) -> Response {
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
