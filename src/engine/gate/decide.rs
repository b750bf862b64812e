//! What an answer means: the one pure function from an answer (and where the request stands
//! in its attempts) to what happens next. Every other part of the engine asks it; none of them
//! looks at HTTP or gRPC statuses.

use std::time::Duration;

use crate::client::Answer;

/// Cost in budget tokens of one retry; timeouts cost more, as in the AWS SDKs' retry quota.
pub(crate) const RETRY_COST: u32 = 5;
pub(crate) const TIMEOUT_RETRY_COST: u32 = 10;

/// Where a request stands: the attempts that failed so far, and whether one of them may have
/// taken effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tries {
    pub retries: u32,
    pub maybe_applied: bool,
}

/// The limits `decide` holds a request to (`--max-retries`, `--max-retry-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_retries: u32,
    pub max_retry_after: Duration,
}

/// How long a retry waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The server said how long (`Retry-After`): the whole run waits that long.
    RunPause(Duration),
    /// Exponential backoff with jitter, never less than `floor`.
    Backoff { floor: Duration },
}

/// Why a request was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// The server asked to wait longer than `--max-retry-after`.
    TooLong(Duration),
    /// `--max-retries` attempts, none with a definite answer.
    NoMoreAttempts,
}

/// What happens after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A result: the call is done.
    Done,
    /// Throttled: the run pauses (the throttle works out how long, from `retry_after` and
    /// what it has learned) and the same request goes again, not counted as a retry.
    Pause { retry_after: Option<Duration> },
    /// Sent again after `wait`, spending `cost` retry tokens. `tries` is where the request
    /// stands after this answer.
    Retry { wait: Wait, cost: u32, tries: Tries },
    /// No definite answer and no more attempts. `held_back`: nothing was applied and the
    /// server only asked for patience, so a later run sends it as new.
    GiveUp {
        why: GaveUp,
        maybe_applied: bool,
        held_back: bool,
    },
    /// The request is wrong as it is: not sent again unchanged. `invalid_argument`: one bad
    /// ID may sink a whole chunk.
    Refuse { invalid_argument: bool },
    /// The credentials are refused: the run stops.
    Stop,
}

/// Whether an answer is a throttle: HTTP 429 or `RESOURCE_EXHAUSTED`.
pub(crate) fn is_throttle(answer: &Answer) -> bool {
    matches!(answer, Answer::Rejected { http_status, error_status, .. }
        if *http_status == 429 || error_status.as_deref() == Some("RESOURCE_EXHAUSTED"))
}

/// What happens after `answer` (`None`: the call had its result) to a request at `tries`.
pub(crate) fn decide(answer: Option<&Answer>, tries: Tries, limits: Limits) -> Next {
    let Some(answer) = answer else {
        return Next::Done;
    };
    let retry_after = match answer {
        Answer::Rejected { retry_after, .. } => *retry_after,
        _ => None,
    };
    let too_long = retry_after.filter(|&ra| ra > limits.max_retry_after);
    if is_throttle(answer) {
        return match too_long {
            Some(ra) => Next::GiveUp {
                why: GaveUp::TooLong(ra),
                maybe_applied: tries.maybe_applied,
                held_back: true,
            },
            None => Next::Pause { retry_after },
        };
    }
    let (maybe_applied, cost) = match classify(answer) {
        Class::Retry {
            maybe_applied,
            cost,
        } => (tries.maybe_applied || maybe_applied, cost),
        Class::Refuse { invalid_argument } => return Next::Refuse { invalid_argument },
        // A per-user answer is a result; a call that does not expect one gets it as a
        // rejection (see `client`).
        Class::Answered => {
            return Next::Refuse {
                invalid_argument: false,
            };
        }
        Class::Stop => return Next::Stop,
    };
    if let Some(ra) = too_long {
        return Next::GiveUp {
            why: GaveUp::TooLong(ra),
            maybe_applied,
            held_back: !maybe_applied,
        };
    }
    if tries.retries >= limits.max_retries {
        return Next::GiveUp {
            why: GaveUp::NoMoreAttempts,
            maybe_applied,
            held_back: false,
        };
    }
    let wait = match (retry_after, answer) {
        (Some(ra), _) => Wait::RunPause(ra),
        // The protocol's owners ask for at least 1 s after 500 and 503.
        (
            None,
            Answer::Rejected {
                http_status: 500 | 503,
                ..
            },
        ) => Wait::Backoff {
            floor: Duration::from_secs(1),
        },
        (None, _) => Wait::Backoff {
            floor: Duration::ZERO,
        },
    };
    Next::Retry {
        wait,
        cost,
        tries: Tries {
            retries: tries.retries + 1,
            maybe_applied,
        },
    }
}

/// An answer's class, before the request's attempts and the limits are taken into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A 2xx answer of the documented shape.
    Answered,
    /// Worth another attempt. `maybe_applied`: the server may have acted on it.
    Retry { maybe_applied: bool, cost: u32 },
    /// The request is wrong as it is: do not resend it unchanged.
    Refuse { invalid_argument: bool },
    /// The credentials are refused: stop the run.
    Stop,
}

