//! `--config FILE` (or `VELT_CONFIG`): the options of `sync`, `plan`, `validate` and `apply`
//! kept in a TOML file, each key named as its long flag (`user-column = "Work Email"`,
//! `group-column = ["Department", "Location"]`, `include = ["Status=Active"]`).
//!
//! The layering is clap's own: each key of the file becomes its flag's default value, so a
//! flag given beats its environment variable, which beats the file, which beats the built-in
//! default, and every value goes through the flag's own parser. Paths in the file are taken
//! relative to the file. Secrets never go in the file: only the `*-file` options that name
//! where they are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// The commands a configuration file configures.
const CONFIGURED: [&str; 4] = ["sync", "plan", "validate", "apply"];

/// Keys that would hold a secret, and where the secret goes instead.
const SECRETS: [(&str, &str); 6] = [
    (
        "api-key",
        "api-key-file = \"PATH\" (or the VELT_API_KEY variable)",
    ),
    (
        "auth-token",
        "auth-token-file = \"PATH\" (or the VELT_AUTH_TOKEN variable)",
    ),
    (
        "velt-api-key",
        "api-key-file = \"PATH\" (or the VELT_API_KEY variable)",
    ),
    (
        "velt-auth-token",
        "auth-token-file = \"PATH\" (or the VELT_AUTH_TOKEN variable)",
    ),
    (
        "token",
        "auth-token-file = \"PATH\" (or the VELT_AUTH_TOKEN variable)",
    ),
    (
        "notify",
        "notify-file = \"PATH\", a file holding the URLs (a webhook URL is a credential)",
    ),
];

/// Why the command line (with its configuration file) cannot be read.
#[derive(Debug)]
pub enum ArgsError {
    /// clap's own: usage, `--help`, `--version`. `config`: the file whose values were used.
    Clap(clap::Error, Option<PathBuf>),
    /// The configuration file: one line saying what to do.
    Config(String),
}

/// The command line, with the options of `--config FILE` (or `VELT_CONFIG`) beneath it.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, ArgsError> {
    // Only the commands it configures read it: `init` writes one, `emulator` takes none.
    let configured = subcommand(&argv).is_some_and(|s| CONFIGURED.contains(&s.as_str()));
    let path = config_path(&argv)
        .or_else(|| {
            std::env::var_os("VELT_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .filter(|_| configured);
    let mut command = Cli::command();
    if let Some(path) = &path {
        command = layered(command, path).map_err(ArgsError::Config)?;
    }
    let matches = command
        .try_get_matches_from(argv)
        .map_err(|e| ArgsError::Clap(e, path.clone()))?;
    Cli::from_arg_matches(&matches).map_err(|e| ArgsError::Clap(e, path))
}

/// The command's name: the first word that is neither an option nor a global option's value.
fn subcommand(argv: &[OsString]) -> Option<String> {
    let mut args = argv.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = args.next() {
        if a == "--config" || a == "--log-format" {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a.into_owned());
        }
    }
    None
}

/// `--config FILE` or `--config=FILE` on the command line (before any `--`).
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1).take_while(|a| *a != "--");
    while let Some(a) = args.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The command with every key of the file as its flag's default.
fn layered(mut command: clap::Command, path: &Path) -> Result<clap::Command, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("{shown}: cannot read the configuration file ({e}); check --config or VELT_CONFIG")
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map_or(1, |s| text[..s.start.min(text.len())].lines().count().max(1));
        let message = e.message().to_string();
        format!("{shown}:{line}: not a TOML configuration file ({message}); keys are long flags, as in `user-column = \"Work Email\"`")
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let known = known_keys(&command);
    for (key, value) in &table {
        let line = line_of(&text, key);
        if let Some((_, instead)) = SECRETS.iter().find(|(k, _)| k == key) {
            return Err(format!(
                "{shown}:{line}: `{key}` would put a secret in the configuration file; use {instead}"
            ));
        }
        if !known.iter().any(|k| k == key) {
            let hint =
                nearest(key, &known).map_or(String::new(), |k| format!("; did you mean `{k}`?"));
            return Err(format!(
                "{shown}:{line}: unknown key `{key}`{hint} (keys are the long flags of `velt-group-sync sync --help`)"
            ));
        }
        let values = values(value).map_err(|why| format!("{shown}:{line}: `{key}` {why}"))?;
        if key == "metrics-push" && values.iter().any(|v| has_password(v)) {
            return Err(format!(
                "{shown}:{line}: the metrics-push URL holds a password; give it with the VELT_METRICS_PUSH variable instead"
            ));
        }
        command = set_default(command, key, &values, base);
    }
    Ok(command)
}

