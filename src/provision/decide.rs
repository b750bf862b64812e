//! What reading the organizations decides for provisioning, as data the engine hands to the
//! ledger: users there with the same name and e-mail are kept, others updated (the rest are
//! created); with `--deprovision-users` in mirror mode, users no record names are removed,
//! under the removal guard, unless protected; and whether a run would create an organization.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::model::{Accounts, Action, Changed};
use crate::client::OrgUser;
use crate::guard::{Guard, MaxRemovals};
use crate::outcome::{Detail, Outcome, Status};

/// An organization's users as read, or why they could not be read.
pub type Listing = Result<Vec<OrgUser>, String>;

/// What the decisions need of a run's options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--deprovision-users` in mirror mode.
    pub deprovision: bool,
    pub max_user_removals: MaxRemovals,
    pub allow_empty: bool,
}

/// What keeps a user in its organization: the engine's rules (see `engine::keep`).
pub trait Keeps {
    /// The key users compare by (`--user-id-case lower` folds it).
    fn key<'u>(&self, user: &'u str) -> Cow<'u, str>;
    /// Whether a record of the input names the user, whether or not it could be used.
    fn named(&self, org: &str, user: &str) -> bool;
    /// Why the user (with its e-mail) is never deprovisioned, if it is protected.
    fn protected(&self, org: &str, user: &str, email: Option<&str>) -> Option<String>;
}

/// What reading the organizations decided; accounts and organizations are the model's indexes.
#[derive(Debug, Default)]
pub struct Decided {
    /// Users found in their organization: keep or update.
    pub actions: Vec<(u32, Action)>,
    /// The server's spelling of an account's user ID, where it differs.
    pub spellings: Vec<(u32, Box<str>)>,
    /// Users of an organization no record names: (organization, user, outcome before
    /// sending: to send, held back by the guard, or protected).
    pub leavers: Vec<(u32, String, Outcome)>,
    /// Organizations that could not be read while their removals were asked for.
    pub unread: u64,
}

fn detail(message: String) -> Arc<Detail> {
    Arc::new(Detail {
        message,
        ..Detail::default()
    })
}

/// Compares each organization's users with the input: users there with the same name and
/// e-mail are kept, others updated or created; with `--deprovision-users` in mirror mode,
/// users the input does not list become removals unless the guard refuses them or they are
/// protected. Under `--user-id-case lower` a user is matched without case and keeps the
/// server's spelling. Returns how many organizations could not be read while their removals
/// were asked for.
pub fn reconcile(
    accounts: &Accounts,
    current: Vec<Listing>,
    keep: &dyn Keeps,
    opts: &Options,
) -> Decided {
    let deprovision = opts.deprovision;
    let mut decided = Decided::default();
    for (o, users) in current.into_iter().enumerate() {
        let users = match users {
            Ok(users) => users,
            Err(why) => {
                decided.unread += u64::from(deprovision);
                tracing::error!(
                    event = "read_failed",
                    organizationId = &*accounts.orgs[o].id,
                    message = %why,
                    consequence = if deprovision {
                        "its users are added as in add mode; none is removed from it"
                    } else {
                        "its users are added as in add mode"
                    },
                );
                continue;
            }
        };
        match_listed(accounts, o, &users, keep, &mut decided);
        if deprovision {
            leavers(accounts, o, &users, keep, opts, &mut decided);
        }
    }
    decided
}

/// The input's users of organization `o` that it holds already: kept when their name and
/// e-mail are the same, else updated; they take the server's spelling of their ID.
fn match_listed(
    accounts: &Accounts,
    o: usize,
    users: &[OrgUser],
    keep: &dyn Keeps,
    decisions: &mut Decided,
) {
    let mut by_key: HashMap<Cow<'_, str>, &OrgUser> = HashMap::with_capacity(users.len());
    for u in users {
        // Of two spellings of one folded ID, the one the input has (folded) wins.
        let key = keep.key(&u.user_id);
        if *key == *u.user_id || !by_key.contains_key(&key) {
            by_key.insert(key, u);
        }
    }
    for &a in &accounts.orgs[o].users {
        let account = &accounts.list[a as usize];
        let Some(&there) = by_key.get(&*keep.key(&account.user)) else {
            continue;
        };
        if *there.user_id != *account.user {
            decisions.spellings.push((a, there.user_id.as_str().into()));
        }
        let same_name = there.name.as_deref().map(str::trim) == Some(&*account.name);
        let same_email = there
            .email
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(&account.email));
        let action = if same_name && same_email {
            Action::Keep
        } else {
            Action::Update(Changed {
                name: !same_name,
                email: !same_email,
            })
        };
        decisions.actions.push((a, action));
    }
}

