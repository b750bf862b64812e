//! The values of the command line's flags: their types and the parsers that give clap's
//! one-line messages for a wrong value.

use std::time::Duration;

use crate::text::parse_duration;

/// `--include` / `--exclude`: a column and the values it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterArg {
    pub column: String,
    pub values: Vec<String>,
}

pub(super) fn parse_filter(s: &str) -> Result<FilterArg, String> {
    let Some((column, values)) = s.split_once('=') else {
        return Err("expected COLUMN=VALUE[,VALUE...], e.g. Status=Active".into());
    };
    let column = column.trim();
    if column.is_empty() {
        return Err("the column name before `=` is empty".into());
    }
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    Ok(FilterArg {
        column: column.to_string(),
        values,
    })
}

/// `--name-columns First,Last`.
pub(super) fn parse_name_columns(s: &str) -> Result<(String, String), String> {
    match s.split_once(',') {
        Some((first, last)) if !first.trim().is_empty() && !last.trim().is_empty() => {
            Ok((first.trim().to_string(), last.trim().to_string()))
        }
        _ => Err("expected two column names separated by a comma, e.g. FirstName,LastName".into()),
    }
}

pub(super) fn parse_encoding(s: &str) -> Result<&'static encoding_rs::Encoding, String> {
    encoding_rs::Encoding::for_label(s.trim().as_bytes()).ok_or_else(|| {
        format!("`{s}` is not an encoding label; e.g. windows-1252, latin1, utf-16le, shift_jis")
    })
}

pub(super) fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" => Ok(s.as_bytes()[0]),
        _ => Err("expected one ASCII character (other than a quote), or `tab`".into()),
    }
}

pub(super) fn parse_status(s: &str) -> Result<String, String> {
    const KNOWN: [&str; 9] = [
        "added",
        "failed",
        "unconfirmed",
        "invalid",
        "not_attempted",
        "planned",
        "unchanged",
        "removed",
        "protected",
    ];
    let s = s.trim();
    if KNOWN.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("expected one of {}", KNOWN.join(", ")))
    }
}

/// `--rate`: a fixed number of requests per second, or adaptive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateArg {
    Fixed(f64),
    Auto,
}

pub(super) fn parse_rate_arg(s: &str) -> Result<RateArg, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(RateArg::Auto);
    }
    parse_rate(s)
        .map(RateArg::Fixed)
        .map_err(|e| format!("{e}, or `auto`"))
}

pub(super) fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err("expected a number of requests per second above 0".into()),
    }
}

pub(super) fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a number from 0 to 1".into()),
    }
}

pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let k = k.trim();
    let valid = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || k == "job" || k.starts_with("__") {
        return Err(format!(
            "`{k}` is not a label name for grouping (letters, digits and _, not `job`)"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

pub(super) fn parse_window_limit(s: &str) -> Result<(u32, Duration), String> {
    let err = || format!("`{s}` is not a quota; write e.g. 30/1m (30 requests a minute)");
    let (n, window) = s.split_once('/').ok_or_else(err)?;
    let n = n.trim().parse::<u32>().map_err(|_| err())?;
    let window = parse_duration(window)?;
    if window.is_zero() {
        return Err(err());
    }
    Ok((n, window))
}

pub(super) fn parse_latency(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
        None => {
            let d = parse_duration(s)?;
            (d, d)
        }
    };
    if lo > hi {
        return Err("the lower latency must come first".into());
    }
    Ok((lo, hi))
}

/// The engine's typed defaults as the text `--help` shows and clap reads back.
pub(super) mod shown {
    use std::sync::LazyLock;

    use crate::engine::defaults;
    use crate::text::format_duration;

    pub static RATE: LazyLock<String> = LazyLock::new(|| defaults::RATE.to_string());
    pub static MAX_BACKOFF: LazyLock<String> =
        LazyLock::new(|| format_duration(defaults::MAX_BACKOFF));
    pub static MAX_RETRY_AFTER: LazyLock<String> =
        LazyLock::new(|| format_duration(defaults::MAX_RETRY_AFTER));
    pub static MAX_THROTTLE_WAIT: LazyLock<String> =
        LazyLock::new(|| format_duration(defaults::MAX_THROTTLE_WAIT));
    pub static GRACE: LazyLock<String> = LazyLock::new(|| format_duration(defaults::GRACE));
    pub static MAX_REMOVALS: LazyLock<String> = LazyLock::new(|| defaults::MAX_REMOVALS.text());
    pub static MAX_USER_REMOVALS: LazyLock<String> =
        LazyLock::new(|| defaults::MAX_USER_REMOVALS.text());
}
