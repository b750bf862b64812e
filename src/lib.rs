//! velt-group-sync: add users to Velt organization user groups in bulk.
//!
//! The pipeline, one module each: [`input`] reads records into a [`plan`], [`execute`] sends
//! it through the [`client`], and [`report`] writes one row per membership. [`cli`] holds the
//! command line, [`emulator`] a Velt-compatible test server, [`error`] the errors that stop a
//! run and their exit codes.

pub mod cli;
pub mod client;
pub mod emulator;
pub mod error;
pub mod execute;
pub mod files;
pub mod input;
pub mod metrics;
pub mod outcome;
pub mod pace;
pub mod plan;
pub mod report;
pub mod retry;
pub mod state;
pub mod text;
pub mod throttle;

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{Cli, Command, EmulatorArgs, InputArgs, LogFormat, SyncArgs, ValidateArgs};
use crate::client::{API_KEY_ENV, AUTH_TOKEN_ENV, Credentials, VeltClient};
use crate::emulator::{Emulator, EmulatorConfig};
use crate::error::{Error, exit};
use crate::execute::{ExecOptions, execute};
use crate::input::{Columns, InputOptions};
use crate::metrics::RunStats;
use crate::outcome::{Outcome, Status};
use crate::plan::{Defaults, Plan, Planner};
use crate::report::{ReportTarget, Summary};
use crate::state::Journal;
use crate::text::clip;

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    init_logging(&cli);
    let output = Output::from_cli(&cli);
    let result = match cli.command {
        Command::Sync(args) => {
            let started = Instant::now();
            let mut stats = RunStats {
                dry_run: args.dry_run,
                ..RunStats::default()
            };
            let mut code = exit_code(sync(&args, &output, &mut stats).await, &output);
            if let Some(path) = &args.metrics_file
                && let Err(e) = metrics::write(
                    path,
                    &stats,
                    code,
                    started.elapsed(),
                    std::time::SystemTime::now(),
                )
            {
                output.say("metrics_write_failed", &format!("error: {e}"));
                code = at_least_incomplete(code);
            }
            return code;
        }
        Command::Validate(args) => validate(&args),
        Command::Emulator(args) => serve_emulator(&args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "velt-group-sync", &mut text);
            print_bytes(&text)
        }
        Command::Manpage => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut text) {
                Ok(()) => print_bytes(&text),
                Err(source) => Err(Error::Io {
                    path: "the man page".into(),
                    source,
                }),
            }
        }
    };
    exit_code(result, &output)
}

/// Writes generated text to stdout; a reader that stops early (`| head`) is no error.
fn print_bytes(text: &[u8]) -> Result<u8, Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: "standard output".into(),
            source: e,
        }),
        _ => Ok(exit::OK),
    }
}

fn exit_code(result: Result<u8, Error>, output: &Output) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            output.say("error", &format!("error: {e}"));
            e.exit_code()
        }
    }
}

/// The `validate` command: read and check the input as `sync` would, print each invalid
/// record and the plan's counts. 0 clean, 1 invalid records, 2 unreadable (an `Err`).
fn validate(args: &ValidateArgs) -> Result<u8, Error> {
    use std::io::Write;
    let plan = read_plan(&args.input)?;
    let name = args.input.input.display().to_string();
    let name = if name == "-" { "<stdin>" } else { &name };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let write_err = |source| Error::Io {
        path: "standard output".into(),
        source,
    };
    for bad in &plan.invalid {
        writeln!(
            out,
            "{name}:{}: {} (organizationId `{}`, organizationUserGroupId `{}`, userId `{}`)",
            bad.line,
            bad.reason,
            clip(&bad.org),
            clip(&bad.group),
            clip(&bad.user)
        )
        .map_err(write_err)?;
    }
    let counts = plan_counts(&plan, args.chunk_size as usize);
    writeln!(out, "{name}: {counts}").map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(if plan.invalid.is_empty() {
        exit::OK
    } else {
        exit::INCOMPLETE
    })
}

/// A run whose report, metrics or journal could not be written did not fully succeed.
fn at_least_incomplete(code: u8) -> u8 {
    if code == exit::OK {
        exit::INCOMPLETE
    } else {
        code
    }
}

/// Writes to stderr, ignoring failure: a closed stderr (`2>&- `, a pipe whose reader left)
/// must never stop the run or lose its report.
fn to_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// How much the run shows on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub quiet: bool,
    pub json_logs: bool,
}

impl Output {
    /// A line for the operator: a JSON log line with `event` under `--log-format json` (so
    /// stderr stays machine-readable), else plain text.
    fn say(&self, event: &str, text: &str) {
        if self.json_logs {
            tracing::error!(event = event, message = text);
        } else {
            to_stderr(&format!("velt-group-sync: {text}\n"));
        }
    }

