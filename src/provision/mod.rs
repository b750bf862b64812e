//! Provisioning (`--provision-users`): making each user of the input a user of its
//! organization, with its name and e-mail, before the group calls need it; and, with
//! `--deprovision-users` in mirror mode, removing from an organization the users the input
//! does not list. Everything provisioning knows lives here:
//!
//! - [`model`]: which user must be a user of which organization, with what profile; what a
//!   run does about each (create, update, keep, remove); the report's `user` column and the
//!   counts of the summary and the metrics.
//! - [`profile`]: the check on each record's name and e-mail, as the input is read.
//! - [`decide`]: what reading the organizations decides (keep, update, create, deprovision
//!   under the removal guard, whether a run would create an organization), as data.
//!
//! The engine reads the organizations' users and sends the users' calls with its generic
//! reads and chunks; the ledger holds their rows.

pub mod decide;
pub mod model;
pub mod profile;
