//! The plan: validated, de-duplicated memberships grouped per (organization, group), in order
//! of first appearance. `execute` cuts each group into request-sized chunks.
//!
//! Memory stays proportional to the unique memberships and small per membership: each group's
//! IDs are stored once; user IDs sit end to end in one arena string (no allocation per row); a
//! membership is a group index, a span of the arena and a line number; and the de-duplication
//! table holds only an index and 32 bits of hash per membership, so it can grow without
//! touching the memberships again.

use std::hash::BuildHasher;
use std::num::NonZeroU64;

use hashbrown::HashTable;

use crate::text::shorten;
use seen::SeenTable;

mod seen;

/// Longest ID accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;

/// One organization user group named by the input.
#[derive(Debug)]
pub struct Group {
    pub org: Box<str>,
    pub id: Box<str>,
    /// Indexes into `Plan::memberships`, in order of first appearance.
    pub members: Vec<u32>,
    /// Display name for `--create-missing-groups` (`--group-name-column`); the ID if absent.
    pub name: Option<Box<str>>,
}

/// One unique (organization, group, user) triple. The user ID is `Plan::user`.
#[derive(Debug)]
pub struct Membership {
    /// Index into `Plan::groups`.
    pub group: u32,
    user_len: u32,
    user_at: u64,
    /// Input line where the membership first appeared. Lines start at 1.
    line: NonZeroU64,
}

impl Membership {
    /// The input line where the membership first appeared.
    pub fn line(&self) -> u64 {
        self.line.get()
    }
}

/// A record that cannot become a membership, kept for the report.
#[derive(Debug)]
pub struct Invalid {
    /// How many memberships came before it, so the report keeps input order.
    pub before: usize,
    pub line: u64,
    pub org: String,
    pub group: String,
    pub user: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub memberships: Vec<Membership>,
    pub invalid: Vec<Invalid>,
    /// Valid records that repeated a membership already seen.
    pub duplicates: u64,
    /// Records left out by `--include` / `--exclude`.
    pub filtered: u64,
    /// Memberships left out because the group map does not list their group (`--unmapped skip`).
    pub unmapped_skipped: u64,
    /// Group values the group map does not list: ((group column, value), records), most first.
    pub unmapped: Vec<((String, String), u64)>,
    /// Users named by records with a group value the map does not list (`--unmapped skip`):
    /// (organization, "" when the record names none; user). Never removed: see `engine::keep`.
    pub partly_unmapped: Vec<(Box<str>, Box<str>)>,
    /// `--provision-users`: the organization users the run makes sure of.
    pub accounts: Option<crate::provision::model::Accounts>,
    /// Every unique user ID, end to end.
    ids: String,
}

impl Plan {
    /// Requests of a clean run: `ceil(members / chunk_size)` per group.
    pub fn request_count(&self, chunk_size: usize) -> usize {
        self.groups
            .iter()
            .map(|g| g.members.len().div_ceil(chunk_size))
            .sum()
    }

    pub fn user(&self, m: &Membership) -> &str {
        let at = m.user_at as usize;
        &self.ids[at..at + m.user_len as usize]
    }

    /// The user ID of membership `i`.
    pub fn user_at(&self, i: u32) -> &str {
        self.user(&self.memberships[i as usize])
    }

    pub fn group_of(&self, m: &Membership) -> &Group {
        &self.groups[m.group as usize]
    }

    /// Stores a membership (the user ID in the arena) and returns its index.
    fn push_membership(&mut self, g: u32, user: &str, line: u64) -> u32 {
        // Input lines start at 1; a 0 from a caller is taken as the first.
        let line = NonZeroU64::MIN.saturating_add(line.saturating_sub(1));
        let index = u32::try_from(self.memberships.len())
            .expect("more than 4 billion memberships in one run");
        self.memberships.push(Membership {
            group: g,
            // IDs are at most MAX_ID_BYTES long (checked before).
            user_len: user.len() as u32,
            user_at: self.ids.len() as u64,
            line,
        });
        self.ids.push_str(user);
        index
    }
}

