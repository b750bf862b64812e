//! The deploy samples, run as written, night after night: the crontab's own command line (its
//! configuration file, with the recipe's mode, rate, guards and fixed journal) against one
//! emulator, with a BambooHR export that changes every night, an interrupted night and its
//! resume; and what cron mails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use crate::common::*;
use crate::deploy::Sandbox;
use velt_group_sync::emulator::{Emulator, EmulatorConfig};

/// The job's own words on the crontab's line, paths moved: `--config FILE sync EXPORT`.
fn crontab_args(sandbox: &Sandbox) -> Vec<String> {
    let command = sandbox.crontab_command();
    let binary = env!("CARGO_BIN_EXE_velt-group-sync");
    let (_, after) = command
        .split_once(&format!("{binary} "))
        .expect("the binary in the crontab");
    let (words, _) = after.split_once(" 2>>").expect("the log's redirection");
    words.split_whitespace().map(String::from).collect()
}

/// Every sample runs the one configuration file, and none overrides its mode, rate, guards
/// or journal with a variable of its own.
#[test]
fn the_three_samples_run_the_one_configuration() {
    let read = |name: &str| std::fs::read_to_string(samples().join("deploy").join(name)).unwrap();
    let config = "/etc/velt-group-sync/velt-group-sync.toml";
    for sample in ["crontab", "velt-group-sync.service", "cronjob.yaml"] {
        let text = read(sample);
        assert!(text.contains(config), "{sample} runs {config}");
        for option in ["MODE", "RATE", "STATE", "REPORT", "MAX_REMOVALS"] {
            assert!(
                !text.contains(&format!("VELT_{option}")),
                "{sample} sets VELT_{option}"
            );
        }
    }
    let toml = read("velt-group-sync.toml");
    for line in [
        "mode = \"mirror\"",
        "rate = 5",
        "state = \"/var/lib/velt-group-sync/",
    ] {
        assert!(toml.contains(line), "{line}");
    }
}

/// A BambooHR export of `users`, all active in Research, Berlin: each one two memberships.
fn write_export(sandbox: &Sandbox, users: &BTreeSet<u32>) -> BTreeSet<(String, String, String)> {
    let mut text =
        String::from("Employee #,First Name,Last Name,Work Email,Department,Location,Status\n");
    let mut want = BTreeSet::new();
    for u in users {
        let email = format!("user-{u:04}@acme.example");
        text.push_str(&format!("{u},User,{u:04},{email},Research,Berlin,Active\n"));
        for group in ["research", "office-berlin"] {
            want.insert(("acme".to_string(), group.to_string(), email.clone()));
        }
    }
    std::fs::write(sandbox.path("in/export.csv"), text).unwrap();
    want
}

