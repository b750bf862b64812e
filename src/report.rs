//! The report: one row per unique membership plus one per invalid record, in input order,
//! as CSV, JSON or JSON Lines, written atomically (a temporary file in the same directory,
//! renamed into place) so that a crash never leaves half a report.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::files::Destination;
use serde::Serialize;

use crate::error::Error;
use crate::ledger::{Ledger, RowRef, Subject};
use crate::outcome::{Counts, Status};
use crate::plan::Plan;
use crate::provision::model::UserCounts;

/// The report's columns, in order. The first three are input column names, so a CSV report
/// is itself valid input. New columns come last (`action` after the first nine, `user` after
/// it), so that readers of the earlier ones keep working.
pub const COLUMNS: [&str; 11] = [
    "organizationId",
    "organizationUserGroupId",
    "userId",
    "status",
    "message",
    "errorStatus",
    "httpStatus",
    "attempts",
    "line",
    "action",
    "user",
];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row<'a> {
    pub organization_id: &'a str,
    pub organization_user_group_id: &'a str,
    pub user_id: &'a str,
    pub status: &'static str,
    pub message: Option<&'a str>,
    pub error_status: Option<&'a str>,
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// The input line; none for a removal (it comes from the server, not the input).
    pub line: Option<u64>,
    /// What the mode called for: `add`, `remove`, `remove-user` (a user removed from its
    /// organization), or `none` (already a member, or invalid).
    pub action: &'static str,
    /// `--provision-users`: what happened to the row's user in its organization (`created`,
    /// `updated`, `unchanged`, `removed`, `failed`, ...); none without provisioning.
    pub user: Option<&'static str>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub memberships: u64,
    pub added: u64,
    pub failed: u64,
    pub unconfirmed: u64,
    pub invalid: u64,
    pub not_attempted: u64,
    pub planned: u64,
    /// Of `planned`, the removals (a dry run's "would be removed").
    #[serde(skip_serializing_if = "is_zero")]
    pub planned_removals: u64,
    /// A dry run: counts say what would be done.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub unchanged: u64,
    pub removed: u64,
    /// Removals `--protect-users` / `--protect-groups` kept from being sent.
    pub protected: u64,
    pub duplicates: u64,
    /// Records left out by `--include` / `--exclude` (not rows of the report).
    pub filtered: u64,
    /// Memberships left out because the group map does not list their group.
    pub unmapped_skipped: u64,
    /// `--provision-users`: what happened to organization users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<UserCounts>,
    pub requests: u64,
    pub elapsed_ms: u64,
    /// Time the run waited on throttling (429 / RESOURCE_EXHAUSTED).
    pub throttled_ms: u64,
}

impl Summary {
    pub fn new(counts: Counts, duplicates: u64, requests: u64, elapsed: Duration) -> Summary {
        Summary {
            memberships: counts.memberships(),
            added: counts.added,
            failed: counts.failed,
            unconfirmed: counts.unconfirmed,
            invalid: counts.invalid,
            not_attempted: counts.not_attempted,
            planned: counts.planned,
            planned_removals: 0,
            dry_run: false,
            unchanged: counts.unchanged,
            removed: counts.removed,
            protected: counts.protected,
            duplicates,
            filtered: 0,
            unmapped_skipped: 0,
            users: None,
            requests,
            elapsed_ms: elapsed.as_millis() as u64,
            throttled_ms: 0,
        }
    }
}

/// What a run that wrote its report says at the end.
#[derive(Debug, Clone)]
pub struct Ended {
    pub summary: Summary,
    /// The report's path (`-`: standard output).
    pub report: String,
    /// The most frequent reasons the server gave for failed rows.
    pub refusals: Vec<Refusal>,
    /// The first changes made (or, in a dry run, planned), for notifications.
    pub changes: Vec<String>,
}

/// One reason the server gave, with how many rows it refused and a few of their users.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refusal {
    pub message: String,
    pub count: u64,
    pub examples: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

