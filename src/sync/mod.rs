//! The `sync` command as a library call: read the input into a plan, send it, write the
//! report, and say how it went. The caller (`run`, or a test) hands in the client, the
//! interruption signal and where messages go; nothing here reads the environment or
//! installs process-wide handlers.

use std::path::Path;
use std::time::Instant;

use crate::changes;
use crate::cli::{InputArgs, RateArg, SyncArgs};
use crate::client::{API_KEY_ENV, AUTH_TOKEN_ENV, VeltClient};
use crate::engine::{ExecOptions, Mode, execute};
use crate::error::{Error, RunOutcome, exit};
use crate::input::mapping::UserIdCase;
use crate::input::{self, Columns, Filter, GroupMap, InputOptions, Mapping};
use crate::interrupt::Interrupt;
use crate::journal::{self, Journal};
use crate::ledger::{Ledger, Subject};
use crate::metrics::{self, RunStats};
use crate::outcome::Status;
use crate::output::{Output, print_dry_run, print_plan, progress_bar};
use crate::plan::{Defaults, Plan, Planner};
use crate::report::{self, Ended, Refusal, ReportTarget, Summary};
use crate::saved::{self, Given, PlanFile};

pub mod plans;

/// What a run needs from outside its command line.
#[derive(Debug, Clone)]
pub struct Session {
    /// The client to send with (its transport and credentials); `None` for a run that sends
    /// nothing (a dry run in add mode).
    pub client: Option<VeltClient>,
    /// Stops the run: the first cancellation gracefully, the second at once.
    pub interrupt: Interrupt,
    pub output: Output,
}

/// How a `sync` went: the metrics' figures, and the exit code or the error that stopped it.
#[derive(Debug)]
pub struct SyncResult {
    pub stats: RunStats,
    pub result: Result<u8, Error>,
    /// The report's summary and path, once the report was written.
    pub ended: Option<Ended>,
    /// `plan`: the counts of the plan file written.
    pub planned: Option<saved::Counts>,
}

