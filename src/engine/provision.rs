//! `--provision-users`: read what each organization holds (delta and mirror modes), work out
//! which users to create, update or (`--deprovision-users`) remove, and after the users' calls
//! hold back the memberships of users who could not be provisioned.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::attempt::{Failure, Target, detail};
use super::chunk::Scope;
use super::reconcile::Guard;
use super::{ExecOptions, Kind, Mode, Run};
use crate::accounts::{Accounts, Action};
use crate::client::OrgUser;
use crate::interrupt::Interrupt;
use crate::outcome::{Detail, Outcome, Status};
use crate::plan::{Invalid, Plan};

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
}

/// Compares each organization's users with the input: users there with the same name and
/// e-mail are kept, others updated or created; with `--deprovision-users` in mirror mode,
/// users the input does not list become removals unless the guard refuses them. Returns how
/// many organizations could not be read while their removals were asked for.
pub(crate) fn reconcile(
    accounts: &mut Accounts,
    outcomes: &mut Vec<Outcome>,
    current: Current,
    invalid: &[Invalid],
    opts: &ExecOptions,
) -> u64 {
    let deprovision = opts.deprovision_users && opts.mode == Mode::Mirror;
    let mut unread = 0;
    for (o, users) in current.into_iter().enumerate() {
        let org_id = accounts.orgs[o].id.clone();
        let users = match users {
            Ok(users) => users,
            Err(e) => {
                let why = e
                    .detail()
                    .map_or_else(|| "the run stopped".to_string(), |d| d.message.clone());
                unread += u64::from(deprovision);
                tracing::error!(
                    event = "read_failed",
                    organizationId = &*org_id,
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
        let by_id: HashMap<&str, &OrgUser> =
            users.iter().map(|u| (u.user_id.as_str(), u)).collect();
        for &a in &accounts.orgs[o].users {
            let account = &mut accounts.list[a as usize];
            if let Some(there) = by_id.get(&*account.user) {
                let same_name = there.name.as_deref().map(str::trim) == Some(&*account.name);
                let same_email = there
                    .email
                    .as_deref()
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case(&account.email));
                account.action = if same_name && same_email {
                    Action::Keep
                } else {
                    Action::Update
                };
                let out = &mut outcomes[a as usize];
                if account.action == Action::Keep && out.still_to_send() {
                    out.status = Status::Unchanged;
                }
            }
        }
        if !deprovision {
            continue;
        }
        let listed: HashSet<&str> = accounts.orgs[o]
            .users
            .iter()
            .map(|&a| &*accounts.list[a as usize].user)
            .collect();
        // A user the input names only in invalid records is not a leaver: the input is wrong.
        let named: HashSet<&str> = invalid
            .iter()
            .filter(|bad| bad.org == *org_id)
            .map(|bad| bad.user.as_str())
            .collect();
        let mut seen = HashSet::new();
        let extra: Vec<String> = users
            .iter()
            .map(|u| u.user_id.as_str())
            .filter(|u| !listed.contains(u) && !named.contains(u) && seen.insert(*u))
            .map(str::to_string)
            .collect();
        if extra.is_empty() {
            continue;
        }
        let refused = refusal(&org_id, extra.len(), users.len(), opts);
        for user in extra {
            accounts.push_removal(o as u32, &user);
            let mut out = Outcome::new(Status::NotAttempted);
            if let Some(why) = &refused {
                out.hold(why.clone());
            }
            outcomes.push(out);
        }
    }
    unread
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

/// The organization-user chunks still to send: creations and updates, or (`removals`) the
/// users to remove, per organization.
pub(crate) fn pending<'a>(
    accounts: &'a Accounts,
    outcomes: &[Outcome],
    removals: bool,
) -> Vec<(Scope<'a>, Vec<u32>, Kind)> {
    let kinds: &[(Action, Kind)] = if removals {
        &[(Action::Remove, Kind::DeleteUsers)]
    } else {
        &[
            (Action::Create, Kind::CreateUsers),
            (Action::Update, Kind::UpdateUsers),
        ]
    };
    let mut out = Vec::new();
    for org in &accounts.orgs {
        let list = if removals { &org.removals } else { &org.users };
        for &(action, kind) in kinds {
            let members: Vec<u32> = list
                .iter()
                .copied()
                .filter(|&a| {
                    accounts.list[a as usize].action == action
                        && outcomes[a as usize].still_to_send()
                })
                .collect();
            if !members.is_empty() {
                out.push((Scope::Org(&org.id), members, kind));
            }
        }
    }
    out
}

/// Memberships whose user could not be made a user of the organization are not sent: each is
/// `not_attempted`, with the reason.
pub(crate) fn hold_unprovisioned(
    plan: &Plan,
    accounts: &Accounts,
    account_outcomes: &[Outcome],
    outcomes: &mut [Outcome],
) {
    let mut reasons: HashMap<u32, Arc<Detail>> = HashMap::new();
    for (i, o) in outcomes.iter_mut().enumerate() {
        if !o.still_to_send() || plan.memberships[i].is_removal() {
            continue;
        }
        let Some(a) = accounts.of(i) else { continue };
        let account = &account_outcomes[a as usize];
        if account.status.is_success() {
            continue;
        }
        let why = reasons.entry(a).or_insert_with(|| {
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
        });
        o.hold(why.clone());
    }
}
