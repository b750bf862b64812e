//! `--metrics-file`: Prometheus text-format metrics about the last run, for node_exporter's
//! textfile collector, written atomically at the end of every run (failed and interrupted
//! ones too).
//!
//! Every value describes the last run, so all are gauges (a `_total` counter would reset with
//! each run and confuse `rate()`). The time of the last fully successful run is carried over
//! from the previous file when this run was not one, so an alert on its age fires when runs
//! keep failing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::files::Destination;
use crate::outcome::Counts;

/// The temporary file is named like this until it is renamed into place.
const TEMP_PREFIX: &str = ".velt-group-sync-metrics";

const PREFIX: &str = "velt_group_sync";
pub(crate) const LAST_SUCCESS: &str = "velt_group_sync_last_success_timestamp_seconds";

/// What a run did, filled in as far as it got.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub counts: Counts,
    /// Requests by HTTP status; `none` for requests that got no answer.
    pub requests: BTreeMap<String, u64>,
    pub retries: u64,
    /// Requests answered 429 (or `RESOURCE_EXHAUSTED`).
    pub throttled: u64,
    /// Time the run waited on throttling.
    pub throttled_for: Duration,
    /// A dry run sends no writes, so it never counts as a successful sync.
    pub dry_run: bool,
    /// Records left out by `--include` / `--exclude`.
    pub filtered: u64,
    /// Memberships left out because the group map does not list their group.
    pub unmapped_skipped: u64,
    /// `--provision-users`: what happened to organization users.
    pub users: Option<crate::provision::model::UserCounts>,
}

/// Writes the metrics file for a run that ended with `exit_code` after `duration`.
pub fn write(
    path: &Path,
    stats: &RunStats,
    exit_code: u8,
    duration: Duration,
    now: SystemTime,
) -> Result<(), Error> {
    let previous = if succeeded(stats, exit_code) {
        None
    } else {
        previous_last_success(path)
    };
    let text = text(stats, exit_code, duration, now, previous);
    let io_err = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: crate::files::unwritable(path, &source, "the metrics file", "--metrics-file"),
    };
    Destination::prepare(path, TEMP_PREFIX, crate::files::READABLE)
        .and_then(|d| d.commit(|out| out.write_all(text.as_bytes())))
        .map_err(io_err)
}

/// Whether the run counts as a success: it exited 0 and was no dry run.
pub(crate) fn succeeded(stats: &RunStats, exit_code: u8) -> bool {
    exit_code == 0 && !stats.dry_run
}

/// The metrics of a run that ended `now`; `previous` is the last success time carried over
/// when this run was not one.
pub(crate) fn text(
    stats: &RunStats,
    exit_code: u8,
    duration: Duration,
    now: SystemTime,
    previous: Option<f64>,
) -> String {
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let success = succeeded(stats, exit_code);
    let last_success = if success { Some(now_s) } else { previous };
    render(stats, exit_code, duration, now_s, success, last_success)
}

/// Fails now, before anything is sent, if the metrics file's directory cannot take it.
pub fn check_writable(path: &Path) -> Result<(), Error> {
    Destination::prepare(path, TEMP_PREFIX, crate::files::READABLE)
        .map(drop)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source: crate::files::unwritable(path, &source, "the metrics file", "--metrics-file"),
        })
}

/// The last success time of the file a previous run wrote, if any.
fn previous_last_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.split_once(' ')?;
            (name == LAST_SUCCESS).then(|| value.trim().parse::<f64>().ok())?
        })
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// One gauge: its name (after the prefix), help text and samples (labels, value).
type Gauge = (&'static str, &'static str, Vec<(String, String)>);

