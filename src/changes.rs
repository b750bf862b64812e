//! The change list: what a run changed (or, in a dry run, would change), grouped per
//! organization and group, then per organization's users, then the removals a guard held
//! back and why. Read from the ledger, as the report is, so that its counts are the report's.

use std::collections::BTreeMap;

use crate::ledger::{Ledger, Subject};
use crate::outcome::Status;
use crate::plan::Plan;
use crate::provision::model::{Action, Changed};

/// Names listed per list at most, unless every one is asked for (`-v`).
pub const SHOWN: usize = 10;

/// What one row changes (or would change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Add,
    Remove,
    Create,
    Update(Changed),
    Delete,
    /// A removal a guard (or an unreadable listing) held back; `Change::why` says why.
    HeldBack,
}

/// One row that changes: what, where, who.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub kind: Kind,
    pub org: &'a str,
    /// Empty for organization users.
    pub group: &'a str,
    pub user: &'a str,
    /// Why a removal was held back; empty otherwise.
    pub why: &'a str,
    /// The ledger's row.
    pub row: u32,
}

/// Every change of a run, in row order. `dry_run`: what would change (planned rows); else
/// what changed (rows this run sent: not those an earlier run's journal confirmed, nor those
/// there already). Removals held back come too.
pub fn changes<'a>(
    plan: &'a Plan,
    ledger: &'a Ledger,
    dry_run: bool,
) -> impl Iterator<Item = Change<'a>> + 'a {
    ledger.rows().filter_map(move |r| {
        let o = r.outcome;
        let removal = ledger.is_removal(r.index);
        let held = o.held_back && o.status == Status::NotAttempted && removal;
        let done = match o.status {
            Status::Planned => dry_run,
            Status::Added | Status::Removed => !dry_run && o.attempts > 0,
            _ => false,
        };
        let kind = match r.subject {
            _ if held => Kind::HeldBack,
            _ if !done => return None,
            Subject::Member { .. } | Subject::Stray { .. } if removal => Kind::Remove,
            Subject::Member { .. } | Subject::Stray { .. } => Kind::Add,
            Subject::Account {
                action: Action::Create,
                ..
            } => Kind::Create,
            Subject::Account {
                action: Action::Update(changed),
                ..
            } => Kind::Update(changed),
            Subject::Account { .. } => return None,
            Subject::Leaver { .. } => Kind::Delete,
        };
        let (org, group) = ledger.place(plan, r.index);
        let why = o
            .detail
            .as_deref()
            .filter(|_| held)
            .map_or("", |d| d.message.as_str());
        let user = ledger.user(plan, r.index);
        Some(Change {
            kind,
            org,
            group,
            user,
            why,
            row: r.index,
        })
    })
}

/// A change as one line (`added acme/eng/alice`, `user would create acme/bob`), for a
/// notification; `None` for a removal held back.
pub fn line(change: &Change<'_>, dry_run: bool) -> Option<String> {
    let words = Words::new(dry_run);
    let Change {
        org, group, user, ..
    } = change;
    Some(match change.kind {
        Kind::Add => format!("{} {org}/{group}/{user}", words.add),
        Kind::Remove => format!("{} {org}/{group}/{user}", words.remove),
        Kind::Create => format!("user {} {org}/{user}", words.create),
        Kind::Update(_) => format!("user {} {org}/{user}", words.update),
        Kind::Delete => format!("user {} {org}/{user}", words.delete),
        Kind::HeldBack => return None,
    })
}

/// What one group or organization changes.
#[derive(Debug, Default)]
struct Place<'a> {
    /// Adds to a group, or organization users created.
    add: Vec<&'a str>,
    /// Organization users updated, with what changed.
    update: Vec<String>,
    /// Removals from a group, or organization users deleted.
    remove: Vec<&'a str>,
}

/// Removals held back in one place, by reason.
type Held<'a> = BTreeMap<(&'a str, &'a str), BTreeMap<&'a str, usize>>;

