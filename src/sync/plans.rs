//! The plan files of a run: `plan`'s (checked writable before anything is read, written
//! after the reads), a `sync`'s held-back removals, and `apply`'s file turned into what to
//! send. Their header names the options that shape sending as the flags take them, and
//! `apply` reads them back through the same flags' parsers: both directions live here.

use std::path::{Path, PathBuf};

use crate::cli::{ApplyArgs, Cli, Command, PlanArgs, RateArg, SyncArgs};
use crate::engine::Execution;
use crate::engine::Mode;
use crate::error::Error;
use crate::files::Destination;
use crate::ledger::Ledger;
use crate::plan::Plan;
use crate::saved::{self, EntryKind, Given, Header, PlanFile, PlanKind};

/// `plan --out`: checked before anything is read, so that a bad path costs nothing.
pub(super) fn prepare(out: &Path) -> Result<(&Path, Destination), Error> {
    Destination::prepare(out, ".velt-plan", 0o600)
        .map(|d| (out, d))
        .map_err(|e| {
            Error::Config(crate::files::unwritable(out, &e, "the plan file", "--out").to_string())
        })
}

/// `apply`'s report, which never replaces one that is there (the night's whose removals it
/// approves, when both take the configuration's `report`): `NAME.applied.EXT` beside it.
pub(super) fn beside_a_report(report: PathBuf) -> PathBuf {
    if !report.is_file() {
        return report;
    }
    let stem = report
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match report.extension() {
        Some(ext) => format!("{stem}.applied.{}", ext.to_string_lossy()),
        None => format!("{stem}.applied"),
    };
    report.with_file_name(name)
}

/// Writes `plan`'s file; returns its counts and what to tell the operator.
pub(super) fn write(
    args: &SyncArgs,
    (out, dest): (&Path, Destination),
    base_url: &str,
    (plan, ledger): (&Plan, &Ledger),
    execution: &Execution,
) -> Result<(saved::Counts, String), Error> {
    let header = header(args, PlanKind::Plan, base_url);
    let file = PlanFile::of_run(plan, ledger, &execution.reads, header);
    saved::write_to(dest, &file).map_err(|e| {
        Error::Config(format!(
            "{}: cannot write the plan file ({e})",
            out.display()
        ))
    })?;
    let said = format!(
        "wrote the plan to {}: {} change(s); review it, then `velt-group-sync apply {}`",
        out.display(),
        file.counts.changes(),
        out.display()
    );
    Ok((file.counts, said))
}

/// What `apply` sends: the plan file's changes, and what it expects of the server.
pub(super) fn to_apply(file: &PlanFile, path: &Path) -> Result<(Plan, Given), Error> {
    let (plan, given) = file
        .to_apply()
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let c = &file.counts;
    tracing::info!(
        event = "apply",
        plan = %path.display(),
        made_at = %file.made_at,
        add = c.add,
        remove = c.remove,
        create = c.create,
        update = c.update,
        delete = c.delete,
        message = "re-reading what the plan touches before its first write"
    );
    Ok((plan, given))
}

/// A plan file's header: what it is, the input it was made from, and the options that shape
/// sending, by their long flags, as the flags take them (what `apply` sends with).
fn header(args: &SyncArgs, kind: PlanKind, base_url: &str) -> Header {
    use clap::ValueEnum;
    use serde_json::json;
    let name = |v: Option<clap::builder::PossibleValue>| v.map(|v| v.get_name().to_string());
    let duration = |d| json!(crate::text::format_duration(d));
    let send = &args.send;
    let mut options = std::collections::BTreeMap::new();
    let mut set = |key: &str, value| {
        options.insert(key.to_string(), value);
    };
    set("base-url", json!(base_url));
    set(
        "api-version",
        json!(name(args.server.api_version.to_possible_value())),
    );
    set("mode", json!(name(args.modes.mode.to_possible_value())));
    set("chunk-size", json!(send.chunk_size));
    set(
        "rate",
        json!(match send.rate {
            RateArg::Fixed(r) => r.to_string(),
            RateArg::Auto => "auto".to_string(),
        }),
    );
    set("max-rate", json!(send.max_rate));
    set("burst", json!(send.burst));
    set("concurrency", json!(send.concurrency));
    set("max-concurrency", json!(send.max_concurrency));
    set("max-retries", json!(send.max_retries));
    set("max-backoff", duration(send.max_backoff));
    set("max-retry-after", duration(send.max_retry_after));
    set("max-throttle-wait", duration(send.max_throttle_wait));
    set("grace", duration(send.grace));
    set("page-size", json!(args.modes.page_size));
    set(
        "create-missing-groups",
        json!(args.modes.create_missing_groups),
    );
    if let Some(role) = args.modes.access_role {
        set("access-role", json!(role.as_str()));
    }
    let input = (kind == PlanKind::Plan).then(|| {
        let path = &args.input.input;
        let stdin = path.as_os_str() == "-";
        saved::InputPrint {
            path: if stdin {
                "<stdin>".into()
            } else {
                path.display().to_string()
            },
            sha256: (!stdin).then(|| saved::sha256_file(path).ok()).flatten(),
        }
    });
    Header {
        kind,
        input,
        options,
    }
}