/// Counts every row's status. Rows of users removed from their organization count only
/// when they did not go through (their successes are `UserCounts::removed`).
pub fn count(plan: &Plan, ledger: &Ledger) -> Counts {
    let mut counts = Counts::default();
    for r in ledger.rows() {
        match r.subject {
            Subject::Account { .. } => {}
            // Users removed from their organizations count only when they did not go.
            Subject::Leaver { .. } if r.outcome.status.is_success() => {}
            _ => counts.add(r.outcome.status),
        }
    }
    for _ in &plan.invalid {
        counts.add(Status::Invalid);
    }
    counts
}

/// Calls `f` with every row, in input order; users removed from their organizations last.
pub fn for_each_row<E>(
    plan: &Plan,
    ledger: &Ledger,
    mut f: impl FnMut(&Row<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut invalid = plan.invalid.iter().peekable();
    let provisioning = plan.accounts.is_some();
    let mut memberships = 0;
    for r in ledger.rows() {
        match r.subject {
            Subject::Member { .. } | Subject::Stray { .. } => {}
            _ => continue,
        }
        while let Some(bad) = invalid.next_if(|bad| bad.before <= memberships) {
            f(&invalid_row(bad))?;
        }
        memberships += 1;
        f(&row_of(plan, ledger, r, provisioning))?;
    }
    for bad in invalid {
        f(&invalid_row(bad))?;
    }
    for r in ledger.rows() {
        if matches!(r.subject, Subject::Leaver { .. }) {
            f(&row_of(plan, ledger, r, provisioning))?;
        }
    }
    Ok(())
}

/// The report row of a ledger row (a membership, a removal, a user leaving).
fn row_of<'a>(plan: &'a Plan, ledger: &'a Ledger, r: RowRef<'a>, provisioning: bool) -> Row<'a> {
    let (org, group) = ledger.place(plan, r.index);
    let o = r.outcome;
    let detail = o.detail.as_deref();
    let leaver = matches!(r.subject, Subject::Leaver { .. });
    Row {
        organization_id: org,
        organization_user_group_id: group,
        user_id: ledger.user(plan, r.index),
        status: o.status.as_str(),
        message: detail.map(|d| d.message.as_str()),
        error_status: detail.and_then(|d| d.error_status.as_deref()),
        http_status: detail.and_then(|d| d.http_status),
        attempts: o.attempts,
        line: match r.subject {
            Subject::Member { m, .. } => Some(plan.memberships[m as usize].line()),
            _ => None,
        },
        action: if leaver {
            "remove-user"
        } else if o.status == Status::Unchanged {
            "none"
        } else if ledger.is_removal(r.index) {
            "remove"
        } else {
            "add"
        },
        user: ledger.user_column(r.index).or(provisioning.then_some("")),
    }
}

fn invalid_row(bad: &crate::plan::Invalid) -> Row<'_> {
    Row {
        organization_id: &bad.org,
        organization_user_group_id: &bad.group,
        user_id: &bad.user,
        status: Status::Invalid.as_str(),
        message: Some(&bad.reason),
        error_status: None,
        http_status: None,
        attempts: 0,
        line: Some(bad.line),
        action: "none",
        user: None,
    }
}

/// `--report-format`: CSV, or a JSON document, or JSON Lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
    Jsonl,
}

/// Where the report goes. Created before anything is sent, so that an unwritable report
/// path fails the run while nothing has happened yet.
pub struct ReportTarget {
    path: PathBuf,
    format: ReportFormat,
    /// `None` for standard output.
    file: Option<Destination>,
}

