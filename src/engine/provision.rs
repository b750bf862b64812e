//! `--provision-users`: read what each organization holds (delta and mirror modes), work out
//! which users to create, update or (`--deprovision-users`) remove, and after the users' calls
//! hold back the memberships of users who could not be provisioned.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::attempt::{Failure, Target, detail};
use super::chunk::Scope;
use super::keep::Keep;
use super::{ExecOptions, Kind, Mode, Run};
use crate::client::OrgUser;
use crate::interrupt::Interrupt;
use crate::ledger::{Names, Subject};
use crate::outcome::{Detail, Outcome};
use crate::provision::decide::{Keeps, Listing, Options};
use crate::provision::model::{Accounts, Action};

/// Every organization's users, in `Accounts::orgs` order.
type Current = Vec<Result<Vec<OrgUser>, Failure>>;

impl Run<'_> {
    /// Reads every organization's users, at most `max_concurrency` at once. `None` if a signal
    /// came first.
    pub(crate) async fn read_org_users(
        &self,
        accounts: &Accounts,
        interrupt: &Interrupt,
    ) -> Option<Current> {
        let reads = accounts.orgs.iter().map(|org| {
            let fetch = move |token: Option<String>| async move {
                self.client
                    .get_org_users(&org.id, self.opts.page_size, token.as_deref())
                    .await
            };
            let target = Target::org("read_users_page", &org.id);
            self.read_pages(target, fetch, |u| &u.user_id)
        });
        self.read_each(reads, interrupt, "organization users").await
    }

    /// Add mode, which reads nothing else: whether each organization holds a user, from one
    /// page of one user. `None` if a signal came first.
    pub(crate) async fn probe_orgs(
        &self,
        accounts: &Accounts,
        interrupt: &Interrupt,
    ) -> Option<Current> {
        let reads = accounts.orgs.iter().map(|org| async move {
            let target = Target::org("read_users_page", &org.id);
            let page = self
                .attempt(
                    target,
                    || self.client.get_org_users(&org.id, 1, None),
                    |_| {},
                )
                .await;
            match page {
                Ok(page) => Ok(page.users),
                Err(Failure::Refused { detail, .. })
                    if detail.error_status.as_deref() == Some("NOT_FOUND") =>
                {
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            }
        });
        self.read_each(reads, interrupt, "organizations").await
    }
}

/// The organizations' listings as provisioning reads them: the users, or why not.
pub(crate) fn listings(current: Current) -> Vec<Listing> {
    current
        .into_iter()
        .map(|users| {
            users.map_err(|e| {
                e.detail()
                    .map_or_else(|| "the run stopped".to_string(), |d| d.message.clone())
            })
        })
        .collect()
}

/// What provisioning's decisions need of the run's options.
pub(crate) fn options(opts: &ExecOptions) -> Options {
    Options {
        deprovision: opts.deprovision_users && opts.mode == Mode::Mirror,
        max_user_removals: opts.max_user_removals,
        allow_empty: opts.allow_empty,
    }
}

impl Keeps for Keep<'_> {
    fn key<'u>(&self, user: &'u str) -> Cow<'u, str> {
        Keep::key(self, user)
    }

    fn named(&self, org: &str, user: &str) -> bool {
        Keep::named(self, org, user)
    }

    fn protected(&self, org: &str, user: &str, email: Option<&str>) -> Option<String> {
        Keep::protected(self, org, None, user, email).map(|kept| kept.message())
    }
}

/// The organization-user chunks still to send: creations and updates, per organization.
pub(crate) fn pending<'a>(
    accounts: &'a Accounts,
    names: Names<'_>,
    outcomes: &[Outcome],
) -> Vec<(Scope<'a>, Vec<u32>, Kind)> {
    let mut out = Vec::new();
    for org in &accounts.orgs {
        for (want, kind) in [
            (Action::Create, Kind::CreateUsers),
            (Action::Update, Kind::UpdateUsers),
        ] {
            let rows: Vec<u32> = org
                .users
                .iter()
                .map(|&a| names.account_row(a))
                .filter(|&row| {
                    matches!(names.subject(row), Subject::Account { action, .. } if action == want)
                        && outcomes[row as usize].still_to_send()
                })
                .collect();
            if !rows.is_empty() {
                out.push((Scope::Org(&org.id), rows, kind));
            }
        }
    }
    out
}

/// The users to remove from their organizations (`--deprovision-users`) still to send, per
/// organization.
pub(crate) fn leaving<'a>(
    accounts: &'a Accounts,
    names: Names<'_>,
    outcomes: &[Outcome],
) -> Vec<(Scope<'a>, Vec<u32>, Kind)> {
    let mut by_org: Vec<Vec<u32>> = vec![Vec::new(); accounts.orgs.len()];
    for (row, subject) in names.rows() {
        if let Subject::Leaver { org, .. } = subject
            && outcomes[row as usize].still_to_send()
        {
            by_org[org as usize].push(row);
        }
    }
    accounts
        .orgs
        .iter()
        .zip(by_org)
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(org, rows)| (Scope::Org(&org.id), rows, Kind::DeleteUsers))
        .collect()
}

/// Memberships whose user could not be made a user of the organization are not sent: each is
/// `not_attempted`, with the reason.
pub(crate) fn hold_unprovisioned(names: Names<'_>, outcomes: &mut [Outcome]) {
    let mut reasons: HashMap<u32, Arc<Detail>> = HashMap::new();
    for (row, subject) in names.rows() {
        let Subject::Member {
            account: Some(a), ..
        } = subject
        else {
            continue;
        };
        if !outcomes[row as usize].still_to_send() || names.is_removal(row) {
            continue;
        }
        let account = &outcomes[a as usize];
        if account.status.is_success() {
            continue;
        }
        let why = reasons
            .entry(a)
            .or_insert_with(|| {
                let cause = account
                    .detail
                    .as_deref()
                    .map_or("it was not sent", |d| d.message.as_str());
                detail(
                    format!(
                        "not sent: the user could not be made a user of the organization ({}: {cause})",
                        account.status
                    ),
                    account
                        .detail
                        .as_deref()
                        .and_then(|d| d.error_status.clone()),
                    account.detail.as_deref().and_then(|d| d.http_status),
                )
            })
            .clone();
        outcomes[row as usize].hold(why);
    }
}
