//! The deploy samples (issue 29, item 5): each one's own command line, run against the
//! emulator with the sample's configuration file and secrets, its paths moved into a test
//! folder (`/etc/velt-group-sync` -> `etc/`, `/var/lib/velt-group-sync` -> `state/`, ...).
//! The test adds only the emulator's URL and a faster rate to the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use velt_group_sync::emulator::EmulatorConfig;

/// A test folder standing for the host: the samples' paths moved into it, the sample
/// configuration, group map and secrets installed as their comments say.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
    moves: Vec<(String, String)>,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let at = |p: &str| dir.path().join(p).display().to_string();
        let moves = vec![
            ("/etc/velt-group-sync".to_string(), at("etc")),
            ("/var/lib/velt-group-sync".into(), at("state")),
            ("/var/lib/node_exporter/textfile".into(), at("textfile")),
            ("/srv/hr/export.csv".into(), at("in/export.csv")),
            ("/data/in/export.csv".into(), at("in/export.csv")),
            ("/run/secrets/velt".into(), at("secrets")),
            ("%d".into(), at("creds")),
            (
                "/usr/local/bin/velt-group-sync".into(),
                env!("CARGO_BIN_EXE_velt-group-sync").into(),
            ),
            // Unreachable at once, not a DNS lookup that waits.
            (
                "http://pushgateway.monitoring.svc:9091".into(),
                "http://127.0.0.1:9".into(),
            ),
        ];
        for d in ["etc", "state", "textfile", "in", "secrets", "creds"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let sandbox = Sandbox { dir, moves };
        let deploy = samples().join("deploy");
        for file in ["velt-group-sync.toml", "group-map.csv"] {
            let text = std::fs::read_to_string(deploy.join(file)).unwrap();
            std::fs::write(sandbox.path("etc").join(file), sandbox.moved(&text)).unwrap();
        }
        let secrets = std::fs::read_to_string(deploy.join("secrets.env"))
            .unwrap()
            .replace("replace-with-your-api-key", API_KEY)
            .replace("replace-with-your-auth-token", AUTH_TOKEN);
        std::fs::write(sandbox.path("etc/secrets.env"), secrets).unwrap();
        for dir in ["secrets", "creds"] {
            std::fs::write(sandbox.path(dir).join("api-key"), API_KEY).unwrap();
            std::fs::write(sandbox.path(dir).join("auth-token"), AUTH_TOKEN).unwrap();
            std::fs::write(
                sandbox.path(dir).join("notify-url"),
                "http://127.0.0.1:9/hook\n",
            )
            .unwrap();
        }
        std::fs::copy(
            samples().join("hr/bamboohr-employees.csv"),
            sandbox.path("in/export.csv"),
        )
        .unwrap();
        sandbox
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub(crate) fn moved(&self, text: &str) -> String {
        self.moves
            .iter()
            .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
    }

    /// A command with the test's environment: the emulator, and no VELT_* of the host's.
    pub(crate) fn command(&self, program: &str, base_url: &str) -> Command {
        let mut cmd = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("VELT_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(self.dir.path())
            .env("VELT_BASE_URL", base_url)
            .env("VELT_RATE", "100");
        cmd
    }

    /// The crontab's schedule line's command, as cron hands it to the shell, paths moved.
    pub(crate) fn crontab_command(&self) -> String {
        let crontab = std::fs::read_to_string(samples().join("deploy/crontab")).unwrap();
        let line = crontab
            .lines()
            .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .expect("a schedule line");
        // What follows the five schedule fields.
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(' ').unwrap()..];
        }
        self.moved(rest.trim())
    }

    fn reports(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("report-") && n.ends_with(".csv"))
            .collect();
        names.sort();
        names
    }
}

/// The sample export's seven memberships, into an organization that exists (it holds Grace).
async fn acme() -> velt_group_sync::emulator::Emulator {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed_org_user(
        "acme",
        "grace@acme.example",
        "Grace Hopper",
        "grace@acme.example",
    );
    emu
}