impl ReportTarget {
    pub fn prepare(path: &Path, format: Option<ReportFormat>) -> Result<ReportTarget, Error> {
        let format = format.unwrap_or_else(|| format_for(path));
        if path.as_os_str() == "-" {
            return Ok(ReportTarget {
                path: path.to_path_buf(),
                format,
                file: None,
            });
        }
        let file = Destination::prepare(path, ".velt-group-sync-report", crate::files::PRIVATE)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source: crate::files::unwritable(path, &source, "the report", "--report path"),
            })?;
        Ok(ReportTarget {
            path: path.to_path_buf(),
            format,
            file: Some(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_stdout(&self) -> bool {
        self.file.is_none()
    }

    pub fn write(self, plan: &Plan, ledger: &Ledger, summary: &Summary) -> Result<(), Error> {
        let report_err = |source: io::Error| Error::Report {
            path: self.path.clone(),
            source,
        };
        match self.file {
            None => {
                let stdout = io::stdout();
                let mut out = BufWriter::new(stdout.lock());
                write_rows(&mut out, self.format, plan, ledger, summary)
                    .and_then(|()| out.flush())
                    .map_err(report_err)
            }
            Some(file) => file
                .commit(|out| write_rows(out, self.format, plan, ledger, summary))
                .map_err(report_err),
        }
    }
}

fn format_for(path: &Path) -> ReportFormat {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => ReportFormat::Json,
        Some("jsonl" | "ndjson") => ReportFormat::Jsonl,
        _ => ReportFormat::Csv,
    }
}

/// One CSV record (RFC 4180): a field is quoted only when it holds a comma, a quote or a line
/// break. Written by hand because the csv crate's general writer was a fifth of a large
/// dry run's time. A field a spreadsheet would run as a formula gets a `'` before it (what
/// OWASP advises; admins open the report in Excel), which re-feeding the report takes off.
fn write_csv_record<W: Write>(out: &mut W, fields: &[&str]) -> io::Result<()> {
    let mut guarded = String::new();
    for (i, &field) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        let field = if crate::text::looks_like_formula(field) {
            guarded.clear();
            guarded.push('\'');
            guarded.push_str(field);
            guarded.as_str()
        } else {
            field
        };
        let bytes = field.as_bytes();
        if bytes
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        {
            out.write_all(b"\"")?;
            for part in bytes.split_inclusive(|&b| b == b'"') {
                out.write_all(part)?;
                if part.ends_with(b"\"") {
                    out.write_all(b"\"")?;
                }
            }
            out.write_all(b"\"")?;
        } else {
            out.write_all(bytes)?;
        }
    }
    out.write_all(b"\n")
}

/// Writes the whole report to `out`.
pub fn write_rows<W: Write>(
    out: &mut W,
    format: ReportFormat,
    plan: &Plan,
    ledger: &Ledger,
    summary: &Summary,
) -> io::Result<()> {
    match format {
        ReportFormat::Csv => {
            write_csv_record(out, &COLUMNS)?;
            let mut numbers = [
                itoa::Buffer::new(),
                itoa::Buffer::new(),
                itoa::Buffer::new(),
            ];
            for_each_row(plan, ledger, |row| {
                let [http, attempts, line] = &mut numbers;
                write_csv_record(
                    out,
                    &[
                        row.organization_id,
                        row.organization_user_group_id,
                        row.user_id,
                        row.status,
                        row.message.unwrap_or(""),
                        row.error_status.unwrap_or(""),
                        row.http_status.map_or("", |h| http.format(h)),
                        attempts.format(row.attempts),
                        row.line.map_or("", |l| line.format(l)),
                        row.action,
                        row.user.unwrap_or(""),
                    ],
                )
            })
        }
        ReportFormat::Jsonl => for_each_row(plan, ledger, |row| {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")
        }),
        ReportFormat::Json => {
            out.write_all(b"{\"summary\": ")?;
            serde_json::to_writer(&mut *out, summary)?;
            out.write_all(b",\n \"results\": [")?;
            let mut first = true;
            for_each_row(plan, ledger, |row| {
                out.write_all(if first { b"\n  " } else { b",\n  " })?;
                first = false;
                serde_json::to_writer(&mut *out, row).map_err(io::Error::from)
            })?;
            out.write_all(b"\n]}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed_and_read_back_the_same() {
        let fields = [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "",
            "tab\tok",
            "cr\r",
        ];
        let mut out = Vec::new();
        write_csv_record(&mut out, &fields).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,tab\tok,\"cr\r\"\n"
        );
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_slice());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(record.iter().collect::<Vec<_>>(), fields);
    }
}
