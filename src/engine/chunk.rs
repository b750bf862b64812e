//! Chunks of one group's users: cut to the current size limit, sent through the attempt loop,
//! bisected when the server refuses a whole request for one bad ID, made smaller for the rest
//! of the run when the server limits list sizes, and their per-user answers turned into
//! outcomes.
//!
//! Each chunk is one task. A task keeps its members' outcomes in a registry while it runs, so
//! that a run cut short still knows what every attempted membership went through, and which
//! requests were in flight (their users may have been added: `unconfirmed`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::attempt::{Failure, Target, detail};
use super::{Kind, Run};
use crate::client::{Answer, NewUser, UserEntry};
use crate::ledger::{Names, Subject};
use crate::outcome::{Detail, Outcome, Status};
use crate::plan::{Group, Plan};

/// What a chunk's calls are about: a group's members, or an organization's users.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    Group(&'a Group),
    Org(&'a str),
}

impl<'a> Scope<'a> {
    pub fn org(self) -> &'a str {
        match self {
            Scope::Group(g) => &g.org,
            Scope::Org(o) => o,
        }
    }

    fn target(self, what: &'static str) -> Target<'a> {
        match self {
            Scope::Group(g) => Target::group(what, g),
            Scope::Org(o) => Target::org(what, o),
        }
    }
}

/// A running chunk task's view, kept where the main loop can read it if the run is cut short.
pub(crate) struct TaskState {
    /// The ledger's rows the chunk carries.
    pub members: Vec<u32>,
    pub outs: Vec<Outcome>,
    /// Positions (into `members`) of the request now on the wire.
    pub in_flight: Vec<usize>,
}

/// The chunk tasks of one run over a plan.
pub(crate) struct Chunking<'r, 'a> {
    pub run: &'r Run<'a>,
    pub plan: &'r Plan,
    /// What the rows are about (their user IDs), read while their outcomes are written.
    names: Names<'r>,
    tasks: Mutex<HashMap<u64, TaskState>>,
    next_task: AtomicU64,
}

/// Work left in a chunk task.
enum Work {
    Send(Vec<usize>),
    /// After both halves of a refused request: were they taken without another refusal?
    CheckHalves {
        parent_len: usize,
        refusals: u64,
    },
}

/// How a piece of a chunk ended, for bisection.
enum Sent {
    Done,
    RefusedInvalid,
}

impl<'r, 'a> Chunking<'r, 'a> {
    pub fn new(run: &'r Run<'a>, plan: &'r Plan, names: Names<'r>) -> Chunking<'r, 'a> {
        Chunking {
            run,
            plan,
            names,
            tasks: Mutex::new(HashMap::new()),
            next_task: AtomicU64::new(0),
        }
    }

