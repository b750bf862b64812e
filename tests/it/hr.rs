//! HR and directory exports as they come: leavers filtered out, several group columns, cells
//! holding several groups, display names mapped to group IDs, user IDs in any case. Each
//! export is shaped like the real one and each test asserts the exact memberships planned.

use std::path::Path;

use crate::common::*;
use velt_group_sync::emulator::{Call, EmulatorConfig};

/// What a dry run planned: `org/group/user@line` per planned row, `line: reason` per invalid
/// row, the exit code, the error message, and what the filters and the map left out.
struct Planned {
    code: i32,
    planned: Vec<String>,
    invalid: Vec<String>,
    stderr: String,
    filtered: u64,
    unmapped_skipped: u64,
}

/// A dry run of `input` with `args`, in-process in `dir`.
async fn dry_run(dir: &Path, input: &str, args: &[&str]) -> Planned {
    let emu = in_process_emulator(EmulatorConfig::default());
    let mut argv = vec![input, "--dry-run", "--report", "out.csv"];
    argv.extend_from_slice(args);
    let run = sync_argv(Server::Emulator(&emu), dir, &argv).await;
    let rows = &run.rows;
    let here = format!("{}/", dir.display());
    let pick =
        |status: &str| -> Vec<&Row> { rows.iter().filter(|r| r["status"] == status).collect() };
    Planned {
        planned: pick("planned")
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/{}@{}",
                    r["organizationId"], r["organizationUserGroupId"], r["userId"], r["line"]
                )
            })
            .collect(),
        invalid: pick("invalid")
            .iter()
            // As the binary run in `dir` says it: paths as given.
            .map(|r| format!("{}: {}", r["line"], r["message"]).replace(&here, ""))
            .collect(),
        code: run.code(),
        stderr: run
            .result
            .as_ref()
            .err()
            .map_or_else(String::new, |e| e.to_string()),
        filtered: run.stats.filtered,
        unmapped_skipped: run.stats.unmapped_skipped,
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const BAMBOO_ARGS: &[&str] = &[
    "--org",
    "acme",
    "--user-column",
    "Work Email",
    "--user-id-case",
    "lower",
    "--group-column",
    "Department",
    "--group-column",
    "Location",
    "--group-map",
    "GROUPS",
    "--include",
    "Status=Active",
];

pub(crate) fn bamboo_args(samples: &Path) -> Vec<String> {
    let map = samples.join("hr/bamboohr-groups.csv");
    BAMBOO_ARGS
        .iter()
        .map(|a| {
            if *a == "GROUPS" {
                map.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

#[tokio::test]
async fn bamboohr_one_row_per_employee_two_group_columns_a_map_and_leavers_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = samples().join("hr/bamboohr-employees.csv");
    let args = bamboo_args(&samples());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = dry_run(dir.path(), input.to_str().unwrap(), &args).await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        p.planned,
        [
            "acme/eng/ada.lovelace@acme.example@2",
            "acme/office-sao-paulo/ada.lovelace@acme.example@2",
            "acme/eng/grace@acme.example@3",
            "acme/office-berlin/grace@acme.example@3",
            "acme/research/barbara@acme.example@5",
            "acme/office-sao-paulo/barbara@acme.example@5",
            "acme/remote/ken@acme.example@6",
        ]
    );
    assert!(p.invalid.is_empty(), "{:?}", p.invalid);
    assert_eq!(p.filtered, 1, "records filtered");

    // validate counts the same way.
    let out = bin(dir.path())
        .arg("validate")
        .arg(&input)
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("5 groups, 7 memberships") && stdout.contains("1 records filtered"),
        "{stdout}"
    );
}

#[tokio::test]
async fn gam_group_members_keep_active_users_and_map_group_addresses() {
    let dir = tempfile::tempdir().unwrap();
    // `gam print group-members` (GAM7): nested groups and the customer are members too.
    write(
        dir.path(),
        "members.csv",
        "group,type,role,id,status,email\n\
         eng@acme.example,USER,MEMBER,1001,ACTIVE,ada@acme.example\n\
         eng@acme.example,USER,MANAGER,1002,SUSPENDED,grace@acme.example\n\
         eng@acme.example,GROUP,MEMBER,2001,,design@acme.example\n\
         eng@acme.example,CUSTOMER,MEMBER,C03az,,\n\
         Design@Acme.example,USER,OWNER,1004,ACTIVE,barbara@acme.example\n",
    );
    write(
        dir.path(),
        "map.csv",
        "source,groupId\neng@acme.example,eng\ndesign@acme.example,design\n",
    );
    let p = dry_run(
        dir.path(),
        "members.csv",
        &[
            "--org",
            "acme",
            "--group-column",
            "group",
            "--user-column",
            "email",
            "--include",
            "type=user",
            "--exclude",
            "status=SUSPENDED",
            "--group-map",
            "map.csv",
        ],
    )
    .await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        p.planned,
        [
            "acme/eng/ada@acme.example@2",
            "acme/design/barbara@acme.example@6"
        ]
    );
    assert!(p.invalid.is_empty(), "{:?}", p.invalid);
    assert_eq!(p.filtered, 3, "records filtered");
}