pub(crate) fn classify(response: &Answer) -> Class {
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
    let refuse = |invalid_argument| Class::Refuse { invalid_argument };
    match error_status {
        Some("UNAUTHENTICATED" | "PERMISSION_DENIED") => return Class::Stop,
        Some("INVALID_ARGUMENT") => return refuse(true),
        Some("FAILED_PRECONDITION" | "OUT_OF_RANGE" | "NOT_FOUND" | "ALREADY_EXISTS") => {
            return refuse(false);
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
        400 => refuse(true),
        _ => refuse(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(http: u16, status: Option<&str>, retry_after: Option<u64>) -> Answer {
        Answer::Rejected {
            http_status: http,
            error_status: status.map(str::to_string),
            message: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    const LIMITS: Limits = Limits {
        max_retries: 3,
        max_retry_after: Duration::from_secs(120),
    };

    fn first(answer: &Answer) -> Next {
        decide(Some(answer), Tries::default(), LIMITS)
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
        let refuse = |invalid_argument| Class::Refuse { invalid_argument };
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
            (400, Some("INVALID_ARGUMENT"), refuse(true)),
            (400, Some("FAILED_PRECONDITION"), refuse(false)),
            (400, Some("OUT_OF_RANGE"), refuse(false)),
            (404, Some("NOT_FOUND"), refuse(false)),
            (409, Some("ALREADY_EXISTS"), refuse(false)),
            (422, None, refuse(false)),
            (401, Some("UNAUTHENTICATED"), Class::Stop),
            (403, None, Class::Stop),
            (400, Some("PERMISSION_DENIED"), Class::Stop),
        ];
        for (http, status, want) in cases {
            let got = classify(&rejected(http, status, None));
            assert_eq!(got, want, "{http} {status:?}");
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
    fn a_result_is_done_and_credentials_stop() {
        assert_eq!(decide(None, Tries::default(), LIMITS), Next::Done);
        assert_eq!(first(&rejected(401, None, None)), Next::Stop);
        assert_eq!(
            first(&rejected(400, Some("INVALID_ARGUMENT"), None)),
            Next::Refuse {
                invalid_argument: true
            }
        );
    }

    #[test]
    fn a_throttle_pauses_the_run_unless_it_asks_too_much() {
        for answer in [
            rejected(429, None, None),
            rejected(400, Some("RESOURCE_EXHAUSTED"), None),
        ] {
            assert_eq!(first(&answer), Next::Pause { retry_after: None });
        }
        assert_eq!(
            first(&rejected(429, None, Some(60))),
            Next::Pause {
                retry_after: Some(Duration::from_secs(60))
            }
        );
        // However many retries went before: a throttle is not a retry.
        let spent = Tries {
            retries: 3,
            maybe_applied: true,
        };
        assert_eq!(
            decide(Some(&rejected(429, None, None)), spent, LIMITS),
            Next::Pause { retry_after: None }
        );
        assert_eq!(
            decide(Some(&rejected(429, None, Some(121))), spent, LIMITS),
            Next::GiveUp {
                why: GaveUp::TooLong(Duration::from_secs(121)),
                maybe_applied: true,
                held_back: true,
            }
        );
    }

    #[test]
    fn retries_back_off_then_give_up() {
        let mut tries = Tries::default();
        for n in 1..=3 {
            match decide(Some(&rejected(500, None, None)), tries, LIMITS) {
                Next::Retry {
                    wait: Wait::Backoff { floor },
                    cost: RETRY_COST,
                    tries: after,
                } => {
                    assert_eq!(floor, Duration::from_secs(1), "500 waits at least 1 s");
                    assert_eq!(after.retries, n);
                    assert!(after.maybe_applied);
                    tries = after;
                }
                other => panic!("attempt {n}: {other:?}"),
            }
        }
        assert_eq!(
            decide(Some(&rejected(502, None, None)), tries, LIMITS),
            Next::GiveUp {
                why: GaveUp::NoMoreAttempts,
                maybe_applied: true,
                held_back: false,
            }
        );
        // A retry remembers that an earlier attempt may have been applied.
        let once = Tries {
            retries: 1,
            maybe_applied: true,
        };
        assert!(matches!(
            decide(Some(&rejected(503, None, None)), once, LIMITS),
            Next::Retry {
                tries: Tries {
                    maybe_applied: true,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn retry_after_pauses_the_run_or_gives_up_held_back() {
        assert_eq!(
            first(&rejected(503, Some("UNAVAILABLE"), Some(30))),
            Next::Retry {
                wait: Wait::RunPause(Duration::from_secs(30)),
                cost: RETRY_COST,
                tries: Tries {
                    retries: 1,
                    maybe_applied: false
                },
            }
        );
        assert_eq!(
            first(&rejected(503, Some("UNAVAILABLE"), Some(600))),
            Next::GiveUp {
                why: GaveUp::TooLong(Duration::from_secs(600)),
                maybe_applied: false,
                held_back: true,
            }
        );
        // Possibly applied: given up, but not held back as unsent.
        assert_eq!(
            first(&rejected(500, Some("INTERNAL"), Some(600))),
            Next::GiveUp {
                why: GaveUp::TooLong(Duration::from_secs(600)),
                maybe_applied: true,
                held_back: false,
            }
        );
    }
}