fn night_command(sandbox: &Sandbox, base_url: &str, args: &[String]) -> std::process::Command {
    let mut cmd = sandbox.command(env!("CARGO_BIN_EXE_velt-group-sync"), base_url);
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

async fn night(sandbox: &Sandbox, base_url: &str, args: &[String]) -> Option<i32> {
    let mut cmd = night_command(sandbox, base_url, args);
    let status = tokio::task::spawn_blocking(move || cmd.status().unwrap())
        .await
        .unwrap();
    status.code()
}

fn held_set(emu: &Emulator) -> BTreeSet<(String, String, String)> {
    emu.memberships().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_samples_run_night_after_night_with_a_changing_export_and_an_interruption() {
    let emu = emulator(EmulatorConfig {
        latency: (
            std::time::Duration::from_millis(100),
            std::time::Duration::from_millis(100),
        ),
        ..EmulatorConfig::default()
    })
    .await;
    // The organization exists (provisioning never creates one by a typo).
    emu.seed_org_user(
        "acme",
        "user-0001@acme.example",
        "User 0001",
        "user-0001@acme.example",
    );
    let sandbox = Sandbox::new();
    let url = emu.base_url();
    let args = crontab_args(&sandbox);
    let mut users: BTreeSet<u32> = (0..300).collect();
    let mut next = 300;
    // Three ordinary nights: each time five leave (within the recipe's 2% of users) and a
    // few join.
    for n in 0..3 {
        let want = write_export(&sandbox, &users);
        assert_eq!(night(&sandbox, &url, &args).await, Some(0), "night {n}");
        assert_eq!(
            held_set(&emu),
            want,
            "night {n}: the server equals the export"
        );
        let org: BTreeSet<String> = emu.org_users("acme").into_keys().collect();
        assert_eq!(
            org.len(),
            users.len(),
            "night {n}: leavers left the organization"
        );
        let leavers: Vec<u32> = users.iter().copied().step_by(33).take(5).collect();
        for u in leavers {
            users.remove(&u);
        }
        users.extend(next..next + 4);
        next += 4;
    }
    // An interrupted night: SIGTERM while its first add is on the wire; its removals are
    // never sent.
    let want = write_export(&sandbox, &users);
    let sent_before = emu.received().len();
    let child = night_command(&sandbox, &url, &args).spawn().unwrap();
    wait_until("the night started adding", || {
        emu.received().len() > sent_before
    })
    .await;
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(143), "an interrupted night");
    let journal = std::fs::read_to_string(sandbox.path("state/state.jsonl")).unwrap();
    assert!(
        !journal.ends_with("complete\n"),
        "an interrupted run is resumed"
    );
    let sent_interrupted = sent_set(&emu.received()[sent_before..]);
    assert!(!sent_interrupted.is_empty());
    assert_ne!(held_set(&emu), want, "the interrupted night did not finish");
    // Its resume, the next morning, with the same export: the answered requests of the
    // interrupted night (graceful stop let the one in flight finish) are not sent again.
    let sent_before_resume = emu.received().len();
    assert_eq!(night(&sandbox, &url, &args).await, Some(0), "the resume");
    assert_eq!(held_set(&emu), want);
    let resent = sent_set(&emu.received()[sent_before_resume..]);
    assert!(
        resent.is_disjoint(&sent_interrupted),
        "sent again: {:?}",
        resent.intersection(&sent_interrupted).collect::<Vec<_>>()
    );
    // And the next night, with a new export.
    for u in users
        .iter()
        .copied()
        .step_by(40)
        .take(5)
        .collect::<Vec<_>>()
    {
        users.remove(&u);
    }
    users.extend(next..next + 3);
    let want = write_export(&sandbox, &users);
    assert_eq!(
        night(&sandbox, &url, &args).await,
        Some(0),
        "the night after"
    );
    assert_eq!(held_set(&emu), want);
    // A report per night, dated: the nights of one day share one.
    let reports: Vec<_> = std::fs::read_dir(sandbox.path("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("report-"))
        .collect();
    assert!(!reports.is_empty());
}

/// The (group, user) pairs of these add requests.
fn sent_set(received: &[(String, Vec<String>)]) -> BTreeSet<(String, String)> {
    received
        .iter()
        .flat_map(|(g, users)| users.iter().map(move |u| (g.clone(), u.clone())))
        .collect()
}

/// What cron would mail: the command's output (exit code aside).
async fn cron_night(sandbox: &Sandbox, base_url: &str, command: &str) -> (Option<i32>, String) {
    let mut cmd = sandbox.command("sh", base_url);
    cmd.args(["-c", command]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let mailed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), mailed)
}

/// The crontab as written (its secrets from the sample's `export` lines): a good night mails
/// nothing; a failed night mails its exit code and the log's last lines; a night skipped
/// because the lock is held says so.
#[tokio::test(flavor = "multi_thread")]
async fn the_crontab_mails_failed_and_skipped_nights_and_nothing_else() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed_org_user(
        "acme",
        "user-0000@acme.example",
        "User 0000",
        "user-0000@acme.example",
    );
    let sandbox = Sandbox::new();
    let url = emu.base_url();
    write_export(&sandbox, &(0..5).collect());
    let command = sandbox.crontab_command();
    let (code, mailed) = cron_night(&sandbox, &url, &command).await;
    assert_eq!(code, Some(0), "{mailed}");
    assert_eq!(mailed, "", "a good night mails nothing");
    assert_eq!(
        emu.memberships().len(),
        10,
        "the secrets file's credentials reached the job"
    );
    // A bad row tonight: exit 1, mailed with the log's summary.
    let path = sandbox.path("in/export.csv");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("99,No,Email,,Research,Berlin,Active\n");
    std::fs::write(&path, text).unwrap();
    let (code, mailed) = cron_night(&sandbox, &url, &command).await;
    assert_eq!(code, Some(1));
    assert!(
        mailed.starts_with("velt-group-sync exited 1; the log: "),
        "{mailed}"
    );
    assert!(mailed.contains("\"event\":\"summary\""), "{mailed}");
    // The previous run still holds the lock: skipped, and said.
    let lock = std::fs::File::create(sandbox.path("state/run.lock")).unwrap();
    lock.try_lock().unwrap();
    let (_, mailed) = cron_night(&sandbox, &url, &command).await;
    assert!(
        mailed.contains("velt-group-sync skipped tonight"),
        "{mailed}"
    );
    drop(lock);
}

/// The CronJob runs as the image's user on a volume it can write (fsGroup), reads its secrets
/// from mounted files rather than environment variables, and keeps no capability or syscall
/// it does not need; the systemd unit writes its metrics where node_exporter can read them.
#[test]
fn the_samples_run_with_least_privilege() {
    let read = |name: &str| std::fs::read_to_string(samples().join("deploy").join(name)).unwrap();
    let cronjob = read("cronjob.yaml");
    let containerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile"))
            .unwrap();
    assert!(containerfile.contains("USER 65532:65532"));
    for line in [
        "fsGroup: 65532",
        "runAsUser: 65532",
        "seccompProfile: {type: RuntimeDefault}",
        "capabilities: {drop: [\"ALL\"]}",
        "{name: VELT_API_KEY_FILE, value: /run/secrets/velt/api-key}",
        "{name: VELT_AUTH_TOKEN_FILE, value: /run/secrets/velt/auth-token}",
        "secretName: velt-credentials",
    ] {
        assert!(cronjob.contains(line), "cronjob: {line}");
    }
    assert!(!cronjob.contains("secretKeyRef"), "no secret as a variable");
    let service = read("velt-group-sync.service");
    assert!(!service.contains("DynamicUser=yes"));
    assert!(service.contains("Environment=VELT_METRICS_FILE=/var/lib/node_exporter/textfile/"));
    assert!(service.contains("ReadWritePaths=/var/lib/node_exporter/textfile"));
    let secrets = read("secrets.env");
    let settings: Vec<&str> = secrets
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        settings
            .iter()
            .all(|l| l.starts_with("export VELT_API_KEY=")
                || l.starts_with("export VELT_AUTH_TOKEN=")),
        "secrets only, exported: {settings:?}"
    );
}
