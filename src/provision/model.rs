//! Organization users (`--provision-users`): which user must be a user of which organization,
//! with what name and e-mail, and what the run does about each. Built from the plan once the
//! input is read; delta and mirror modes then compare it with what the organizations hold.

use std::collections::HashMap;

use crate::outcome::{Outcome, Status};

/// A user's name and e-mail as the input gives them, from the first record naming the user.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: Box<str>,
    pub email: Box<str>,
    /// The record it came from, for the message when a later record says otherwise.
    pub line: u64,
}

/// What a run does about one organization user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not known to be a user of the organization: `/v2/users/add`.
    Create,
    /// A user whose name or e-mail differs (which, `Changed` says): `/v2/users/update`.
    Update(Changed),
    /// There already, with the same name and e-mail: nothing to send.
    Keep,
    /// A user of the organization the input does not list (`--deprovision-users`).
    Remove,
}

/// What differs between a user's profile in the input and in its organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    pub name: bool,
    pub email: bool,
}

impl Changed {
    /// `name`, `e-mail`, or `name, e-mail`.
    pub fn fields(self) -> &'static str {
        match (self.name, self.email) {
            (true, true) => "name, e-mail",
            (true, false) => "name",
            (false, true) => "e-mail",
            (false, false) => "nothing",
        }
    }
}

/// One (organization, user) the input names. What the run does about it is the ledger's.
#[derive(Debug)]
pub struct Account {
    /// Index into `Accounts::orgs`.
    pub org: u32,
    pub user: Box<str>,
    pub name: Box<str>,
    pub email: Box<str>,
}

/// One organization the input names, with its accounts.
#[derive(Debug)]
pub struct Org {
    pub id: Box<str>,
    /// Indexes into `Accounts::list` of the users the input names, in order of first appearance.
    pub users: Vec<u32>,
}

/// `--access-role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessRole {
    Viewer,
    Editor,
}

impl AccessRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Viewer => "viewer",
            AccessRole::Editor => "editor",
        }
    }
}

/// Sentinel of `Accounts::of_membership` for a membership without an account (its user has no
/// profile: the record was rejected before, so this is never seen outside `build`'s output).
const NO_ACCOUNT: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct Accounts {
    pub orgs: Vec<Org>,
    pub list: Vec<Account>,
    /// The account of each membership of the input; read through `of`.
    of_membership: Vec<u32>,
}

impl Accounts {
    /// One account per (organization, user) of the plan's memberships, given in plan order
    /// as (organization, user), in order of first appearance, each with its user's profile;
    /// every account starts as `Create`.
    pub fn build<'p>(
        memberships: impl ExactSizeIterator<Item = (&'p str, &'p str)>,
        profiles: &HashMap<Box<str>, Profile>,
    ) -> Accounts {
        let mut accounts = Accounts::default();
        let mut org_index: HashMap<&str, u32> = HashMap::new();
        let mut index: HashMap<(u32, &str), u32> = HashMap::new();
        accounts.of_membership.reserve(memberships.len());
        for (org_id, user) in memberships {
            let Some(profile) = profiles.get(user) else {
                accounts.of_membership.push(NO_ACCOUNT);
                continue;
            };
            let org = *org_index.entry(org_id).or_insert_with(|| {
                accounts.orgs.push(Org {
                    id: org_id.into(),
                    users: Vec::new(),
                });
                accounts.orgs.len() as u32 - 1
            });
            let list = &mut accounts.list;
            let orgs = &mut accounts.orgs;
            let a = *index.entry((org, user)).or_insert_with(|| {
                list.push(Account {
                    org,
                    user: user.into(),
                    name: profile.name.clone(),
                    email: profile.email.clone(),
                });
                let a = list.len() as u32 - 1;
                orgs[org as usize].users.push(a);
                a
            });
            accounts.of_membership.push(a);
        }
        accounts
    }

    /// The accounts a saved plan names: `users` as (organization, user, name, e-mail), in
    /// order, and every organization of `orgs`; each of the plan's `memberships`
    /// (organization, user) is linked to its user's account where the plan has one.
    pub fn listed<'p>(
        memberships: impl ExactSizeIterator<Item = (&'p str, &'p str)>,
        users: &[(&str, &str, &str, &str)],
        orgs: &[&str],
    ) -> Accounts {
        let mut accounts = Accounts::default();
        let mut org_index: HashMap<Box<str>, u32> = HashMap::new();
        let mut org_of = |accounts: &mut Accounts, id: &str| {
            *org_index.entry(id.into()).or_insert_with(|| {
                accounts.orgs.push(Org {
                    id: id.into(),
                    users: Vec::new(),
                });
                accounts.orgs.len() as u32 - 1
            })
        };
        let mut index: HashMap<(Box<str>, Box<str>), u32> = HashMap::new();
        for &(org_id, user, name, email) in users {
            let org = org_of(&mut accounts, org_id);
            let a = accounts.list.len() as u32;
            accounts.list.push(Account {
                org,
                user: user.into(),
                name: name.into(),
                email: email.into(),
            });
            accounts.orgs[org as usize].users.push(a);
            index.insert((org_id.into(), user.into()), a);
        }
        for org in orgs {
            org_of(&mut accounts, org);
        }
        accounts.of_membership = memberships
            .map(|(org, user)| {
                index
                    .get(&(Box::from(org), Box::from(user)))
                    .copied()
                    .unwrap_or(NO_ACCOUNT)
            })
            .collect();
        accounts
    }

    pub fn org_of(&self, a: &Account) -> &str {
        &self.orgs[a.org as usize].id
    }

    /// The account of membership `i`, if it has one.
    pub fn of(&self, i: usize) -> Option<u32> {
        self.of_membership
            .get(i)
            .copied()
            .filter(|&a| a != NO_ACCOUNT)
    }
}

/// The report's `user` column for an account the run meant to `action`, with this outcome:
/// what happened to the user in its organization. `Unchanged`: there already (read in delta
/// and mirror modes, or an add the server answered "already exists").
pub fn user_column(action: Action, outcome: &Outcome) -> &'static str {
    match outcome.status {
        Status::Failed => "failed",
        Status::Unconfirmed => "unconfirmed",
        Status::NotAttempted => "not_attempted",
        Status::Invalid => "",
        Status::Unchanged => "unchanged",
        Status::Protected => "protected",
        Status::Added | Status::Planned | Status::Removed => match action {
            Action::Keep => "unchanged",
            Action::Create => "created",
            Action::Update(_) => "updated",
            Action::Remove => "removed",
        },
    }
}

/// Counts of what happened to organization users, for the summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub removed: u64,
    /// Users `--protect-users` kept from being deprovisioned.
    pub protected: u64,
    /// Failed, unconfirmed or not attempted (held back or cut short).
    pub failed: u64,
}

impl UserCounts {
    /// Counts one user by its `user` column.
    pub fn add(&mut self, column: &str) {
        match column {
            "created" => self.created += 1,
            "updated" => self.updated += 1,
            "unchanged" => self.unchanged += 1,
            "removed" => self.removed += 1,
            "protected" => self.protected += 1,
            _ => self.failed += 1,
        }
    }
}
