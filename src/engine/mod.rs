//! Sending the plan. In delta and mirror modes the groups (and, with `--provision-users`, the
//! organizations' users: [`provision`]) are read first and the plan gains its removals
//! ([`reconcile`]); then [`send`] runs the phases, every chunk through one shared [`gate`]
//! (limiter, pacer, throttle, stop) and the one [`attempt`] loop, at most a slot-bound number
//! in flight, with bisection of refused chunks ([`chunk`]), a stop on rejected credentials, a
//! graceful stop on the first signal and an abort on the second. Every answer ends as
//! per-membership (and per-user) outcomes.

mod attempt;
mod chunk;
pub mod concurrency;
pub(crate) mod gate;
mod keep;
pub mod pace;

mod reconcile;
pub mod retry;
mod send;
pub mod throttle;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;

use crate::client::{Answer, VeltClient};
use crate::guard::MaxRemovals;
use crate::interrupt::Interrupt;
use crate::journal::Journal;
use crate::ledger::{Decisions, Ledger};
use crate::outcome::Status;
use crate::plan::Plan;
use crate::provision::decide;
use crate::saved::Given;
use crate::saved::fingerprint::{Fingerprint, Reads};

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Add,
    Delta,
    Mirror,
    /// Remove every membership of the input.
    Remove,
}

/// The engine's defaults, which the command line's are (its `--help` text is made from
/// these): one place for each, typed.
pub mod defaults {
    use crate::guard::MaxRemovals;
    use std::time::Duration;

    pub const CHUNK_SIZE: u32 = 100;
    pub const RATE: f64 = 10.0;
    pub const MAX_RATE: f64 = 500.0;
    pub const CONCURRENCY: u32 = 4;
    pub const MAX_CONCURRENCY: u32 = 64;
    pub const BURST: u32 = 1;
    pub const MAX_RETRIES: u32 = 6;
    pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
    pub const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(30 * 60);
    pub const GRACE: Duration = Duration::from_secs(10);
    pub const MAX_REMOVALS: MaxRemovals = MaxRemovals::Percent(10.0);
    pub const MAX_USER_REMOVALS: MaxRemovals = MaxRemovals::Percent(5.0);
    pub const PAGE_SIZE: u32 = 1000;
}

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub chunk_size: usize,
    /// Requests per second; the ceiling when `adaptive`.
    pub rate: f64,
    /// `--rate auto`: find the server's limit.
    pub adaptive: bool,
    /// In-flight requests never go beyond this, however much rate x latency asks for.
    pub max_concurrency: usize,
    /// Requests the limiter lets through at once after a quiet spell.
    pub burst: u32,
    pub concurrency: usize,
    pub max_retries: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; a longer one gives the request's users up.
    pub max_retry_after: Duration,
    /// Most time the run as a whole waits on throttling before it stops sending.
    pub max_throttle_wait: Duration,
    /// How long in-flight requests may finish after the first interrupt.
    pub grace: Duration,
    pub mode: Mode,
    pub max_removals: MaxRemovals,
    pub allow_empty: bool,
    pub create_missing_groups: bool,
    /// Members per page when reading groups.
    pub page_size: u32,
    /// Read (delta and mirror) and plan, but send no writes.
    pub dry_run: bool,
    /// `--access-role` for users added or updated (`--provision-users`).
    pub access_role: Option<crate::provision::model::AccessRole>,
    /// Mirror mode: remove organization users the input does not list.
    pub deprovision_users: bool,
    pub max_user_removals: MaxRemovals,
    /// `--user-id-case lower`: user IDs compare by their ASCII-folded spelling, and what is
    /// sent uses the server's spelling of a user it holds.
    pub fold_user_ids: bool,
    /// `--protect-users`: globs on user IDs and e-mails never removed from a group nor
    /// deprovisioned.
    pub protect_users: Vec<String>,
    /// `--protect-groups`: globs on group IDs nothing is ever removed from.
    pub protect_groups: Vec<String>,
    /// `--create-organization`: provisioning may create an organization that has no users.
    pub create_organization: bool,
    /// Seeds the backoff's jitter (tests); `None`: a random seed.
    pub seed: Option<u64>,
}

