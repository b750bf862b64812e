//! The ledger: every row of a run with its outcome, in one index space. The input's
//! memberships and organization users come from the plan, which stays as the input made it;
//! what reading the server decides (members already there, removals, users to keep, update
//! or deprovision, the server's spelling of an ID) comes from the engine as [`Decisions`],
//! which the ledger takes in. Sending writes outcomes here; the report, the journal, the
//! counts, the exit code and "is anything left to resume" read them from here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::journal::{Confirmed, Key};
use crate::outcome::{Detail, Outcome, Status};
use crate::plan::Plan;
use crate::provision::model::{Action, UserCounts, user_column};

/// What a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Membership `m` of the plan: an add, or a removal in `--mode remove`. `account`: the
    /// row of its user's organization account (`--provision-users`).
    Member { m: u32, account: Option<u32> },
    /// A current member of plan group `group` that the input does not list: a removal
    /// (`--mode mirror`). `user` indexes the ledger's names.
    Stray { group: u32, user: u32 },
    /// Organization user `a` of the plan's accounts, and what the run does about it.
    Account { a: u32, action: Action },
    /// A user of plan organization `org` that the input does not list: to deprovision.
    Leaver { org: u32, user: u32 },
}

/// What reading the server decided, for the ledger to take in. Memberships and accounts are
/// the plan's indexes.
#[derive(Debug, Default)]
pub struct Decisions {
    /// Memberships there already (for `--mode remove`: not there).
    pub unchanged: Vec<u32>,
    /// `--mode remove`: memberships the listing showed are there, to remove. Any other
    /// membership of a removal list is never sent.
    pub remove: Vec<u32>,
    /// Memberships not to be sent, and why.
    pub held: Vec<(u32, Arc<Detail>)>,
    /// Memberships `--protect-users` / `--protect-groups` keep (`--mode remove`), and why.
    pub protected: Vec<(u32, Arc<Detail>)>,
    /// Current members the input does not list: (group, user, outcome before sending).
    pub strays: Vec<(u32, String, Outcome)>,
    /// Organization users found in their organization: keep or update.
    pub actions: Vec<(u32, Action)>,
    /// Users of an organization the input does not list: (organization, user, outcome).
    pub leavers: Vec<(u32, String, Outcome)>,
    /// The server's spelling of a membership's user ID (`--user-id-case lower`).
    pub member_spellings: Vec<(u32, Box<str>)>,
    /// The server's spelling of an account's user ID.
    pub account_spellings: Vec<(u32, Box<str>)>,
}

/// Every row of a run. Rows `0..n` are the plan's memberships in order, then one row per
/// account, then what the engine added (strays and leavers), in the order it decided them.
#[derive(Debug)]
pub struct Ledger {
    about: About,
    outcomes: Vec<Outcome>,
}

/// What a ledger's rows are about: kept apart from their outcomes, so that sending reads it
/// while it writes them.
#[derive(Debug)]
struct About {
    subjects: Vec<Subject>,
    /// User IDs the server named (strays, leavers), indexed by their subjects.
    names: Vec<Box<str>>,
    /// The server's spelling of a row's user ID, where it differs from the input's.
    spelled: HashMap<u32, Box<str>>,
    /// The run removes the input's memberships (`--mode remove`).
    removing: bool,
    /// The first account row.
    accounts_at: u32,
}

/// One row, read.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'l> {
    pub index: u32,
    pub subject: Subject,
    pub outcome: &'l Outcome,
}

