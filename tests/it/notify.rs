//! `--notify`: the outcome of a run posted to a webhook after it ends, checked field by field
//! at a local receiver (wiremock), for the JSON, Slack and Teams shapes; the webhook URL, a
//! credential, never shown.

use crate::common::*;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A webhook path as secret as Slack's.
const HOOK: &str = "/services/T000/B000/s3cretHookToken";

async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn inputs(dir: &std::path::Path) {
    std::fs::write(dir.join("good.csv"), "groupId,userId\neng,alice\neng,bob\n").unwrap();
    // An empty user ID: an invalid record, exit 1.
    std::fs::write(dir.join("bad.csv"), "groupId,userId\neng,alice\neng,\n").unwrap();
}

/// `sync FILE --org acme --emulator EXTRA...`: exit code and stderr.
async fn run(dir: &std::path::Path, file: &str, extra: Vec<String>) -> (Option<i32>, String) {
    let mut cmd = process(dir);
    cmd.args(["sync", file, "--org", "acme", "--emulator"])
        .args(extra);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
async fn a_failed_run_posts_its_outcome_as_json() {
    let server = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let url = format!("{}{HOOK}", server.uri());
    let (code, err) = run(dir.path(), "bad.csv", vec!["--notify".into(), url]).await;
    assert_eq!(code, Some(1), "{err}");
    let got = bodies(&server).await;
    assert_eq!(got.len(), 1);
    let b = &got[0];
    assert_eq!(b["tool"], "velt-group-sync");
    assert_eq!(b["exitCode"], 1);
    assert_eq!(b["outcome"], "some memberships did not go through");
    assert_eq!(b["summary"]["added"], 1);
    assert_eq!(b["summary"]["invalid"], 1);
    assert_eq!(b["changes"][0], "added acme/eng/alice");
    assert_eq!(b["report"], "velt-group-sync-report.csv");
    assert!(b["durationMs"].is_u64());
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_and_teams_get_messages_of_their_shape() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    for format in ["slack", "teams"] {
        let server = receiver(200).await;
        let url = format!("{}{HOOK}", server.uri());
        let args = vec![
            "--notify".into(),
            url,
            "--notify-format".into(),
            format.into(),
        ];
        let (code, _) = run(dir.path(), "bad.csv", args).await;
        assert_eq!(code, Some(1));
        let got = bodies(&server).await;
        assert_eq!(got.len(), 1, "{format}");
        let b = &got[0];
        if format == "slack" {
            let text = b["text"].as_str().unwrap();
            assert!(
                text.starts_with(
                    "*velt-group-sync: exit 1, some memberships did not go through*\n"
                ),
                "{text}"
            );
            assert!(text.contains("1 memberships: 1 added"), "{text}");
            assert!(text.contains("1 invalid"), "{text}");
            assert!(text.contains("added acme/eng/alice"), "{text}");
        } else {
            assert_eq!(b["@type"], "MessageCard");
            assert_eq!(b["themeColor"], "E81123");
            assert_eq!(
                b["title"],
                "velt-group-sync: exit 1, some memberships did not go through"
            );
            assert!(
                b["text"]
                    .as_str()
                    .unwrap()
                    .contains("report: velt-group-sync-report.csv")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_on_says_which_runs_are_told() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    for (on, told) in [("failure", 0), ("changes", 1), ("always", 1)] {
        let server = receiver(200).await;
        let url = format!("{}{HOOK}", server.uri());
        let args = vec!["--notify".into(), url, "--notify-on".into(), on.into()];
        let (code, _) = run(dir.path(), "good.csv", args).await;
        assert_eq!(code, Some(0));
        assert_eq!(bodies(&server).await.len(), told, "{on}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_that_fails_is_a_warning_and_the_url_never_shows() {
    let server = receiver(500).await;
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    // Kept as a secret, in a file.
    std::fs::write(
        dir.path().join("hook"),
        format!("# the team's channel\n{}{HOOK}\n", server.uri()),
    )
    .unwrap();
    let args = vec![
        "--notify-file".into(),
        "hook".into(),
        "--notify-on".into(),
        "always".into(),
        "--log-format".into(),
        "json".into(),
    ];
    let (code, err) = run(dir.path(), "good.csv", args).await;
    assert_eq!(
        code,
        Some(0),
        "a failed notification never fails the run: {err}"
    );
    assert!(err.contains("was answered HTTP 500"), "{err}");
    assert!(
        !err.contains("s3cret") && !err.contains("/services/"),
        "{err}"
    );
    // Plain http to another host is refused before anything, naming the host only.
    let args = vec!["--notify".into(), format!("http://hooks.example{HOOK}")];
    let (code, err) = run(dir.path(), "good.csv", args).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("http://hooks.example/…"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // Nor in --help, from the variable.
    let out = process(dir.path())
        .args(["sync", "--help"])
        .env("VELT_NOTIFY_URL", format!("https://hooks.example{HOOK}"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
}
