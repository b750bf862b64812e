//! velt-group-sync: add users to Velt organization user groups in bulk.
//!
//! The pipeline: [`input`] reads records into a [`plan`]; [`sync`] runs the command, with the
//! [`engine`] sending the plan through the [`client`] and [`report`] writing one row per
//! membership. Around it: [`cli`] (the command line), [`output`] (what stderr shows),
//! [`interrupt`] (signals), [`journal`] (resume), [`metrics`] and [`pushgateway`], [`files`] (where result files
//! go), [`emulator`] (a Velt-compatible test server), [`commands`] (validate, emulator,
//! completions) and [`error`] (the errors that stop a run, and their exit codes).
//!
//! [`run`] is the process's side: it reads the environment, installs the signal handlers,
//! starts the emulator when asked, and hands the library what it needs.

pub mod answer;
pub mod changes;
pub mod cli;
pub mod client;
pub mod commands;
pub mod credentials;
pub mod emulator;
pub mod engine;
pub mod error;
pub mod files;
pub mod guard;
pub mod history;
pub mod init;
pub mod input;
pub mod interrupt;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod output;
pub mod plan;
pub mod provision;
pub mod pushgateway;
pub mod report;
pub mod saved;
pub mod sync;
#[cfg(test)]
pub(crate) mod test_support;
pub mod text;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use crate::cli::{Cli, Command, SyncArgs};
use crate::client::{Credentials, VeltClient};
use crate::emulator::{Emulator, EmulatorConfig};
use crate::engine::Mode;
use crate::error::Error;
use crate::interrupt::Interrupt;
use crate::output::Output;
use crate::sync::{Session, SyncResult};

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    output::init_logging(cli.log_format, cli.quiet, cli.verbose);
    let mut output = Output::new(cli.quiet, cli.log_format);
    output.all_changes = cli.verbose > 0;
    let result = match cli.command {
        Command::Sync(args) => return run_sync(&args, output, sync::Job::Sync).await.0,
        Command::Plan(args) => {
            let sync_args = sync::plans::plan_as_sync(&args);
            let job = sync::Job::Plan { out: &args.out };
            let (code, planned) = run_sync(&sync_args, output, job).await;
            let changes = planned.map_or(0, |p| p.changes());
            return if args.detailed_exitcode && code == error::exit::OK && changes > 0 {
                error::exit::CHANGES
            } else {
                code
            };
        }
        Command::Apply(args) => match sync::plans::apply_as_sync(&args) {
            Ok((sync_args, file)) => {
                return run_sync(&sync_args, output, sync::Job::Apply(&file))
                    .await
                    .0;
            }
            Err(e) => Err(e),
        },
        Command::Validate(args) => commands::validate(&args),
        Command::Emulator(args) => commands::serve_emulator(&args).await,
        Command::Completions { shell } => commands::completions(shell),
        Command::Manpage { out_dir } => commands::manpage(out_dir.as_deref()),
        Command::Init(args) => commands::init(&args),
    };
    exit_code(result, &output)
}

/// `sync` (or `plan`, `apply`) with the process around it: signals, credentials, the built-in
/// emulator, and the metrics file written at the end of every run. Returns the exit code and,
/// for `plan`, the plan's counts.
async fn run_sync(
    args: &SyncArgs,
    output: Output,
    job: sync::Job<'_>,
) -> (u8, Option<saved::Counts>) {
    let started = Instant::now();
    let interrupt = Interrupt::new();
    let notify = match notify::Notify::resolve(
        &args.ops.notify,
        args.ops.notify_file.as_deref(),
        args.ops.notify_on,
        args.ops.notify_format,
        args.access.allow_insecure_http,
    ) {
        Ok(n) => n,
        Err(e) => {
            let code = exit_code(Err(e), &output);
            output::say_summary(&output, None, code);
            return (code, None);
        }
    };
    let SyncResult {
        stats,
        result,
        ended,
        planned,
    } = match prepare(args, &interrupt).await {
        Ok((client, emulator)) => {
            let session = Session {
                client,
                interrupt,
                output,
            };
            let synced = sync::run(args, &session, job).await;
            if let Some(emu) = emulator {
                emu.stop().await;
            }
            synced
        }
        Err(e) => SyncResult {
            stats: metrics::RunStats::default(),
            result: Err(e),
            ended: None,
            planned: None,
        },
    };
    let code = exit_code(result, &output);
    let code = sync::publish_metrics(args, &stats, code, started.elapsed(), &output).await;
    output::say_summary(&output, ended.as_ref(), code);
    for warning in notify.send(code, ended.as_ref(), started.elapsed()).await {
        output.say("notify_failed", &format!("warning: {warning}"));
    }
    (code, planned)
}

/// Signals routed to `interrupt`, and the client to send with: to the built-in emulator
/// (started here), or to `--base-url` with credentials from the environment or files.
async fn prepare(
    args: &SyncArgs,
    interrupt: &Interrupt,
) -> Result<(Option<VeltClient>, Option<Emulator>), Error> {
    if !args.access.emulator {
        client::check_transport_security(&args.server.base_url, args.access.allow_insecure_http)?;
    }
    if let Some(push) = &args.ops.metrics_push {
        crate::credentials::check_push_security(push, args.access.allow_insecure_http)?;
    }
    // From here a signal is counted, not fatal: even while the input is read.
    interrupt.watch_signals()?;
    let version = args.server.api_version;
    if args.access.emulator {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let emu = Emulator::start(EmulatorConfig::default(), addr)
            .await
            .map_err(|e| Error::Runtime(format!("cannot start the built-in emulator: {e}")))?;
        tracing::info!(event = "emulator", base_url = emu.base_url().as_str());
        let credentials = Credentials::new("emulator", "emulator");
        let client = VeltClient::new(&emu.base_url(), version, &credentials, args.access.timeout)?;
        return Ok((Some(client), Some(emu)));
    }
    // A dry run in add mode sends nothing, so it needs no credentials.
    if args.dry_run && args.modes.mode == Mode::Add {
        return Ok((None, None));
    }
    let credentials = Credentials::resolve(
        args.access.api_key_file.as_deref(),
        args.access.auth_token_file.as_deref(),
        |var| std::env::var(var).ok(),
    )?;
    let client = VeltClient::new(
        &args.server.base_url,
        version,
        &credentials,
        args.access.timeout,
    )?;
    Ok((Some(client), None))
}

/// The exit code of a command's result; an error is said on stderr first.
fn exit_code(result: Result<u8, Error>, output: &Output) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            output.say("error", &format!("error: {e}"));
            e.exit_code()
        }
    }
}