impl Default for ExecOptions {
    fn default() -> ExecOptions {
        ExecOptions {
            chunk_size: defaults::CHUNK_SIZE as usize,
            rate: defaults::RATE,
            adaptive: false,
            burst: defaults::BURST,
            concurrency: defaults::CONCURRENCY as usize,
            max_concurrency: defaults::MAX_CONCURRENCY as usize,
            max_retries: defaults::MAX_RETRIES,
            base_backoff: Duration::from_millis(500),
            max_backoff: defaults::MAX_BACKOFF,
            max_retry_after: defaults::MAX_RETRY_AFTER,
            max_throttle_wait: defaults::MAX_THROTTLE_WAIT,
            grace: defaults::GRACE,
            mode: Mode::Add,
            max_removals: defaults::MAX_REMOVALS,
            allow_empty: false,
            create_missing_groups: false,
            page_size: defaults::PAGE_SIZE,
            dry_run: false,
            access_role: None,
            deprovision_users: false,
            max_user_removals: defaults::MAX_USER_REMOVALS,
            fold_user_ids: false,
            protect_users: Vec::new(),
            protect_groups: Vec::new(),
            create_organization: false,
            seed: None,
        }
    }
}

/// What a run of requests produced.
#[derive(Debug)]
pub struct Execution {
    pub requests: u64,
    /// Set when the API refused the credentials and the run stopped.
    pub auth_failure: Option<String>,
    /// The exit code of the signal that stopped the run.
    pub interrupted: Option<u8>,
    /// Mirror mode: groups (and, with --deprovision-users, organizations) that could not be
    /// read, so their removals are unknown.
    pub unread_groups: u64,
    /// Requests by HTTP status of the answer (`none`: no answer), reads and writes alike.
    pub requests_by_status: BTreeMap<String, u64>,
    /// Requests sent again.
    pub retries: u64,
    /// Requests answered 429 / `RESOURCE_EXHAUSTED`.
    pub throttled: u64,
    /// How long the run waited on throttling.
    pub throttled_for: Duration,
    /// Set when the run stopped sending because throttling outlasted `--max-throttle-wait`.
    pub throttle_exhausted: bool,
    /// The first failure to write the resume journal: a resume may resend what it missed.
    pub journal_error: Option<String>,
    /// Why the run sent no write at all after its reads (provisioning would have created an
    /// organization, or a saved plan is stale): a configuration error.
    pub refused: Option<String>,
    /// Fingerprints of what the run read, for a plan file.
    pub reads: Reads,
}

/// Requests counted as their answers come.
#[derive(Debug, Default)]
struct Counters {
    by_status: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
    throttled: AtomicU64,
}

/// The creation of one group: done once, its result shared by every chunk that waited.
type Creation = tokio::sync::OnceCell<Result<(), String>>;
/// (organization, group).
type GroupKey = (Box<str>, Box<str>);