#[tokio::test]
async fn slack_member_export_without_deactivated_accounts_bots_and_guests() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "slack.csv",
        "username,email,status,billing-active,has-2fa,has-sso,userid,fullname,displayname,expiration-timestamp\n\
         ada,ada@acme.example,Member,1,1,0,U01,Ada Lovelace,ada,\n\
         grace,grace@acme.example,Admin,1,1,0,U02,Grace Hopper,grace,\n\
         old,old@acme.example,Deactivated,0,0,0,U03,Old Timer,old,\n\
         slackbot,,Bot,0,0,0,USLACKBOT,Slackbot,slackbot,\n\
         guest,guest@partner.example,Single-Channel Guest,1,0,0,U04,Guest,guest,\n\
         boss,boss@acme.example,Primary Owner,1,1,0,U05,The Boss,boss,\n",
    );
    let p = dry_run(
        dir.path(),
        "slack.csv",
        &[
            "--org",
            "acme",
            "--group",
            "slack-members",
            "--user-column",
            "email",
            "--include",
            "status=Member,Admin,Owner,Primary Owner",
        ],
    )
    .await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        p.planned,
        [
            "acme/slack-members/ada@acme.example@2",
            "acme/slack-members/grace@acme.example@3",
            "acme/slack-members/boss@acme.example@7",
        ]
    );
    assert_eq!(p.filtered, 3, "records filtered");

    // The same from the environment, as a CronJob sets it.
    let out = bin(dir.path())
        .args(["sync", "slack.csv", "--dry-run", "--report", "env.csv"])
        .env("VELT_ORG", "acme")
        .env("VELT_GROUP", "slack-members")
        .env("VELT_USER_COLUMN", "email")
        .env("VELT_INCLUDE", "status=Member,Admin,Owner,Primary Owner")
        .env("VELT_EXCLUDE", "username=boss;email=nobody@acme.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let users: Vec<String> = read_report(&dir.path().join("env.csv"))
        .iter()
        .map(|r| r["userId"].clone())
        .collect();
    assert_eq!(users, ["ada@acme.example", "grace@acme.example"]);
}

#[tokio::test]
async fn adobe_user_sync_groups_cell_holds_several_groups() {
    let dir = tempfile::tempdir().unwrap();
    let input = samples().join("hr/adobe-users-file.csv");
    let args = [
        "--org",
        "acme",
        "--user-column",
        "email",
        "--group-column",
        "groups",
        "--group-separator",
        ",",
        "--exclude",
        "groups=",
    ];
    let p = dry_run(dir.path(), input.to_str().unwrap(), &args).await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        p.planned,
        [
            "acme/Eng/jsmith@acme.example@2",
            "acme/Design/jsmith@acme.example@2",
            "acme/Managers/jsmith@acme.example@2",
            "acme/Design/jdoe@acme.example@3",
        ]
    );
    // Without the separator the whole cell would have been one group ID: the old silent bug.
    let p = dry_run(dir.path(), input.to_str().unwrap(), &args[..6]).await;
    assert!(
        p.planned
            .contains(&"acme/Eng, Design, Managers/jsmith@acme.example@2".to_string())
    );
    // Kim has no groups: without --exclude groups= that is an invalid row, not a guess.
    assert_eq!(p.code, 1);
    assert_eq!(p.invalid.len(), 1, "{:?}", p.invalid);
    assert!(p.invalid[0].starts_with("4: "), "{:?}", p.invalid);
}

