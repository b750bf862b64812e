//! `--provision-users`: read what each organization holds (delta and mirror modes), work out
//! which users to create, update or (`--deprovision-users`) remove, and after the users' calls
//! hold back the memberships of users who could not be provisioned.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::attempt::{Failure, Target, detail};
use super::chunk::Scope;
use super::keep::Keep;
use super::reconcile::Guard;
use super::{ExecOptions, Kind, Mode, Run};
use crate::accounts::{Accounts, Action};
use crate::client::OrgUser;
use crate::interrupt::Interrupt;
use crate::ledger::{Decisions, Names, Subject};
use crate::outcome::{Detail, Outcome, Status};

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

/// Compares each organization's users with the input: users there with the same name and
/// e-mail are kept, others updated or created; with `--deprovision-users` in mirror mode,
/// users the input does not list become removals unless the guard refuses them or they are
/// protected. Under `--user-id-case lower` a user is matched without case and keeps the
/// server's spelling. Returns how many organizations could not be read while their removals
/// were asked for.
pub(crate) fn reconcile(
    accounts: &Accounts,
    current: Current,
    keep: &Keep<'_>,
    opts: &ExecOptions,
    decisions: &mut Decisions,
) -> u64 {
    let deprovision = opts.deprovision_users && opts.mode == Mode::Mirror;
    let mut unread = 0;
    for (o, users) in current.into_iter().enumerate() {
        let users = match users {
            Ok(users) => users,
            Err(e) => {
                let why = e
                    .detail()
                    .map_or_else(|| "the run stopped".to_string(), |d| d.message.clone());
                unread += u64::from(deprovision);
                tracing::error!(
                    event = "read_failed",
                    organizationId = &*accounts.orgs[o].id,
                    message = %why,
                    consequence = if deprovision {
                        "its users are added as in add mode; none is removed from it"
                    } else {
                        "its users are added as in add mode"
                    },
                );
                continue;
            }
        };
        match_listed(accounts, o, &users, keep, decisions);
        if deprovision {
            leavers(accounts, o, &users, keep, opts, decisions);
        }
    }
    unread
}

/// The input's users of organization `o` that it holds already: kept when their name and
/// e-mail are the same, else updated; they take the server's spelling of their ID.
fn match_listed(
    accounts: &Accounts,
    o: usize,
    users: &[OrgUser],
    keep: &Keep<'_>,
    decisions: &mut Decisions,
) {
    let mut by_key: HashMap<Cow<'_, str>, &OrgUser> = HashMap::with_capacity(users.len());
    for u in users {
        // Of two spellings of one folded ID, the one the input has (folded) wins.
        let key = keep.key(&u.user_id);
        if *key == *u.user_id || !by_key.contains_key(&key) {
            by_key.insert(key, u);
        }
    }
    for &a in &accounts.orgs[o].users {
        let account = &accounts.list[a as usize];
        let Some(&there) = by_key.get(&*keep.key(&account.user)) else {
            continue;
        };
        if *there.user_id != *account.user {
            decisions
                .account_spellings
                .push((a, there.user_id.as_str().into()));
        }
        let same_name = there.name.as_deref().map(str::trim) == Some(&*account.name);
        let same_email = there
            .email
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(&account.email));
        let action = if same_name && same_email {
            Action::Keep
        } else {
            Action::Update
        };
        decisions.actions.push((a, action));
    }
}

/// `--deprovision-users`: the users of organization `o` that no record names become
/// removals, protected ones kept, the rest held back if the guard refuses them.
fn leavers(
    accounts: &Accounts,
    o: usize,
    users: &[OrgUser],
    keep: &Keep<'_>,
    opts: &ExecOptions,
    decisions: &mut Decisions,
) {
    let org_id = accounts.orgs[o].id.clone();
    let listed: HashSet<Cow<'_, str>> = accounts.orgs[o]
        .users
        .iter()
        .map(|&a| {
            keep.key(&accounts.list[a as usize].user)
                .into_owned()
                .into()
        })
        .collect();
    // Users no record names: a user named only by a record the input could not use is not a
    // leaver (the input is wrong, not the user gone). Every user passes through `once`: it
    // ends as the distinct users the guard counts.
    let mut once = HashSet::new();
    let extra = users.iter().filter(|u| {
        once.insert(u.user_id.as_str())
            && !listed.contains(&keep.key(&u.user_id))
            && !keep.named(&org_id, &u.user_id)
    });
    let mut candidates = Vec::new();
    for u in extra {
        match keep.protected(&org_id, None, &u.user_id, u.email.as_deref()) {
            Some(kept) => {
                let mut out = Outcome::new(Status::Protected);
                out.detail = Some(detail(kept.message(), None, None));
                decisions.leavers.push((o as u32, u.user_id.clone(), out));
            }
            None => candidates.push(u.user_id.as_str()),
        }
    }
    if candidates.is_empty() {
        return;
    }
    let refused = refusal(&org_id, candidates.len(), once.len(), opts);
    for user in candidates {
        let mut out = Outcome::new(Status::NotAttempted);
        if let Some(why) = &refused {
            out.hold(why.clone());
        }
        decisions.leavers.push((o as u32, user.to_string(), out));
    }
}

/// The organizations provisioning would create: those whose listing holds no user at all
/// (`/v2/users/add` creates a missing organization, so a typo in `--org` would make a new
/// one). One that could not be read is not counted: the read failed for a reason of its own
/// (NOT_FOUND reads as empty), and is reported as such. `None` when every one holds users.
pub(crate) fn would_create(accounts: &Accounts, current: &Current) -> Option<String> {
    let empty: Vec<String> = accounts
        .orgs
        .iter()
        .zip(current)
        .filter(|(_, users)| users.as_ref().is_ok_and(Vec::is_empty))
        .map(|(org, _)| crate::text::clip(&org.id).into_owned())
        .collect();
    if empty.is_empty() {
        return None;
    }
    Some(format!(
        "organization(s) {} hold no users, so provisioning would create them; nothing was \
         sent. Check --org (or the organization column); for the first run of a new \
         organization, pass --create-organization",
        empty.join(", ")
    ))
}

/// Why removing `removals` of an organization's `current` users is refused, if it is.
fn refusal(org: &str, removals: usize, current: usize, opts: &ExecOptions) -> Option<Arc<Detail>> {
    let guard = Guard {
        limit: opts.max_user_removals,
        allow_empty: opts.allow_empty,
        flag: "--max-user-removals",
        doing: "deprovisioning",
        holder: "organization",
        held: "users",
        removals: "user removals",
    };
    let (message, limit) = guard.refusal(removals, current)?;
    tracing::error!(
        event = "user_removals_refused",
        organizationId = org,
        removals = removals,
        current = current,
        limit = limit,
        message = %message,
    );
    Some(detail(message, None, None))
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
