//! Never remove what should stay: every path that removes a membership or deletes a user, run
//! against hostile or broken listings (repeats, overlapping pages, pages that fail, oversize
//! pages, repeated tokens), records the input could not use, case-folded IDs, protected
//! accounts and groups, the journal, and a filter that leaves nothing. In-process against the
//! emulator, on a paused clock; checked by what the server holds and received.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;
use velt_group_sync::emulator::{Call, Emulator, EmulatorConfig, ListingFault};

fn emulator(fault: Option<ListingFault>) -> Emulator {
    in_process_emulator(EmulatorConfig {
        listing_fault: fault,
        ..EmulatorConfig::default()
    })
}

/// `u001` .. `uNNN`.
fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("u{i:03}")).collect()
}

/// An organization `acme` whose users are `users`, each also a member of group `eng`.
fn seed(emu: &Emulator, users: &[String]) {
    for u in users {
        emu.seed_org_user(
            "acme",
            u,
            &format!("Name {u}"),
            &format!("{u}@acme.example"),
        );
    }
    emu.seed("acme", "eng", users);
}

/// An export of `userId,name,email,group,status` naming `users` in group `eng`.
fn export(users: &[String]) -> String {
    let mut s = String::from("userId,name,email,group,status\n");
    for u in users {
        s.push_str(&format!("{u},Name {u},{u}@acme.example,eng,Active\n"));
    }
    s
}

/// Mirror with provisioning and deprovisioning, the guards at `guard`.
async fn mirror(emu: &Emulator, dir: &Path, input: &str, extra: &[&str]) -> InProcess {
    std::fs::write(dir.join("in.csv"), input).unwrap();
    let mut args = vec![
        "--org",
        "acme",
        "--group-column",
        "group",
        "--mode",
        "mirror",
        "--provision-users",
        "--deprovision-users",
        "--rate",
        "100",
    ];
    args.extend_from_slice(extra);
    sync_in_process(emu, dir, &args).await
}

fn code(run: &InProcess) -> i64 {
    match &run.result {
        Ok(c) => i64::from(*c),
        Err(e) => -i64::from(e.exit_code()),
    }
}

/// Users the organization still holds.
fn org_users(emu: &Emulator) -> BTreeSet<String> {
    emu.org_users("acme").into_keys().collect()
}

