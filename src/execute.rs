//! Sending the plan: one add request per chunk, at most `rate` requests per second through one
//! shared governor limiter, at most `concurrency` in flight, and every answer turned into
//! per-membership outcomes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use governor::{Quota, RateLimiter};
use indicatif::ProgressBar;

use crate::client::{AddResponse, VeltClient};
use crate::outcome::{Detail, Outcome, Status};
use crate::plan::{Chunk, Plan};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub chunk_size: usize,
    /// Requests per second.
    pub rate: f64,
    pub concurrency: usize,
}

/// What a run of requests produced.
#[derive(Debug)]
pub struct Execution {
    /// One per `Plan::memberships` entry.
    pub outcomes: Vec<Outcome>,
    pub requests: u64,
    /// Set when the API refused the credentials and the run stopped.
    pub auth_failure: Option<String>,
}

/// The limiter's quota: one request every `1 / rate` seconds and no burst, so no 1-second
/// window ever holds more than `rate + 1` requests.
pub fn quota(rate: f64) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::MIN)
}

pub async fn execute(
    plan: &Plan,
    client: &VeltClient,
    opts: &ExecOptions,
    progress: &ProgressBar,
) -> Execution {
    let limiter = RateLimiter::direct(quota(opts.rate));
    let stop = AtomicBool::new(false);
    let mut outcomes = vec![Outcome::new(Status::NotAttempted); plan.memberships.len()];
    let mut requests = 0u64;
    let mut auth_failure = None;

    let mut answers = futures_util::stream::iter(plan.chunks(opts.chunk_size))
        .map(|chunk| send(chunk, plan, client, &limiter, &stop))
        .buffer_unordered(opts.concurrency.max(1));
    while let Some((chunk, response)) = answers.next().await {
        progress.inc(chunk.members.len() as u64);
        let Some(response) = response else { continue };
        requests += 1;
        log_response(&chunk, &response);
        if auth_failure.is_none()
            && response.is_auth_failure()
            && let AddResponse::Rejected { message, .. } = &response
        {
            auth_failure = Some(message.clone());
        }
        apply(plan, &chunk, response, &mut outcomes);
    }
    Execution {
        outcomes,
        requests,
        auth_failure,
    }
}

/// Sends one chunk when the limiter allows, unless the run has stopped (then `None`).
async fn send<'a>(
    chunk: Chunk<'a>,
    plan: &'a Plan,
    client: &VeltClient,
    limiter: &DirectLimiter,
    stop: &AtomicBool,
) -> (Chunk<'a>, Option<AddResponse>) {
    if stop.load(Ordering::Acquire) {
        return (chunk, None);
    }
    limiter.until_ready().await;
    // The run may have stopped while this request waited for its turn.
    if stop.load(Ordering::Acquire) {
        return (chunk, None);
    }
    let users: Vec<&str> = chunk
        .members
        .iter()
        .map(|&i| &*plan.memberships[i as usize].user)
        .collect();
    tracing::debug!(
        event = "request",
        organizationId = &*chunk.group.org,
        organizationUserGroupId = &*chunk.group.id,
        users = users.len(),
    );
    let response = client
        .add_users(&chunk.group.org, &chunk.group.id, &users)
        .await;
    if response.is_auth_failure() {
        stop.store(true, Ordering::Release);
    }
    (chunk, Some(response))
}

type DirectLimiter = governor::DefaultDirectRateLimiter;

fn log_response(chunk: &Chunk<'_>, response: &AddResponse) {
    let org = &*chunk.group.org;
    let group = &*chunk.group.id;
    match response {
        AddResponse::PerUser { http_status, .. } => tracing::debug!(
            event = "response",
            organizationId = org,
            organizationUserGroupId = group,
            httpStatus = http_status,
        ),
        AddResponse::Rejected {
            http_status,
            error_status,
            message,
        } => tracing::warn!(
            event = "request_failed",
            organizationId = org,
            organizationUserGroupId = group,
            httpStatus = http_status,
            errorStatus = error_status.as_deref().unwrap_or(""),
            message = message.as_str(),
        ),
        AddResponse::Transport { message, .. } => tracing::warn!(
            event = "request_failed",
            organizationId = org,
            organizationUserGroupId = group,
            message = message.as_str(),
        ),
    }
}

/// Turns one answer into the outcomes of the chunk's members.
fn apply(plan: &Plan, chunk: &Chunk<'_>, response: AddResponse, outcomes: &mut [Outcome]) {
    match response {
        AddResponse::PerUser {
            http_status,
            entries,
        } => {
            let missing = Arc::new(Detail {
                message: "the answer has no entry for this user".into(),
                error_status: None,
                http_status: Some(http_status),
            });
            // Servers repeat the same per-user message; share one copy of each.
            let mut shared: HashMap<&str, Arc<Detail>> = HashMap::new();
            for &i in chunk.members {
                let user = &*plan.memberships[i as usize].user;
                let outcome = &mut outcomes[i as usize];
                outcome.attempts += 1;
                let (status, detail) = match entries.get(user) {
                    Some(e) if e.success == Some(true) => (Status::Added, None),
                    Some(e) if e.success == Some(false) => {
                        let message = e
                            .message
                            .as_deref()
                            .unwrap_or("the server reported success: false");
                        let detail = shared
                            .entry(message)
                            .or_insert_with(|| {
                                Arc::new(Detail {
                                    message: message.to_string(),
                                    error_status: None,
                                    http_status: Some(http_status),
                                })
                            })
                            .clone();
                        (Status::Failed, Some(detail))
                    }
                    Some(_) => (
                        Status::Unconfirmed,
                        Some(Arc::new(Detail {
                            message: "the answer's entry for this user has no success flag".into(),
                            error_status: None,
                            http_status: Some(http_status),
                        })),
                    ),
                    None => (Status::Unconfirmed, Some(missing.clone())),
                };
                outcome.status = status;
                outcome.detail = detail;
            }
        }
        AddResponse::Rejected {
            http_status,
            error_status,
            message,
        } => set_all(
            chunk,
            outcomes,
            Status::Failed,
            Detail {
                message,
                error_status,
                http_status: Some(http_status),
            },
        ),
        AddResponse::Transport {
            message,
            maybe_applied,
        } => {
            // Honest about what is known: a request that may have reached the server is
            // neither added nor failed.
            let (status, message) = if maybe_applied {
                (
                    Status::Unconfirmed,
                    format!("no answer; the server may have applied it: {message}"),
                )
            } else {
                (Status::Failed, format!("could not connect: {message}"))
            };
            set_all(
                chunk,
                outcomes,
                status,
                Detail {
                    message,
                    error_status: None,
                    http_status: None,
                },
            );
        }
    }
}

fn set_all(chunk: &Chunk<'_>, outcomes: &mut [Outcome], status: Status, detail: Detail) {
    let detail = Arc::new(detail);
    for &i in chunk.members {
        let outcome = &mut outcomes[i as usize];
        outcome.attempts += 1;
        outcome.status = status;
        outcome.detail = Some(detail.clone());
    }
}
