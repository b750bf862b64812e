//! Retry policy: which answers are worth another attempt, how long to wait before it, and a
//! retry budget so that a failing API is not met with a
//! retry storm.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Answer;

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A 2xx answer of the documented shape.
    Answered,
    /// Worth another attempt. `maybe_applied`: the server may have acted on it.
    Retry { maybe_applied: bool, cost: u32 },
    /// The request is wrong as it is: do not resend it unchanged.
    Refuse { invalid_argument: bool },
    /// The credentials are refused: stop the run.
    Stop,
}

/// Cost in budget tokens of one retry; timeouts cost more, as in the AWS SDKs' retry quota.
const RETRY_COST: u32 = 5;
const TIMEOUT_RETRY_COST: u32 = 10;

pub fn classify(response: &Answer) -> Class {
    match response {
        Answer::PerUser { .. } => Class::Answered,
        Answer::Transport {
            maybe_applied,
            timed_out,
            ..
        } => Class::Retry {
            maybe_applied: *maybe_applied,
            cost: if *timed_out {
                TIMEOUT_RETRY_COST
            } else {
                RETRY_COST
            },
        },
        Answer::Rejected {
            http_status,
            error_status,
            ..
        } => classify_status(*http_status, error_status.as_deref()),
    }
}

fn classify_status(http: u16, error_status: Option<&str>) -> Class {
    let retry = |maybe_applied| Class::Retry {
        maybe_applied,
        cost: RETRY_COST,
    };
    match error_status {
        Some("UNAUTHENTICATED" | "PERMISSION_DENIED") => return Class::Stop,
        Some("INVALID_ARGUMENT") => {
            return Class::Refuse {
                invalid_argument: true,
            };
        }
        Some("FAILED_PRECONDITION" | "OUT_OF_RANGE" | "NOT_FOUND" | "ALREADY_EXISTS") => {
            return Class::Refuse {
                invalid_argument: false,
            };
        }
        // Refused before any work was done.
        Some("RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "ABORTED") => return retry(false),
        // A server fault or a deadline: the change may have been applied.
        Some("INTERNAL" | "UNKNOWN" | "DEADLINE_EXCEEDED") => return retry(true),
        _ => {}
    }
    match http {
        401 | 403 => Class::Stop,
        408 | 429 | 503 => retry(false),
        // A 2xx whose body is not the documented shape: cut short or mangled on the way.
        200..=299 | 500 | 502 | 504 => retry(true),
        400 => Class::Refuse {
            invalid_argument: true,
        },
        _ => Class::Refuse {
            invalid_argument: false,
        },
    }
}

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base * 2^n)]`, but at
/// least `floor` (the protocol's owners ask for at least 1 s after 500/503).
pub fn backoff(attempt: u32, base: Duration, cap: Duration, floor: Duration) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    ceiling.mul_f64(fastrand::f64()).max(floor.min(cap))
}

/// A retry quota in the spirit of the AWS SDKs': retries spend tokens, successes earn them
/// back. Where the SDKs then fail the request, this job must still add every membership, so an
/// empty budget makes retries wait for tokens, which come back slowly with time. While most
/// attempts fail, retries therefore slow to `refill_per_sec / cost` per second, and since a
/// waiting retry keeps its concurrency slot, new requests slow down with them.
#[derive(Debug)]
pub struct Budget {
    state: Mutex<(f64, Instant)>,
    capacity: f64,
    refill_per_sec: f64,
    warned: AtomicBool,
}

impl Budget {
    pub fn new(capacity: u32, refill_per_sec: f64) -> Budget {
        Budget {
            state: Mutex::new((capacity as f64, Instant::now())),
            capacity: capacity as f64,
            refill_per_sec: refill_per_sec.max(0.01),
            warned: AtomicBool::new(false),
        }
    }

    /// Takes `cost` tokens, or says how long until they are there.
    pub fn try_take(&self, cost: u32) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(s.1).as_secs_f64() * self.refill_per_sec;
        s.0 = (s.0 + earned).min(self.capacity);
        s.1 = now;
        let cost = cost as f64;
        if s.0 >= cost {
            s.0 -= cost;
            return Ok(());
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                event = "retry_budget_exhausted",
                message = "most recent attempts failed; slowing retries down"
            );
        }
        // At least a millisecond: a wait that rounds to nothing would spin.
        Err(Duration::from_secs_f64((cost - s.0) / self.refill_per_sec)
            .max(Duration::from_millis(1)))
    }

    /// A success earns tokens back: the retry's cost for a retried request, 1 otherwise.
    pub fn on_success(&self, retry_cost: Option<u32>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = (s.0 + retry_cost.map_or(1.0, f64::from)).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(http: u16, status: Option<&str>) -> Answer {
        Answer::Rejected {
            http_status: http,
            error_status: status.map(str::to_string),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn classification_follows_the_status_table() {
        let retry_not_applied = Class::Retry {
            maybe_applied: false,
            cost: RETRY_COST,
        };
        let retry_maybe = Class::Retry {
            maybe_applied: true,
            cost: RETRY_COST,
        };
        let cases = [
            (408, None, retry_not_applied),
            (409, Some("ABORTED"), retry_not_applied),
            (429, Some("RESOURCE_EXHAUSTED"), retry_not_applied),
            (429, None, retry_not_applied),
            (500, Some("INTERNAL"), retry_maybe),
            (500, Some("UNKNOWN"), retry_maybe),
            (502, None, retry_maybe),
            (503, Some("UNAVAILABLE"), retry_not_applied),
            (504, Some("DEADLINE_EXCEEDED"), retry_maybe),
            (200, None, retry_maybe),
            (
                400,
                Some("INVALID_ARGUMENT"),
                Class::Refuse {
                    invalid_argument: true,
                },
            ),
            (
                400,
                Some("FAILED_PRECONDITION"),
                Class::Refuse {
                    invalid_argument: false,
                },
            ),
            (
                400,
                Some("OUT_OF_RANGE"),
                Class::Refuse {
                    invalid_argument: false,
                },
            ),
            (
                404,
                Some("NOT_FOUND"),
                Class::Refuse {
                    invalid_argument: false,
                },
            ),
            (
                409,
                Some("ALREADY_EXISTS"),
                Class::Refuse {
                    invalid_argument: false,
                },
            ),
            (
                422,
                None,
                Class::Refuse {
                    invalid_argument: false,
                },
            ),
            (401, Some("UNAUTHENTICATED"), Class::Stop),
            (403, None, Class::Stop),
            (400, Some("PERMISSION_DENIED"), Class::Stop),
        ];
        for (http, status, want) in cases {
            assert_eq!(classify(&rejected(http, status)), want, "{http} {status:?}");
        }
        let timeout = Answer::Transport {
            message: String::new(),
            maybe_applied: true,
            timed_out: true,
        };
        assert_eq!(
            classify(&timeout),
            Class::Retry {
                maybe_applied: true,
                cost: TIMEOUT_RETRY_COST
            }
        );
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_cap() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        for attempt in 0..12 {
            let ceiling = (base * 2u32.pow(attempt)).min(cap);
            for _ in 0..50 {
                let d = backoff(attempt, base, cap, Duration::ZERO);
                assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            }
        }
        let waits: Vec<_> = (0..50)
            .map(|_| backoff(3, base, cap, Duration::ZERO))
            .collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "jitter varies");
        assert!(backoff(0, base, cap, Duration::from_secs(1)) >= Duration::from_secs(1));
        assert_eq!(backoff(100, base, cap, Duration::from_secs(60)), cap);
    }

    #[test]
    fn budget_runs_dry_and_refills() {
        let b = Budget::new(10, 100.0);
        assert!(b.try_take(5).is_ok());
        assert!(b.try_take(5).is_ok());
        let wait = b.try_take(5).unwrap_err();
        assert!(wait <= Duration::from_millis(51), "{wait:?}");
        b.on_success(Some(5));
        assert!(b.try_take(5).is_ok());
    }
}
