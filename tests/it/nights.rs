//! The deploy samples, run as written, night after night: the crontab's own command line (its
//! fixed `--state`, mode and flags) against one emulator, with an export that changes every
//! night, an interrupted night and its resume.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use crate::common::*;
use velt_group_sync::emulator::{Emulator, EmulatorConfig};

/// The arguments the crontab sample passes to velt-group-sync, with its paths moved into
/// `dir` and the emulator as the target.
fn crontab_args(dir: &Path, base_url: &str) -> Vec<String> {
    let crontab = std::fs::read_to_string(samples().join("deploy/crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| l.starts_with("15 2 "))
        .expect("the crontab's schedule line");
    let (_, after) = line
        .split_once("/usr/local/bin/velt-group-sync ")
        .expect("the binary in the crontab");
    // The job's own words: up to the redirection of its log.
    let (command, _) = after.split_once(" 2>>").expect("the log's redirection");
    let mut args: Vec<String> = command
        .split_whitespace()
        .map(|a| match a {
            "/srv/hr/acme/export.csv" => dir.join("export.csv").display().to_string(),
            p if p.starts_with("/var/lib/") || p.starts_with("/var/log/") => {
                let name = Path::new(p).file_name().unwrap();
                dir.join(name).display().to_string()
            }
            other => other.to_string(),
        })
        .collect();
    args.extend(["--base-url".to_string(), base_url.to_string()]);
    args
}

/// The other two samples say the same as the crontab: mode, rate and a fixed journal.
#[test]
fn the_three_samples_agree_on_mode_rate_and_journal() {
    let read = |name: &str| std::fs::read_to_string(samples().join("deploy").join(name)).unwrap();
    let crontab = read("crontab");
    assert!(crontab.contains("--mode mirror --rate 5 --state /var/lib/velt-group-sync/acme/"));
    let service = read("velt-group-sync.service");
    for line in [
        "VELT_MODE=mirror",
        "VELT_RATE=5",
        "VELT_STATE=/var/lib/velt-group-sync/",
    ] {
        assert!(service.contains(line), "service: {line}");
    }
    let cronjob = read("cronjob.yaml");
    for line in [
        "{name: VELT_MODE, value: mirror}",
        "{name: VELT_RATE, value: \"5\"}",
        "{name: VELT_STATE, value: /data/",
    ] {
        assert!(cronjob.contains(line), "cronjob: {line}");
    }
}

/// An export of `users`, all in one group (so that a night at the sample's 5 requests a
/// second is a read, an add and a removal).
fn write_export(dir: &Path, users: &BTreeSet<u32>) -> BTreeSet<(String, String, String)> {
    let mut text = String::from("organizationId,organizationUserGroupId,userId\n");
    let mut want = BTreeSet::new();
    for u in users {
        let group = "staff".to_string();
        text.push_str(&format!("acme,{group},user-{u:04}\n"));
        want.insert(("acme".to_string(), group, format!("user-{u:04}")));
    }
    std::fs::write(dir.join("export.csv"), text).unwrap();
    want
}

async fn night(dir: &Path, args: &[String]) -> Option<i32> {
    let mut cmd = process(dir);
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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
    let dir = tempfile::tempdir().unwrap();
    let args = crontab_args(dir.path(), &emu.base_url());
    let mut users: BTreeSet<u32> = (0..300).collect();
    let mut next = 300;
    // Three ordinary nights: each time 3% leave and a few join.
    for n in 0..3 {
        let want = write_export(dir.path(), &users);
        assert_eq!(night(dir.path(), &args).await, Some(0), "night {n}");
        assert_eq!(
            held_set(&emu),
            want,
            "night {n}: the server equals the export"
        );
        let leavers: Vec<u32> = users.iter().copied().step_by(33).take(9).collect();
        for u in leavers {
            users.remove(&u);
        }
        users.extend(next..next + 4);
        next += 4;
    }
    // An interrupted night: SIGTERM while its add is on the wire (after its read); its
    // removals are never sent.
    let want = write_export(dir.path(), &users);
    let before = emu.requests();
    let sent_before = emu.received().len();
    let child = spawn_night(dir.path(), &args);
    wait_until("the night started adding", || emu.requests() > before + 1).await;
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(143), "an interrupted night");
    let journal = std::fs::read_to_string(dir.path().join("state.jsonl")).unwrap();
    assert!(
        !journal.ends_with("complete\n"),
        "an interrupted run is resumed"
    );
    let sent_interrupted = sent_set(&emu.received()[sent_before..]);
    assert!(
        !sent_interrupted.is_empty(),
        "calls: add {} delete {} get {}; arrivals {:?}",
        emu.calls(velt_group_sync::emulator::Call::Add),
        emu.calls(velt_group_sync::emulator::Call::Delete),
        emu.calls(velt_group_sync::emulator::Call::GetUsers),
        emu.arrivals().iter().rev().take(4).collect::<Vec<_>>()
    );
    assert_ne!(held_set(&emu), want, "the interrupted night did not finish");
    // Its resume, the next morning, with the same export: the answered requests of the
    // interrupted night (graceful stop let the one in flight finish) are not sent again.
    let sent_before_resume = emu.received().len();
    assert_eq!(night(dir.path(), &args).await, Some(0), "the resume");
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
    let want = write_export(dir.path(), &users);
    assert_eq!(night(dir.path(), &args).await, Some(0), "the night after");
    assert_eq!(held_set(&emu), want);
}

/// The (group, user) pairs of these add requests.
fn sent_set(received: &[(String, Vec<String>)]) -> BTreeSet<(String, String)> {
    received
        .iter()
        .flat_map(|(g, users)| users.iter().map(move |u| (g.clone(), u.clone())))
        .collect()
}

fn spawn_night(dir: &Path, args: &[String]) -> std::process::Child {
    process(dir)
        .env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The crontab's command as written (flock, `sh -c`, the log, the failure path), its paths
/// moved into `dir`, with an env file of plain `KEY=value` lines as an admin writes one.
fn crontab_command(dir: &Path, base_url: &str) -> String {
    std::fs::write(
        dir.join("acme.env"),
        format!("VELT_API_KEY={API_KEY}\nVELT_AUTH_TOKEN={AUTH_TOKEN}\nVELT_BASE_URL={base_url}\n"),
    )
    .unwrap();
    let crontab = std::fs::read_to_string(samples().join("deploy/crontab")).unwrap();
    let line = crontab.lines().find(|l| l.starts_with("15 2 ")).unwrap();
    let command = line
        .splitn(6, ' ')
        .nth(5)
        .expect("a command after the schedule");
    let here = format!("{}/", dir.display());
    command
        .replace("/etc/velt-group-sync/", &here)
        .replace(
            "/usr/local/bin/velt-group-sync",
            env!("CARGO_BIN_EXE_velt-group-sync"),
        )
        .replace("/srv/hr/acme/", &here)
        .replace("/var/lib/velt-group-sync/acme/", &here)
        .replace("/var/log/velt-group-sync/acme/", &here)
        .replace("/var/lib/node_exporter/textfile/", &here)
        .replace("/var/lock/", &here)
}

/// What cron would mail: the command's output (exit code aside).
async fn cron_night(dir: &Path, command: &str) -> (Option<i32>, String) {
    let cmd = std::process::Command::new("sh")
        .current_dir(dir)
        .args(["-c", command])
        .env_remove("VELT_API_KEY")
        .env_remove("VELT_AUTH_TOKEN")
        .output();
    let out = tokio::task::spawn_blocking(move || cmd)
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

/// The crontab as written: a good night mails nothing; a failed night mails its exit code and
/// the log's last lines; a night skipped because the lock is held says so.
#[tokio::test(flavor = "multi_thread")]
async fn the_crontab_mails_failed_and_skipped_nights_and_nothing_else() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_export(dir.path(), &(0..5).collect());
    let command = crontab_command(dir.path(), &emu.base_url());
    let (code, mailed) = cron_night(dir.path(), &command).await;
    assert_eq!(code, Some(0), "{mailed}");
    assert_eq!(mailed, "", "a good night mails nothing");
    assert_eq!(
        emu.memberships().len(),
        5,
        "the env file's credentials reached the job"
    );
    // A bad row tonight: exit 1, mailed with the log's summary.
    let mut text = std::fs::read_to_string(dir.path().join("export.csv")).unwrap();
    text.push_str("acme,staff,\n");
    std::fs::write(dir.path().join("export.csv"), text).unwrap();
    let (code, mailed) = cron_night(dir.path(), &command).await;
    assert_eq!(code, Some(1));
    assert!(
        mailed.starts_with("velt-group-sync (acme) exited 1; the log: "),
        "{mailed}"
    );
    assert!(mailed.contains("\"event\":\"summary\""), "{mailed}");
    // The previous run still holds the lock: skipped, and said.
    let lock = std::fs::File::create(dir.path().join("velt-group-sync-acme.lock")).unwrap();
    lock.try_lock().unwrap();
    let (_, mailed) = cron_night(dir.path(), &command).await;
    assert!(
        mailed.contains("velt-group-sync (acme) skipped tonight"),
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
}