/// What a run does besides reading an input and sending what it says.
#[derive(Debug, Clone, Copy)]
pub enum Job<'a> {
    /// `sync`: a guard's held-back removals go to a plan file to approve.
    Sync,
    /// `plan`: a dry run that writes a plan file here.
    Plan { out: &'a Path },
    /// `apply`: sends this plan file's changes instead of reading an input.
    Apply(&'a PlanFile),
}

/// Changes listed in a notification at most.
const CHANGES_LISTED: usize = 20;

/// The first changes of a run, a line each, for a notification: rows added, removed or (dry
/// run) to be, users created, updated or deleted.
fn first_changes(plan: &Plan, ledger: &Ledger, dry_run: bool) -> Vec<String> {
    changes::changes(plan, ledger, dry_run)
        .filter_map(|c| changes::line(&c, dry_run))
        .take(CHANGES_LISTED)
        .collect()
}

/// The `sync` command: read, plan, send, report. Everything from outside the command line
/// comes in `session`; the result says how far the run got.
pub async fn sync(args: &SyncArgs, session: &Session) -> SyncResult {
    run(args, session, Job::Sync).await
}

/// `sync`, `plan` or `apply`: read (or take a plan file's changes), send, report.
pub async fn run(args: &SyncArgs, session: &Session, job: Job<'_>) -> SyncResult {
    let mut stats = RunStats {
        dry_run: args.dry_run,
        ..RunStats::default()
    };
    let mut ended = None;
    let mut planned = None;
    let result = sync_inner(args, session, job, &mut stats, &mut ended, &mut planned).await;
    if let (Some(keep), Some(_)) = (args.ops.keep_reports, &ended) {
        keep_newest_reports(args, keep as usize, &session.output);
    }
    SyncResult {
        stats,
        result,
        ended,
        planned,
    }
}

async fn sync_inner(
    args: &SyncArgs,
    session: &Session,
    job: Job<'_>,
    stats: &mut RunStats,
    ended: &mut Option<Ended>,
    planned: &mut Option<saved::Counts>,
) -> Result<u8, Error> {
    let started = Instant::now();
    let report = prepare_outputs(args, job)?;
    let plan_out = match job {
        Job::Plan { out } => Some(plans::prepare(out)?),
        _ => None,
    };
    let (plan, given) = match job {
        Job::Apply(file) => {
            let (plan, given) = plans::to_apply(file, &args.input.input)?;
            (plan, Some(given))
        }
        _ => match read_input(args, session).await? {
            Some(plan) => (plan, None),
            None => return Ok(session.interrupt.code().unwrap_or(exit::SIGINT)),
        },
    };
    log_plan(&plan, args.send.chunk_size as usize);
    let end = End {
        report,
        started,
        stats,
        ended,
        refusals: Vec::new(),
        changes: Vec::new(),
    };
    let removing = args.modes.mode == Mode::Remove;
    if args.strict && !plan.invalid.is_empty() {
        finish(&plan, &strict_rows(&plan, removing), 0, end)?;
        return Err(Error::Strict(plan.invalid.len()));
    }
    // A dry run in delta or mirror mode still reads the groups.
    if args.dry_run && args.modes.mode == Mode::Add {
        let on_stdout = end.report.is_stdout();
        print_plan(&plan, args.send.chunk_size as usize, on_stdout);
        let planned = Ledger::new(&plan, removing, Status::Planned);
        let all = session.output.all_changes;
        print_dry_run(&changes::render(&plan, &planned, true, all), on_stdout);
        return finish(&plan, &planned, 0, end);
    }
    let (execution, ledger) = send(args, session, &plan, given.as_ref()).await?;
    if let (Some(out), Some(client)) = (plan_out, &session.client) {
        let written = plans::write(args, out, client.base_url(), (&plan, &ledger), &execution)?;
        session.output.say("plan_written", &written.1);
        *planned = Some(written.0);
    }
    let held = match (job, &session.client) {
        (Job::Sync, Some(client)) if !args.dry_run => {
            let report = end.report.path();
            plans::hold_back(
                args,
                (&plan, &ledger),
                &execution,
                client.base_url(),
                report,
            )
        }
        _ => None,
    };
    let code = report_run(args, &plan, &ledger, execution, end, &session.output)?;
    if let Some(held) = held {
        session.output.say("removals_held_back", &held);
    }
    Ok(code)
}

/// Where a run's report goes, and what it says at the end: filled in by `finish`.
struct End<'a> {
    report: ReportTarget,
    started: Instant,
    stats: &'a mut RunStats,
    ended: &'a mut Option<Ended>,
    /// What the server refused and what changed, for the end of a run that sent.
    refusals: Vec<Refusal>,
    changes: Vec<String>,
}

/// Checks everything a run writes before it reads or sends anything, and prepares the
/// report (dated, when `--report` says so).
fn prepare_outputs(args: &SyncArgs, job: Job<'_>) -> Result<ReportTarget, Error> {
    if args.ops.keep_reports.is_some() && !args.ops.report.to_string_lossy().contains("{date}") {
        return Err(Error::Config(
            "--keep-reports needs a dated --report: put {date} in its file name (report-{date}.csv)"
                .into(),
        ));
    }
    let mut report_path = crate::history::dated(&args.ops.report, std::time::SystemTime::now());
    if matches!(job, Job::Apply(_)) {
        report_path = plans::beside_a_report(report_path);
    }
    refuse_report_over_input(&report_path, &args.input.input)?;
    check_provisioning(args)?;
    let report = ReportTarget::prepare(&report_path, args.ops.report_format)?;
    if let Some(path) = &args.ops.metrics_file {
        metrics::check_writable(path)?;
    }
    Ok(report)
}

/// The plan, read on a thread of its own so that an interrupt stops the wait for it at once;
/// `None` if one did.
async fn read_input(args: &SyncArgs, session: &Session) -> Result<Option<Plan>, Error> {
    let input = args.input.clone();
    let reading = tokio::task::spawn_blocking(move || read_plan(&input));
    tokio::select! {
        read = reading => {
            let plan = read.map_err(|e| Error::Runtime(format!("the input reader failed: {e}")))??;
            Ok(Some(plan))
        }
        _ = session.interrupt.stop.cancelled() => {
            session.output.say(
                "interrupted",
                "interrupted before anything was sent (while reading the input); no report was written",
            );
            Ok(None)
        }
    }
}