/// Every key a file may hold: the long flags of the configured commands and the global ones,
/// and `input`.
fn known_keys(command: &clap::Command) -> Vec<String> {
    let mut keys: Vec<String> = vec!["input".into()];
    let globals = command.get_arguments();
    let subs = command
        .get_subcommands()
        .filter(|s| CONFIGURED.contains(&s.get_name()))
        .flat_map(|s| s.get_arguments());
    for arg in globals.chain(subs) {
        if let Some(long) = arg.get_long()
            && !matches!(long, "config" | "help" | "version" | "verbose")
            && !arg.is_hide_set()
            && !keys.iter().any(|k| k == long)
        {
            keys.push(long.to_string());
        }
    }
    keys
}

/// The file's value as the flag's texts.
fn values(value: &toml::Value) -> Result<Vec<String>, String> {
    let one = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            _ => Err("takes a string, a number or true/false here".to_string()),
        }
    };
    match value {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        toml::Value::Table(_) => Err("takes a value, not a table".into()),
        other => one(other).map(|v| vec![v]),
    }
}

/// Sets `key`'s default in every command that has it; path values relative to `base`.
fn set_default(
    mut command: clap::Command,
    key: &str,
    values: &[String],
    base: &Path,
) -> clap::Command {
    let is_path = |arg: &clap::Arg| {
        key == "input"
            || arg.get_value_names().is_some_and(|names| {
                names.iter().any(|n| {
                    let n = n.as_str();
                    n.contains("PATH")
                        || n.contains("FILE")
                        || n.contains("DIR")
                        || n.ends_with(".json")
                })
            })
    };
    let owns = |arg: &clap::Arg| {
        arg.get_long() == Some(key) || (key == "input" && arg.get_id() == "input")
    };
    // A path in the file is the file's: relative to its folder (`-` and absolute ones kept).
    let resolve = |p: &str| -> String {
        if p == "-" || p.is_empty() || Path::new(p).is_absolute() {
            return p.to_string();
        }
        base.join(p).display().to_string()
    };
    let set = |arg: clap::Arg, values: &[String]| -> clap::Arg {
        let path = is_path(&arg);
        let lists = matches!(key, "protect-users" | "protect-groups");
        let texts: Vec<String> = values
            .iter()
            .map(|v| match v.strip_prefix('@') {
                Some(file) if lists => format!("@{}", resolve(file)),
                _ if path => resolve(v),
                _ => v.clone(),
            })
            .collect();
        arg.default_values(texts)
    };
    // A flag that only switches on (`dry-run = false`) has nothing to set.
    if values.iter().all(|v| v == "false")
        && command
            .get_subcommands()
            .flat_map(|s| s.get_arguments())
            .chain(command.get_arguments())
            .any(|a| owns(a) && matches!(a.get_action(), clap::ArgAction::SetTrue))
    {
        return command;
    }
    let values = values.to_vec();
    let global = command
        .get_arguments()
        .find(|a| owns(a))
        .map(|a| a.get_id().clone());
    if let Some(id) = global {
        command = command.mut_arg(id, |a| set(a, &values));
    }
    for name in CONFIGURED {
        command = command.mut_subcommand(name, |sub| {
            let id = sub
                .get_arguments()
                .find(|a| owns(a))
                .map(|a| a.get_id().clone());
            match id {
                Some(id) => sub.mut_arg(id, |a| set(a, &values)),
                None => sub,
            }
        });
    }
    command
}

/// The line of `key = ...` in the file, for messages.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The known key nearest to `key` by edit distance, if one is near enough to be a typo.
fn nearest<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != *cb);
                let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    };
    known
        .iter()
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_key_is_a_typo_away() {
        let known = ["user-column".to_string(), "group-column".to_string()];
        assert_eq!(nearest("user-colum", &known), Some("user-column"));
        assert_eq!(nearest("usercolumn", &known), Some("user-column"));
        assert_eq!(nearest("colour", &known), None);
    }

    #[test]
    fn a_password_in_a_url_is_seen() {
        assert!(has_password("https://user:secret@push.example/"));
        assert!(!has_password("https://push.example/metrics"));
        assert!(!has_password("https://user@push.example/"));
    }

    #[test]
    fn the_config_flag_is_found_before_a_double_dash_only() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&argv(&["x", "sync", "--config", "a.toml", "in.csv"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&argv(&["x", "sync", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            config_path(&argv(&["x", "sync", "--", "--config", "c"])),
            None
        );
        assert_eq!(
            subcommand(&argv(&["x", "-q", "--config", "a.toml", "plan", "in.csv"])).as_deref(),
            Some("plan")
        );
    }
}