#[tokio::test]
async fn unmapped_values_are_invalid_skipped_or_kept_and_validate_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "people.csv",
        "email,Department,Location\n\
         a@x,Engineering,Berlin\n\
         b@x,Sales,Berlin\n\
         c@x,Sales,Lisbon\n\
         d@x,Engineering,Lisbon\n",
    );
    write(
        dir.path(),
        "map.csv",
        "source,organizationUserGroupId,column\nEngineering,eng,Department\nBerlin,ber,Location\n",
    );
    let base = [
        "--org",
        "o",
        "--user-column",
        "email",
        "--group-column",
        "Department,Location",
        "--group-map",
        "map.csv",
    ];
    let with = |extra: &[&'static str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        a
    };
    let p = dry_run(dir.path(), "people.csv", &base).await;
    assert_eq!(p.code, 1);
    assert_eq!(p.planned, ["o/eng/a@x@2", "o/ber/a@x@2"]);
    assert_eq!(
        p.invalid,
        [
            "3: group `Sales` is not in the group map map.csv; add a row for it, or choose --unmapped skip or keep",
            "4: group `Sales` is not in the group map map.csv; add a row for it, or choose --unmapped skip or keep",
            "5: group `Lisbon` is not in the group map map.csv; add a row for it, or choose --unmapped skip or keep",
        ]
    );

    let p = dry_run(dir.path(), "people.csv", &with(&["--unmapped", "skip"])).await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        p.planned,
        ["o/eng/a@x@2", "o/ber/a@x@2", "o/ber/b@x@3", "o/eng/d@x@5"]
    );
    assert_eq!(p.unmapped_skipped, 4, "unmapped skipped");

    let p = dry_run(dir.path(), "people.csv", &with(&["--unmapped", "keep"])).await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(p.planned.len(), 8);
    assert!(
        p.planned.contains(&"o/Lisbon/c@x@4".to_string()),
        "{:?}",
        p.planned
    );

    let out = bin(dir.path())
        .args(["validate", "people.csv"])
        .args(with(&["--unmapped", "skip"]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("not in the group map"))
            .collect::<Vec<_>>(),
        [
            "people.csv: group `Sales` (column Department) is not in the group map: 2 record(s)",
            "people.csv: group `Lisbon` (column Location) is not in the group map: 2 record(s)",
        ],
        "{stdout}"
    );
}

#[tokio::test]
async fn a_filter_column_the_input_lacks_is_a_usage_error_before_anything_is_sent() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "orgId,groupId,userId,State\no,g,u1,Active\n",
    );
    write(
        dir.path(),
        "in.jsonl",
        "{\"orgId\":\"o\",\"groupId\":\"g\",\"userId\":\"u1\",\"active\":true}\n",
    );
    for (input, rule, expected) in [
        (
            "in.csv",
            "Status=Active",
            "in.csv:1: no column named `Status` (columns: orgId, groupId, userId, State); check --include",
        ),
        (
            "in.jsonl",
            "status=active",
            "in.jsonl:1: no record has a key named `status` (the first has: active, groupId, orgId, userId); check --include",
        ),
    ] {
        let argv = [input, "--include", rule, "--report", "out.csv"];
        let run = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
        assert_eq!(run.code(), 2, "{}", run.error());
        assert!(run.error().contains(expected), "{}", run.error());
    }
    assert_eq!(emu.calls(Call::Add), 0, "nothing is sent");
}

#[tokio::test]
async fn bad_group_maps_are_usage_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "orgId,group,userId\no,Eng,u1\n");
    write(dir.path(), "no-target.csv", "source,target\nEng,eng\n");
    write(
        dir.path(),
        "empty-target.csv",
        "source,groupId\nEng,eng\nOps,\n",
    );
    for (map, expected) in [
        ("missing.csv", "missing.csv: cannot read the group map"),
        (
            "no-target.csv",
            "no-target.csv:1: a group map needs the columns `source` and `organizationUserGroupId` (or `groupId`); its columns are: source, target",
        ),
        (
            "empty-target.csv",
            "empty-target.csv:3: no group ID for `Ops`; fill in `groupId`",
        ),
    ] {
        let p = dry_run(dir.path(), "in.csv", &["--group-map", map]).await;
        assert_eq!(p.code, 2, "{}", p.stderr);
        assert!(p.stderr.contains(expected), "{}", p.stderr);
        assert!(
            !dir.path().join("out.csv").exists(),
            "no report: nothing was planned"
        );
    }
}