/// What the input holds, before the server is read: `input_memberships`, not the report's
/// rows, which in delta and mirror modes also count the members to remove (the summary and
/// the change list count those).
fn log_plan(plan: &Plan, chunk_size: usize) {
    tracing::info!(
        event = "plan",
        groups = plan.groups.len(),
        input_memberships = plan.memberships.len(),
        invalid = plan.invalid.len(),
        duplicates = plan.duplicates,
        add_requests = plan.request_count(chunk_size),
    );
}

/// `--strict` with invalid records: every row not sent, saying why.
fn strict_rows(plan: &Plan, removing: bool) -> Ledger {
    let mut ledger = Ledger::new(plan, removing, Status::NotAttempted);
    let why = std::sync::Arc::new(crate::outcome::Detail {
        message: format!(
            "not sent: --strict, and the input has {} invalid record(s); fix them, or drop --strict",
            plan.invalid.len()
        ),
        ..Default::default()
    });
    for o in ledger.outcomes_mut() {
        o.detail = Some(why.clone());
    }
    ledger
}

/// Sends the plan (reading first in delta and mirror modes), resuming from and keeping the
/// journal; closes the journal when the run settled everything.
async fn send(
    args: &SyncArgs,
    session: &Session,
    plan: &Plan,
    given: Option<&Given>,
) -> Result<(crate::engine::Execution, Ledger), Error> {
    let opts = exec_options(args)?;
    let Some(client) = &session.client else {
        return Err(Error::Config(format!(
            "{API_KEY_ENV} / {AUTH_TOKEN_ENV} are needed to send"
        )));
    };
    // A dry run never writes the journal: it would close an interrupted night's.
    let state = args.ops.state.as_ref().filter(|_| !args.dry_run);
    let (mut journal, already_added) = match state {
        Some(path) => {
            let fp = journal::fingerprint(plan, client.base_url(), &journal_terms(args));
            let accounts = plan.accounts.as_ref().map_or(0, |a| a.list.len());
            let (j, done) = Journal::open(path, fp, plan.memberships.len(), accounts)?;
            if !done.is_empty() {
                tracing::info!(
                    event = "resume",
                    confirmed = done.len(),
                    state = %path.display(),
                );
            }
            (Some(j), done)
        }
        None => (None, journal::Confirmed::default()),
    };
    let mut ledger = Ledger::new(plan, opts.mode == Mode::Remove, Status::NotAttempted);
    ledger.confirm(&already_added);
    let progress = progress_bar(&session.output, plan.memberships.len() as u64);
    let mut execution = execute(
        plan,
        &mut ledger,
        client,
        &opts,
        &progress,
        &session.interrupt,
        journal.as_mut(),
        given,
    )
    .await;
    progress.finish_and_clear();
    if let Some(why) = execution.refused.take() {
        return Err(Error::Config(why));
    }
    if let Some(j) = journal.as_mut()
        && settled(&ledger, &execution)
        && execution.journal_error.is_none()
        && let Err(e) = j.complete()
    {
        execution.journal_error = Some(e.to_string());
    }
    Ok((execution, ledger))
}

/// After sending: the refusals rolled up, the report written, the run's outcome said.
fn report_run(
    args: &SyncArgs,
    plan: &Plan,
    ledger: &Ledger,
    execution: crate::engine::Execution,
    mut end: End<'_>,
    output: &Output,
) -> Result<u8, Error> {
    end.refusals = roll_up_refusals(plan, ledger);
    end.changes = first_changes(plan, ledger, args.dry_run);
    let list = changes::render(plan, ledger, args.dry_run, output.all_changes);
    if args.dry_run {
        print_dry_run(&list, end.report.is_stdout());
    } else if !output.quiet && !output.json_logs {
        crate::output::to_stderr(&list);
    }
    end.stats.requests = execution.requests_by_status.clone();
    end.stats.retries = execution.retries;
    end.stats.throttled = execution.throttled;
    end.stats.throttled_for = execution.throttled_for;
    let rows = finish(plan, ledger, execution.requests, end)?;
    let outcome = RunOutcome {
        rows_done: rows == exit::OK,
        interrupted: execution.interrupted,
        credentials_refused: execution.auth_failure.is_some(),
        unread: execution.unread_groups,
        write_failed: execution.journal_error.is_some() && args.ops.state.is_some(),
    };
    explain(&outcome, &execution, args, output);
    Ok(outcome.exit_code())
}