impl Ledger {
    /// One row per membership and account of `plan`, each starting as `status`.
    pub fn new(plan: &Plan, removing: bool, status: Status) -> Ledger {
        let n = plan.memberships.len();
        let accounts = plan.accounts.as_ref();
        let accounts_at = n as u32;
        let mut subjects = Vec::with_capacity(n + accounts.map_or(0, |a| a.list.len()));
        for m in 0..n {
            let account = accounts.and_then(|a| a.of(m)).map(|a| accounts_at + a);
            subjects.push(Subject::Member {
                m: m as u32,
                account,
            });
        }
        if let Some(a) = accounts {
            subjects.extend((0..a.list.len() as u32).map(|a| Subject::Account {
                a,
                action: Action::Create,
            }));
        }
        Ledger {
            outcomes: vec![Outcome::new(status); subjects.len()],
            about: About {
                subjects,
                names: Vec::new(),
                spelled: HashMap::new(),
                removing,
                accounts_at,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.about.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.about.subjects.is_empty()
    }

    /// The rows a journal holds as confirmed by an earlier run are added already.
    pub fn confirm(&mut self, done: &Confirmed) {
        let earlier = Arc::new(Detail {
            message: "confirmed by an earlier run (--state)".into(),
            ..Detail::default()
        });
        let rows = done.memberships.iter().map(|&m| m as usize).chain(
            done.accounts
                .iter()
                .map(|&a| (self.about.accounts_at + a) as usize),
        );
        for i in rows {
            if let Some(o) = self.outcomes.get_mut(i) {
                o.status = Status::Added;
                o.detail = Some(earlier.clone());
            }
        }
    }

    /// Takes in what reading the server decided.
    pub fn take(&mut self, decisions: Decisions) {
        for m in decisions.unchanged {
            let o = &mut self.outcomes[m as usize];
            if o.still_to_send() {
                o.status = Status::Unchanged;
            }
        }
        for (m, why) in decisions.held {
            self.outcomes[m as usize].hold(why);
        }
        if self.about.removing {
            // Only what a listing showed is there goes: a membership nothing decided about
            // stays.
            let there: std::collections::HashSet<u32> = decisions.remove.into_iter().collect();
            let unknown = Arc::new(Detail {
                message: "not removed: no listing of its group confirmed this member".into(),
                ..Detail::default()
            });
            for m in 0..self.about.accounts_at {
                let o = &mut self.outcomes[m as usize];
                if o.still_to_send() && !there.contains(&m) {
                    o.hold(unknown.clone());
                }
            }
        }
        for (m, why) in decisions.protected {
            let o = &mut self.outcomes[m as usize];
            o.status = Status::Protected;
            o.detail = Some(why);
        }
        for (m, spelling) in decisions.member_spellings {
            self.about.spelled.insert(m, spelling);
        }
        for (a, spelling) in decisions.account_spellings {
            self.about
                .spelled
                .insert(self.about.accounts_at + a, spelling);
        }
        for (a, action) in decisions.actions {
            let row = (self.about.accounts_at + a) as usize;
            if let Some(Subject::Account { action: slot, .. }) = self.about.subjects.get_mut(row) {
                *slot = action;
            }
            let o = &mut self.outcomes[row];
            if action == Action::Keep && o.still_to_send() {
                o.status = Status::Unchanged;
            }
        }
        for (group, user, outcome) in decisions.strays {
            let user = self.name(user);
            self.push(Subject::Stray { group, user }, outcome);
        }
        for (org, user, outcome) in decisions.leavers {
            let user = self.name(user);
            self.push(Subject::Leaver { org, user }, outcome);
        }
    }

    fn name(&mut self, user: String) -> u32 {
        self.about.names.push(user.into());
        self.about.names.len() as u32 - 1
    }

    fn push(&mut self, subject: Subject, outcome: Outcome) {
        self.about.subjects.push(subject);
        self.outcomes.push(outcome);
    }

    pub fn subject(&self, row: u32) -> Subject {
        self.about.subjects[row as usize]
    }

    /// What the rows are about, without their outcomes.
    pub fn names(&self) -> Names<'_> {
        Names(&self.about)
    }

    /// What the rows are about, to read while their outcomes are written (sending).
    pub fn split(&mut self) -> (Names<'_>, &mut [Outcome]) {
        (Names(&self.about), &mut self.outcomes)
    }

    pub fn outcome(&self, row: u32) -> &Outcome {
        &self.outcomes[row as usize]
    }

    pub fn rows(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        self.about
            .subjects
            .iter()
            .zip(&self.outcomes)
            .enumerate()
            .map(|(i, (&subject, outcome))| RowRef {
                index: i as u32,
                subject,
                outcome,
            })
    }

    /// The user ID a row's requests carry: the server's spelling where it has one.
    pub fn user<'p>(&'p self, plan: &'p Plan, row: u32) -> &'p str {
        self.names().user(plan, row)
    }

    /// (organization, group) of a row; the group is empty for organization users.
    pub fn place<'p>(&self, plan: &'p Plan, row: u32) -> (&'p str, &'p str) {
        let org_of = |org: u32| {
            plan.accounts
                .as_ref()
                .map_or("", |a| &*a.orgs[org as usize].id)
        };
        match self.subject(row) {
            Subject::Member { m, .. } => {
                let g = plan.group_of(&plan.memberships[m as usize]);
                (&g.org, &g.id)
            }
            Subject::Stray { group, .. } => {
                let g = &plan.groups[group as usize];
                (&g.org, &g.id)
            }
            Subject::Account { a, .. } => plan
                .accounts
                .as_ref()
                .map_or(("", ""), |acc| (acc.org_of(&acc.list[a as usize]), "")),
            Subject::Leaver { org, .. } => (org_of(org), ""),
        }
    }

    /// Whether a row removes: a stray, a leaver, or a membership of a removal list.
    pub fn is_removal(&self, row: u32) -> bool {
        self.names().is_removal(row)
    }

