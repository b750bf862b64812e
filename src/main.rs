//! The `velt-group-sync` binary: parse the command line, run the library, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = velt_group_sync::cli::Cli::parse();
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
