//! `--mode delta|mirror`, the removal limits, dry runs that read, group creation on
//! `NOT_FOUND`, and both API versions, against the built-in emulator run in-process: the
//! tests look at what the server holds and which calls it received.

use crate::common::*;
use velt_group_sync::emulator::{Call, Emulator, EmulatorConfig};

/// Runs `sync` over `rows` (`org,group,user` lines) with `args`; returns the exit code and
/// the report's rows. `--rate 200` unless `args` sets a rate.
async fn sync(emu: &Emulator, rows: &[&str], args: &[&str]) -> (i32, Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for r in rows {
        input.push_str(r);
        input.push('\n');
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let mut args = args.to_vec();
    if !args.contains(&"--rate") {
        args.extend(["--rate", "200"]);
    }
    let run = sync_in_process(emu, dir.path(), &args).await;
    (run.code(), run.rows)
}

/// `user=status/action` for each row of a group, in report order.
fn outcome(rows: &[Row], group: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r["organizationUserGroupId"] == group)
        .map(|r| format!("{}={}/{}", r["userId"], r["status"], r["action"]))
        .collect()
}

fn members(emu: &Emulator, group: &str) -> Vec<String> {
    emu.memberships()
        .into_iter()
        .filter(|(_, g, _)| g == group)
        .map(|(_, _, u)| u)
        .collect()
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i:02}")).collect()
}

