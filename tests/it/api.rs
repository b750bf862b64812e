//! What the server receives and how each kind of answer lands in the report, against
//! wiremock servers (and the emulator for the rate limit).

use crate::common::*;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ADD_PATH: &str = "/v1/organizations/usergroups/users/add";

/// Answers like Velt: one `success: true` entry per user sent, except the users named in
/// `refuse` (success: false) and `omit` (no entry at all).
struct PerUser {
    refuse: Vec<&'static str>,
    omit: Vec<&'static str>,
}

impl PerUser {
    fn ok() -> PerUser {
        PerUser {
            refuse: vec![],
            omit: vec![],
        }
    }
}

impl Respond for PerUser {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let group = body["data"]["organizationUserGroupId"].clone();
        let mut data = serde_json::Map::new();
        for user in body["data"]["userIds"].as_array().unwrap() {
            let user = user.as_str().unwrap();
            if self.omit.contains(&user) {
                continue;
            }
            let entry = if self.refuse.contains(&user) {
                json!({"success": false, "organizationUserGroupId": group, "message": "User is deactivated."})
            } else {
                json!({"success": true, "organizationUserGroupId": group, "message": "User added to organization user group."})
            };
            data.insert(user.to_string(), entry);
        }
        ResponseTemplate::new(200).set_body_json(json!({"result": {
            "status": "success", "message": "Added organization users to group successfully.",
            "data": data}}))
    }
}

async fn run(mut cmd: assert_cmd::Command) -> assert_cmd::assert::Assert {
    tokio::task::spawn_blocking(move || cmd.assert())
        .await
        .expect("command ran")
}

fn sync_cmd(dir: &std::path::Path, base_url: &str, input: &str) -> assert_cmd::Command {
    std::fs::write(dir.join("in.csv"), input).unwrap();
    let mut cmd = bin_with_credentials(dir);
    cmd.args(["sync", "in.csv", "--base-url", base_url]);
    cmd
}

