//! `--provision-users`: organization users created with their names and e-mails before any
//! group call, updated when they change, removed when they leave (`--deprovision-users`),
//! under their guard; all against the emulator, checked by what it holds and received.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use velt_group_sync::emulator::{Call, Emulator, EmulatorConfig};

/// A BambooHR export (one row per employee, two group columns) with names and e-mails.
const EXPORT: &str = "\
Employee #,First Name,Last Name,Work Email,Department,Location,Status
1001,Ada,Lovelace,Ada.Lovelace@acme.example,Engineering & Product,São Paulo,Active
1002,Grace,Hopper,grace@acme.example,Engineering & Product,Berlin,Active
1003,Alan,Turing,alan@acme.example,Research,Berlin,Inactive
1004,Barbara,Liskov,barbara@acme.example,Research,São Paulo,Active
1005,Ken,Thompson,KEN@acme.example,,Remote,Active
";

/// The BambooHR export's mapping flags (as in tests/hr.rs), without provisioning.
fn hr_args() -> Vec<String> {
    let map = samples().join("hr/bamboohr-groups.csv");
    [
        "--org",
        "acme",
        "--user-column",
        "Work Email",
        "--user-id-case",
        "lower",
        "--group-column",
        "Department,Location",
        "--group-map",
        map.to_str().unwrap(),
        "--include",
        "Status=Active",
    ]
    .map(String::from)
    .to_vec()
}

/// The nightly command line of the README's "Provisioning users", without the mode.
fn args(extra: &[&str]) -> Vec<String> {
    let mut args = hr_args();
    args.extend(
        [
            "--provision-users",
            "--create-organization",
            "--name-columns",
            "First Name,Last Name",
            "--email-column",
            "Work Email",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string()),
    );
    args
}

async fn run(emu: &Emulator, dir: &Path, input: &str, extra: &[&str]) -> InProcess {
    std::fs::write(dir.join("in.csv"), input).unwrap();
    let args = args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sync_in_process(emu, dir, &args).await
}

/// `user=name <email>` of every user of the organization.
fn users_of(emu: &Emulator, org: &str) -> BTreeMap<String, String> {
    emu.org_users(org)
        .into_iter()
        .map(|(id, u)| (id, format!("{} <{}>", u.name, u.email)))
        .collect()
}

/// `group/user=status/user-column` of every row.
fn rows_and_users(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{}/{}={}/{}",
                r["organizationUserGroupId"], r["userId"], r["status"], r["user"]
            )
        })
        .collect()
}

fn calls(emu: &Emulator) -> Vec<Call> {
    emu.call_order()
}

fn count(calls: &[Call], call: Call) -> usize {
    calls.iter().filter(|&&c| c == call).count()
}