/// `--keep-reports N`, once this run's dated report is written.
fn keep_newest_reports(args: &SyncArgs, keep: usize, output: &Output) {
    match crate::history::prune(&args.ops.report, keep) {
        Ok(removed) if !removed.is_empty() => tracing::info!(
            event = "reports_removed",
            removed = removed.len(),
            message = "older dated reports beyond --keep-reports removed"
        ),
        Ok(_) => {}
        Err(e) => output.say(
            "reports_not_removed",
            &format!("warning: could not remove older reports: {e}"),
        ),
    }
}

/// Most distinct refusal reasons logged; the rest are counted in one more line.
const REASONS_LOGGED: usize = 10;
/// Example user IDs per reason.
const EXAMPLES: usize = 5;

/// One warning per distinct reason the server gave for failed rows (memberships and users),
/// most frequent first: its count, a few user IDs, and a hint where one is known. Capped, so a
/// million failures stay a few lines.
fn roll_up_refusals(plan: &Plan, ledger: &Ledger) -> Vec<Refusal> {
    use std::collections::HashMap;
    let mut by_reason: HashMap<&str, (u64, Vec<&str>, Option<&str>)> = HashMap::new();
    for r in ledger.rows() {
        let (o, user) = (r.outcome, ledger.user(plan, r.index));
        if o.status != Status::Failed {
            continue;
        }
        let Some(d) = o.detail.as_deref() else {
            continue;
        };
        let entry = by_reason.entry(d.message.as_str()).or_insert((
            0,
            Vec::new(),
            d.error_status.as_deref(),
        ));
        entry.0 += 1;
        if entry.1.len() < EXAMPLES {
            entry.1.push(user);
        }
    }
    let mut reasons: Vec<_> = by_reason.into_iter().collect();
    reasons.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    for (message, (count, examples, status)) in reasons.iter().take(REASONS_LOGGED) {
        let examples: Vec<String> = examples
            .iter()
            .map(|u| crate::text::clip(u).into_owned())
            .collect();
        tracing::warn!(
            event = "refusals",
            count = count,
            errorStatus = status.unwrap_or(""),
            examples = %examples.join(", "),
            hint = hint(message, *status).unwrap_or(""),
            message = %crate::text::clip(message),
        );
    }
    let top = reasons
        .iter()
        .take(REASONS_LOGGED)
        .map(|(message, (count, examples, status))| Refusal {
            message: crate::text::clip(message).into_owned(),
            count: *count,
            examples: examples
                .iter()
                .map(|u| crate::text::clip(u).into_owned())
                .collect(),
            hint: hint(message, *status),
        })
        .collect();
    if reasons.len() > REASONS_LOGGED {
        let rest: u64 = reasons[REASONS_LOGGED..].iter().map(|r| r.1.0).sum();
        tracing::warn!(
            event = "refusals",
            count = rest,
            message = %format!(
                "and {} more reasons for {rest} rows (see the report)",
                reasons.len() - REASONS_LOGGED
            ),
        );
    }
    top
}

/// What to do about a refusal, where it is known.
fn hint(message: &str, status: Option<&str>) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    if lower.contains("not part of the organization") {
        Some("make them users of the organization first: --provision-users")
    } else if status == Some("NOT_FOUND") {
        Some("check --org (or the organization column), then --create-missing-groups")
    } else if status == Some("INVALID_ARGUMENT") {
        Some("the request was refused as malformed: check the IDs in the report")
    } else {
        None
    }
}

