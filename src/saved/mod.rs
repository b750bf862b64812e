//! Saved plans: what `plan` (and a `sync` whose removals a guard held back) writes, and what
//! `apply` makes exactly. A plan file is JSON a person can read: every change (kind,
//! organization, group, user, profile fields), the options that shape sending, the input's
//! SHA-256, and for every group and organization a change touches, a fingerprint of what the
//! server listed when the plan was made. `apply` re-reads those and sends nothing if the server
//! now holds anything else (see [`fingerprint`]). The format is described in
//! `docs/plan-file.md`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::changes::{self, Kind};
use crate::ledger::{Ledger, Subject};
use crate::outcome::Status;
use crate::plan::{Defaults, Plan, Planner};
use crate::provision::model::{Accounts, Action, Changed};

pub mod fingerprint;

use fingerprint::{Fingerprint, Reads};

/// The plan file format this version writes and reads.
pub const FORMAT: u32 = 1;

/// A plan file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanFile {
    /// What this file is, for whoever opens it.
    pub about: String,
    pub format: u32,
    pub kind: PlanKind,
    pub made_by: String,
    pub made_at: String,
    /// The input the plan was made from (none for held-back removals' own file).
    #[serde(default)]
    pub input: Option<InputPrint>,
    /// The options that shape sending, by their long flags' names, as the flags take them.
    pub options: BTreeMap<String, serde_json::Value>,
    pub counts: Counts,
    /// What `apply` changes, in order.
    pub changes: Vec<Entry>,
    /// Removals a guard held back when the plan was made: listed, never applied.
    #[serde(default)]
    pub held_back: Vec<Entry>,
    /// What the server listed when the plan was made, for each place a change touches.
    pub reads: ReadList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// Made by `plan`.
    Plan,
    /// Made by a `sync` whose removals a guard held back: those removals, to approve.
    HeldBackRemovals,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InputPrint {
    pub path: String,
    /// `None` for standard input.
    pub sha256: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Counts {
    pub add: u64,
    pub remove: u64,
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    pub held_back: u64,
}

impl Counts {
    /// Changes `apply` would make.
    pub fn changes(&self) -> u64 {
        self.add + self.remove + self.create + self.update + self.delete
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// Add a user to a group.
    Add,
    /// Remove a user from a group.
    Remove,
    /// Make a user a user of an organization.
    Create,
    /// Change an organization user's name or e-mail.
    Update,
    /// Remove a user from an organization.
    Delete,
}

/// One change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Entry {
    pub kind: EntryKind,
    pub organization: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `update`: which fields change (`name`, `email`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// A held-back removal: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReadList {
    pub groups: Vec<GroupRead>,
    pub organizations: Vec<OrgRead>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupRead {
    pub organization: String,
    pub group: String,
    pub members: u64,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OrgRead {
    pub organization: String,
    pub users: u64,
    pub fingerprint: String,
}

/// Where a row's change lands: a plan group, or an organization of the plan's accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Place {
    Group(u32),
    Org(u32),
}

fn place(plan: &Plan, ledger: &Ledger, row: u32) -> Place {
    match ledger.subject(row) {
        Subject::Member { m, .. } => Place::Group(plan.memberships[m as usize].group),
        Subject::Stray { group, .. } => Place::Group(group),
        Subject::Account { a, .. } => Place::Org(
            plan.accounts
                .as_ref()
                .map_or(0, |acc| acc.list[a as usize].org),
        ),
        Subject::Leaver { org, .. } => Place::Org(org),
    }
}

/// What a plan file says besides its changes: set by the command that writes it.
#[derive(Debug, Clone)]
pub struct Header {
    pub kind: PlanKind,
    pub input: Option<InputPrint>,
    pub options: BTreeMap<String, serde_json::Value>,
}

impl PlanFile {
    /// The plan file of a run. `PlanKind::Plan` (a dry run's ledger): every change it would
    /// make, and the removals a guard held back as `held-back`. `PlanKind::HeldBackRemovals`
    /// (a run that sent): only the removals a guard held back in places the run read, with
    /// those places' fingerprints moved by what the run itself changed there.
    pub fn of_run(plan: &Plan, ledger: &Ledger, reads: &Reads, header: Header) -> PlanFile {
        let held_only = header.kind == PlanKind::HeldBackRemovals;
        let read = |p: Place| match p {
            Place::Group(g) => reads.groups.get(g as usize).copied().flatten(),
            Place::Org(o) => reads.orgs.get(o as usize).copied().flatten(),
        };
        let (mut changes_out, mut held) = (Vec::new(), Vec::new());
        let mut touched: BTreeMap<Place, Fingerprint> = BTreeMap::new();
        for c in changes::changes(plan, ledger, !held_only) {
            let held_back = c.kind == Kind::HeldBack;
            // A held-back plan holds nothing else: its run's other changes are done.
            if held_only && !held_back {
                continue;
            }
            let at = place(plan, ledger, c.row);
            let entry = entry(plan, ledger, &c);
            if held_back && !held_only {
                held.push(entry);
                continue;
            }
            match read(at) {
                Some(f) => {
                    touched.insert(at, f);
                }
                // A removal held back where nothing was read is not one to approve.
                None if held_only => continue,
                None => {}
            }
            changes_out.push(Entry {
                why: entry.why.filter(|_| !held_only),
                ..entry
            });
        }
        if held_only && !changes_out.is_empty() {
            moved_by_the_run(plan, ledger, &mut touched);
        }
        let mut counts = Counts {
            held_back: held.len() as u64,
            ..Counts::default()
        };
        for e in &changes_out {
            *match e.kind {
                EntryKind::Add => &mut counts.add,
                EntryKind::Remove => &mut counts.remove,
                EntryKind::Create => &mut counts.create,
                EntryKind::Update => &mut counts.update,
                EntryKind::Delete => &mut counts.delete,
            } += 1;
        }
        PlanFile {
            about: ABOUT.into(),
            format: FORMAT,
            kind: header.kind,
            made_by: format!("velt-group-sync {}", env!("CARGO_PKG_VERSION")),
            made_at: httpdate::fmt_http_date(std::time::SystemTime::now()),
            input: header.input,
            options: header.options,
            counts,
            changes: changes_out,
            held_back: held,
            reads: read_list(plan, &touched),
        }
    }

    /// What `apply` sends: a plan of the file's adds (a membership's line is its change's
    /// number), its groups and organizations, and what to expect of each on the server.
    pub fn to_apply(&self) -> Result<(Plan, Given), String> {
        if self.format != FORMAT {
            return Err(format!(
                "the plan file is format {}, this version reads format {FORMAT}; make the plan again with this version",
                self.format
            ));
        }
        let mut planner = Planner::new(Defaults::default());
        let mut removals: Vec<(u32, &str)> = Vec::new();
        let mut users: Vec<(&str, &str, &str, &str)> = Vec::new();
        let mut actions = Vec::new();
        let mut deletes: Vec<(&str, &str)> = Vec::new();
        let at = |n: usize, why: String| format!("change {n}: {why}");
        for (i, e) in self.changes.iter().enumerate() {
            let n = i + 1;
            let group = || {
                e.group
                    .as_deref()
                    .ok_or_else(|| at(n, format!("a `{:?}` names no group", e.kind)))
            };
            match e.kind {
                EntryKind::Add => {
                    planner.record_resolved(
                        n as u64,
                        Some(&e.organization),
                        Some(group()?),
                        &e.user,
                        None,
                    );
                }
                EntryKind::Remove => {
                    let g = planner
                        .group(&e.organization, group()?)
                        .map_err(|w| at(n, w))?;
                    removals.push((g, &e.user));
                }
                EntryKind::Create | EntryKind::Update => {
                    let (name, email) = (e.name.as_deref(), e.email.as_deref());
                    users.push((
                        &e.organization,
                        &e.user,
                        name.unwrap_or(""),
                        email.unwrap_or(""),
                    ));
                    actions.push(match e.kind {
                        EntryKind::Create => Action::Create,
                        _ => Action::Update(Changed {
                            name: e.fields.iter().any(|f| f == "name"),
                            email: e.fields.iter().any(|f| f == "email"),
                        }),
                    });
                }
                EntryKind::Delete => deletes.push((&e.organization, &e.user)),
            }
        }
        let mut plan = planner.finish();
        if let Some(bad) = plan.invalid.first() {
            return Err(at(bad.line as usize, bad.reason.clone()));
        }
        if !users.is_empty() || !deletes.is_empty() {
            let orgs: Vec<&str> = deletes.iter().map(|d| d.0).collect();
            let memberships = plan
                .memberships
                .iter()
                .map(|m| (&*plan.group_of(m).org, plan.user(m)));
            plan.accounts = Some(Accounts::listed(memberships, &users, &orgs));
        }
        let given = self.given(&plan, removals, deletes, actions)?;
        Ok((plan, given))
    }

    /// What apply expects of each place: the plan's read, and its removals there.
    fn given(
        &self,
        plan: &Plan,
        removals: Vec<(u32, &str)>,
        deletes: Vec<(&str, &str)>,
        actions: Vec<Action>,
    ) -> Result<Given, String> {
        let group_reads: HashMap<(&str, &str), &GroupRead> = self
            .reads
            .groups
            .iter()
            .map(|r| ((r.organization.as_str(), r.group.as_str()), r))
            .collect();
        let org_reads: HashMap<&str, &OrgRead> = self
            .reads
            .organizations
            .iter()
            .map(|r| (r.organization.as_str(), r))
            .collect();
        let parse = |count, text: &str, what: &str| {
            Fingerprint::parse(count, text)
                .ok_or_else(|| format!("the fingerprint of {what} is not 32 hexadecimal digits"))
        };
        let mut groups = Vec::with_capacity(plan.groups.len());
        for g in &plan.groups {
            let what = format!("group {}/{}", g.org, g.id);
            let read = match group_reads.get(&(&*g.org, &*g.id)) {
                Some(r) => Some(parse(r.members, &r.fingerprint, &what)?),
                None => None,
            };
            groups.push(Expected {
                read,
                removals: Vec::new(),
            });
        }
        for (g, user) in removals {
            groups[g as usize].removals.push(user.into());
        }
        let mut orgs = Vec::new();
        if let Some(accounts) = &plan.accounts {
            for o in &accounts.orgs {
                let what = format!("organization {}", o.id);
                let read = match org_reads.get(&*o.id) {
                    Some(r) => Some(parse(r.users, &r.fingerprint, &what)?),
                    None => None,
                };
                let removals = deletes
                    .iter()
                    .filter(|d| d.0 == &*o.id)
                    .map(|d| d.1.into())
                    .collect();
                orgs.push(Expected { read, removals });
            }
        }
        let given = Given {
            groups,
            orgs,
            actions,
        };
        if let Some(why) = given.unread_removal(plan) {
            return Err(why);
        }
        Ok(given)
    }
}

const ABOUT: &str = "A velt-group-sync plan. Review the changes, then make exactly these with \
                     `velt-group-sync apply THIS-FILE`; apply refuses it if the server changed \
                     since (see `reads`). Format: docs/plan-file.md.";

/// Fingerprints of a held-back plan's places, moved by what the run sent there: its adds and
/// creations, its removals and deletions (not what an earlier run's journal confirmed).
fn moved_by_the_run(plan: &Plan, ledger: &Ledger, touched: &mut BTreeMap<Place, Fingerprint>) {
    for r in ledger.rows() {
        if r.outcome.attempts == 0 {
            continue;
        }
        let Some(f) = touched.get_mut(&place(plan, ledger, r.index)) else {
            continue;
        };
        let user = ledger.user(plan, r.index);
        let removal = ledger.is_removal(r.index);
        *f = match (r.outcome.status, r.subject) {
            (Status::Added, Subject::Member { .. }) if !removal => f.with(user),
            (
                Status::Added,
                Subject::Account {
                    action: Action::Create,
                    ..
                },
            ) => f.with(user),
            (Status::Removed, _) if removal => f.without(user),
            _ => *f,
        };
    }
}

fn read_list(plan: &Plan, touched: &BTreeMap<Place, Fingerprint>) -> ReadList {
    let mut list = ReadList::default();
    for (p, f) in touched {
        match *p {
            Place::Group(g) => {
                let g = &plan.groups[g as usize];
                list.groups.push(GroupRead {
                    organization: g.org.to_string(),
                    group: g.id.to_string(),
                    members: f.count,
                    fingerprint: f.text(),
                });
            }
            Place::Org(o) => {
                let Some(acc) = &plan.accounts else { continue };
                list.organizations.push(OrgRead {
                    organization: acc.orgs[o as usize].id.to_string(),
                    users: f.count,
                    fingerprint: f.text(),
                });
            }
        }
    }
    list
}

/// One change as the file holds it.
fn entry(plan: &Plan, ledger: &Ledger, c: &changes::Change<'_>) -> Entry {
    let subject = ledger.subject(c.row);
    let kind = match c.kind {
        Kind::Add => EntryKind::Add,
        Kind::Remove => EntryKind::Remove,
        Kind::Create => EntryKind::Create,
        Kind::Update(_) => EntryKind::Update,
        Kind::Delete => EntryKind::Delete,
        Kind::HeldBack if matches!(subject, Subject::Leaver { .. }) => EntryKind::Delete,
        Kind::HeldBack => EntryKind::Remove,
    };
    let profile = match subject {
        Subject::Account { a, .. } => plan.accounts.as_ref().map(|acc| &acc.list[a as usize]),
        _ => None,
    };
    let fields = match c.kind {
        Kind::Update(changed) => [("name", changed.name), ("email", changed.email)]
            .into_iter()
            .filter(|f| f.1)
            .map(|f| f.0.to_string())
            .collect(),
        _ => Vec::new(),
    };
    Entry {
        kind,
        organization: c.org.to_string(),
        group: (!c.group.is_empty()).then(|| c.group.to_string()),
        user: c.user.to_string(),
        name: profile.map(|p| p.name.to_string()),
        email: profile.map(|p| p.email.to_string()),
        fields,
        why: (!c.why.is_empty()).then(|| c.why.to_string()),
    }
}

/// What `apply` expects of the server, per place of its plan.
#[derive(Debug, Default)]
pub struct Given {
    /// Per plan group.
    pub groups: Vec<Expected>,
    /// Per organization of the plan's accounts.
    pub orgs: Vec<Expected>,
    /// Per account of the plan: create, or update which fields.
    pub actions: Vec<Action>,
}

/// What a place held when the plan was made, and the plan's removals there.
#[derive(Debug, Default)]
pub struct Expected {
    /// `None`: not read when the plan was made (only adds go there).
    pub read: Option<Fingerprint>,
    pub removals: Vec<Box<str>>,
}

impl Given {
    /// A removal from a place the plan never read cannot be checked: refused.
    fn unread_removal(&self, plan: &Plan) -> Option<String> {
        let group = plan
            .groups
            .iter()
            .zip(&self.groups)
            .find(|(_, e)| e.read.is_none() && !e.removals.is_empty())
            .map(|(g, _)| format!("group {}/{}", g.org, g.id));
        let org = || {
            let accounts = plan.accounts.as_ref()?;
            accounts
                .orgs
                .iter()
                .zip(&self.orgs)
                .find(|(_, e)| e.read.is_none() && !e.removals.is_empty())
                .map(|(o, _)| format!("organization {}", o.id))
        };
        group.or_else(org).map(|what| {
            format!("the plan removes from {what} but holds no read of it (`reads`), so it cannot be checked; make the plan again")
        })
    }
}

/// Reads a plan file: one line saying what is wrong if it is not one.
pub fn read(path: &std::path::Path) -> Result<PlanFile, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{shown}: cannot read the plan file ({e}); check the path"))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{shown}:{}: not a velt-group-sync plan file ({e}); make one with `velt-group-sync plan`",
            e.line()
        )
    })
}

/// Writes a plan file, pretty-printed, atomically.
pub fn write(path: &std::path::Path, file: &PlanFile) -> Result<(), std::io::Error> {
    write_to(
        crate::files::Destination::prepare(path, ".velt-plan", 0o600)?,
        file,
    )
}

/// Writes a plan file to a destination prepared before the run.
pub fn write_to(dest: crate::files::Destination, file: &PlanFile) -> Result<(), std::io::Error> {
    dest.commit(|out| {
        serde_json::to_writer_pretty(&mut *out, file).map_err(std::io::Error::other)?;
        std::io::Write::write_all(out, b"\n")
    })
}

/// The SHA-256 of a file, in hexadecimal (what `sha256sum` prints).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