/// Where a run's held-back removals go: `--held-plan`, or beside the report it writes.
fn held_plan_path(args: &SyncArgs, report: &Path) -> PathBuf {
    if let Some(path) = &args.held_plan {
        return path.clone();
    }
    if report.as_os_str() == "-" {
        return PathBuf::from("velt-group-sync-held-plan.json");
    }
    report.with_extension("held-plan.json")
}

/// After a run that sent: the removals a guard held back, written as a plan file to approve.
/// Returns what to tell the operator. A run cut short writes none: its re-run decides again.
pub(super) fn hold_back(
    args: &SyncArgs,
    (plan, ledger): (&Plan, &Ledger),
    execution: &Execution,
    base_url: &str,
    report: &Path,
) -> Option<String> {
    if execution.interrupted.is_some()
        || execution.throttle_exhausted
        || execution.auth_failure.is_some()
    {
        return None;
    }
    let header = header(args, PlanKind::HeldBackRemovals, base_url);
    let file = PlanFile::of_run(plan, ledger, &execution.reads, header);
    if file.changes.is_empty() {
        return None;
    }
    let path = held_plan_path(args, report);
    let held = file.counts.remove + file.counts.delete;
    Some(match saved::write(&path, &file) {
        Ok(()) => format!(
            "{held} removal(s) were held back by a safety limit (--max-removals / \
             --max-user-removals): review {}, then `velt-group-sync apply {}` to make them",
            path.display(),
            path.display()
        ),
        Err(e) => format!(
            "error: {held} removal(s) were held back, and the plan of them could not be written \
             ({}); re-run with a higher limit to make them",
            crate::files::unwritable(&path, &e, "the held-back plan", "--held-plan")
        ),
    })
}

/// `plan`'s options as a dry `sync`'s. Add mode reads the groups as delta does: a plan is
/// made from what the server holds, and holds only what would change.
pub fn plan_as_sync(args: &PlanArgs) -> SyncArgs {
    let mut modes = args.modes.clone();
    if modes.mode == Mode::Add {
        modes.mode = Mode::Delta;
    }
    SyncArgs {
        input: args.input.clone(),
        modes,
        server: args.server.clone(),
        access: args.access.clone(),
        send: args.send.clone(),
        ops: args.ops.clone(),
        dry_run: true,
        strict: args.strict,
        held_plan: None,
    }
}

/// The plan file options `apply` sends with (`mode` is only for the reader).
const APPLIED: [&str; 16] = [
    "base-url",
    "api-version",
    "chunk-size",
    "rate",
    "max-rate",
    "burst",
    "concurrency",
    "max-concurrency",
    "max-retries",
    "max-backoff",
    "max-retry-after",
    "max-throttle-wait",
    "grace",
    "page-size",
    "create-missing-groups",
    "access-role",
];

/// `apply`'s run as a `sync`'s: the plan file's options, read by the same flags' parsers,
/// with this command line's access and outputs. Returns the plan file too.
pub fn apply_as_sync(args: &ApplyArgs) -> Result<(SyncArgs, PlanFile), Error> {
    let file = saved::read(&args.plan).map_err(Error::Config)?;
    let shown = args.plan.display();
    let provisions = file.changes.iter().any(|e| {
        matches!(
            e.kind,
            EntryKind::Create | EntryKind::Update | EntryKind::Delete
        )
    });
    let mut argv: Vec<String> = ["velt-group-sync", "sync", "--mode", "delta"]
        .map(String::from)
        .to_vec();
    if provisions {
        argv.push("--provision-users".into());
    }
    for (key, value) in &file.options {
        if key == "mode" || (key == "access-role" && !provisions) {
            continue;
        }
        if !APPLIED.contains(&key.as_str()) {
            return Err(Error::Config(format!(
                "{shown}: the plan's option `{key}` is not one apply takes; make the plan again with this version"
            )));
        }
        match value {
            serde_json::Value::Bool(true) => argv.push(format!("--{key}")),
            serde_json::Value::Bool(false) | serde_json::Value::Null => {}
            serde_json::Value::String(s) => argv.push(format!("--{key}={s}")),
            other => argv.push(format!("--{key}={other}")),
        }
    }
    argv.push("--".into());
    argv.push(args.plan.display().to_string());
    // The plan's options alone: sync's variables in this environment (a nightly host's
    // VELT_MODE, VELT_DEPROVISION_USERS, ...) decide nothing here.
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().mut_subcommand("sync", |sync| sync.mut_args(|a| a.env(None)));
    let invalid = |e: clap::Error| {
        let first = e.to_string();
        let first = first
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        Error::Config(format!(
            "{shown}: the plan's options are not valid: {first}"
        ))
    };
    let matches = command.try_get_matches_from(&argv).map_err(invalid)?;
    let parsed = Cli::from_arg_matches(&matches).map_err(invalid)?;
    let Command::Sync(mut sync) = parsed.command else {
        return Err(Error::Runtime(
            "the plan's options did not read as a sync".into(),
        ));
    };
    sync.access = args.access.clone();
    sync.ops = args.ops.clone();
    Ok((*sync, file))
}
