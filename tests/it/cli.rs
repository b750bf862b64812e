//! The binary end to end, as an operator runs it: samples in, report and exit code out.

use crate::common::*;
use predicates::prelude::*;
use velt_group_sync::emulator::EmulatorConfig;

fn expected_sample_rows() -> Vec<String> {
    [
        "acme/engineering/alice=added",
        "acme/engineering/bob=added",
        "acme/design/carol=added",
        "globex/support/dave=added",
        "globex/support/erin=added",
        "acme/design/frank=added",
    ]
    .map(String::from)
    .to_vec()
}

fn sample_memberships() -> Vec<(String, String, String)> {
    let mut v: Vec<_> = [
        ("acme", "design", "carol"),
        ("acme", "design", "frank"),
        ("acme", "engineering", "alice"),
        ("acme", "engineering", "bob"),
        ("globex", "support", "dave"),
        ("globex", "support", "erin"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    v.sort();
    v
}

/// Runs a blocking assert_cmd command from inside a tokio test.
async fn run(mut cmd: assert_cmd::Command) -> assert_cmd::assert::Assert {
    tokio::task::spawn_blocking(move || cmd.assert())
        .await
        .expect("command ran")
}

#[test]
fn quick_start_adds_every_sample_membership_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path())
        .args(["sync"])
        .arg(samples().join("memberships.csv"))
        .arg("--emulator")
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "6 memberships: 6 added, 0 failed, 0 unconfirmed, 0 invalid; 3 requests",
        ));
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert_eq!(statuses(&rows), expected_sample_rows());
    let lines: Vec<_> = rows.iter().map(|r| r["line"].as_str()).collect();
    assert_eq!(
        lines,
        ["2", "3", "4", "6", "7", "8"],
        "first appearance, duplicate merged"
    );
    assert!(rows.iter().all(|r| r["attempts"] == "1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_format_adds_the_same_memberships() {
    for file in ["memberships.csv", "memberships.json", "memberships.jsonl"] {
        let emu = emulator(EmulatorConfig::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args(["sync", "--base-url", &emu.base_url()])
            .arg(samples().join(file));
        run(cmd).await.code(0);
        assert_eq!(emu.memberships(), sample_memberships(), "{file}");
        assert_eq!(emu.requests(), 3, "{file}: one request per group");
        let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
        let mut got = statuses(&rows);
        got.sort();
        let mut want = expected_sample_rows();
        want.sort();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn stdin_is_sniffed_for_each_format() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["memberships.csv", "memberships.json", "memberships.jsonl"] {
        let input = std::fs::read(samples().join(file)).unwrap();
        let out = bin(dir.path())
            .args(["sync", "-", "--dry-run", "--report", "-"])
            .write_stdin(input)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let rows = parse_csv_report(&String::from_utf8(out).unwrap());
        let got: Vec<_> = statuses(&rows);
        let want: Vec<_> = expected_sample_rows()
            .iter()
            .map(|r| r.replace("=added", "=planned"))
            .collect();
        assert_eq!(got, want, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hr_export_with_its_own_columns_bom_crlf_and_quoted_commas() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args(["sync", "--base-url", &emu.base_url()])
        .arg(samples().join("hr-export.csv"))
        .args(["--org", "acme", "--user-column", "employee id"])
        .args(["--group-column", "Department"]);
    run(cmd).await.code(0);
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert_eq!(
        statuses(&rows),
        [
            "acme/engineering/E-1001=added",
            "acme/engineering/E-1002=added",
            "acme/research/E-1003=added",
            "acme/research/E-1004=added"
        ]
    );
    let lines: Vec<_> = rows.iter().map(|r| r["line"].as_str()).collect();
    assert_eq!(lines, ["2", "3", "5", "6"], "the blank line 4 still counts");
    assert_eq!(emu.memberships().len(), 4);
}

#[test]
fn hr_export_without_an_organization_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    bin_with_credentials(dir.path())
        .arg("sync")
        .arg(samples().join("hr-export.csv"))
        .args([
            "--user-column",
            "Employee ID",
            "--group-column",
            "Department",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "hr-export.csv:1: no organization column",
        ))
        .stderr(predicate::str::contains("--org"));
    assert!(!dir.path().join("velt-group-sync-report.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn messy_rows_are_reported_with_line_and_reason_and_good_rows_go_through() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args(["sync", "--base-url", &emu.base_url()])
        .arg(samples().join("messy.csv"));
    run(cmd).await.code(1).stderr(predicate::str::contains(
        "3 added, 0 failed, 0 unconfirmed, 6 invalid",
    ));
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            let user = if r["userId"].len() > 20 {
                "<long>"
            } else {
                &r["userId"]
            };
            format!("{} {} {} {}", r["line"], user, r["status"], r["message"])
        })
        .collect();
    assert_eq!(
        summary,
        [
            "2 alice added ",
            "3 bob added ",
            "5  invalid userId is empty",
            "6 carol invalid organizationUserGroupId is empty",
            "7 dan\tdoe invalid userId contains the control character U+0009",
            "8 <long> invalid userId is 1100 bytes long; at most 1024 are allowed",
            "9 erin invalid row has 5 fields but the header has 4 (an unquoted delimiter inside a value?)",
            "10  invalid row has 2 fields but the header has 4",
            "12 frank added ",
        ]
    );
    assert_eq!(emu.memberships().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_sends_nothing_and_prints_the_plan() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["sync", "--dry-run", "--base-url", &emu.base_url()])
        .arg(samples().join("memberships.csv"));
    run(cmd)
        .await
        .code(0)
        .stdout(predicate::str::contains(
            "plan: 3 groups, 6 memberships, 3 requests (chunk size 100)",
        ))
        .stdout(predicate::str::contains("acme / engineering: 2 members"));
    assert_eq!(emu.requests(), 0);
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "planned" && r["attempts"] == "0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_stops_before_sending_when_any_record_is_invalid() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args(["sync", "--strict", "--base-url", &emu.base_url()])
        .arg(samples().join("messy.csv"));
    run(cmd).await.code(2).stderr(predicate::str::contains(
        "6 invalid record(s) and --strict is set",
    ));
    assert_eq!(emu.requests(), 0);
    let rows = read_report(&dir.path().join("velt-group-sync-report.csv"));
    let invalid = rows.iter().filter(|r| r["status"] == "invalid").count();
    let not_attempted = rows
        .iter()
        .filter(|r| r["status"] == "not_attempted")
        .count();
    assert_eq!((invalid, not_attempted), (6, 3));
    // Every row says why.
    for r in rows.iter().filter(|r| r["status"] == "not_attempted") {
        assert_eq!(
            r["message"],
            "not sent: --strict, and the input has 6 invalid record(s); fix them, or drop --strict"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_exit_2_and_send_nothing() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["sync", "--base-url", &emu.base_url()])
        .arg(samples().join("memberships.csv"));
    run(cmd)
        .await
        .code(2)
        .stderr(predicate::str::contains("VELT_API_KEY is not set"));
    let mut cmd = bin(dir.path());
    cmd.env("VELT_API_KEY", API_KEY)
        .args(["sync", "--base-url", &emu.base_url()])
        .arg(samples().join("memberships.csv"));
    run(cmd)
        .await
        .code(2)
        .stderr(predicate::str::contains("VELT_AUTH_TOKEN is not set"));
    assert_eq!(emu.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_files() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), format!("{API_KEY}\n")).unwrap();
    std::fs::write(dir.path().join("token"), format!("{AUTH_TOKEN}\n")).unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["sync", "--base-url", &emu.base_url()])
        .args(["--api-key-file", "key", "--auth-token-file", "token"])
        .arg(samples().join("memberships.csv"));
    run(cmd).await.code(0);
    assert_eq!(emu.memberships().len(), 6);
}

#[test]
fn unreadable_input_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        "[\n {\"organizationId\": \"o\", \"groupId\": \"g\", \"userId\": \"a\"},\n {\"userId\": }\n]\n",
    )
    .unwrap();
    bin_with_credentials(dir.path())
        .args(["sync", "broken.json", "--base-url", "http://127.0.0.1:9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.json:3: invalid JSON"));
    std::fs::write(
        dir.path().join("latin1.csv"),
        b"orgId,groupId,userId\no,g,Jos\xe9\n",
    )
    .unwrap();
    bin_with_credentials(dir.path())
        .args(["sync", "latin1.csv", "--base-url", "http://127.0.0.1:9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("latin1.csv:2: not valid UTF-8"));
    bin_with_credentials(dir.path())
        .args(["sync", "missing.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.csv: No such file"));
    std::fs::write(dir.path().join("empty.csv"), "").unwrap();
    bin_with_credentials(dir.path())
        .args(["sync", "empty.csv", "--dry-run"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty.csv:1: no header row"));
}

#[test]
fn bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["sync", "--chunk-size", "0"][..], "--chunk-size"),
        (&["sync", "--chunk-size", "1001"], "1001"),
        (&["sync", "--rate", "0"], "requests per second above 0"),
        (
            &["sync", "--format", "xml"],
            "possible values: auto, csv, json, jsonl",
        ),
        (
            &["sync", "--api-key", "x"],
            "unexpected argument '--api-key'",
        ),
        (
            &["sync", "--max-removals", "ten"],
            "a count (25) or a percentage (10%)",
        ),
        (
            &["sync", "--max-throttle-wait", "soon"],
            "is not a duration",
        ),
        // Provisioning's options without provisioning: clap's own usage error.
        (
            &["sync", "in.csv", "--email-column", "Mail"],
            "required arguments were not provided:\n  --provision-users",
        ),
        (
            &["sync", "in.csv", "--mode", "mirror", "--deprovision-users"],
            "required arguments were not provided:\n  --provision-users",
        ),
        (
            &["validate", "in.csv", "--name-columns", "First,Last"],
            "required arguments were not provided:\n  --provision-users",
        ),
    ] {
        bin(dir.path())
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
}

#[test]
fn unwritable_report_path_fails_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path())
        .arg("sync")
        .arg(samples().join("memberships.csv"))
        .args(["--emulator", "--report", "no/such/dir/report.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such/dir/report.csv"))
        // A fresh host: the message names the folder and how to make it.
        .stderr(predicate::str::contains(
            "the folder no/such/dir does not exist; create it (mkdir -p no/such/dir)",
        ))
        .stderr(predicate::str::contains("memberships:").not());
}

#[test]
fn json_and_jsonl_reports_carry_the_same_fields() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path())
        .arg("sync")
        .arg(samples().join("messy.csv"))
        .args(["--emulator", "--report", "r.json"])
        .assert()
        .code(1);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(json["summary"]["memberships"], 3);
    assert_eq!(json["summary"]["added"], 3);
    assert_eq!(json["summary"]["invalid"], 6);
    assert_eq!(json["summary"]["requests"], 2);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 9);
    let keys: Vec<_> = results[0].as_object().unwrap().keys().cloned().collect();
    let mut want = REPORT_COLUMNS;
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(results[2]["status"], "invalid");
    assert_eq!(results[2]["line"], 5);

    bin(dir.path())
        .arg("sync")
        .arg(samples().join("memberships.csv"))
        .args(["--emulator", "--report", "r.jsonl"])
        .assert()
        .code(0);
    let text = std::fs::read_to_string(dir.path().join("r.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "added" && r["attempts"] == 1)
    );
}