fn rows_for(group: &str, users: &[String]) -> Vec<String> {
    users.iter().map(|u| format!("acme,{group},{u}")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_on_an_unchanged_input_makes_no_add_calls() {
    let emu = emulator(EmulatorConfig::default()).await;
    let list = users("u", 5);
    emu.seed("acme", "eng", list.clone());
    let (code, rows) = sync(&emu, &refs(&rows_for("eng", &list)), &["--mode", "delta"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        emu.calls(Call::Add),
        0,
        "no add call for members already there"
    );
    assert_eq!(emu.calls(Call::GetUsers), 1);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "unchanged" && r["action"] == "none"),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_adds_exactly_the_missing_users() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", ["u01", "u02", "hand-made"]);
    let input = rows_for("eng", &users("u", 4));
    let (code, rows) = sync(&emu, &refs(&input), &["--mode", "delta"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        outcome(&rows, "eng"),
        [
            "u01=unchanged/none",
            "u02=unchanged/none",
            "u03=added/add",
            "u04=added/add"
        ]
    );
    assert_eq!(
        emu.received(),
        [(
            "eng".to_string(),
            vec!["u03".to_string(), "u04".to_string()]
        )]
    );
    // Delta never removes: the member the input does not list stays.
    assert_eq!(
        members(&emu, "eng"),
        ["hand-made", "u01", "u02", "u03", "u04"]
    );
    assert_eq!(emu.calls(Call::Delete), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_are_read_over_every_page() {
    let emu = emulator(EmulatorConfig::default()).await;
    let list = users("u", 25);
    emu.seed("acme", "eng", list.clone());
    let mut input = rows_for("eng", &list);
    input.push("acme,eng,new-user".into());
    let (code, rows) = sync(
        &emu,
        &refs(&input),
        &["--mode", "delta", "--page-size", "10"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(emu.calls(Call::GetUsers), 3, "pages of 10, 10 and 5");
    let unchanged = rows.iter().filter(|r| r["status"] == "unchanged").count();
    assert_eq!(unchanged, 25, "members on pages 2 and 3 are known too");
    assert_eq!(
        emu.received(),
        [("eng".to_string(), vec!["new-user".to_string()])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_removes_exactly_the_extra_members_of_named_groups_only() {
    let emu = emulator(EmulatorConfig::default()).await;
    let list = users("u", 20);
    emu.seed(
        "acme",
        "eng",
        list.iter().cloned().chain(["x1".into(), "x2".into()]),
    );
    emu.seed("acme", "sales", ["s1", "s2"]);
    // 22 current members: 10% allows 2 removals.
    let (code, rows) = sync(&emu, &refs(&rows_for("eng", &list)), &["--mode", "mirror"]).await;
    assert_eq!(code, 0);
    let removals: Vec<_> = rows.iter().filter(|r| r["action"] == "remove").collect();
    assert_eq!(removals.len(), 2);
    for r in &removals {
        assert_eq!(r["status"], "removed");
        assert_eq!(r["line"], "", "a removal has no input line");
    }
    assert_eq!(
        emu.deleted(),
        [("eng".to_string(), vec!["x1".to_string(), "x2".to_string()])]
    );
    assert_eq!(members(&emu, "eng"), list);
    assert_eq!(
        members(&emu, "sales"),
        ["s1", "s2"],
        "a group not in the input"
    );
    assert_eq!(emu.calls(Call::Add), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_removal_limit_refuses_the_group_reports_it_and_still_adds() {
    let emu = emulator(EmulatorConfig::default()).await;
    let list = users("u", 10);
    emu.seed("acme", "eng", list.iter().cloned().chain(users("x", 3)));
    let mut input = rows_for("eng", &list);
    input.push("acme,eng,n1".into());
    // 13 current members: 10% is 1, and 3 would go.
    let (code, rows) = sync(&emu, &refs(&input), &["--mode", "mirror"]).await;
    assert_eq!(code, 1, "a refused group makes the run incomplete");
    let refused: Vec<_> = rows.iter().filter(|r| r["action"] == "remove").collect();
    assert_eq!(refused.len(), 3);
    for r in &refused {
        assert_eq!(r["status"], "not_attempted");
        assert!(r["message"].contains("--max-removals"), "{}", r["message"]);
    }
    assert_eq!(emu.calls(Call::Delete), 0);
    assert!(outcome(&rows, "eng").contains(&"n1=added/add".to_string()));
    assert_eq!(members(&emu, "eng").len(), 14, "nothing removed, n1 added");

    // A count that covers them lets them go.
    let (code, rows) = sync(
        &emu,
        &refs(&input),
        &["--mode", "mirror", "--max-removals", "3"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(rows.iter().filter(|r| r["status"] == "removed").count(), 3);
    assert_eq!(members(&emu, "eng").len(), 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_is_not_emptied_of_its_members_without_allow_empty() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", ["old-1", "old-2"]);
    // Every current member would go (say the export renamed its user IDs).
    let input = ["acme,eng,new-1"];
    let (code, rows) = sync(
        &emu,
        &input,
        &["--mode", "mirror", "--max-removals", "100%"],
    )
    .await;
    assert_eq!(code, 1);
    let refused: Vec<_> = rows.iter().filter(|r| r["action"] == "remove").collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|r| r["status"] == "not_attempted" && r["message"].contains("--allow-empty"))
    );
    assert_eq!(emu.calls(Call::Delete), 0);

    let (code, _) = sync(
        &emu,
        &input,
        &[
            "--mode",
            "mirror",
            "--max-removals",
            "100%",
            "--allow-empty",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(members(&emu, "eng"), ["new-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_dry_run_reads_but_sends_no_writes_and_reports_the_plan() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", ["u1", "u2", "x1"]);
    let input = ["acme,eng,u1", "acme,eng,u3"];
    let (code, rows) = sync(
        &emu,
        &input,
        &["--mode", "mirror", "--dry-run", "--max-removals", "2"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        outcome(&rows, "eng"),
        [
            "u1=unchanged/none",
            "u3=planned/add",
            "u2=planned/remove",
            "x1=planned/remove"
        ]
    );
    assert_eq!(emu.calls(Call::GetUsers), 1);
    assert_eq!(emu.calls(Call::Add) + emu.calls(Call::Delete), 0);
    assert_eq!(members(&emu, "eng"), ["u1", "u2", "x1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_group_is_created_on_not_found_only_with_the_flag() {
    let emu = emulator(EmulatorConfig {
        groups_must_exist: true,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let input = "organizationId,organizationUserGroupId,groupName,userId\n\
                 acme,design,\"Design, UX\",u1\nacme,design,,u2\n";
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let run = |extra: &'static [&'static str]| {
        let mut argv = vec!["in.csv", "--report", "out.csv", "--chunk-size", "1"];
        argv.extend_from_slice(extra);
        let (emu, dir) = (&emu, dir.path());
        async move { sync_argv(Server::Emulator(emu), dir, &argv).await }
    };

    let out = run(&[]).await;
    assert_eq!(out.code(), 1);
    for r in &out.rows {
        assert_eq!(r["status"], "failed");
        assert_eq!(r["errorStatus"], "NOT_FOUND");
        assert!(
            r["message"].contains("--create-missing-groups"),
            "{}",
            r["message"]
        );
    }
    assert_eq!(emu.calls(Call::CreateGroups), 0);

    let out = run(&[
        "--create-missing-groups",
        "--group-name-column",
        "groupName",
    ])
    .await;
    assert_eq!(out.code(), 0, "{}", out.error());
    let rows = out.rows;
    assert!(rows.iter().all(|r| r["status"] == "added"), "{rows:?}");
    assert_eq!(
        emu.calls(Call::CreateGroups),
        1,
        "created once for both chunks"
    );
    assert_eq!(members(&emu, "design"), ["u1", "u2"]);
    assert_eq!(
        emu.group_names()[&("acme".to_string(), "design".to_string())],
        "Design, UX"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_uses_the_chosen_api_version() {
    for version in ["v1", "v2"] {
        let emu = emulator(EmulatorConfig {
            groups_must_exist: true,
            ..EmulatorConfig::default()
        })
        .await;
        emu.seed("acme", "eng", ["u1", "x1"]);
        let input = ["acme,eng,u1", "acme,eng,u2", "acme,design,u3"];
        let (code, rows) = sync(
            &emu,
            &input,
            &[
                "--mode",
                "mirror",
                "--create-missing-groups",
                "--max-removals",
                "1",
                "--api-version",
                version,
            ],
        )
        .await;
        assert_eq!(code, 0, "{version}: {rows:?}");
        for call in [Call::GetUsers, Call::Add, Call::Delete, Call::CreateGroups] {
            assert!(emu.calls(call) >= 1, "{version}: no {call:?} call");
        }
        assert!(
            emu.versions().iter().all(|v| v == version),
            "{version}: {:?}",
            emu.versions()
        );
        assert_eq!(members(&emu, "eng"), ["u1", "u2"]);
        assert_eq!(members(&emu, "design"), ["u3"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_while_reading_stop_the_run_before_any_write() {
    let emu = emulator(EmulatorConfig {
        credentials: Some(("other-key".into(), "other-token".into())),
        ..EmulatorConfig::default()
    })
    .await;
    let (code, rows) = sync(&emu, &["acme,eng,u1", "acme,ops,u2"], &["--mode", "mirror"]).await;
    assert_eq!(code, 3);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "not_attempted" && r["message"].contains("credentials")),
        "{rows:?}"
    );
    assert_eq!(emu.calls(Call::Add) + emu.calls(Call::Delete), 0);
}

/// A group whose members cannot be read is added to as in add mode; in mirror mode nothing is
/// removed from it and the run exits 1, since the removals it needed are unknown.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_group_falls_back_to_adding_and_mirror_exits_1() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/users/get"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"error": {"status": "UNAVAILABLE", "message": "down"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/organizations/usergroups/users/add"))
        .respond_with(|req: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let data: serde_json::Map<String, serde_json::Value> = body["data"]["userIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    (
                        u.as_str().unwrap().to_string(),
                        serde_json::json!({"success": true}),
                    )
                })
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"result": {"status": "success", "data": data}}))
        })
        .mount(&server)
        .await;
    for (mode, expected) in [("delta", 0), ("mirror", 1)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("in.csv"),
            "organizationId,organizationUserGroupId,userId\nacme,eng,u1\nacme,eng,u2\n",
        )
        .unwrap();
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args([
            "sync",
            "in.csv",
            "--base-url",
            &server.uri(),
            "--mode",
            mode,
        ])
        .args(["--max-retries", "0", "--report", "out.csv"]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected), "{mode}: {stderr}");
        let rows = read_report(&dir.path().join("out.csv"));
        assert_eq!(
            outcome(&rows, "eng"),
            ["u1=added/add", "u2=added/add"],
            "{mode}"
        );
        assert!(stderr.contains("read_failed"), "{mode}: {stderr}");
    }
    let requests = server.received_requests().await.unwrap();
    assert!(
        !requests
            .iter()
            .any(|r| r.url.path().ends_with("/users/delete")),
        "nothing is removed from a group that could not be read"
    );
}

/// On a paused clock: reads take 5 s, and the signal comes once the first read arrived.
#[tokio::test(start_paused = true)]
async fn a_signal_while_reading_stops_at_once_before_any_write() {
    use std::time::Duration;
    // Reads take 5 s: a run that only noticed the signal after them would take that long.
    let emu = std::sync::Arc::new(in_process_emulator(EmulatorConfig {
        latency: (Duration::from_secs(5), Duration::from_secs(5)),
        seed: Some(7),
        ..EmulatorConfig::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "organizationId,organizationUserGroupId,userId\nacme,a,u1\nacme,b,u2\nacme,c,u3\n",
    )
    .unwrap();
    let interrupt = velt_group_sync::interrupt::Interrupt::new();
    let stopper = interrupt.clone();
    let reads = emu.clone();
    let signalled = std::sync::Arc::new(std::sync::Mutex::new(None));
    let at = signalled.clone();
    tokio::spawn(async move {
        while reads.calls(Call::GetUsers) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        *at.lock().unwrap() = Some(tokio::time::Instant::now());
        stopper.signal(130);
    });
    let run = sync_in_process_with(&emu, dir.path(), &["--mode", "mirror"], interrupt).await;
    assert_eq!(run.code(), 130);
    let waited = signalled.lock().unwrap().expect("signalled").elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "waited {waited:?} (paused clock) for reads that change nothing"
    );
    assert_eq!(run.rows.len(), 3);
    assert!(
        run.rows.iter().all(|r| r["status"] == "not_attempted"),
        "{:?}",
        run.rows
    );
    assert_eq!(emu.calls(Call::Add) + emu.calls(Call::Delete), 0);
}

/// A mirror report fed back with --only-status: its removal rows are not memberships to add
/// back, whatever their status.
#[tokio::test(flavor = "multi_thread")]
async fn only_status_on_a_mirror_report_leaves_its_removals_out() {
    let emu = emulator(EmulatorConfig::default()).await;
    let list = users("u", 20);
    emu.seed(
        "acme",
        "eng",
        list.iter().cloned().chain(["x1".into(), "x2".into()]),
    );
    let mut input = rows_for("eng", &list);
    input.push("acme,eng,n1".into());
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("organizationId,organizationUserGroupId,userId\n");
    text.push_str(&input.join("\n"));
    std::fs::write(dir.path().join("in.csv"), text).unwrap();
    let server = || Server::Emulator(&emu);
    let argv = ["in.csv", "--mode", "mirror", "--report", "mirror.csv"];
    let out = sync_argv(server(), dir.path(), &argv).await;
    assert_eq!(out.code(), 0);
    let report = out.rows;
    assert_eq!(
        report.iter().filter(|r| r["status"] == "removed").count(),
        2
    );
    // Fed back: every `added` and `removed` row is wanted, but only the add is a membership.
    let argv = [
        "mirror.csv",
        "--only-status",
        "added,removed",
        "--report",
        "again.csv",
    ];
    let out = sync_argv(server(), dir.path(), &argv).await;
    assert_eq!(out.code(), 0);
    let again = out.rows;
    assert_eq!(outcome(&again, "eng"), ["n1=added/add"]);
    assert!(
        !members(&emu, "eng").contains(&"x1".to_string()),
        "not added back"
    );
}

/// A leavers' list: `--mode remove` removes each listed membership that is there; a listed
/// user who is not a member is `unchanged`; unlisted members stay.
#[tokio::test(flavor = "multi_thread")]
async fn remove_mode_removes_exactly_the_listed_members() {
    let emu = emulator(EmulatorConfig::default()).await;
    let list = users("u", 10);
    emu.seed("acme", "eng", list.clone());
    let leavers = ["acme,eng,u03", "acme,eng,u04", "acme,eng,x99"];
    let (code, rows) = sync(&emu, &leavers, &["--mode", "remove", "--max-removals", "2"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        outcome(&rows, "eng"),
        [
            "u03=removed/remove",
            "u04=removed/remove",
            "x99=unchanged/none"
        ]
    );
    assert!(
        rows.iter().all(|r| !r["line"].is_empty()),
        "every row is an input line"
    );
    let mut left = list.clone();
    left.retain(|u| u != "u03" && u != "u04");
    assert_eq!(members(&emu, "eng"), left);
    assert_eq!(emu.calls(Call::Add), 0, "a removal list adds nothing");
}

/// Mirror's guards hold for removal lists: more than --max-removals, or every member without
/// --allow-empty, and the group keeps them all (exit 1); a dry run removes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn remove_mode_keeps_to_the_removal_limits() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", users("u", 10));
    // 10% of 10 is 1; three would go.
    let three = ["acme,eng,u01", "acme,eng,u02", "acme,eng,u03"];
    let (code, rows) = sync(&emu, &three, &["--mode", "remove"]).await;
    assert_eq!(code, 1);
    assert!(rows.iter().all(|r| r["status"] == "not_attempted"
        && r["action"] == "remove"
        && r["message"].contains("--max-removals")));
    let all: Vec<String> = rows_for("eng", &users("u", 10));
    let (code, rows) = sync(
        &emu,
        &refs(&all),
        &["--mode", "remove", "--max-removals", "100%"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(rows.iter().all(|r| r["message"].contains("--allow-empty")));
    let (code, rows) = sync(
        &emu,
        &three,
        &["--mode", "remove", "--max-removals", "3", "--dry-run"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "planned" && r["action"] == "remove")
    );
    assert_eq!(members(&emu, "eng").len(), 10);
    assert_eq!(emu.calls(Call::Delete), 0);
}

/// The undo of a run: its report, `--only-status added`, in remove mode, takes out exactly
/// what the run added and leaves the server as it was. The run is a delta run, whose report
/// tells members that were there already (`unchanged`) from those it added; an add-mode
/// run's `added` also covers users who were members before (the API answers alike).
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_and_its_undo_leave_the_server_as_it_was() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", users("old", 5));
    let before = emu.memberships();
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("organizationId,organizationUserGroupId,userId\n");
    for u in users("old", 2).iter().chain(&users("new", 30)) {
        text.push_str(&format!("acme,eng,{u}\nacme,ops,{u}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), text).unwrap();
    let run = |args: &'static [&'static str]| sync_argv(Server::Emulator(&emu), dir.path(), args);
    let out = run(&["in.csv", "--mode", "delta", "--report", "migration.csv"]).await;
    assert_eq!(out.code(), 0);
    assert_eq!(emu.memberships().len(), 5 + 30 + 32);
    let out = run(&[
        "migration.csv",
        "--only-status",
        "added",
        "--mode",
        "remove",
        "--max-removals",
        "100%",
        "--allow-empty",
        "--report",
        "undo.csv",
    ])
    .await;
    assert_eq!(out.code(), 0, "{}", out.error());
    assert_eq!(emu.memberships(), before, "the server is as it was");
}
