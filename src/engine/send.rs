//! Sending a reconciled plan: organization users first, then every group's adds, then
//! removals, then organization users to remove, each phase's chunks through the shared gate,
//! with answers landing as outcomes while the loop watches for signals.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use tokio::time::Instant;

use super::attempt::detail;
use super::chunk::{Chunking, Chunks, Scope};
use super::{Kind, Run};
use crate::interrupt::Interrupt;
use crate::ledger::{Ledger, Names, Subject};
use crate::outcome::{Detail, Outcome, Status};
use crate::plan::Plan;
use crate::provision::model::{Accounts, Action};

/// Where answers land: the ledger's outcomes, by row.
pub(super) struct Results<'o> {
    pub outcomes: &'o mut [Outcome],
}

impl Results<'_> {
    fn set(&mut self, rows: &[u32], outs: Vec<Outcome>) {
        for (&i, o) in rows.iter().zip(outs) {
            if let Some(slot) = self.outcomes.get_mut(i as usize) {
                *slot = o;
            }
        }
    }
}

/// Chunks to send: what each is about, its rows, and the call.
type Pending<'a> = Vec<(Scope<'a>, Vec<u32>, Kind)>;

/// Sends every chunk: organization users first (group calls need them), then the adds of
/// every group, then removals, then organization users to remove, so that a run cut short has
/// done the safe part. Returns the exit code of the signal that stopped it, if one did.
pub(super) async fn send_all(
    run: &Run<'_>,
    plan: &Plan,
    ledger: &mut Ledger,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) -> Option<u8> {
    let (names, outcomes) = ledger.split();
    let mut results = Results { outcomes };
    let chunking = Chunking::new(run, plan, names);
    let opts = run.opts;
    let users = plan
        .accounts
        .as_ref()
        .map_or_else(Vec::new, |a| pending_users(a, names, results.outcomes));
    // Chunk tasks may queue up to the most slots there can be; the slots themselves (see
    // `Concurrency`) bound what is on the wire.
    let width = opts.max_concurrency.max(opts.concurrency).max(1);
    let phase = |pending| {
        let chunks = Chunks {
            pending,
            group: 0,
            offset: 0,
            limit: &run.chunk_limit,
        };
        futures_util::stream::iter(chunks)
            .map(|(scope, members, kind)| chunking.run_chunk(scope, members, kind))
            .buffer_unordered(width)
    };
    let mut drive = Drive::default();
    if plan.accounts.is_some() {
        drive
            .run(&chunking, phase(&users), &mut results, progress, interrupt)
            .await;
        if drive.aborted || drive.interrupted.is_some() || run.gate.stopping() {
            return drive.finish(&chunking, &mut results, interrupt);
        }
        hold_unprovisioned(names, results.outcomes);
    }
    let (adds, removals) = group_phases(plan, names, results.outcomes);
    let user_removals = plan
        .accounts
        .as_ref()
        .map_or_else(Vec::new, |a| leaving_users(a, names, results.outcomes));
    // Every add is answered before the first removal goes, so that a run cut short has done
    // the safe half: `chain` starts the removals only once the adds' stream has ended.
    let answers = phase(&adds)
        .chain(phase(&removals))
        .chain(phase(&user_removals));
    drive
        .run(&chunking, answers, &mut results, progress, interrupt)
        .await;
    drive.finish(&chunking, &mut results, interrupt)
}

