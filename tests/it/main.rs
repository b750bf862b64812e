//! The integration tests, as one binary: one link instead of seventeen, and tests that wait
//! (on a rate, a latency, a child process) overlap with those that compute. `tests/logs.rs` is
//! a binary of its own: the log subscriber it installs is process-wide.

mod common;

mod api;
mod cli;
mod config;
mod deploy;
mod emulator;
mod formats;
mod hardening;
mod hostile;
mod hostile_workbooks;
mod hr;
mod init;
mod nights;
mod notify;
mod ops;
mod paced;
mod plan_apply;
mod provision;
mod quota;
mod reconcile;
mod removal_safety;
mod resilience;