/// What every call of a run shares.
pub(crate) struct Run<'a> {
    client: &'a VeltClient,
    opts: &'a ExecOptions,
    gate: gate::Gate,
    counters: Counters,
    auth_failure: Mutex<Option<String>>,
    /// The chunk size now: it drops when the server turns out to limit list sizes.
    chunk_limit: AtomicUsize,
    lowered: AtomicBool,
    /// `--create-missing-groups`: each group is created at most once per run.
    created: Mutex<HashMap<GroupKey, Arc<Creation>>>,
    /// Whether answers naming users never sent were warned about.
    strays_warned: AtomicBool,
    journal: Option<Mutex<&'a mut Journal>>,
    journal_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> Run<'a> {
    fn new(
        client: &'a VeltClient,
        opts: &'a ExecOptions,
        interrupt: &Interrupt,
        journal: Option<&'a mut Journal>,
    ) -> Run<'a> {
        Run {
            client,
            opts,
            // Its own token: credentials and the throttle budget stop the run, not the
            // caller's interrupt; a signal stops both.
            gate: gate::Gate::new(opts, interrupt.stop.child_token()),
            counters: Counters::default(),
            auth_failure: Mutex::new(None),
            chunk_limit: AtomicUsize::new(opts.chunk_size.max(1)),
            lowered: AtomicBool::new(false),
            created: Mutex::new(HashMap::new()),
            strays_warned: AtomicBool::new(false),
            journal: journal.map(Mutex::new),
            journal_error: Mutex::new(None),
        }
    }

    /// Counts one request and its answer (`None`: a read or creation that succeeded).
    fn count(&self, answer: Option<&Answer>) {
        let code = match answer {
            None => "200".to_string(),
            Some(Answer::PerUser { http_status, .. } | Answer::Rejected { http_status, .. }) => {
                http_status.to_string()
            }
            Some(Answer::Transport { .. }) => "none".to_string(),
        };
        *lock(&self.counters.by_status).entry(code).or_default() += 1;
        if answer.is_some_and(gate::is_throttle) {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fail_auth(&self, message: String) {
        lock(&self.auth_failure).get_or_insert(message);
        self.gate.stop();
    }

    /// Journals confirmed adds (memberships, or organization users created or updated) as
    /// their answer lands, so that a resume after `kill -9` resends at most what was in flight.
    fn journal_confirmed(&self, added: Vec<crate::journal::Key>) {
        let Some(journal) = &self.journal else { return };
        if added.is_empty() {
            return;
        }
        let mut j = lock(journal);
        let written = j.record(added);
        if let Err(e) = written {
            let mut first = lock(&self.journal_error);
            if first.is_none() {
                tracing::error!(event = "state_write_failed", path = %j.path().display(), message = %e);
                *first = Some(e.to_string());
            }
        }
    }

    /// The run's result, with the request counts so far.
    fn execution(self, interrupted: Option<u8>, unread: u64) -> Execution {
        if let Some(journal) = &self.journal {
            let j = lock(journal);
            if let Err(e) = j.sync() {
                tracing::error!(event = "state_write_failed", path = %j.path().display(), message = %e);
                lock(&self.journal_error).get_or_insert(e.to_string());
            }
        }
        if let Some((from, to)) = self.gate.slots_raised() {
            tracing::info!(
                event = "concurrency_raised",
                from,
                to,
                message = "in-flight requests were raised to what rate x latency needed"
            );
        }
        let by_status = lock(&self.counters.by_status).clone();
        Execution {
            requests: by_status.values().sum(),
            auth_failure: lock(&self.auth_failure).take(),
            interrupted,
            unread_groups: unread,
            requests_by_status: by_status,
            retries: self.counters.retries.load(Ordering::Relaxed),
            throttled: self.counters.throttled.load(Ordering::Relaxed),
            throttled_for: self.gate.throttled().0,
            throttle_exhausted: self.gate.throttled().1,
            journal_error: lock(&self.journal_error).take(),
            refused: None,
            reads: Reads::default(),
        }
    }

    /// The run's result when it refuses to write anything, for `why`.
    fn refuse(self, why: String) -> Execution {
        Execution {
            refused: Some(why),
            ..self.execution(None, 0)
        }
    }
}

/// What a chunk's request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Add users to a group.
    Add,
    /// Remove users from a group.
    Remove,
    /// Add users to an organization (`--provision-users`).
    CreateUsers,
    /// Update organization users' names and e-mails.
    UpdateUsers,
    /// Remove users from an organization (`--deprovision-users`).
    DeleteUsers,
}

impl Kind {
    fn event(self) -> &'static str {
        match self {
            Kind::Add => "request",
            Kind::Remove => "remove_request",
            Kind::CreateUsers => "add_users",
            Kind::UpdateUsers => "update_users",
            Kind::DeleteUsers => "delete_users",
        }
    }

    fn done_status(self) -> Status {
        match self {
            Kind::Add | Kind::CreateUsers | Kind::UpdateUsers => Status::Added,
            Kind::Remove | Kind::DeleteUsers => Status::Removed,
        }
    }
}

/// Runs the plan: in delta and mirror modes reads every group (and, with `--provision-users`,
/// every organization's users) first and works out what to add, update and remove (which the
/// ledger takes in as rows), then sends: organization users first, then every group's chunks,
/// skipping what the ledger holds as done (a journal's confirmations). In a dry run only the
/// reads are sent.
///
/// With `given` (`apply`), it decides nothing: it makes exactly a saved plan's changes. It
/// re-reads every group and organization the plan touches and, unless one holds anything but
/// what the plan read (give or take the plan's own changes, found done), sends what is still
/// to do. A stale plan sends nothing: `refused` says what changed.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    plan: &Plan,
    ledger: &mut Ledger,
    client: &VeltClient,
    opts: &ExecOptions,
    progress: &ProgressBar,
    interrupt: &Interrupt,
    journal: Option<&mut Journal>,
    given: Option<&Given>,
) -> Execution {
    let run = Run::new(client, opts, interrupt, journal);
    let decided = match given {
        Some(given) => run.verify(plan, given, interrupt).await,
        None => run.reconcile(plan, interrupt).await,
    };
    finish_run(run, decided, plan, ledger, progress, interrupt).await
}