/// The organization and group used where a record carries none.
#[derive(Debug, Default, Clone)]
pub struct Defaults {
    pub org: Option<String>,
    pub group: Option<String>,
}

/// Where the input reader puts what it reads.
pub trait Sink {
    /// One (organization, group, user); `None` or blank fields take the defaults.
    fn record(&mut self, line: u64, org: Option<&str>, group: Option<&str>, user: &str);
    /// The display name of the record's group (`--group-name-column`), given after `record`.
    fn group_name(&mut self, org: Option<&str>, group: Option<&str>, name: &str);
    /// A record that cannot be used, with the reason the report gives.
    fn reject_record(
        &mut self,
        line: u64,
        org: Option<&str>,
        group: Option<&str>,
        user: &str,
        reason: String,
    );
}

impl Sink for Planner {
    fn record(&mut self, line: u64, org: Option<&str>, group: Option<&str>, user: &str) {
        self.record_resolved(line, org, group, user, None);
    }

    fn group_name(&mut self, org: Option<&str>, group: Option<&str>, name: &str) {
        let org = pick(org, self.defaults.org.as_deref());
        let group = pick(group, self.defaults.group.as_deref());
        let name = name.trim();
        if !name.is_empty()
            && let Some(g) = self.state.find_group(org, group)
        {
            let known = &mut self.state.plan.groups[g as usize].name;
            if known.is_none() {
                *known = Some(name.into());
            }
        }
    }

    /// The defaults are applied to the organization and group shown.
    fn reject_record(
        &mut self,
        line: u64,
        org: Option<&str>,
        group: Option<&str>,
        user: &str,
        reason: String,
    ) {
        let org = pick(org, self.defaults.org.as_deref());
        let group = pick(group, self.defaults.group.as_deref());
        self.state.reject(line, org, group, user.trim(), reason);
    }
}

/// What `Planner::prefetch` worked out for a record of a known group, so that `record`
/// need not find the group and hash the membership again.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    group: u32,
    short: u32,
}

/// Builds a `Plan` from records as the input reader produces them.
pub struct Planner {
    defaults: Defaults,
    state: State,
}

/// Everything but the defaults, so that borrowed defaults and mutable state can coexist.
struct State {
    plan: Plan,
    /// Group indexes, hashed by (organization, group).
    group_index: HashTable<u32>,
    last_group: Option<u32>,
    /// Which memberships exist, by hash.
    seen: SeenTable,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Planner {
    pub fn new(defaults: Defaults) -> Planner {
        Planner {
            defaults,
            state: State {
                plan: Plan::default(),
                group_index: HashTable::new(),
                last_group: None,
                seen: SeenTable::default(),
                hasher: hashbrown::DefaultHashBuilder::default(),
            },
        }
    }

    /// One record, with what `prefetch` resolved for it, if anything.
    pub fn record_resolved(
        &mut self,
        line: u64,
        org: Option<&str>,
        group: Option<&str>,
        user: &str,
        resolved: Option<Resolved>,
    ) {
        let org = pick(org, self.defaults.org.as_deref());
        let group = pick(group, self.defaults.group.as_deref());
        let user = user.trim();
        if let Some(reason) = check("userId", user) {
            return self.state.reject(line, org, group, user, reason);
        }
        if let Some(r) = resolved {
            return self.state.insert(line, r.group, user, r.short);
        }
        // A known group was checked when it was first seen.
        let g = match self.state.find_group(org, group) {
            Some(g) => g,
            None => {
                let problem = check("organizationId", org)
                    .or_else(|| check("organizationUserGroupId", group));
                if let Some(reason) = problem {
                    return self.state.reject(line, org, group, user, reason);
                }
                self.state.add_group(org, group)
            }
        };
        let short = self.state.short_hash(g, user);
        self.state.insert(line, g, user, short);
    }

    /// Starts loading the table slot of a record a few ahead of the one being planned, to
    /// overlap the cache misses of a large plan, and returns what it resolved for
    /// `record_resolved`. `None` for a record of a group not seen yet.
    pub fn prefetch(
        &mut self,
        org: Option<&str>,
        group: Option<&str>,
        user: &str,
    ) -> Option<Resolved> {
        let org = pick(org, self.defaults.org.as_deref());
        let group = pick(group, self.defaults.group.as_deref());
        let g = self.state.find_group(org, group)?;
        let short = self.state.short_hash(g, user.trim());
        self.state.seen.prefetch(short);
        Some(Resolved { group: g, short })
    }

    /// The index of group (`org`, `group`), added with no members if the plan has none
    /// yet (a saved plan's group that only loses members); `Err` says why the IDs are not
    /// valid.
    pub fn group(&mut self, org: &str, group: &str) -> Result<u32, String> {
        if let Some(g) = self.state.find_group(org, group) {
            return Ok(g);
        }
        match check("organizationId", org).or_else(|| check("organizationUserGroupId", group)) {
            Some(reason) => Err(reason),
            None => Ok(self.state.add_group(org, group)),
        }
    }

    pub fn finish(self) -> Plan {
        self.state.plan
    }
}

impl State {
    fn short_hash(&self, g: u32, user: &str) -> u32 {
        self.hasher.hash_one((g, user)) as u32
    }

