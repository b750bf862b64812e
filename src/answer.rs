//! Every kind of answer the API documentation allows (see `shared/velt-api.md`), read into
//! an [`Answer`]: per-user results, an error object, a proxy's page, a mangled body; with the
//! server's text made safe to quote (clipped, control characters escaped).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// One user's entry in `result.data` of a successful answer. An entry of another shape reads
/// as one without a `success` flag: not confirmed either way.
#[derive(Debug, Clone, Default)]
pub struct UserEntry {
    pub success: Option<bool>,
    pub message: Option<String>,
}

impl UserEntry {
    fn from_value(v: &serde_json::Value) -> UserEntry {
        UserEntry {
            success: v.get("success").and_then(serde_json::Value::as_bool),
            message: v
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map(server_text),
        }
    }
}

/// Everything an add call can come back with.
#[derive(Debug)]
pub enum Answer {
    /// A 2xx answer of the documented shape: per-user entries, keyed by user ID.
    PerUser {
        http_status: u16,
        entries: HashMap<String, UserEntry>,
    },
    /// An error answer, a non-2xx status, or a 2xx body that is not the documented shape.
    Rejected {
        http_status: u16,
        error_status: Option<String>,
        message: String,
        /// The `Retry-After` header, seconds or HTTP-date, as a wait from now.
        retry_after: Option<Duration>,
    },
    /// No HTTP answer. `maybe_applied` is false only when the request surely never left.
    Transport {
        message: String,
        maybe_applied: bool,
        timed_out: bool,
    },
}

#[derive(Deserialize)]
struct SuccessBody {
    result: SuccessResult,
}

#[derive(Deserialize)]
struct SuccessResult {
    data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// Reads a status and body into an `Answer`.
pub fn read_answer(http_status: u16, body: &[u8]) -> Answer {
    if (200..300).contains(&http_status)
        && let Ok(ok) = serde_json::from_slice::<SuccessBody>(body)
    {
        return Answer::PerUser {
            http_status,
            entries: ok
                .result
                .data
                .iter()
                .map(|(user, v)| (user.clone(), UserEntry::from_value(v)))
                .collect(),
        };
    }
    if let Ok(err) = serde_json::from_slice::<ErrorBody>(body) {
        let message = err
            .error
            .message
            .as_deref()
            .map_or_else(|| "the server gave no message".into(), server_text);
        return Answer::Rejected {
            http_status,
            error_status: err.error.status.as_deref().map(server_text),
            message,
            retry_after: None,
        };
    }
    let message = if (200..300).contains(&http_status) {
        format!(
            "the answer is not the documented shape (no result.data): {}",
            snippet(body)
        )
    } else {
        format!("HTTP {http_status}: {}", snippet(body))
    };
    Answer::Rejected {
        http_status,
        error_status: None,
        message,
        retry_after: None,
    }
}

/// `Retry-After` as seconds (`120`) or an HTTP-date, as a wait from `now` (zero if past).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Text from the server, for the report and the logs: at most 1,000 bytes, control
/// characters escaped so that it can never start a log line of its own.
fn server_text(text: &str) -> String {
    let mut end = text.len().min(1000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let shown = crate::text::escape_controls(&text[..end]);
    if end < text.len() {
        format!("{shown}…")
    } else {
        shown.into_owned()
    }
}

/// The start of a body, on one line, for messages (a proxy's HTML page can be long).
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = crate::text::escape_controls(&text).into_owned();
    if text.is_empty() {
        return "empty body".into();
    }
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn success_body_gives_per_user_entries() {
        let body = br#"{"result":{"status":"success","data":{"a":{"success":true},"b":{"success":false,"message":"nope"}}}}"#;
        match read_answer(200, body) {
            Answer::PerUser { entries, .. } => {
                assert_eq!(entries["a"].success, Some(true));
                assert_eq!(entries["b"].message.as_deref(), Some("nope"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_bodies_and_odd_answers_are_rejections() {
        let r = read_answer(
            400,
            br#"{"error":{"status":"INVALID_ARGUMENT","message":"bad"}}"#,
        );
        assert!(
            matches!(r, Answer::Rejected { http_status: 400, ref error_status, .. }
            if error_status.as_deref() == Some("INVALID_ARGUMENT"))
        );
        let r = read_answer(502, b"<html><body>Bad gateway</body></html>");
        assert!(matches!(r, Answer::Rejected { ref message, .. }
            if message == "HTTP 502: <html><body>Bad gateway</body></html>"));
        let r = read_answer(200, b"{\"ok\":true}");
        assert!(matches!(r, Answer::Rejected { ref message, .. }
            if message.starts_with("the answer is not the documented shape")));
        let r = read_answer(
            200,
            br#"{"error":{"status":"PERMISSION_DENIED","message":"x"}}"#,
        );
        assert_eq!(
            crate::engine::gate::classify(&r),
            crate::engine::gate::Class::Stop
        );
    }
}
