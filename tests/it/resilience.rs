//! Faults a long migration meets, run as an operator would run the binary: retries by class,
//! bisection of bad IDs, a server that limits list size, rejected credentials mid-run,
//! SIGTERM, kill -9 and resume. (The timing of retries, pauses and rates is in `paced.rs`, on
//! a paused clock.)

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use velt_group_sync::emulator::{Emulator, EmulatorConfig};
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

async fn run(mut cmd: assert_cmd::Command) -> assert_cmd::assert::Assert {
    tokio::task::spawn_blocking(move || cmd.assert())
        .await
        .expect("command ran")
}

fn sync(dir: &Path, base_url: &str) -> assert_cmd::Command {
    let mut cmd = bin_with_credentials(dir);
    cmd.args(["sync", "in.csv", "--base-url", base_url]);
    cmd
}

/// `sync in.csv EXTRA...` in-process; the report is where the binary puts it by default.
async fn sync_lib(server: Server<'_>, dir: &Path, extra: &[&str]) -> InProcess {
    let mut argv = vec!["in.csv", "--report", "velt-group-sync-report.csv"];
    argv.extend_from_slice(extra);
    sync_argv(server, dir, &argv).await
}

fn report(dir: &Path) -> Vec<Row> {
    read_report(&dir.join("velt-group-sync-report.csv"))
}

struct Ok200;

impl Respond for Ok200 {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let data: serde_json::Map<String, Value> = body["data"]["userIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u.as_str().unwrap().to_string(), json!({"success": true})))
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"result": {"status": "success", "data": data}}))
    }
}

