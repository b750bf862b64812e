//! Delta and mirror modes: read what each group holds (page by page, through the attempt
//! loop), then work out what to change: members already there are `unchanged`; in mirror mode
//! members the input does not list are removals, unless the group's safety limits refuse them.
//! What it works out goes to the ledger as `Decisions`; the plan stays as the input made it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;

use super::attempt::{Failure, Target, detail};
use super::keep::Keep;
use super::{ExecOptions, Mode, Run};
use crate::client::{Answer, OrgUser, Page};
use crate::guard::Guard;
use crate::interrupt::Interrupt;
use crate::ledger::Decisions;
use crate::outcome::{Detail, Outcome, Status};
use crate::plan::{Group, Plan};
use crate::provision::decide::{Listing, Options};
use crate::provision::model::Accounts;

/// The most members a listing (a group's, or an organization's users) is taken to hold: a
/// server that lists more is taken to be listing without end. Bounds the memory a hostile
/// server can make a run take (about 150 bytes a member).
const MAX_LISTED: usize = 2_000_000;

/// Every organization's users, in `Accounts::orgs` order.
pub(crate) type Current = Vec<Result<Vec<OrgUser>, Failure>>;

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

/// What a paged listing has shown so far, to tell one that does not end normally.
struct Paging {
    seen: HashSet<String>,
    tokens: HashSet<String>,
    pages: u64,
    page_size: u32,
}

impl Paging {
    fn new(page_size: u32) -> Paging {
        Paging {
            seen: HashSet::new(),
            tokens: HashSet::new(),
            pages: 0,
            page_size: page_size.max(1),
        }
    }

    /// Checks the next page, after `before` entries: not beyond what a listing holds, not
    /// larger than asked for, no entry listed twice.
    fn take<T>(&mut self, page: &[T], before: usize, key: fn(&T) -> &str) -> Result<(), String> {
        self.pages += 1;
        let pages = self.pages;
        let largest_page = self.page_size as usize;
        if before + page.len() > MAX_LISTED {
            return Err(format!(
                "the server lists more than {MAX_LISTED} entries, more than a listing is taken to hold"
            ));
        }
        if page.len() > largest_page {
            return Err(format!(
                "the server returned {} entries on page {pages}, more than the {largest_page} asked for (--page-size)",
                page.len()
            ));
        }
        for item in page {
            if !self.seen.insert(key(item).to_string()) {
                return Err(format!(
                    "the server listed `{}` twice (page {pages}): {}",
                    crate::text::escape_controls(&crate::text::shorten(key(item))),
                    "a listing that repeats entries or pages that overlap may leave others out"
                ));
            }
        }
        Ok(())
    }

    /// Checks the token for the next page. A server that hands back a token it gave before,
    /// or pages without end, would keep the run reading for ever.
    fn next(&mut self, token: &str, empty: bool) -> Result<(), String> {
        let (pages, page_size) = (self.pages, self.page_size);
        if !self.tokens.insert(token.to_string()) {
            Err("the server returned a page token it had returned before".to_string())
        } else if empty {
            Err("the server returned an empty page, and another page token".to_string())
        } else if pages >= MAX_LISTED.div_ceil(page_size as usize) as u64 {
            Err(format!(
                "the server keeps returning pages: {pages} pages of {page_size} exceed the {MAX_LISTED} entries a listing is taken to hold"
            ))
        } else {
            Ok(())
        }
    }
}

