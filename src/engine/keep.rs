//! What a removal must leave alone, asked in one place by mirror, remove mode and
//! deprovisioning: users the input names in records it could not use (invalid, or with a
//! group value the map does not list), accounts and groups `--protect-users` and
//! `--protect-groups` match; and, under `--user-id-case lower`, IDs compared by their folded
//! spelling, so that `Alice@X.com` on the server is the input's `alice@x.com`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::ExecOptions;
use super::attempt::Failure;
use crate::client::OrgUser;
use crate::plan::Plan;
use crate::provision::decide::Keeps;
use crate::text::fold_id;

/// What one group's or organization's listing gave.
type Listing = Result<Vec<OrgUser>, Failure>;

/// Why a current member or user stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept<'k> {
    /// `--protect-users` matched its ID or e-mail.
    User(&'k str),
    /// `--protect-groups` matched the group.
    Group(&'k str),
    /// A member of a group `--protect-groups` matched, kept in the organization.
    Member(&'k str),
}

impl Kept<'_> {
    /// The report's message for a protected row.
    pub fn message(self) -> String {
        match self {
            Kept::User(p) => format!("kept: --protect-users matches `{p}`"),
            Kept::Group(p) => format!("kept: the group is protected (--protect-groups `{p}`)"),
            Kept::Member(p) => {
                format!("kept: a member of a protected group (--protect-groups `{p}`)")
            }
        }
    }
}

pub(crate) struct Keep<'o> {
    fold: bool,
    /// Users the input names in records it could not use, by organization ("" for a record
    /// that names none: such a user stays in every organization).
    named: HashMap<Box<str>, HashSet<Box<str>>>,
    users: &'o [String],
    groups: &'o [String],
    /// Members of protected groups, by organization, with the pattern that protects the group:
    /// removing them from their organization would empty the group all the same.
    in_protected: HashMap<(Box<str>, Box<str>), &'o str>,
}

impl<'o> Keep<'o> {
    pub fn new(plan: &Plan, opts: &'o ExecOptions) -> Keep<'o> {
        let fold = opts.fold_user_ids;
        let mut named: HashMap<Box<str>, HashSet<Box<str>>> = HashMap::new();
        let invalid = plan
            .invalid
            .iter()
            .map(|i| (i.org.as_str(), i.user.as_str()));
        let unmapped = plan.partly_unmapped.iter().map(|(o, u)| (&**o, &**u));
        for (org, user) in invalid.chain(unmapped) {
            let user = user.trim();
            if user.is_empty() {
                continue;
            }
            let user = if fold {
                fold_id(user)
            } else {
                Cow::Borrowed(user)
            };
            named
                .entry(org.trim().into())
                .or_default()
                .insert(user.into());
        }
        Keep {
            fold,
            named,
            users: &opts.protect_users,
            groups: &opts.protect_groups,
            in_protected: HashMap::new(),
        }
    }

    /// Notes the members of the protected groups read, so that they are not deprovisioned.
    pub fn note_members(&mut self, plan: &Plan, groups: &[Listing]) {
        let patterns = self.groups;
        for (group, members) in plan.groups.iter().zip(groups) {
            let (Some(p), Ok(members)) = (patterns.iter().find(|p| glob(p, &group.id)), members)
            else {
                continue;
            };
            for m in members {
                let key = (group.org.clone(), self.key(&m.user_id).into());
                self.in_protected.entry(key).or_insert(p);
            }
        }
    }

    /// A user ID as this run compares it: folded under `--user-id-case lower`.
    pub fn key<'u>(&self, user: &'u str) -> Cow<'u, str> {
        if self.fold {
            fold_id(user)
        } else {
            Cow::Borrowed(user)
        }
    }

    /// Whether a record the input could not use names `user` in `org`: such a user is not a
    /// leaver, whatever the rest of the input says.
    pub fn named(&self, org: &str, user: &str) -> bool {
        let user = self.key(user);
        [org, ""]
            .iter()
            .filter_map(|o| self.named.get(*o))
            .any(|users| users.contains(&*user))
    }

    /// Why `user` (with this e-mail, when the listing gave one) of group `group` (`None`: of
    /// the organization) of `org` is protected, if it is.
    pub fn protected(
        &self,
        org: &str,
        group: Option<&str>,
        user: &str,
        email: Option<&str>,
    ) -> Option<Kept<'o>> {
        match group {
            Some(g) => {
                if let Some(p) = self.groups.iter().find(|p| glob(p, g)) {
                    return Some(Kept::Group(p));
                }
            }
            None => {
                if let Some(p) = self.in_protected.get(&(org.into(), self.key(user).into())) {
                    return Some(Kept::Member(p));
                }
            }
        }
        self.users
            .iter()
            .find(|p| glob(p, user) || email.is_some_and(|e| glob(p, e.trim())))
            .map(|p| Kept::User(p))
    }
}

/// `--user-id-case lower`: spells each membership's user as the server does where a listing
/// shows it (an organization's users first, then the groups' members), so that a folded ID
/// never creates a second account beside `Alice@X.com`. Of two server spellings of one ID,
/// the one the input has wins.
pub(crate) fn respell(
    plan: &Plan,
    groups: &[Listing],
    (orgs, users): (&[Box<str>], &[crate::provision::decide::Listing]),
) -> Vec<(u32, Box<str>)> {
    let mut spelling: HashMap<(Box<str>, Box<str>), Box<str>> = HashMap::new();
    let mut learn = |org: &str, users: &[OrgUser]| {
        for u in users {
            let folded = fold_id(&u.user_id);
            if *folded == *u.user_id {
                spelling.insert((org.into(), folded.into()), u.user_id.as_str().into());
            } else {
                spelling
                    .entry((org.into(), folded.into()))
                    .or_insert_with(|| u.user_id.as_str().into());
            }
        }
    };
    for (org, users) in orgs.iter().zip(users) {
        if let Ok(users) = users {
            learn(org, users);
        }
    }
    for (group, members) in plan.groups.iter().zip(groups) {
        if let Ok(members) = members {
            learn(&group.org, members);
        }
    }
    let mut spelled = Vec::new();
    if spelling.is_empty() {
        return spelled;
    }
    for i in 0..plan.memberships.len() as u32 {
        let m = &plan.memberships[i as usize];
        let key = (plan.group_of(m).org.clone(), plan.user(m).into());
        if let Some(server) = spelling.get(&key)
            && **server != *key.1
        {
            spelled.push((i, server.clone()));
        }
    }
    spelled
}

/// A shell-style glob: `*` any run of characters, `?` one character, anything else itself,
/// with ASCII letters compared without case (protecting too much is the safe side).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is tried from.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Keeps for Keep<'_> {
    fn key<'u>(&self, user: &'u str) -> Cow<'u, str> {
        Keep::key(self, user)
    }

    fn named(&self, org: &str, user: &str) -> bool {
        Keep::named(self, org, user)
    }

    fn protected(&self, org: &str, user: &str, email: Option<&str>) -> Option<String> {
        Keep::protected(self, org, None, user, email).map(|kept| kept.message())
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_as_a_shell_would() {
        assert!(glob("*@contractor.example", "ann@Contractor.example"));
        assert!(glob("svc-*", "svc-backup"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-b-y"));
        assert!(!glob("svc-*", "ann"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("", "a"));
    }
}
