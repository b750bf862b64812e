//! The one place that says which column (a CSV header) or key (a JSON object's) holds which
//! field of a membership record: the name given on the command line, or else a recognised
//! alias, the earlier alias preferred.

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

/// The fields of a record the job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Org,
    Group,
    User,
    Users,
    GroupName,
    /// A previous report's `status` (`--only-status`).
    Status,
    /// A previous report's `action`.
    Action,
}

const FIELDS: usize = 7;

/// A field a CSV header must name: how to find it, and what stands in when it is missing
/// (`--org` for the organization column; `true` once such a default is given).
struct Need<'a> {
    field: Field,
    what: &'a str,
    chosen: Option<&'a str>,
    aliases: &'a [&'a str],
    flag: &'a str,
    default: Option<(&'a str, bool)>,
}

/// Where each field is among a header's columns (or an object's keys).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Positions([Option<usize>; FIELDS]);

impl Positions {
    pub fn get(&self, field: Field) -> Option<usize> {
        self.0[field as usize]
    }
}

/// Resolves names to fields under the command line's choices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolver<'a> {
    columns: &'a Columns,
    /// `--only-status`: the input is a previous report, whose status and action count.
    report: bool,
}

fn rank(name: &str, chosen: Option<&str>, aliases: &[&str]) -> Option<usize> {
    match chosen {
        Some(c) => name.eq_ignore_ascii_case(c.trim()).then_some(0),
        None => aliases.iter().position(|a| name.eq_ignore_ascii_case(a)),
    }
}

impl<'a> Resolver<'a> {
    pub fn new(opts: &'a InputOptions) -> Resolver<'a> {
        Resolver {
            columns: &opts.columns,
            report: opts.only_status.is_some(),
        }
    }

    /// The field a column or key of this name holds, and its rank (lower is preferred).
    fn field(&self, name: &str) -> Option<(Field, usize)> {
        let c = self.columns;
        let name = name.trim();
        if let Some(r) = c
            .group_name
            .as_deref()
            .and_then(|g| rank(name, Some(g), &[]))
        {
            return Some((Field::GroupName, r));
        }
        if let Some(r) = rank(name, c.org.as_deref(), ORG_ALIASES) {
            return Some((Field::Org, r));
        }
        if let Some(r) = rank(name, c.group.as_deref(), GROUP_ALIASES) {
            return Some((Field::Group, r));
        }
        if let Some(r) = rank(name, c.user.as_deref(), USER_ALIASES) {
            return Some((Field::User, r));
        }
        if c.user.is_none()
            && let Some(r) = rank(name, None, USERS_ALIASES)
        {
            return Some((Field::Users, r));
        }
        if self.report {
            if name.eq_ignore_ascii_case("status") {
                return Some((Field::Status, 0));
            }
            if name.eq_ignore_ascii_case("action") {
                return Some((Field::Action, 0));
            }
        }
        None
    }

    /// For each field, the position of its preferred name among `names` (the first on a tie).
    pub fn positions<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Positions {
        let mut best: [Option<(usize, usize)>; FIELDS] = [None; FIELDS];
        for (at, name) in names.into_iter().enumerate() {
            if let Some((field, r)) = self.field(name) {
                let slot = &mut best[field as usize];
                if slot.is_none_or(|(_, br)| r < br) {
                    *slot = Some((at, r));
                }
            }
        }
        Positions(best.map(|b| b.map(|(at, _)| at)))
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
        let c = self.columns;
        let checks = [
            Need {
                field: Field::Org,
                what: "organization",
                chosen: c.org.as_deref(),
                aliases: ORG_ALIASES,
                flag: "--org-column",
                default: Some(("--org", opts.has_default_org)),
            },
            Need {
                field: Field::Group,
                what: "group",
                chosen: c.group.as_deref(),
                aliases: GROUP_ALIASES,
                flag: "--group-column",
                default: Some(("--group", opts.has_default_group)),
            },
            Need {
                field: Field::User,
                what: "user",
                chosen: c.user.as_deref(),
                aliases: USER_ALIASES,
                flag: "--user-column",
                default: None,
            },
            Need {
                field: Field::GroupName,
                what: "group name",
                chosen: c.group_name.as_deref(),
                aliases: &[],
                flag: "--group-name-column",
                default: Some(("", true)),
            },
        ];
        for Need {
            field,
            what,
            chosen,
            aliases,
            flag,
            default,
        } in checks
        {
            if found.get(field).is_some() {
                continue;
            }
            let message = match (chosen, default) {
                (Some(name), _) => {
                    format!(
                        "no column named `{}` (columns: {listed}); check {flag}",
                        clip(name)
                    )
                }
                (None, Some((_, true))) => continue,
                (None, Some((default_flag, false))) => format!(
                    "no {what} column (looked for {}; columns: {listed}); name it with {flag} or give one for every row with {default_flag}",
                    aliases.join(", ")
                ),
                (None, None) => format!(
                    "no {what} column (looked for {}; columns: {listed}); name it with {flag}",
                    aliases.join(", ")
                ),
            };
            return Some(message);
        }
        if self.report && found.get(Field::Status).is_none() {
            return Some(format!(
                "--only-status needs a `status` column (a previous report as input); columns: {listed}"
            ));
        }
        None
    }
}

/// The columns, for a message: each clipped, at most 30 of them.
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
        assert_eq!(p.get(Field::Group), Some(2), "groupId is the earlier alias");
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