    fn from_cli(cli: &Cli) -> Output {
        Output {
            quiet: cli.quiet,
            json_logs: cli.log_format == LogFormat::Json,
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our own events at the chosen level; the HTTP stack's only when asked for with -vv.
    let filter = if cli.verbose >= 2 {
        level.to_string()
    } else {
        format!("warn,velt_group_sync={level}")
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr must never stop the run: dropped log lines are not reported on the
        // same closed stderr (which would panic).
        .log_internal_errors(false);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}

/// The `sync` command: read, plan, send, report. Returns the exit code.
pub async fn sync(args: &SyncArgs, output: &Output, stats: &mut RunStats) -> Result<u8, Error> {
    let started = Instant::now();
    // A dry run in delta or mirror mode still reads the groups.
    let sends_nothing = args.dry_run && args.mode == cli::Mode::Add;
    if !args.emulator {
        client::check_transport_security(&args.base_url, args.allow_insecure_http)?;
    }
    let credentials = if args.emulator {
        Some(Credentials::new("emulator", "emulator"))
    } else if sends_nothing {
        None
    } else {
        Some(Credentials::resolve(
            args.api_key_file.as_deref(),
            args.auth_token_file.as_deref(),
            |var| std::env::var(var).ok(),
        )?)
    };
    refuse_report_over_input(&args.report, &args.input.input)?;
    let report = ReportTarget::prepare(&args.report, args.report_format)?;
    if let Some(path) = &args.metrics_file {
        metrics::check_writable(path)?;
    }
    // From here a signal is counted, not fatal: reading stops and the run says so.
    let mut interrupts = watch_signals()?;
    let input = args.input.clone();
    let reading = tokio::task::spawn_blocking(move || read_plan(&input));
    let mut plan = tokio::select! {
        read = reading => read.map_err(|e| Error::Config(format!("the input reader failed: {e}")))??,
        code = first_signal(&mut interrupts) => {
            output.say(
                "interrupted",
                "interrupted before anything was sent (while reading the input); no report was written",
            );
            return Ok(code);
        }
    };
    let chunk_size = args.chunk_size as usize;
    let request_count = plan.request_count(chunk_size);
    tracing::info!(
        event = "plan",
        groups = plan.groups.len(),
        memberships = plan.memberships.len(),
        invalid = plan.invalid.len(),
        duplicates = plan.duplicates,
        requests = request_count,
    );

    if args.strict && !plan.invalid.is_empty() {
        let outcomes = vec![Outcome::new(Status::NotAttempted); plan.memberships.len()];
        finish(&plan, &outcomes, 0, report, started, output, stats)?;
        return Err(Error::Strict(plan.invalid.len()));
    }

    if sends_nothing {
        print_plan(&plan, chunk_size, report.is_stdout());
        let outcomes = vec![Outcome::new(Status::Planned); plan.memberships.len()];
        return finish(&plan, &outcomes, 0, report, started, output, stats);
    }

    // Credentials were resolved above for every run that sends.
    let Some(credentials) = credentials else {
        return Err(Error::Config(format!(
            "{API_KEY_ENV} / {AUTH_TOKEN_ENV} are needed to send"
        )));
    };
    let emulator = if args.emulator {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let emu = Emulator::start(EmulatorConfig::default(), addr)
            .await
            .map_err(|e| Error::Config(format!("cannot start the built-in emulator: {e}")))?;
        tracing::info!(event = "emulator", base_url = emu.base_url().as_str());
        Some(emu)
    } else {
        None
    };
    let base_url = emulator
        .as_ref()
        .map_or_else(|| args.base_url.clone(), Emulator::base_url);
    let client = VeltClient::new(&base_url, args.api_version, &credentials, args.timeout)?;
    let (mut journal, already_added) = match &args.state {
        Some(path) => {
            let fp = state::fingerprint(&plan, &base_url, args.api_version.path());
            let (j, done) = Journal::open(path, fp, plan.memberships.len())?;
            if !done.is_empty() {
                tracing::info!(
                    event = "resume",
                    confirmed = done.len(),
                    state = %path.display(),
                );
            }
            (Some(j), done)
        }
        None => (None, Vec::new()),
    };
    let progress = progress_bar(output, plan.memberships.len() as u64);
    let opts = ExecOptions {
        chunk_size,
        rate: match args.rate {
            cli::RateArg::Fixed(r) => r,
            cli::RateArg::Auto => args.max_rate,
        },
        adaptive: args.rate == cli::RateArg::Auto,
        burst: args.burst,
        concurrency: args.concurrency as usize,
        max_concurrency: args.max_concurrency as usize,
        max_retries: args.max_retries,
        max_backoff: args.max_backoff,
        max_retry_after: args.max_retry_after,
        max_throttle_wait: args.max_throttle_wait,
        grace: args.grace,
        mode: args.mode,
        max_removals: args.max_removals,
        allow_empty: args.input.allow_empty,
        create_missing_groups: args.create_missing_groups,
        page_size: args.page_size,
        dry_run: args.dry_run,
        ..ExecOptions::default()
    };
    let execution = execute(
        &mut plan,
        &client,
        &opts,
        &progress,
        interrupts,
        journal.as_mut(),
        &already_added,
    )
    .await;
    progress.finish_and_clear();
    if let Some(emu) = emulator {
        emu.stop().await;
    }
    stats.requests = execution.requests_by_status.clone();
    stats.retries = execution.retries;
    stats.throttled = execution.throttled;
    stats.throttled_for = execution.throttled_for;
    let code = finish(
        &plan,
        &execution.outcomes,
        execution.requests,
        report,
        started,
        output,
        stats,
    )?;
    if let Some(code) = execution.interrupted {
        output.say(
            "interrupted",
            &format!(
                "interrupted; memberships not sent are `not_attempted` in the report{}",
                if args.state.is_some() {
                    " (re-run with the same --state to finish)"
                } else {
                    ""
                }
            ),
        );
        return Ok(code);
    }
    let code = match (&execution.journal_error, &args.state) {
        (Some(e), Some(path)) => {
            output.say(
                "state_write_failed",
                &format!(
                    "error: could not write the journal {} ({e}); a resume may send again what \
                     this run did (adds are idempotent)",
                    path.display()
                ),
            );
            at_least_incomplete(code)
        }
        _ => code,
    };
    if execution.throttle_exhausted {
        output.say(
            "throttle_budget_spent",
            &format!(
                "the server kept throttling: the run waited {} s on it, all that \
                 --max-throttle-wait allows, and sent nothing more; what was not sent is \
                 `not_attempted` (re-run later{})",
                execution.throttled_for.as_secs(),
                if args.state.is_some() {
                    " with the same --state"
                } else {
                    ", or with --only-status not_attempted on the report"
                }
            ),
        );
    }
    if let Some(message) = execution.auth_failure {
        output.say(
            "credentials_refused",
            &format!(
                "error: the API refused the credentials ({message}); the run stopped. \
                 Check {API_KEY_ENV} and {AUTH_TOKEN_ENV}."
            ),
        );
        return Ok(exit::AUTH);
    }
    if execution.unread_groups > 0 {
        output.say(
            "groups_unread",
            &format!(
                "{} group(s) could not be read, so nothing was removed from them \
                 (see the read_failed log lines); re-run to finish mirroring them",
                execution.unread_groups
            ),
        );
        return Ok(exit::INCOMPLETE);
    }
    Ok(code)
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

/// Waits for the first SIGINT/SIGTERM and returns its exit code (130/143).
async fn first_signal(interrupts: &mut execute::Interrupts) -> u8 {
    loop {
        let (count, code) = *interrupts.borrow_and_update();
        if count > 0 {
            return code;
        }
        if interrupts.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn read_plan(args: &InputArgs) -> Result<Plan, Error> {
    let mut planner = Planner::new(Defaults {
        org: args.org.clone(),
        group: args.group.clone(),
    });
    let opts = InputOptions {
        format: args.format,
        delimiter: args.delimiter,
        columns: Columns {
            org: args.org_column.clone(),
            group: args.group_column.clone(),
            user: args.user_column.clone(),
            group_name: args.group_name_column.clone(),
        },
        has_default_org: args.org.as_deref().is_some_and(|s| !s.trim().is_empty()),
        has_default_group: args.group.as_deref().is_some_and(|s| !s.trim().is_empty()),
        only_status: args.only_status.clone(),
        max_record_bytes: args.max_record_bytes,
    };
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
    Ok(planner.finish())
}

/// Writes the report and the summary line, and picks the exit code from the rows.
fn finish(
    plan: &Plan,
    outcomes: &[Outcome],
    requests: u64,
    report: ReportTarget,
    started: Instant,
    output: &Output,
    stats: &mut RunStats,
) -> Result<u8, Error> {
    let counts = report::count(plan, outcomes);
    stats.counts = counts;
    let mut summary = Summary::new(counts, plan.duplicates, requests, started.elapsed());
    summary.throttled_ms = stats.throttled_for.as_millis() as u64;
    let path = report.path().display().to_string();
    report.write(plan, outcomes, &summary)?;
    if output.json_logs {
        tracing::info!(
            event = "summary",
            memberships = summary.memberships,
            added = summary.added,
            failed = summary.failed,
            unconfirmed = summary.unconfirmed,
            invalid = summary.invalid,
            not_attempted = summary.not_attempted,
            planned = summary.planned,
            unchanged = summary.unchanged,
            removed = summary.removed,
            requests = summary.requests,
            elapsed_ms = summary.elapsed_ms,
            throttled_ms = summary.throttled_ms,
            report = path.as_str(),
        );
    } else if !output.quiet {
        to_stderr(&format!("{}\n", summary_line(&summary, &path)));
    }
    Ok(if counts.all_succeeded() {
        exit::OK
    } else {
        exit::INCOMPLETE
    })
}

fn summary_line(s: &Summary, path: &str) -> String {
    let mut line = format!("velt-group-sync: {} memberships: ", s.memberships);
    if s.planned > 0 {
        line.push_str(&format!("{} planned, ", s.planned));
    }
    line.push_str(&format!("{} added, ", s.added));
    if s.unchanged > 0 {
        line.push_str(&format!("{} unchanged, ", s.unchanged));
    }
    if s.removed > 0 {
        line.push_str(&format!("{} removed, ", s.removed));
    }
    line.push_str(&format!(
        "{} failed, {} unconfirmed, {} invalid",
        s.failed, s.unconfirmed, s.invalid
    ));
    if s.not_attempted > 0 {
        line.push_str(&format!(", {} not attempted", s.not_attempted));
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
fn plan_counts(plan: &Plan, chunk_size: usize) -> String {
    format!(
        "{} groups, {} memberships, {} requests (chunk size {chunk_size}), {} invalid records, {} duplicates merged",
        plan.groups.len(),
        plan.memberships.len(),
        plan.request_count(chunk_size),
        plan.invalid.len(),
        plan.duplicates,
    )
}

fn print_plan(plan: &Plan, chunk_size: usize, report_on_stdout: bool) {
    let mut text = format!("plan: {}\n", plan_counts(plan, chunk_size));
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
    if report_on_stdout {
        to_stderr(&text);
    } else {
        use std::io::Write;
        // A closed standard output (`| head`) must not stop the run.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

fn progress_bar(output: &Output, total: u64) -> ProgressBar {
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

/// SIGINT and SIGTERM from here on are counted, not fatal: the first stops the run gracefully,
/// the second at once; the report is written either way.
fn watch_signals() -> Result<execute::Interrupts, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let setup = |kind| {
        signal(kind).map_err(|e| Error::Config(format!("cannot install signal handlers: {e}")))
    };
    let mut int = setup(SignalKind::interrupt())?;
    let mut term = setup(SignalKind::terminate())?;
    let (tx, rx) = tokio::sync::watch::channel((0u32, 0u8));
    tokio::spawn(async move {
        loop {
            let code = tokio::select! {
                Some(()) = int.recv() => 130,
                Some(()) = term.recv() => 143,
                else => return,
            };
            tx.send_modify(|(count, first)| {
                if *count == 0 {
                    *first = code;
                }
                *count += 1;
            });
        }
    });
    Ok(rx)
}

/// The `emulator` command: serve until interrupted.
async fn serve_emulator(args: &EmulatorArgs) -> Result<u8, Error> {
    let credentials = if args.require_credentials {
        let c = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    Error::Config(format!("--require-credentials needs {var} to be set"))
                })
        };
        Some((c(API_KEY_ENV)?, c(AUTH_TOKEN_ENV)?))
    } else {
        None
    };
    let config = EmulatorConfig {
        credentials,
        rate_limit: args.rate_limit,
        window_limit: args.window_limit,
        omit_retry_after: args.no_retry_after,
        max_user_ids: args.max_user_ids,
        latency: args.latency,
        unavailable_fraction: args.unavailable_fraction,
        internal_fraction: args.internal_fraction,
        drop_before_fraction: args.drop_before_fraction,
        drop_after_fraction: args.drop_after_fraction,
        invalid_user_marker: args.invalid_user_marker.clone(),
        groups_must_exist: args.groups_must_exist,
        ..EmulatorConfig::default()
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let emu = Emulator::start(config, addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}; try another --port")))?;
    to_stderr(&format!(
        "velt-group-sync: emulator listening on {} (Ctrl-C to stop)\n",
        emu.base_url()
    ));
    let _ = tokio::signal::ctrl_c().await;
    emu.stop().await;
    Ok(exit::OK)
}