impl Run<'_> {
    /// Every member of a group, page by page. A group the server does not know has none.
    async fn read_members(&self, group: &Group) -> Result<Vec<OrgUser>, Failure> {
        let fetch = |token: Option<String>| async move {
            self.client
                .get_members(&group.org, &group.id, self.opts.page_size, token.as_deref())
                .await
        };
        self.read_pages(Target::group("read_page", group), fetch, |u| &u.user_id)
            .await
    }

    /// Every item of a paged listing. What the server does not know (NOT_FOUND on the first
    /// page) holds none. A listing that does not end normally is a failure, so that it is
    /// never a source of removals: an error on a later page, an ID listed twice (a repeat, or
    /// pages that overlap), a page larger than asked for, a token handed back twice, or more
    /// pages than a listing can hold.
    pub(crate) async fn read_pages<T, F, Fut>(
        &self,
        target: Target<'_>,
        fetch: F,
        key: fn(&T) -> &str,
    ) -> Result<Vec<T>, Failure>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Page<T>, Answer>>,
    {
        let mut items: Vec<T> = Vec::new();
        let mut token: Option<String> = None;
        let mut listing = Paging::new(self.opts.page_size);
        let unreadable = |problem: String| Failure::Refused {
            detail: detail(format!("{problem}; cannot read it"), None, None),
            invalid_argument: false,
        };
        loop {
            let page = self.attempt(target, || fetch(token.clone()), |_| {}).await;
            let page = match page {
                Ok(p) => p,
                Err(Failure::Refused { detail, .. })
                    if listing.pages == 0
                        && detail.error_status.as_deref() == Some("NOT_FOUND") =>
                {
                    return Ok(items);
                }
                Err(Failure::Refused { detail, .. }) if listing.pages > 0 => {
                    return Err(unreadable(format!(
                        "the listing failed on page {} ({}), so it is incomplete",
                        listing.pages + 1,
                        detail.message
                    )));
                }
                Err(e) => return Err(e),
            };
            listing
                .take(&page.users, items.len(), key)
                .map_err(unreadable)?;
            let empty = page.users.is_empty();
            items.extend(page.users);
            let Some(next) = page.next_page_token else {
                return Ok(items);
            };
            listing.next(&next, empty).map_err(unreadable)?;
            token = Some(next);
        }
    }

    /// Reads every group's members, at most `max_concurrency` groups at once. `None` if a
    /// signal came first (reads change nothing, so they are simply dropped).
    pub(crate) async fn read_groups(
        &self,
        plan: &Plan,
        interrupt: &Interrupt,
    ) -> Option<Vec<Result<Vec<OrgUser>, Failure>>> {
        let reads = plan.groups.iter().map(|g| self.read_members(g));
        self.read_each(reads, interrupt, "groups").await
    }

    /// Runs `reads`, at most `max_concurrency` at once, and gives their results in order;
    /// `None` if a signal came first (reads change nothing, so they are simply dropped).
    pub(crate) async fn read_each<T, Fut>(
        &self,
        reads: impl ExactSizeIterator<Item = Fut>,
        interrupt: &Interrupt,
        what: &str,
    ) -> Option<Vec<Result<T, Failure>>>
    where
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut current: Vec<Option<Result<T, Failure>>> = (0..reads.len()).map(|_| None).collect();
        let mut reads = futures_util::stream::iter(reads.enumerate())
            .map(|(i, read)| async move { (i, read.await) })
            .buffer_unordered(self.opts.max_concurrency.max(1));
        loop {
            tokio::select! {
                biased;
                _ = interrupt.stop.cancelled() => {
                    tracing::warn!(event = "interrupted", message = %format!("stopping while reading {what}; nothing was written"));
                    self.gate.stop();
                    return None;
                }
                next = reads.next() => {
                    let Some((i, result)) = next else { break };
                    current[i] = Some(result);
                }
            }
        }
        Some(
            current
                .into_iter()
                .map(|c| c.unwrap_or(Err(Failure::Stopped)))
                .collect(),
        )
    }
}

/// Compares each group's current members with the input and says what to change. The
/// guard counts distinct members: a listing that repeats one is never read as complete.
pub(crate) fn reconcile(
    plan: &Plan,
    current: Vec<Result<Vec<OrgUser>, Failure>>,
    opts: &ExecOptions,
    keep: &Keep<'_>,
    changes: &mut Decisions,
) -> u64 {
    let mut unread = 0;
    for (g, members) in current.into_iter().enumerate() {
        let group = &plan.groups[g];
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                unread += unreadable(group, &e, opts, changes);
                continue;
            }
        };
        let current: HashMap<Cow<'_, str>, &OrgUser> =
            members.iter().map(|m| (keep.key(&m.user_id), m)).collect();
        if opts.mode == Mode::Remove {
            remove_listed(
                plan,
                g as u32,
                &current,
                distinct(&members),
                opts,
                keep,
                changes,
            );
            continue;
        }
        let mut listed = HashSet::with_capacity(group.members.len());
        for &i in &group.members {
            let user = keep.key(plan.user_at(i));
            if current.contains_key(&user) {
                changes.unchanged.push(i);
            }
            listed.insert(user);
        }
        if opts.mode != Mode::Mirror {
            continue;
        }
        // Members the input does not list, in the server's order, unless a record the input
        // could not use names them.
        // Every member passes through `once` (its insert comes first), so it ends as the
        // distinct members the guard measures against.
        let mut once = HashSet::new();
        let extra = members.iter().filter(|m| {
            once.insert(m.user_id.as_str())
                && !listed.contains(&keep.key(&m.user_id))
                && !keep.named(&group.org, &m.user_id)
        });
        let mut candidates = Vec::new();
        for m in extra {
            match keep.protected(&group.org, Some(&group.id), &m.user_id, m.email.as_deref()) {
                Some(kept) => {
                    let mut o = Outcome::new(Status::Protected);
                    o.detail = Some(detail(kept.message(), None, None));
                    changes.strays.push((g as u32, m.user_id.clone(), o));
                }
                None => candidates.push(m.user_id.as_str()),
            }
        }
        if candidates.is_empty() {
            continue;
        }
        let refused = refusal(group, candidates.len(), once.len(), opts);
        for user in candidates {
            let mut o = Outcome::new(Status::NotAttempted);
            if let Some(why) = &refused {
                o.hold(why.clone());
            }
            changes.strays.push((g as u32, user.to_string(), o));
        }
    }
    unread
}

