//! A record as a reader found it, and the mapping stage: the one place that turns a record into
//! memberships, an invalid row, or nothing (a row of a previous report that `--only-status`
//! leaves out, a record `--include` / `--exclude` filters). Readers only find fields; what the
//! fields mean is decided here.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::columns::{Field, Positions, Resolver};
use super::mapping::Unmapped;
use super::mapping::fold;
use super::{InputOptions, InputStats};
use crate::plan::Sink;
use crate::provision::profile::Fields;
use crate::text::clip;

/// The values a field holds.
#[derive(Debug)]
pub(crate) enum Values<'a> {
    /// One value (a CSV cell, a JSON string or number).
    One(Cow<'a, str>),
    /// A JSON list (or a lone non-string): each a value, or why it is not one.
    Many(Vec<Result<Cow<'a, str>, String>>),
    /// No such field.
    Missing,
}

/// One group column of a record: its name as the input writes it, and its values.
#[derive(Debug)]
pub(crate) struct GroupCell<'a> {
    pub column: &'a str,
    pub values: Values<'a>,
}

/// One record's fields, found by the column resolver.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub line: u64,
    pub org: Option<Cow<'a, str>>,
    /// One per group column (one when `--group-column` is given once or not at all).
    pub groups: SmallVec<[GroupCell<'a>; 1]>,
    pub users: Values<'a>,
    pub group_name: Option<&'a str>,
    /// `--provision-users`: the user's name (or its two halves) and e-mail.
    pub name: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub status: Option<&'a str>,
    pub action: Option<&'a str>,
    /// The value of each `--include` / `--exclude` rule's column, in rule order.
    pub filters: SmallVec<[Option<Cow<'a, str>>; 2]>,
    /// Why the record cannot be used, found while reading it (a row of the wrong width, a
    /// field of the wrong JSON type).
    pub problem: Option<String>,
}

impl Values<'_> {
    /// Each value as the CSV report had it before guarding it against spreadsheet formulas.
    fn unquote_formulas(&mut self) {
        let unquote = |v: &mut Cow<'_, str>| {
            let bare = crate::text::unquote_formula(v);
            if bare.len() != v.len() {
                *v = Cow::Owned(bare.to_string());
            }
        };
        match self {
            Values::One(v) => unquote(v),
            Values::Many(list) => list.iter_mut().flatten().for_each(unquote),
            Values::Missing => {}
        }
    }
}

impl<'a> Record<'a> {
    /// A previous report's row (`--only-status`): its IDs as they were before the report
    /// guarded them against spreadsheet formulas.
    fn unquote_formulas(&mut self) {
        if let Some(org) = &mut self.org {
            let bare = crate::text::unquote_formula(org);
            if bare.len() != org.len() {
                *org = Cow::Owned(bare.to_string());
            }
        }
        for cell in &mut self.groups {
            cell.values.unquote_formulas();
        }
        self.users.unquote_formulas();
    }

    pub fn new(line: u64) -> Record<'a> {
        Record {
            line,
            org: None,
            groups: SmallVec::new(),
            users: Values::Missing,
            group_name: None,
            name: None,
            first_name: None,
            last_name: None,
            email: None,
            status: None,
            action: None,
            filters: SmallVec::new(),
            problem: None,
        }
    }

    /// The first group value as written, for an invalid row.
    fn first_group(&self) -> Option<&str> {
        match self.groups.first().map(|c| &c.values) {
            Some(Values::One(v)) => Some(v),
            _ => None,
        }
    }
}

/// Where a table's fields are (a CSV header's, a sheet's): what `Layout::record` reads each
/// row by.
pub(crate) struct Layout<'n> {
    org: Option<usize>,
    user: usize,
    group_name: Option<usize>,
    /// Name, first name, last name, e-mail (`--provision-users`).
    profile: [Option<usize>; 4],
    status: Option<usize>,
    action: Option<usize>,
    groups: Vec<(usize, &'n str)>,
    filters: Vec<usize>,
}