#[tokio::test]
async fn json_group_arrays_and_boolean_filters() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "people.json",
        r#"[
  {"id": "U1", "active": true, "teams": ["Eng", "Ops"]},
  {"id": "U2", "active": false, "teams": ["Eng"]},
  {"id": "u1", "active": true, "teams": "Eng"}
]"#,
    );
    let p = dry_run(
        dir.path(),
        "people.json",
        &[
            "--org",
            "o",
            "--user-column",
            "id",
            "--group-column",
            "teams",
            "--include",
            "active=TRUE",
            "--user-id-case",
            "lower",
        ],
    )
    .await;
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(
        p.planned,
        ["o/Eng/u1@2", "o/Ops/u1@2"],
        "u1 at line 4 is a duplicate"
    );
    assert_eq!(p.filtered, 1, "records filtered");
}

#[tokio::test]
async fn offboarding_with_mirror_removes_exactly_the_leavers() {
    let emu = emulator(EmulatorConfig::default()).await;
    // Last night everyone was in their groups, leavers too.
    emu.seed(
        "acme",
        "eng",
        ["ada.lovelace@acme.example", "grace@acme.example"],
    );
    emu.seed(
        "acme",
        "research",
        ["alan@acme.example", "barbara@acme.example"],
    );
    emu.seed(
        "acme",
        "office-berlin",
        ["grace@acme.example", "alan@acme.example"],
    );
    emu.seed(
        "acme",
        "office-sao-paulo",
        ["ada.lovelace@acme.example", "barbara@acme.example"],
    );
    emu.seed("acme", "remote", ["ken@acme.example"]);
    emu.seed("acme", "not-in-the-export", ["alan@acme.example"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.arg("sync")
        .arg(samples().join("hr/bamboohr-employees.csv"))
        .args([
            "--base-url",
            &emu.base_url(),
            "--report",
            "out.csv",
            "--mode",
            "mirror",
        ])
        .args([
            "--max-removals",
            "50%",
            "--metrics-file",
            "m.prom",
            "--log-format",
            "json",
        ])
        .args(bamboo_args(&samples()));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rows = read_report(&dir.path().join("out.csv"));
    assert_eq!(
        rows_with(&rows, "removed"),
        [
            "office-berlin/alan@acme.example",
            "research/alan@acme.example"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        rows_with(&rows, "added").len(),
        0,
        "everyone else was already there"
    );
    let held = held(&emu);
    assert!(!held.contains("research/alan@acme.example"));
    assert!(
        held.contains("not-in-the-export/alan@acme.example"),
        "groups the export does not name are left alone"
    );
    assert_eq!(held.len(), 8);
    // The filtered leaver is counted in the JSON summary and the metrics, not reported.
    let summary = stderr
        .lines()
        .find(|l| l.contains("\"event\":\"summary\""))
        .expect("a summary event");
    assert!(summary.contains("\"filtered\":1"), "{summary}");
    let metrics = std::fs::read_to_string(dir.path().join("m.prom")).unwrap();
    assert!(
        metrics.contains("velt_group_sync_records_filtered 1\n"),
        "{metrics}"
    );
    assert!(
        !rows.iter().any(|r| r["line"] == "4"),
        "the leaver's record is no row"
    );
}

/// A map row's `name` is the display name `--create-missing-groups` gives the group.
#[tokio::test]
async fn missing_groups_are_created_with_the_maps_names() {
    let emu = emulator(EmulatorConfig {
        groups_must_exist: true,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let input = samples().join("hr/bamboohr-employees.csv");
    let bamboo = bamboo_args(&samples());
    let mut argv = vec![
        input.to_str().unwrap(),
        "--report",
        "out.csv",
        "--create-missing-groups",
        "--rate",
        "100",
    ];
    argv.extend(bamboo.iter().map(String::as_str));
    let run = sync_argv(Server::Emulator(&emu), dir.path(), &argv).await;
    assert_eq!(run.code(), 0, "{}", run.error());
    let names = emu.group_names();
    let name = |g: &str| names.get(&("acme".to_string(), g.to_string())).cloned();
    assert_eq!(name("eng").as_deref(), Some("Engineering & Product"));
    assert_eq!(
        name("office-sao-paulo").as_deref(),
        Some("São Paulo office")
    );
    assert_eq!(name("remote").as_deref(), Some("Remote"));
    assert_eq!(names.len(), 5);
}