/// How many distinct users a listing holds: what the guards measure against, whatever the
/// listing repeats.
fn distinct(listing: &[OrgUser]) -> usize {
    let ids: HashSet<&str> = listing.iter().map(|u| u.user_id.as_str()).collect();
    ids.len()
}

/// A group that could not be read: nothing is removed from it (mirror), its listed removals
/// are held back (remove mode), and the run says so.
/// Returns 1 if the group's removals are unknown (mirror and remove modes), else 0.
fn unreadable(group: &Group, e: &Failure, opts: &ExecOptions, changes: &mut Decisions) -> u64 {
    let why = e
        .detail()
        .map_or_else(|| "the run stopped".to_string(), |d| d.message.clone());
    let unread = u64::from(matches!(opts.mode, Mode::Mirror | Mode::Remove));
    if opts.mode == Mode::Remove {
        let held = detail(
            format!("not removed: the group could not be read ({why}); re-run to remove"),
            None,
            None,
        );
        changes
            .held
            .extend(group.members.iter().map(|&i| (i, held.clone())));
    }
    tracing::error!(
        event = "read_failed",
        organizationId = &*group.org,
        organizationUserGroupId = &*group.id,
        message = %why,
        consequence = match opts.mode {
            Mode::Mirror => "its users are added as in add mode; nothing is removed from it",
            Mode::Remove => "nothing is removed from it",
            _ => "its users are added as in add mode",
        },
    );
    unread
}

/// `--mode remove`: the group's listed members that are members now are to go (under the
/// same safety limits as mirror's, protected ones kept); the others are `unchanged`.
fn remove_listed(
    plan: &Plan,
    g: u32,
    current: &HashMap<Cow<'_, str>, &OrgUser>,
    members: usize,
    opts: &ExecOptions,
    keep: &Keep<'_>,
    changes: &mut Decisions,
) {
    let group = &plan.groups[g as usize];
    let mut there = Vec::new();
    for &i in &group.members {
        let user = plan.user_at(i);
        let Some(member) = current.get(&keep.key(user)) else {
            changes.unchanged.push(i);
            continue;
        };
        match keep.protected(
            &group.org,
            Some(&group.id),
            &member.user_id,
            member.email.as_deref(),
        ) {
            Some(kept) => changes
                .protected
                .push((i, detail(kept.message(), None, None))),
            None => there.push(i),
        }
    }
    if there.is_empty() {
        return;
    }
    match refusal(group, there.len(), members, opts) {
        Some(why) => changes
            .held
            .extend(there.into_iter().map(|i| (i, why.clone()))),
        None => changes.remove.extend(there),
    }
}

/// Why a group's `removals` of `current` members are refused, if they are.
fn refusal(
    group: &Group,
    removals: usize,
    current: usize,
    opts: &ExecOptions,
) -> Option<Arc<Detail>> {
    let guard = Guard::members(opts.max_removals, opts.allow_empty);
    let (message, limit) = guard.refusal(removals, current)?;
    tracing::error!(
        event = "removals_refused",
        organizationId = &*group.org,
        organizationUserGroupId = &*group.id,
        removals = removals,
        current = current,
        limit = limit,
        message = %message,
    );
    Some(detail(message, None, None))
}