/// The change list. `dry_run`: what would change; else what changed (see [`changes`]).
/// `all`: every name, not `SHOWN` a list.
pub fn render(plan: &Plan, ledger: &Ledger, dry_run: bool, all: bool) -> String {
    let mut groups: BTreeMap<(&str, &str), Place<'_>> = BTreeMap::new();
    let mut users: BTreeMap<&str, Place<'_>> = BTreeMap::new();
    let mut held: Held<'_> = BTreeMap::new();
    for c in changes(plan, ledger, dry_run) {
        let (group, org) = (groups.entry((c.org, c.group)), users.entry(c.org));
        match c.kind {
            Kind::Add => group.or_default().add.push(c.user),
            Kind::Remove => group.or_default().remove.push(c.user),
            Kind::Create => org.or_default().add.push(c.user),
            Kind::Update(changed) => org.or_default().update.push(format!(
                "{} ({})",
                crate::text::clip(c.user),
                changed.fields()
            )),
            Kind::Delete => org.or_default().remove.push(c.user),
            Kind::HeldBack => {
                *held
                    .entry((c.org, c.group))
                    .or_default()
                    .entry(c.why)
                    .or_default() += 1;
            }
        }
    }
    let words = Words::new(dry_run);
    let limit = if all { usize::MAX } else { SHOWN };
    let mut out = header(&groups, &users, &held, &words);
    for ((org, group), place) in &groups {
        out.push_str(&format!("  {org} / {group}\n"));
        list(&mut out, words.add, &place.add, limit);
        list(&mut out, words.remove, &place.remove, limit);
    }
    for (org, place) in &users {
        out.push_str(&format!("  users of {org}\n"));
        list(&mut out, words.create, &place.add, limit);
        let updated: Vec<&str> = place.update.iter().map(String::as_str).collect();
        list(&mut out, words.update, &updated, limit);
        list(&mut out, words.delete, &place.remove, limit);
    }
    for ((org, group), reasons) in &held {
        let place = if group.is_empty() {
            format!("users of {org}")
        } else {
            format!("{org} / {group}")
        };
        for (why, n) in reasons {
            out.push_str(&format!("  held back: {place}: {n} removal(s): {why}\n"));
        }
    }
    out
}

/// The verbs of a dry run ("would add") or of a run that sent ("added").
struct Words {
    add: &'static str,
    remove: &'static str,
    create: &'static str,
    update: &'static str,
    delete: &'static str,
}

impl Words {
    fn new(dry_run: bool) -> Words {
        if dry_run {
            Words {
                add: "would add",
                remove: "would remove",
                create: "would create",
                update: "would update",
                delete: "would delete",
            }
        } else {
            Words {
                add: "added",
                remove: "removed",
                create: "created",
                update: "updated",
                delete: "deleted",
            }
        }
    }
}