#[test]
fn a_csv_report_is_valid_input() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path())
        .arg("sync")
        .arg(samples().join("memberships.csv"))
        .args(["--emulator", "--report", "first.csv"])
        .assert()
        .code(0);
    bin(dir.path())
        .args(["sync", "first.csv", "--dry-run", "--report", "second.csv"])
        .assert()
        .code(0);
    let rows = read_report(&dir.path().join("second.csv"));
    let want: Vec<_> = expected_sample_rows()
        .iter()
        .map(|r| r.replace("=added", "=planned"))
        .collect();
    assert_eq!(statuses(&rows), want);
}

#[test]
fn no_progress_bar_or_colour_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(dir.path())
        .arg("sync")
        .arg(samples().join("memberships.csv"))
        .arg("--emulator")
        .assert()
        .code(0)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn quiet_prints_no_summary() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path())
        .arg("sync")
        .arg(samples().join("memberships.csv"))
        .args(["--emulator", "-q"])
        .assert()
        .code(0)
        .stderr(predicate::str::is_empty());
}

/// --delimiter names the separator the header would not give away: here a pipe, in a file
/// whose values hold commas.
#[tokio::test(flavor = "multi_thread")]
async fn delimiter_end_to_end() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.txt"),
        "organizationId|organizationUserGroupId|userId\nacme|eng|a,b\nacme|ops|c\n",
    )
    .unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args(["sync", "in.txt", "--format", "csv", "--delimiter", "|"])
        .args(["--base-url", &emu.base_url()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        emu.memberships(),
        [
            ("acme".into(), "eng".into(), "a,b".into()),
            ("acme".into(), "ops".into(), "c".into())
        ]
    );
}

