//! A hostile server, a hostile file, a careless operator: each defect a review found, shown
//! by what the operator would see (exit code, report rows, stderr, what servers received).

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use velt_group_sync::emulator::EmulatorConfig;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ADD_PATH: &str = "/v1/organizations/usergroups/users/add";
const GET_PATH: &str = "/v1/users/get";
const INPUT: &str = "organizationId,organizationUserGroupId,userId\nacme,eng,alice\nacme,eng,bob\n";

fn write_input(dir: &Path) {
    std::fs::write(dir.join("in.csv"), INPUT).unwrap();
}

/// `sync in.csv --base-url URL EXTRA...` with the test credentials, run to the end.
async fn sync(dir: &Path, base_url: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = process(dir);
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args(["sync", "in.csv", "--base-url", base_url])
        .args(extra)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Answers every add with `success: true` for each user sent.
fn all_added(request: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let mut data = serde_json::Map::new();
    for u in body["data"]["userIds"].as_array().unwrap() {
        data.insert(u.as_str().unwrap().into(), json!({"success": true}));
    }
    ResponseTemplate::new(200).set_body_json(json!({"result": {"status": "success", "data": data}}))
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_never_followed_and_credentials_stay_home() {
    for code in [301, 302, 303, 307, 308] {
        let elsewhere = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(all_added)
            .mount(&elsewhere)
            .await;
        Mock::given(method("GET"))
            .respond_with(all_added)
            .mount(&elsewhere)
            .await;
        let api = MockServer::start().await;
        let location = format!("{}{ADD_PATH}", elsewhere.uri());
        Mock::given(method("POST"))
            .and(path(ADD_PATH))
            .respond_with(ResponseTemplate::new(code).insert_header("location", location.as_str()))
            .mount(&api)
            .await;
        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path());
        let argv = ["in.csv", "--report", "report.csv"];
        let run = sync_argv(Server::Url(&api.uri()), dir.path(), &argv).await;
        assert_eq!(run.code(), 1, "{code}: {}", run.error());
        let received = elsewhere.received_requests().await.unwrap();
        assert!(
            received.is_empty(),
            "{code}: the other host got {received:?}"
        );
        for r in &run.rows {
            assert_eq!(r["status"], "failed", "{code}: {r:?}");
            assert_eq!(r["httpStatus"], code.to_string());
            assert!(r["message"].contains(&location), "{code}: {}", r["message"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_another_host_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // No input file at all: the refusal must come first.
    let out = sync(dir.path(), "http://api.example.com", &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("plain http")
            && err.contains("--allow-insecure-http")
            && !err.contains("in.csv"),
        "{err}"
    );
    // Loopback by name or address is fine.
    let emu = emulator(EmulatorConfig::default()).await;
    write_input(dir.path());
    let port = emu.addr().expect("listening").port();
    for base in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let out = sync(dir.path(), &base, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{base}: {}", stderr(&out));
    }
    // The flag lets a trusted network through (the host does not resolve, so the requests fail).
    let out = sync(
        dir.path(),
        "http://unreachable.invalid",
        &[
            "--allow-insecure-http",
            "--max-retries",
            "0",
            "--timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn device_paths_are_written_in_place_and_the_input_is_never_the_report() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let out = sync(
        dir.path(),
        &emu.base_url(),
        &["--report", "/dev/null", "--metrics-file", "/dev/null"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(!null.is_file(), "/dev/null is still a device");
    // The common idiom: the report on standard output through its device path.
    let out = sync(dir.path(), &emu.base_url(), &["--report", "/dev/stdout"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = parse_csv_report(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows.len(), 2);
    // A report path naming the input is refused before anything is sent.
    let requests = emu.requests();
    let out = sync(dir.path(), &emu.base_url(), &["--report", "./in.csv"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is the input file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("in.csv")).unwrap(),
        INPUT
    );
    // So is a report path naming a directory.
    std::fs::create_dir(dir.path().join("reports")).unwrap();
    let out = sync(dir.path(), &emu.base_url(), &["--report", "reports"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
    assert_eq!(emu.requests(), requests, "nothing was sent");
}

/// `cmd` run to the end on a blocking thread, with its own peak memory in MB.
async fn measured(cmd: std::process::Command) -> (std::process::Output, f64) {
    tokio::task::spawn_blocking(move || output_with_peak(cmd))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_inputs_and_secrets_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut peak: f64 = 0.0;
    for (format, what) in [
        ("csv", "line 1 is longer"),
        ("jsonl", "line 1 is longer"),
        ("json", "expected a JSON array"),
    ] {
        let mut cmd = process(dir.path());
        cmd.args(["validate", "/dev/zero", "--format", format]);
        let (out, mb) = measured(cmd).await;
        peak = peak.max(mb);
        assert_eq!(out.status.code(), Some(2), "{format}");
        assert!(stderr(&out).contains(what), "{format}: {}", stderr(&out));
    }
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let mut cmd = process(dir.path());
    cmd.args(["sync", "-", "--dry-run"]).stdin(zero);
    let (out, mb) = measured(cmd).await;
    peak = peak.max(mb);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("<stdin>:1: line 1 is longer than 1048576 bytes"),
        "{}",
        stderr(&out)
    );
    write_input(dir.path());
    let mut cmd = process(dir.path());
    cmd.args([
        "sync",
        "in.csv",
        "--base-url",
        "https://api.velt.dev",
        "--api-key-file",
        "/dev/zero",
    ])
    .env("VELT_AUTH_TOKEN", AUTH_TOKEN);
    let (out, mb) = measured(cmd).await;
    peak = peak.max(mb);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("larger than 64 KB"),
        "{}",
        stderr(&out)
    );
    assert!(peak < 300.0, "a child peaked at {peak:.0} MB");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_and_slow_answers_are_cut_off() {
    let api = MockServer::start().await;
    let huge = format!(
        "{{\"result\": {{\"status\": \"success\", \"data\": {{}}, \"pad\": \"{}\"}}}}",
        "x".repeat(40 << 20)
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge))
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let mut cmd = process(dir.path());
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args([
            "sync",
            "in.csv",
            "--base-url",
            &api.uri(),
            "--max-retries",
            "2",
            "--max-backoff",
            "50ms",
        ])
        .stdin(Stdio::null());
    let (out, peak) = measured(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    for r in &rows {
        // A 200 whose body was not read may have been applied.
        assert_eq!(r["status"], "unconfirmed", "{r:?}");
        assert!(
            r["message"].contains("larger than 16 MB"),
            "{}",
            r["message"]
        );
    }
    assert!(peak < 300.0, "the run peaked at {peak:.0} MB");

    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    // The answer would come after 5 s: the message says the timeout cut it off.
    let out = sync(
        dir.path(),
        &slow.uri(),
        &["--timeout", "300ms", "--max-retries", "0"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert!(
        rows.iter().all(|r| r["status"] == "unconfirmed"),
        "{rows:?}"
    );
    assert!(
        rows[0]["message"].contains("--timeout"),
        "{}",
        rows[0]["message"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_while_reading_stops_with_its_code_and_writes_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = process(dir.path())
        .args(["sync", "-", "--emulator", "--metrics-file", "m.prom"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A header and a row, then silence: the reader waits for more.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(INPUT.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The readiness sign: the emulator's line, said once the signal handlers are in place
    // (a fixed wait would race a slow machine).
    let (ready, is_ready) = std::sync::mpsc::channel();
    let mut err = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        let mut lines = std::io::BufReader::new(&mut err);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("emulator") {
                let _ = ready.send(());
            }
            text.push_str(&line);
            line.clear();
        }
        text
    });
    is_ready
        .recv_timeout(Duration::from_secs(20))
        .expect("the run starts");
    signal(&child, libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    drop(stdin);
    let said = said.join().unwrap();
    let out = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: said.into_bytes(),
    };
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted before anything was sent"),
        "{}",
        stderr(&out)
    );
    let metrics = std::fs::read_to_string(dir.path().join("m.prom")).unwrap();
    assert!(
        metrics.contains("velt_group_sync_exit_code 143"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stderr_never_stops_the_run() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let mut child = process(dir.path())
        .env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args([
            "sync",
            "in.csv",
            "--base-url",
            &emu.base_url(),
            "-vv",
            "--metrics-file",
            "m.prom",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        read_report(&dir.path().join("velt-group-sync-report.csv")).len(),
        2
    );
    assert!(dir.path().join("m.prom").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn files_that_cannot_be_written_at_the_end_fail_the_run() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    // /dev/full takes the open and refuses every write (ENOSPC), as a full disk does.
    let out = sync(
        dir.path(),
        &emu.base_url(),
        &["--metrics-file", "/dev/full"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("metrics file"), "{}", stderr(&out));
    // A journal must be a regular file: a device is refused before anything is sent.
    let out = sync(dir.path(), &emu.base_url(), &["--state", "/dev/full"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/dev/full: --state must be a regular file"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_clipped_and_cannot_forge_log_lines() {
    let api = MockServer::start().await;
    let forged = "nope\nvelt-group-sync: 2 memberships: 2 added, 0 failed\u{1b}[2J";
    Mock::given(method("POST"))
        .respond_with(move |r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let mut data = serde_json::Map::new();
            for u in body["data"]["userIds"].as_array().unwrap() {
                data.insert(
                    u.as_str().unwrap().into(),
                    json!({"success": false, "message": forged}),
                );
            }
            // Also an entry for a user never sent: ignored, with one warning.
            data.insert("mallory".into(), json!({"success": true}));
            ResponseTemplate::new(200).set_body_json(json!({"result": {"data": data}}))
        })
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let out = sync(dir.path(), &api.uri(), &["-v"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let summaries = err
        .lines()
        .filter(|l| l.starts_with("velt-group-sync: 2 memberships"))
        .count();
    assert_eq!(summaries, 1, "only the real summary line: {err}");
    assert!(!err.contains('\u{1b}'), "{err}");
    assert_eq!(err.matches("unsent_users_answered").count(), 1, "{err}");
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert_eq!(rows.len(), 2, "mallory is no row");
    assert!(
        rows.iter()
            .all(|r| !r["message"].contains('\n') && r["message"].contains("\\n"))
    );

    // A header of 200 long column names, none of them a user column: the message stays short.
    let header: Vec<String> = (0..200)
        .map(|i| format!("column{i}-{}", "h".repeat(4000)))
        .collect();
    std::fs::write(
        dir.path().join("in.csv"),
        format!("{}\nx\n", header.join(",")),
    )
    .unwrap();
    let out = sync(dir.path(), &api.uri(), &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.len() < 10_000,
        "{} bytes of message",
        out.stderr.len()
    );
    assert!(stderr(&out).contains("and 170 more"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_export_is_no_good_night_unless_allowed() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("in.jsonl", ""),
        ("in.json", "[]"),
        ("in.csv", "organizationId,organizationUserGroupId,userId\n"),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
        let server = || Server::Emulator(&emu);
        let argv = [name, "--report", "report.csv"];
        let run = sync_argv(server(), dir.path(), &argv).await;
        assert_eq!(run.code(), 2, "{name}");
        assert!(
            run.error().contains("holds no records"),
            "{name}: {}",
            run.error()
        );
        let argv = [name, "--report", "report.csv", "--allow-empty"];
        let run = sync_argv(server(), dir.path(), &argv).await;
        assert_eq!(run.code(), 0, "{name}: {}", run.error());
    }
    assert_eq!(emu.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_read_that_never_ends_is_stopped_and_mirror_removes_nothing() {
    // Every page hands back the same token and the same member: a loop.
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GET_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {
            "status": "success", "data": [{"userId": "zed"}], "nextPageToken": "again"}})))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(ADD_PATH))
        .respond_with(all_added)
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let out = sync(dir.path(), &api.uri(), &["--mode", "mirror"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the server listed `zed` twice (page 2)"),
        "{}",
        stderr(&out)
    );
    let reads = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == GET_PATH)
        .count();
    assert_eq!(reads, 2);
    let deletes = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/delete"))
        .count();
    assert_eq!(deletes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_read_with_fresh_tokens_but_the_same_members_is_stopped() {
    let api = MockServer::start().await;
    let page = std::sync::atomic::AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path(GET_PATH))
        .respond_with(move |_: &Request| {
            let n = page.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ResponseTemplate::new(200).set_body_json(json!({"result": {
                "status": "success", "data": [{"userId": "zed"}], "nextPageToken": format!("p{n}")}}))
        })
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let out = sync(dir.path(), &api.uri(), &["--mode", "mirror", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the server listed `zed` twice (page 2)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(api.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        let key = dir.path().join("key");
        std::fs::write(&key, API_KEY).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = sync(dir.path(), &emu.base_url(), &["--api-key-file", "key"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stderr(&out).contains("chmod 600"),
            warned,
            "{mode:o}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains(API_KEY));
    }
}
