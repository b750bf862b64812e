//! JSON arrays (streamed one element at a time) and JSON Lines: each object handed over as a
//! record, its keys resolved by the same rules as CSV headers.

use std::borrow::Cow;
use std::io::BufRead;

use serde_json::Value;

use super::columns::{Field, Resolver};
use super::csv::not_utf8;
use super::record::{Record, Users, take};
use super::{BOM, InputOptions, InputStats, read_error};
use crate::error::Error;
use crate::plan::Sink;

pub(crate) fn read_jsonl<R: BufRead>(
    mut reader: R,
    name: &str,
    opts: &InputOptions,
    planner: &mut impl Sink,
    stats: &mut InputStats,
) -> Result<(), Error> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(name, line + 1, &e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let mut bytes = buf.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        let bytes = bytes.trim_ascii();
        if bytes.is_empty() {
            continue;
        }
        if std::str::from_utf8(bytes).is_err() {
            return Err(not_utf8(name, line));
        }
        // A line is a record: one broken line is an invalid record, not a broken file.
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => json_record(line, value, opts, planner, stats),
            Err(e) => {
                stats.records += 1;
                planner.reject_record(
                    line,
                    None,
                    None,
                    "",
                    format!("not valid JSON: {}", strip_position(&e)),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------- JSON

/// Reads a JSON array of objects one element at a time: a small scanner finds where each
/// element starts and ends (and on which line it starts), and serde_json parses the element.
pub(crate) fn read_json<R: BufRead>(
    reader: R,
    name: &str,
    opts: &InputOptions,
    planner: &mut impl Sink,
    stats: &mut InputStats,
) -> Result<(), Error> {
    let mut scan = Scanner {
        reader,
        line: 1,
        name,
    };
    scan.skip_bom()?;
    match scan.next_non_ws()? {
        Some(b'[') => {}
        Some(b'{') => {
            return Err(scan.error(
                "expected a JSON array of objects; for one object per line use --format jsonl",
            ));
        }
        Some(_) => return Err(scan.error("expected a JSON array of objects (`[`)")),
        None => return Err(scan.error("empty input: expected a JSON array of objects")),
    }
    let mut element = Vec::new();
    let mut first = true;
    loop {
        let start = match scan.next_non_ws()? {
            None => return Err(scan.error("unexpected end of input: the array is not closed")),
            Some(b']') if first => break,
            Some(b']') => return Err(scan.error("a comma before `]` (trailing comma)")),
            Some(b',') => return Err(scan.error("expected a value, found `,`")),
            Some(b) => b,
        };
        first = false;
        let start_line = scan.line;
        element.clear();
        element.push(start);
        let end = scan.element_rest(start, &mut element, opts.max_record_bytes)?;
        if std::str::from_utf8(&element).is_err() {
            return Err(not_utf8(name, start_line));
        }
        let value: Value = serde_json::from_slice(&element).map_err(|e| {
            let line = start_line + e.line().saturating_sub(1) as u64;
            Error::input(name, line, format!("invalid JSON: {}", strip_position(&e)))
        })?;
        json_record(start_line, value, opts, planner, stats);
        match end {
            b',' => continue,
            _ => break, // `]`
        }
    }
    match scan.next_non_ws()? {
        None => Ok(()),
        Some(_) => Err(scan.error("unexpected characters after the closing `]`")),
    }
}

struct Scanner<'a, R> {
    reader: R,
    line: u64,
    name: &'a str,
}

impl<R: BufRead> Scanner<'_, R> {
    fn error(&self, message: &str) -> Error {
        Error::input(self.name, self.line, message)
    }

    fn next_byte(&mut self) -> Result<Option<u8>, Error> {
        let buf = self
            .reader
            .fill_buf()
            .map_err(|e| read_error(self.name, self.line, &e))?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.reader.consume(1);
        if b == b'\n' {
            self.line += 1;
        }
        Ok(Some(b))
    }

    fn skip_bom(&mut self) -> Result<(), Error> {
        let buf = self
            .reader
            .fill_buf()
            .map_err(|e| read_error(self.name, 1, &e))?;
        if buf.starts_with(BOM) {
            self.reader.consume(BOM.len());
        }
        Ok(())
    }

    fn next_non_ws(&mut self) -> Result<Option<u8>, Error> {
        while let Some(b) = self.next_byte()? {
            if !b.is_ascii_whitespace() {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Copies the rest of an element that began with `first` into `out`, and returns the
    /// byte that ended it (`,` or `]`), which is not copied.
    fn element_rest(&mut self, first: u8, out: &mut Vec<u8>, max: u64) -> Result<u8, Error> {
        let start_line = self.line;
        let mut depth: u32 = 0;
        let mut in_string = false;
        let mut escaped = false;
        let mut b = first;
        loop {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            let Some(next) = self.next_byte()? else {
                return Err(self.error("unexpected end of input: the array is not closed"));
            };
            if !in_string && depth == 0 && (next == b',' || next == b']') {
                return Ok(next);
            }
            if out.len() as u64 >= max {
                return Err(Error::input(
                    self.name,
                    start_line,
                    format!(
                        "the record starting here is longer than {max} bytes: is this the right file? (--max-record-bytes raises the limit)"
                    ),
                ));
            }
            out.push(next);
            b = next;
        }
    }
}

/// serde_json appends "at line L column C"; the caller gives its own line.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Turns one JSON value into a record: the fields found by the column resolver.
fn json_record(
    line: u64,
    value: Value,
    opts: &InputOptions,
    planner: &mut impl Sink,
    stats: &mut InputStats,
) {
    let mut record = Record::new(line);
    let Value::Object(map) = &value else {
        record.problem = Some(format!(
            "expected a JSON object, found {}",
            json_kind(&value)
        ));
        return take(record, opts, planner, stats);
    };
    let found = Resolver::new(opts).positions(map.keys().map(String::as_str));
    let entry = |field| found.get(field).and_then(|at| map.iter().nth(at));
    let text = |field| entry(field).and_then(|(_, v)| v.as_str());
    record.group_name = text(Field::GroupName);
    record.status = text(Field::Status);
    record.action = text(Field::Action);
    let id = |field| -> Result<Option<Cow<'_, str>>, String> {
        match entry(field) {
            None | Some((_, Value::Null)) => Ok(None),
            Some((key, v)) => json_id(v)
                .map(Some)
                .ok_or_else(|| format!("{key} must be a string, found {}", json_kind(v))),
        }
    };
    match (id(Field::Org), id(Field::Group)) {
        (Ok(o), Ok(g)) => (record.org, record.group) = (o, g),
        (Err(e), _) | (_, Err(e)) => record.problem = Some(e),
    }
    let users = entry(Field::User).or_else(|| entry(Field::Users));
    record.users = match users {
        None => Users::Missing,
        Some((key, Value::Array(items))) => {
            if items.is_empty() && record.problem.is_none() {
                record.problem = Some(format!("{key} is an empty list"));
            }
            Users::Many(items.iter().map(user_id).collect())
        }
        Some((key, Value::Null)) => Users::Many(vec![Err(format!("{key} is null"))]),
        Some((_, Value::String(s))) => Users::One(s),
        Some((_, other)) => Users::Many(vec![user_id(other)]),
    };
    take(record, opts, planner, stats);
}

fn user_id(v: &Value) -> Result<Cow<'_, str>, String> {
    json_id(v).ok_or_else(|| format!("a user ID must be a string, found {}", json_kind(v)))
}

/// A string, or an integer written as its decimal digits (HR systems often number people).
fn json_id(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