/// `sync in.csv EXTRA...` of `input` in-process against `base_url`; the report is
/// `velt-group-sync-report.csv`, as by default.
async fn sync_api(dir: &std::path::Path, base_url: &str, input: &str, extra: &[&str]) -> InProcess {
    std::fs::write(dir.join("in.csv"), input).unwrap();
    let mut argv = vec!["in.csv", "--report", "velt-group-sync-report.csv"];
    argv.extend_from_slice(extra);
    sync_argv(Server::Url(base_url), dir, &argv).await
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_the_exact_body_and_headers_once_per_group() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ADD_PATH))
        .and(header("x-velt-api-key", API_KEY))
        .and(header("x-velt-auth-token", AUTH_TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"data": {"organizationId": "acme",
            "organizationUserGroupId": "engineering", "userIds": ["alice", "bob"]}})))
        .respond_with(PerUser::ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ADD_PATH))
        .and(body_json(json!({"data": {"organizationId": "acme",
            "organizationUserGroupId": "design", "userIds": ["carol"]}})))
        .respond_with(PerUser::ok())
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(dir.path(),
        &server.uri(),
        "organizationId,organizationUserGroupId,userId\nacme,engineering,alice\nacme,engineering,bob\nacme,design,carol\nacme,engineering,alice\n", &[]).await;
    assert_eq!(r.code(), 0, "{}", r.error());
    server.verify().await;
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert_eq!(
        statuses(&rows),
        [
            "acme/engineering/alice=added",
            "acme/engineering/bob=added",
            "acme/design/carol=added"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_is_split_into_ceil_n_over_chunk_requests() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ADD_PATH))
        .respond_with(PerUser::ok())
        .mount(&server)
        .await;
    let mut input = String::from("orgId,groupId,userId\n");
    for i in 0..250 {
        input.push_str(&format!("o,big,user-{i:04}\n"));
    }
    for i in 0..100 {
        input.push_str(&format!("o,small,user-{i:04}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(
        dir.path(),
        &server.uri(),
        &input,
        &["--chunk-size", "100", "--rate", "1000"],
    )
    .await;
    assert_eq!(r.code(), 0, "{}", r.error());
    let mut sizes: Vec<(String, usize)> = bodies(&server)
        .await
        .iter()
        .map(|b| {
            (
                b["data"]["organizationUserGroupId"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                b["data"]["userIds"].as_array().unwrap().len(),
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("big".to_string(), 50),
            ("big".to_string(), 100),
            ("big".to_string(), 100),
            ("small".to_string(), 100)
        ]
    );
    let sent: std::collections::HashSet<String> = bodies(&server)
        .await
        .iter()
        .flat_map(|b| {
            let g = b["data"]["organizationUserGroupId"]
                .as_str()
                .unwrap()
                .to_string();
            b["data"]["userIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |u| format!("{g}/{}", u.as_str().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(sent.len(), 350, "every membership sent exactly once");
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert_eq!(rows.len(), 350);
    assert!(rows.iter().all(|r| r["status"] == "added"));
}

#[tokio::test(flavor = "multi_thread")]
async fn per_user_refusals_and_missing_entries_are_reported_per_user() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(PerUser {
            refuse: vec!["bob"],
            omit: vec!["carol"],
        })
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(
        dir.path(),
        &server.uri(),
        "orgId,groupId,userId\no,g,alice\no,g,bob\no,g,carol\n",
        &[],
    )
    .await;
    assert_eq!(r.code(), 1, "{}", r.error());
    let c = r.stats.counts;
    assert_eq!(
        (c.added, c.failed, c.unconfirmed),
        (1, 1, 1),
        "the summary's counts"
    );
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["userId"], r["status"], r["httpStatus"], r["message"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "alice added  ",
            "bob failed 200 User is deactivated.",
            "carol unconfirmed 200 the answer has no entry for this user",
        ]
    );
    // An add is idempotent, so the user the answer left out was sent again, alone, up to
    // --max-retries (6) more times, and the report counts every request that carried it.
    let carols = bodies(&server)
        .await
        .iter()
        .filter(|b| {
            b["data"]["userIds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u == "carol")
        })
        .count();
    assert_eq!(carols, 7);
    assert_eq!(rows[2]["attempts"], "7");
    assert_eq!(rows[0]["attempts"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_fails_only_its_own_users() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_json(json!({"data": {"organizationId": "o",
            "organizationUserGroupId": "bad", "userIds": ["x", "y"]}})))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"status": "FAILED_PRECONDITION", "message": "Organization is disabled"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_json(json!({"data": {"organizationId": "o",
            "organizationUserGroupId": "proxy", "userIds": ["z"]}})))
        .respond_with(
            ResponseTemplate::new(502).set_body_string("<html><h1>502 Bad Gateway</h1></html>"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(PerUser::ok())
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(
        dir.path(),
        &server.uri(),
        "orgId,groupId,userId\no,bad,x\no,bad,y\no,proxy,z\no,good,w\n",
        &["--max-retries", "0"],
    )
    .await;
    assert_eq!(r.code(), 1, "{}", r.error());
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {}",
                r["userId"],
                r["status"],
                r["errorStatus"],
                r["httpStatus"],
                r["attempts"],
                r["message"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "x failed FAILED_PRECONDITION 400 1 Organization is disabled",
            "y failed FAILED_PRECONDITION 400 1 Organization is disabled",
            // A gateway error may come after the origin acted: not `failed`.
            "z unconfirmed  502 1 no definite answer after 1 attempt(s): HTTP 502: <html><h1>502 Bad Gateway</h1></html>",
            "w added   1 ",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_stop_the_run_with_exit_3() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"status": "UNAUTHENTICATED", "message": "Invalid auth token"}}),
        ))
        .mount(&server)
        .await;
    let mut input = String::from("orgId,groupId,userId\n");
    for g in 0..20 {
        input.push_str(&format!("o,g{g},u\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(
        dir.path(),
        &server.uri(),
        &input,
        &[
            "--concurrency",
            "4",
            "--max-concurrency",
            "4",
            "--rate",
            "100",
        ],
    )
    .await;
    assert_eq!(r.code(), 3, "{}", r.error());
    assert!(
        r.rows
            .iter()
            .filter(|row| row["status"] == "not_attempted")
            .all(|row| row["message"].contains("the API refused the credentials")),
        "{:?}",
        r.rows
    );
    let sent = server.received_requests().await.unwrap().len();
    assert!(
        sent <= 4,
        "{sent} requests after a 401; at most the in-flight ones"
    );
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    let failed = rows.iter().filter(|r| r["status"] == "failed").count();
    let not_attempted = rows
        .iter()
        .filter(|r| r["status"] == "not_attempted")
        .count();
    assert_eq!(failed, sent);
    assert_eq!(failed + not_attempted, 20);
    assert!(
        rows.iter()
            .filter(|r| r["status"] == "failed")
            .all(|r| r["httpStatus"] == "401" && r["errorStatus"] == "UNAUTHENTICATED")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_version_v2_uses_v2_paths() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/organizations/usergroups/users/add"))
        .respond_with(PerUser::ok())
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(
        dir.path(),
        &server.uri(),
        "orgId,groupId,userId\no,g,u\n",
        &["--api-version", "v2"],
    )
    .await;
    assert_eq!(r.code(), 0, "{}", r.error());
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_fails_every_membership() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let r = sync_api(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "orgId,groupId,userId\no,g,u1\no,g,u2\n",
        &["--max-retries", "2", "--max-backoff", "10ms"],
    )
    .await;
    assert_eq!(r.code(), 1, "{}", r.error());
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    // Nothing reached the server, so `failed` is certain; every attempt is counted.
    assert!(
        rows.iter().all(|r| r["status"] == "failed"
            && r["attempts"] == "3"
            && r["message"].contains("could not connect")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_appear_in_no_output_log_or_report() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_json(json!({"data": {"organizationId": "o",
            "organizationUserGroupId": "g1", "userIds": ["u"]}})))
        .respond_with(PerUser::ok())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                json!({"error": {"status": "PERMISSION_DENIED", "message": "denied"}}),
            ),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let input = "orgId,groupId,userId\no,g1,u\no,g2,u\n";
    let mut outputs = Vec::new();
    for (log_format, report) in [("json", "r.json"), ("text", "r.csv")] {
        let mut cmd = sync_cmd(dir.path(), &server.uri(), input);
        cmd.args(["-vv", "--log-format", log_format, "--report", report])
            .args(["--concurrency", "1"]);
        let out = run(cmd).await.code(3).get_output().clone();
        outputs.push(String::from_utf8_lossy(&out.stdout).to_string());
        outputs.push(String::from_utf8_lossy(&out.stderr).to_string());
        outputs.push(std::fs::read_to_string(dir.path().join(report)).unwrap());
    }
    let help = bin_with_credentials(dir.path())
        .args(["sync", "--help"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    outputs.push(String::from_utf8_lossy(&help.stdout).to_string());
    // The logs are at their most verbose, down to the HTTP stack's own trace events.
    assert!(
        outputs[1].contains("\"event\":\"request\""),
        "{}",
        outputs[1]
    );
    assert!(outputs[4].contains("event=\"request\""), "{}", outputs[4]);
    for text in &outputs {
        assert!(!text.contains(API_KEY), "API key leaked: {text}");
        assert!(!text.contains(AUTH_TOKEN), "auth token leaked: {text}");
    }
}