impl<'n> Layout<'n> {
    /// `None` without a user column.
    pub fn new(
        resolver: &Resolver<'_>,
        found: &Positions,
        names: &'n [String],
        opts: &InputOptions,
    ) -> Option<Layout<'n>> {
        Some(Layout {
            org: found.get(Field::Org),
            user: found.get(Field::User)?,
            group_name: found.get(Field::GroupName),
            profile: [Field::Name, Field::FirstName, Field::LastName, Field::Email]
                .map(|f| found.get(f)),
            status: found.get(Field::Status),
            action: found.get(Field::Action),
            groups: (0..resolver.group_count())
                .filter_map(|i| found.get(Field::Group(i)))
                .map(|at| (at, names[at].as_str()))
                .collect(),
            filters: (0..opts.mapping.filters.len())
                .filter_map(|i| found.get(Field::Filter(i)))
                .collect(),
        })
    }

    /// The record of one row, whose cell `i` is `field(i)`.
    pub fn record<'a>(&self, line: u64, field: impl Fn(usize) -> Option<&'a str>) -> Record<'a>
    where
        'n: 'a,
    {
        let mut r = Record::new(line);
        r.org = self.org.and_then(&field).map(Cow::Borrowed);
        for &(at, column) in &self.groups {
            r.groups.push(GroupCell {
                column,
                values: field(at).map_or(Values::Missing, |v| Values::One(Cow::Borrowed(v))),
            });
        }
        r.users = Values::One(Cow::Borrowed(field(self.user).unwrap_or("")));
        r.group_name = self.group_name.and_then(&field);
        let [name, first, last, email] = self.profile.map(|at| at.and_then(&field));
        (r.name, r.first_name, r.last_name, r.email) = (name, first, last, email);
        r.status = self.status.and_then(&field);
        r.action = self.action.and_then(&field);
        r.filters
            .extend(self.filters.iter().map(|&at| field(at).map(Cow::Borrowed)));
        r
    }
}

/// A report row's `action`: rows that removed a member are left out when a report is input.
fn is_removal(action: &str) -> bool {
    action.trim() == "remove"
}

/// Distinct unmapped values kept for `validate`; more are only counted.
const UNMAPPED_LISTED: usize = 10_000;

/// One group a record is mapped to: its ID and the display name a map row gives it.
type Target<'t> = (Cow<'t, str>, Option<&'t str>);

/// Turns records into memberships under the command line's mapping.
pub(crate) struct Mapper<'o> {
    opts: &'o InputOptions,
    /// No group map, separator or user-ID folding: a record's one user and one group value
    /// go to the planner as they are (most files, and the fastest path).
    plain: bool,
}