fn members_of(emu: &Emulator, group: &str) -> BTreeSet<String> {
    emu.memberships()
        .into_iter()
        .filter(|(_, g, _)| g == group)
        .map(|(_, _, u)| u)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_listing_that_repeats_users_is_unreadable_and_removes_nobody() {
    let emu = emulator(Some(ListingFault::Repeat(20)));
    let all = ids(100);
    seed(&emu, &all);
    let dir = tempfile::tempdir().unwrap();
    // An honest listing: 90 leavers of 100 is past the guard.
    let run = mirror(&emu, dir.path(), &export(&all[..10]), &[]).await;
    assert_eq!(code(&run), 1, "{:?}", run.result);
    assert_eq!(org_users(&emu).len(), 100, "nobody deleted");
    assert_eq!(
        members_of(&emu, "eng").len(),
        100,
        "nobody removed from eng"
    );
    assert_eq!(emu.calls(Call::DeleteOrgUsers), 0);
    assert_eq!(emu.calls(Call::Delete), 0);
}

#[tokio::test(start_paused = true)]
async fn overlapping_pages_make_the_listing_unreadable() {
    let emu = emulator(Some(ListingFault::Overlap(3)));
    let all = ids(100);
    seed(&emu, &all);
    let dir = tempfile::tempdir().unwrap();
    // 25 leavers of 100: past 20% of the distinct users, within 20% of the inflated count.
    let run = mirror(
        &emu,
        dir.path(),
        &export(&all[..75]),
        &[
            "--page-size",
            "10",
            "--max-user-removals",
            "20%",
            "--max-removals",
            "20%",
        ],
    )
    .await;
    assert_eq!(code(&run), 1);
    assert_eq!(org_users(&emu).len(), 100);
    assert_eq!(members_of(&emu, "eng").len(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_listing_that_fails_on_a_later_page_removes_nothing_and_exits_1() {
    for status in ["NOT_FOUND", "INVALID_ARGUMENT"] {
        let emu = emulator(Some(ListingFault::FailPage(2, status)));
        let all = ids(30);
        emu.seed("acme", "eng", &all);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("in.csv"),
            format!("groupId,userId\n{}", {
                let rows: Vec<String> = all[..29].iter().map(|u| format!("eng,{u}\n")).collect();
                rows.concat()
            }),
        )
        .unwrap();
        let args = [
            "--org",
            "acme",
            "--mode",
            "mirror",
            "--page-size",
            "10",
            "--max-removals",
            "100%",
        ];
        let run = sync_in_process(&emu, dir.path(), &args).await;
        assert_eq!(code(&run), 1, "{status}");
        assert_eq!(emu.calls(Call::Delete), 0, "{status}");
        assert_eq!(members_of(&emu, "eng").len(), 30, "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn oversize_pages_and_repeated_tokens_are_unreadable() {
    for fault in [ListingFault::Oversize, ListingFault::RepeatToken] {
        let emu = emulator(Some(fault));
        let all = ids(40);
        seed(&emu, &all);
        let dir = tempfile::tempdir().unwrap();
        let run = mirror(
            &emu,
            dir.path(),
            &export(&all[..39]),
            &["--page-size", "10", "--max-user-removals", "100%"],
        )
        .await;
        assert_eq!(code(&run), 1, "{fault:?}");
        assert_eq!(org_users(&emu).len(), 40, "{fault:?}");
        assert_eq!(emu.calls(Call::DeleteOrgUsers), 0, "{fault:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn users_of_unmapped_skipped_or_invalid_records_are_not_leavers() {
    let emu = emulator(None);
    let all = ids(40);
    seed(&emu, &all);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("map.csv"),
        "source,organizationUserGroupId\nEngineering,eng\n",
    )
    .unwrap();
    let mut input = String::from("userId,name,email,dept\n");
    for u in &all[..36] {
        input.push_str(&format!("{u},Name {u},{u}@acme.example,Engineering\n"));
    }
    // Two active employees of a department the map does not list yet.
    input.push_str("u037,Name u037,u037@acme.example,Platform\n");
    input.push_str("u038,Name u038,u038@acme.example,Platform\n");
    // An invalid record (no name) in another spelling, folded to u039.
    input.push_str("U039,,U039@acme.example,Engineering\n");
    // u040 is named nowhere: the one leaver.
    std::fs::write(dir.path().join("in.csv"), &input).unwrap();
    let map = dir.path().join("map.csv");
    let args = [
        "--org",
        "acme",
        "--group-column",
        "dept",
        "--group-map",
        map.to_str().unwrap(),
        "--unmapped",
        "skip",
        "--user-id-case",
        "lower",
        "--mode",
        "mirror",
        "--provision-users",
        "--deprovision-users",
        "--max-user-removals",
        "100%",
        "--max-removals",
        "100%",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    let left: BTreeSet<String> = org_users(&emu);
    let gone: Vec<&String> = all.iter().filter(|u| !left.contains(*u)).collect();
    assert_eq!(gone, ["u040"], "{:?}", run.result);
    // Nor are they removed from the group they are in now.
    let eng = members_of(&emu, "eng");
    for u in ["u037", "u038", "u039"] {
        assert!(eng.contains(u), "{u} removed from eng");
    }
    assert!(!eng.contains("u040"));
    // The invalid record makes the run exit 1.
    assert_eq!(code(&run), 1);
}

#[tokio::test(start_paused = true)]
async fn case_folding_keeps_existing_accounts_and_their_spelling() {
    let emu = emulator(None);
    emu.seed_org_user("acme", "Alice@X.com", "Alice A", "Alice@X.com");
    emu.seed_org_user("acme", "Bob@X.com", "Bob B", "bob@x.com");
    emu.seed_org_user("acme", "carol@x.com", "Carol C", "carol@x.com");
    emu.seed("acme", "eng", ["Bob@X.com", "carol@x.com"]);
    let dir = tempfile::tempdir().unwrap();
    // The README's nightly flags: IDs folded, provisioning and deprovisioning.
    let input = "userId,name,email,group,status\n\
                 ALICE@x.com,Alice A,Alice@X.com,eng,Active\n\
                 bob@x.com,Bob B,bob@x.com,eng,Active\n\
                 carol@x.com,Carol C,carol@x.com,eng,Active\n";
    let run = mirror(
        &emu,
        dir.path(),
        input,
        &["--user-id-case", "lower", "--max-user-removals", "100%"],
    )
    .await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert_eq!(
        org_users(&emu),
        BTreeSet::from([
            "Alice@X.com".into(),
            "Bob@X.com".into(),
            "carol@x.com".into()
        ]),
        "no account deleted, no lower-case twin created"
    );
    assert_eq!(emu.calls(Call::AddOrgUsers), 0);
    assert_eq!(emu.calls(Call::DeleteOrgUsers), 0);
    assert_eq!(
        members_of(&emu, "eng"),
        BTreeSet::from([
            "Alice@X.com".into(),
            "Bob@X.com".into(),
            "carol@x.com".into()
        ]),
        "Alice added under the server's spelling, Bob kept"
    );
    assert_eq!(emu.calls(Call::Delete), 0);
}

#[tokio::test(start_paused = true)]
async fn protected_users_and_groups_are_never_removed() {
    let emu = emulator(None);
    let staff = ids(20);
    seed(&emu, &staff);
    emu.seed_org_user("acme", "c1", "Contractor", "c1@contractor.example");
    emu.seed("acme", "eng", ["c1"]);
    emu.seed("acme", "admins", ["u001", "u002", "root"]);
    let dir = tempfile::tempdir().unwrap();
    // u020 leaves; the contractor was never in HR's export; admins holds someone HR does not.
    let mut input = export(&staff[..19]);
    input.push_str("u001,Name u001,u001@acme.example,admins,Active\n");
    let run = mirror(
        &emu,
        dir.path(),
        &input,
        &[
            "--protect-users",
            "*@CONTRACTOR.example",
            "--protect-groups",
            "adm*",
            "--max-user-removals",
            "100%",
            "--max-removals",
            "100%",
        ],
    )
    .await;
    assert_eq!(code(&run), 0, "{:?} {:#?}", run.result, statuses(&run.rows));
    assert!(org_users(&emu).contains("c1"));
    assert!(!org_users(&emu).contains("u020"));
    assert_eq!(emu.calls(Call::DeleteOrgUsers), 1, "u020 alone");
    assert!(members_of(&emu, "eng").contains("c1"));
    assert!(!members_of(&emu, "eng").contains("u020"));
    // Nobody leaves a protected group, even users the whole export no longer names.
    assert_eq!(
        members_of(&emu, "admins"),
        BTreeSet::from(["u001".into(), "u002".into(), "root".into()])
    );
    let protected: BTreeSet<String> = run
        .rows
        .iter()
        .filter(|r| r["status"] == "protected")
        .map(|r| format!("{}/{}", r["organizationUserGroupId"], r["userId"]))
        .collect();
    assert_eq!(
        protected,
        BTreeSet::from([
            "eng/c1".into(),
            "/c1".into(),
            "admins/u002".into(),
            "admins/root".into(),
            "/root".into()
        ])
    );
    assert_eq!(run.stats.counts.protected, 3);
    assert_eq!(run.stats.users.map(|u| u.protected), Some(2));

    // Remove mode keeps them too.
    std::fs::write(
        dir.path().join("in.csv"),
        "organizationId,organizationUserGroupId,userId\nacme,eng,c1\nacme,admins,u001\nacme,eng,u001\n",
    )
    .unwrap();
    let args = [
        "--mode",
        "remove",
        "--protect-users",
        "c1",
        "--protect-groups",
        "admins",
        "--max-removals",
        "100%",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert_eq!(
        statuses(&run.rows),
        [
            "acme/eng/c1=protected",
            "acme/admins/u001=protected",
            "acme/eng/u001=removed"
        ]
    );
    assert!(members_of(&emu, "eng").contains("c1"));
    assert!(members_of(&emu, "admins").contains("u001"));
}

#[tokio::test(start_paused = true)]
async fn an_export_filtered_to_nothing_is_refused_unless_allowed() {
    let emu = emulator(None);
    let all = ids(10);
    seed(&emu, &all);
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        &["--include", "status=Actve"][..],
        &["--exclude", "status=Active"][..],
    ] {
        let run = mirror(&emu, dir.path(), &export(&all), extra).await;
        assert_eq!(code(&run), -2, "{extra:?}");
        let message = run.result.unwrap_err().to_string();
        assert!(
            message.contains("no record passed the filters: 10 record(s) left out"),
            "{message}"
        );
        assert_eq!(emu.requests(), 0, "nothing sent");
    }
    // All unmapped and skipped.
    std::fs::write(
        dir.path().join("map.csv"),
        "source,organizationUserGroupId\nsales,sales\n",
    )
    .unwrap();
    let map = dir.path().join("map.csv");
    let map_args = ["--group-map", map.to_str().unwrap(), "--unmapped", "skip"];
    let run = mirror(&emu, dir.path(), &export(&all), &map_args).await;
    assert_eq!(code(&run), -2);
    assert_eq!(emu.requests(), 0);
    // --allow-empty accepts it (and reads nothing: the input names no group).
    let run = mirror(
        &emu,
        dir.path(),
        &export(&all),
        &["--include", "status=Actve", "--allow-empty"],
    )
    .await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert_eq!(org_users(&emu).len(), 10);
}

#[tokio::test(start_paused = true)]
async fn provisioning_never_creates_an_organization_by_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let input = export(&ids(3));
    for mode in ["add", "delta", "mirror"] {
        let emu = emulator(None);
        seed(&emu, &ids(5));
        std::fs::write(dir.path().join("in.csv"), &input).unwrap();
        let mut args = vec![
            "--org",
            "acmee",
            "--group-column",
            "group",
            "--provision-users",
            "--mode",
            mode,
        ];
        let run = sync_in_process(&emu, dir.path(), &args).await;
        assert_eq!(code(&run), -2, "{mode}");
        let message = run.result.unwrap_err().to_string();
        assert!(
            message.contains("organization(s) acmee hold no users")
                && message.contains("--create-organization"),
            "{mode}: {message}"
        );
        for call in [Call::AddOrgUsers, Call::Add, Call::CreateGroups] {
            assert_eq!(emu.calls(call), 0, "{mode}: no write");
        }
        assert!(emu.org_users("acmee").is_empty());
        // The first run of a new organization says so.
        args.push("--create-organization");
        let run = sync_in_process(&emu, dir.path(), &args).await;
        assert_eq!(code(&run), 0, "{mode}: {:?}", run.result);
        assert_eq!(emu.org_users("acmee").len(), 3, "{mode}");
    }
}

/// A run stopped by the throttle budget leaves an unfinished journal: 4 of 8 confirmed.
async fn unfinished_add_journal(emu: &Emulator, dir: &Path) -> Vec<u8> {
    let rows: String = ids(8).iter().map(|u| format!("eng,{u}\n")).collect();
    std::fs::write(dir.join("in.csv"), format!("groupId,userId\n{rows}")).unwrap();
    let state = dir.join("state");
    let args = [
        "--org",
        "acme",
        "--chunk-size",
        "1",
        "--concurrency",
        "1",
        "--max-retry-after",
        "1s",
        "--max-throttle-wait",
        "1s",
        "--state",
        state.to_str().unwrap(),
    ];
    let run = sync_in_process(emu, dir, &args).await;
    assert_eq!(code(&run), 1, "{:?}", run.result);
    assert_eq!(members_of(emu, "eng").len(), 4);
    let text = std::fs::read(&state).unwrap();
    assert!(!String::from_utf8_lossy(&text).contains("complete"));
    text
}

fn throttled_emulator() -> Emulator {
    in_process_emulator(EmulatorConfig {
        rate_limit: Some(0.001),
        rate_burst: Some(4.0),
        ..EmulatorConfig::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_remove_run_never_resumes_an_add_runs_journal() {
    let emu = throttled_emulator();
    let dir = tempfile::tempdir().unwrap();
    unfinished_add_journal(&emu, dir.path()).await;
    emu.set_rate_limit(1000.0);
    let state = dir.path().join("state");
    let args = [
        "--org",
        "acme",
        "--mode",
        "remove",
        "--max-removals",
        "100%",
        "--allow-empty",
        "--state",
        state.to_str().unwrap(),
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert!(members_of(&emu, "eng").is_empty(), "all 4 removed");
    let removed = rows_with(&run.rows, "removed");
    assert_eq!(removed.len(), 4, "{:?}", statuses(&run.rows));
    assert!(rows_with(&run.rows, "added").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_never_writes_the_journal() {
    let emu = throttled_emulator();
    let dir = tempfile::tempdir().unwrap();
    let before = unfinished_add_journal(&emu, dir.path()).await;
    emu.set_rate_limit(1000.0);
    let state = dir.path().join("state");
    for mode in ["add", "delta", "mirror"] {
        let args = [
            "--org",
            "acme",
            "--mode",
            mode,
            "--dry-run",
            "--state",
            state.to_str().unwrap(),
        ];
        sync_in_process(&emu, dir.path(), &args).await;
        assert_eq!(std::fs::read(&state).unwrap(), before, "{mode}");
    }
    // The night is still resumed: only the 4 not confirmed are sent.
    let args = [
        "--org",
        "acme",
        "--chunk-size",
        "1",
        "--state",
        state.to_str().unwrap(),
    ];
    let adds = emu.calls(Call::Add);
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert_eq!(emu.calls(Call::Add) - adds, 4);
}

/// Whatever the export and however the listings break (repeats, overlapping pages,
/// truncation, a failure on any page, oversize pages, a repeated token), a mirror run with
/// deprovisioning never removes more than its guards allow over the distinct current members
/// and users, never empties a group or an organization without `--allow-empty`, and never
/// removes a user the export names (even in a record it could not use) or a protected one.
#[tokio::test(start_paused = true)]
async fn no_listing_makes_a_run_remove_what_it_must_keep() {
    let dir = tempfile::tempdir().unwrap();
    // How often removals went through, and how often a hostile listing was met: the
    // properties must be tested on runs that remove something.
    let (mut removing, mut refused) = (0, 0);
    for case in 0..120u64 {
        let mut rng = fastrand::Rng::with_seed(case);
        let universe = ids(rng.usize(2..50));
        let fault = match rng.u8(0..8) {
            0 => None,
            1 => Some(ListingFault::Repeat(rng.usize(2..4))),
            2 => Some(ListingFault::Overlap(rng.usize(1..3))),
            3 => Some(ListingFault::EndAfterPage(rng.u64(1..4))),
            4 => Some(ListingFault::FailPage(
                rng.u64(1..5),
                ["NOT_FOUND", "INTERNAL", "INVALID_ARGUMENT"][rng.usize(0..3)],
            )),
            5 => Some(ListingFault::Oversize),
            6 => Some(ListingFault::RepeatToken),
            _ => None,
        };
        let emu = emulator(fault);
        let org: Vec<String> = universe
            .iter()
            .filter(|_| rng.u8(..) < 200)
            .cloned()
            .collect();
        let eng: Vec<String> = org.iter().filter(|_| rng.bool()).cloned().collect();
        for u in &org {
            emu.seed_org_user(
                "acme",
                u,
                &format!("Name {u}"),
                &format!("{u}@acme.example"),
            );
        }
        emu.seed("acme", "eng", &eng);
        // The export: a random part of the universe, some records invalid (no name).
        let mut named = BTreeSet::new();
        let mut input = String::from("userId,name,email,group,status\n");
        for u in &universe {
            match rng.u8(0..10) {
                0..=5 => input.push_str(&format!("{u},Name {u},{u}@acme.example,eng,Active\n")),
                6 => input.push_str(&format!("{u},,{u}@acme.example,eng,Active\n")),
                _ => continue,
            }
            named.insert(u.clone());
        }
        if named.is_empty() {
            continue;
        }
        let protect = format!("u0{}*", rng.u8(0..5));
        let guard = if rng.bool() {
            rng.u8(0..10).to_string()
        } else {
            format!("{}%", rng.u8(0..101))
        };
        let page = rng.u8(3..20).to_string();
        let allow_empty = rng.bool();
        let mut args = vec![
            "--page-size",
            &page,
            "--max-removals",
            &guard,
            "--max-user-removals",
            &guard,
            "--protect-users",
            &protect,
            "--create-organization",
        ];
        if allow_empty {
            args.push("--allow-empty");
        }
        let run = mirror(&emu, dir.path(), &input, &args).await;
        let limit = |current: usize| {
            velt_group_sync::guard::MaxRemovals::parse(&guard)
                .unwrap()
                .limit(current)
        };
        let what = format!("case {case}: {fault:?}, guard {guard}, {:?}", run.result);
        // Listings these faults always break: repeats, and pages larger than asked for.
        let page_size: usize = page.parse().unwrap();
        let hostile = |current: usize| match fault {
            Some(ListingFault::Repeat(_)) => current > 0,
            Some(ListingFault::Oversize) => current > page_size,
            _ => false,
        };

        let left = org_users(&emu);
        let deleted: Vec<&String> = org.iter().filter(|u| !left.contains(*u)).collect();
        let removed: BTreeSet<String> = emu
            .deleted()
            .into_iter()
            .flat_map(|(_, users)| users)
            .collect();
        for (gone, current) in [(deleted.len(), org.len()), (removed.len(), eng.len())] {
            assert!(
                gone <= limit(current),
                "{what}: {gone} of {current} removed"
            );
            if !allow_empty && current > 0 {
                assert!(gone < current, "{what}: emptied");
            }
            removing += usize::from(gone > 0);
            if hostile(current) {
                refused += 1;
                assert_eq!(gone, 0, "{what}: removed after a hostile listing");
            }
        }
        for u in deleted.iter().copied().chain(&removed) {
            assert!(!named.contains(u), "{what}: {u} is named by the export");
            assert!(
                !u.starts_with(&protect[..protect.len() - 1]),
                "{what}: {u} is protected by {protect}"
            );
        }
    }
    assert!(
        removing > 30 && refused > 20,
        "{removing} removing, {refused} refused"
    );
}

/// The README's nightly recipe: the deploy samples' configuration file, as it is (the test's
/// own report and journal paths on the command line win over the file's).
fn readme_nightly(dir: &Path) -> Vec<String> {
    let config = samples().join("deploy/velt-group-sync.toml");
    [
        "in.csv",
        "--config",
        config.to_str().unwrap(),
        "--report",
        "report-{date}.csv",
        "--state",
        dir.join("state").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(start_paused = true)]
async fn the_readme_nightly_command_deletes_nobody_it_should_keep() {
    for extra in [&[][..], &["--unmapped", "skip"][..]] {
        let emu = emulator(None);
        for (id, name) in [
            ("Ada.Lovelace@acme.example", "Ada Lovelace"),
            ("grace@acme.example", "Grace Hopper"),
            ("alan@acme.example", "Alan Turing"),
            ("barbara@acme.example", "Barbara Liskov"),
            ("ken@acme.example", "Ken Thompson"),
            ("linus@acme.example", "Linus Torvalds"),
        ] {
            emu.seed_org_user("acme", id, name, id);
        }
        emu.seed(
            "acme",
            "eng",
            ["Ada.Lovelace@acme.example", "grace@acme.example"],
        );
        emu.seed(
            "acme",
            "research",
            ["alan@acme.example", "barbara@acme.example"],
        );
        let dir = tempfile::tempdir().unwrap();
        // Alan left (Inactive). Barbara's record lost her name (invalid); Linus moved to a
        // department the map does not list yet; Ken's and Ada's IDs differ in case.
        std::fs::write(
            dir.path().join("in.csv"),
            "Employee #,First Name,Last Name,Work Email,Department,Location,Status\n\
             1001,Ada,Lovelace,ada.lovelace@ACME.example,Engineering & Product,São Paulo,Active\n\
             1002,Grace,Hopper,grace@acme.example,Engineering & Product,Berlin,Active\n\
             1003,Alan,Turing,alan@acme.example,Research,Berlin,Inactive\n\
             1004,,,barbara@acme.example,Research,São Paulo,Active\n\
             1005,Ken,Thompson,KEN@acme.example,,Remote,Active\n\
             1006,Linus,Torvalds,linus@acme.example,Kernel,,Active\n",
        )
        .unwrap();
        let mut args = readme_nightly(dir.path());
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = sync_argv(Server::Emulator(&emu), dir.path(), &args).await;
        assert_eq!(code(&run), 1, "{extra:?}: {:?}", run.result);
        assert_eq!(
            org_users(&emu),
            BTreeSet::from(
                [
                    "Ada.Lovelace@acme.example",
                    "grace@acme.example",
                    "barbara@acme.example",
                    "ken@acme.example",
                    "linus@acme.example"
                ]
                .map(String::from)
            ),
            "{extra:?}: only Alan goes, and nobody gets a lower-case twin"
        );
        assert_eq!(
            members_of(&emu, "research"),
            BTreeSet::from(["barbara@acme.example".to_string()]),
            "{extra:?}"
        );
        assert!(members_of(&emu, "eng").contains("Ada.Lovelace@acme.example"));
        assert!(!members_of(&emu, "eng").contains("ada.lovelace@acme.example"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_removal_list_against_a_broken_listing_removes_nothing() {
    for fault in [
        ListingFault::Repeat(3),
        ListingFault::Overlap(2),
        ListingFault::FailPage(2, "NOT_FOUND"),
        ListingFault::Oversize,
        ListingFault::RepeatToken,
    ] {
        let emu = emulator(Some(fault));
        let all = ids(30);
        emu.seed("acme", "eng", &all);
        let dir = tempfile::tempdir().unwrap();
        let rows: String = all[..3].iter().map(|u| format!("eng,{u}\n")).collect();
        std::fs::write(dir.path().join("in.csv"), format!("groupId,userId\n{rows}")).unwrap();
        let args = [
            "--org",
            "acme",
            "--mode",
            "remove",
            "--page-size",
            "10",
            "--max-removals",
            "100%",
        ];
        let run = sync_in_process(&emu, dir.path(), &args).await;
        assert_eq!(code(&run), 1, "{fault:?}");
        assert_eq!(emu.calls(Call::Delete), 0, "{fault:?}");
        assert_eq!(members_of(&emu, "eng").len(), 30, "{fault:?}");
        for r in &run.rows {
            assert_eq!(r["status"], "not_attempted", "{fault:?}");
            assert!(
                r["message"].starts_with("not removed: the group could not be read ("),
                "{fault:?}: {}",
                r["message"]
            );
        }
    }
}