/// Every run ends with one summary event carrying its exit code, under `-q` too, at info on
/// exit 0, warn on 1 and error on 2; in text mode `-q` keeps the summary line back only when
/// the run succeeded.
#[test]
fn every_run_ends_in_one_summary_with_its_exit_code_and_quiet_hides_only_success() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.csv"), "groupId,userId\neng,alice\n").unwrap();
    // An empty user ID: an invalid record, exit 1.
    std::fs::write(
        dir.path().join("bad.csv"),
        "groupId,userId\neng,alice\neng,\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("none.csv"), "groupId,userId\n").unwrap();
    let summary_of = |file: &str, extra: &[&str]| {
        let out = bin(dir.path())
            .args([
                "--log-format",
                "json",
                "-q",
                "sync",
                file,
                "--org",
                "acme",
                "--emulator",
            ])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let events: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "summary")
            .collect();
        assert_eq!(events.len(), 1, "{file}: {text}");
        (out.status.code(), events[0].clone())
    };
    for (file, code, level) in [
        ("good.csv", 0, "INFO"),
        ("bad.csv", 1, "WARN"),
        ("none.csv", 2, "ERROR"),
    ] {
        let (exit, event) = summary_of(file, &[]);
        assert_eq!(exit, Some(code), "{file}");
        assert_eq!(event["exit_code"], code, "{file}: {event}");
        assert_eq!(event["level"], level, "{file}: {event}");
    }
    let (_, event) = summary_of("bad.csv", &[]);
    assert_eq!(
        (event["added"].as_u64(), event["invalid"].as_u64()),
        (Some(1), Some(1))
    );
    // Text mode: quiet on success, the summary line on failure.
    let text = |file: &str| {
        let out = bin(dir.path())
            .args(["-q", "sync", file, "--org", "acme", "--emulator"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        !text("good.csv").contains("memberships:"),
        "{}",
        text("good.csv")
    );
    assert!(
        text("bad.csv").contains(
            "velt-group-sync: 1 memberships: 1 added, 0 failed, 0 unconfirmed, 1 invalid"
        ),
        "{}",
        text("bad.csv")
    );
}

/// A configuration error that can name several missing columns names them all at once, not
/// one per run.
#[test]
fn every_missing_column_is_named_in_one_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "userId,groupId\nu1,g\n").unwrap();
    let out = bin(dir.path())
        .args(["validate", "in.csv", "--org", "acme", "--provision-users"])
        .args(["--include", "Status=Active"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in.csv:1: 3 problems with the columns: 1) no name column"),
        "{err}"
    );
    assert!(err.contains("2) no e-mail column"), "{err}");
    assert!(
        err.contains("3) no column named `Status`; check --include"),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with("(columns: userId, groupId)"),
        "{err}"
    );
    assert_eq!(
        err.matches("columns: userId").count(),
        1,
        "listed once: {err}"
    );
}