    /// Inserts `user` into group `g` unless already there; `short` is `short_hash(g, user)`.
    fn insert(&mut self, line: u64, g: u32, user: &str, short: u32) {
        let plan = &mut self.plan;
        let index = plan.memberships.len() as u32;
        let found = self.seen.find_or_insert(short, index, |i| {
            let m = &plan.memberships[i as usize];
            m.group == g && plan.user(m) == user
        });
        if found {
            plan.duplicates += 1;
            return;
        }
        plan.push_membership(g, user, line);
        plan.groups[g as usize].members.push(index);
    }

    fn reject(&mut self, line: u64, org: &str, group: &str, user: &str, reason: String) {
        self.plan.invalid.push(Invalid {
            before: self.plan.memberships.len(),
            line,
            // Kept for the report cut to a readable length, as `validate` shows them.
            org: shorten(org).into_owned(),
            group: shorten(group).into_owned(),
            user: shorten(user).into_owned(),
            reason,
        });
    }

    fn find_group(&mut self, org: &str, group: &str) -> Option<u32> {
        // Exports are often sorted by group: try the last one before hashing.
        if let Some(g) = self.last_group {
            let last = &self.plan.groups[g as usize];
            if &*last.id == group && &*last.org == org {
                return Some(g);
            }
        }
        let groups = &self.plan.groups;
        let g = *self
            .group_index
            .find(self.hasher.hash_one((org, group)), |&g| {
                let known = &groups[g as usize];
                &*known.id == group && &*known.org == org
            })?;
        self.last_group = Some(g);
        Some(g)
    }

    fn add_group(&mut self, org: &str, group: &str) -> u32 {
        let g = self.plan.groups.len() as u32;
        let groups = &self.plan.groups;
        let hasher = &self.hasher;
        self.group_index
            .insert_unique(hasher.hash_one((org, group)), g, |&i| {
                let known = &groups[i as usize];
                hasher.hash_one((&*known.org, &*known.id))
            });
        self.plan.groups.push(Group {
            org: org.into(),
            id: group.into(),
            members: Vec::new(),
            name: None,
        });
        self.last_group = Some(g);
        g
    }
}

fn pick<'a>(value: Option<&'a str>, default: Option<&'a str>) -> &'a str {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => v,
        _ => default.map(str::trim).unwrap_or(""),
    }
}