/// Says on stderr (or in the JSON log) why a run that sent requests did not fully succeed.
fn explain(
    outcome: &RunOutcome,
    execution: &crate::engine::Execution,
    args: &SyncArgs,
    output: &Output,
) {
    let resume = |with: &'static str, without: &'static str| {
        if args.ops.state.is_some() {
            with
        } else {
            without
        }
    };
    if outcome.interrupted.is_some() {
        output.say(
            "interrupted",
            &format!(
                "interrupted; memberships not sent are `not_attempted` in the report{}",
                resume(" (re-run with the same --state to finish)", "")
            ),
        );
        return;
    }
    if let (Some(e), Some(path)) = (&execution.journal_error, &args.ops.state) {
        output.say(
            "state_write_failed",
            &format!(
                "error: could not write the journal {} ({e}); a resume may send again what \
                 this run did (adds are idempotent)",
                path.display()
            ),
        );
    }
    if execution.throttle_exhausted {
        output.say(
            "throttle_budget_spent",
            &format!(
                "the server kept throttling: the run waited {} s on it, all that \
                 --max-throttle-wait allows, and sent nothing more; what was not sent is \
                 `not_attempted` (re-run later{})",
                execution.throttled_for.as_secs(),
                resume(
                    " with the same --state",
                    ", or with --only-status not_attempted on the report"
                )
            ),
        );
    }
    if let Some(message) = &execution.auth_failure {
        output.say(
            "credentials_refused",
            &format!(
                "error: the API refused the credentials ({message}); the run stopped. \
                 Check {API_KEY_ENV} and {AUTH_TOKEN_ENV}."
            ),
        );
        return;
    }
    if outcome.unread > 0 {
        output.say(
            "groups_unread",
            &format!(
                "{} group(s) or organization(s) could not be read, so nothing was removed \
                 from them (see the read_failed log lines); re-run to finish mirroring them",
                outcome.unread
            ),
        );
    }
}

/// Writes `--metrics-file` and pushes to `--metrics-push`, whatever the run's outcome.
/// Returns the exit code: 1 instead of 0 when the metrics file could not be written (a
/// gateway that cannot be reached is only a warning).
pub async fn publish_metrics(
    args: &SyncArgs,
    stats: &RunStats,
    code: u8,
    elapsed: std::time::Duration,
    output: &Output,
) -> u8 {
    let mut code = code;
    let now = std::time::SystemTime::now();
    if let Some(path) = &args.ops.metrics_file
        && let Err(e) = metrics::write(path, stats, code, elapsed, now)
    {
        output.say("metrics_write_failed", &format!("error: {e}"));
        code = Error::at_least_incomplete(code);
    }
    if let Some(url) = &args.ops.metrics_push {
        let target = crate::pushgateway::Target {
            url: url.clone(),
            job: args.ops.metrics_job.clone(),
            labels: args.ops.metrics_label.clone(),
        };
        if let Err(e) = crate::pushgateway::push(&target, stats, code, elapsed, now).await {
            output.say(
                "metrics_push_failed",
                &format!(
                    "warning: could not push the metrics to {}: {e}",
                    crate::credentials::redact_url(url)
                ),
            );
        }
    }
    code
}

/// What, beside the plan and the base URL, changes what a journal line means: the API
/// version, the mode (an add run's confirmed line is no removal), and what is sent about users.
fn journal_terms(args: &SyncArgs) -> String {
    format!(
        "{} mode={:?} provision={} deprovision={} access-role={} case={:?}",
        args.server.api_version.path(),
        args.modes.mode,
        args.input.provision_users,
        args.modes.deprovision_users,
        args.modes.access_role.map_or("", |r| r.as_str()),
        args.input.user_id_case,
    )
}

/// Whether the run left nothing to resume: not cut short, and every row has a definite
/// outcome (a removal that a safety limit refused counts as one).
fn settled(ledger: &Ledger, execution: &crate::engine::Execution) -> bool {
    execution.interrupted.is_none()
        && execution.auth_failure.is_none()
        && !execution.throttle_exhausted
        && ledger.settled()
}

/// The engine's options from the command line; reads `--protect-users @FILE` lists.
fn exec_options(args: &SyncArgs) -> Result<ExecOptions, Error> {
    Ok(ExecOptions {
        chunk_size: args.send.chunk_size as usize,
        rate: match args.send.rate {
            RateArg::Fixed(r) => r,
            RateArg::Auto => args.send.max_rate,
        },
        adaptive: args.send.rate == RateArg::Auto,
        burst: args.send.burst,
        concurrency: args.send.concurrency as usize,
        max_concurrency: args.send.max_concurrency as usize,
        max_retries: args.send.max_retries,
        max_backoff: args.send.max_backoff,
        max_retry_after: args.send.max_retry_after,
        max_throttle_wait: args.send.max_throttle_wait,
        grace: args.send.grace,
        mode: args.modes.mode,
        max_removals: args.modes.max_removals,
        allow_empty: args.input.allow_empty,
        create_missing_groups: args.modes.create_missing_groups,
        page_size: args.modes.page_size,
        dry_run: args.dry_run,
        access_role: args.modes.access_role,
        deprovision_users: args.modes.deprovision_users,
        max_user_removals: args.modes.max_user_removals,
        fold_user_ids: args.input.user_id_case == UserIdCase::Lower,
        protect_users: patterns(&args.modes.protect_users, "--protect-users")?,
        protect_groups: patterns(&args.modes.protect_groups, "--protect-groups")?,
        create_organization: args.modes.create_organization,
        seed: args.send.jitter_seed,
        ..ExecOptions::default()
    })
}

