//! The one place that says which column (a CSV header) or key (a JSON object's) holds which
//! field of a membership record: the name given on the command line, or else a recognised
//! alias, the earlier alias preferred.

use smallvec::SmallVec;

use super::mapping::Filter;
use super::{Columns, InputOptions};
use crate::text::clip;

const ORG_ALIASES: &[&str] = &["organizationId", "organization_id", "orgId"];
const GROUP_ALIASES: &[&str] = &[
    "organizationUserGroupId",
    "organization_user_group_id",
    "groupId",
    "group_id",
    "group",
];
const USER_ALIASES: &[&str] = &["userId", "user_id", "user"];
/// A JSON key holding a list of user IDs.
const USERS_ALIASES: &[&str] = &["userIds", "user_ids"];
/// `--provision-users`: the user's display name and e-mail.
const NAME_ALIASES: &[&str] = &["name", "displayName", "fullName"];
const EMAIL_ALIASES: &[&str] = &["email", "mail"];

/// The fields of a record the job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Org,
    User,
    Users,
    GroupName,
    /// A previous report's `status` (`--only-status`).
    Status,
    /// A previous report's `action`.
    Action,
    /// `--provision-users`: the user's display name, or its two halves (`--name-columns`).
    Name,
    FirstName,
    LastName,
    Email,
    /// The i-th group column (`--group-column`, in the order given; one when none is given).
    Group(usize),
    /// The column of the i-th `--include` / `--exclude` rule.
    Filter(usize),
}

const FIXED: usize = 10;

/// Where each field is among a header's columns (or an object's keys).
#[derive(Debug, Default, Clone)]
pub(crate) struct Positions {
    at: SmallVec<[Option<usize>; 12]>,
    groups: usize,
}

/// Where `field` sits among the slots, with `groups` group columns.
fn slot(field: Field, groups: usize) -> usize {
    match field {
        Field::Org => 0,
        Field::User => 1,
        Field::Users => 2,
        Field::GroupName => 3,
        Field::Status => 4,
        Field::Action => 5,
        Field::Name => 6,
        Field::FirstName => 7,
        Field::LastName => 8,
        Field::Email => 9,
        Field::Group(i) => FIXED + i,
        Field::Filter(i) => FIXED + groups + i,
    }
}

impl Positions {
    pub fn get(&self, field: Field) -> Option<usize> {
        self.at.get(slot(field, self.groups)).copied().flatten()
    }
}

/// How one field is looked for: a name chosen on the command line, or else aliases.
#[derive(Debug, Clone, Copy)]
struct Look<'a> {
    chosen: Option<&'a str>,
    aliases: &'a [&'a str],
}

const NOWHERE: Look<'static> = Look {
    chosen: None,
    aliases: &[],
};

