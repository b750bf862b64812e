//! A record as a reader found it, and the one place that turns a record into memberships, an
//! invalid row, or nothing (a row of a previous report that `--only-status` leaves out).
//! Readers only find fields; what the fields mean is decided here.

use std::borrow::Cow;

use super::{InputOptions, InputStats};
use crate::plan::Sink;

/// The users a record names.
#[derive(Debug)]
pub(crate) enum Users<'a> {
    /// One user field (a CSV column, a JSON string).
    One(&'a str),
    /// A JSON list (or a lone number): each an ID, or why it is not one.
    Many(Vec<Result<Cow<'a, str>, String>>),
    /// No user field at all.
    Missing,
}

/// One record's fields, found by the column resolver.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub line: u64,
    pub org: Option<Cow<'a, str>>,
    pub group: Option<Cow<'a, str>>,
    pub users: Users<'a>,
    pub group_name: Option<&'a str>,
    pub status: Option<&'a str>,
    pub action: Option<&'a str>,
    /// Why the record cannot be used, found while reading it (a row of the wrong width, a
    /// field of the wrong JSON type).
    pub problem: Option<String>,
}

impl<'a> Record<'a> {
    pub fn new(line: u64) -> Record<'a> {
        Record {
            line,
            org: None,
            group: None,
            users: Users::Missing,
            group_name: None,
            status: None,
            action: None,
            problem: None,
        }
    }
}

/// A report row's `action`: rows that removed a member are left out when a report is input.
fn is_removal(action: &str) -> bool {
    action.trim() == "remove"
}

/// Turns `record` into memberships, an invalid row, or nothing.
pub(crate) fn take(
    record: Record<'_>,
    opts: &InputOptions,
    sink: &mut impl Sink,
    stats: &mut InputStats,
) {
    let line = record.line;
    if let Some(wanted) = &opts.only_status
        && (record.status.is_some() || record.problem.is_none())
    {
        match record.status {
            Some(s)
                if !wanted.iter().any(|w| w == s.trim())
                    || record.action.is_some_and(is_removal) =>
            {
                stats.skipped += 1;
                return;
            }
            Some(_) => {}
            None => {
                stats.records += 1;
                sink.reject_record(
                    line,
                    None,
                    None,
                    "",
                    "no `status` (--only-status needs a previous report as input)".into(),
                );
                return;
            }
        }
    }
    stats.records += 1;
    let org = record.org.as_deref();
    let group = record.group.as_deref();
    let first_user = match &record.users {
        Users::One(u) => u,
        _ => "",
    };
    if let Some(problem) = record.problem {
        sink.reject_record(line, org, group, first_user, problem);
        return;
    }
    match &record.users {
        Users::One(user) => sink.record(line, org, group, user),
        Users::Many(users) => {
            for user in users {
                match user {
                    Ok(u) => sink.record(line, org, group, u),
                    Err(why) => sink.reject_record(line, org, group, "", why.clone()),
                }
            }
        }
        Users::Missing => {
            sink.reject_record(line, org, group, "", "no userId or userIds".into());
            return;
        }
    }
    if let Some(name) = record.group_name
        && !name.trim().is_empty()
    {
        sink.group_name(org, group, name);
    }
}
