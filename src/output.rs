//! What the run shows an operator on stderr: log lines (text or JSON), the one-line summary,
//! the plan of a dry run, the progress bar. Nothing here may stop the run: a closed stderr
//! or stdout is ignored.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::Plan;
use crate::report::Summary;

/// Writes to stderr, ignoring failure: a closed stderr (`2>&- `, a pipe whose reader left)
/// must never stop the run or lose its report.
pub fn to_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `--log-format`: text lines, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How much the run shows on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub quiet: bool,
    pub json_logs: bool,
    /// `-v`: the change list names every user, not `changes::SHOWN` a list.
    pub all_changes: bool,
}

impl Output {
    /// A line for the operator: a JSON log line with `event` under `--log-format json` (so
    /// stderr stays machine-readable), else plain text.
    pub fn say(&self, event: &str, text: &str) {
        if self.json_logs {
            tracing::error!(event = event, message = text);
        } else {
            to_stderr(&format!("velt-group-sync: {text}\n"));
        }
    }

    pub fn new(quiet: bool, format: LogFormat) -> Output {
        Output {
            quiet,
            json_logs: format == LogFormat::Json,
            all_changes: false,
        }
    }
}

/// Installs the process's log subscriber: `format`, quieter with `quiet`, louder with each
/// `verbose` (`-v`: debug, `-vv`: trace and the HTTP stack's own events).
pub fn init_logging(format: LogFormat, quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our own events at the chosen level; the HTTP stack's only when asked for with -vv.
    let filter = if verbose >= 2 {
        level.to_string()
    } else {
        // The run's summary event is said whatever the level (see `say_summary`).
        format!("warn,velt_group_sync={level},{SUMMARY_TARGET}=info")
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr must never stop the run: dropped log lines are not reported on the
        // same closed stderr (which would panic).
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}

pub fn summary_line(s: &Summary, path: &str) -> String {
    let mut line = format!("velt-group-sync: {} memberships: ", s.memberships);
    if s.dry_run {
        line = format!("velt-group-sync: dry run: {} memberships: ", s.memberships);
    }
    if s.planned > 0 {
        let adds = s.planned - s.planned_removals;
        line.push_str(&format!("{adds} would be added, "));
        if s.planned_removals > 0 {
            line.push_str(&format!("{} would be removed, ", s.planned_removals));
        }
    }
    if !s.dry_run || s.added > 0 {
        line.push_str(&format!("{} added, ", s.added));
    }
    if s.unchanged > 0 {
        line.push_str(&format!("{} unchanged, ", s.unchanged));
    }
    if s.removed > 0 {
        line.push_str(&format!("{} removed, ", s.removed));
    }
    if s.protected > 0 {
        line.push_str(&format!("{} protected, ", s.protected));
    }
    line.push_str(&format!(
        "{} failed, {} unconfirmed, {} invalid",
        s.failed, s.unconfirmed, s.invalid
    ));
    if s.not_attempted > 0 {
        line.push_str(&format!(", {} not attempted", s.not_attempted));
    }
    if s.filtered > 0 {
        line.push_str(&format!("; {} records filtered", s.filtered));
    }
    if s.unmapped_skipped > 0 {
        line.push_str(&format!("; {} unmapped skipped", s.unmapped_skipped));
    }
    if let Some(u) = &s.users {
        let (created, updated, removed) = if s.dry_run {
            ("would be created", "would be updated", "would be removed")
        } else {
            ("created", "updated", "removed")
        };
        line.push_str(&format!(
            "; users: {} {created}, {} {updated}, {} unchanged, {} {removed}, {} failed",
            u.created, u.updated, u.unchanged, u.removed, u.failed
        ));
        if u.protected > 0 {
            line.push_str(&format!(", {} protected", u.protected));
        }
    }
    let path = if path == "-" { "<stdout>" } else { path };
    line.push_str(&format!(
        "; {} requests in {:.2} s",
        s.requests,
        s.elapsed_ms as f64 / 1000.0
    ));
    if s.throttled_ms > 0 {
        line.push_str(&format!(
            " ({:.1} s of it waiting on throttling)",
            s.throttled_ms as f64 / 1000.0
        ));
    }
    line.push_str(&format!("; report: {path}"));
    line
}

/// The plan's counts on one line, as `--dry-run` and `validate` print them.
pub fn plan_counts(plan: &Plan, chunk_size: usize) -> String {
    let mut counts = format!(
        "{} groups, {} memberships, {} requests (chunk size {chunk_size}), {} invalid records, {} duplicates merged",
        plan.groups.len(),
        plan.memberships.len(),
        plan.request_count(chunk_size),
        plan.invalid.len(),
        plan.duplicates,
    );
    if plan.filtered > 0 {
        counts.push_str(&format!(", {} records filtered", plan.filtered));
    }
    if plan.unmapped_skipped > 0 {
        counts.push_str(&format!(", {} unmapped skipped", plan.unmapped_skipped));
    }
    counts
}

pub fn print_plan(plan: &Plan, chunk_size: usize, report_on_stdout: bool) {
    let text = format!("plan: {}\n", plan_counts(plan, chunk_size));
    print_dry_run(&(text + &plan_groups(plan, chunk_size)), report_on_stdout);
}

/// What a dry run prints goes to standard output, unless the report does.
pub fn print_dry_run(text: &str, report_on_stdout: bool) {
    if report_on_stdout {
        to_stderr(text);
    } else {
        use std::io::Write;
        // A closed standard output (`| head`) must not stop the run.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

/// The plan's groups, with their members and requests, the first 20.
fn plan_groups(plan: &Plan, chunk_size: usize) -> String {
    let mut text = String::new();
    const SHOWN: usize = 20;
    for g in plan.groups.iter().take(SHOWN) {
        text.push_str(&format!(
            "  {} / {}: {} members, requests: {}\n",
            g.org,
            g.id,
            g.members.len(),
            g.members.len().div_ceil(chunk_size)
        ));
    }
    if plan.groups.len() > SHOWN {
        text.push_str(&format!(
            "  ... and {} more groups (the report lists every membership)\n",
            plan.groups.len() - SHOWN
        ));
    }
    text
}

pub fn progress_bar(output: &Output, total: u64) -> ProgressBar {
    if output.quiet || output.json_logs || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} memberships, {per_sec}, eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// The one summary event that ends every `sync` run, with its exit code: info on exit 0, warn
/// on 1, error on 2 and above, under `-q` too (its own target passes the quiet filter). In
/// text mode the summary line, which `-q` keeps back only when the run succeeded.
pub fn say_summary(output: &Output, ended: Option<&crate::report::Ended>, code: u8) {
    let zero = crate::report::Summary::new(
        crate::outcome::Counts::default(),
        0,
        0,
        std::time::Duration::ZERO,
    );
    let (s, report) = match ended {
        Some(e) => (&e.summary, e.report.as_str()),
        None => (&zero, ""),
    };
    if !output.json_logs {
        if ended.is_some() && (!output.quiet || code != 0) {
            to_stderr(&format!("{}\n", summary_line(s, report)));
        }
        return;
    }
    let users = s.users;
    macro_rules! summary_event {
        ($level:expr) => {
            tracing::event!(
                target: SUMMARY_TARGET,
                $level,
                event = "summary",
                exit_code = code,
                memberships = s.memberships,
                added = s.added,
                failed = s.failed,
                unconfirmed = s.unconfirmed,
                invalid = s.invalid,
                not_attempted = s.not_attempted,
                planned = s.planned,
                unchanged = s.unchanged,
                removed = s.removed,
                protected = s.protected,
                requests = s.requests,
                elapsed_ms = s.elapsed_ms,
                throttled_ms = s.throttled_ms,
                filtered = s.filtered,
                unmapped_skipped = s.unmapped_skipped,
                users_created = users.map(|u| u.created),
                users_updated = users.map(|u| u.updated),
                users_unchanged = users.map(|u| u.unchanged),
                users_removed = users.map(|u| u.removed),
                users_protected = users.map(|u| u.protected),
                users_failed = users.map(|u| u.failed),
                report = report,
            )
        };
    }
    match code {
        0 => summary_event!(tracing::Level::INFO),
        1 => summary_event!(tracing::Level::WARN),
        _ => summary_event!(tracing::Level::ERROR),
    }
}

/// The summary event's target, which the quiet log filter lets through.
const SUMMARY_TARGET: &str = "velt_group_sync::summary";
