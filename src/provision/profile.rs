//! The check on each record's name and e-mail (`--provision-users`), as the input is read:
//! both there, printable, an address that looks like one, and the same for every record of
//! one user.

use std::borrow::Cow;
use std::collections::HashMap;

use super::model::Profile;
use crate::text::clip;

/// What a record says about its user.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'r> {
    pub name: Option<&'r str>,
    pub first_name: Option<&'r str>,
    pub last_name: Option<&'r str>,
    pub email: Option<&'r str>,
    /// The record's line, for the message when a later record says otherwise.
    pub line: u64,
}

/// Longest name or e-mail sent, in characters.
const MAX_PROFILE_CHARS: usize = 256;

/// Why a name or e-mail cannot be sent as it is: a control character, a bidirectional
/// override (`U+202E` makes `moc.liame` read as `email.com`), or more than 256 characters.
fn unprintable(what: &str, value: &str) -> Option<String> {
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}');
    if let Some(c) = value.chars().find(|&c| c.is_control() || bidi(c)) {
        return Some(format!(
            "{what} `{}` holds the invisible character U+{:04X}; fix the input",
            clip(value),
            u32::from(c)
        ));
    }
    let chars = value.chars().count();
    (chars > MAX_PROFILE_CHARS).then(|| {
        format!("{what} is {chars} characters long, more than {MAX_PROFILE_CHARS}; fix the input")
    })
}

/// `--provision-users`: checks a record's name and e-mail and keeps them as its user's
/// profile in `profiles`; the reason the record is invalid if they are missing, malformed, or
/// differ from what an earlier record said about the same user.
pub fn check(
    record: Fields<'_>,
    users: &[Cow<'_, str>],
    profiles: &mut HashMap<Box<str>, Profile>,
) -> Result<(), String> {
    let user = match users {
        [user] => user.trim(),
        [] => return Ok(()),
        _ => {
            return Err(
                "several users in one record; --provision-users needs one user per record, with its name and e-mail"
                    .into(),
            );
        }
    };
    if user.is_empty() {
        return Ok(()); // the planner says what is wrong with the ID
    }
    let name = match (record.first_name, record.last_name) {
        (None, None) => record.name.map(str::trim).unwrap_or("").to_string(),
        (first, last) => [first, last]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    };
    if name.is_empty() {
        return Err("name is empty; --provision-users needs each user's name".into());
    }
    if let Some(why) = unprintable("name", &name) {
        return Err(why);
    }
    let email = record.email.map(str::trim).unwrap_or("");
    if email.is_empty() {
        return Err("email is empty; --provision-users needs each user's e-mail".into());
    }
    if let Some(why) = unprintable("email", email) {
        return Err(why);
    }
    if !is_address(email) {
        return Err(format!("email `{}` is not an e-mail address", clip(email)));
    }
    let line = record.line;
    // Most records repeat a user already seen (one row per membership): look before
    // allocating a key.
    let Some(known) = profiles.get(user) else {
        let profile = Profile {
            name: name.into(),
            email: email.into(),
            line,
        };
        profiles.insert(user.into(), profile);
        return Ok(());
    };
    let (what, here, there) = if *known.name != name {
        ("name", name.as_str(), &*known.name)
    } else if !known.email.eq_ignore_ascii_case(email) {
        ("e-mail", email, &*known.email)
    } else {
        return Ok(());
    };
    Err(format!(
        "user {} has the {what} `{}` here but `{}` at line {}; one user has one {what}: fix the input",
        clip(user),
        clip(here),
        clip(there),
        known.line
    ))
}

/// Whether `s` looks like an e-mail address: one `@` between a local part and a domain with a
/// dot, no spaces or control characters.
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'r>(name: &'r str, email: &'r str, line: u64) -> Fields<'r> {
        Fields {
            name: Some(name),
            first_name: None,
            last_name: None,
            email: Some(email),
            line,
        }
    }

    #[test]
    fn a_user_has_one_printable_name_and_one_address() {
        let mut profiles = HashMap::new();
        let ada = [Cow::Borrowed("ada")];
        assert_eq!(
            check(fields("Ada", "ada@x.com", 2), &ada, &mut profiles),
            Ok(())
        );
        // The same again, the address in another case: the same profile.
        assert_eq!(
            check(fields("Ada", "ADA@x.com", 3), &ada, &mut profiles),
            Ok(())
        );
        let other = check(fields("Ada L.", "ada@x.com", 4), &ada, &mut profiles);
        assert!(
            other.as_ref().is_err_and(|e| e.contains("at line 2")),
            "{other:?}"
        );
        let bob = [Cow::Borrowed("bob")];
        for (name, email, says) in [
            ("", "bob@x.com", "name is empty"),
            ("Bob", "", "email is empty"),
            ("Bob", "bob", "is not an e-mail address"),
            ("Bob\u{202E}", "bob@x.com", "U+202E"),
        ] {
            let why = check(fields(name, email, 5), &bob, &mut profiles).unwrap_err();
            assert!(why.contains(says), "{name:?} {email:?}: {why}");
        }
        let two = [Cow::Borrowed("a"), Cow::Borrowed("b")];
        let why = check(fields("A", "a@x.com", 6), &two, &mut profiles).unwrap_err();
        assert!(why.contains("one user per record"), "{why}");
        let first_last = Fields {
            name: None,
            first_name: Some(" Grace "),
            last_name: Some("Hopper"),
            email: Some("grace@x.com"),
            line: 7,
        };
        let grace = [Cow::Borrowed("grace")];
        assert_eq!(check(first_last, &grace, &mut profiles), Ok(()));
        assert_eq!(&*profiles["grace"].name, "Grace Hopper");
    }
}