/// The group chunks still to send: every group's adds (none for a removal list), and every
/// group's removals (a removal list's memberships, or members the input does not list).
fn group_phases<'p>(
    plan: &'p Plan,
    names: Names<'_>,
    outcomes: &[Outcome],
) -> (Pending<'p>, Pending<'p>) {
    // A removal list adds nothing: its memberships are all removals (or unchanged).
    let removing = names.removes_memberships();
    let still = |rows: &mut dyn Iterator<Item = u32>| -> Vec<u32> {
        rows.filter(|&i| outcomes[i as usize].still_to_send())
            .collect()
    };
    let mut strays: Vec<Vec<u32>> = vec![Vec::new(); plan.groups.len()];
    for (row, subject) in names.rows() {
        if let Subject::Stray { group, .. } = subject {
            strays[group as usize].push(row);
        }
    }
    let (mut adds, mut removals) = (Vec::new(), Vec::new());
    for (g, group) in plan.groups.iter().enumerate() {
        let members = still(&mut group.members.iter().map(|&m| names.member_row(m)));
        let (list, kind) = if removing {
            (&mut removals, Kind::Remove)
        } else {
            (&mut adds, Kind::Add)
        };
        if !members.is_empty() {
            list.push((Scope::Group(group), members, kind));
        }
        let gone = still(&mut strays[g].iter().copied());
        if !gone.is_empty() {
            removals.push((Scope::Group(group), gone, Kind::Remove));
        }
    }
    (adds, removals)
}

/// The loop that takes chunk answers as they come, and stops on signals: the first stops new
/// requests and lets those in flight finish within `--grace`, the second stops at once.
#[derive(Default)]
struct Drive {
    interrupted: Option<u8>,
    grace_until: Option<Instant>,
    aborted: bool,
}

impl Drive {
    async fn run(
        &mut self,
        chunking: &Chunking<'_, '_>,
        mut answers: impl futures_util::Stream<Item = u64> + Unpin,
        results: &mut Results<'_>,
        progress: &ProgressBar,
        interrupt: &Interrupt,
    ) {
        let grace = chunking.run.opts.grace;
        loop {
            tokio::select! {
                biased;
                _ = interrupt.abort.cancelled() => {
                    self.aborted = true;
                    break;
                }
                _ = interrupt.stop.cancelled(), if self.grace_until.is_none() => {
                    self.interrupted = interrupt.code();
                    tracing::warn!(event = "interrupted", message = "stopping: no new requests; letting in-flight ones finish (a second signal stops at once)");
                    self.grace_until = Some(Instant::now() + grace);
                }
                _ = sleep_until_opt(self.grace_until) => {
                    tracing::warn!(event = "grace_expired", message = "requests still in flight after --grace; stopping");
                    self.aborted = true;
                    break;
                }
                next = answers.next() => {
                    let Some(id) = next else { break };
                    let Some(task) = chunking.tasks().remove(&id) else { continue };
                    progress.inc(task.members.len() as u64);
                    results.set(&task.members, task.outs);
                }
            }
        }
    }

    /// After the last phase (or a stop): tasks cut short keep what they learnt, and a request
    /// on the wire may have been applied.
    fn finish(
        self,
        chunking: &Chunking<'_, '_>,
        results: &mut Results<'_>,
        interrupt: &Interrupt,
    ) -> Option<u8> {
        if self.aborted {
            let cut = Arc::new(Detail {
                message: "the run stopped while this request was in flight; the server may have \
                          applied it"
                    .into(),
                ..Detail::default()
            });
            for (_, task) in chunking.tasks().drain() {
                let mut outs = task.outs;
                for &p in &task.in_flight {
                    outs[p].status = Status::Unconfirmed;
                    outs[p].detail = Some(cut.clone());
                }
                results.set(&task.members, outs);
            }
        }
        self.interrupted.or_else(|| interrupt.code())
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The organization-user chunks still to send: creations and updates, per organization.
pub(crate) fn pending_users<'a>(
    accounts: &'a Accounts,
    names: Names<'_>,
    outcomes: &[Outcome],
) -> Vec<(Scope<'a>, Vec<u32>, Kind)> {
    let mut out = Vec::new();
    for org in &accounts.orgs {
        for kind in [Kind::CreateUsers, Kind::UpdateUsers] {
            let sent_as = |action| match action {
                Action::Create => Some(Kind::CreateUsers),
                Action::Update(_) => Some(Kind::UpdateUsers),
                Action::Keep | Action::Remove => None,
            };
            let rows: Vec<u32> = org
                .users
                .iter()
                .map(|&a| names.account_row(a))
                .filter(|&row| {
                    matches!(names.subject(row), Subject::Account { action, .. } if sent_as(action) == Some(kind))
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
pub(crate) fn leaving_users<'a>(
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
