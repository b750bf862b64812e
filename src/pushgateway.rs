//! `--metrics-push`: the metrics of `--metrics-file`, pushed to a Prometheus Pushgateway at
//! the end of every run (failed and interrupted ones too), as Kubernetes batch jobs report:
//! the textfile collector is for hosts. `PUT URL/metrics/job/JOB/KEY/VALUE...` replaces the
//! group's metrics as a whole.
//!
//! The last fully successful run's time is carried over as with the file, read back from the
//! gateway itself (its `/metrics`, the series of the same grouping key), so that nothing but
//! the gateway needs to keep state between runs. Only metrics go to the gateway: no
//! credential is ever sent there.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::metrics::{LAST_SUCCESS, RunStats, succeeded, text};

/// Where to push, and the grouping key.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub job: String,
    pub labels: Vec<(String, String)>,
}

impl Target {
    /// The group's URL; every value base64url-encoded (the gateway's `@base64` form), so that a
    /// `/` or an empty value cannot break the path.
    fn group_url(&self) -> String {
        let mut url = format!(
            "{}/metrics/job@base64/{}",
            self.url.trim_end_matches('/'),
            encode(&self.job)
        );
        for (k, v) in &self.labels {
            url.push_str(&format!("/{k}@base64/{}", encode(v)));
        }
        url
    }

    /// Whether a pushed series' labels are exactly this grouping key (the gateway adds an
    /// empty `instance`).
    fn is_ours(&self, labels: &[(String, String)]) -> bool {
        let mut want: Vec<(&str, &str)> = vec![("job", self.job.as_str())];
        want.extend(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut got: Vec<(&str, &str)> = labels
            .iter()
            .filter(|(k, v)| !(k == "instance" && v.is_empty()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        want == got
    }
}

fn encode(value: &str) -> String {
    if value.is_empty() {
        // The gateway's spelling of an empty value.
        "=".to_string()
    } else {
        URL_SAFE_NO_PAD.encode(value)
    }
}

/// Pushes the run's metrics. An error is for a warning: it never changes the run's exit code.
pub async fn push(
    target: &Target,
    stats: &RunStats,
    exit_code: u8,
    duration: Duration,
    now: SystemTime,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let previous = if succeeded(stats, exit_code) {
        None
    } else {
        previous_last_success(&http, target).await
    };
    let body = text(stats, exit_code, duration, now, previous);
    let response = http
        .put(target.group_url())
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| without_url(&e))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let text = read_capped(response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    Err(format!(
        "the gateway answered HTTP {status}: {}",
        crate::text::clip(text.trim())
    ))
}

/// Most of a refusal's body read (for its first words).
const MAX_ERROR_BODY: usize = 64 << 10;
/// Most of the gateway's `/metrics` read: enough for many thousands of groups.
const MAX_METRICS_BODY: usize = 16 << 20;

/// A request error without its URL, which may carry the gateway's user and password.
fn without_url(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), &crate::credentials::redact_url(url.as_str()));
    }
    message
}

/// A body as text, read up to `cap` bytes; `None` past that, or when it breaks off.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Option<String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > cap {
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The last success time the gateway holds for this grouping key, if any.
async fn previous_last_success(http: &reqwest::Client, target: &Target) -> Option<f64> {
    let url = format!("{}/metrics", target.url.trim_end_matches('/'));
    let response = http.get(url).send().await.ok()?;
    // A body cut off at the cap is still read for the series before the cut.
    let text = read_capped(response, MAX_METRICS_BODY).await?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(LAST_SUCCESS)?.strip_prefix('{')?;
        let (labels, value) = rest.rsplit_once("} ")?;
        let value = value.trim().parse::<f64>().ok()?;
        (target.is_ours(&parse_labels(labels)) && value.is_finite() && value > 0.0).then_some(value)
    })
}

/// `a="x",b="y"` as pairs (values with escaped quotes are taken as they are written).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        out.push((
            key.trim_start_matches(',').trim().to_string(),
            after[..end].to_string(),
        ));
        rest = after.get(end + 1..).unwrap_or("");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keys_are_encoded_and_matched() {
        let t = Target {
            url: "http://gw:9091/".into(),
            job: "velt-group-sync".into(),
            labels: vec![
                ("env".into(), "prod/eu".into()),
                ("team".into(), String::new()),
            ],
        };
        assert_eq!(
            t.group_url(),
            "http://gw:9091/metrics/job@base64/dmVsdC1ncm91cC1zeW5j/env@base64/cHJvZC9ldQ/team@base64/="
        );
        let labels = parse_labels(r#"env="prod/eu",instance="",job="velt-group-sync",team="""#);
        assert!(t.is_ours(&labels), "{labels:?}");
        let other = parse_labels(r#"env="dev",instance="",job="velt-group-sync",team="""#);
        assert!(!t.is_ours(&other));
    }
}