/// After the reads: takes in what they decided, then sends (a dry run only marks what would go).
async fn finish_run(
    run: Run<'_>,
    decided: Result<(Decisions, u64, Reads), Ended>,
    plan: &Plan,
    ledger: &mut Ledger,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) -> Execution {
    let (unread, reads) = match decided {
        Ok((decisions, unread, reads)) => {
            ledger.take(decisions);
            (unread, reads)
        }
        Err(Ended::Stopped) => {
            // Nothing was written; every row says why.
            let code = interrupt.code();
            run.say_why_unsent(ledger, code);
            return run.execution(code, 0);
        }
        Err(Ended::Refused(why)) => return run.refuse(why),
    };
    if run.opts.dry_run {
        for o in ledger.outcomes_mut() {
            if o.still_to_send() {
                o.status = Status::Planned;
            }
        }
        return Execution {
            reads,
            ..run.execution(None, unread)
        };
    }
    progress.set_length(ledger.len() as u64);
    // Done already: from the journal, unchanged, or refused removals (which are never sent).
    let done = ledger.rows().filter(|r| !r.outcome.still_to_send()).count();
    progress.inc(done as u64);
    let interrupted = send::send_all(&run, plan, ledger, progress, interrupt).await;
    run.say_why_unsent(ledger, interrupted);
    Execution {
        reads,
        ..run.execution(interrupted, unread)
    }
}

/// The fingerprint of a listing that was read.
fn fingerprint<E>(listing: &Result<Vec<crate::client::OrgUser>, E>) -> Option<Fingerprint> {
    let users = listing.as_ref().ok()?;
    Some(Fingerprint::of(users.iter().map(|u| u.user_id.as_str())))
}

/// How the reading before sending ended a run early.
enum Ended {
    /// Interrupted, or the credentials were refused: nothing was written.
    Stopped,
    /// A check refused the run (an organization provisioning would create).
    Refused(String),
}