/// `--deprovision-users`: the users of organization `o` that no record names become
/// removals, protected ones kept, the rest held back if the guard refuses them.
fn leavers(
    accounts: &Accounts,
    o: usize,
    users: &[OrgUser],
    keep: &dyn Keeps,
    opts: &Options,
    decisions: &mut Decided,
) {
    let org_id = accounts.orgs[o].id.clone();
    let listed: HashSet<Cow<'_, str>> = accounts.orgs[o]
        .users
        .iter()
        .map(|&a| {
            keep.key(&accounts.list[a as usize].user)
                .into_owned()
                .into()
        })
        .collect();
    // Users no record names: a user named only by a record the input could not use is not a
    // leaver (the input is wrong, not the user gone). Every user passes through `once`: it
    // ends as the distinct users the guard counts.
    let mut once = HashSet::new();
    let extra = users.iter().filter(|u| {
        once.insert(u.user_id.as_str())
            && !listed.contains(&keep.key(&u.user_id))
            && !keep.named(&org_id, &u.user_id)
    });
    let mut candidates = Vec::new();
    for u in extra {
        match keep.protected(&org_id, &u.user_id, u.email.as_deref()) {
            Some(kept) => {
                let mut out = Outcome::new(Status::Protected);
                out.detail = Some(detail(kept));
                decisions.leavers.push((o as u32, u.user_id.clone(), out));
            }
            None => candidates.push(u.user_id.as_str()),
        }
    }
    if candidates.is_empty() {
        return;
    }
    let refused = refusal(&org_id, candidates.len(), once.len(), opts);
    for user in candidates {
        let mut out = Outcome::new(Status::NotAttempted);
        if let Some(why) = &refused {
            out.hold(why.clone());
        }
        decisions.leavers.push((o as u32, user.to_string(), out));
    }
}

/// The organizations provisioning would create: those whose listing holds no user at all
/// (`/v2/users/add` creates a missing organization, so a typo in `--org` would make a new
/// one). One that could not be read is not counted: the read failed for a reason of its own
/// (NOT_FOUND reads as empty), and is reported as such. `None` when every one holds users.
pub fn would_create(accounts: &Accounts, current: &[Listing]) -> Option<String> {
    let empty: Vec<String> = accounts
        .orgs
        .iter()
        .zip(current)
        .filter(|(_, users)| users.as_ref().is_ok_and(Vec::is_empty))
        .map(|(org, _)| crate::text::clip(&org.id).into_owned())
        .collect();
    if empty.is_empty() {
        return None;
    }
    Some(format!(
        "organization(s) {} hold no users, so provisioning would create them; nothing was \
         sent. Check --org (or the organization column); for the first run of a new \
         organization, pass --create-organization",
        empty.join(", ")
    ))
}