/// The change list: a dry run prints what would change (cut at ten names a list, all with
/// `-v`), a run that sends prints what it did on stderr, removals a guard holds back say why,
/// and its counts are the report's.
#[tokio::test(flavor = "multi_thread")]
async fn the_change_list_says_what_would_change_and_then_what_changed() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "g", ["u00", "old1", "old2"]);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 0..12 {
        input.push_str(&format!("acme,g,u{i:02}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let sync = |extra: &[&str]| {
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args(["sync", "in.csv", "--base-url", &emu.base_url()])
            .args(["--mode", "mirror", "--max-removals", "100%"])
            .args(extra);
        cmd
    };
    let out = run(sync(&["--dry-run", "--report", "plan.csv"]))
        .await
        .code(0);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    // The summary says the same, as what would be done: 12 input rows and 2 removals.
    assert!(
        stderr.contains(
            "dry run: 14 memberships: 11 would be added, 2 would be removed, 1 unchanged, 0 failed"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("changes: would add 11, would remove 2 in 1 group(s)\n  acme / g\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would add 11: u01, u02, u03, u04, u05, u06, u07, u08, u09, u10 and 1 more (see the report)"),
        "{stdout}"
    );
    assert!(stdout.contains("would remove 2: old1, old2"), "{stdout}");
    // The report agrees: 11 planned adds (u00 is there) and 2 planned removals.
    let rows = read_report(&dir.path().join("plan.csv"));
    let planned = |action: &str| {
        rows.iter()
            .filter(|r| r["status"] == "planned" && r["action"] == action)
            .count()
    };
    assert_eq!((planned("add"), planned("remove")), (11, 2));
    // -v names everyone.
    let mut verbose = sync(&["--dry-run", "--report", "plan.csv"]);
    verbose.arg("-v");
    let out = run(verbose).await.code(0);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("u09, u10, u11\n") && !stdout.contains("more (see"),
        "{stdout}"
    );
    // A guard that holds the removals back says so, and why.
    let out = run({
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args(["sync", "in.csv", "--base-url", &emu.base_url()])
            .args(["--mode", "mirror", "--max-removals", "1", "--dry-run"])
            .args(["--report", "held.csv"]);
        cmd
    })
    .await
    .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains(
            "changes: would add 11, would remove 0 in 1 group(s); 2 removal(s) held back"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  held back: acme / g: 2 removal(s): not removed:")
            && stdout.contains("--max-removals"),
        "{stdout}"
    );
    // The run itself: the same list in the past tense, on stderr.
    let out = run(sync(&["--report", "done.csv"])).await.code(0);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr
            .contains("changes: added 11, removed 2 in 1 group(s)\n  acme / g\n    added 11: u01,"),
        "{stderr}"
    );
    assert!(stderr.contains("    removed 2: old1, old2"), "{stderr}");
}

