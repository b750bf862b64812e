//! The HTTP client for Velt's REST API: add users to a group (the main call), remove users
//! from a group, read a group's members page by page, and create a group. Each attempt is
//! bounded whole by `--timeout`, follows no redirect and reads at most 16 MB; what comes back
//! is read by [`crate::answer`]. Credentials go as headers marked sensitive.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::answer::snippet;
pub use crate::answer::{Answer, UserEntry, parse_retry_after, read_answer};
pub use crate::credentials::{API_KEY_ENV, AUTH_TOKEN_ENV, Credentials, check_transport_security};
use crate::error::Error;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrgUsersPageData<'a> {
    organization_id: &'a str,
    page_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_token: Option<&'a str>,
}

/// One page of a group's members (user IDs), or of an organization's users.
#[derive(Debug, Default)]
pub struct Page<T = String> {
    pub users: Vec<T>,
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct PageBody {
    result: PageResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageResult {
    data: Vec<OrgUser>,
    /// The documentation names it `nextPageToken`, and once `pageToken`: either is taken.
    #[serde(default, alias = "pageToken")]
    next_page_token: Option<String>,
}

/// A user as get users lists it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrgUser {
    pub user_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A user to add to (or update in) an organization.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_role: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrgUsersData<'a> {
    organization_id: &'a str,
    users: &'a [NewUser<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOrgUsersData<'a> {
    organization_id: &'a str,
    user_ids: &'a [&'a str],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddData<'a> {
    organization_id: &'a str,
    organization_user_group_id: &'a str,
    user_ids: &'a [&'a str],
}

/// The largest answer body read; a larger one is a failed request, read no further.
pub const MAX_BODY: usize = 16 << 20;

/// What one entry of a listing page may take: an ID of at most 1 KB, a name and an e-mail.
/// A page of `pageSize` entries is read up to that many times this (and 64 KB more).
const PAGE_ENTRY_BYTES: usize = 4 << 10;

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

/// `--api-version`: the version in request paths (`/v1/...`, `/v2/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiVersion {
    V1,
    V2,
}

impl ApiVersion {
    pub fn path(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V2 => "v2",
        }
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
    /// The organization-user calls exist under /v2 only.
    add_org_users_url: String,
    update_org_users_url: String,
    delete_org_users_url: String,
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
            // Resolve names without glibc's NSS modules (a static build in a scratch image has
            // none): hickory reads /etc/hosts and /etc/resolv.conf itself.
            .hickory_dns(true)
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
            add_org_users_url: format!("{base}/v2/users/add"),
            update_org_users_url: format!("{base}/v2/users/update"),
            delete_org_users_url: format!("{base}/v2/users/delete"),
        }
    }

    /// Where requests go: the base URL, or the in-process emulator's stand-in.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One attempt, bounded whole by the timeout. A redirect or an over-long body is a
    /// rejection; no answer at all is a transport failure.
    /// A write: the answer read, or the transport failure as one.
    async fn write<T: Serialize>(&self, url: &str, data: T) -> Answer {
        match self.post(url, data, MAX_BODY).await {
            Ok(raw) => raw.read(),
            Err(transport) => transport,
        }
    }

    /// One attempt, its answer read up to `cap` bytes.
    async fn post<T: Serialize>(&self, url: &str, data: T, cap: usize) -> Result<Raw, Answer> {
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
                Transport::Http(http) => post_http(http, url, body, cap).await,
                Transport::InProcess { router, headers } => {
                    post_in_process(router, headers, url, body, cap).await
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
        self.write(url, data).await
    }

    /// One page of a group's members (get users, filtered by one group), with their e-mails. An answer that is not
    /// a page comes back as `Err`, to be classified like an add's.
    pub async fn get_members(
        &self,
        org: &str,
        group: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<OrgUser>, Answer> {
        let data = GetUsersData {
            organization_id: org,
            organization_user_group_ids: [group],
            page_size,
            page_token,
        };
        let mut page = self.get_page(data, page_size).await?;
        // The name is not needed for a member; the e-mail is, for --protect-users.
        for u in &mut page.users {
            u.name = None;
        }
        Ok(page)
    }

    /// One page of an organization's users, with their names and e-mails (get users with
    /// `organizationId` alone).
    pub async fn get_org_users(
        &self,
        org: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<OrgUser>, Answer> {
        self.get_page(
            OrgUsersPageData {
                organization_id: org,
                page_size,
                page_token,
            },
            page_size,
        )
        .await
    }

    /// One page of at most `page_size` users, read up to what that many can take (a hostile
    /// server's huge page is cut off, not parsed).
    async fn get_page<T: Serialize>(
        &self,
        data: T,
        page_size: u32,
    ) -> Result<Page<OrgUser>, Answer> {
        let cap = (PAGE_ENTRY_BYTES * page_size as usize + (64 << 10)).min(MAX_BODY);
        let raw = self.post(&self.get_users_url, data, cap).await?;
        if raw.is_success()
            && let Ok(page) = serde_json::from_slice::<PageBody>(&raw.body)
        {
            return Ok(Page {
                users: page.result.data,
                next_page_token: page.result.next_page_token.filter(|t| !t.is_empty()),
            });
        }
        Err(raw.rejection())
    }

    /// Adds users to an organization (`create`) or updates them; answered per user.
    pub async fn put_org_users(&self, create: bool, org: &str, users: &[NewUser<'_>]) -> Answer {
        let url = if create {
            &self.add_org_users_url
        } else {
            &self.update_org_users_url
        };
        let data = OrgUsersData {
            organization_id: org,
            users,
        };
        self.write(url, data).await
    }

    /// Removes users from an organization; answered per user.
    pub async fn delete_org_users(&self, org: &str, user_ids: &[&str]) -> Answer {
        let data = DeleteOrgUsersData {
            organization_id: org,
            user_ids,
        };
        self.write(&self.delete_org_users_url, data).await
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
        let raw = self.post(&self.create_groups_url, data, MAX_BODY).await?;
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

/// The answer head, then its body up to `cap` bytes.
async fn post_http(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    cap: usize,
) -> Result<Raw, Answer> {
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
                if raw.body.len() + chunk.len() > cap {
                    return Err(too_large(raw.http_status, cap));
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
    cap: usize,
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
    // An in-memory body fails only by passing the cap.
    raw.body = axum::body::to_bytes(response.into_body(), cap)
        .await
        .map_err(|_| too_large(raw.http_status, cap))?
        .to_vec();
    Ok(raw)
}

fn too_large(http_status: u16, cap: usize) -> Answer {
    let size = if cap >= 1 << 20 {
        format!("{} MB", cap >> 20)
    } else {
        format!("{} KB", cap >> 10)
    };
    Answer::Rejected {
        http_status,
        error_status: None,
        message: format!("HTTP {http_status}: the answer is larger than {size}; read no further"),
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
