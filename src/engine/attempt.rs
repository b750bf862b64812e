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
use super::gate::is_throttle;
use super::retry::{self, Class};
use super::throttle::Verdict;
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
        // Held through every retry and backoff: while most attempts fail, new requests slow
        // down instead of joining them.
        let _slot = tokio::select! {
            p = gate.concurrency.permits.acquire() => p,
            _ = gate.stopped() => return Err(Failure::Stopped),
        };
        let mut retries = 0u32;
        let mut retry_cost = None;
        let mut maybe_applied = false;
        loop {
            if !gate.wait_turn().await {
                return Err(Failure::Stopped);
            }
            tracing::debug!(
                event = target.what,
                organizationId = target.org,
                organizationUserGroupId = target.group,
                attempt = retries + 1,
            );
            let sent_at = Instant::now();
            let result = send().await;
            self.count(result.as_ref().err());
            gate.observe(result.as_ref().err(), sent_at);
            let answer = match result {
                Ok(value) => {
                    gate.budget.on_success(retry_cost);
                    log_answer(target, None, retries + 1, sent_at.elapsed());
                    return Ok(value);
                }
                Err(answer) => answer,
            };
            let class = retry::classify(&answer);
            log_answer(
                target,
                Some((&answer, class)),
                retries + 1,
                sent_at.elapsed(),
            );
            if is_throttle(&answer) {
                match self.on_throttle(sent_at, &answer) {
                    // Not a retry: the same request goes again after the pause.
                    Verdict::Wait => continue,
                    Verdict::TooLong(ra) => {
                        return Err(Failure::GaveUp {
                            detail: self.too_long(ra, &answer),
                            maybe_applied,
                            held_back: true,
                        });
                    }
                    Verdict::Exhausted => return Err(Failure::Stopped),
                }
            }
            let (http, status, message) = rejection(&answer);
            match class {
                Class::Stop => {
                    self.fail_auth(message.clone());
                    return Err(Failure::Credentials(detail(message, status, http)));
                }
                Class::Refuse { invalid_argument } => {
                    return Err(Failure::Refused {
                        detail: detail(message, status, http),
                        invalid_argument,
                    });
                }
                // A per-user answer is a result; a call that does not expect one gets it as
                // a rejection (see `client`), so this arm is never reached.
                Class::Answered => {
                    return Err(Failure::Refused {
                        detail: detail(message, status, http),
                        invalid_argument: false,
                    });
                }
                Class::Retry {
                    maybe_applied: may,
                    cost,
                } => {
                    maybe_applied |= may;
                    let retry_after = match &answer {
                        Answer::Rejected { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    if let Some(ra) = retry_after.filter(|&ra| ra > self.opts.max_retry_after) {
                        return Err(Failure::GaveUp {
                            detail: self.too_long(ra, &answer),
                            maybe_applied,
                            held_back: !maybe_applied,
                        });
                    }
                    let gave_up = Failure::GaveUp {
                        detail: detail(
                            format!(
                                "no definite answer after {} attempt(s): {message}",
                                retries + 1
                            ),
                            status,
                            http,
                        ),
                        maybe_applied,
                        held_back: false,
                    };
                    if retries >= self.opts.max_retries {
                        return Err(gave_up);
                    }
                    on_retry(&gave_up);
                    if !self.wait_to_retry(retries, retry_after, http, cost).await {
                        return Err(Failure::Stopped);
                    }
                    retry_cost = Some(cost);
                    retries += 1;
                }
            }
        }
    }

    /// A throttled answer to a request sent at `sent_at`: what the throttle makes of it. A
    /// request that will go again counts as a retry; a spent throttle budget stops the run.
    fn on_throttle(&self, sent_at: Instant, answer: &Answer) -> Verdict {
        let (retry_after, message) = match answer {
            Answer::Rejected {
                retry_after,
                message,
                ..
            } => (*retry_after, message.as_str()),
            _ => (None, ""),
        };
        let verdict = self
            .gate
            .throttle
            .on_throttled(sent_at, retry_after, message);
        match verdict {
            Verdict::Wait => {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Exhausted => {
                if self.gate.stop() {
                    tracing::error!(
                        event = "throttle_budget_spent",
                        waited_s = self.gate.throttle.waited().as_secs(),
                        message = "the server kept throttling for as long as --max-throttle-wait allows; sending nothing more"
                    );
                }
            }
            Verdict::TooLong(_) => {}
        }
        verdict
    }

    /// Waits before retry number `retries + 1`: a run-wide pause for `Retry-After`, else
    /// backoff; and a retry token from the budget. False if the run stops meanwhile.
    async fn wait_to_retry(
        &self,
        retries: u32,
        retry_after: Option<Duration>,
        http: Option<u16>,
        cost: u32,
    ) -> bool {
        let opts = self.opts;
        let wait = match retry_after {
            Some(ra) => {
                // The whole run waits, not only this request.
                self.gate.throttle.pause_until(Instant::now() + ra);
                tracing::info!(event = "retry_after", seconds = ra.as_secs_f64());
                Duration::ZERO
            }
            None => retry::backoff(
                retries,
                opts.base_backoff,
                opts.max_backoff,
                retry_floor(http),
            ),
        };
        while let Err(more) = self.gate.budget.try_take(cost) {
            if !self.gate.sleep(more).await {
                return false;
            }
        }
        if !self.gate.sleep(wait).await {
            return false;
        }
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Why a request whose `Retry-After` is beyond `--max-retry-after` was given up.
    fn too_long(&self, ra: Duration, answer: &Answer) -> Arc<Detail> {
        let (http, _, message) = rejection(answer);
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

/// Shortest wait before retrying after this HTTP status (the protocol owners' guidance). A
/// 429 never gets here: throttles pause the whole run instead (see `throttle`).
fn retry_floor(http: Option<u16>) -> Duration {
    match http {
        Some(500 | 503) => Duration::from_secs(1),
        _ => Duration::ZERO,
    }
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
fn log_answer(target: Target<'_>, failed: Option<(&Answer, Class)>, attempt: u32, took: Duration) {
    let org = target.org;
    let group = target.group;
    let elapsed_ms = took.as_millis() as u64;
    let Some((answer, class)) = failed else {
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
    let retry = matches!(class, Class::Retry { .. });
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