/// `sync -h` is short and `--help` whole, both under the same headings; `manpage --out-dir`
/// writes a page per command, each option under its heading.
#[test]
fn help_is_grouped_short_with_h_and_every_command_has_a_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let help = |flag: &str| {
        let out = bin(dir.path()).args(["sync", flag]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let (short, long) = (help("-h"), help("--help"));
    let headings = [
        "Input:",
        "Columns and mapping:",
        "Provisioning:",
        "Modes and removals:",
        "Connection:",
        "Rate and retries:",
        "Output and operations:",
    ];
    for h in headings {
        assert!(long.lines().any(|l| l == h), "--help: {h}");
        assert!(short.lines().any(|l| l == h), "-h: {h}");
    }
    assert!(
        short.lines().count() < 120,
        "-h is {} lines",
        short.lines().count()
    );
    assert!(long.lines().count() > 3 * short.lines().count() / 2);
    assert!(!short.contains("--max-retries") && long.contains("--max-retries"));
    assert!(short.contains("--mode") && short.contains("--dry-run"));

    let pages = dir.path().join("man");
    std::fs::create_dir(&pages).unwrap();
    let out = bin(dir.path())
        .args(["manpage", "--out-dir"])
        .arg(&pages)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "velt-group-sync-apply.1",
            "velt-group-sync-completions.1",
            "velt-group-sync-emulator.1",
            "velt-group-sync-init.1",
            "velt-group-sync-manpage.1",
            "velt-group-sync-plan.1",
            "velt-group-sync-sync.1",
            "velt-group-sync-validate.1",
            "velt-group-sync.1",
        ]
    );
    let sync = std::fs::read_to_string(pages.join("velt-group-sync-sync.1")).unwrap();
    assert!(sync.contains(".TH velt-group-sync-sync 1"), "{sync}");
    assert!(sync.contains(".SH \"RATE AND RETRIES\"") && sync.contains("max\\-retries"));
    // A folder that is not there: exit 2, saying what to do.
    let out = bin(dir.path())
        .args(["manpage", "--out-dir", "nowhere/at/all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("create the folder"));
}
