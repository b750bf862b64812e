//! JSON arrays (streamed one element at a time) and JSON Lines: each object handed over as a
//! record, its keys resolved by the same rules as CSV headers.

use std::io::BufRead;

use serde_json::Value;

use super::csv::not_utf8;
use super::json_record::JsonRecords;
use super::{BOM, InputOptions, InputStats, read_error};
use crate::error::Error;
use crate::plan::Sink;
use crate::text::clip;

/// The bytes that open and close a JSON object, named so that the scanner reads as JSON.
pub(super) const OBJECT_START: u8 = b'{';
const OBJECT_END: u8 = b'}';

pub(crate) fn read_jsonl<R: BufRead>(
    mut reader: R,
    name: &str,
    opts: &InputOptions,
    planner: &mut impl Sink,
    stats: &mut InputStats,
) -> Result<(), Error> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut records = JsonRecords::new(opts);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(name, line + 1, &e))?;
        if n == 0 {
            return records.finish(name);
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
            Ok(value) => records.take(line, value, planner, stats),
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
/// The array may be wrapped in an object (Workday's `{"Report_Entry": [...]}`, SCIM's
/// `{"Resources": [...]}`, Graph's `{"value": [...]}`): `--records-path` names it, or else the
/// object's one array of objects is taken. Either way it is streamed, never held whole.
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
    let mut records = JsonRecords::new(opts);
    match scan.next_non_ws()? {
        Some(b'[') if opts.records_path.is_none() => {
            scan.stream_array(None, opts, &mut records, planner, stats)?;
        }
        Some(b'[') => {
            return Err(scan.error(
                "--records-path names an array inside an object, but the input is an array; leave the flag out",
            ));
        }
        Some(OBJECT_START) => {
            let path: Vec<&str> = opts
                .records_path
                .as_deref()
                .map(|p| p.split('.').map(str::trim).collect())
                .unwrap_or_default();
            let mut found = None;
            let keys = scan.walk_object(&path, &mut found, opts, &mut records, planner, stats)?;
            if found.is_none() {
                let keys = clip(&keys.join(", ")).into_owned();
                return Err(Error::input(
                    name,
                    1,
                    match &opts.records_path {
                        Some(p) => format!(
                            "no array at `{p}` (the object's keys: {keys}); check --records-path"
                        ),
                        None => format!(
                            "the object holds no array of records (its keys: {keys}); name the array with --records-path, or for one object per line use --format jsonl"
                        ),
                    },
                ));
            }
        }
        Some(_) => return Err(scan.error("expected a JSON array of objects (`[`)")),
        None => return Err(scan.error("empty input: expected a JSON array of objects")),
    }
    match scan.next_non_ws()? {
        None => records.finish(name),
        Some(_) => Err(scan.error("unexpected characters after the end of the JSON value")),
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

    /// Streams the records of an array whose `[` was read; `first` is its first non-blank
    /// byte if that was read too.
    fn stream_array(
        &mut self,
        mut first: Option<u8>,
        opts: &InputOptions,
        records: &mut JsonRecords<'_>,
        planner: &mut impl Sink,
        stats: &mut InputStats,
    ) -> Result<(), Error> {
        let mut element = Vec::new();
        let mut at_start = true;
        loop {
            let next = match first.take() {
                Some(b) => Some(b),
                None => self.next_non_ws()?,
            };
            let start = match next {
                None => return Err(self.error("unexpected end of input: the array is not closed")),
                Some(b']') if at_start => return Ok(()),
                Some(b']') => return Err(self.error("a comma before `]` (trailing comma)")),
                Some(b',') => return Err(self.error("expected a value, found `,`")),
                Some(b) => b,
            };
            at_start = false;
            let start_line = self.line;
            element.clear();
            element.push(start);
            let end = self.element_rest(start, &mut element, opts.max_record_bytes)?;
            if std::str::from_utf8(&element).is_err() {
                return Err(not_utf8(self.name, start_line));
            }
            let value: Value = serde_json::from_slice(&element).map_err(|e| {
                let line = start_line + e.line().saturating_sub(1) as u64;
                Error::input(
                    self.name,
                    line,
                    format!("invalid JSON: {}", strip_position(&e)),
                )
            })?;
            records.take(start_line, value, planner, stats);
            if end == b']' {
                return Ok(());
            }
        }
    }

    /// Walks an object whose `{` was read, streaming the records array that `path` names (or,
    /// with no path, its one member that is an array of objects); skips everything else.
    /// Returns the object's keys, for messages.
    fn walk_object(
        &mut self,
        path: &[&str],
        found: &mut Option<String>,
        opts: &InputOptions,
        records: &mut JsonRecords<'_>,
        planner: &mut impl Sink,
        stats: &mut InputStats,
    ) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut b = self.next_non_ws()?;
        if b == Some(OBJECT_END) {
            return Ok(keys);
        }
        loop {
            if b != Some(b'"') {
                return Err(self.error("invalid JSON: expected a key (a string)"));
            }
            let key = self.read_string()?;
            if self.next_non_ws()? != Some(b':') {
                return Err(self.error("invalid JSON: expected `:` after a key"));
            }
            let value_start = self.next_non_ws()?;
            let Some(value_start) = value_start else {
                return Err(self.error("unexpected end of input: the object is not closed"));
            };
            if path.first() == Some(&key.as_str()) && found.is_some() {
                return Err(self.error(&format!(
                    "the object holds `{}` twice; which one holds the records is unclear: fix the export",
                    clip(&key)
                )));
            }
            let end = match (path.first(), value_start) {
                (Some(want), b'[') if path.len() == 1 && key == *want => {
                    self.stream_array(None, opts, records, planner, stats)?;
                    *found = Some(key.clone());
                    None
                }
                (Some(want), OBJECT_START) if path.len() > 1 && key == *want => {
                    self.walk_object(&path[1..], found, opts, records, planner, stats)?;
                    None
                }
                (Some(want), _) if key == *want => {
                    return Err(self.error(&format!(
                        "`{}` is not {}; check --records-path",
                        clip(&key),
                        if path.len() == 1 {
                            "an array"
                        } else {
                            "an object"
                        }
                    )));
                }
                (None, b'[') => {
                    // With no path: the one array whose elements are objects.
                    let first = self.next_non_ws()?;
                    if first == Some(OBJECT_START) {
                        if let Some(other) = found {
                            return Err(self.error(&format!(
                                "the object holds two arrays of records, `{}` and `{}`; choose one with --records-path",
                                clip(other),
                                clip(&key)
                            )));
                        }
                        self.stream_array(first, opts, records, planner, stats)?;
                        *found = Some(key.clone());
                        None
                    } else if first == Some(b']') {
                        None
                    } else {
                        let first = first.ok_or_else(|| self.error("unexpected end of input"))?;
                        Some(self.skip_rest_of_array(first)?)
                    }
                }
                _ => Some(self.skip_value(value_start)?),
            };
            keys.push(key);
            // The byte after the value: the skipping scan may have read it already.
            let after = match end {
                Some(Some(b)) => Some(b),
                _ => self.next_non_ws()?,
            };
            match after {
                Some(b',') => b = self.next_non_ws()?,
                Some(OBJECT_END) => return Ok(keys),
                None => return Err(self.error("unexpected end of input: the object is not closed")),
                Some(_) => {
                    return Err(self.error("invalid JSON: expected `,` or `}` after a value"));
                }
            }
        }
    }

    /// The rest of a string whose opening `"` was read, decoded.
    fn read_string(&mut self) -> Result<String, Error> {
        let mut raw = vec![b'"'];
        let mut escaped = false;
        loop {
            let Some(b) = self.next_byte()? else {
                return Err(self.error("unexpected end of input inside a string"));
            };
            raw.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                break;
            }
            if raw.len() > 64 * 1024 {
                return Err(self.error("a key longer than 64 KiB: is this the right file?"));
            }
        }
        serde_json::from_slice(&raw)
            .map_err(|e| self.error(&format!("invalid JSON: {}", strip_position(&e))))
    }

    /// Skips the rest of a string whose opening `"` was read, however long (a value that is
    /// not a record is skipped, not kept).
    fn skip_string(&mut self) -> Result<(), Error> {
        let mut escaped = false;
        loop {
            let Some(b) = self.next_byte()? else {
                return Err(self.error("unexpected end of input inside a string"));
            };
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return Ok(());
            }
        }
    }

    /// Skips a value that began with `first`. A scalar is only known to end at the byte
    /// after it, which is returned then (`Some`); a string, object or array ends on its own
    /// closing byte (`None`).
    fn skip_value(&mut self, first: u8) -> Result<Option<u8>, Error> {
        match first {
            b'"' => self.skip_string().map(|()| None),
            OBJECT_START | b'[' => self.skip_nested(1).map(|()| None),
            _ => loop {
                match self.next_byte()? {
                    None => return Ok(None),
                    Some(b) if b == b',' || b == OBJECT_END || b == b']' => return Ok(Some(b)),
                    Some(b) if b.is_ascii_whitespace() => return Ok(None),
                    Some(_) => {}
                }
            },
        }
    }

    /// Skips an array of which `[` and the first non-blank byte `first` were read.
    fn skip_rest_of_array(&mut self, first: u8) -> Result<Option<u8>, Error> {
        match first {
            b'"' => self.skip_string()?,
            OBJECT_START | b'[' => self.skip_nested(1)?,
            _ => {}
        }
        self.skip_nested(1)?;
        Ok(None)
    }

    /// Skips to the close of `depth` open objects or arrays, minding strings.
    fn skip_nested(&mut self, mut depth: u32) -> Result<(), Error> {
        while depth > 0 {
            match self.next_byte()? {
                None => return Err(self.error("unexpected end of input: a value is not closed")),
                Some(b'"') => self.skip_string()?,
                Some(OBJECT_START | b'[') => depth += 1,
                Some(OBJECT_END | b']') => depth -= 1,
                Some(_) => {}
            }
        }
        Ok(())
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
                    OBJECT_START | b'[' => depth += 1,
                    OBJECT_END | b']' => depth = depth.saturating_sub(1),
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
