//! `plan` and `apply` (issue 27): a plan applied makes exactly its changes; a stale plan is
//! refused with nothing sent; an apply resumes; a guard's held-back removals are approved by
//! applying their plan file; a dry run, a plan and the report agree. In-process against the
//! emulator, checked by what the server holds and received.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;
use velt_group_sync::emulator::{Call, Emulator, EmulatorConfig, ListingFault};

type Change = (String, String, String, String);

/// acme/eng holds alice, bob and old; acme/design holds carol.
fn seeded(config: EmulatorConfig) -> Emulator {
    let emu = in_process_emulator(config);
    emu.seed("acme", "eng", ["alice", "bob", "old"]);
    emu.seed("acme", "design", ["carol"]);
    emu
}

/// The export: eng is alice and zed, design is carol and dan.
const EXPORT: &str = "organizationId,organizationUserGroupId,userId\n\
                      acme,eng,alice\nacme,eng,zed\nacme,design,carol\nacme,design,dan\n";

async fn plan(emu: &Emulator, dir: &Path, extra: &[&str]) -> InProcess {
    std::fs::write(dir.join("in.csv"), EXPORT).unwrap();
    let mut argv = vec![
        "in.csv",
        "--mode",
        "mirror",
        "--max-removals",
        "100%",
        "--out",
        "plan.json",
        "--report",
        "plan-report.csv",
    ];
    argv.extend_from_slice(extra);
    command_argv(Server::Emulator(emu), dir, "plan", &argv).await
}

async fn apply(emu: &Emulator, dir: &Path, file: &str) -> InProcess {
    let argv = [file, "--report", "apply-report.csv"];
    command_argv(Server::Emulator(emu), dir, "apply", &argv).await
}

/// The plan file's changes as (kind, organization, group, user).
fn planned(dir: &Path, file: &str) -> BTreeSet<Change> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("kind"), s("organization"), s("group"), s("user"))
        })
        .collect()
}

/// `in.csv` (`userId,name,email,group`) mirrored into acme with its users provisioned and
/// leavers deprovisioned, and `extra`.
fn provisioning_mirror<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec![
        "in.csv",
        "--org",
        "acme",
        "--group-column",
        "group",
        "--mode",
        "mirror",
        "--provision-users",
        "--deprovision-users",
    ];
    argv.extend_from_slice(extra);
    argv
}

fn change(kind: &str, group: &str, user: &str) -> Change {
    (kind.into(), "acme".into(), group.into(), user.into())
}

/// Report rows as changes: `planned` / `added` / `removed` rows by their action.
fn report_changes(rows: &[Row]) -> BTreeSet<Change> {
    rows.iter()
        .filter(|r| matches!(r["status"].as_str(), "planned" | "added" | "removed"))
        .map(|r| {
            let kind = if r["action"] == "remove" {
                "remove"
            } else {
                "add"
            };
            change(kind, &r["organizationUserGroupId"], &r["userId"])
        })
        .collect()
}

/// Users the server received in add and remove requests.
fn writes(emu: &Emulator) -> (BTreeSet<String>, BTreeSet<String>) {
    let added = emu.received().into_iter().flat_map(|(_, u)| u).collect();
    let removed = emu.deleted().into_iter().flat_map(|(_, u)| u).collect();
    (added, removed)
}

fn state(emu: &Emulator) -> BTreeSet<(String, String, String)> {
    emu.memberships().into_iter().collect()
}

fn export_state() -> BTreeSet<(String, String, String)> {
    [
        ("eng", "alice"),
        ("eng", "zed"),
        ("design", "carol"),
        ("design", "dan"),
    ]
    .map(|(g, u)| ("acme".to_string(), g.to_string(), u.to_string()))
    .into()
}

