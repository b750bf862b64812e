//! Which column of an export is what, as an admin would pick: the user column is a work
//! e-mail or a login (never a manager's, a personal or a mostly empty one), the group columns
//! are departments, teams, groups and places, a status column becomes a filter that leaves
//! leavers out. Each choice says why, and what else was considered.

use std::collections::BTreeSet;

use super::table::Table;

/// What one column holds.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The name's words, lower case (`Work Contact: Work Email` -> work, contact, work, email).
    words: Vec<String>,
    pub filled: usize,
    pub distinct: usize,
    /// Share of the filled cells that look like e-mail addresses.
    pub emails: f64,
    /// Every distinct value, in order of first appearance (at most `MAX_DISTINCT`).
    pub values: Vec<String>,
}

const MAX_DISTINCT: usize = 5000;

impl Column {
    fn has(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }

    fn has_any(&self, words: &[&str]) -> bool {
        words.iter().any(|w| self.has(w) || self.joined() == *w)
    }

    /// The words run together: `userprincipalname`.
    fn joined(&self) -> String {
        self.words.concat()
    }
}

pub fn columns(table: &Table) -> Vec<Column> {
    table
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut seen = BTreeSet::new();
            let mut values = Vec::new();
            let (mut filled, mut emails) = (0, 0);
            for row in &table.rows {
                let v = row.get(i).map_or("", |c| c.trim());
                if v.is_empty() {
                    continue;
                }
                filled += 1;
                emails += usize::from(is_email(v));
                if seen.len() < MAX_DISTINCT && seen.insert(v.to_string()) {
                    values.push(v.to_string());
                }
            }
            let words = words(name);
            Column {
                name: name.clone(),
                words,
                filled,
                distinct: seen.len(),
                emails: if filled == 0 {
                    0.0
                } else {
                    emails as f64 / filled as f64
                },
                values,
            }
        })
        .collect()
}

/// A column name's words, lower case: split at anything not a letter or digit, and where a
/// lower-case letter meets an upper-case one (`primaryEmail`, `orgUnitPath`).
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut lower_before = false;
    for c in name.chars() {
        if (!c.is_alphanumeric() || (lower_before && c.is_uppercase())) && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        }
        lower_before = c.is_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty() && domain.contains('.') && !v.contains(char::is_whitespace)
}

/// A choice and why.
#[derive(Debug, Clone)]
pub struct Pick {
    pub column: String,
    pub why: String,
}

/// Everything `init` chose.
#[derive(Debug, Default)]
pub struct Choices {
    pub user: Option<Pick>,
    /// The user column's runners-up, and the columns ruled out, with why.
    pub user_considered: Vec<String>,
    pub org_column: Option<Pick>,
    pub groups: Vec<Pick>,
    pub groups_considered: Vec<String>,
    pub separator: Option<char>,
    /// `include` / `exclude` rules (`Status=Active`), with why.
    pub include: Vec<(String, String)>,
    pub exclude: Vec<(String, String)>,
    pub name: Option<Pick>,
    pub name_parts: Option<(String, String)>,
    pub email: Option<Pick>,
    /// The user IDs are e-mail addresses: compare them without case.
    pub lower_ids: bool,
    /// The group values look like names (or addresses), not IDs: a group map is needed.
    pub needs_map: bool,
}

/// Columns never a user's own: someone else's address, or a second one.
const NOT_THE_USER: &[&str] = &[
    "manager",
    "supervisor",
    "approver",
    "reports",
    "report",
    "lead",
    "personal",
    "home",
    "private",
    "secondary",
    "alternate",
    "alternative",
    "other",
    "emergency",
    "spouse",
    "parent",
    "created",
    "modified",
    "recovery",
    "backup",
    "assistant",
    "delegate",
];

/// How much a column looks like the user's own ID, and why; `Err`: why it is ruled out.
fn user_score(c: &Column, rows: usize, own_format: bool) -> Result<(i32, String), String> {
    if c.has_any(NOT_THE_USER) {
        return Err(format!("`{}`: someone else's or a second address", c.name));
    }
    if c.filled * 2 < rows.max(1) {
        return Err(format!(
            "`{}`: mostly empty ({} of {rows} rows)",
            c.name, c.filled
        ));
    }
    let joined = c.joined();
    let (mut score, mut why) = if own_format && matches!(joined.as_str(), "userid" | "user") {
        (
            100,
            "the userId column of velt-group-sync's own format".to_string(),
        )
    } else if joined == "userprincipalname" || c.has("upn") {
        (95, "the sign-in name (user principal name)".to_string())
    } else if c.has_any(&[
        "login",
        "username",
        "loginname",
        "signinname",
        "samaccountname",
        "netid",
        "uid",
    ]) || (c.has("user") && c.has("name"))
    {
        (90, "the login".to_string())
    } else if c.has_any(&["email", "mail", "emailaddress"]) || (c.has("e") && c.has("mail")) {
        let work = c.has_any(&[
            "work",
            "primary",
            "business",
            "corporate",
            "company",
            "office",
        ]);
        let s = if work { 90 } else { 85 };
        (
            s,
            format!("{}e-mail address", if work { "the work " } else { "the " }),
        )
    } else if c.has_any(&[
        "id",
        "userid",
        "employeeid",
        "employee",
        "number",
        "worker",
        "associate",
    ]) {
        (40, "an employee or account number".to_string())
    } else {
        return Err(format!("`{}`", c.name));
    };
    if c.emails >= 0.9 {
        score += 20;
        why.push_str(", every value an address");
    }
    if c.distinct == c.filled && c.filled > 1 {
        score += 10;
        why.push_str(", one per row");
    }
    Ok((score, why))
}

