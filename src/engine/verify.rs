//! `apply`: before a saved plan's first write, every group and organization it touches is
//! read again. The plan's own changes that a listing shows done (an interrupted apply, or the
//! adds of the run that held removals back) are taken back; if what is left differs from what
//! the plan read, the plan is stale and nothing is sent. Otherwise what is still to do goes,
//! and what is done already is `unchanged`.

use std::collections::{HashMap, HashSet};

use super::attempt::{Failure, detail};
use super::{Ended, Run, lock};
use crate::client::OrgUser;
use crate::interrupt::Interrupt;
use crate::ledger::Decisions;
use crate::outcome::{Outcome, Status};
use crate::plan::Plan;
use crate::provision::model::{Account, Accounts, Action, Changed};
use crate::saved::fingerprint::{Fingerprint, Reads, take_back};
use crate::saved::{Expected, Given};

impl Run<'_> {
    pub(super) async fn verify(
        &self,
        plan: &Plan,
        given: &Given,
        interrupt: &Interrupt,
    ) -> Result<(Decisions, u64, Reads), Ended> {
        let current = self
            .read_groups(plan, interrupt)
            .await
            .ok_or(Ended::Stopped)?;
        let users = match &plan.accounts {
            Some(a) => Some(
                self.read_org_users(a, interrupt)
                    .await
                    .ok_or(Ended::Stopped)?,
            ),
            None => None,
        };
        if lock(&self.auth_failure).is_some() {
            return Err(Ended::Stopped);
        }
        let mut decisions = Decisions::default();
        let mut stale = Vec::new();
        groups(plan, given, &current, &mut decisions, &mut stale);
        if let (Some(users), Some(accounts)) = (&users, &plan.accounts) {
            orgs(accounts, given, users, &mut decisions, &mut stale);
        }
        if !stale.is_empty() {
            return Err(Ended::Refused(format!(
                "the plan is stale: {}. Nothing was sent; make the plan again (velt-group-sync plan) and review it",
                stale.join("; ")
            )));
        }
        Ok((decisions, 0, Reads::default()))
    }
}

/// Each group's listing against the plan: the adds it holds, the removals it no longer holds.
fn groups(
    plan: &Plan,
    given: &Given,
    current: &[Result<Vec<OrgUser>, Failure>],
    decisions: &mut Decisions,
    stale: &mut Vec<String>,
) {
    for (g, listing) in current.iter().enumerate() {
        let group = &plan.groups[g];
        let what = format!("group {}/{}", group.org, group.id);
        let Some(listing) = readable(listing, &what, stale) else {
            continue;
        };
        let expected = &given.groups[g];
        let adds = group.members.iter().map(|&m| plan.user_at(m));
        let Some(done) = compare(listing, adds, expected, &what, "members", stale) else {
            continue;
        };
        decisions.unchanged.extend(
            group
                .members
                .iter()
                .filter(|&&m| done.added.contains(plan.user_at(m))),
        );
        for user in &expected.removals {
            let outcome = removal(done.removed.contains(&**user), "a member");
            decisions.strays.push((g as u32, user.to_string(), outcome));
        }
    }
}

/// Each organization's users against the plan: the users it creates that are there, the
/// updates made, the deletions done.
fn orgs(
    accounts: &Accounts,
    given: &Given,
    users: &[Result<Vec<OrgUser>, Failure>],
    decisions: &mut Decisions,
    stale: &mut Vec<String>,
) {
    for (o, listing) in users.iter().enumerate() {
        let org = &accounts.orgs[o];
        let what = format!("organization {}", org.id);
        let Some(listing) = readable(listing, &what, stale) else {
            continue;
        };
        let expected = &given.orgs[o];
        let creates = org
            .users
            .iter()
            .filter(|&&a| given.actions.get(a as usize) == Some(&Action::Create))
            .map(|&a| &*accounts.list[a as usize].user);
        let Some(done) = compare(listing, creates, expected, &what, "users", stale) else {
            continue;
        };
        // Looked up once per planned update, not searched for.
        let by_id: HashMap<&str, &OrgUser> =
            listing.iter().map(|u| (u.user_id.as_str(), u)).collect();
        for &a in &org.users {
            let account = &accounts.list[a as usize];
            let action = match given.actions.get(a as usize).copied() {
                Some(Action::Create) if done.added.contains(&*account.user) => Action::Keep,
                Some(Action::Update(changed)) if updated(&by_id, account, changed) => Action::Keep,
                Some(action) => action,
                None => Action::Create,
            };
            decisions.actions.push((a, action));
        }
        for user in &expected.removals {
            let outcome = removal(done.removed.contains(&**user), "a user of it");
            decisions
                .leavers
                .push((o as u32, user.to_string(), outcome));
        }
    }
}

/// A listing read, or why not (noted as a reason the plan cannot be checked).
fn readable<'l>(
    listing: &'l Result<Vec<OrgUser>, Failure>,
    what: &str,
    stale: &mut Vec<String>,
) -> Option<&'l [OrgUser]> {
    match listing {
        Ok(l) => Some(l),
        Err(e) => {
            let why = e
                .detail()
                .map_or_else(|| "the run stopped".to_string(), |d| d.message.clone());
            stale.push(format!("{what} could not be read again ({why})"));
            None
        }
    }
}

/// The plan's adds a listing holds and its removals it no longer holds, if the listing is
/// what the plan read give or take those; else notes the difference and gives `None`.
fn compare<'a>(
    listing: &[OrgUser],
    adds: impl Iterator<Item = &'a str>,
    expected: &'a Expected,
    what: &str,
    noun: &str,
    stale: &mut Vec<String>,
) -> Option<Done<'a>> {
    let ids: HashSet<&str> = listing.iter().map(|u| u.user_id.as_str()).collect();
    let adds: Vec<&'a str> = adds.collect();
    let found = take_back(&ids, adds, expected.removals.iter().map(|r| &**r));
    if let Some(read) = expected.read
        && found.before != read
    {
        stale.push(difference(what, noun, read, found.before));
        return None;
    }
    Some(Done {
        added: found.added,
        removed: found.gone,
    })
}

/// The plan's changes a listing shows done.
struct Done<'a> {
    added: HashSet<&'a str>,
    removed: HashSet<&'a str>,
}

fn difference(what: &str, noun: &str, read: Fingerprint, now: Fingerprint) -> String {
    if read.count == now.count {
        format!(
            "{what} holds other {noun} than when the plan was made ({} then and now, besides the plan's own changes)",
            read.count
        )
    } else {
        format!(
            "{what} holds {} {noun} where the plan read {} (besides the plan's own changes)",
            now.count, read.count
        )
    }
}

/// A removal's outcome before sending: to send, or done already.
fn removal(gone: bool, was: &str) -> Outcome {
    let mut o = Outcome::new(Status::NotAttempted);
    if gone {
        o.status = Status::Unchanged;
        o.detail = Some(detail(
            format!("not {was} any more: removed by an earlier apply, or since the plan was made"),
            None,
            None,
        ));
    }
    o
}

/// Whether an organization user already has the fields a planned update sets.
fn updated(listing: &HashMap<&str, &OrgUser>, account: &Account, changed: Changed) -> bool {
    let Some(now) = listing.get(&*account.user) else {
        return false;
    };
    let same = |field: &Option<String>, planned: &str| field.as_deref() == Some(planned);
    (!changed.name || same(&now.name, &account.name))
        && (!changed.email || same(&now.email, &account.email))
}