/// Why removing `removals` of an organization's `current` users is refused, if it is.
fn refusal(org: &str, removals: usize, current: usize, opts: &Options) -> Option<Arc<Detail>> {
    let guard = Guard::users(opts.max_user_removals, opts.allow_empty);
    let (message, limit) = guard.refusal(removals, current)?;
    tracing::error!(
        event = "user_removals_refused",
        organizationId = org,
        removals = removals,
        current = current,
        limit = limit,
        message = %message,
    );
    Some(detail(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::model::Profile;

    /// Keeps nothing but what a test names.
    struct Rules {
        named: Vec<&'static str>,
        protected: Vec<&'static str>,
    }

    impl Keeps for Rules {
        fn key<'u>(&self, user: &'u str) -> Cow<'u, str> {
            Cow::Borrowed(user)
        }

        fn named(&self, _org: &str, user: &str) -> bool {
            self.named.contains(&user)
        }

        fn protected(&self, _org: &str, user: &str, _email: Option<&str>) -> Option<String> {
            self.protected
                .contains(&user)
                .then(|| format!("kept: {user} is protected"))
        }
    }

    /// Organization `o` whose input names users a and b, with their profiles.
    fn accounts() -> Accounts {
        let profiles = ["a", "b"]
            .iter()
            .map(|u| {
                let profile = Profile {
                    name: format!("{u} name").into(),
                    email: format!("{u}@x.com").into(),
                    line: 2,
                };
                (Box::<str>::from(*u), profile)
            })
            .collect();
        Accounts::build([("o", "a"), ("o", "b")].into_iter(), &profiles)
    }

    fn user(id: &str, name: &str) -> OrgUser {
        OrgUser {
            user_id: id.into(),
            name: Some(name.into()),
            email: Some(format!("{id}@x.com")),
        }
    }

    fn options(deprovision: bool, max: MaxRemovals) -> Options {
        Options {
            deprovision,
            max_user_removals: max,
            allow_empty: false,
        }
    }

    #[test]
    fn users_there_are_kept_or_updated_and_leavers_go_only_when_deprovisioning() {
        let rules = Rules {
            named: vec![],
            protected: vec!["boss"],
        };
        let listing = vec![
            user("a", "a name"),
            user("b", "another name"),
            user("x", "x"),
            user("y", "y"),
            user("boss", "boss"),
        ];
        let all = MaxRemovals::Percent(100.0);
        let d = reconcile(
            &accounts(),
            vec![Ok(listing.clone())],
            &rules,
            &options(false, all),
        );
        let name = Changed {
            name: true,
            email: false,
        };
        assert_eq!(d.actions, [(0, Action::Keep), (1, Action::Update(name))]);
        assert!(d.leavers.is_empty(), "no deprovisioning without the flag");
        let d = reconcile(&accounts(), vec![Ok(listing)], &rules, &options(true, all));
        let leavers: Vec<(&str, Status)> = d
            .leavers
            .iter()
            .map(|(_, u, o)| (u.as_str(), o.status))
            .collect();
        assert_eq!(
            leavers,
            [
                ("boss", Status::Protected),
                ("x", Status::NotAttempted),
                ("y", Status::NotAttempted)
            ]
        );
        assert!(d.leavers.iter().all(|(_, _, o)| !o.held_back));
    }

    #[test]
    fn the_guard_holds_leavers_back_and_a_named_user_is_no_leaver() {
        let rules = Rules {
            named: vec!["x"],
            protected: vec![],
        };
        let listing: Vec<OrgUser> = ["a", "b", "x", "y", "z"]
            .iter()
            .map(|u| user(u, &format!("{u} name")))
            .collect();
        let one = options(true, MaxRemovals::Count(1));
        let d = reconcile(&accounts(), vec![Ok(listing)], &rules, &one);
        let users: Vec<&str> = d.leavers.iter().map(|(_, u, _)| u.as_str()).collect();
        assert_eq!(
            users,
            ["y", "z"],
            "x is named by a record the input could not use"
        );
        for (_, _, o) in &d.leavers {
            assert!(o.held_back, "two removals, one allowed: both held back");
            let message = &o.detail.as_ref().expect("why").message;
            assert!(message.contains("--max-user-removals"), "{message}");
        }
    }

    #[test]
    fn an_unreadable_organization_removes_nothing_and_an_empty_one_would_be_created() {
        let rules = Rules {
            named: vec![],
            protected: vec![],
        };
        let d = reconcile(
            &accounts(),
            vec![Err("down".into())],
            &rules,
            &options(true, MaxRemovals::Percent(100.0)),
        );
        assert!(d.leavers.is_empty() && d.actions.is_empty());
        assert_eq!(d.unread, 1);
        let why = would_create(&accounts(), &[Ok(Vec::new())]).expect("refused");
        assert!(why.contains("--create-organization"), "{why}");
        assert_eq!(would_create(&accounts(), &[Err("down".into())]), None);
        assert_eq!(would_create(&accounts(), &[Ok(vec![user("q", "q")])]), None);
    }
}
