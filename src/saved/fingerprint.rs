//! Fingerprints of what a listing held (a group's members, an organization's users), so that
//! `apply` can tell whether the server still holds what a plan was made from.
//!
//! A fingerprint is the number of distinct IDs and the sum, modulo 2^128, of the first 128
//! bits of each ID's SHA-256. A sum, not a hash of the sorted list, because it can be moved
//! by one ID at a time: `apply` takes back the plan's own changes that it finds done (an
//! interrupted apply, or the adds of the run that held removals back) and compares what is
//! left with what the plan read. Any other difference is a change the plan did not make.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// What one listing held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Distinct IDs.
    pub count: u64,
    sum: u128,
}

fn hash(id: &str) -> u128 {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

impl Fingerprint {
    /// The fingerprint of a listing; an ID listed twice counts once.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Fingerprint {
        let distinct: HashSet<&str> = ids.into_iter().collect();
        distinct
            .into_iter()
            .fold(Fingerprint::default(), |f, id| f.with(id))
    }

    /// With one more ID (not in it already).
    pub fn with(self, id: &str) -> Fingerprint {
        Fingerprint {
            count: self.count + 1,
            sum: self.sum.wrapping_add(hash(id)),
        }
    }

    /// Without one of its IDs.
    pub fn without(self, id: &str) -> Fingerprint {
        Fingerprint {
            count: self.count.saturating_sub(1),
            sum: self.sum.wrapping_sub(hash(id)),
        }
    }

    /// The sum as 32 hexadecimal digits, as the plan file holds it.
    pub fn text(&self) -> String {
        format!("{:032x}", self.sum)
    }

    /// From a plan file's count and text; `None` if the text is not 32 hexadecimal digits.
    pub fn parse(count: u64, text: &str) -> Option<Fingerprint> {
        if text.len() != 32 {
            return None;
        }
        let sum = u128::from_str_radix(text, 16).ok()?;
        Some(Fingerprint { count, sum })
    }
}

/// What a run read: a fingerprint per plan group and per organization of the plan's
/// accounts, `None` where nothing was read (add mode, or a listing that failed).
#[derive(Debug, Default, Clone)]
pub struct Reads {
    pub groups: Vec<Option<Fingerprint>>,
    pub orgs: Vec<Option<Fingerprint>>,
}

/// What a listing shows of a plan's changes to it.
#[derive(Debug, Default)]
pub struct Found<'a> {
    /// The listing with the plan's changes that it shows done taken back: what it held when
    /// the plan was made, if nothing else changed.
    pub before: Fingerprint,
    /// Adds (or users to create) the listing already holds.
    pub added: HashSet<&'a str>,
    /// Removals (or users to delete) the listing no longer holds.
    pub gone: HashSet<&'a str>,
}

/// Compares a listing with a plan's adds and removals to it.
pub fn take_back<'a>(
    listing: &HashSet<&str>,
    adds: impl IntoIterator<Item = &'a str>,
    removals: impl IntoIterator<Item = &'a str>,
) -> Found<'a> {
    let mut found = Found {
        // The listing is a set already: no second one to build.
        before: listing
            .iter()
            .fold(Fingerprint::default(), |f, id| f.with(id)),
        ..Found::default()
    };
    for id in adds {
        if listing.contains(id) && found.added.insert(id) {
            found.before = found.before.without(id);
        }
    }
    for id in removals {
        if !listing.contains(id) && found.gone.insert(id) {
            found.before = found.before.with(id);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_repeats_do_not_matter_but_any_id_does() {
        let a = Fingerprint::of(["x", "y", "z"]);
        assert_eq!(a, Fingerprint::of(["z", "x", "y", "x"]));
        assert_ne!(a, Fingerprint::of(["x", "y"]));
        assert_ne!(a, Fingerprint::of(["x", "y", "Z"]));
        assert_eq!(a.count, 3);
        assert_eq!(Fingerprint::parse(3, &a.text()), Some(a));
        assert_eq!(Fingerprint::parse(3, "zz"), None);
    }

    /// A listing that holds some of the plan's changes done matches the plan's read; one with
    /// any other change does not.
    #[test]
    fn changes_found_done_are_taken_back_and_nothing_else() {
        let read = Fingerprint::of(["a", "b", "c"]);
        let plan_adds = ["d", "e"];
        let plan_removals = ["c"];
        let now: HashSet<&str> = ["a", "b", "d"].into();
        let found = take_back(&now, plan_adds, plan_removals);
        assert_eq!(found.before, read);
        assert_eq!(found.added, ["d"].into());
        assert_eq!(found.gone, ["c"].into());
        let someone_added: HashSet<&str> = ["a", "b", "c", "f"].into();
        assert_ne!(
            take_back(&someone_added, plan_adds, plan_removals).before,
            read
        );
        let someone_removed: HashSet<&str> = ["a", "c"].into();
        assert_ne!(
            take_back(&someone_removed, plan_adds, plan_removals).before,
            read
        );
    }
}
