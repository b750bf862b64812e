//! Errors that stop a run, each mapped to a documented exit code in one place.
//!
//! Per-membership failures are not errors here: they are outcomes that flow into the report.

use std::path::PathBuf;

/// Exit codes, as documented in README.md.
pub mod exit {
    /// Every membership added (or planned, in a dry run).
    pub const OK: u8 = 0;
    /// At least one membership was not added.
    pub const INCOMPLETE: u8 = 1;
    /// Usage, input or configuration error; nothing was sent.
    pub const USAGE: u8 = 2;
    /// The API rejected the credentials (401/403) and the run stopped.
    pub const AUTH: u8 = 3;
    /// Interrupted by SIGINT; the report was written (or nothing was sent yet).
    pub const SIGINT: u8 = 130;
    /// Interrupted by SIGTERM; likewise.
    pub const SIGTERM: u8 = 143;
    /// `plan --detailed-exitcode`: the plan holds changes (0: it holds none).
    pub const CHANGES: u8 = 4;
}

/// How a run that sent requests ended: everything its exit code depends on, decided in
/// [`RunOutcome::exit_code`] alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// Every row of the report is done (added, unchanged, removed, planned or protected).
    pub rows_done: bool,
    /// The exit code of the signal that stopped the run, if one did.
    pub interrupted: Option<u8>,
    /// The API refused the credentials and the run stopped.
    pub credentials_refused: bool,
    /// Groups or organizations that could not be read where removals were asked for.
    pub unread: u64,
    /// The journal could not be written (a resume may resend what this run did).
    pub write_failed: bool,
}

impl RunOutcome {
    /// A signal's code first (the run was cut short, whatever else), then refused credentials
    /// (3), then anything not done (1), else 0.
    pub fn exit_code(&self) -> u8 {
        if let Some(code) = self.interrupted {
            return code;
        }
        if self.credentials_refused {
            return exit::AUTH;
        }
        if !self.rows_done || self.unread > 0 || self.write_failed {
            return exit::INCOMPLETE;
        }
        exit::OK
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be read as its format at all.
    #[error("{file}:{line}: {message}")]
    Input {
        file: String,
        line: u64,
        message: String,
    },

    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A flag or environment setting is missing or wrong.
    #[error("{0}")]
    Config(String),

    /// The machine would not give the run what it needs (signal handlers, a port for the
    /// emulator, the HTTP client).
    #[error("{0}")]
    Runtime(String),

    /// Standard output (or the like) could not be written.
    #[error("cannot write {what}: {source}")]
    Output {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// `--strict` and the input has invalid records.
    #[error("{0} invalid record(s) and --strict is set; nothing was sent (see the report)")]
    Strict(usize),

    /// The report could not be written after the requests were sent.
    #[error("could not write the report {}: {source}", path.display())]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input { .. }
            | Error::Io { .. }
            | Error::Config(_)
            | Error::Runtime(_)
            | Error::Output { .. }
            | Error::Strict(_) => exit::USAGE,
            // Requests went out: the run did not fully succeed, but it did not send nothing.
            Error::Report { .. } => exit::INCOMPLETE,
        }
    }

    /// A run whose report, metrics or journal could not be written did not fully succeed.
    pub fn at_least_incomplete(code: u8) -> u8 {
        if code == exit::OK {
            exit::INCOMPLETE
        } else {
            code
        }
    }

    pub fn input(file: &str, line: u64, message: impl Into<String>) -> Error {
        Error::Input {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_exit_code_follows_one_order() {
        let done = RunOutcome {
            rows_done: true,
            ..RunOutcome::default()
        };
        assert_eq!(done.exit_code(), exit::OK);
        for not_done in [
            RunOutcome::default(),
            RunOutcome { unread: 1, ..done },
            RunOutcome {
                write_failed: true,
                ..done
            },
        ] {
            assert_eq!(not_done.exit_code(), exit::INCOMPLETE, "{not_done:?}");
        }
        let refused = RunOutcome {
            credentials_refused: true,
            unread: 2,
            ..RunOutcome::default()
        };
        assert_eq!(refused.exit_code(), exit::AUTH);
        let stopped = RunOutcome {
            interrupted: Some(exit::SIGTERM),
            ..refused
        };
        assert_eq!(stopped.exit_code(), exit::SIGTERM);
    }
}