    pub fn tasks(&self) -> MutexGuard<'_, HashMap<u64, TaskState>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, task: u64, positions: &[usize], f: impl Fn(&mut Outcome)) {
        if let Some(t) = self.tasks().get_mut(&task) {
            for &p in positions {
                f(&mut t.outs[p]);
            }
        }
    }

    /// Runs one chunk to the end: retries, bisection of refused requests, and smaller pieces
    /// when the size limit dropped. Returns the task id under which its outcomes wait.
    pub async fn run_chunk(&self, scope: Scope<'_>, members: &[u32], kind: Kind) -> u64 {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let n = members.len();
        self.tasks().insert(
            id,
            TaskState {
                members: members.to_vec(),
                outs: vec![Outcome::new(Status::NotAttempted); n],
                in_flight: Vec::new(),
            },
        );
        let mut refusals = 0u64;
        let mut work = vec![Work::Send((0..n).collect())];
        while let Some(item) = work.pop() {
            match item {
                Work::CheckHalves {
                    parent_len,
                    refusals: before,
                } => {
                    if refusals == before {
                        self.run.lower_chunk_size(parent_len.div_ceil(2));
                    }
                }
                Work::Send(positions) => {
                    if self.run.gate.stopping() {
                        continue;
                    }
                    let limit = self.run.chunk_limit.load(Ordering::Acquire).max(1);
                    if positions.len() > limit {
                        for piece in positions.chunks(limit).rev() {
                            work.push(Work::Send(piece.to_vec()));
                        }
                        continue;
                    }
                    let sent = self.send(id, (scope, kind), members, &positions).await;
                    if let Sent::RefusedInvalid = sent {
                        refusals += 1;
                        if positions.len() > 1 {
                            // One bad ID sinks the whole request: split until it stands alone.
                            let (left, right) = positions.split_at(positions.len() / 2);
                            work.push(Work::CheckHalves {
                                parent_len: positions.len(),
                                refusals,
                            });
                            work.push(Work::Send(right.to_vec()));
                            work.push(Work::Send(left.to_vec()));
                        }
                    }
                }
            }
        }
        id
    }

    /// Sends `positions` of a chunk until they have a definite answer, the retries run out,
    /// or the run stops. The task's outcomes in the registry always hold the latest word.
    async fn send(
        &self,
        task: u64,
        (scope, kind): (Scope<'_>, Kind),
        members: &[u32],
        positions: &[usize],
    ) -> Sent {
        let run = self.run;
        let mut pending = positions.to_vec();
        let mut resends = 0u32;
        let mut created = false;
        loop {
            let result = self.attempt(task, (scope, kind), members, &pending).await;
            let failure = match result {
                Ok((http_status, entries)) => {
                    let missing = self.take_answer(
                        task,
                        (scope, kind),
                        members,
                        &pending,
                        http_status,
                        &entries,
                    );
                    // Users the answer left out are sent again: an add is idempotent.
                    if missing.is_empty() || resends >= run.opts.max_retries {
                        return Sent::Done;
                    }
                    resends += 1;
                    run.counters.retries.fetch_add(1, Ordering::Relaxed);
                    pending = missing;
                    continue;
                }
                Err(failure) => failure,
            };
            let failure = match self
                .missing_group(failure, (scope, kind), &mut created)
                .await
            {
                Ok(()) => continue,
                Err(failure) => failure,
            };
            self.settle(task, &pending, &failure);
            return match failure {
                Failure::Refused {
                    invalid_argument: true,
                    ..
                } => Sent::RefusedInvalid,
                _ => Sent::Done,
            };
        }
    }

    /// One call of the chunk's `pending` positions through the attempt loop, with what is in
    /// flight marked in the task's registry entry while it is.
    async fn attempt(
        &self,
        task: u64,
        (scope, kind): (Scope<'_>, Kind),
        members: &[u32],
        pending: &[usize],
    ) -> Result<(u16, HashMap<String, UserEntry>), Failure> {
        let users: Vec<&str> = pending.iter().map(|&p| self.user_of(members[p])).collect();
        let target = scope.target(kind.event());
        self.run
            .attempt(
                target,
                || {
                    self.mark_in_flight(task, pending);
                    async {
                        let answer = self.call(scope, kind, members, pending, &users).await;
                        if let Some(t) = self.tasks().get_mut(&task) {
                            t.in_flight.clear();
                        }
                        match answer {
                            Answer::PerUser {
                                http_status,
                                entries,
                            } => Ok((http_status, entries)),
                            other => Err(other),
                        }
                    }
                },
                |interim| self.settle(task, pending, interim),
            )
            .await
    }

    /// An add refused NOT_FOUND: the group may not exist. With `--create-missing-groups` it is
    /// created once and `Ok` says to send the same users again; otherwise the failure comes
    /// back saying how to go on.
    async fn missing_group(
        &self,
        failure: Failure,
        (scope, kind): (Scope<'_>, Kind),
        created: &mut bool,
    ) -> Result<(), Failure> {
        let run = self.run;
        let Failure::Refused { detail: d, .. } = &failure else {
            return Err(failure);
        };
        let Scope::Group(group) = scope else {
            return Err(failure);
        };
        if kind != Kind::Add || d.error_status.as_deref() != Some("NOT_FOUND") {
            return Err(failure);
        }
        let why = if !run.opts.create_missing_groups {
            "the group may not exist; pass --create-missing-groups to create it".to_string()
        } else if !*created {
            *created = true;
            match run.ensure_group(group).await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            }
        } else {
            "the group was created, and the server still does not find it".to_string()
        };
        Err(Failure::Refused {
            detail: detail(
                format!("{} ({why})", d.message),
                d.error_status.clone(),
                d.http_status,
            ),
            invalid_argument: false,
        })
    }

    /// The user ID a chunk's row carries.
    fn user_of(&self, row: u32) -> &'r str {
        self.names.user(self.plan, row)
    }

    /// One request for `pending` members of a chunk.
    async fn call(
        &self,
        scope: Scope<'_>,
        kind: Kind,
        members: &[u32],
        pending: &[usize],
        users: &[&str],
    ) -> Answer {
        let client = &self.run.client;
        match (scope, kind) {
            (Scope::Group(g), Kind::Remove) => client.remove_users(&g.org, &g.id, users).await,
            (Scope::Group(g), _) => client.add_users(&g.org, &g.id, users).await,
            (Scope::Org(org), Kind::DeleteUsers) => client.delete_org_users(org, users).await,
            (Scope::Org(org), _) => {
                let role = self.run.opts.access_role.map(|r| r.as_str());
                let list: Vec<NewUser<'_>> = pending
                    .iter()
                    .zip(users)
                    .filter_map(|(&p, user)| {
                        let Subject::Account { a, .. } = self.names.subject(members[p]) else {
                            return None;
                        };
                        let account = self.plan.accounts.as_ref()?.list.get(a as usize)?;
                        Some(NewUser {
                            user_id: user,
                            name: &account.name,
                            email: &account.email,
                            access_role: role,
                        })
                    })
                    .collect();
                client
                    .put_org_users(kind == Kind::CreateUsers, org, &list)
                    .await
            }
        }
    }

    fn mark_in_flight(&self, task: u64, pending: &[usize]) {
        if let Some(t) = self.tasks().get_mut(&task) {
            t.in_flight.clear();
            t.in_flight.extend_from_slice(pending);
            for &p in pending {
                t.outs[p].attempts += 1;
            }
        }
    }

    /// Outcomes after a failure: never `failed` when an attempt may have applied, and only
    /// `not_attempted` when the server merely asked to wait too long.
    fn settle(&self, task: u64, pending: &[usize], failure: &Failure) {
        let Some(d) = failure.detail() else { return };
        let (status, held_back) = match failure {
            Failure::GaveUp {
                maybe_applied: true,
                ..
            } => (Status::Unconfirmed, false),
            Failure::GaveUp {
                held_back: true, ..
            } => (Status::NotAttempted, true),
            _ => (Status::Failed, false),
        };
        self.update(task, pending, |o| {
            o.status = status;
            o.detail = Some(d.clone());
            o.held_back = held_back;
        });
    }

    /// A per-user answer: each user's outcome, the confirmed adds journalled as they land.
    /// Returns the positions the answer did not confirm either way.
    fn take_answer(
        &self,
        task: u64,
        (scope, kind): (Scope<'_>, Kind),
        members: &[u32],
        pending: &[usize],
        http_status: u16,
        entries: &HashMap<String, UserEntry>,
    ) -> Vec<usize> {
        let done = kind.done_status();
        let mut missing = Vec::new();
        let mut added = Vec::new();
        let mut answered = 0;
        let mut details: HashMap<&str, Arc<Detail>> = HashMap::new();
        {
            let mut tasks = self.tasks();
            let Some(t) = tasks.get_mut(&task) else {
                return missing;
            };
            for &p in pending {
                let user = self.user_of(members[p]);
                let out = &mut t.outs[p];
                let entry = entries.get(user);
                answered += usize::from(entry.is_some());
                match entry.map(|e| (e.success, e.message.as_deref())) {
                    Some((Some(true), message)) => {
                        out.status = done;
                        out.detail = None;
                        if kind == Kind::CreateUsers
                            && message
                                .is_some_and(|m| m.to_ascii_lowercase().contains("already exist"))
                        {
                            // An add whose user was there already changed nothing.
                            out.status = Status::Unchanged;
                        }
                        if matches!(kind, Kind::Add | Kind::CreateUsers | Kind::UpdateUsers)
                            && let Some(key) = self.names.key(members[p])
                        {
                            added.push(key);
                        }
                    }
                    Some((Some(false), message)) => {
                        let message = message.unwrap_or("the server reported success: false");
                        out.status = Status::Failed;
                        out.detail = Some(
                            details
                                .entry(message)
                                .or_insert_with(|| {
                                    detail(message.to_string(), None, Some(http_status))
                                })
                                .clone(),
                        );
                    }
                    other => {
                        let why = if other.is_some() {
                            "the answer's entry for this user has no success flag"
                        } else {
                            "the answer has no entry for this user"
                        };
                        out.status = Status::Unconfirmed;
                        out.detail = Some(detail(why.into(), None, Some(http_status)));
                        missing.push(p);
                    }
                }
            }
        }
        self.run.journal_confirmed(added);
        // Entries for users this request did not carry say nothing about any row.
        if entries.len() > answered && !self.run.strays_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                event = "unsent_users_answered",
                organizationId = scope.org(),
                entries = entries.len() - answered,
                message = "the answer has results for users this request did not send; they are ignored (said once)"
            );
        }
        missing
    }
}

