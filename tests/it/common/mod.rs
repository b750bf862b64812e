//! Helpers shared by the integration tests: a command for the real binary with a clean
//! environment, and the report read back as rows.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use velt_group_sync::emulator::{Emulator, EmulatorConfig};

pub const API_KEY: &str = "test-key-Zq81vXe-distinctive";
pub const AUTH_TOKEN: &str = "test-token-Kp44uWm-distinctive";

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// The binary as a plain process, run in `dir`, with no VELT_* variables from the outer
/// environment.
pub fn process(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_velt-group-sync"));
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("VELT_") {
            cmd.env_remove(k);
        }
    }
    // The backoff's jitter is seeded: a test meets the same waits every run.
    cmd.env("VELT_JITTER_SEED", "7");
    cmd
}

/// The binary, run in `dir`, with no VELT_* variables from the outer environment.
pub fn bin(dir: &Path) -> Command {
    Command::from_std(process(dir))
}

/// The emulator in-process (no socket: see `Emulator::in_process`), its draws seeded.
pub fn in_process_emulator(mut config: EmulatorConfig) -> Emulator {
    config.seed.get_or_insert(7);
    Emulator::in_process(config)
}

/// The emulator on a free loopback port.
pub async fn emulator(mut config: EmulatorConfig) -> Emulator {
    // Its draws (latencies, faults) are seeded: a test meets the same ones every run.
    config.seed.get_or_insert(7);
    Emulator::start(config, (std::net::Ipv4Addr::LOCALHOST, 0).into())
        .await
        .expect("emulator starts")
}

/// `sync in.csv --base-url BASE_URL EXTRA...` in `dir` with the test credentials, started in
/// the background (for tests that signal it).
pub fn spawn_sync(dir: &Path, base_url: &str, extra: &[&str]) -> Child {
    sync_command(dir, base_url, extra)
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts")
}

/// `sync in.csv --base-url BASE_URL EXTRA...` in `dir` with the test credentials, its stdout
/// dropped.
fn sync_command(dir: &Path, base_url: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = process(dir);
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args(["sync", "in.csv", "--base-url", base_url])
        .args(extra)
        .stdout(Stdio::null());
    cmd
}

/// The same, with its stderr read line by line into the returned list (for a test that waits
/// for what the run says).
pub fn spawn_sync_said(
    dir: &Path,
    base_url: &str,
    extra: &[&str],
) -> (Child, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::BufRead;
    let mut child = sync_command(dir, base_url, extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = said.clone();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            lines.lock().unwrap().push(line);
        }
    });
    (child, said)
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to the child, without needing a `kill` binary.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on a child we started and have not waited for yet.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
}

/// Waits for the child's exit code without blocking the test's runtime.
pub async fn exit_code(mut child: Child) -> Option<i32> {
    tokio::task::spawn_blocking(move || child.wait().expect("child waited for"))
        .await
        .expect("wait task")
        .code()
}

/// Waits until `ready` holds: a machine under load may start the binary slowly,
/// so fixed sleeps would make these tests flaky.
pub async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    // Only a guard against a hang: a loaded machine passes long before it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The binary with the test credentials set.
pub fn bin_with_credentials(dir: &Path) -> Command {
    let mut cmd = bin(dir);
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN);
    cmd
}

/// The report's columns, in their documented order (spelt out here, not taken from the
/// library, so that a change to the contract fails the tests). `action` was appended after
/// the first nine, and `user` after it, so that their readers keep working.
pub const REPORT_COLUMNS: [&str; 11] = [
    "organizationId",
    "organizationUserGroupId",
    "userId",
    "status",
    "message",
    "errorStatus",
    "httpStatus",
    "attempts",
    "line",
    "action",
    "user",
];

pub type Row = HashMap<String, String>;

/// Reads a CSV report; also checks the header is exactly the documented one.
pub fn read_report(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("report exists");
    parse_csv_report(&text)
}

pub fn parse_csv_report(text: &str) -> Vec<Row> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), REPORT_COLUMNS);
    reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// `org/group/user=status` for each row, in report order.
pub fn statuses(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{}/{}/{}={}",
                r["organizationId"], r["organizationUserGroupId"], r["userId"], r["status"]
            )
        })
        .collect()
}

