//! What the unit tests of several modules build alike.

use crate::plan::Plan;
use crate::provision::model::{Accounts, Profile};

/// Gives `plan` its organization users: `users`, each with the profile `user`,
/// `user@x.com`, in the organizations their memberships name.
pub(crate) fn with_accounts(plan: &mut Plan, users: &[&str]) {
    let profiles = users
        .iter()
        .map(|u| {
            let profile = Profile {
                name: (*u).into(),
                email: format!("{u}@x.com").into(),
                line: 2,
            };
            (Box::<str>::from(*u), profile)
        })
        .collect();
    let memberships = plan
        .memberships
        .iter()
        .map(|m| (&*plan.group_of(m).org, plan.user(m)));
    plan.accounts = Some(Accounts::build(memberships, &profiles));
}