/// Why an ID cannot be sent, if it cannot.
fn check(field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return Some(format!("{field} is empty"));
    }
    // The common case, printable ASCII of a sane length, without decoding characters.
    if value.len() <= MAX_ID_BYTES && value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Some(format!(
            "{field} contains the control character U+{:04X}",
            c as u32
        ));
    }
    if value.len() > MAX_ID_BYTES {
        return Some(format!(
            "{field} is {} bytes long; at most {MAX_ID_BYTES} are allowed",
            value.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(plan: &Plan, g: usize) -> Vec<&str> {
        plan.groups[g]
            .members
            .iter()
            .map(|&i| plan.user_at(i))
            .collect()
    }

    #[test]
    fn groups_in_order_of_first_appearance_without_duplicates() {
        let mut p = Planner::new(Defaults::default());
        p.record(2, Some("o1"), Some("b"), "u1");
        p.record(3, Some("o1"), Some("a"), "u2");
        p.record(4, Some("o1"), Some("b"), " u1 ");
        p.record(5, Some("o2"), Some("b"), "u1");
        p.record(6, Some("o1"), Some("b"), "u3");
        let plan = p.finish();
        let names: Vec<_> = plan
            .groups
            .iter()
            .map(|g| format!("{}/{}", g.org, g.id))
            .collect();
        assert_eq!(names, ["o1/b", "o1/a", "o2/b"]);
        assert_eq!(users(&plan, 0), ["u1", "u3"]);
        assert_eq!(plan.duplicates, 1);
        assert_eq!(plan.memberships[0].line(), 2, "first appearance is kept");
    }

    #[test]
    fn duplicates_are_found_across_table_growth() {
        let mut p = Planner::new(Defaults::default());
        // Enough memberships to grow the table several times, each seen twice, in two groups
        // that share user IDs (same user, other group: not a duplicate).
        for round in 0..2u64 {
            for i in 0..5_000u64 {
                let group = if i % 2 == 0 { "a" } else { "b" };
                let user = format!("u{}", i / 2);
                let line = round * 5_000 + i + 1;
                // Half through the path that `prefetch` resolved, half through plain `record`.
                if i % 4 < 2 {
                    let resolved = p.prefetch(Some("o"), Some(group), &user);
                    p.record_resolved(line, Some("o"), Some(group), &user, resolved);
                } else {
                    p.record(line, Some("o"), Some(group), &user);
                }
            }
        }
        let plan = p.finish();
        assert_eq!(plan.memberships.len(), 5_000);
        assert_eq!(plan.duplicates, 5_000);
        assert_eq!(users(&plan, 0).len(), 2_500);
        assert_eq!(users(&plan, 1)[..2], ["u0", "u1"]);
        assert!(
            plan.memberships.iter().all(|m| m.line() <= 5_000),
            "first sightings kept"
        );
    }

    #[test]
    fn defaults_fill_blank_ids_only() {
        let mut p = Planner::new(Defaults {
            org: Some("acme".into()),
            group: None,
        });
        p.record(2, None, Some("eng"), "u1");
        p.record(3, Some("other"), Some("eng"), "u1");
        p.record(4, Some("  "), Some("eng"), "u2");
        let plan = p.finish();
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(&*plan.groups[0].org, "acme");
        assert_eq!(users(&plan, 0), ["u1", "u2"]);
    }

    #[test]
    fn invalid_ids_are_rejected_with_reasons() {
        let mut p = Planner::new(Defaults::default());
        p.record(2, Some("o"), Some("g"), "");
        p.record(3, Some("o"), None, "u");
        p.record(4, Some("o"), Some("g"), "bad\u{7}id");
        p.record(5, Some("o"), Some("g"), &"x".repeat(1025));
        p.record(6, Some("o"), Some("g"), &"x".repeat(1024));
        let plan = p.finish();
        let reasons: Vec<_> = plan
            .invalid
            .iter()
            .map(|i| (i.line, i.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (2, "userId is empty"),
                (3, "organizationUserGroupId is empty"),
                (4, "userId contains the control character U+0007"),
                (5, "userId is 1025 bytes long; at most 1024 are allowed"),
            ]
        );
        assert_eq!(plan.memberships.len(), 1);
    }

    #[test]
    fn a_clean_run_needs_ceil_n_over_size_requests_per_group() {
        let mut p = Planner::new(Defaults::default());
        for i in 0..250 {
            p.record(i + 2, Some("o"), Some("a"), &format!("u{i}"));
        }
        for i in 0..100 {
            p.record(i + 300, Some("o"), Some("b"), &format!("u{i}"));
        }
        let plan = p.finish();
        assert_eq!(plan.request_count(100), 4);
        assert_eq!(plan.request_count(1000), 2);
    }
}