    /// The report's `user` column of a row: what happened to its user in its organization.
    pub fn user_column(&self, row: u32) -> Option<&'static str> {
        match self.subject(row) {
            Subject::Member {
                account: Some(a), ..
            } => Some(self.account_column(a)),
            Subject::Account { .. } | Subject::Leaver { .. } => Some(self.account_column(row)),
            _ => None,
        }
    }

    fn account_column(&self, row: u32) -> &'static str {
        let action = match self.subject(row) {
            Subject::Account { action, .. } => action,
            _ => Action::Remove,
        };
        user_column(action, self.outcome(row))
    }

    /// Every outcome, to mark many rows at once (a dry run's, a stopped run's).
    pub fn outcomes_mut(&mut self) -> impl Iterator<Item = &mut Outcome> {
        self.outcomes.iter_mut()
    }

    /// What happened to organization users, for the summary and metrics; `None` without
    /// `--provision-users`.
    pub fn user_counts(&self, plan: &Plan) -> Option<UserCounts> {
        plan.accounts.as_ref()?;
        let mut c = UserCounts::default();
        for r in self.rows() {
            if !matches!(r.subject, Subject::Account { .. } | Subject::Leaver { .. }) {
                continue;
            }
            c.add(self.account_column(r.index));
        }
        Some(c)
    }

    /// Whether the run left nothing to resume: every row has a definite outcome (a removal
    /// of what the server holds that a safety limit refused counts as one).
    pub fn settled(&self) -> bool {
        self.rows().all(|r| match r.outcome.status {
            Status::Unconfirmed => false,
            Status::NotAttempted => {
                r.outcome.held_back
                    && matches!(r.subject, Subject::Stray { .. } | Subject::Leaver { .. })
            }
            _ => true,
        })
    }
}

/// What a ledger's rows are about: read while their outcomes are written.
#[derive(Debug, Clone, Copy)]
pub struct Names<'l>(&'l About);

impl<'l> Names<'l> {
    pub fn subject(&self, row: u32) -> Subject {
        self.0.subjects[row as usize]
    }

