//! The `velt-group-sync` binary: parse the command line, run the library, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    use velt_group_sync::input::sheet;
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == sheet::WORKER_ARG) {
        // A child reading a workbook under its limits (see `input::sheet`).
        return sheet::worker_main(args.next().and_then(|s| s.into_string().ok()));
    }
    if let Ok(exe) = std::env::current_exe() {
        sheet::use_worker(exe);
    }
    use velt_group_sync::cli::config::{self, ArgsError};
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(ArgsError::Config(message)) => {
            eprintln!("velt-group-sync: error: {message}");
            return ExitCode::from(velt_group_sync::error::exit::USAGE);
        }
        Err(ArgsError::Clap(e, config)) => {
            let code = e.exit_code();
            let _ = e.print();
            if let Some(path) = config.filter(|_| code != 0) {
                eprintln!(
                    "velt-group-sync: note: options also came from {}; a bad value may be there",
                    path.display()
                );
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("velt-group-sync: error: cannot start the async runtime: {e}");
            return ExitCode::from(velt_group_sync::error::exit::USAGE);
        }
    };
    let code = runtime.block_on(velt_group_sync::run(cli));
    // A reader thread stopped by a signal may still sit in a blocking read: do not wait.
    runtime.shutdown_background();
    ExitCode::from(code)
}