#[tokio::test]
async fn plan_then_apply_makes_exactly_the_planned_writes() {
    let emu = seeded(EmulatorConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let before = state(&emu);
    let run = plan(&emu, dir.path(), &[]).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    let expected: BTreeSet<Change> = [
        change("add", "eng", "zed"),
        change("add", "design", "dan"),
        change("remove", "eng", "bob"),
        change("remove", "eng", "old"),
    ]
    .into();
    assert_eq!(planned(dir.path(), "plan.json"), expected);
    assert_eq!(state(&emu), before, "a plan writes nothing");
    assert_eq!(emu.calls(Call::Add) + emu.calls(Call::Delete), 0);

    let run = apply(&emu, dir.path(), "plan.json").await;
    assert_eq!(run.code(), 0, "{}", run.error());
    assert_eq!(state(&emu), export_state(), "the server holds the export");
    let (added, removed) = writes(&emu);
    assert_eq!(added, ["dan", "zed"].map(String::from).into());
    assert_eq!(removed, ["bob", "old"].map(String::from).into());
    assert_eq!(
        report_changes(&run.rows),
        expected,
        "the report says what was done"
    );
    // Applied again: everything is done already; nothing more is written.
    let (adds, deletes) = (emu.calls(Call::Add), emu.calls(Call::Delete));
    let again = apply(&emu, dir.path(), "plan.json").await;
    assert_eq!(again.code(), 0, "{}", again.error());
    assert_eq!(
        (emu.calls(Call::Add), emu.calls(Call::Delete)),
        (adds, deletes)
    );
    assert!(
        again.rows.iter().all(|r| r["status"] == "unchanged"),
        "{:?}",
        again.rows
    );
}

#[tokio::test]
async fn a_plan_made_stale_by_a_change_on_the_server_is_refused_with_no_write() {
    for (what, change_server) in [
        (
            "a member added",
            (|e: &Emulator| e.seed("acme", "eng", ["mallory"])) as fn(&Emulator),
        ),
        ("a member that swapped", |e: &Emulator| {
            e.seed("acme", "design", ["erin"]);
        }),
    ] {
        let emu = seeded(EmulatorConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let run = plan(&emu, dir.path(), &[]).await;
        assert_eq!(run.code(), 0, "{what}: {}", run.error());
        change_server(&emu);
        let held = state(&emu);
        let run = apply(&emu, dir.path(), "plan.json").await;
        assert_eq!(run.code(), 2, "{what}: {:?}", run.result);
        let error = run.error();
        assert!(error.contains("the plan is stale"), "{what}: {error}");
        assert!(error.contains("acme/"), "{what}: names the group: {error}");
        assert!(error.contains("make the plan again"), "{what}: {error}");
        assert_eq!(emu.calls(Call::Add) + emu.calls(Call::Delete), 0, "{what}");
        assert_eq!(state(&emu), held, "{what}: nothing changed");
    }
}

/// An apply cut short (some of its changes done) resumes: the changes found done are not
/// sent again and do not make the plan stale.
#[tokio::test]
async fn an_apply_finds_its_own_changes_done_and_sends_the_rest() {
    let emu = seeded(EmulatorConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let run = plan(&emu, dir.path(), &[]).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    // As if an earlier apply had added zed before it was stopped.
    emu.seed("acme", "eng", ["zed"]);
    let run = apply(&emu, dir.path(), "plan.json").await;
    assert_eq!(run.code(), 0, "{}", run.error());
    assert_eq!(state(&emu), export_state());
    let (added, _) = writes(&emu);
    assert_eq!(added, ["dan".to_string()].into(), "zed is not sent again");
    let zed = run.rows.iter().find(|r| r["userId"] == "zed").unwrap();
    assert_eq!(zed["status"], "unchanged");
}

/// An apply stopped by a signal after its first write resumes from its journal: the second
/// run sends only what the first did not, and the server ends in the export's state.
#[tokio::test(start_paused = true)]
async fn an_interrupted_apply_resumes_from_its_journal() {
    use std::time::Duration;
    let emu = std::sync::Arc::new(seeded(EmulatorConfig {
        latency: (Duration::from_millis(100), Duration::from_millis(100)),
        seed: Some(7),
        ..EmulatorConfig::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let one_at_a_time = [
        "--chunk-size",
        "1",
        "--concurrency",
        "1",
        "--max-concurrency",
        "1",
    ];
    let run = plan(&emu, dir.path(), &one_at_a_time).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    let interrupt = velt_group_sync::interrupt::Interrupt::new();
    let stopper = interrupt.clone();
    let watched = emu.clone();
    tokio::spawn(async move {
        while watched.calls(Call::Add) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stopper.signal(143);
    });
    let argv = ["plan.json", "--report", "a.csv", "--state", "state.jsonl"];
    let server = || Server::Emulator(&emu);
    let first = command_argv_with(server(), dir.path(), "apply", &argv, interrupt).await;
    assert_eq!(first.code(), 143, "{:?}", first.result);
    assert_ne!(state(&emu), export_state(), "the first run was cut short");
    let second = command_argv(server(), dir.path(), "apply", &argv).await;
    assert_eq!(second.code(), 0, "{}", second.error());
    assert_eq!(state(&emu), export_state());
    let sent: Vec<String> = emu.received().into_iter().flat_map(|(_, u)| u).collect();
    let distinct: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(sent.len(), distinct.len(), "no add sent twice: {sent:?}");
    assert_eq!(distinct.len(), 2);
}

/// A guard trip in `sync` does everything else, writes the held-back removals beside the
/// report, exits 1; applying that file removes exactly those members.
#[tokio::test]
async fn a_guard_trip_writes_the_held_plan_and_its_apply_removes_exactly_those() {
    let emu = in_process_emulator(EmulatorConfig::default());
    let users: Vec<String> = (1..=10).map(|i| format!("u{i:02}")).collect();
    emu.seed("acme", "eng", &users);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for u in users[..7].iter().chain(["new1".to_string()].iter()) {
        input.push_str(&format!("acme,eng,{u}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let argv = ["in.csv", "--mode", "mirror", "--report", "night.csv"];
    let run = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
    assert_eq!(run.code(), 1, "{:?}", run.result);
    assert!(
        emu.memberships().iter().any(|m| m.2 == "new1"),
        "the add went"
    );
    assert_eq!(
        emu.calls(Call::Delete),
        0,
        "3 removals of 10 is past the 10% guard"
    );
    let held = planned(dir.path(), "night.held-plan.json");
    let expected: BTreeSet<Change> = ["u08", "u09", "u10"]
        .map(|u| change("remove", "eng", u))
        .into();
    assert_eq!(held, expected);

    // Approved with the night's own report path: the night's report stays, the apply's
    // goes beside it.
    let night = std::fs::read_to_string(dir.path().join("night.csv")).unwrap();
    let argv = ["night.held-plan.json", "--report", "night.csv"];
    let run = command_argv(Server::Emulator(&emu), dir.path(), "apply", &argv).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("night.csv")).unwrap(),
        night
    );
    let applied = read_report(&dir.path().join("night.applied.csv"));
    assert_eq!(rows_with(&applied, "removed").len(), 3);
    let (_, removed) = writes(&emu);
    assert_eq!(removed, ["u08", "u09", "u10"].map(String::from).into());
    let members: BTreeSet<String> = emu.memberships().into_iter().map(|m| m.2).collect();
    let mut wanted: BTreeSet<String> = users[..7].iter().cloned().collect();
    wanted.insert("new1".into());
    assert_eq!(members, wanted);
}

#[tokio::test]
async fn a_held_plan_made_stale_is_refused() {
    let emu = in_process_emulator(EmulatorConfig::default());
    let users: Vec<String> = (1..=10).map(|i| format!("u{i:02}")).collect();
    emu.seed("acme", "eng", &users);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for u in &users[..5] {
        input.push_str(&format!("acme,eng,{u}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let argv = [
        "in.csv",
        "--mode",
        "mirror",
        "--held-plan",
        "held.json",
        "--report",
        "r.csv",
    ];
    let run = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
    assert_eq!(run.code(), 1, "{:?}", run.result);
    // Someone joins the group before the admin approves.
    emu.seed("acme", "eng", ["late"]);
    let run = apply(&emu, dir.path(), "held.json").await;
    assert_eq!(run.code(), 2, "{:?}", run.result);
    assert_eq!(emu.calls(Call::Delete), 0);
}

/// Removal safety: an apply whose re-read is a broken listing (repeats, overlapping pages, a
/// page that fails) removes nobody, and a plan edited to remove someone the group does not
/// hold is stale.
#[tokio::test]
async fn an_apply_against_a_broken_listing_or_an_edited_plan_removes_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let honest = seeded(EmulatorConfig::default());
    // Pages of two members, so that every fault of a paged listing shows in eng's three.
    let run = plan(&honest, dir.path(), &["--page-size", "2"]).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    for fault in [
        ListingFault::Repeat(2),
        ListingFault::Overlap(1),
        ListingFault::FailPage(2, "INVALID_ARGUMENT"),
    ] {
        let emu = seeded(EmulatorConfig {
            listing_fault: Some(fault),
            ..EmulatorConfig::default()
        });
        let run = apply(&emu, dir.path(), "plan.json").await;
        assert_eq!(run.code(), 2, "{fault:?}: {:?}", run.result);
        assert!(
            run.error().contains("could not be read again"),
            "{}",
            run.error()
        );
        assert_eq!(
            emu.calls(Call::Delete) + emu.calls(Call::Add),
            0,
            "{fault:?}"
        );
    }
    // A listing cut short looks like the plan's removal of `old` done: nobody the plan does
    // not remove is ever removed, whatever a listing says.
    let emu = seeded(EmulatorConfig {
        listing_fault: Some(ListingFault::EndAfterPage(1)),
        ..EmulatorConfig::default()
    });
    let _ = apply(&emu, dir.path(), "plan.json").await;
    let (_, removed) = writes(&emu);
    assert!(
        removed.iter().all(|u| u == "bob" || u == "old"),
        "{removed:?}"
    );
    let text = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    let edited = text.replace("\"user\": \"old\"", "\"user\": \"carol-in-eng\"");
    assert_ne!(edited, text);
    std::fs::write(dir.path().join("edited.json"), edited).unwrap();
    let emu = seeded(EmulatorConfig::default());
    let run = apply(&emu, dir.path(), "edited.json").await;
    assert_eq!(run.code(), 2, "{:?}", run.result);
    assert!(run.error().contains("stale"), "{}", run.error());
    assert_eq!(emu.calls(Call::Delete), 0);
}

/// A dry run, a plan and their reports name the same changes, and the plan's counts are
/// the report's.
#[tokio::test]
async fn a_dry_run_and_a_plan_agree_with_each_other_and_the_report() {
    let emu = seeded(EmulatorConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let run = plan(&emu, dir.path(), &[]).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    let from_plan = planned(dir.path(), "plan.json");
    assert_eq!(report_changes(&run.rows), from_plan);
    let argv = [
        "in.csv",
        "--mode",
        "mirror",
        "--max-removals",
        "100%",
        "--dry-run",
        "--report",
        "dry.csv",
    ];
    let dry = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
    assert_eq!(dry.code(), 0, "{}", dry.error());
    assert_eq!(report_changes(&dry.rows), from_plan);
    let text = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let counts = &json["counts"];
    let planned_rows = |action: &str| {
        dry.rows
            .iter()
            .filter(|r| r["status"] == "planned" && r["action"] == action)
            .count() as u64
    };
    assert_eq!(counts["add"].as_u64(), Some(planned_rows("add")));
    assert_eq!(counts["remove"].as_u64(), Some(planned_rows("remove")));
    assert_eq!(json["input"]["sha256"].as_str().map(str::len), Some(64));
}

/// Organization users: a plan with provisioning creates, updates and deletes exactly the
/// users it names when applied.
#[tokio::test]
async fn a_provisioning_plan_creates_updates_and_deletes_exactly_its_users() {
    let emu = in_process_emulator(EmulatorConfig::default());
    emu.seed_org_user("acme", "ann", "Ann", "ann@acme.example");
    emu.seed_org_user("acme", "ben", "Ben Old", "ben@acme.example");
    emu.seed_org_user("acme", "gone", "Gone", "gone@acme.example");
    emu.seed("acme", "eng", ["ann", "ben"]);
    let dir = tempfile::tempdir().unwrap();
    let input = "userId,name,email,group\n\
                 ann,Ann,ann@acme.example,eng\n\
                 ben,Ben New,ben@acme.example,eng\n\
                 cat,Cat,cat@acme.example,eng\n";
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let argv = provisioning_mirror(&[
        "--max-user-removals",
        "100%",
        "--out",
        "plan.json",
        "--report",
        "p.csv",
    ]);
    let run = command_argv(Server::Emulator(&emu), dir.path(), "plan", &argv).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    assert_eq!(
        emu.calls(Call::AddOrgUsers) + emu.calls(Call::UpdateOrgUsers),
        0
    );
    let kinds: BTreeSet<(String, String)> = planned(dir.path(), "plan.json")
        .into_iter()
        .map(|(k, _, _, u)| (k, u))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("create", "cat"),
        ("update", "ben"),
        ("delete", "gone"),
        ("add", "cat"),
    ]
    .map(|(k, u)| (k.to_string(), u.to_string()))
    .into();
    assert_eq!(kinds, expected);
    let run = apply(&emu, dir.path(), "plan.json").await;
    assert_eq!(run.code(), 0, "{}", run.error());
    let users = emu.org_users("acme");
    assert_eq!(
        users.keys().cloned().collect::<BTreeSet<_>>(),
        ["ann", "ben", "cat"].map(String::from).into()
    );
    assert_eq!(users["ben"].name, "Ben New");
    assert_eq!(users["cat"].email, "cat@acme.example");
    assert_eq!(emu.calls(Call::AddOrgUsers), 1);
    assert_eq!(emu.calls(Call::UpdateOrgUsers), 1);
    assert_eq!(emu.calls(Call::DeleteOrgUsers), 1);
    assert!(emu.memberships().iter().any(|m| m.2 == "cat"));
}

/// The binary: `plan --detailed-exitcode` tells "changes" (4) from "none" (0), and a guard
/// trip's message says where the held plan is and how to apply it.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_says_how_to_apply_and_exits_4_on_changes() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", (1..=10).map(|i| format!("u{i:02}")));
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 1..=5 {
        input.push_str(&format!("acme,eng,u{i:02}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), &input).unwrap();
    let url = emu.base_url();
    let plan = |extra: &[&str]| {
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args(["plan", "in.csv", "--base-url", &url, "--detailed-exitcode"]);
        cmd.args(extra);
        cmd.output().unwrap()
    };
    let out = plan(&["--mode", "delta"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plan(&["--mode", "mirror", "--max-removals", "100%"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("would remove 5"), "{stdout}");

    let out = bin_with_credentials(dir.path())
        .args(["sync", "in.csv", "--mode", "mirror", "--base-url", &url])
        .args(["--report", "night.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "review night.held-plan.json, then `velt-group-sync apply night.held-plan.json`"
        ),
        "{stderr}"
    );
    assert!(dir.path().join("night.held-plan.json").exists());
    // Applied where the environment holds sync's options of a nightly host: they decide
    // nothing (the plan did), and the held-back removals go.
    let out = bin_with_credentials(dir.path())
        .args(["apply", "night.held-plan.json", "--report", "approved.csv"])
        .env("VELT_DEPROVISION_USERS", "1")
        .env("VELT_EMAIL_COLUMN", "Work Email")
        .env("VELT_PROTECT_USERS", "@no-such-file")
        .env("VELT_MODE", "add")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = emu.memberships().into_iter().map(|m| m.2).collect();
    assert_eq!(left, ["u01", "u02", "u03", "u04", "u05"]);
}

/// `--max-user-removals` holds leavers back: their deletion is in the held plan, whose apply
/// deletes exactly those users, after the run created the new one.
#[tokio::test]
async fn held_back_user_deletions_are_approved_by_applying_their_plan() {
    let emu = in_process_emulator(EmulatorConfig::default());
    let users: Vec<String> = (1..=10).map(|i| format!("u{i:02}")).collect();
    for u in &users {
        emu.seed_org_user(
            "acme",
            u,
            &format!("Name {u}"),
            &format!("{u}@acme.example"),
        );
    }
    emu.seed("acme", "eng", &users);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("userId,name,email,group\n");
    for u in users[..6].iter().chain(["new1".to_string()].iter()) {
        input.push_str(&format!("{u},Name {u},{u}@acme.example,eng\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let argv = provisioning_mirror(&["--max-removals", "100%", "--report", "night.csv"]);
    let run = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
    assert_eq!(run.code(), 1, "{:?}", run.result);
    assert!(
        emu.org_users("acme").contains_key("new1"),
        "the new user was created"
    );
    assert_eq!(
        emu.calls(Call::DeleteOrgUsers),
        0,
        "4 of 10 is past the 5% guard"
    );
    let held: BTreeSet<(String, String)> = planned(dir.path(), "night.held-plan.json")
        .into_iter()
        .map(|(k, _, _, u)| (k, u))
        .collect();
    let expected: BTreeSet<(String, String)> = ["u07", "u08", "u09", "u10"]
        .map(|u| ("delete".to_string(), u.to_string()))
        .into();
    assert_eq!(held, expected);
    let run = apply(&emu, dir.path(), "night.held-plan.json").await;
    assert_eq!(run.code(), 0, "{}", run.error());
    let left: BTreeSet<String> = emu.org_users("acme").into_keys().collect();
    let mut wanted: BTreeSet<String> = users[..6].iter().cloned().collect();
    wanted.insert("new1".into());
    assert_eq!(left, wanted);
    assert_eq!(emu.calls(Call::DeleteOrgUsers), 1);
}