fn error(http: u16, status: Option<&str>) -> ResponseTemplate {
    match status {
        Some(s) => ResponseTemplate::new(http).set_body_json(
            json!({"error": {"status": s, "message": format!("{s} from the test")}}),
        ),
        None => ResponseTemplate::new(http).set_body_string("<html>proxy error</html>"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_class_of_answer_is_retried_refused_or_stopped_as_documented() {
    let server = MockServer::start().await;
    let retried: [(u16, Option<&str>); 7] = [
        (408, None),
        (409, Some("ABORTED")),
        (429, Some("RESOURCE_EXHAUSTED")),
        (500, Some("INTERNAL")),
        (502, None),
        (503, Some("UNAVAILABLE")),
        (504, Some("DEADLINE_EXCEEDED")),
    ];
    let refused: [(u16, Option<&str>); 4] = [
        (400, Some("FAILED_PRECONDITION")),
        (400, Some("OUT_OF_RANGE")),
        (404, Some("NOT_FOUND")),
        (422, None),
    ];
    let mut input = String::from("orgId,groupId,userId\n");
    for (i, (http, status)) in retried.iter().enumerate() {
        let group = format!("retry{i}");
        input.push_str(&format!("o,{group},u\n"));
        Mock::given(method("POST"))
            .and(body_partial_json(
                json!({"data": {"organizationUserGroupId": group}}),
            ))
            .respond_with(error(*http, *status))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
    }
    for (i, (http, status)) in refused.iter().enumerate() {
        let group = format!("refuse{i}");
        input.push_str(&format!("o,{group},u\n"));
        Mock::given(method("POST"))
            .and(body_partial_json(
                json!({"data": {"organizationUserGroupId": group}}),
            ))
            .respond_with(error(*http, *status))
            .with_priority(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(Ok200)
        .with_priority(5)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let args = [
        "--rate",
        "100",
        "--concurrency",
        "11",
        "--max-backoff",
        "50ms",
    ];
    let run = sync_lib(Server::Url(&server.uri()), dir.path(), &args).await;
    assert_eq!(run.code(), 1, "{}", run.error());
    let rows = run.rows;
    for row in &rows {
        let group = &row["organizationUserGroupId"];
        if group.starts_with("retry") {
            assert_eq!(
                (row["status"].as_str(), row["attempts"].as_str()),
                ("added", "2"),
                "{row:?}"
            );
        } else {
            assert_eq!(
                (row["status"].as_str(), row["attempts"].as_str()),
                ("failed", "1"),
                "{row:?}"
            );
        }
    }
    let sent = server.received_requests().await.unwrap().len();
    assert_eq!(
        sent,
        7 * 2 + 4,
        "a retry for each retryable answer, none for refusals"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_allowed_gives_up_as_not_attempted_with_resource_exhausted() {
    let emu = in_process_emulator(EmulatorConfig {
        rate_limit: Some(1.0),
        retry_after_secs: Some(300),
        seed: Some(7),
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 2, 1);
    let started = tokio::time::Instant::now();
    let args = ["--rate", "50", "--max-retry-after", "5s"];
    let run = sync_lib(Server::Emulator(&emu), dir.path(), &args).await;
    assert_eq!(run.code(), 1, "{}", run.error());
    // On the paused clock: the run waited nothing like the 300 s asked.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not stall: {:?}",
        started.elapsed()
    );
    let rows = run.rows;
    // A throttle is no verdict on the users: never `failed`.
    assert!(rows.iter().all(|r| r["status"] != "failed"), "{rows:?}");
    let held: Vec<_> = rows
        .iter()
        .filter(|r| r["status"] == "not_attempted")
        .collect();
    assert_eq!(held.len(), 1, "{rows:?}");
    assert_eq!(held[0]["errorStatus"], "RESOURCE_EXHAUSTED");
    assert!(
        held[0]["message"].contains("300 s") && held[0]["message"].contains("--max-retry-after"),
        "{}",
        held[0]["message"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_id_among_100_fails_alone() {
    let emu = emulator(EmulatorConfig {
        invalid_user_marker: Some("bad".into()),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("orgId,groupId,userId\n");
    for u in 0..100 {
        let id = if u == 42 {
            "user-0042-bad".to_string()
        } else {
            format!("user-{u:04}")
        };
        input.push_str(&format!("o,g,{id}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args(["--rate", "200"]);
    let out = run(cmd).await.code(1).get_output().clone();
    let rows = report(dir.path());
    let failed = rows_with(&rows, "failed");
    assert_eq!(failed, BTreeSet::from(["g/user-0042-bad".to_string()]));
    assert_eq!(rows_with(&rows, "added").len(), 99);
    assert_eq!(held(&emu).len(), 99);
    let bad = rows
        .iter()
        .find(|r| r["userId"] == "user-0042-bad")
        .unwrap();
    assert_eq!(bad["errorStatus"], "INVALID_ARGUMENT");
    assert_eq!(bad["attempts"], "8", "100, 50, 25, 13, 7, 4, 2, 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("chunk_size_lowered"), "{stderr}");
    // log2(100) levels of halving: far fewer requests than one per user.
    assert!(emu.requests() <= 16, "{} requests", emu.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_limits_list_size_gets_smaller_chunks_for_the_rest_of_the_run() {
    let emu = emulator(EmulatorConfig {
        max_user_ids: Some(30),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 500);
    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args([
        "--rate",
        "200",
        "--concurrency",
        "1",
        "--max-concurrency",
        "1",
        "--log-format",
        "json",
    ]);
    let out = run(cmd).await.code(0).get_output().clone();
    assert_eq!(held(&emu).len(), 500);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("\"event\":\"chunk_size_lowered\"").count(),
        1,
        "{stderr}"
    );
    // After the first chunk of 100 found the limit, chunks of 25 go through at once.
    let sizes: Vec<usize> = emu.received().iter().map(|(_, u)| u.len()).collect();
    assert!(sizes.iter().skip(7).all(|&n| n <= 25), "{sizes:?}");
    assert!(emu.requests() <= 7 + 400 / 25 + 1, "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_mid_run_stops_it_within_a_few_requests() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Ok200)
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(error(401, Some("UNAUTHENTICATED")))
        .with_priority(5)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 30, 1);
    let args = [
        "--rate",
        "100",
        "--concurrency",
        "2",
        "--max-concurrency",
        "2",
    ];
    let run = sync_lib(Server::Url(&server.uri()), dir.path(), &args).await;
    assert_eq!(run.code(), 3, "{}", run.error());
    let sent = server.received_requests().await.unwrap().len();
    assert!(sent <= 3 + 2, "{sent} requests");
    let rows = run.rows;
    assert_eq!(rows_with(&rows, "added").len(), 3);
    assert_eq!(rows_with(&rows, "failed").len(), sent - 3);
    assert_eq!(rows_with(&rows, "not_attempted").len(), 30 - sent);
    for r in rows.iter().filter(|r| r["status"] == "not_attempted") {
        assert_eq!(
            r["message"],
            "not sent: the API refused the credentials and the run stopped"
        );
    }
}

/// Waits until the emulator has received `n` requests.
async fn until_requests(emu: &Emulator, n: u64) {
    wait_until(&format!("{n} requests"), || emu.requests() >= n).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_a_complete_report_and_exits_143() {
    let emu = emulator(EmulatorConfig {
        latency: (Duration::from_millis(300), Duration::from_millis(400)),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 40, 1);
    let child = spawn_sync(
        dir.path(),
        &emu.base_url(),
        &["--rate", "10", "--concurrency", "3"],
    );
    until_requests(&emu, 6).await;
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(143));
    // In-flight requests finish and nothing new starts: not all 40 (4 s of sending) go.
    let rows = report(dir.path());
    assert_eq!(rows.len(), 40, "every membership has a row");
    let added = rows_with(&rows, "added");
    assert!(
        !added.is_empty() && added.len() < 40,
        "{} added",
        added.len()
    );
    assert_eq!(added.len() + rows_with(&rows, "not_attempted").len(), 40);
    assert_eq!(added, held(&emu), "the report agrees with the server");
    for r in rows.iter().filter(|r| r["status"] == "not_attempted") {
        assert_eq!(
            r["message"],
            "not sent: the run was interrupted by SIGTERM; re-run (with the same --state) to finish"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_resume_finishes_without_resending_what_the_journal_had() {
    let emu = emulator(EmulatorConfig {
        latency: (Duration::from_millis(20), Duration::from_millis(60)),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 2, 60);
    let args = [
        "--chunk-size",
        "2",
        "--rate",
        "60",
        "--concurrency",
        "4",
        "--max-concurrency",
        "4",
        "--state",
        "state.journal",
    ];
    let child = spawn_sync(dir.path(), &emu.base_url(), &args);
    until_requests(&emu, 20).await;
    signal(&child, libc::SIGKILL);
    exit_code(child).await;
    // Requests that arrived before the kill are still worked on (the emulator logs an add
    // after its latency): wait until each is, so that none is counted as the resume's.
    // Requests that arrived before the kill may still be worked on (the emulator logs an add
    // after its latency): wait until none is, so that none is counted as the resume's.
    wait_until("the killed run's requests are done with", || {
        emu.in_flight() == 0
    })
    .await;
    let journal = std::fs::read_to_string(dir.path().join("state.journal")).unwrap();
    let confirmed: HashSet<u32> = journal
        .lines()
        .skip(1)
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(
        !confirmed.is_empty(),
        "the first run confirmed some before it died"
    );
    let sent_first = emu.received().len();
    let held_at_kill = held(&emu).len();
    // Answers are journalled as they land, so what the server applied but the journal lacks
    // is at most what was on the wire: 4 requests of 2.
    assert!(
        held_at_kill - confirmed.len() <= 8,
        "{held_at_kill} held, {} journalled",
        confirmed.len()
    );

    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args(args);
    run(cmd).await.code(0);
    let rows = report(dir.path());
    assert_eq!(rows.len(), 120);
    assert_eq!(rows_with(&rows, "added").len(), 120);
    assert_eq!(held(&emu).len(), 120, "the server holds every membership");
    let from_journal = rows
        .iter()
        .filter(|r| r["message"].contains("earlier run"))
        .count();
    assert_eq!(from_journal, confirmed.len());
    // Membership index = position in the input (no duplicates): group g, user u -> g*60+u.
    let index = |group: &str, user: &str| -> u32 {
        let g: u32 = group[1..].parse().unwrap();
        let u: u32 = user[5..].parse().unwrap();
        g * 60 + u
    };
    let resent: Vec<u32> = emu.received()[sent_first..]
        .iter()
        .flat_map(|(g, users)| users.iter().map(|u| index(g, u)).collect::<Vec<_>>())
        .collect();
    assert!(
        resent.iter().all(|i| !confirmed.contains(i)),
        "a journaled membership was sent again"
    );
    assert_eq!(
        resent.len(),
        120 - confirmed.len(),
        "what the journal lacked was sent, once each"
    );
}

/// Night after night on one fixed --state path: a journal whose run completed, or that was
/// written for another export, is set aside (`.prev`) and the night starts afresh; it never
/// blocks the next run, and never hides a membership the server lost since.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_state_path_never_blocks_the_next_night() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 3);
    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args(["--state", "s"]);
    run(cmd).await.code(0);
    let journal = std::fs::read_to_string(dir.path().join("s")).unwrap();
    assert!(journal.ends_with("\ncomplete\n"), "{journal}");
    // Someone removes a member on the server; the same export runs again.
    let removed = reqwest::Client::new()
        .post(format!(
            "{}/v1/organizations/usergroups/users/delete",
            emu.base_url()
        ))
        .header("x-velt-api-key", API_KEY)
        .header("x-velt-auth-token", AUTH_TOKEN)
        .json(
            &json!({"data": {"organizationId": "org", "organizationUserGroupId": "g00",
                               "userIds": ["user-0001"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200);
    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args(["--state", "s"]);
    run(cmd).await.code(0);
    let rows = report(dir.path());
    assert!(
        rows.iter().all(|r| !r["message"].contains("earlier run")),
        "{rows:?}"
    );
    assert_eq!(held(&emu).len(), 3, "the lost member is back");
    assert!(dir.path().join("s.prev").exists());
    // The next night's export differs: a new journal, the old one set aside.
    write_groups(dir.path(), 1, 4);
    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args(["--state", "s", "-v"]);
    let out = run(cmd).await.code(0);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("state_set_aside"), "{stderr}");
    assert_eq!(held(&emu).len(), 4);
}

/// Two runs on one journal (a cron overlap, a manual run during the nightly one): the second
/// exits 2 at once, naming the path, and sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_a_held_journal_exits_2_before_sending() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 3);
    let held_journal = std::fs::File::create(dir.path().join("s")).unwrap();
    held_journal.try_lock().unwrap();
    let mut cmd = sync(dir.path(), &emu.base_url());
    cmd.args(["--state", "s"]);
    // The holder (this test process) is named by its PID.
    let said = format!(
        "s: another run (PID {}) holds this --state journal",
        std::process::id()
    );
    run(cmd)
        .await
        .code(2)
        .stderr(predicates::str::contains(said));
    assert_eq!(emu.requests(), 0);
    drop(held_journal);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_status_reruns_the_rows_that_did_not_go_through() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"data": {"organizationUserGroupId": "g01"}}),
        ))
        .respond_with(error(503, Some("UNAVAILABLE")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(Ok200)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 3, 2);
    let argv = ["in.csv", "--max-retries", "0", "--report", "first.csv"];
    let run = sync_argv(Server::Url(&server.uri()), dir.path(), &argv).await;
    assert_eq!(run.code(), 1, "{}", run.error());

    let emu = emulator(EmulatorConfig::default()).await;
    let argv = [
        "first.csv",
        "--only-status",
        "failed,unconfirmed,not_attempted",
        "--report",
        "second.csv",
    ];
    let run = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    assert_eq!(
        held(&emu),
        BTreeSet::from(["g01/user-0000".to_string(), "g01/user-0001".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_stops_at_once_and_still_writes_the_report() {
    let emu = emulator(EmulatorConfig {
        latency: (Duration::from_secs(60), Duration::from_secs(60)),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 10, 1);
    let (child, said) = spawn_sync_said(
        dir.path(),
        &emu.base_url(),
        &[
            "--rate",
            "100",
            "--concurrency",
            "2",
            "--max-concurrency",
            "2",
            "--grace",
            "60s",
        ],
    );
    until_requests(&emu, 2).await;
    signal(&child, libc::SIGINT);
    // The second signal once the run said it heard the first.
    wait_until("the run says it is stopping", || {
        said.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("interrupted"))
    })
    .await;
    signal(&child, libc::SIGTERM);
    // The answers take 60 s and --grace allows 60 s: rows that are `unconfirmed` below (not
    // `added`) show the run did not wait for them.
    assert_eq!(exit_code(child).await, Some(130), "the first signal's code");
    let rows = report(dir.path());
    assert_eq!(rows.len(), 10);
    let unconfirmed = rows_with(&rows, "unconfirmed");
    assert_eq!(
        unconfirmed.len(),
        2,
        "the two requests on the wire may have been applied"
    );
    assert!(
        rows.iter()
            .filter(|r| r["status"] == "unconfirmed")
            .all(|r| r["attempts"] == "1" && r["message"].contains("in flight"))
    );
    assert_eq!(rows_with(&rows, "not_attempted").len(), 8);
}