    /// Every row's index and subject.
    pub fn rows(&self) -> impl Iterator<Item = (u32, Subject)> + 'l {
        self.0
            .subjects
            .iter()
            .enumerate()
            .map(|(i, &s)| (i as u32, s))
    }

    /// The row of membership `m`.
    pub fn member_row(&self, m: u32) -> u32 {
        m
    }

    /// The row of account `a`.
    pub fn account_row(&self, a: u32) -> u32 {
        self.0.accounts_at + a
    }

    /// The user ID a row's requests carry: the server's spelling where it has one.
    pub fn user<'p>(&self, plan: &'p Plan, row: u32) -> &'p str
    where
        'l: 'p,
    {
        if let Some(s) = self.0.spelled.get(&row) {
            return s;
        }
        match self.subject(row) {
            Subject::Member { m, .. } => plan.user_at(m),
            Subject::Account { a, .. } => plan
                .accounts
                .as_ref()
                .map_or("", |acc| &acc.list[a as usize].user),
            Subject::Stray { user, .. } | Subject::Leaver { user, .. } => {
                &self.0.names[user as usize]
            }
        }
    }

    /// Whether the input's memberships are removals (`--mode remove`).
    pub fn removes_memberships(&self) -> bool {
        self.0.removing
    }

    /// Whether a row removes: a stray, a leaver, or a membership of a removal list.
    pub fn is_removal(&self, row: u32) -> bool {
        match self.subject(row) {
            Subject::Member { .. } => self.0.removing,
            Subject::Stray { .. } | Subject::Leaver { .. } => true,
            Subject::Account { .. } => false,
        }
    }

    /// The journal key of a row whose confirmation a resume skips: the adds.
    pub fn key(&self, row: u32) -> Option<Key> {
        match self.subject(row) {
            Subject::Member { m, .. } if !self.0.removing => Some(Key::Membership(m)),
            Subject::Account { a, .. } => Some(Key::Account(a)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Defaults, Planner, Sink};

    /// Group `o/g` with users a, b, c; with `accounts`, each is an organization user too.
    fn plan(accounts: bool) -> Plan {
        let mut p = Planner::new(Defaults::default());
        for (i, u) in ["a", "b", "c"].iter().enumerate() {
            p.record(i as u64 + 2, Some("o"), Some("g"), u);
        }
        let mut plan = p.finish();
        if accounts {
            crate::test_support::with_accounts(&mut plan, &["a", "b", "c"]);
        }
        plan
    }

    fn why(message: &str) -> Arc<Detail> {
        Arc::new(Detail {
            message: message.into(),
            ..Detail::default()
        })
    }

    fn statuses(ledger: &Ledger) -> Vec<&'static str> {
        ledger.rows().map(|r| r.outcome.status.as_str()).collect()
    }

    #[test]
    fn a_removal_list_removes_only_what_a_listing_confirmed() {
        let plan = plan(false);
        let mut ledger = Ledger::new(&plan, true, Status::NotAttempted);
        ledger.take(Decisions {
            remove: vec![0],
            unchanged: vec![1],
            ..Decisions::default()
        });
        let rows: Vec<_> = ledger.rows().collect();
        assert!(rows[0].outcome.still_to_send(), "confirmed there: removed");
        assert_eq!(rows[1].outcome.status, Status::Unchanged);
        // Nothing decided about `c`: it stays, and says why.
        assert!(!rows[2].outcome.still_to_send());
        assert!(rows[2].outcome.held_back);
        let message = &rows[2].outcome.detail.as_ref().expect("a reason").message;
        assert!(message.contains("not removed"), "{message}");
        assert!(ledger.is_removal(0));
        assert_eq!(ledger.names().key(0), None, "removals are not journalled");
    }

    #[test]
    fn decisions_add_rows_after_the_input_and_keep_the_plan_as_it_was() {
        let plan = plan(true);
        let before: Vec<String> = (0..3).map(|m| plan.user_at(m).to_string()).collect();
        let mut ledger = Ledger::new(&plan, false, Status::NotAttempted);
        assert_eq!(ledger.len(), 6, "3 memberships, 3 accounts");
        ledger.take(Decisions {
            unchanged: vec![1],
            strays: vec![(0, "old".into(), Outcome::new(Status::NotAttempted))],
            actions: vec![(0, Action::Keep), (1, Action::Update(Default::default()))],
            leavers: vec![(0, "gone".into(), Outcome::new(Status::NotAttempted))],
            member_spellings: vec![(2, "C".into())],
            account_spellings: vec![(2, "C".into())],
            ..Decisions::default()
        });
        let users: Vec<&str> = ledger.rows().map(|r| ledger.user(&plan, r.index)).collect();
        assert_eq!(users, ["a", "b", "C", "a", "b", "C", "old", "gone"]);
        assert_eq!(
            statuses(&ledger),
            [
                "not_attempted",
                "unchanged",
                "not_attempted",
                "unchanged",
                "not_attempted",
                "not_attempted",
                "not_attempted",
                "not_attempted"
            ]
        );
        let after: Vec<String> = (0..3).map(|m| plan.user_at(m).to_string()).collect();
        assert_eq!(before, after, "the plan is not changed");
        assert_eq!(ledger.place(&plan, 6), ("o", "g"));
        assert_eq!(ledger.place(&plan, 7), ("o", ""));
        assert!(ledger.is_removal(6) && ledger.is_removal(7) && !ledger.is_removal(0));
        // Each membership's `user` column is its account's.
        assert_eq!(ledger.user_column(0), Some("unchanged"));
        assert_eq!(ledger.user_column(1), Some("not_attempted"));
        assert_eq!(ledger.user_column(7), Some("not_attempted"));
    }

    #[test]
    fn a_journal_confirms_rows_by_their_keys() {
        let plan = plan(true);
        let mut ledger = Ledger::new(&plan, false, Status::NotAttempted);
        let names = ledger.names();
        assert_eq!(names.key(1), Some(Key::Membership(1)));
        assert_eq!(names.key(names.account_row(2)), Some(Key::Account(2)));
        ledger.confirm(&Confirmed {
            memberships: vec![1],
            accounts: vec![2],
        });
        assert_eq!(
            statuses(&ledger),
            [
                "not_attempted",
                "added",
                "not_attempted",
                "not_attempted",
                "not_attempted",
                "added"
            ]
        );
    }

    #[test]
    fn settled_means_nothing_left_to_resume() {
        let plan = plan(false);
        let mut ledger = Ledger::new(&plan, false, Status::Added);
        assert!(ledger.settled());
        // A removal a guard held back is settled; a held membership of the input is not.
        let mut held = Outcome::new(Status::NotAttempted);
        held.hold(why("guard"));
        ledger.take(Decisions {
            strays: vec![(0, "old".into(), held)],
            ..Decisions::default()
        });
        assert!(ledger.settled());
        ledger.take(Decisions {
            held: vec![(0, why("throttled"))],
            ..Decisions::default()
        });
        assert!(!ledger.settled());
        let mut ledger = Ledger::new(&plan, false, Status::Added);
        let (_, outcomes) = ledger.split();
        outcomes[2].status = Status::Unconfirmed;
        assert!(!ledger.settled());
    }
}