fn check(
    sample: &str,
    out: &std::process::Output,
    emu: &velt_group_sync::emulator::Emulator,
    sandbox: &Sandbox,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{sample}: {stdout}\n{stderr}");
    assert_eq!(
        emu.memberships().len(),
        7,
        "{sample}: {:?}",
        emu.memberships()
    );
    assert_eq!(emu.org_users("acme").len(), 4, "{sample}: the active four");
    assert_eq!(
        sandbox.reports().len(),
        1,
        "{sample}: a dated report in the state folder"
    );
    assert!(
        sandbox.path("state/state.jsonl").exists(),
        "{sample}: the journal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crontab_line_runs_the_recipe() {
    let emu = acme().await;
    let sandbox = Sandbox::new();
    let command = sandbox.crontab_command();
    let out = tokio::task::spawn_blocking({
        let mut cmd = sandbox.command("sh", &emu.base_url());
        cmd.args(["-c", &command]);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    check("crontab", &out, &emu, &sandbox);
    let log = std::fs::read_to_string(sandbox.path("state/run.log")).unwrap();
    assert!(log.contains("\"event\":\"summary\""), "a JSON log: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_systemd_service_runs_the_recipe() {
    let emu = acme().await;
    let sandbox = Sandbox::new();
    let unit = std::fs::read_to_string(samples().join("deploy/velt-group-sync.service")).unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(|v| sandbox.moved(v))
            .collect()
    };
    let exec: Vec<String> = value("ExecStart=")
        .first()
        .expect("ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        value("StateDirectory=").first().map(String::as_str),
        Some("velt-group-sync"),
        "systemd makes /var/lib/velt-group-sync"
    );
    for credential in value("LoadCredential=") {
        let (name, _) = credential.split_once(':').unwrap();
        assert!(sandbox.path("creds").join(name).exists(), "{name}");
    }
    let mut cmd = sandbox.command(&exec[0], &emu.base_url());
    cmd.args(&exec[1..]);
    for env in value("Environment=") {
        let (k, v) = env.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    check("systemd", &out, &emu, &sandbox);
    let metrics = std::fs::read_to_string(sandbox.path("textfile/velt_group_sync.prom")).unwrap();
    assert!(
        metrics.contains("velt_group_sync_last_success_timestamp_seconds"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_cronjob_runs_the_recipe() {
    let emu = acme().await;
    let sandbox = Sandbox::new();
    let yaml = std::fs::read_to_string(samples().join("deploy/cronjob.yaml")).unwrap();
    let args_line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("args: "))
        .expect("args");
    let args: Vec<String> = serde_json::from_str(args_line).unwrap();
    let mut cmd = sandbox.command(env!("CARGO_BIN_EXE_velt-group-sync"), &emu.base_url());
    cmd.args(args.iter().map(|a| sandbox.moved(a)));
    for line in yaml.lines().map(str::trim) {
        let Some(pair) = line
            .strip_prefix("- {name: ")
            .and_then(|l| l.strip_suffix('}'))
        else {
            continue;
        };
        let Some((name, value)) = pair.split_once(", value: ") else {
            continue;
        };
        cmd.env(name, sandbox.moved(value.trim_matches('"')));
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    check("cronjob", &out, &emu, &sandbox);
    let mounts: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.split("mountPath: ").nth(1))
        .map(|m| m.split([',', '}']).next().unwrap().trim())
        .collect();
    for needed in [
        "/etc/velt-group-sync",
        "/var/lib/velt-group-sync",
        "/data/in",
        "/run/secrets/velt",
    ] {
        assert!(mounts.contains(&needed), "{needed} is mounted: {mounts:?}");
    }
}

/// The README's recipe is the sample configuration, word for word.
#[test]
fn the_readme_shows_the_sample_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let config = std::fs::read_to_string(root.join("samples/deploy/velt-group-sync.toml")).unwrap();
    let recipe = readme
        .find("## The nightly recipe")
        .expect("the README's recipe");
    let start = recipe + readme[recipe..].find("```toml\n").expect("its toml block") + 8;
    let end = start + readme[start..].find("```").unwrap();
    let shown = &readme[start..end];
    // The README shows the settings; the file also has its header comment.
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    assert_eq!(settings(shown), settings(&config));
}
