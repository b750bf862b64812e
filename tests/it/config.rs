//! `--config FILE` (issue 29, item 2): the same options from flags and from a file give the
//! same plan; a flag beats its variable, which beats the file, which beats the default; paths
//! are the file's; unknown keys and secrets are refused, naming the line.

use std::path::Path;

use crate::common::*;
use velt_group_sync::emulator::EmulatorConfig;

/// The same options as a file, its group map beside it (`conf/`), named relative to it.
fn bamboo_config(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::copy(
        samples().join("hr/bamboohr-groups.csv"),
        conf.join("groups.csv"),
    )
    .unwrap();
    let path = conf.join("velt-group-sync.toml");
    std::fs::write(
        &path,
        "# BambooHR nightly\n\
         org = \"acme\"\n\
         user-column = \"Work Email\"\n\
         user-id-case = \"lower\"\n\
         group-column = [\"Department\", \"Location\"]\n\
         group-map = \"groups.csv\"\n\
         include = [\"Status=Active\"]\n",
    )
    .unwrap();
    path
}

fn planned(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{}/{}/{} {}",
                r["organizationId"], r["organizationUserGroupId"], r["userId"], r["status"]
            )
        })
        .collect()
}

#[tokio::test]
async fn the_same_options_from_flags_and_from_a_file_give_the_same_plan() {
    let emu = in_process_emulator(EmulatorConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let config = bamboo_config(dir.path());
    let input = samples().join("hr/bamboohr-employees.csv");
    let input = input.to_str().unwrap();
    let bamboo = crate::hr::bamboo_args(&samples());
    let mut flags = vec![input, "--dry-run", "--report", "flags.csv"];
    flags.extend(bamboo.iter().map(String::as_str));
    let by_flags = sync_argv(Server::Emulator(&emu), dir.path(), &flags).await;
    assert_eq!(by_flags.code(), 0, "{}", by_flags.error());
    let by_file = sync_argv(
        Server::Emulator(&emu),
        dir.path(),
        &[
            input,
            "--dry-run",
            "--report",
            "file.csv",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(by_file.code(), 0, "{}", by_file.error());
    assert_eq!(planned(&by_file.rows), planned(&by_flags.rows));
    assert_eq!(by_file.rows.len(), 7, "{:?}", by_file.rows);
}

#[tokio::test]
async fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "organizationId,organizationUserGroupId,userId\nacme,eng,ada\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "report = \"from-file.csv\"\ndry-run = true\n",
    )
    .unwrap();
    let run = |flag: Option<&str>, env: Option<&str>, config: bool| {
        let mut cmd = bin(dir.path());
        cmd.args(["sync", "in.csv"]).env_remove("VELT_REPORT");
        if config {
            cmd.args(["--config", "c.toml"]);
        } else {
            cmd.arg("--dry-run");
        }
        if let Some(f) = flag {
            cmd.args(["--report", f]);
        }
        if let Some(e) = env {
            cmd.env("VELT_REPORT", e);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Some("from-flag.csv"), Some("from-env.csv"), true);
    assert!(dir.path().join("from-flag.csv").exists());
    run(None, Some("from-env.csv"), true);
    assert!(dir.path().join("from-env.csv").exists());
    run(None, None, true);
    assert!(
        dir.path().join("from-file.csv").exists(),
        "relative to the file"
    );
    run(None, None, false);
    assert!(
        dir.path().join("velt-group-sync-report.csv").exists(),
        "the default"
    );
    // VELT_CONFIG names the file as --config does.
    std::fs::write(
        dir.path().join("d.toml"),
        "report = \"by-variable.csv\"\ndry-run = true\n",
    )
    .unwrap();
    let out = bin(dir.path())
        .args(["sync", "in.csv"])
        .env("VELT_CONFIG", "d.toml")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("by-variable.csv").exists());
}

#[test]
fn unknown_keys_secrets_and_bad_toml_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "organizationId,organizationUserGroupId,userId\n",
    )
    .unwrap();
    for (text, says) in [
        (
            "org = \"acme\"\nuser-colum = \"Email\"\n",
            "c.toml:2: unknown key `user-colum`; did you mean `user-column`?",
        ),
        (
            "api-key = \"sk_live_SECRET\"\n",
            "c.toml:1: `api-key` would put a secret in the configuration file; use api-key-file",
        ),
        (
            "notify = \"https://hooks.slack.com/services/T/B/SECRET\"\n",
            "use notify-file",
        ),
        (
            "metrics-push = \"https://u:SECRET@push.example\"\n",
            "the metrics-push URL holds a password",
        ),
        ("rate = \n", "c.toml:1: not a TOML configuration file"),
        (
            "group-column = { a = 1 }\n",
            "`group-column` takes a value, not a table",
        ),
    ] {
        std::fs::write(dir.path().join("c.toml"), text).unwrap();
        let out = bin(dir.path())
            .args(["validate", "in.csv", "--config", "c.toml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
        assert!(!stderr.contains("SECRET"), "a secret was printed: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    // A value its flag refuses: clap's message, and where the options came from.
    std::fs::write(dir.path().join("c.toml"), "chunk-size = 0\n").unwrap();
    let out = bin(dir.path())
        .args(["validate", "in.csv", "--config", "c.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--chunk-size") && stderr.contains("c.toml"),
        "{stderr}"
    );
}

/// Only the commands a configuration configures read it: `init` writes the file that
/// VELT_CONFIG may already name, and `completions` takes none.
#[test]
fn init_and_other_commands_do_not_read_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        samples().join("hr/bamboohr-employees.csv"),
        dir.path().join("export.csv"),
    )
    .unwrap();
    let out = bin(dir.path())
        .args(["init", "export.csv", "--org", "acme"])
        .env("VELT_CONFIG", "velt-group-sync.toml")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("velt-group-sync.toml").exists());
    std::fs::write(dir.path().join("bad.toml"), "no-such-key = 1\n").unwrap();
    let out = bin(dir.path())
        .args(["--config", "bad.toml", "completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // validate does read it.
    let out = bin(dir.path())
        .args(["--config", "bad.toml", "validate", "export.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
