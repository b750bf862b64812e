//! `--notify URL`: the run's outcome posted once it has ended, so that a failed night reaches
//! a person without Prometheus: a Slack incoming webhook or a Microsoft Teams webhook get a
//! message of their own shape (told by the URL's host, or `--notify-format`), anything else a
//! plain JSON document. A webhook URL is a credential: it is never logged, only its host.
//! A notification that cannot be sent is a warning, never a failed run.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, exit};
use crate::report::Ended;

/// `--notify-on`: which runs are notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyOn {
    /// Runs that did not exit 0.
    Failure,
    /// Runs that failed or changed something (added, removed, created, updated).
    Changes,
    /// Every run.
    Always,
}

/// `--notify-format`: the payload's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyFormat {
    /// By the URL's host: Slack (`hooks.slack.com`), Teams (`*.webhook.office.com`,
    /// `outlook.office.com`), else JSON.
    Auto,
    Slack,
    Teams,
    Json,
}

/// Where and when to notify.
#[derive(Debug, Clone)]
pub struct Notify {
    pub urls: Vec<String>,
    pub on: NotifyOn,
    pub format: NotifyFormat,
}

/// Changes shown in a chat message at most.
const SHOWN: usize = 10;

impl Notify {
    /// The URLs given with `--notify` and in `--notify-file` (one a line, `#` comments), each
    /// checked: http(s) only, and plain http only to this machine unless `allow_insecure_http`.
    pub fn resolve(
        given: &[String],
        file: Option<&std::path::Path>,
        on: NotifyOn,
        format: NotifyFormat,
        allow_insecure_http: bool,
    ) -> Result<Notify, Error> {
        let mut urls: Vec<String> = given
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if let Some(path) = file {
            urls.extend(read_file(path)?);
        }
        for url in &urls {
            check(url, allow_insecure_http)?;
        }
        Ok(Notify { urls, on, format })
    }

    /// Whether a run that ended with `code` (and, if it wrote its report, `ended`) is told.
    pub fn wanted(&self, code: u8, ended: Option<&Ended>) -> bool {
        match self.on {
            NotifyOn::Always => true,
            NotifyOn::Failure => code != exit::OK,
            NotifyOn::Changes => code != exit::OK || ended.is_some_and(|e| !e.changes.is_empty()),
        }
    }

    /// Posts the outcome to every URL; returns a warning for each that could not be sent.
    pub async fn send(&self, code: u8, ended: Option<&Ended>, elapsed: Duration) -> Vec<String> {
        if self.urls.is_empty() || !self.wanted(code, ended) {
            return Vec::new();
        }
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(h) => h,
            Err(e) => return vec![format!("cannot set up notifications: {e}")],
        };
        let mut warnings = Vec::new();
        for url in &self.urls {
            let body = payload(self.format, url, code, ended, elapsed);
            let sent = http.post(url).json(&body).send().await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => warnings.push(format!(
                    "the notification to {} was answered HTTP {}",
                    shown(url),
                    r.status().as_u16()
                )),
                Err(e) => warnings.push(format!(
                    "could not notify {}: {}",
                    shown(url),
                    e.without_url()
                )),
            }
        }
        warnings
    }
}

/// The URLs of a `--notify-file`: one a line, blank lines and `#` comments left out.
fn read_file(path: &std::path::Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "{}: cannot read the --notify-file ({e}); check the path",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// A notification URL must be http(s), and plain http only to this machine unless
/// `allow_insecure_http`: a webhook URL is a credential.
fn check(url: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let Some(parsed) = parsed else {
        return Err(Error::Config(format!(
            "a --notify URL ({}) is not an http(s) URL; check it",
            shown(url)
        )));
    };
    if parsed.scheme() == "http"
        && !allow_insecure_http
        && !crate::credentials::is_loopback(&parsed)
    {
        return Err(Error::Config(format!(
            "a --notify URL ({}) is plain http to another host: {}",
            shown(url),
            "a webhook URL is a credential and would travel unencrypted; use https://, or pass --allow-insecure-http"
        )));
    }
    Ok(())
}

/// A webhook URL as it may be shown: its scheme and host only.
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "(not a URL)".to_string(),
    }
}

/// What exit `code` means, in words.
fn meaning(code: u8) -> &'static str {
    match code {
        exit::OK => "every membership went through",
        exit::INCOMPLETE => "some memberships did not go through",
        exit::USAGE => "stopped by an input or configuration error; nothing was sent",
        exit::AUTH => "the API refused the credentials",
        exit::SIGINT | exit::SIGTERM => "interrupted",
        _ => "ended",
    }
}

/// The body for `url` in `format`.
fn payload(
    format: NotifyFormat,
    url: &str,
    code: u8,
    ended: Option<&Ended>,
    elapsed: Duration,
) -> Value {
    let format = match format {
        NotifyFormat::Auto => {
            let host = reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_default();
            if host == "hooks.slack.com" {
                NotifyFormat::Slack
            } else if host.ends_with(".webhook.office.com") || host == "outlook.office.com" {
                NotifyFormat::Teams
            } else {
                NotifyFormat::Json
            }
        }
        f => f,
    };
    let title = format!("velt-group-sync: exit {code}, {}", meaning(code));
    let lines = chat_lines(ended);
    match format {
        NotifyFormat::Slack => json!({ "text": format!("*{title}*\n{}", lines.join("\n")) }),
        NotifyFormat::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "themeColor": if code == exit::OK { "2EB886" } else { "E81123" },
            "title": title,
            "text": lines.join("\n\n"),
        }),
        NotifyFormat::Json | NotifyFormat::Auto => json!({
            "tool": "velt-group-sync",
            "exitCode": code,
            "outcome": meaning(code),
            "durationMs": elapsed.as_millis() as u64,
            "summary": ended.map(|e| &e.summary),
            "refusals": ended.map_or(&[][..], |e| &e.refusals[..]),
            "changes": ended.map_or(&[][..], |e| &e.changes[..]),
            "report": ended.map(|e| e.report.as_str()),
        }),
    }
}

/// The lines of a chat message: counts, the top refusals with their hints, the first changes,
/// the report.
fn chat_lines(ended: Option<&Ended>) -> Vec<String> {
    let Some(e) = ended else {
        return vec!["No report was written: see the run's log.".to_string()];
    };
    let s = &e.summary;
    let mut lines = vec![format!(
        "{} memberships: {} added, {} removed, {} unchanged, {} failed, {} not attempted, {} invalid",
        s.memberships, s.added, s.removed, s.unchanged, s.failed, s.not_attempted, s.invalid
    )];
    if let Some(u) = s.users {
        lines.push(format!(
            "users: {} created, {} updated, {} removed, {} failed",
            u.created, u.updated, u.removed, u.failed
        ));
    }
    for r in e.refusals.iter().take(3) {
        let mut line = format!(
            "{} × {} (e.g. {})",
            r.count,
            r.message,
            r.examples.join(", ")
        );
        if let Some(h) = r.hint {
            line.push_str(&format!(": {h}"));
        }
        lines.push(line);
    }
    lines.extend(e.changes.iter().take(SHOWN).cloned());
    if e.changes.len() > SHOWN {
        lines.push("and more (see the report)".to_string());
    }
    lines.push(format!("report: {}", e.report));
    lines
}