/// How much a column looks like a group: a department, a team, a group list, a place.
fn group_score(c: &Column) -> Option<(i32, &'static str)> {
    let joined = c.joined();
    // Someone else's (a manager's department); a home department is the user's own.
    if c.has_any(&["manager", "supervisor", "reports", "approver"]) {
        return None;
    }
    let (score, what) = if matches!(joined.as_str(), "organizationusergroupid" | "groupid") {
        (100, "the group ID column of velt-group-sync's own format")
    } else if c.has_any(&["department", "dept", "departments", "abteilung"]) {
        (90, "a department")
    } else if c.has_any(&["team", "teams", "squad"]) {
        (85, "a team")
    } else if c.has_any(&["group", "groups", "memberof", "usergroups"])
        || (c.has("member") && c.has("of"))
    {
        (85, "a group")
    } else if c.has_any(&[
        "division",
        "unit",
        "orgunitpath",
        "businessunit",
        "function",
        "supervisory",
    ]) {
        (75, "a division or unit")
    } else if c.has_any(&[
        "location",
        "site",
        "office",
        "region",
        "standort",
        "officelocation",
    ]) {
        (60, "a place")
    } else if c.has_any(&[
        "cost",
        "costcenter",
        "country",
        "title",
        "position",
        "role",
        "type",
    ]) {
        (20, "")
    } else {
        return None;
    };
    Some((score, what))
}

pub fn choose(table: &Table, columns: &[Column]) -> Choices {
    let rows = table.rows.len();
    let mut ch = Choices::default();
    let own_format = columns
        .iter()
        .any(|c| c.joined() == "organizationusergroupid");
    // The user column.
    let mut ranked: Vec<(i32, &Column, String)> = Vec::new();
    for c in columns {
        match user_score(c, rows, own_format) {
            Ok((score, why)) => ranked.push((score, c, why)),
            Err(why) if c.has_any(&["email", "mail", "login", "username", "id", "user"]) => {
                ch.user_considered.push(format!("{why}: ruled out"));
            }
            Err(_) => {}
        }
    }
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    if let Some((_, c, why)) = ranked.first() {
        ch.user = Some(Pick {
            column: c.name.clone(),
            why: why.clone(),
        });
        ch.lower_ids = c.emails >= 0.9;
    }
    for (_, c, why) in ranked.iter().skip(1) {
        ch.user_considered.push(format!("`{}` ({why})", c.name));
    }
    let user = ch.user.as_ref().map(|p| p.column.clone());
    if let Some(c) = columns
        .iter()
        .find(|c| c.joined() == "organizationid" || c.joined() == "orgid")
    {
        ch.org_column = Some(Pick {
            column: c.name.clone(),
            why: "the organization ID column of velt-group-sync's own format".into(),
        });
    }
    statuses(&mut ch, columns);
    let taken = |c: &Column, ch: &Choices| {
        Some(&c.name) == user.as_ref()
            || ch
                .include
                .iter()
                .chain(&ch.exclude)
                .any(|(rule, _)| rule.starts_with(&format!("{}=", c.name)))
    };
    // Group columns.
    let mut groups: Vec<(i32, &Column, &str)> = columns
        .iter()
        .filter(|c| !taken(c, &ch) && c.filled > 0)
        .filter_map(|c| group_score(c).map(|(s, what)| (s, c, what)))
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.0));
    let best = groups.first().map_or(0, |g| g.0);
    for (score, c, what) in &groups {
        let repeats = c.distinct < c.filled || c.filled <= 3;
        if *score >= 60 && repeats && (best < 100 || *score == 100) {
            ch.groups.push(Pick {
                column: c.name.clone(),
                why: format!(
                    "{what}: {} distinct values in {} rows",
                    c.distinct, c.filled
                ),
            });
        } else {
            ch.groups_considered.push(format!("`{}`", c.name));
        }
    }
    ch.separator = separator(columns, &ch.groups);
    ch.needs_map = ch
        .groups
        .iter()
        .filter_map(|g| columns.iter().find(|c| c.name == g.column))
        .flat_map(|c| c.values.iter())
        .any(|v| !looks_like_id(v, ch.separator));
    profile(&mut ch, columns);
    ch
}

/// A group ID as Velt keeps them: lower-case letters, digits, `-`, `_`, `.`.
fn looks_like_id(v: &str, separator: Option<char>) -> bool {
    let parts: Vec<&str> = match separator {
        Some(s) => v
            .split(s)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect(),
        None => vec![v],
    };
    parts.iter().all(|p| {
        p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    })
}