impl Run<'_> {
    /// Reads what the run needs before it sends: in add mode with provisioning, one user per
    /// organization (so that a typo never creates one); in the other modes every group and
    /// organization, then works out what to add, update and remove. Returns the number of
    /// groups and organizations that could not be read.
    async fn reconcile(
        &self,
        plan: &Plan,
        interrupt: &Interrupt,
    ) -> Result<(Decisions, u64, Reads), Ended> {
        let opts = self.opts;
        let mut decisions = Decisions::default();
        // Provisioning must not create an organization by a typo: each must hold a user.
        let check_orgs = !opts.create_organization;
        if opts.mode == Mode::Add {
            if check_orgs && let Some(a) = &plan.accounts {
                let users = self.probe_orgs(a, interrupt).await.ok_or(Ended::Stopped)?;
                if lock(&self.auth_failure).is_some() {
                    return Err(Ended::Stopped);
                }
                if let Some(why) = decide::would_create(a, &reconcile::listings(users)) {
                    return Err(Ended::Refused(why));
                }
            }
            return Ok((decisions, 0, Reads::default()));
        }
        let current = self
            .read_groups(plan, interrupt)
            .await
            .ok_or(Ended::Stopped)?;
        let mut reads = Reads {
            groups: current.iter().map(fingerprint).collect(),
            orgs: Vec::new(),
        };
        let users = match &plan.accounts {
            Some(a) => {
                let read = self
                    .read_org_users(a, interrupt)
                    .await
                    .ok_or(Ended::Stopped)?;
                reads.orgs = read.iter().map(fingerprint).collect();
                Some(reconcile::listings(read))
            }
            None => None,
        };
        if lock(&self.auth_failure).is_some() {
            return Err(Ended::Stopped);
        }
        if let (Some(users), Some(a)) = (&users, &plan.accounts)
            && check_orgs
            && let Some(why) = decide::would_create(a, users)
        {
            return Err(Ended::Refused(why));
        }
        if opts.fold_user_ids {
            let ids: Vec<Box<str>> = plan
                .accounts
                .iter()
                .flat_map(|a| a.orgs.iter().map(|o| o.id.clone()))
                .collect();
            decisions.member_spellings =
                keep::respell(plan, &current, (&ids, users.as_deref().unwrap_or(&[])));
        }
        let mut keep = keep::Keep::new(plan, opts);
        keep.note_members(plan, &current);
        let mut unread = reconcile::reconcile(plan, current, opts, &keep, &mut decisions);
        if let (Some(users), Some(a)) = (users, &plan.accounts) {
            let options = reconcile::options(opts);
            let decided = decide::reconcile(a, users, &keep, &options);
            decisions.actions = decided.actions;
            decisions.account_spellings = decided.spellings;
            decisions.leavers = decided.leavers;
            unread += decided.unread;
        }
        Ok((decisions, unread, reads))
    }

    /// Every row the run did not send says why: a spent throttle budget, a signal, or
    /// refused credentials.
    fn say_why_unsent(&self, ledger: &mut Ledger, interrupted: Option<u8>) {
        let (throttled_for, throttle_exhausted) = self.gate.throttled();
        if throttle_exhausted {
            let why = attempt::detail(
                format!(
                    "not sent: the server kept throttling and the run had waited {} s, all that \
                     --max-throttle-wait allows; re-run later",
                    throttled_for.as_secs()
                ),
                Some("RESOURCE_EXHAUSTED".into()),
                None,
            );
            for o in ledger.outcomes_mut() {
                if o.still_to_send() {
                    o.hold(why.clone());
                }
            }
        }
        // Every row the run did not send says why: a signal, or refused credentials.
        let stopped = match interrupted {
            Some(code) => Some(format!(
                "not sent: the run was interrupted by {}; re-run (with the same --state) to finish",
                if code == crate::error::exit::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                }
            )),
            None => lock(&self.auth_failure).as_ref().map(|_| {
                "not sent: the API refused the credentials and the run stopped".to_string()
            }),
        };
        if let Some(why) = stopped {
            let why = attempt::detail(why, None, None);
            for o in ledger.outcomes_mut() {
                if o.still_to_send() && o.detail.is_none() {
                    o.detail = Some(why.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Defaults, Planner, Sink};

    #[test]
    fn the_defaults_are_well_formed() {
        let o = ExecOptions::default();
        assert_eq!(o.rate, 10.0);
        assert_eq!(o.max_backoff, Duration::from_secs(30));
        assert_eq!(o.max_retry_after, Duration::from_secs(120));
        assert_eq!(o.max_throttle_wait, Duration::from_secs(1800));
        assert_eq!(o.grace, Duration::from_secs(10));
        assert_eq!(o.max_removals, MaxRemovals::Percent(10.0));
    }

    /// Whatever the input and the server hold, mirror never lets through more removals than
    /// the limit over the distinct current members, and never all of a group's members
    /// without `allow_empty`, even from a listing that repeats members (one that reaches
    /// `reconcile` without the reader's check).
    #[test]
    fn mirror_never_removes_beyond_its_limits() {
        let mut rng = fastrand::Rng::with_seed(7);
        for case in 0..2_000 {
            let universe = rng.usize(1..40);
            let mut planner = Planner::new(Defaults::default());
            let listed: Vec<usize> = (0..universe).filter(|_| rng.bool()).collect();
            for (line, &u) in (2..).zip(&listed) {
                planner.record(line, Some("o"), Some("g"), &format!("u{u}"));
            }
            if listed.is_empty() {
                continue;
            }
            let current: Vec<String> = (0..universe)
                .filter(|_| rng.u8(..) < 100)
                .map(|u| format!("u{u}"))
                .collect();
            let max_removals = if rng.bool() {
                MaxRemovals::Count(rng.u64(0..10))
            } else {
                MaxRemovals::Percent(rng.f64() * 100.0)
            };
            let opts = ExecOptions {
                mode: Mode::Mirror,
                max_removals,
                allow_empty: rng.bool(),
                ..ExecOptions::default()
            };
            let plan = planner.finish();
            let mut ledger = Ledger::new(&plan, false, Status::NotAttempted);
            let repeats = rng.usize(1..4);
            let listing = current
                .iter()
                .flat_map(|u| std::iter::repeat_n(u, rng.usize(1..=repeats)))
                .map(|u| crate::client::OrgUser {
                    user_id: u.clone(),
                    name: None,
                    email: None,
                })
                .collect();
            let keep = keep::Keep::new(&plan, &opts);
            let mut decisions = Decisions::default();
            reconcile::reconcile(&plan, vec![Ok(listing)], &opts, &keep, &mut decisions);
            ledger.take(decisions);
            let removals: Vec<_> = ledger
                .rows()
                .filter(|r| matches!(r.subject, crate::ledger::Subject::Stray { .. }))
                .collect();
            let cleared: Vec<&str> = removals
                .iter()
                .filter(|r| r.outcome.still_to_send())
                .map(|r| ledger.user(&plan, r.index))
                .collect();
            let extra = current
                .iter()
                .filter(|u| !listed.iter().any(|l| format!("u{l}") == **u))
                .count();
            assert_eq!(
                removals.len(),
                extra,
                "case {case}: every extra member is a row"
            );
            assert!(
                cleared.len() <= max_removals.limit(current.len()),
                "case {case}: {} removals let through, limit {}",
                cleared.len(),
                max_removals.limit(current.len())
            );
            if !opts.allow_empty && !current.is_empty() {
                assert!(cleared.len() < current.len(), "case {case}: group emptied");
            }
            assert!(cleared.iter().all(|u| current.iter().any(|c| c == u)));
        }
    }
}
