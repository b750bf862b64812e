//! The plan: validated, de-duplicated memberships grouped per (organization, group), in order
//! of first appearance. `execute` cuts each group into request-sized chunks.
//!
//! Memory stays proportional to the unique memberships: each group's IDs are stored once, a
//! membership holds a group index and its user ID, and the de-duplication table holds only
//! indexes into the membership list.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// Longest ID accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;

/// One organization user group named by the input.
#[derive(Debug)]
pub struct Group {
    pub org: Box<str>,
    pub id: Box<str>,
    /// Indexes into `Plan::memberships`, in order of first appearance.
    pub members: Vec<u32>,
}

/// One unique (organization, group, user) triple.
#[derive(Debug)]
pub struct Membership {
    /// Index into `Plan::groups`.
    pub group: u32,
    pub user: Box<str>,
    /// Input line where the membership first appeared.
    pub line: u64,
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
}

impl Plan {
    /// Requests of a clean run: `ceil(members / chunk_size)` per group.
    pub fn request_count(&self, chunk_size: usize) -> usize {
        self.groups
            .iter()
            .map(|g| g.members.len().div_ceil(chunk_size))
            .sum()
    }

    pub fn group_of(&self, m: &Membership) -> &Group {
        &self.groups[m.group as usize]
    }
}

/// The organization and group used where a record carries none.
#[derive(Debug, Default, Clone)]
pub struct Defaults {
    pub org: Option<String>,
    pub group: Option<String>,
}

/// Builds a `Plan` from records as the input reader produces them.
pub struct Planner {
    defaults: Defaults,
    state: State,
}

/// Everything but the defaults, so that borrowed defaults and mutable state can coexist.
struct State {
    plan: Plan,
    /// `org \0 group` -> group index. NUL cannot occur in a valid ID, so the key is unambiguous.
    group_index: HashMap<Box<str>, u32>,
    key: String,
    last_group: Option<u32>,
    seen: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Planner {
    pub fn new(defaults: Defaults) -> Planner {
        Planner {
            defaults,
            state: State {
                plan: Plan::default(),
                group_index: HashMap::new(),
                key: String::new(),
                last_group: None,
                seen: HashTable::new(),
                hasher: hashbrown::DefaultHashBuilder::default(),
            },
        }
    }

    /// One (organization, group, user) from the input; `None` or blank fields take the defaults.
    pub fn record(&mut self, line: u64, org: Option<&str>, group: Option<&str>, user: &str) {
        let org = pick(org, self.defaults.org.as_deref());
        let group = pick(group, self.defaults.group.as_deref());
        let user = user.trim();
        let problem = check("organizationId", org)
            .or_else(|| check("organizationUserGroupId", group))
            .or_else(|| check("userId", user));
        match problem {
            Some(reason) => self.state.reject(line, org, group, user, reason),
            None => self.state.insert(line, org, group, user),
        }
    }

    /// A record that cannot be used, with the reason the report gives. The defaults are
    /// applied to the organization and group shown.
    pub fn reject_record(
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

    pub fn finish(self) -> Plan {
        self.state.plan
    }
}

impl State {
    fn insert(&mut self, line: u64, org: &str, group: &str, user: &str) {
        let g = self.group(org, group);
        let hash = self.hasher.hash_one((g, user));
        let memberships = &mut self.plan.memberships;
        match self.seen.entry(
            hash,
            |&i| {
                let m = &memberships[i as usize];
                m.group == g && &*m.user == user
            },
            |&i| {
                let m = &memberships[i as usize];
                self.hasher.hash_one((m.group, &*m.user))
            },
        ) {
            Entry::Occupied(_) => self.plan.duplicates += 1,
            Entry::Vacant(slot) => {
                let index = u32::try_from(memberships.len())
                    .expect("more than 4 billion unique memberships in one run");
                slot.insert(index);
                memberships.push(Membership {
                    group: g,
                    user: user.into(),
                    line,
                });
                self.plan.groups[g as usize].members.push(index);
            }
        }
    }

    fn reject(&mut self, line: u64, org: &str, group: &str, user: &str, reason: String) {
        self.plan.invalid.push(Invalid {
            before: self.plan.memberships.len(),
            line,
            org: org.to_string(),
            group: group.to_string(),
            user: user.to_string(),
            reason,
        });
    }

    fn group(&mut self, org: &str, group: &str) -> u32 {
        // Exports are usually sorted by group: try the last one before hashing.
        if let Some(g) = self.last_group {
            let last = &self.plan.groups[g as usize];
            if &*last.org == org && &*last.id == group {
                return g;
            }
        }
        self.key.clear();
        self.key.push_str(org);
        self.key.push('\0');
        self.key.push_str(group);
        let g = match self.group_index.get(self.key.as_str()) {
            Some(&g) => g,
            None => {
                let g = self.plan.groups.len() as u32;
                self.group_index.insert(self.key.as_str().into(), g);
                self.plan.groups.push(Group {
                    org: org.into(),
                    id: group.into(),
                    members: Vec::new(),
                });
                g
            }
        };
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
            .map(|&i| &*plan.memberships[i as usize].user)
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
        assert_eq!(plan.memberships[0].line, 2, "first appearance is kept");
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
