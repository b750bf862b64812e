//! The one attempt loop that every call of a run goes through (adds, removals, page reads,
//! group creations): take an in-flight slot and keep it through every retry, wait at the gate,
//! send, count, classify, log; then pause the run on a throttle, stop it on refused
//! credentials, give a refused request back to its caller, or back off and send it again
//! until `--max-retries`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Run;
use super::gate::{GaveUp, Next, Tries};
use crate::client::Answer;
use crate::outcome::Detail;
use crate::plan::Group;

/// What a call is, for its log lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The log event of a request: `request`, `remove_request`, `read_page`, `create_group`,
    /// `add_users`, `update_users`, `delete_users`, `read_users_page`.
    pub what: &'static str,
    pub org: &'a str,
    /// None for the calls about an organization's users.
    pub group: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn group(what: &'static str, group: &'a Group) -> Target<'a> {
        Target {
            what,
            org: &group.org,
            group: Some(&group.id),
        }
    }

    pub fn org(what: &'static str, org: &'a str) -> Target<'a> {
        Target {
            what,
            org,
            group: None,
        }
    }
}

/// How a call ended without a result.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The run is stopping: a signal, refused credentials, a spent throttle budget.
    Stopped,
    /// The server refused the request as it is; `invalid_argument`: one bad ID may sink it.
    Refused {
        detail: Arc<Detail>,
        invalid_argument: bool,
    },
    /// No definite answer, and no more attempts. `maybe_applied`: an attempt may have taken
    /// effect. `held_back`: the server only asked to wait longer than `--max-retry-after`.
    GaveUp {
        detail: Arc<Detail>,
        maybe_applied: bool,
        held_back: bool,
    },
    /// The credentials were refused; the run stops.
    Credentials(Arc<Detail>),
}

impl Failure {
    /// The reason, for every failure but a stop.
    pub fn detail(&self) -> Option<&Arc<Detail>> {
        match self {
            Failure::Stopped => None,
            Failure::Refused { detail, .. }
            | Failure::GaveUp { detail, .. }
            | Failure::Credentials(detail) => Some(detail),
        }
    }
}

