//! Values from the input or the server made safe to quote in a one-line message, a text log
//! line or the report: clipped to a readable length, control characters escaped.

use std::borrow::Cow;
use std::time::Duration;

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

/// `30s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale < 1e9 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!(
            "`{s}` is not a duration; write e.g. 30s, 500ms or 2m"
        )),
    }
}

/// A duration as `parse_duration` reads it, in its largest whole unit: `30m`, `120s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `--user-id-case lower`: a user ID with its ASCII letters lower-cased. Only ASCII: e-mail
/// domains are ASCII (or punycode), and full Unicode folding would merge distinct IDs (the
/// Kelvin sign `\u{212A}` into `k`) and change an ID's length.
pub fn fold_id(id: &str) -> Cow<'_, str> {
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(id.to_ascii_lowercase())
    } else {
        Cow::Borrowed(id)
    }
}

/// A cell a spreadsheet would run as a formula (`=HYPERLINK(...)`, `+1`, `@SUM`, a leading tab
/// or carriage return): the OWASP list of CSV-injection starts.
pub fn looks_like_formula(cell: &str) -> bool {
    cell.as_bytes()
        .first()
        .is_some_and(|b| matches!(b, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

/// A value the CSV report wrote with a `'` before it (see [`looks_like_formula`]), as it was.
pub fn unquote_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if looks_like_formula(rest) => rest,
        _ => cell,
    }
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