fn requiring_org_users() -> EmulatorConfig {
    EmulatorConfig {
        require_org_users: true,
        ..EmulatorConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_fresh_organization_is_provisioned_and_grouped_in_one_run() {
    // Without provisioning, a server that wants organization users refuses every add.
    let emu = in_process_emulator(requiring_org_users());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), EXPORT).unwrap();
    let plain_args = hr_args();
    let plain_args: Vec<&str> = plain_args.iter().map(String::as_str).collect();
    let plain = sync_in_process(&emu, dir.path(), &plain_args).await;
    assert_eq!(plain.result.unwrap(), 1);
    assert!(
        plain.rows.iter().all(|r| r["status"] == "failed"
            && r["message"] == "User is not part of the organization."
            && r["user"].is_empty()),
        "{:?}",
        plain.rows
    );

    let emu = in_process_emulator(requiring_org_users());
    let out = run(&emu, dir.path(), EXPORT, &["--access-role", "viewer"]).await;
    assert_eq!(out.result.unwrap(), 0);
    assert_eq!(
        users_of(&emu, "acme"),
        [
            (
                "ada.lovelace@acme.example",
                "Ada Lovelace <Ada.Lovelace@acme.example>"
            ),
            (
                "barbara@acme.example",
                "Barbara Liskov <barbara@acme.example>"
            ),
            ("grace@acme.example", "Grace Hopper <grace@acme.example>"),
            ("ken@acme.example", "Ken Thompson <KEN@acme.example>"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into()
    );
    assert!(
        emu.org_users("acme")
            .values()
            .all(|u| u.access_role.as_deref() == Some("viewer"))
    );
    assert_eq!(
        rows_and_users(&out.rows),
        [
            "eng/ada.lovelace@acme.example=added/created",
            "office-sao-paulo/ada.lovelace@acme.example=added/created",
            "eng/grace@acme.example=added/created",
            "office-berlin/grace@acme.example=added/created",
            "research/barbara@acme.example=added/created",
            "office-sao-paulo/barbara@acme.example=added/created",
            "remote/ken@acme.example=added/created",
        ]
    );
    assert_eq!(held(&emu).len(), 7);
    // Every user call before the first group call.
    let order = calls(&emu);
    let first_add = order.iter().position(|&c| c == Call::Add).unwrap();
    assert_eq!(count(&order[..first_add], Call::AddOrgUsers), 1);
    assert_eq!(count(&order[first_add..], Call::AddOrgUsers), 0);
    let users = out.stats.users.unwrap();
    assert_eq!((users.created, users.failed), (4, 0));
    let metrics = dir.path().join("m.prom");
    velt_group_sync::metrics::write(
        &metrics,
        &out.stats,
        0,
        std::time::Duration::from_secs(1),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("velt_group_sync_users{result=\"created\"} 4\n"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_run_with_one_name_changed_sends_one_update_and_nothing_else() {
    let emu = in_process_emulator(requiring_org_users());
    let dir = tempfile::tempdir().unwrap();
    let first = run(&emu, dir.path(), EXPORT, &["--mode", "delta"]).await;
    assert_eq!(first.result.unwrap(), 0);
    let before = calls(&emu).len();

    let married = EXPORT.replace("Grace,Hopper", "Grace,Murray Hopper");
    let second = run(&emu, dir.path(), &married, &["--mode", "delta"]).await;
    assert_eq!(second.result.unwrap(), 0);
    let sent = calls(&emu)[before..].to_vec();
    let writes: Vec<_> = sent.iter().filter(|&&c| c != Call::GetUsers).collect();
    assert_eq!(writes, [&Call::UpdateOrgUsers], "{sent:?}");
    assert_eq!(
        users_of(&emu, "acme")["grace@acme.example"],
        "Grace Murray Hopper <grace@acme.example>"
    );
    let grace: Vec<_> = rows_and_users(&second.rows)
        .into_iter()
        .filter(|r| r.contains("grace"))
        .collect();
    assert_eq!(
        grace,
        [
            "eng/grace@acme.example=unchanged/updated",
            "office-berlin/grace@acme.example=unchanged/updated",
        ]
    );
    assert!(
        second
            .rows
            .iter()
            .filter(|r| !r["userId"].contains("grace"))
            .all(|r| r["status"] == "unchanged" && r["user"] == "unchanged")
    );
    let users = second.stats.users.unwrap();
    assert_eq!((users.created, users.updated, users.unchanged), (0, 1, 3));
}

#[tokio::test(start_paused = true)]
async fn mirror_deprovisions_exactly_the_leavers_under_its_guard() {
    let emu = in_process_emulator(EmulatorConfig::default());
    let seed = |org: &str, users: &[&str]| {
        for u in users {
            emu.seed_org_user(org, u, u, &format!("{u}@x.example"));
        }
    };
    // acme holds the four active employees, Alan (left: Inactive), an old contractor, and
    // Zed, whose record tonight is broken (not a leaver: the input is wrong).
    seed(
        "acme",
        &[
            "ada.lovelace@acme.example",
            "grace@acme.example",
            "barbara@acme.example",
            "ken@acme.example",
            "alan@acme.example",
            "contractor@acme.example",
            "zed@acme.example",
        ],
    );
    emu.seed("acme", "research", ["alan@acme.example"]);
    // An organization the input never names.
    seed("other", &["someone@other.example"]);
    let input = format!("{EXPORT}1006,Zed,Zhu,zed@acme.example,Research,Berlin,Active,extra\n");
    let dir = tempfile::tempdir().unwrap();

    // The default guard (5% of 7 users: 1) refuses two removals: acme keeps its users.
    let refused = run(
        &emu,
        dir.path(),
        &input,
        &[
            "--mode",
            "mirror",
            "--deprovision-users",
            "--max-removals",
            "100%",
        ],
    )
    .await;
    assert_eq!(refused.result.unwrap(), 1);
    let leavers: Vec<_> = refused
        .rows
        .iter()
        .filter(|r| r["action"] == "remove-user")
        .collect();
    assert_eq!(
        leavers
            .iter()
            .map(|r| format!("{}/{}={}", r["organizationId"], r["userId"], r["status"]))
            .collect::<Vec<_>>(),
        [
            "acme/alan@acme.example=not_attempted",
            "acme/contractor@acme.example=not_attempted"
        ]
    );
    assert!(
        leavers[0]["message"].contains("more than --max-user-removals allows (1)"),
        "{}",
        leavers[0]["message"]
    );
    assert_eq!(
        emu.org_users("acme").len(),
        7,
        "a refused organization keeps its users"
    );
    assert_eq!(count(&calls(&emu), Call::DeleteOrgUsers), 0);

    // Allowed two: exactly the leavers go, after every group call; the rest stays.
    let done = run(
        &emu,
        dir.path(),
        &input,
        &[
            "--mode",
            "mirror",
            "--deprovision-users",
            "--max-removals",
            "100%",
            "--max-user-removals",
            "2",
        ],
    )
    .await;
    assert_eq!(done.result.unwrap(), 1, "Zed's record is invalid");
    let acme: Vec<String> = emu.org_users("acme").into_keys().collect();
    assert_eq!(
        acme,
        [
            "ada.lovelace@acme.example",
            "barbara@acme.example",
            "grace@acme.example",
            "ken@acme.example",
            "zed@acme.example"
        ]
    );
    assert_eq!(
        emu.org_users("other").len(),
        1,
        "never named, never touched"
    );
    let removed: Vec<_> = done
        .rows
        .iter()
        .filter(|r| r["action"] == "remove-user")
        .map(|r| format!("{}={}/{}", r["userId"], r["status"], r["user"]))
        .collect();
    assert_eq!(
        removed,
        [
            "alan@acme.example=removed/removed",
            "contractor@acme.example=removed/removed"
        ]
    );
    let order = calls(&emu);
    let last_group_call = order
        .iter()
        .rposition(|&c| matches!(c, Call::Add | Call::Delete))
        .unwrap();
    let first_user_delete = order
        .iter()
        .position(|&c| c == Call::DeleteOrgUsers)
        .unwrap();
    assert!(last_group_call < first_user_delete, "{order:?}");
    assert_eq!(done.stats.users.unwrap().removed, 2);

    // Never every user of an organization without --allow-empty, whatever the limit.
    let emu = in_process_emulator(EmulatorConfig::default());
    emu.seed_org_user("beta", "old", "Old", "old@beta.example");
    std::fs::write(
        dir.path().join("in.csv"),
        "orgId,groupId,userId,name,email\nbeta,eng,new,New,new@beta.example\n",
    )
    .unwrap();
    let all = sync_in_process(
        &emu,
        dir.path(),
        &[
            "--mode",
            "mirror",
            "--provision-users",
            "--create-organization",
            "--deprovision-users",
            "--max-user-removals",
            "100%",
        ],
    )
    .await;
    assert_eq!(all.result.unwrap(), 1);
    assert!(emu.org_users("beta").contains_key("old"));
    let row = all.rows.iter().find(|r| r["userId"] == "old").unwrap();
    assert!(
        row["message"].contains("--allow-empty"),
        "{}",
        row["message"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_plans_creates_updates_and_removals_and_sends_only_reads() {
    let emu = in_process_emulator(EmulatorConfig::default());
    emu.seed_org_user(
        "acme",
        "grace@acme.example",
        "Grace Hopper",
        "grace@acme.example",
    );
    emu.seed_org_user(
        "acme",
        "ken@acme.example",
        "Kenneth Thompson",
        "ken@acme.example",
    );
    emu.seed_org_user(
        "acme",
        "alan@acme.example",
        "Alan Turing",
        "alan@acme.example",
    );
    let before = users_of(&emu, "acme");
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &emu,
        dir.path(),
        EXPORT,
        &[
            "--mode",
            "mirror",
            "--deprovision-users",
            "--max-user-removals",
            "1",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(out.result.unwrap(), 0);
    assert!(
        calls(&emu).iter().all(|&c| c == Call::GetUsers),
        "{:?}",
        calls(&emu)
    );
    assert_eq!(users_of(&emu, "acme"), before);
    let users: BTreeMap<String, String> = out
        .rows
        .iter()
        .map(|r| {
            (
                r["userId"].clone(),
                format!("{}/{}", r["status"], r["user"]),
            )
        })
        .collect();
    assert_eq!(users["ada.lovelace@acme.example"], "planned/created");
    assert_eq!(users["grace@acme.example"], "planned/unchanged");
    assert_eq!(users["ken@acme.example"], "planned/updated");
    assert_eq!(users["alan@acme.example"], "planned/removed");
    let u = out.stats.users.unwrap();
    assert_eq!((u.created, u.updated, u.unchanged, u.removed), (2, 1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn bad_names_and_e_mails_are_invalid_at_their_line_and_nothing_is_guessed() {
    let emu = in_process_emulator(requiring_org_users());
    let dir = tempfile::tempdir().unwrap();
    let input = "\
orgId,groupId,userId,displayName,mail
acme,eng,u1,Ann Lee,ann@acme.example
acme,eng,u2,Bob Ray,
acme,eng,u3,Cy Doe,cy at acme
acme,ops,u1,Ann Lee,ANN@acme.example
acme,ops,u1,Ann Lee,ann.lee@acme.example
acme,ops,u4,,dee@acme.example
";
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let out = sync_in_process(
        &emu,
        dir.path(),
        &["--provision-users", "--create-organization"],
    )
    .await;
    assert_eq!(out.result.unwrap(), 1);
    let lines: Vec<_> = out
        .rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {}: {}",
                r["line"], r["userId"], r["status"], r["message"]
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "2 u1 added: ",
            "3 u2 invalid: email is empty; --provision-users needs each user's e-mail",
            "4 u3 invalid: email `cy at acme` is not an e-mail address",
            "5 u1 added: ",
            "6 u1 invalid: user u1 has the e-mail `ann.lee@acme.example` here but `ann@acme.example` at line 2; one user has one e-mail: fix the input",
            "7 u4 invalid: name is empty; --provision-users needs each user's name",
        ]
    );
    assert_eq!(emu.org_users("acme").len(), 1);

    // A user the server refuses to create: its memberships are not sent, and say why.
    let emu = in_process_emulator(EmulatorConfig {
        invalid_user_marker: Some("bad".into()),
        require_org_users: true,
        ..EmulatorConfig::default()
    });
    std::fs::write(
        dir.path().join("in.csv"),
        "orgId,groupId,userId,name,email\nacme,eng,u1,A,a@x.example\nacme,eng,bad-1,B,b@x.example\nacme,ops,bad-1,B,b@x.example\n",
    )
    .unwrap();
    let out = sync_in_process(
        &emu,
        dir.path(),
        &["--provision-users", "--create-organization"],
    )
    .await;
    assert_eq!(out.result.unwrap(), 1);
    let bad: Vec<_> = out.rows.iter().filter(|r| r["userId"] == "bad-1").collect();
    assert_eq!(bad.len(), 2);
    for r in bad {
        assert_eq!(r["status"], "not_attempted");
        assert_eq!(r["user"], "failed");
        assert!(
            r["message"].starts_with("not sent: the user could not be made a user of the organization (failed: Invalid userId: bad-1"),
            "{}",
            r["message"]
        );
    }
    assert_eq!(held(&emu), ["eng/u1".to_string()].into());
    assert!(
        !emu.received()
            .iter()
            .any(|(_, users)| users.iter().any(|u| u == "bad-1")),
        "no group call carried the unprovisioned user"
    );

    // No e-mail column at all: exit 2 before anything is sent, saying which flag names it.
    let emu = in_process_emulator(EmulatorConfig::default());
    std::fs::write(
        dir.path().join("in.csv"),
        "orgId,groupId,userId,name\nacme,eng,u1,A\n",
    )
    .unwrap();
    let out = sync_in_process(
        &emu,
        dir.path(),
        &["--provision-users", "--create-organization"],
    )
    .await;
    let err = out.result.unwrap_err().to_string();
    assert!(
        err.contains("no e-mail column (looked for email, mail"),
        "{err}"
    );
    assert!(err.contains("--email-column"), "{err}");
    assert_eq!(emu.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn scim_users_give_names_and_e_mails_through_field_paths() {
    let emu = in_process_emulator(requiring_org_users());
    let dir = tempfile::tempdir().unwrap();
    let scim = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
      "totalResults": 2,
      "Resources": [
        {"userName": "ann", "displayName": "Ann Lee", "active": true,
         "emails": [{"value": "ann@acme.example", "primary": true}],
         "groups": [{"display": "eng"}, {"display": "ops"}]},
        {"userName": "bob", "displayName": "Bob Ray", "active": true,
         "emails": [], "groups": [{"display": "eng"}]}
      ]}"#;
    // `sync_in_process` reads in.csv; `--format json` says what it holds.
    std::fs::write(dir.path().join("in.csv"), scim).unwrap();
    let out = sync_in_process(
        &emu,
        dir.path(),
        &[
            "--format",
            "json",
            "--org",
            "acme",
            "--user-column",
            "userName",
            "--group-column",
            "groups[].display",
            "--email-column",
            "emails[0].value",
            "--provision-users",
            "--create-organization",
        ],
    )
    .await;
    assert_eq!(out.result.unwrap(), 1, "Bob has no e-mail");
    assert_eq!(
        rows_and_users(&out.rows),
        [
            "eng/ann=added/created",
            "ops/ann=added/created",
            "/bob=invalid/",
        ]
    );
    assert_eq!(
        out.rows[2]["message"],
        "email is empty; --provision-users needs each user's e-mail"
    );
    assert_eq!(users_of(&emu, "acme")["ann"], "Ann Lee <ann@acme.example>");
}

/// Users confirmed created go into the `--state` journal: a run stopped among them resumes
/// with the rest, and does not send them again.
#[tokio::test(start_paused = true)]
async fn a_stopped_provisioning_run_resumes_from_its_journal() {
    use std::time::Duration;
    use velt_group_sync::interrupt::Interrupt;
    let emu = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_millis(100), Duration::from_millis(100)),
        require_org_users: true,
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("orgId,groupId,userId,name,email\n");
    for i in 0..6 {
        input.push_str(&format!("acme,eng,u{i},User {i},u{i}@acme.example\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let state = dir.path().join("state");
    let args = [
        "--provision-users",
        "--create-organization",
        "--chunk-size",
        "1",
        "--state",
        state.to_str().unwrap(),
    ];
    let interrupt = Interrupt::new();
    let stopper = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        stopper.signal(143);
    });
    let first = sync_in_process_with(&emu, dir.path(), &args, interrupt).await;
    assert_eq!(first.result.unwrap(), 143);
    let created = count(&calls(&emu), Call::AddOrgUsers);
    assert!(
        (1..6).contains(&created),
        "{created} users sent before the stop"
    );
    assert_eq!(emu.org_users("acme").len(), created);
    assert_eq!(
        count(&calls(&emu), Call::Add),
        0,
        "no group call before every user"
    );
    assert!(
        first.rows.iter().all(|r| r["status"] == "not_attempted"),
        "{:?}",
        first.rows
    );

    let before = calls(&emu).len();
    let second = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(second.result.unwrap(), 0);
    let resumed = calls(&emu)[before..].to_vec();
    assert_eq!(
        count(&resumed, Call::AddOrgUsers),
        6 - created,
        "{resumed:?}"
    );
    assert_eq!(emu.org_users("acme").len(), 6);
    assert_eq!(held(&emu).len(), 6);
    assert!(second.rows.iter().all(|r| r["user"] == "created"));
}

/// What the summary line and the JSON report say about users, from the binary; an add of a
/// user the server already has is `unchanged`.
#[tokio::test]
async fn the_summary_line_and_the_json_report_count_users() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed_org_user("acme", "u1", "Ann", "ann@acme.example");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "orgId,groupId,userId,name,email\nacme,eng,u1,Ann,ann@acme.example\nacme,eng,u2,Bob,bob@acme.example\nacme,ops,u2,Bob,bob@acme.example\n",
    )
    .unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args([
        "sync",
        "in.csv",
        "--provision-users",
        "--create-organization",
        "--report",
        "out.json",
    ])
    .args(["--base-url", &emu.base_url()]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("users: 1 created, 0 updated, 1 unchanged, 0 removed, 0 failed"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.json")).unwrap()).unwrap();
    let summary = &report["summary"]["users"];
    assert_eq!(
        (summary["created"].as_u64(), summary["unchanged"].as_u64()),
        (Some(1), Some(1))
    );
    let users: Vec<_> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}={}",
                r["organizationUserGroupId"], r["userId"], r["user"]
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            r#""eng"/"u1"="unchanged""#,
            r#""eng"/"u2"="created""#,
            r#""ops"/"u2"="created""#
        ]
    );
}