impl<'a> Look<'a> {
    /// A column named on the command line: that name only.
    fn named(name: &'a str) -> Look<'a> {
        Look {
            chosen: Some(name),
            aliases: &[],
        }
    }
}

/// Resolves names to fields under the command line's choices.
#[derive(Debug, Clone)]
pub(crate) struct Resolver<'a> {
    columns: &'a Columns,
    filters: &'a [Filter],
    /// `--only-status`: the input is a previous report, whose status and action count.
    report: bool,
    /// What each slot of `Positions` looks for.
    looks: SmallVec<[Look<'a>; 12]>,
}

fn rank(name: &str, look: &Look<'_>) -> Option<usize> {
    let matches = |wanted: &str| {
        name.eq_ignore_ascii_case(wanted)
            || bracketed(name).is_some_and(|b| b.eq_ignore_ascii_case(wanted))
    };
    match look.chosen {
        Some(c) => matches(c.trim()).then_some(0),
        None => look.aliases.iter().position(|a| matches(a)),
    }
}

/// The property name of a Microsoft Entra template heading, `User name [userPrincipalName]
/// Required`: a column answers to it as well as to its whole heading.
fn bracketed(name: &str) -> Option<&str> {
    let open = name.find('[')?;
    let close = open + name[open..].find(']')?;
    Some(name[open + 1..close].trim())
}

impl<'a> Resolver<'a> {
    pub fn new(opts: &'a InputOptions) -> Resolver<'a> {
        let c = &opts.columns;
        let report = opts.only_status.is_some();
        let filters = opts.mapping.filters.as_slice();
        let provision = opts.provision;
        // A column chosen on the command line, else one found by its usual names.
        let look = |chosen: Option<&'a str>, aliases: &'a [&'a str]| match chosen {
            Some(n) => Look::named(n),
            None => Look {
                chosen: None,
                aliases,
            },
        };
        let only = |wanted: bool, l: Look<'a>| if wanted { l } else { NOWHERE };
        let parts = c.name_parts.as_ref().filter(|_| provision);
        let mut looks: SmallVec<[Look<'a>; 12]> = SmallVec::new();
        looks.extend([
            look(c.org.as_deref(), ORG_ALIASES),
            look(c.user.as_deref(), USER_ALIASES),
            only(c.user.is_none(), look(None, USERS_ALIASES)),
            look(c.group_name.as_deref(), &[]),
            only(report, Look::named("status")),
            only(report, Look::named("action")),
            // First and last name columns stand for a name column.
            only(
                provision && (c.name.is_some() || parts.is_none()),
                look(c.name.as_deref(), NAME_ALIASES),
            ),
            look(parts.map(|p| p.0.as_str()), &[]),
            look(parts.map(|p| p.1.as_str()), &[]),
            only(provision, look(c.email.as_deref(), EMAIL_ALIASES)),
        ]);
        if c.group.is_empty() {
            looks.push(look(None, GROUP_ALIASES));
        }
        looks.extend(c.group.iter().map(|g| Look::named(g)));
        looks.extend(filters.iter().map(|f| Look::named(&f.column)));
        Resolver {
            columns: c,
            filters,
            report,
            looks,
        }
    }

    /// The name the command line chose for `field`, if any.
    pub fn chosen(&self, field: Field) -> Option<&'a str> {
        self.looks.get(slot(field, self.group_count()))?.chosen
    }

    /// Every field the command line named, with its name.
    pub fn chosen_fields(&self) -> impl Iterator<Item = (Field, &'a str)> + '_ {
        let fields = [
            Field::Org,
            Field::User,
            Field::GroupName,
            Field::Name,
            Field::FirstName,
            Field::LastName,
            Field::Email,
        ]
        .into_iter()
        .chain((0..self.group_count()).map(Field::Group))
        .chain((0..self.filters.len()).map(Field::Filter));
        fields.filter_map(|f| self.chosen(f).map(|name| (f, name)))
    }

    /// How many group columns a record has.
    pub fn group_count(&self) -> usize {
        self.columns.group.len().max(1)
    }

    /// Whether a column of this name is one the command line chose for some field: such a
    /// column is not also taken by an alias.
    fn is_chosen(&self, name: &str) -> bool {
        self.looks.iter().any(|l| {
            l.chosen
                .is_some_and(|c| name.eq_ignore_ascii_case(c.trim()))
        })
    }

    /// For each field, the position of its preferred name among `names` (the first on a tie).
    pub fn positions<'n, I>(&self, names: I) -> Positions
    where
        I: IntoIterator<Item = &'n str> + Clone,
    {
        let at = self
            .looks
            .iter()
            .map(|look| {
                if look.chosen.is_none() && look.aliases.is_empty() {
                    return None;
                }
                let mut best: Option<(usize, usize)> = None;
                for (at, name) in names.clone().into_iter().enumerate() {
                    let name = name.trim();
                    if let Some(r) = rank(name, look)
                        && best.is_none_or(|(_, br)| r < br)
                        && (look.chosen.is_some() || !self.is_chosen(name))
                    {
                        best = Some((at, r));
                    }
                }
                best.map(|(at, _)| at)
            })
            .collect();
        Positions {
            at,
            groups: self.group_count(),
        }
    }

    /// Whether a header with these names has every column the run needs.
    pub fn fits(&self, names: &[String], opts: &InputOptions) -> bool {
        let found = self.positions(names.iter().map(String::as_str));
        self.missing(&found, names, opts).is_none()
    }

    /// Why a CSV header cannot be read as memberships: a column the command line names that is
    /// not there, or a field with neither a column nor a default.
    pub fn missing(
        &self,
        found: &Positions,
        names: &[String],
        opts: &InputOptions,
    ) -> Option<String> {
        let listed = listing(names);
        let mut problems: Vec<String> = Vec::new();
        let c = self.columns;
        let no_column = |name: &str, flag: &str| {
            format!(
                "no column named `{}` (columns: {listed}); check {flag}",
                clip(name)
            )
        };
        if let Some(name) = c.org.as_deref()
            && found.get(Field::Org).is_none()
        {
            problems.push(no_column(name, "--org-column"));
        } else if found.get(Field::Org).is_none() && !opts.has_default_org {
            problems.push(format!(
                "no organization column (looked for {}; columns: {listed}); name it with --org-column or give one for every row with --org",
                ORG_ALIASES.join(", ")
            ));
        }
        for (i, name) in c.group.iter().enumerate() {
            if found.get(Field::Group(i)).is_none() {
                problems.push(no_column(name, "--group-column"));
            }
        }
        if c.group.is_empty() && found.get(Field::Group(0)).is_none() && !opts.has_default_group {
            problems.push(format!(
                "no group column (looked for {}; columns: {listed}); name it with --group-column or give one for every row with --group",
                GROUP_ALIASES.join(", ")
            ));
        }
        if found.get(Field::User).is_none() {
            problems.push(match c.user.as_deref() {
                Some(name) => no_column(name, "--user-column"),
                None => format!(
                    "no user column (looked for {}; columns: {listed}); name it with --user-column",
                    USER_ALIASES.join(", ")
                ),
            });
        }
        if let Some(name) = c.group_name.as_deref()
            && found.get(Field::GroupName).is_none()
        {
            problems.push(no_column(name, "--group-name-column"));
        }
        self.missing_profile(found, &no_column, &listed, opts, &mut problems);
        for (i, f) in self.filters.iter().enumerate() {
            if found.get(Field::Filter(i)).is_none() {
                problems.push(no_column(&f.column, f.flag()));
            }
        }
        if self.report && found.get(Field::Status).is_none() {
            problems.push(format!(
                "--only-status needs a `status` column (a previous report as input); columns: {listed}"
            ));
        }
        combine(problems, &listed)
    }
}

impl Resolver<'_> {
    /// `--provision-users`: why the name or e-mail column is missing, if one is.
    fn missing_profile(
        &self,
        found: &Positions,
        no_column: &dyn Fn(&str, &str) -> String,
        listed: &str,
        opts: &InputOptions,
        problems: &mut Vec<String>,
    ) {
        if !opts.provision {
            return;
        }
        let c = self.columns;
        if let Some((first, last)) = &c.name_parts {
            for (field, name) in [(Field::FirstName, first), (Field::LastName, last)] {
                if found.get(field).is_none() {
                    problems.push(no_column(name, "--name-columns"));
                }
            }
        } else if found.get(Field::Name).is_none() {
            problems.push(match c.name.as_deref() {
                Some(name) => no_column(name, "--name-column"),
                None => format!(
                    "no name column (looked for {}; columns: {listed}); --provision-users needs each user's name: name it with --name-column, or join two with --name-columns First,Last",
                    NAME_ALIASES.join(", ")
                ),
            });
        }
        if found.get(Field::Email).is_none() {
            problems.push(match c.email.as_deref() {
                Some(name) => no_column(name, "--email-column"),
                None => format!(
                    "no e-mail column (looked for {}; columns: {listed}); --provision-users needs each user's e-mail: name it with --email-column",
                    EMAIL_ALIASES.join(", ")
                ),
            });
        }
    }
}

/// The columns, for a message: each clipped, at most 30 of them.
/// One problem as it was found; several in one message, the columns listed once.
fn combine(problems: Vec<String>, listed: &str) -> Option<String> {
    if problems.len() <= 1 {
        return problems.into_iter().next();
    }
    let bare: Vec<String> = problems
        .iter()
        .map(|p| {
            p.replace(&format!(" (columns: {listed})"), "")
                .replace(&format!("; columns: {listed})"), ")")
                .replace(&format!("; columns: {listed}"), "")
        })
        .collect();
    Some(format!(
        "{} problems with the columns: {} (columns: {listed})",
        bare.len(),
        bare.iter()
            .enumerate()
            .map(|(i, p)| format!("{}) {p}", i + 1))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

fn listing(names: &[String]) -> String {
    const SHOWN: usize = 30;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| clip(n))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_names_win_and_earlier_aliases_are_preferred() {
        let opts = InputOptions::default();
        let r = Resolver::new(&opts);
        let p = r.positions(["group", "USER_ID", "groupId", "orgId", "x"]);
        assert_eq!(
            p.get(Field::Group(0)),
            Some(2),
            "groupId is the earlier alias"
        );
        assert_eq!(p.get(Field::User), Some(1), "case does not matter");
        assert_eq!(p.get(Field::Org), Some(3));
        assert_eq!(p.get(Field::Status), None, "only a report has a status");
        let opts = InputOptions {
            columns: Columns {
                user: Some("Email".into()),
                ..Columns::default()
            },
            ..InputOptions::default()
        };
        let p = Resolver::new(&opts).positions(["userId", "email", "userIds"]);
        assert_eq!(p.get(Field::User), Some(1));
        assert_eq!(
            p.get(Field::Users),
            None,
            "a chosen user column rules out lists"
        );
    }
}