impl<'o> Mapper<'o> {
    pub fn new(opts: &'o InputOptions) -> Mapper<'o> {
        let m = &opts.mapping;
        Mapper {
            opts,
            plain: m.map.is_none() && m.separator.is_none() && !m.lower_user_ids && !opts.provision,
        }
    }

    /// Turns `record` into memberships, an invalid row, or nothing.
    pub fn take(&mut self, mut record: Record<'_>, sink: &mut impl Sink, stats: &mut InputStats) {
        if !self.admit(&mut record, sink, stats) {
            return;
        }
        let line = record.line;
        let org = record.org.as_deref();
        let first_group = record.first_group();
        let first_user = match &record.users {
            Values::One(u) => u.as_ref(),
            _ => "",
        };
        if let Some(problem) = &record.problem {
            sink.reject_record(line, org, first_group, first_user, problem.clone());
            return;
        }
        if self.plain
            && let Values::One(user) = &record.users
            && record.groups.len() <= 1
            && matches!(
                record.groups.first().map(|c| &c.values),
                None | Some(Values::One(_))
            )
        {
            sink.record(line, org, first_group, user);
            if let Some(name) = record.group_name
                && !name.trim().is_empty()
            {
                sink.group_name(org, first_group, name);
            }
            return;
        }
        let Some(users) = self.users(&record, sink) else {
            return;
        };
        let Some((targets, skipped)) = self.targets(&record, first_user, sink, stats) else {
            return;
        };
        stats.unmapped_skipped += skipped * users.len() as u64;
        if skipped > 0 {
            let org: Option<Box<str>> =
                org.map(str::trim).filter(|o| !o.is_empty()).map(Into::into);
            for u in &users {
                stats.partly_unmapped.push((org.clone(), u.trim().into()));
            }
        }
        if skipped > 0 && targets.is_empty() {
            return; // every group value was unmapped and skipped: counted above
        }
        if self.opts.provision
            && let Err(why) = crate::provision::profile::check(
                Fields {
                    name: record.name,
                    first_name: record.first_name,
                    last_name: record.last_name,
                    email: record.email,
                    line: record.line,
                },
                &users,
                &mut stats.profiles,
            )
        {
            sink.reject_record(line, org, first_group, first_user, why);
            return;
        }
        emit(&record, &users, &targets, sink);
    }

    /// Whether `record` goes on to be mapped: `--only-status` and the `--include` /
    /// `--exclude` filters leave records out (counted in `stats`); a record with no status
    /// under `--only-status` is rejected.
    fn admit(&self, record: &mut Record<'_>, sink: &mut impl Sink, stats: &mut InputStats) -> bool {
        let opts = self.opts;
        if let Some(wanted) = &opts.only_status
            && (record.status.is_some() || record.problem.is_none())
        {
            match record.status {
                Some(s)
                    if !wanted.iter().any(|w| w == s.trim())
                        || record.action.is_some_and(is_removal) =>
                {
                    stats.skipped += 1;
                    return false;
                }
                Some(_) => {}
                None => {
                    stats.records += 1;
                    sink.reject_record(
                        record.line,
                        None,
                        None,
                        "",
                        "no `status` (--only-status needs a previous report as input)".into(),
                    );
                    return false;
                }
            }
        }
        stats.records += 1;
        if opts.only_status.is_some() {
            record.unquote_formulas();
        }
        // A record whose fields cannot be trusted is reported, never filtered on them.
        let filtered_out = record.problem.is_none()
            && !opts.mapping.filters.iter().enumerate().all(|(i, f)| {
                let value = record.filters.get(i).and_then(|v| v.as_deref());
                f.passes(value.unwrap_or(""))
            });
        if filtered_out {
            stats.filtered += 1;
        }
        !filtered_out
    }

    /// The record's users (folded under `--user-id-case lower`); a bad one is rejected and
    /// the rest go on. None if the record names no user.
    fn users<'r>(
        &self,
        record: &'r Record<'_>,
        sink: &mut impl Sink,
    ) -> Option<SmallVec<[Cow<'r, str>; 1]>> {
        let (line, org, first_group) = (record.line, record.org.as_deref(), record.first_group());
        let mut users: SmallVec<[Cow<'_, str>; 1]> = SmallVec::new();
        match &record.users {
            Values::One(u) => users.push(Cow::Borrowed(u.as_ref())),
            Values::Many(list) => {
                for u in list {
                    match u {
                        Ok(u) => users.push(Cow::Borrowed(u.as_ref())),
                        Err(why) => sink.reject_record(line, org, first_group, "", why.clone()),
                    }
                }
            }
            Values::Missing => {
                sink.reject_record(line, org, first_group, "", "no userId or userIds".into());
                return None;
            }
        }
        if self.opts.mapping.lower_user_ids {
            for u in &mut users {
                if let Cow::Owned(folded) = crate::text::fold_id(u) {
                    *u = Cow::Owned(folded);
                }
            }
        }
        Some(users)
    }

    /// Every group value of every group column, split, trimmed and mapped, with the number
    /// of values `--unmapped skip` left out. None if the record was rejected (a bad value, or
    /// a value the map does not list under `--unmapped invalid`).
    fn targets<'r>(
        &self,
        record: &'r Record<'_>,
        first_user: &str,
        sink: &mut impl Sink,
        stats: &mut InputStats,
    ) -> Option<(SmallVec<[Target<'r>; 2]>, u64)>
    where
        'o: 'r,
    {
        let mapping = &self.opts.mapping;
        let (line, org) = (record.line, record.org.as_deref());
        let mut targets: SmallVec<[Target<'_>; 2]> = SmallVec::new();
        let mut unmapped: Option<&str> = None;
        let mut skipped = 0u64;
        for cell in &record.groups {
            let pieces: SmallVec<[&str; 2]> = match &cell.values {
                Values::One(v) => self.split(v).collect(),
                Values::Many(list) => {
                    let mut pieces = SmallVec::new();
                    for v in list {
                        match v {
                            Ok(v) => pieces.extend(self.split(v)),
                            Err(why) => {
                                sink.reject_record(line, org, None, first_user, why.clone());
                                return None;
                            }
                        }
                    }
                    pieces
                }
                Values::Missing => SmallVec::new(),
            };
            for piece in pieces {
                let Some(map) = &mapping.map else {
                    targets.push((Cow::Borrowed(piece), None));
                    continue;
                };
                let before = targets.len();
                targets.extend(
                    map.lookup(&fold(piece), cell.column)
                        .map(|t| (Cow::Borrowed(t.id.as_str()), t.name.as_deref())),
                );
                if targets.len() > before {
                    continue;
                }
                let key = (cell.column.trim().to_string(), piece.to_string());
                if stats.unmapped.len() < UNMAPPED_LISTED || stats.unmapped.contains_key(&key) {
                    *stats.unmapped.entry(key).or_default() += 1;
                }
                match mapping.unmapped {
                    Unmapped::Invalid => {
                        unmapped.get_or_insert(piece);
                    }
                    Unmapped::Skip => skipped += 1,
                    Unmapped::Keep => targets.push((Cow::Borrowed(piece), None)),
                }
            }
        }
        if let Some(value) = unmapped {
            let map = mapping.map.as_ref().map_or("", |m| m.path.as_str());
            sink.reject_record(
                line,
                org,
                Some(value),
                first_user,
                format!(
                    "group `{}` is not in the group map {map}; add a row for it, or choose --unmapped skip or keep",
                    clip(value)
                ),
            );
            return None;
        }
        Some((targets, skipped))
    }

    /// The group values of one cell: split by `--group-separator`, trimmed, empty ones gone.
    fn split<'v>(&self, cell: &'v str) -> impl Iterator<Item = &'v str> + use<'v, 'o> {
        let sep = self.opts.mapping.separator.as_deref();
        let mut whole = Some(cell);
        let mut parts = sep.map(|s| cell.split(s));
        std::iter::from_fn(move || match &mut parts {
            Some(p) => p.next(),
            None => whole.take(),
        })
        .map(str::trim)
        .filter(|p| !p.is_empty())
    }
}

/// Hands the record's memberships to `sink`: every user in every target group, or in the
/// default group when the record has no group value. The group-name column names the
/// record's group when there is one group column.
fn emit(record: &Record<'_>, users: &[Cow<'_, str>], targets: &[Target<'_>], sink: &mut impl Sink) {
    let (line, org) = (record.line, record.org.as_deref());
    let column_name = record
        .group_name
        .filter(|n| !n.trim().is_empty() && record.groups.len() <= 1);
    if targets.is_empty() {
        // No group value: the default group (`--group`), or the planner says none.
        for u in users {
            sink.record(line, org, None, u);
        }
        if let Some(name) = column_name {
            sink.group_name(org, None, name);
        }
        return;
    }
    for (group, name) in targets {
        for u in users {
            sink.record(line, org, Some(group), u);
        }
        if let Some(name) = name.or(column_name) {
            sink.group_name(org, Some(group), name);
        }
    }
}