/// The first line: every count of the list.
fn header(
    groups: &BTreeMap<(&str, &str), Place<'_>>,
    users: &BTreeMap<&str, Place<'_>>,
    held: &Held<'_>,
    words: &Words,
) -> String {
    let sum = |f: fn(&Place<'_>) -> usize, places: &mut dyn Iterator<Item = &Place<'_>>| {
        places.map(f).sum::<usize>()
    };
    let adds = sum(|p| p.add.len(), &mut groups.values());
    let removes = sum(|p| p.remove.len(), &mut groups.values());
    let mut line = format!(
        "changes: {} {adds}, {} {removes} in {} group(s)",
        words.add,
        words.remove,
        groups.len()
    );
    if !users.is_empty() {
        let created = sum(|p| p.add.len(), &mut users.values());
        let updated = sum(|p| p.update.len(), &mut users.values());
        let deleted = sum(|p| p.remove.len(), &mut users.values());
        line.push_str(&format!(
            "; users: {} {created}, {} {updated}, {} {deleted}",
            words.create, words.update, words.delete
        ));
    }
    let held_back: usize = held.values().flat_map(|r| r.values()).sum();
    if held_back > 0 {
        line.push_str(&format!("; {held_back} removal(s) held back"));
    }
    line.push('\n');
    line
}

/// `    VERB N: a, b, c and M more (see the report)`, if there are any.
fn list(out: &mut String, verb: &str, names: &[&str], limit: usize) {
    if names.is_empty() {
        return;
    }
    let shown: Vec<String> = names
        .iter()
        .take(limit)
        .map(|n| crate::text::clip(n).into_owned())
        .collect();
    out.push_str(&format!("    {verb} {}: {}", names.len(), shown.join(", ")));
    if names.len() > limit {
        out.push_str(&format!(
            " and {} more (see the report)",
            names.len() - limit
        ));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::Decisions;
    use crate::outcome::{Detail, Outcome};
    use crate::plan::{Defaults, Planner, Sink};

    /// Group `o/g` with 12 users, and `o/h` with one.
    fn plan() -> Plan {
        let mut p = Planner::new(Defaults::default());
        for i in 0..12 {
            p.record(i + 2, Some("o"), Some("g"), &format!("u{i:02}"));
        }
        p.record(20, Some("o"), Some("h"), "solo");
        p.finish()
    }

    #[test]
    fn a_dry_run_says_would_and_cuts_long_lists() {
        let plan = plan();
        let mut ledger = Ledger::new(&plan, false, Status::NotAttempted);
        let mut held = Outcome::new(Status::NotAttempted);
        held.hold(Arc::new(Detail {
            message: "not removed: more than --max-removals allows".into(),
            ..Detail::default()
        }));
        ledger.take(Decisions {
            unchanged: vec![12],
            strays: vec![
                (0, "gone".into(), Outcome::new(Status::NotAttempted)),
                (1, "kept".into(), held),
            ],
            ..Decisions::default()
        });
        // As a dry run ends: what is still to send is planned.
        for o in ledger.outcomes_mut().filter(|o| o.still_to_send()) {
            o.status = Status::Planned;
        }
        let text = render(&plan, &ledger, true, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "changes: would add 12, would remove 1 in 1 group(s); 1 removal(s) held back",
                "  o / g",
                "    would add 12: u00, u01, u02, u03, u04, u05, u06, u07, u08, u09 and 2 more (see the report)",
                "    would remove 1: gone",
                "  held back: o / h: 1 removal(s): not removed: more than --max-removals allows",
            ]
        );
        let all = render(&plan, &ledger, true, true);
        assert!(
            all.contains("u10, u11\n") && !all.contains("more (see"),
            "{all}"
        );
    }

    #[test]
    fn a_run_that_sent_lists_what_it_did_in_the_past_tense() {
        let plan = plan();
        let mut ledger = Ledger::new(&plan, false, Status::Added);
        // Sent by this run: one attempt each, but the last of `g`, confirmed by an earlier run.
        let (_, outcomes) = ledger.split();
        for o in outcomes.iter_mut().take(11) {
            o.attempts = 1;
        }
        outcomes[12].attempts = 1;
        outcomes[12].status = Status::Failed;
        let text = render(&plan, &ledger, false, true);
        assert_eq!(
            text.lines().next(),
            Some("changes: added 11, removed 0 in 1 group(s)")
        );
        assert!(text.contains("    added 11: u00,"), "{text}");
        assert!(!text.contains("solo"), "a failed add is no change: {text}");
        // A notification's lines are the same changes: not u11 (the journal's), not solo.
        let lines: Vec<String> = changes(&plan, &ledger, false)
            .filter_map(|c| line(&c, false))
            .collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "added o/g/u00");
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("u11") || l.contains("solo"))
        );
    }

    #[test]
    fn organization_users_say_what_changes_about_them() {
        use crate::provision::model::Changed;
        let mut plan = plan();
        crate::test_support::with_accounts(&mut plan, &["u00", "u01", "u02"]);
        let mut ledger = Ledger::new(&plan, false, Status::NotAttempted);
        let email = Changed {
            name: false,
            email: true,
        };
        ledger.take(Decisions {
            actions: vec![(0, Action::Keep), (1, Action::Update(email))],
            leavers: vec![(0, "left".into(), Outcome::new(Status::NotAttempted))],
            ..Decisions::default()
        });
        for o in ledger.outcomes_mut().filter(|o| o.still_to_send()) {
            o.status = Status::Planned;
        }
        let text = render(&plan, &ledger, true, false);
        assert!(
            text.starts_with("changes: would add 13, would remove 0 in 2 group(s); users: would create 1, would update 1, would delete 1\n"),
            "{text}"
        );
        assert!(
            text.contains("  users of o\n    would create 1: u02\n    would update 1: u01 (e-mail)\n    would delete 1: left\n"),
            "{text}"
        );
        // A dry run's notification says what would be done to users too.
        let lines: Vec<String> = changes(&plan, &ledger, true)
            .filter_map(|c| line(&c, true))
            .filter(|l| l.starts_with("user"))
            .collect();
        assert_eq!(
            lines,
            [
                "user would update o/u01",
                "user would create o/u02",
                "user would delete o/left"
            ]
        );
    }
}