/// `--protect-users` / `--protect-groups`: the patterns given, with each `@FILE` read as one
/// pattern a line (blank lines and `#` comments left out).
fn patterns(given: &[String], flag: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for p in given.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let Some(path) = p.strip_prefix('@') else {
            out.push(p.to_string());
            continue;
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "{path}: cannot read the {flag} list ({e}); check the path after `@`"
            ))
        })?;
        let before = out.len();
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
        if out.len() == before {
            return Err(Error::Config(format!(
                "{path}: the {flag} list holds no pattern; add one a line, or drop the flag"
            )));
        }
    }
    Ok(out)
}

/// The provisioning flags that make no sense together, before anything is read.
/// The combinations clap cannot tell: those that depend on `--mode`, and provisioning's
/// options with `--provision-users` turned off by its variable (clap sees it given).
fn check_provisioning(args: &SyncArgs) -> Result<(), Error> {
    let provision = args.input.provision_users;
    let problem = if args.modes.deprovision_users && !provision {
        "--deprovision-users needs --provision-users (the users the input lists, with their names and e-mails)"
    } else if args.modes.deprovision_users && args.modes.mode != Mode::Mirror {
        "--deprovision-users works in --mode mirror only"
    } else if provision && args.modes.mode == Mode::Remove {
        "--provision-users does not go with --mode remove (a leavers' list provisions nobody); use --mode mirror --deprovision-users to remove leavers from their organizations"
    } else if !provision
        && (args.modes.access_role.is_some()
            || args.input.name_column.is_some()
            || args.input.name_columns.is_some()
            || args.input.email_column.is_some())
    {
        "--access-role, --name-column, --name-columns and --email-column take effect with --provision-users only; add it, or drop them"
    } else {
        return Ok(());
    };
    Err(Error::Config(problem.into()))
}

/// Refuses a report that would overwrite the input it is made from.
fn refuse_report_over_input(
    report: &std::path::Path,
    input: &std::path::Path,
) -> Result<(), Error> {
    if report.as_os_str() == "-" || input.as_os_str() == "-" {
        return Ok(());
    }
    let same = match (std::fs::canonicalize(report), std::fs::canonicalize(input)) {
        (Ok(r), Ok(i)) => r == i,
        _ => false,
    };
    if same {
        return Err(Error::Config(format!(
            "--report {} is the input file; the report would replace it. Choose another --report path",
            report.display()
        )));
    }
    Ok(())
}

/// The input options from the command line; reads the group map.
fn input_options(args: &InputArgs) -> Result<InputOptions, Error> {
    let map = match &args.group_map {
        Some(path) => Some(std::sync::Arc::new(GroupMap::load(path)?)),
        None => None,
    };
    let filters = args
        .include
        .iter()
        .map(|f| Filter::new(&f.column, &f.values, true))
        .chain(
            args.exclude
                .iter()
                .map(|f| Filter::new(&f.column, &f.values, false)),
        )
        .collect();
    Ok(InputOptions {
        format: args.format,
        delimiter: args.delimiter,
        columns: Columns {
            org: args.org_column.clone(),
            group: args
                .group_column
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned()
                .collect(),
            user: args.user_column.clone(),
            group_name: args.group_name_column.clone(),
            name: args.name_column.clone(),
            name_parts: args.name_columns.clone(),
            email: args.email_column.clone(),
        },
        has_default_org: args.org.as_deref().is_some_and(|s| !s.trim().is_empty()),
        has_default_group: args.group.as_deref().is_some_and(|s| !s.trim().is_empty()),
        only_status: args.only_status.clone(),
        max_record_bytes: args.max_record_bytes,
        encoding: args.encoding,
        header_row: args.header_row,
        sheet: args.sheet.clone(),
        records_path: args.records_path.clone(),
        provision: args.provision_users,
        mapping: Mapping {
            filters,
            separator: args.group_separator.clone(),
            map,
            unmapped: args.unmapped,
            lower_user_ids: args.user_id_case == UserIdCase::Lower,
        },
    })
}