impl Run<'_> {
    /// Sends with `send` until a result or a failure. `send` is called once per attempt, right
    /// before the request goes (the place to mark what is in flight); `on_retry` is told each
    /// failure that will be sent again, so that a run cut short during the wait knows it.
    pub(crate) async fn attempt<T, F, Fut>(
        &self,
        target: Target<'_>,
        mut send: F,
        mut on_retry: impl FnMut(&Failure),
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Answer>>,
    {
        let gate = &self.gate;
        let Some(_slot) = gate.slot().await else {
            return Err(Failure::Stopped);
        };
        let mut tries = Tries::default();
        let mut retry_cost = None;
        loop {
            if !gate.wait_turn().await {
                return Err(Failure::Stopped);
            }
            tracing::debug!(
                event = target.what,
                organizationId = target.org,
                organizationUserGroupId = target.group,
                attempt = tries.retries + 1,
            );
            let sent_at = Instant::now();
            let result = send().await;
            let answer = result.as_ref().err();
            self.count(answer);
            gate.observe(answer, sent_at);
            let next = gate.decide(answer, tries);
            log_answer(target, answer, &next, tries.retries + 1, sent_at.elapsed());
            let answer = match result {
                Ok(value) => {
                    gate.succeeded(retry_cost);
                    return Ok(value);
                }
                Err(answer) => answer,
            };
            match next {
                Next::Pause { retry_after } => {
                    let (_, _, message) = rejection(&answer);
                    if !gate.pause(sent_at, retry_after, &message) {
                        return Err(Failure::Stopped);
                    }
                    // Not a retry: the same request goes again after the pause.
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                Next::Retry {
                    wait,
                    cost,
                    tries: after,
                } => {
                    // Told, so that a run cut short during the wait knows why.
                    let (http, status, message) = rejection(&answer);
                    on_retry(&Failure::GaveUp {
                        detail: gave_up(after.retries, status, http, &message),
                        maybe_applied: after.maybe_applied,
                        held_back: false,
                    });
                    if !gate.wait_to_retry(wait, after.retries, cost).await {
                        return Err(Failure::Stopped);
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    retry_cost = Some(cost);
                    tries = after;
                }
                ended => return Err(self.failure(ended, tries, &answer)),
            }
        }
    }

    /// The failure a request ends in after `answer` at `tries`: refused, given up, or stopped
    /// by refused credentials (which stops the run).
    fn failure(&self, next: Next, tries: Tries, answer: &Answer) -> Failure {
        let (http, status, message) = rejection(answer);
        match next {
            Next::Stop => {
                self.fail_auth(message.clone());
                Failure::Credentials(detail(message, status, http))
            }
            Next::Refuse { invalid_argument } => Failure::Refused {
                detail: detail(message, status, http),
                invalid_argument,
            },
            Next::GiveUp {
                why,
                maybe_applied,
                held_back,
            } => Failure::GaveUp {
                detail: match why {
                    GaveUp::TooLong(ra) => self.too_long(ra, http, &message),
                    GaveUp::NoMoreAttempts => gave_up(tries.retries + 1, status, http, &message),
                },
                maybe_applied,
                held_back,
            },
            // A result, a pause or a retry does not end the request.
            Next::Done | Next::Pause { .. } | Next::Retry { .. } => Failure::Stopped,
        }
    }

    /// Why a request whose `Retry-After` is beyond `--max-retry-after` was given up.
    fn too_long(&self, ra: Duration, http: Option<u16>, message: &str) -> Arc<Detail> {
        detail(
            format!(
                "not sent again: the server asked to wait {} s, more than --max-retry-after ({} s); {message}",
                ra.as_secs(),
                self.opts.max_retry_after.as_secs()
            ),
            Some("RESOURCE_EXHAUSTED".into()),
            http,
        )
    }
}

/// Why a request was given up after `attempts` attempts with no definite answer.
fn gave_up(attempts: u32, status: Option<String>, http: Option<u16>, message: &str) -> Arc<Detail> {
    detail(
        format!("no definite answer after {attempts} attempt(s): {message}"),
        status,
        http,
    )
}

pub(crate) fn detail(
    message: String,
    error_status: Option<String>,
    http_status: Option<u16>,
) -> Arc<Detail> {
    Arc::new(Detail {
        message,
        error_status,
        http_status,
    })
}

/// (HTTP status, error status, message) of an answer that is not a per-user result.
pub(crate) fn rejection(answer: &Answer) -> (Option<u16>, Option<String>, String) {
    match answer {
        Answer::Rejected {
            http_status,
            error_status,
            message,
            ..
        } => (Some(*http_status), error_status.clone(), message.clone()),
        Answer::Transport {
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
        Answer::PerUser { http_status, .. } => (Some(*http_status), None, "answered".to_string()),
    }
}

/// One log line per answer: debug for a result, warn for anything else.
fn log_answer(
    target: Target<'_>,
    answer: Option<&Answer>,
    next: &Next,
    attempt: u32,
    took: Duration,
) {
    let org = target.org;
    let group = target.group;
    let elapsed_ms = took.as_millis() as u64;
    let Some(answer) = answer else {
        tracing::debug!(
            event = "response",
            call = target.what,
            organizationId = org,
            organizationUserGroupId = group,
            httpStatus = 200,
            attempt = attempt,
            elapsed_ms = elapsed_ms,
        );
        return;
    };
    let retry = matches!(next, Next::Retry { .. } | Next::Pause { .. });
    let (http, status, message) = rejection(answer);
    tracing::warn!(
        event = "request_failed",
        call = target.what,
        organizationId = org,
        organizationUserGroupId = group,
        httpStatus = http,
        errorStatus = status.as_deref().unwrap_or(""),
        attempt = attempt,
        elapsed_ms = elapsed_ms,
        retry = retry,
        message = message.as_str(),
    );
}
