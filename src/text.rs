//! Values from the input or the server made safe to quote in a one-line message, a text log
//! line or the report: clipped to a readable length, control characters escaped.

use std::borrow::Cow;

/// Most characters of one quoted value.
const CLIP_CHARS: usize = 80;

/// A value for a one-line message: at most 80 characters, control characters escaped.
pub fn clip(value: &str) -> Cow<'_, str> {
    match shorten(value) {
        Cow::Borrowed(v) => escape_controls(v),
        Cow::Owned(v) => Cow::Owned(escape_controls(&v).into_owned()),
    }
}

/// A value cut to 80 characters (with its full length said), otherwise as it is: for data
/// such as an invalid row's ID in the report, where control characters are the data.
pub fn shorten(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(CLIP_CHARS) {
        Some((at, _)) => format!("{}… ({} bytes)", &value[..at], value.len()).into(),
        None => Cow::Borrowed(value),
    }
}

/// Control characters (newlines, escapes, …) written as `\n`, `\u{1b}`: a value from the
/// server or the input can then never start a line of its own in a log or a report message.
pub fn escape_controls(value: &str) -> Cow<'_, str> {
    if !value.chars().any(char::is_control) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_long_values_clipped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nvelt-group-sync: 6 added\r\u{1b}[2J"),
            "a\\nvelt-group-sync: 6 added\\r\\u{1b}[2J"
        );
        let long = "x".repeat(50_000_000 / 1000);
        let shown = clip(&long);
        assert!(shown.len() < 120, "{}", shown.len());
        assert!(shown.ends_with("(50000 bytes)"), "{shown}");
    }
}