pub fn read_plan(args: &InputArgs) -> Result<Plan, Error> {
    let mut planner = Planner::new(Defaults {
        org: args.org.clone(),
        group: args.group.clone(),
    });
    let opts = input_options(args)?;
    let read = input::read_path(&args.input, &opts, &mut planner)?;
    tracing::debug!(event = "input", format = ?read.format, records = read.records);
    if read.records == 0 && !args.allow_empty {
        let name = args.input.display().to_string();
        return Err(Error::Config(format!(
            "{}: the input holds no records: is the export truncated or empty? \
             (--allow-empty accepts an empty input)",
            if name == "-" { "<stdin>" } else { &name },
        )));
    }
    if read.skipped > 0 {
        tracing::info!(
            event = "only_status",
            skipped = read.skipped,
            message = "rows left out by --only-status"
        );
    }
    if read.filtered > 0 {
        tracing::info!(
            event = "filtered",
            filtered = read.filtered,
            message = "records left out by --include / --exclude"
        );
    }
    let mut plan = planner.finish();
    // Every record left out by a filter or an incomplete map is as empty an input as none:
    // a typo in `--include Status=Actve` must not pass as a good night, nor mirror on nothing.
    let left_out = read.filtered + read.unmapped_skipped;
    if plan.memberships.is_empty() && plan.invalid.is_empty() && left_out > 0 && !args.allow_empty {
        let name = args.input.display().to_string();
        return Err(Error::Config(format!(
            "{}: no record passed the filters: {} record(s) left out by --include / --exclude, \
             {} membership(s) whose group the group map does not list (--unmapped skip); check \
             the filters' values and the map (`validate` lists the unmapped values), or pass \
             --allow-empty",
            if name == "-" { "<stdin>" } else { &name },
            read.filtered,
            read.unmapped_skipped,
        )));
    }
    let default_org = args.org.as_deref().map_or("", str::trim);
    plan.partly_unmapped = read
        .partly_unmapped
        .into_iter()
        .map(|(org, user)| (org.unwrap_or_else(|| default_org.into()), user))
        .collect();
    plan.filtered = read.filtered;
    plan.unmapped_skipped = read.unmapped_skipped;
    let mut unmapped: Vec<_> = read.unmapped.into_iter().collect();
    unmapped.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if !unmapped.is_empty() {
        tracing::warn!(
            event = "unmapped",
            values = unmapped.len(),
            message = "group values the group map does not list (`validate` lists them)"
        );
    }
    plan.unmapped = unmapped;
    if args.provision_users {
        let memberships = plan
            .memberships
            .iter()
            .map(|m| (&*plan.group_of(m).org, plan.user(m)));
        let accounts = crate::provision::model::Accounts::build(memberships, &read.profiles);
        plan.accounts = Some(accounts);
    }
    Ok(plan)
}

/// Writes the report, keeps its summary for the end of the run, and picks the exit code
/// from the rows.
fn finish(plan: &Plan, ledger: &Ledger, requests: u64, end: End<'_>) -> Result<u8, Error> {
    let End {
        report,
        started,
        stats,
        ended,
        refusals,
        changes,
    } = end;
    let counts = report::count(plan, ledger);
    stats.counts = counts;
    let mut summary = Summary::new(counts, plan.duplicates, requests, started.elapsed());
    summary.throttled_ms = stats.throttled_for.as_millis() as u64;
    summary.filtered = plan.filtered;
    summary.unmapped_skipped = plan.unmapped_skipped;
    summary.users = ledger.user_counts(plan);
    summary.dry_run = stats.dry_run;
    summary.planned_removals = ledger
        .rows()
        .filter(|r| r.outcome.status == Status::Planned && ledger.is_removal(r.index))
        .filter(|r| !matches!(r.subject, Subject::Leaver { .. }))
        .count() as u64;
    stats.users = summary.users;
    stats.filtered = plan.filtered;
    stats.unmapped_skipped = plan.unmapped_skipped;
    let path = report.path().display().to_string();
    report.write(plan, ledger, &summary)?;
    *ended = Some(Ended {
        summary,
        report: path,
        refusals,
        changes,
    });
    Ok(if counts.all_succeeded() {
        exit::OK
    } else {
        exit::INCOMPLETE
    })
}