/// The character that lists several groups in one cell, if the group cells hold lists.
fn separator(columns: &[Column], groups: &[Pick]) -> Option<char> {
    let values: Vec<&String> = groups
        .iter()
        .filter_map(|g| columns.iter().find(|c| c.name == g.column))
        .flat_map(|c| c.values.iter())
        .collect();
    if values.is_empty() {
        return None;
    }
    [';', '|', ',']
        .into_iter()
        .map(|s| (s, values.iter().filter(|v| v.contains(s)).count()))
        .filter(|(_, n)| *n * 10 >= values.len())
        .max_by_key(|(_, n)| *n)
        .map(|(s, _)| s)
}

/// Values that mean someone has left, or is not a person.
const LEAVERS: &[&str] = &[
    "inactive",
    "terminated",
    "deactivated",
    "suspended",
    "disabled",
    "deprovisioned",
    "left",
    "former",
    "offboarded",
    "leaver",
    "bot",
    "deleted",
    "archived",
];

/// A status-like column becomes a filter: keep the active, or leave the leavers out.
fn statuses(ch: &mut Choices, columns: &[Column]) {
    for c in columns {
        let lower: Vec<String> = c.values.iter().map(|v| v.to_lowercase()).collect();
        let spelled = |want: &[&str]| {
            c.values
                .iter()
                .zip(&lower)
                .filter(|(_, l)| want.contains(&l.as_str()))
                .map(|(v, _)| v.clone())
                .collect::<Vec<_>>()
        };
        let status_like = c.has_any(&[
            "status",
            "state",
            "active",
            "enabled",
            "accountenabled",
            "employment",
        ]);
        let inverted = c.has_any(&[
            "suspended",
            "disabled",
            "blocked",
            "block",
            "deleted",
            "archived",
        ]);
        if c.distinct < 2 || c.distinct > 12 {
            continue;
        }
        if inverted {
            let keep = spelled(&["false", "no", "0", "n"]);
            if !keep.is_empty() {
                let why = format!(
                    "Leavers left out: `{}` says who is switched off; keep {}",
                    c.name,
                    keep.join(", ")
                );
                ch.include
                    .push((format!("{}={}", c.name, keep.join(",")), why));
            }
            continue;
        }
        if c.has("type") || c.joined().ends_with("type") {
            let users = spelled(&["user", "person", "member"]);
            if !users.is_empty() && users.len() < c.distinct {
                let why = format!(
                    "Only people: `{}` also lists groups and other kinds of member",
                    c.name
                );
                ch.include
                    .push((format!("{}={}", c.name, users.join(",")), why));
            }
            continue;
        }
        if !status_like {
            continue;
        }
        let others = c.values.join(", ");
        let mut active = spelled(&["active", "enabled", "true", "yes", "employed", "current"]);
        if active.is_empty() && c.has_any(&["active", "enabled"]) {
            active = spelled(&["1"]);
        }
        if !active.is_empty() {
            let why = format!("Leavers left out: `{}` holds {others}", c.name);
            ch.include
                .push((format!("{}={}", c.name, active.join(",")), why));
            continue;
        }
        let leavers = spelled(LEAVERS);
        if !leavers.is_empty() {
            let why = format!("Leavers left out: `{}` holds {others}", c.name);
            ch.exclude
                .push((format!("{}={}", c.name, leavers.join(",")), why));
        }
    }
}

/// Name and e-mail columns, for provisioning.
fn profile(ch: &mut Choices, columns: &[Column]) {
    let own = |c: &&Column| !c.has_any(NOT_THE_USER) && c.filled > 0;
    if let Some(c) = columns.iter().filter(own).find(|c| {
        c.joined() == "name"
            || c.has_any(&["displayname", "fullname", "preferredname"])
            || (c.has("display") && c.has("name"))
            || (c.has("full") && c.has("name"))
    }) {
        ch.name = Some(Pick {
            column: c.name.clone(),
            why: "the display name".into(),
        });
    } else {
        let first = columns
            .iter()
            .filter(own)
            .find(|c| c.has_any(&["firstname", "givenname", "first", "given", "forename"]));
        let last = columns
            .iter()
            .filter(own)
            .find(|c| c.has_any(&["lastname", "surname", "familyname", "last", "family"]));
        if let (Some(f), Some(l)) = (first, last) {
            ch.name_parts = Some((f.name.clone(), l.name.clone()));
        }
    }
    let user = ch
        .user
        .as_ref()
        .and_then(|p| columns.iter().find(|c| c.name == p.column));
    let email = match user {
        Some(u) if u.emails >= 0.9 => Some((u, "the user column: its values are addresses")),
        _ => columns
            .iter()
            .filter(own)
            .filter(|c| c.emails >= 0.9)
            .max_by_key(|c| i32::from(c.has_any(&["work", "primary", "business"])))
            .map(|c| (c, "addresses")),
    };
    ch.email = email.map(|(c, why)| Pick {
        column: c.name.clone(),
        why: why.into(),
    });
}
