//! The commands besides `sync`, `plan` and `apply`: `init`, `validate` (read and check an input as `sync` would), the
//! standalone `emulator`, and the generated completions and man page.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::cli::{Cli, Command, EmulatorArgs, InitArgs, ShapeArg, ValidateArgs};
use crate::client::{API_KEY_ENV, AUTH_TOKEN_ENV};
use crate::emulator::{Emulator, EmulatorConfig, WindowShape};
use crate::error::{Error, exit};
use crate::output::{plan_counts, to_stderr};
use crate::sync::read_plan;
use crate::text::escape_controls;

/// The `validate` command: read and check the input as `sync` would, print each invalid
/// record and the plan's counts. 0 clean, 1 invalid records, 2 unreadable (an `Err`).
pub fn validate(args: &ValidateArgs) -> Result<u8, Error> {
    use std::io::Write;
    let plan = read_plan(&args.input)?;
    let name = args.input.input.display().to_string();
    let name = if name == "-" { "<stdin>" } else { &name };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let write_err = |source| Error::Output {
        what: "standard output",
        source,
    };
    for bad in &plan.invalid {
        writeln!(
            out,
            "{name}:{}: {} (organizationId `{}`, organizationUserGroupId `{}`, userId `{}`)",
            bad.line,
            bad.reason,
            escape_controls(&bad.org),
            escape_controls(&bad.group),
            escape_controls(&bad.user)
        )
        .map_err(write_err)?;
    }
    for ((column, value), records) in &plan.unmapped {
        writeln!(
            out,
            "{name}: group `{}` (column {}) is not in the group map: {records} record(s)",
            escape_controls(value),
            escape_controls(column),
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

/// The `init` command: write a configuration for an export, then check it by reading the
/// export with it as `validate` would, and say what to do next.
pub fn init(args: &InitArgs) -> Result<u8, Error> {
    use crate::input::{Format, FormatArg};
    let reading = crate::init::Reading {
        encoding: args.encoding,
        sheet: args.sheet.clone(),
        format: match args.format {
            FormatArg::Auto => None,
            FormatArg::Csv => Some(Format::Csv),
            FormatArg::Json => Some(Format::Json),
            FormatArg::Jsonl => Some(Format::Jsonl),
            FormatArg::Xlsx => Some(Format::Xlsx),
        },
    };
    let request = crate::init::Request {
        export: &args.export,
        org: args.org.as_deref(),
        out: &args.out,
        reading,
    };
    let written = crate::init::run(&request).map_err(Error::Config)?;
    let mut text = written.findings.clone();
    text.push_str(&format!("wrote {}", written.config.display()));
    match &written.map {
        Some((map, true)) => text.push_str(&format!(
            " and {} (fill in its organizationUserGroupId column)",
            map.display()
        )),
        Some((map, false)) => text.push_str(&format!(
            "; {} was there already and was left as it is",
            map.display()
        )),
        None => {}
    }
    text.push('\n');
    text.push_str(&format!(
        "check: {}\n",
        check(&args.export, &written.config)
    ));
    let export = args.export.display();
    let config = written.config.display();
    text.push_str(&format!(
        "next: review {config}{}, then\n  velt-group-sync validate {export} --config {config}\n  velt-group-sync plan {export} --config {config} --out plan.json\n",
        if matches!(written.map, Some((_, true))) { " and the group map" } else { "" }
    ));
    print_bytes(text.as_bytes())
}

/// The export read with the new configuration, as `validate` reads it: its counts, or why not.
fn check(export: &std::path::Path, config: &std::path::Path) -> String {
    let argv: Vec<std::ffi::OsString> = vec![
        "velt-group-sync".into(),
        "validate".into(),
        export.into(),
        "--config".into(),
        config.into(),
    ];
    let args = match crate::cli::config::parse(argv) {
        Ok(Cli {
            command: Command::Validate(args),
            ..
        }) => args,
        Ok(_) => return "the configuration did not read as validate's options".into(),
        Err(crate::cli::config::ArgsError::Config(e)) => return e,
        Err(crate::cli::config::ArgsError::Clap(e, _)) => {
            return e.to_string().lines().next().unwrap_or("").to_string();
        }
    };
    match read_plan(&args.input) {
        Ok(plan) => format!(
            "read with it: {} memberships in {} groups, {} invalid records",
            plan.memberships.len(),
            plan.groups.len(),
            plan.invalid.len()
        ),
        Err(e) => format!("not readable with it yet: {e}"),
    }
}

/// The `emulator` command: serve until interrupted.
pub async fn serve_emulator(args: &EmulatorArgs) -> Result<u8, Error> {
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
        rate_burst: args.rate_burst,
        window_limit: args.window_limit,
        window_shape: match args.window_shape {
            ShapeArg::Aligned => WindowShape::Aligned(Duration::ZERO),
            ShapeArg::Anchored => WindowShape::Anchored,
            ShapeArg::Sliding => WindowShape::Sliding,
            ShapeArg::Bucket => WindowShape::Bucket,
        },
        count_delay: args.count_delay,
        seed: args.seed,
        omit_retry_after: args.no_retry_after,
        max_user_ids: args.max_user_ids,
        latency: args.latency,
        unavailable_fraction: args.unavailable_fraction,
        internal_fraction: args.internal_fraction,
        drop_before_fraction: args.drop_before_fraction,
        drop_after_fraction: args.drop_after_fraction,
        invalid_user_marker: args.invalid_user_marker.clone(),
        groups_must_exist: args.groups_must_exist,
        require_org_users: args.require_org_users,
        ..EmulatorConfig::default()
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let emu = Emulator::start(config, addr)
        .await
        .map_err(|e| Error::Runtime(format!("cannot listen on {addr}: {e}; try another --port")))?;
    to_stderr(&format!(
        "velt-group-sync: emulator listening on {} (Ctrl-C to stop)\n",
        emu.base_url()
    ));
    let _ = tokio::signal::ctrl_c().await;
    emu.stop().await;
    Ok(exit::OK)
}

/// Shell completions for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<u8, Error> {
    use clap::CommandFactory;
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "velt-group-sync", &mut text);
    print_bytes(&text)
}

/// The man page, on stdout.
pub fn manpage(out_dir: Option<&std::path::Path>) -> Result<u8, Error> {
    use clap::CommandFactory;
    let render = |command: clap::Command| {
        let mut text = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut text)
            .map(|()| text)
            .map_err(|source| Error::Output {
                what: "the man page",
                source,
            })
    };
    let top = Cli::command();
    let Some(dir) = out_dir else {
        return print_bytes(&render(top)?);
    };
    let mut pages = vec![("velt-group-sync.1".to_string(), render(top.clone())?)];
    for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("velt-group-sync-{}", sub.get_name());
        let page = render(sub.clone().name(name.clone()).bin_name(name.clone()))?;
        pages.push((format!("{name}.1"), page));
    }
    for (file, text) in &pages {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| {
            Error::Config(format!(
                "{}: cannot write the man page ({e}); create the folder or choose another with --out-dir",
                path.display()
            ))
        })?;
    }
    println!(
        "wrote {} man pages to {}: velt-group-sync(1) and one per command, e.g. velt-group-sync-sync(1)",
        pages.len(),
        dir.display()
    );
    Ok(exit::OK)
}

/// Writes generated text to stdout; a reader that stops early (`| head`) is no error.
fn print_bytes(text: &[u8]) -> Result<u8, Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output {
            what: "standard output",
            source: e,
        }),
        _ => Ok(exit::OK),
    }
}
