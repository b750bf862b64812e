//! The plan files of a run: `plan`'s (checked writable before anything is read, written
//! after the reads), a `sync`'s held-back removals, and `apply`'s file turned into what to
//! send. Their header names the options that shape sending as the flags take them.

use std::path::{Path, PathBuf};

use crate::cli::{RateArg, SyncArgs};
use crate::engine::Execution;
use crate::error::Error;
use crate::files::Destination;
use crate::ledger::Ledger;
use crate::plan::Plan;
use crate::saved::{self, Given, Header, PlanFile, PlanKind};

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

/// Where a run's held-back removals go: `--held-plan`, or beside the report.
fn held_plan_path(args: &SyncArgs) -> PathBuf {
    if let Some(path) = &args.held_plan {
        return path.clone();
    }
    let report = crate::history::dated(&args.ops.report, std::time::SystemTime::now());
    if report.as_os_str() == "-" {
        return PathBuf::from("velt-group-sync-held-plan.json");
    }
    report.with_extension("held-plan.json")
}

/// After a run that sent: the removals a guard held back, written as a plan file to approve.
/// Returns what to tell the operator. A run cut short writes none: its re-run decides again.
pub(super) fn hold_back(
    args: &SyncArgs,
    plan: &Plan,
    ledger: &Ledger,
    execution: &Execution,
    base_url: &str,
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
    let path = held_plan_path(args);
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