/// Cuts each group's pending members into chunks of the current size limit, which may drop
/// during the run.
pub(crate) struct Chunks<'a, 'p> {
    pub pending: &'p [(Scope<'a>, Vec<u32>, Kind)],
    pub group: usize,
    pub offset: usize,
    pub limit: &'p AtomicUsize,
}

impl<'a, 'p> Iterator for Chunks<'a, 'p> {
    type Item = (Scope<'a>, &'p [u32], Kind);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (group, members, kind) = self.pending.get(self.group)?;
            if self.offset >= members.len() {
                self.group += 1;
                self.offset = 0;
                continue;
            }
            let size = self.limit.load(Ordering::Acquire).max(1);
            let end = (self.offset + size).min(members.len());
            let chunk = &members[self.offset..end];
            self.offset = end;
            return Some((*group, chunk, *kind));
        }
    }
}

impl Run<'_> {
    /// The server refused a chunk but took both its halves: it limits the list size.
    fn lower_chunk_size(&self, to: usize) {
        let before = self.chunk_limit.fetch_min(to, Ordering::AcqRel);
        if to < before && !self.lowered.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                event = "chunk_size_lowered",
                from = before,
                to = to,
                message = "the server refused a chunk whose halves it accepted; sending smaller chunks for the rest of the run"
            );
        }
    }

    /// Creates the group once per run (later callers wait for the first and share its result).
    async fn ensure_group(&self, group: &Group) -> Result<(), String> {
        let cell = self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((group.org.clone(), group.id.clone()))
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let name = group.name.as_deref().unwrap_or(&group.id);
            let target = Target::group("create_group", group);
            let made = self
                .attempt(
                    target,
                    || self.client.create_group(&group.org, &group.id, name),
                    |_| {},
                )
                .await;
            match made {
                Ok(Ok(())) => {
                    tracing::info!(
                        event = "group_created",
                        organizationId = &*group.org,
                        organizationUserGroupId = &*group.id,
                    );
                    Ok(())
                }
                Ok(Err(message)) => Err(format!("could not create the group: {message}")),
                Err(Failure::Stopped) => Err("the run stopped before the group was created".into()),
                Err(failure) => Err(format!(
                    "could not create the group: {}",
                    failure.detail().map_or("", |d| d.message.as_str())
                )),
            }
        })
        .await
        .clone()
    }
}
