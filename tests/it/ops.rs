//! What a scheduled run needs around it: the metrics file after clean, failed and interrupted
//! runs (parsed, not string-matched), `validate`, the environment equivalents of the options,
//! and JSON logs that are machine-readable and never carry a secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use velt_group_sync::emulator::{Call, EmulatorConfig};

/// A Prometheus text-format file: sample (`name{labels}`) to value. Panics on any line that
/// is not a comment or a well-formed sample, and on a sample without `# TYPE`.
fn parse_metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).expect("metrics file exists");
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert_eq!(kind, "gauge", "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (sample, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = sample.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        if let Some(labels) = sample.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with("{") && labels.ends_with("\"}")),
                "bad labels in {line:?}"
            );
        }
        assert!(typed.contains(name), "{name} has no # TYPE line before it");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            samples.insert(sample.to_string(), value).is_none(),
            "{sample} twice"
        );
    }
    samples
}

fn metric(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(&format!("velt_group_sync_{name}"))
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const PREVIOUS: &str = "# TYPE velt_group_sync_last_success_timestamp_seconds gauge\n\
                        velt_group_sync_last_success_timestamp_seconds 1700000000.5\n";

#[test]
fn metrics_after_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let before = now_s();
    bin(dir.path())
        .args(["sync", samples().join("memberships.csv").to_str().unwrap()])
        .args(["--emulator", "--metrics-file", "m.prom"])
        .assert()
        .code(0);
    let m = parse_metrics(&dir.path().join("m.prom"));
    assert_eq!(metric(&m, "memberships{status=\"added\"}"), 6.0);
    assert_eq!(metric(&m, "memberships{status=\"failed\"}"), 0.0);
    assert_eq!(metric(&m, "requests{code=\"200\"}"), 3.0);
    assert_eq!(metric(&m, "retries"), 0.0);
    assert_eq!(metric(&m, "throttled_requests"), 0.0);
    assert_eq!(metric(&m, "exit_code"), 0.0);
    assert_eq!(metric(&m, "last_run_success"), 1.0);
    let last_run = metric(&m, "last_run_timestamp_seconds");
    assert!(last_run >= before.floor() && last_run <= now_s() + 1.0);
    assert_eq!(metric(&m, "last_success_timestamp_seconds"), last_run);
    assert!(metric(&m, "duration_seconds") > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_after_a_failed_run_carry_the_last_success_over() {
    let emu = emulator(EmulatorConfig {
        invalid_user_marker: Some("bad".into()),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.prom"), PREVIOUS).unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "organizationId,organizationUserGroupId,userId\nacme,eng,u1\nacme,eng,bad-1\nacme,eng,\n",
    )
    .unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args(["sync", "in.csv", "--base-url", &emu.base_url()])
        .args(["--metrics-file", "m.prom"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let m = parse_metrics(&dir.path().join("m.prom"));
    assert_eq!(metric(&m, "memberships{status=\"added\"}"), 1.0);
    assert_eq!(metric(&m, "memberships{status=\"failed\"}"), 1.0);
    assert_eq!(metric(&m, "memberships{status=\"invalid\"}"), 1.0);
    assert!(metric(&m, "requests{code=\"400\"}") >= 1.0, "{m:?}");
    assert_eq!(metric(&m, "exit_code"), 1.0);
    assert_eq!(metric(&m, "last_run_success"), 0.0);
    assert_eq!(
        metric(&m, "last_success_timestamp_seconds"),
        1_700_000_000.5
    );
    assert!(metric(&m, "last_run_timestamp_seconds") > 1_700_000_000.5);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_after_an_interrupted_run() {
    let emu = emulator(EmulatorConfig {
        latency: (Duration::from_millis(300), Duration::from_millis(400)),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.prom"), PREVIOUS).unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 0..40 {
        input.push_str(&format!("acme,eng,user-{i}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let child = spawn_sync(
        dir.path(),
        &emu.base_url(),
        &[
            "--chunk-size",
            "1",
            "--rate",
            "10",
            "--concurrency",
            "3",
            "--max-concurrency",
            "3",
            "--metrics-file",
            "m.prom",
        ],
    );
    wait_until("the run sends", || emu.requests() >= 4).await;
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(143));
    let m = parse_metrics(&dir.path().join("m.prom"));
    assert_eq!(metric(&m, "exit_code"), 143.0);
    assert_eq!(metric(&m, "last_run_success"), 0.0);
    assert_eq!(
        metric(&m, "last_success_timestamp_seconds"),
        1_700_000_000.5
    );
    let added = metric(&m, "memberships{status=\"added\"}");
    let not_attempted = metric(&m, "memberships{status=\"not_attempted\"}");
    assert!(added >= 1.0 && not_attempted >= 1.0, "{m:?}");
    assert_eq!(added + not_attempted, 40.0);
    assert_eq!(metric(&m, "requests{code=\"200\"}"), added);
}

#[test]
fn validate_prints_each_problem_and_the_counts_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let messy = samples().join("messy.csv");
    let out = bin(dir.path())
        .args(["validate", messy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let name = messy.display().to_string();
    let problems: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{name}:")))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(problems.len(), 6, "{stdout}");
    assert!(problems[0].starts_with("5: userId is empty"), "{stdout}");
    assert!(
        lines.last().unwrap().ends_with(
            ": 2 groups, 3 memberships, 2 requests (chunk size 100), 6 invalid records, 1 duplicates merged"
        ),
        "{stdout}"
    );

    bin(dir.path())
        .args([
            "validate",
            samples().join("memberships.csv").to_str().unwrap(),
        ])
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            ": 3 groups, 6 memberships, 3 requests (chunk size 100), 0 invalid records",
        ));

    std::fs::write(dir.path().join("broken.json"), "[\n{\"userId\": \"a\",\n").unwrap();
    bin(dir.path())
        .args(["validate", "broken.json"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("broken.json:"));
    // Nothing is sent and no report is written.
    assert!(!dir.path().join("velt-group-sync-report.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_variables_stand_in_for_the_main_options() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.seed("acme", "eng", ["u1"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "org;team;person\nacme;eng;u1\nacme;eng;u2\nacme;eng;u3\nacme;eng;u4\n",
    )
    .unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.arg("sync")
        .env("VELT_INPUT", "in.csv")
        .env("VELT_BASE_URL", emu.base_url())
        .env("VELT_ORG_COLUMN", "org")
        .env("VELT_GROUP_COLUMN", "team")
        .env("VELT_USER_COLUMN", "person")
        .env("VELT_DELIMITER", ";")
        .env("VELT_MODE", "delta")
        .env("VELT_CHUNK_SIZE", "2")
        .env("VELT_RATE", "50")
        .env("VELT_REPORT", "out.jsonl")
        .env("VELT_METRICS_FILE", "m.prom")
        .env("VELT_QUIET", "1")
        // Switches take the usual spellings: 1/0, yes/no, on/off, true/false.
        .env("VELT_DRY_RUN", "off");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "VELT_QUIET=1: no summary line");
    assert_eq!(emu.calls(Call::GetUsers), 1, "VELT_MODE=delta reads first");
    let mut chunks: Vec<Vec<String>> = emu.received().into_iter().map(|(_, u)| u).collect();
    chunks.sort();
    assert_eq!(chunks, [vec!["u2", "u3"], vec!["u4"]], "VELT_CHUNK_SIZE=2");
    let report = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let statuses: Vec<String> = report
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(statuses, ["unchanged", "added", "added", "added"]);
    assert!(dir.path().join("m.prom").exists());

    // Each of them is named in --help, next to its option.
    let help = bin(dir.path()).args(["sync", "--help"]).output().unwrap();
    // Lines are wrapped to the terminal: compare with the whitespace folded.
    let help = String::from_utf8(help.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for var in [
        "VELT_INPUT",
        "VELT_BASE_URL",
        "VELT_ORG_COLUMN",
        "VELT_MODE",
        "VELT_CHUNK_SIZE",
        "VELT_RATE",
        "VELT_REPORT",
        "VELT_METRICS_FILE",
        "VELT_STATE",
        "VELT_MAX_REMOVALS",
        "VELT_API_KEY_FILE",
        "VELT_QUIET",
    ] {
        assert!(
            help.contains(&format!("env: {var}=")),
            "{var} not in --help"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_json_with_stable_fields_a_summary_and_no_secret() {
    let emu = emulator(EmulatorConfig {
        credentials: Some((API_KEY.into(), AUTH_TOKEN.into())),
        unavailable_fraction: 0.3,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 0..20 {
        input.push_str(&format!("acme,eng,user-{i}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    for verbosity in ["-v", "-vv"] {
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args(["--log-format", "json", verbosity, "sync", "in.csv"])
            .args(["--base-url", &emu.base_url(), "--chunk-size", "2"])
            .args(["--rate", "100", "--max-backoff", "200ms", "--mode", "delta"]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!stderr.contains(API_KEY), "{verbosity}: the API key leaked");
        assert!(
            !stderr.contains(AUTH_TOKEN),
            "{verbosity}: the auth token leaked"
        );
        let events: Vec<Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect();
        let ours =
            |name: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == name).collect() };
        let responses = ours("response");
        assert!(!responses.is_empty(), "{verbosity}");
        for e in &responses {
            assert_eq!(e["organizationId"], "acme");
            assert_eq!(e["organizationUserGroupId"], "eng");
            assert_eq!(e["httpStatus"], 200);
            assert!(e["attempt"].as_u64().unwrap() >= 1);
            assert!(e["elapsed_ms"].is_u64());
        }
        for e in ours("request_failed") {
            assert_eq!(e["httpStatus"], 503);
            assert_eq!(e["errorStatus"], "UNAVAILABLE");
        }
        let summary = ours("summary");
        assert_eq!(summary.len(), 1, "{verbosity}: one summary line");
        let s = summary[0];
        assert_eq!(s["memberships"], 20);
        assert_eq!(
            s["added"].as_u64().unwrap() + s["unchanged"].as_u64().unwrap(),
            20
        );
    }
}

/// The deployment samples use only flags and `VELT_*` variables that exist, so they do not
/// drift from the command line.
#[test]
fn deploy_samples_use_only_real_options_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| {
        let out = bin(dir.path()).args(args).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let known = format!("{} {}", help(&["--help"]), help(&["sync", "--help"]));
    let deploy = samples().join("deploy");
    let mut files = 0;
    for entry in std::fs::read_dir(&deploy).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        files += 1;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        for word in words {
            // Flags of other commands in the comments (kubectl, systemctl, cargo).
            if let Some(flag) = word.strip_prefix("--")
                && !flag.is_empty()
                && ![
                    "from-literal",
                    "from-file",
                    "now",
                    "release",
                    "failed",
                    "system",
                    "no-create-home",
                ]
                .contains(&flag)
            {
                assert!(
                    known.contains(&format!("--{flag} ")) || known.contains(&format!("--{flag},")),
                    "{name}: unknown flag --{flag}"
                );
            }
            if word.len() > 5
                && word.starts_with("VELT_")
                && word != "VELT_API_KEY"
                && word != "VELT_AUTH_TOKEN"
            {
                assert!(
                    known.contains(&format!("env: {word}="))
                        || known.contains(&format!("env: {word}]")),
                    "{name}: {word} is no option's variable"
                );
            }
        }
    }
    assert_eq!(
        files, 7,
        "crontab, service, timer, CronJob, configuration, group map, secrets"
    );
    // The configuration's keys are options too.
    let config = std::fs::read_to_string(deploy.join("velt-group-sync.toml")).unwrap();
    for line in config
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
    {
        let key = line.split(" = ").next().unwrap().trim();
        assert!(
            known.contains(&format!("--{key} ")) || known.contains(&format!("--{key},")),
            "velt-group-sync.toml: unknown key {key}"
        );
    }
}

#[test]
fn help_completions_and_man_page_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let outputs: Vec<(String, String)> = [
        vec!["--help"],
        vec!["sync", "--help"],
        vec!["validate", "--help"],
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
        vec!["manpage"],
    ]
    .into_iter()
    .map(|args| {
        let out = bin_with_credentials(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        (args.join(" "), String::from_utf8(out.stdout).unwrap())
    })
    .collect();
    for (args, text) in &outputs {
        assert!(
            !text.contains(API_KEY) && !text.contains(AUTH_TOKEN),
            "{args}"
        );
    }
    let by = |name: &str| &outputs.iter().find(|(a, _)| a == name).unwrap().1;
    assert!(by("completions bash").contains("--metrics-file"));
    assert!(by("completions zsh").starts_with("#compdef velt-group-sync"));
    assert!(by("manpage").contains(".TH velt-group-sync 1"));
    assert!(by("manpage").contains("validate"));
}

/// 429s and retries reach the metrics: a server limited to 2 requests/s, a job asking for 20.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_throttled_requests_and_retries() {
    let emu = emulator(EmulatorConfig {
        rate_limit: Some(3.0),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 0..6 {
        input.push_str(&format!("acme,eng,user-{i}\n"));
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let mut cmd = bin_with_credentials(dir.path());
    cmd.args(["sync", "in.csv", "--base-url", &emu.base_url()])
        .args([
            "--chunk-size",
            "1",
            "--rate",
            "20",
            "--metrics-file",
            "m.prom",
        ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let m = parse_metrics(&dir.path().join("m.prom"));
    let throttled = metric(&m, "throttled_requests");
    assert_eq!(throttled, emu.throttled() as f64, "as the server counted");
    assert!(throttled >= 1.0, "{m:?}");
    assert_eq!(metric(&m, "requests{code=\"429\"}"), throttled);
    assert_eq!(metric(&m, "requests{code=\"200\"}"), 6.0);
    assert_eq!(metric(&m, "retries"), throttled, "each 429 was sent again");
    assert_eq!(metric(&m, "memberships{status=\"added\"}"), 6.0);
    let waited = metric(&m, "throttled_seconds");
    // Each throttle paused the run for the server's Retry-After (1 s here).
    assert!((1.0..30.0).contains(&waited), "{waited}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(" s of it waiting on throttling)"),
        "the summary line says how long: {stderr}"
    );
}

/// Debian's Prometheus Pushgateway on a free loopback port, in a temporary directory. A
/// machine without it fails the test with what to do (`tests/run.sh` installs it): the test
/// never skips itself.
struct Pushgateway {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Pushgateway {
    async fn start() -> Pushgateway {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--persistence.file={}",
                dir.path().join("data").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "prometheus-pushgateway is not installed: run `bash tests/run.sh` (it apt-gets it)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        wait_until_async("the pushgateway answers", || {
            let ready = ready.clone();
            async move {
                reqwest::get(ready)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        Pushgateway {
            child,
            url,
            _dir: dir,
        }
    }

    /// The pushed series of our job, by name and labels, as the gateway serves them.
    async fn series(&self) -> BTreeMap<String, f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("velt_group_sync_"))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until_async<F, Fut>(what: &str, ready: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // Only a guard against a hang: a loaded machine passes long before it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// --metrics-push sends the metrics to a real Pushgateway under the job and the grouping
/// labels; a failed run carries the last success over, read back from the gateway; a gateway
/// that cannot be reached is a warning that leaves the exit code alone.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_pushed_to_a_pushgateway_after_good_and_failed_runs() {
    let gateway = Pushgateway::start().await;
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "organizationId,organizationUserGroupId,userId\nacme,eng,a\nacme,eng,b\n",
    )
    .unwrap();
    let push = |base: &str, gateway: &str| {
        let mut cmd = bin_with_credentials(dir.path());
        cmd.args(["sync", "in.csv", "--base-url", base]).args([
            "--metrics-push",
            gateway,
            "--metrics-label",
            "env=test",
        ]);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let out = push(&emu.base_url(), &gateway.url).await;
    assert_eq!(out.status.code(), Some(0));
    let m = gateway.series().await;
    let key = |name: &str, extra: &str| {
        format!(
            "velt_group_sync_{name}{{{extra}env=\"test\",instance=\"\",job=\"velt-group-sync\"}}"
        )
    };
    let added = m
        .iter()
        .find(|(k, _)| {
            k.starts_with("velt_group_sync_memberships{") && k.contains("status=\"added\"")
        })
        .map(|(_, v)| *v);
    assert_eq!(added, Some(2.0), "{m:?}");
    assert_eq!(m[&key("exit_code", "")], 0.0);
    let first_success = m[&key("last_success_timestamp_seconds", "")];
    assert!(first_success > 1.7e9, "{m:?}");
    // A failed run (the server refuses the credentials): exit 3, the last success stays.
    let refusing = emulator(EmulatorConfig {
        credentials: Some(("other".into(), "other".into())),
        ..EmulatorConfig::default()
    })
    .await;
    let out = push(&refusing.base_url(), &gateway.url).await;
    assert_eq!(out.status.code(), Some(3));
    let m = gateway.series().await;
    assert_eq!(m[&key("exit_code", "")], 3.0);
    assert_eq!(m[&key("last_run_success", "")], 0.0);
    assert_eq!(m[&key("last_success_timestamp_seconds", "")], first_success);
    // Nobody listening: a warning, and the run's own exit code.
    let out = push(&emu.base_url(), "http://127.0.0.1:9").await;
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: could not push the metrics"),
        "{stderr}"
    );
    assert!(!stderr.contains(API_KEY) && !stderr.contains(AUTH_TOKEN));
}

/// A dated report keeps earlier nights' reports, and --keep-reports bounds how many.
#[test]
fn dated_reports_stay_and_keep_reports_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "groupId,userId\neng,alice\n").unwrap();
    std::fs::create_dir(dir.path().join("reports")).unwrap();
    for old in ["r-2020-01-01.csv", "r-2020-01-02.csv", "r-2020-01-03.csv"] {
        std::fs::write(dir.path().join("reports").join(old), "old").unwrap();
    }
    let out = bin(dir.path())
        .args(["sync", "in.csv", "--org", "acme", "--emulator"])
        .args(["--report", "reports/r-{date}.csv", "--keep-reports", "2"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "r-2020-01-03.csv");
    let today = &names[1];
    assert!(
        today.len() == "r-2026-12-01.csv".len()
            && today.starts_with("r-20")
            && today != "r-2020-01-03.csv",
        "{today}"
    );
    let rows = read_report(&dir.path().join("reports").join(today));
    assert_eq!(rows.len(), 1);
    // Without a date in the name there is nothing to keep: a usage error.
    let out = bin(dir.path())
        .args([
            "sync",
            "in.csv",
            "--org",
            "acme",
            "--emulator",
            "--keep-reports",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep-reports needs a dated --report"));
}