/// The most requests that arrived within any window of that length.
pub fn max_in_window(times: &[std::time::Duration], window: std::time::Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..t.len() {
        while t[end] - t[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// What an in-process run left: its exit code (or error), its figures and its report rows.
pub struct InProcess {
    pub result: Result<u8, velt_group_sync::error::Error>,
    pub stats: velt_group_sync::metrics::RunStats,
    pub rows: Vec<Row>,
}

impl InProcess {
    /// The exit code the binary would have ended with.
    pub fn code(&self) -> i32 {
        match &self.result {
            Ok(code) => i32::from(*code),
            Err(e) => i32::from(e.exit_code()),
        }
    }

    /// The error message the binary would have printed (empty for a run without an error).
    pub fn error(&self) -> String {
        match &self.result {
            Ok(_) => String::new(),
            Err(e) => format!("error: {e}"),
        }
    }
}

/// `sync INPUT ARGS...` run in-process (the library, not the binary) against an in-process
/// emulator, so that a test on a paused clock (`#[tokio::test(start_paused = true)]`) runs
/// minutes of pacing in milliseconds. The input is `dir/in.csv`; the report goes to
/// `dir/report.csv`.
pub async fn sync_in_process(emu: &Emulator, dir: &Path, args: &[&str]) -> InProcess {
    sync_in_process_with(emu, dir, args, velt_group_sync::interrupt::Interrupt::new()).await
}

/// The same, with an interrupt the test may cancel.
pub async fn sync_in_process_with(
    emu: &Emulator,
    dir: &Path,
    args: &[&str],
    interrupt: velt_group_sync::interrupt::Interrupt,
) -> InProcess {
    let mut argv = vec!["in.csv", "--report", "report.csv"];
    argv.extend_from_slice(args);
    run_in_process(Server::Emulator(emu), dir, &argv, interrupt).await
}

/// Where an in-process run sends.
pub enum Server<'a> {
    Emulator(&'a Emulator),
    /// A server on the network (a wiremock), by its base URL.
    Url(&'a str),
}

/// Flags whose value is a path: resolved against the test's directory, as the binary run
/// there would.
const PATH_FLAGS: &[&str] = &[
    "--report",
    "--state",
    "--group-map",
    "--metrics-file",
    "--out",
    "--held-plan",
    "--config",
];

/// `sync ARGV...` (the input first) run in-process as the binary would run it in `dir`:
/// relative paths are `dir`'s. Returns the exit code or error, the figures and the rows of
/// the report (found by its `--report` flag).
pub async fn sync_argv(server: Server<'_>, dir: &Path, argv: &[&str]) -> InProcess {
    let interrupt = velt_group_sync::interrupt::Interrupt::new();
    run_in_process(server, dir, argv, interrupt).await
}

/// `plan ARGV...` or `apply ARGV...` (`command`), in-process as [`sync_argv`] runs `sync`.
pub async fn command_argv(
    server: Server<'_>,
    dir: &Path,
    command: &'static str,
    argv: &[&str],
) -> InProcess {
    let interrupt = velt_group_sync::interrupt::Interrupt::new();
    run_command(server, dir, command, argv, interrupt).await
}

/// The same, with an interrupt the test may signal.
pub async fn command_argv_with(
    server: Server<'_>,
    dir: &Path,
    command: &'static str,
    argv: &[&str],
    interrupt: velt_group_sync::interrupt::Interrupt,
) -> InProcess {
    run_command(server, dir, command, argv, interrupt).await
}

async fn run_in_process(
    server: Server<'_>,
    dir: &Path,
    argv: &[&str],
    interrupt: velt_group_sync::interrupt::Interrupt,
) -> InProcess {
    run_command(server, dir, "sync", argv, interrupt).await
}

async fn run_command(
    server: Server<'_>,
    dir: &Path,
    command: &'static str,
    argv: &[&str],
    interrupt: velt_group_sync::interrupt::Interrupt,
) -> InProcess {
    use velt_group_sync::cli::Command;
    use velt_group_sync::sync::Job;
    let mut resolved: Vec<String> = Vec::new();
    let mut report = None;
    for (i, a) in argv.iter().enumerate() {
        let is_path = (i == 0 && *a != "-") || (i > 0 && PATH_FLAGS.contains(&argv[i - 1]));
        let value = if is_path && !Path::new(a).is_absolute() {
            dir.join(a).to_string_lossy().into_owned()
        } else {
            a.to_string()
        };
        if i > 0 && argv[i - 1] == "--report" {
            report = Some(std::path::PathBuf::from(&value));
        }
        resolved.push(value);
    }
    let mut full = vec!["velt-group-sync", "-q", command];
    if command != "apply" {
        full.extend(["--jitter-seed", "7"]);
    }
    full.extend(resolved.iter().map(String::as_str));
    let argv: Vec<std::ffi::OsString> = full.iter().map(Into::into).collect();
    let cli = match velt_group_sync::cli::config::parse(argv) {
        Ok(cli) => cli,
        Err(velt_group_sync::cli::config::ArgsError::Config(message)) => {
            return InProcess {
                result: Err(velt_group_sync::error::Error::Config(message)),
                stats: Default::default(),
                rows: Vec::new(),
            };
        }
        Err(e) => panic!("arguments: {e:?}"),
    };
    let (plan_out, file, args) = match cli.command {
        Command::Sync(args) => (None, None, *args),
        Command::Plan(p) => (
            Some(p.out.clone()),
            None,
            velt_group_sync::sync::plans::plan_as_sync(&p),
        ),
        Command::Apply(a) => match velt_group_sync::sync::plans::apply_as_sync(&a) {
            Ok((args, file)) => (None, Some(file), args),
            Err(e) => {
                return InProcess {
                    result: Err(e),
                    stats: Default::default(),
                    rows: Vec::new(),
                };
            }
        },
        _ => panic!("not sync, plan or apply"),
    };
    let job = match (&plan_out, &file) {
        (Some(out), _) => Job::Plan { out },
        (_, Some(file)) => Job::Apply(file),
        _ => Job::Sync,
    };
    let credentials = velt_group_sync::client::Credentials::new(API_KEY, AUTH_TOKEN);
    let client = match server {
        Server::Emulator(emu) => velt_group_sync::client::VeltClient::in_process(
            emu.router(),
            args.server.api_version,
            &credentials,
            args.access.timeout,
        ),
        Server::Url(url) => velt_group_sync::client::VeltClient::new(
            url,
            args.server.api_version,
            &credentials,
            args.access.timeout,
        ),
    }
    .expect("client");
    let session = velt_group_sync::sync::Session {
        client: Some(client),
        interrupt,
        output: velt_group_sync::output::Output {
            quiet: true,
            json_logs: false,
            all_changes: false,
        },
    };
    let synced = velt_group_sync::sync::run(&args, &session, job).await;
    // The report the run says it wrote (a dated name filled in, an apply's beside the
    // night's), else the one its flag named.
    let written = synced
        .ended
        .as_ref()
        .map(|e| std::path::PathBuf::from(&e.report))
        .filter(|p| p.is_absolute());
    let rows = match written.or(report).filter(|r| r.exists()) {
        Some(path) => read_report(&path),
        None => Vec::new(),
    };
    // Whatever the test: every row that did not go through says why.
    for r in &rows {
        if matches!(
            r["status"].as_str(),
            "not_attempted" | "unconfirmed" | "failed" | "invalid"
        ) {
            assert!(!r["message"].is_empty(), "a row without a reason: {r:?}");
        }
    }
    InProcess {
        result: synced.result,
        stats: synced.stats,
        rows,
    }
}

/// `groups` groups of `users` users each, as `org,gNN,user-NNNN` rows of `dir/in.csv`.
pub fn write_groups(dir: &Path, groups: usize, users: usize) {
    let mut input = String::from("orgId,groupId,userId\n");
    for g in 0..groups {
        for u in 0..users {
            input.push_str(&format!("org,g{g:02},user-{u:04}\n"));
        }
    }
    std::fs::write(dir.join("in.csv"), input).unwrap();
}

/// Every membership the emulator holds, as `group/user`.
pub fn held(emu: &Emulator) -> std::collections::BTreeSet<String> {
    emu.memberships()
        .into_iter()
        .map(|(_, g, u)| format!("{g}/{u}"))
        .collect()
}

/// The `group/user` of the rows with this status.
pub fn rows_with(rows: &[Row], status: &str) -> std::collections::BTreeSet<String> {
    rows.iter()
        .filter(|r| r["status"] == status)
        .map(|r| format!("{}/{}", r["organizationUserGroupId"], r["userId"]))
        .collect()
}

/// Runs `cmd` to the end as `output()` does, and gives the peak resident memory of the program
/// it runs, in MB: the high-water mark of its own memory (`VmHWM`), read while it runs.
/// Not `wait4`'s `ru_maxrss`: that counts the memory the child shared with this test process
/// between its fork and its exec, so a test binary that has grown (tests beside it holding
/// large buffers) would pass its own size to the child's figure. `VmHWM` only rises, so the
/// last reading misses at most what the program grew in its last 2 ms.
// The child is reaped by wait4 below, which clippy does not see.
#[allow(clippy::zombie_processes)]
pub fn output_with_peak(mut cmd: std::process::Command) -> (std::process::Output, f64) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("binary starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("pipe read");
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let status_file = format!("/proc/{pid}/status");
    let high_water = || -> Option<f64> {
        let text = std::fs::read_to_string(&status_file).ok()?;
        let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    let mut peak: f64 = 0.0;
    let mut status = 0;
    loop {
        // Read before reaping: a reaped child's figures are gone.
        if let Some(mb) = high_water() {
            peak = peak.max(mb);
        }
        // SAFETY: waitpid(2) on our own child, which std has not waited for.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(waited >= 0, "waitpid");
        if waited == pid {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(
        peak > 0.0,
        "no reading of the child's memory: it ended before the first"
    );
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: stdout.join().expect("stdout thread"),
        stderr: stderr.join().expect("stderr thread"),
    };
    (output, peak)
}