fn render(
    stats: &RunStats,
    exit_code: u8,
    duration: Duration,
    now_s: f64,
    success: bool,
    last_success: Option<f64>,
) -> String {
    let mut out = String::new();
    let one = |v: String| vec![(String::new(), v)];
    let mut gauges = count_gauges(stats);
    gauges.extend([
        (
            "throttled_seconds",
            "Time the last run waited on throttling (pauses after 429s and learned quota windows).",
            one(format!("{:.3}", stats.throttled_for.as_secs_f64())),
        ),
        (
            "duration_seconds",
            "Wall time of the last run.",
            one(format!("{:.3}", duration.as_secs_f64())),
        ),
        (
            "exit_code",
            "Exit code of the last run (0 all done, 1 incomplete, 2 usage or input, 3 credentials, 130/143 interrupted).",
            one(exit_code.to_string()),
        ),
        (
            "last_run_success",
            "1 if the last run sent everything and exited 0 (a dry run never counts), else 0.",
            one(u8::from(success).to_string()),
        ),
        (
            "last_run_timestamp_seconds",
            "Unix time at which the last run ended.",
            one(format!("{now_s:.3}")),
        ),
    ]);
    if let Some(t) = last_success {
        gauges.push((
            "last_success_timestamp_seconds",
            "Unix time at which the last fully successful run ended.",
            one(format!("{t:.3}")),
        ));
    }
    for (name, help, samples) in gauges {
        let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{PREFIX}_{name}{labels} {value}");
        }
    }
    out
}

/// Samples labelled `{label="key"}`, one per count.
fn labelled(label: &str, counts: &[(&str, u64)]) -> Vec<(String, String)> {
    counts
        .iter()
        .map(|(k, n)| (format!("{{{label}=\"{k}\"}}"), n.to_string()))
        .collect()
}

/// The gauges that count what the run did: rows by status, requests, retries, throttles,
/// what the input left out, organization users.
fn count_gauges(stats: &RunStats) -> Vec<Gauge> {
    let c = &stats.counts;
    let one = |v: u64| vec![(String::new(), v.to_string())];
    let by_status = [
        ("added", c.added),
        ("unchanged", c.unchanged),
        ("removed", c.removed),
        ("protected", c.protected),
        ("failed", c.failed),
        ("unconfirmed", c.unconfirmed),
        ("invalid", c.invalid),
        ("not_attempted", c.not_attempted),
        ("planned", c.planned),
    ];
    let requests: Vec<(String, String)> = stats
        .requests
        .iter()
        .map(|(code, n)| (format!("{{code=\"{code}\"}}"), n.to_string()))
        .collect();
    let mut gauges: Vec<Gauge> = vec![
        (
            "memberships",
            "Rows of the last run's report, by status.",
            labelled("status", &by_status),
        ),
        (
            "requests",
            "Requests the last run sent, by HTTP status of the answer (none: no answer).",
            requests,
        ),
        (
            "retries",
            "Requests the last run sent again after throttling, faults or lost answers.",
            one(stats.retries),
        ),
        (
            "throttled_requests",
            "Requests of the last run answered 429 RESOURCE_EXHAUSTED.",
            one(stats.throttled),
        ),
        (
            "records_filtered",
            "Input records the last run left out by --include / --exclude.",
            one(stats.filtered),
        ),
        (
            "unmapped_skipped",
            "Memberships the last run left out because --group-map does not list their group (--unmapped skip).",
            one(stats.unmapped_skipped),
        ),
    ];
    if let Some(u) = &stats.users {
        let by_result = [
            ("created", u.created),
            ("updated", u.updated),
            ("unchanged", u.unchanged),
            ("removed", u.removed),
            ("protected", u.protected),
            ("failed", u.failed),
        ];
        gauges.push((
            "users",
            "Organization users of the last run (--provision-users), by what happened to them (failed: not done).",
            labelled("result", &by_result),
        ));
    }
    gauges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_success_is_carried_over_from_the_previous_file_only_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let stats = RunStats::default();
        write(&path, &stats, 0, Duration::from_secs(1), at(1_000)).unwrap();
        write(&path, &stats, 1, Duration::from_secs(1), at(2_000)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\nvelt_group_sync_last_success_timestamp_seconds 1000.000\n"));
        assert!(text.contains("\nvelt_group_sync_last_run_timestamp_seconds 2000.000\n"));
        let dry = RunStats {
            dry_run: true,
            ..RunStats::default()
        };
        write(&path, &dry, 0, Duration::from_secs(1), at(3_000)).unwrap();
        assert_eq!(
            previous_last_success(&path),
            Some(1000.0),
            "a dry run is no sync"
        );
        write(&path, &stats, 0, Duration::from_secs(1), at(4_000)).unwrap();
        assert_eq!(previous_last_success(&path), Some(4000.0));
    }
}
