//! The HTTP client for Velt's REST API: add users to a group (the main call), remove users
//! from a group, read a group's members page by page, and create a group; and the reading of
//! every kind of answer the API documentation allows (see `shared/velt-api.md`).
//!
//! Secrets stay here: they come from the environment or files, are sent as headers marked
//! sensitive, and `Credentials` never prints them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::cli::ApiVersion;
use crate::error::Error;

pub const API_KEY_ENV: &str = "VELT_API_KEY";
pub const AUTH_TOKEN_ENV: &str = "VELT_AUTH_TOKEN";

/// The API key and workspace auth token. `Debug` shows neither.
#[derive(Clone)]
pub struct Credentials {
    api_key: String,
    auth_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { <redacted> }")
    }
}

impl Credentials {
    pub fn new(api_key: impl Into<String>, auth_token: impl Into<String>) -> Credentials {
        Credentials {
            api_key: api_key.into(),
            auth_token: auth_token.into(),
        }
    }

    /// From the files if given, otherwise from `VELT_API_KEY` / `VELT_AUTH_TOKEN`.
    pub fn resolve(
        api_key_file: Option<&Path>,
        auth_token_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, Error> {
        let api_key = secret(api_key_file, API_KEY_ENV, "--api-key-file", &env)?;
        let auth_token = secret(auth_token_file, AUTH_TOKEN_ENV, "--auth-token-file", &env)?;
        Ok(Credentials {
            api_key,
            auth_token,
        })
    }

    fn headers(&self) -> Result<HeaderMap, Error> {
        let mut headers = HeaderMap::new();
        for (name, value, origin) in [
            ("x-velt-api-key", &self.api_key, "the API key"),
            ("x-velt-auth-token", &self.auth_token, "the auth token"),
        ] {
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                Error::Config(format!(
                    "{origin} contains characters that cannot be sent in a header; check its value"
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(name, v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(headers)
    }
}

fn secret(
    file: Option<&Path>,
    var: &str,
    flag: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let value = match file {
        Some(path) => read_secret_file(path, flag)?,
        None => env(var).unwrap_or_default(),
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        let origin = match file {
            Some(p) => format!("{} is empty", p.display()),
            None => format!("{var} is not set"),
        };
        return Err(Error::Config(format!(
            "{origin}; set {var} or pass {flag} (or use --emulator / --dry-run to send nothing real)"
        )));
    }
    Ok(value)
}

/// The most a key or token file may hold: a secret is short, and `/dev/zero` is not one.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret from a file: at most 64 KB, UTF-8; a file that other users can read is warned
/// about, as ssh does for private keys.
fn read_secret_file(path: &Path, flag: &str) -> Result<String, Error> {
    use std::io::Read;
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & 0o077 != 0 {
            tracing::warn!(
                event = "secret_file_readable",
                path = %path.display(),
                mode = %format!("{:o}", mode & 0o777),
                message = "other users can read this secret file; chmod 600 it"
            );
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(Error::Config(format!(
            "{}: larger than {} KB, so not a key or token; check {flag}",
            path.display(),
            MAX_SECRET_FILE / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::Config(format!(
            "{}: not UTF-8 text, so not a key or token; check {flag}",
            path.display()
        ))
    })
}

/// Refuses a plain-http base URL on a host other than this machine's loopback: the API key
/// and token would cross the network in clear text.
pub fn check_transport_security(base_url: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let Ok(url) = reqwest::Url::parse(base_url.trim_end_matches('/')) else {
        return Ok(()); // `VeltClient::new` says what is wrong with it.
    };
    if url.scheme() != "http" || allow_insecure_http {
        return Ok(());
    }
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if local {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--base-url `{}` is plain http to another host: the API key and token would travel \
         unencrypted; use https://, or pass --allow-insecure-http if the network is trusted",
        crate::text::clip(base_url)
    )))
}

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

#[derive(Serialize)]
struct Body<T> {
    data: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GetUsersData<'a> {
    organization_id: &'a str,
    organization_user_group_ids: [&'a str; 1],
    page_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_token: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupsData<'a> {
    organization_id: &'a str,
    organization_user_groups: [NewGroup<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewGroup<'a> {
    group_id: &'a str,
    group_name: &'a str,
}

/// One page of a group's members.
#[derive(Debug, Default)]
pub struct Page {
    pub users: Vec<String>,
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct PageBody {
    result: PageResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageResult {
    data: Vec<PageUser>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageUser {
    user_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddData<'a> {
    organization_id: &'a str,
    organization_user_group_id: &'a str,
    user_ids: &'a [&'a str],
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

/// The largest answer body read; a larger one is a failed request, read no further.
pub const MAX_BODY: usize = 16 << 20;

/// How requests travel: over HTTP, or straight into an in-process emulator (tests on a
/// paused clock, where no socket may wait on real time).
#[derive(Clone)]
enum Transport {
    Http(reqwest::Client),
    InProcess {
        router: axum::Router,
        headers: HeaderMap,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Http(_) => "Transport::Http",
            Transport::InProcess { .. } => "Transport::InProcess",
        })
    }
}

/// A client bound to one base URL, API version and set of credentials.
#[derive(Debug, Clone)]
pub struct VeltClient {
    transport: Transport,
    /// Where requests go, without a trailing slash.
    base: String,
    /// Bounds each attempt whole: connecting, sending and reading the answer's body.
    timeout: Duration,
    add_url: String,
    delete_url: String,
    get_users_url: String,
    create_groups_url: String,
}

/// An HTTP answer, before its body is read as any call's result.
struct Raw {
    http_status: u16,
    retry_after: Option<Duration>,
    location: Option<String>,
    body: Vec<u8>,
}

impl Raw {
    /// The status and the headers the job reads, with an empty body.
    fn head(http_status: u16, headers: &HeaderMap, now: std::time::SystemTime) -> Raw {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        Raw {
            http_status,
            retry_after: text(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(v, now)),
            location: text(reqwest::header::LOCATION).map(str::to_string),
            body: Vec::new(),
        }
    }

    /// The body read once, as a per-user answer or a rejection carrying `Retry-After`.
    fn read(&self) -> Answer {
        let mut answer = read_answer(self.http_status, &self.body);
        if let Answer::Rejected { retry_after, .. } = &mut answer {
            *retry_after = self.retry_after;
        }
        answer
    }

    /// For a call whose success is not a per-user map (a page of users): its answer as a
    /// rejection, a per-user map included, since that is not this call's answer.
    fn rejection(&self) -> Answer {
        match self.read() {
            Answer::PerUser { http_status, .. } => Answer::Rejected {
                http_status,
                error_status: None,
                message: format!(
                    "the answer is not the documented shape: {}",
                    snippet(&self.body)
                ),
                retry_after: None,
            },
            other => other,
        }
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.http_status)
    }
}

impl VeltClient {
    pub fn new(
        base_url: &str,
        version: ApiVersion,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<VeltClient, Error> {
        let base = base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| {
            Error::Config(format!(
                "--base-url `{base}` is not a URL ({e}); write e.g. https://api.velt.dev"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "--base-url `{base}` must start with https:// (or http:// for a local server)"
            )));
        }
        let http = reqwest::Client::builder()
            .default_headers(credentials.headers()?)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // The API has no reason to redirect, and a redirect would carry the credentials
            // to whatever host it names: a 3xx is a failed request (see `post`).
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(concat!("velt-group-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Runtime(format!("cannot set up the HTTP client: {e}")))?;
        Ok(VeltClient::with_transport(
            Transport::Http(http),
            base,
            version,
            timeout,
        ))
    }

    /// A client whose requests go straight into `router` (an in-process emulator's), with the
    /// same headers and body a real request carries.
    pub fn in_process(
        router: axum::Router,
        version: ApiVersion,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<VeltClient, Error> {
        let headers = credentials.headers()?;
        Ok(VeltClient::with_transport(
            Transport::InProcess { router, headers },
            crate::emulator::IN_PROCESS_URL,
            version,
            timeout,
        ))
    }

    fn with_transport(
        transport: Transport,
        base: &str,
        version: ApiVersion,
        timeout: Duration,
    ) -> VeltClient {
        let v = version.path();
        VeltClient {
            base: base.to_string(),
            transport,
            timeout,
            add_url: format!("{base}/{v}/organizations/usergroups/users/add"),
            delete_url: format!("{base}/{v}/organizations/usergroups/users/delete"),
            get_users_url: format!("{base}/{v}/users/get"),
            create_groups_url: format!("{base}/{v}/organizations/usergroups/add"),
        }
    }

    /// Where requests go: the base URL, or the in-process emulator's stand-in.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One attempt, bounded whole by the timeout. A redirect or an over-long body is a
    /// rejection; no answer at all is a transport failure.
    async fn post<T: Serialize>(&self, url: &str, data: T) -> Result<Raw, Answer> {
        let body = match serde_json::to_vec(&Body { data }) {
            Ok(b) => b,
            Err(e) => {
                return Err(Answer::Transport {
                    message: format!("cannot encode the request: {e}"),
                    maybe_applied: false,
                    timed_out: false,
                });
            }
        };
        let attempt = async {
            match &self.transport {
                Transport::Http(http) => post_http(http, url, body).await,
                Transport::InProcess { router, headers } => {
                    post_in_process(router, headers, url, body).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(raw)) => match redirect_target(&raw) {
                Some(rejection) => Err(rejection),
                None => Ok(raw),
            },
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Answer::Transport {
                message: format!(
                    "no complete answer within --timeout ({} s)",
                    self.timeout.as_secs_f64()
                ),
                maybe_applied: true,
                timed_out: true,
            }),
        }
    }

    /// Sends one add request and reads whatever comes back. Never fails: every outcome is data.
    pub async fn add_users(&self, org: &str, group: &str, user_ids: &[&str]) -> Answer {
        self.per_user(&self.add_url, org, group, user_ids).await
    }

    /// Sends one delete request; its answer is read like an add's (per-user entries).
    pub async fn remove_users(&self, org: &str, group: &str, user_ids: &[&str]) -> Answer {
        self.per_user(&self.delete_url, org, group, user_ids).await
    }

    async fn per_user(&self, url: &str, org: &str, group: &str, user_ids: &[&str]) -> Answer {
        let data = AddData {
            organization_id: org,
            organization_user_group_id: group,
            user_ids,
        };
        match self.post(url, data).await {
            Ok(raw) => raw.read(),
            Err(transport) => transport,
        }
    }

    /// One page of a group's members (get users, filtered by one group). An answer that is not
    /// a page comes back as `Err`, to be classified like an add's.
    pub async fn get_members(
        &self,
        org: &str,
        group: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page, Answer> {
        let data = GetUsersData {
            organization_id: org,
            organization_user_group_ids: [group],
            page_size,
            page_token,
        };
        let raw = self.post(&self.get_users_url, data).await?;
        if raw.is_success()
            && let Ok(page) = serde_json::from_slice::<PageBody>(&raw.body)
        {
            return Ok(Page {
                users: page.result.data.into_iter().map(|u| u.user_id).collect(),
                next_page_token: page.result.next_page_token.filter(|t| !t.is_empty()),
            });
        }
        Err(raw.rejection())
    }

    /// Creates one group. `Ok(Err(message))`: the server answered, and refused this group.
    /// A group that already exists (409 ALREADY_EXISTS) counts as created.
    pub async fn create_group(
        &self,
        org: &str,
        group: &str,
        name: &str,
    ) -> Result<Result<(), String>, Answer> {
        let data = CreateGroupsData {
            organization_id: org,
            organization_user_groups: [NewGroup {
                group_id: group,
                group_name: name,
            }],
        };
        let raw = self.post(&self.create_groups_url, data).await?;
        match raw.read() {
            Answer::PerUser { entries, .. } => Ok(match entries.get(group) {
                Some(UserEntry {
                    success: Some(true),
                    ..
                }) => Ok(()),
                Some(UserEntry {
                    message: Some(m), ..
                }) if m.to_ascii_lowercase().contains("already exist") => Ok(()),
                Some(UserEntry { message, .. }) => Err(message
                    .clone()
                    .unwrap_or_else(|| "the server did not confirm the group".into())),
                None => Err("the answer has no entry for this group".into()),
            }),
            Answer::Rejected {
                error_status: Some(s),
                ..
            } if s == "ALREADY_EXISTS" => Ok(Ok(())),
            // A rejection or a lost answer, to be classified like an add's.
            other => Err(other),
        }
    }
}

/// The answer head, then its body up to [`MAX_BODY`].
async fn post_http(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Raw, Answer> {
    let mut response = match http.post(url).body(body).send().await {
        Ok(r) => r,
        Err(e) => return Err(transport_error(&e)),
    };
    let mut raw = Raw::head(
        response.status().as_u16(),
        response.headers(),
        std::time::SystemTime::now(),
    );
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if raw.body.len() + chunk.len() > MAX_BODY {
                    return Err(too_large(raw.http_status));
                }
                raw.body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(raw),
            Err(e) => return Err(transport_error(&e)),
        }
    }
}

async fn post_in_process(
    router: &axum::Router,
    headers: &HeaderMap,
    url: &str,
    body: Vec<u8>,
) -> Result<Raw, Answer> {
    use tower::ServiceExt;
    let path = url
        .strip_prefix(crate::emulator::IN_PROCESS_URL)
        .unwrap_or(url);
    let mut request = axum::http::Request::post(path);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let failed = |message: String| Answer::Transport {
        message,
        maybe_applied: true,
        timed_out: false,
    };
    let request = request
        .body(axum::body::Body::from(body))
        .map_err(|e| failed(e.to_string()))?;
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let mut raw = Raw::head(
        response.status().as_u16(),
        response.headers(),
        std::time::SystemTime::now(),
    );
    raw.body = axum::body::to_bytes(response.into_body(), MAX_BODY)
        .await
        .map_err(|e| failed(error_chain(&e)))?
        .to_vec();
    Ok(raw)
}

fn too_large(http_status: u16) -> Answer {
    Answer::Rejected {
        http_status,
        error_status: None,
        message: format!(
            "HTTP {http_status}: the answer is larger than {} MB; read no further",
            MAX_BODY >> 20
        ),
        retry_after: None,
    }
}

/// A 3xx answer as a rejection naming where it pointed: no redirect is followed, since it
/// would take the credentials to another host.
fn redirect_target(raw: &Raw) -> Option<Answer> {
    if !(300..400).contains(&raw.http_status) {
        return None;
    }
    let to = raw.location.as_deref().unwrap_or("(no Location header)");
    Some(Answer::Rejected {
        http_status: raw.http_status,
        error_status: None,
        message: format!(
            "HTTP {}: the server redirects to {}; no redirect is followed (it would carry the \
             credentials elsewhere); check --base-url",
            raw.http_status,
            crate::text::clip(to)
        ),
        retry_after: None,
    })
}

fn transport_error(e: &reqwest::Error) -> Answer {
    // A connection that was never made cannot have applied anything; any other failure
    // (timeout, reset, a body cut short) may have come after the server acted.
    let maybe_applied = !e.is_connect() && !e.is_builder();
    Answer::Transport {
        message: error_chain(e),
        maybe_applied,
        timed_out: e.is_timeout(),
    }
}

/// The error and its causes on one line: reqwest's own message alone says little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
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
fn snippet(body: &[u8]) -> String {
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
    fn credentials_never_print() {
        let c = Credentials::new("KEY-SECRET-1", "TOKEN-SECRET-2");
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let err = Credentials::resolve(None, None, |_| None).unwrap_err();
        assert!(err.to_string().contains("VELT_API_KEY is not set"), "{err}");
        let err = Credentials::resolve(None, None, |v| (v == API_KEY_ENV).then(|| "k".to_string()))
            .unwrap_err();
        assert!(
            err.to_string().contains("VELT_AUTH_TOKEN is not set"),
            "{err}"
        );
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
            crate::engine::retry::classify(&r),
            crate::engine::retry::Class::Stop
        );
    }
}
