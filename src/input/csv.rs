//! CSV: the header found past blank lines and a BOM, its delimiter guessed when not given,
//! line numbers kept true across quoted newlines and blank lines, and each row handed over as
//! a record.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufRead, Cursor, Read};
use std::rc::Rc;

use super::columns::{Field, Resolver};
use super::record::{GroupCell, Mapper, Record, Values};
use super::{BOM, InputOptions, InputStats, read_error};
use crate::error::Error;
use crate::plan::Sink;

pub(crate) fn read_csv<R: BufRead>(
    mut reader: R,
    name: &str,
    opts: &InputOptions,
    planner: &mut impl Sink,
    stats: &mut InputStats,
) -> Result<(), Error> {
    let io_err = |line: u64| move |e: io::Error| read_error(name, line, &e);
    // Keep every byte up to and including the header line so that line numbers stay true,
    // and look at the header to pick the delimiter.
    let mut prefix = Vec::new();
    let mut header_line = Vec::new();
    loop {
        header_line.clear();
        if reader
            .read_until(b'\n', &mut header_line)
            .map_err(io_err(1))?
            == 0
        {
            break;
        }
        if prefix.is_empty() && header_line.starts_with(BOM) {
            header_line.drain(..BOM.len());
        }
        prefix.extend_from_slice(&header_line);
        if !header_line.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    let delimiter = opts
        .delimiter
        .unwrap_or_else(|| detect_delimiter(&header_line));
    let lines = LineTracker::default();
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(LineCounting {
            inner: Cursor::new(prefix).chain(reader),
            tracker: lines.clone(),
            offset: 0,
            in_run: false,
            run_start: 0,
        });

    let csv_err = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        match e.kind() {
            csv::ErrorKind::Io(io) => read_error(name, line, io),
            _ => Error::input(name, line, format!("cannot read: {e}")),
        }
    };
    let headers = csv.byte_headers().map_err(csv_err)?.clone();
    let header_at = lines.line_at(headers.position().map_or(0, |p| p.byte()));
    if headers.iter().all(|h| h.trim_ascii().is_empty()) {
        return Err(Error::input(
            name,
            header_at,
            "no header row; the first line must name the columns, e.g. organizationId,organizationUserGroupId,userId",
        ));
    }
    let names: Vec<String> = match headers
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim().to_string()))
        .collect::<Result<_, _>>()
    {
        Ok(n) => n,
        Err(_) => return Err(not_utf8(name, header_at)),
    };
    let resolver = Resolver::new(opts);
    let found = resolver.positions(names.iter().map(String::as_str));
    if let Some(message) = resolver.missing(&found, &names, opts) {
        return Err(Error::input(name, header_at, message));
    }
    let [org_col, name_col, status_col, action_col] =
        [Field::Org, Field::GroupName, Field::Status, Field::Action].map(|f| found.get(f));
    let Some(user_col) = found.get(Field::User) else {
        return Err(Error::input(name, header_at, "no user column"));
    };
    let group_cols: Vec<(usize, &str)> = (0..resolver.group_count())
        .filter_map(|i| found.get(Field::Group(i)))
        .map(|at| (at, names[at].as_str()))
        .collect();
    let filter_cols: Vec<usize> = (0..opts.mapping.filters.len())
        .filter_map(|i| found.get(Field::Filter(i)))
        .collect();
    let mut mapper = Mapper::new(opts);
    let width = headers.len();
    let mut record = csv::ByteRecord::new();
    while csv.read_byte_record(&mut record).map_err(csv_err)? {
        let line = lines.line_at(record.position().map_or(0, |p| p.byte()));
        if std::str::from_utf8(record.as_slice()).is_err() {
            return Err(not_utf8(name, line));
        }
        if record.iter().all(|f| f.trim_ascii().is_empty()) {
            continue; // a blank line (or only delimiters): no data to lose
        }
        // Every field was checked as UTF-8 above.
        let field = |i: usize| record.get(i).map(|f| std::str::from_utf8(f).unwrap_or(""));
        let mut r = Record::new(line);
        r.org = org_col.and_then(field).map(Cow::Borrowed);
        for &(at, column) in &group_cols {
            r.groups.push(GroupCell {
                column,
                values: field(at).map_or(Values::Missing, |v| Values::One(Cow::Borrowed(v))),
            });
        }
        r.users = Values::One(Cow::Borrowed(field(user_col).unwrap_or("")));
        r.group_name = name_col.and_then(field);
        r.status = status_col.and_then(field);
        r.action = action_col.and_then(field);
        r.filters
            .extend(filter_cols.iter().map(|&at| field(at).map(Cow::Borrowed)));
        if record.len() != width {
            let hint = if record.len() > width {
                " (an unquoted delimiter inside a value?)"
            } else {
                ""
            };
            r.problem = Some(format!(
                "row has {} fields but the header has {width}{hint}",
                record.len()
            ));
        }
        mapper.take(r, planner, stats);
    }
    Ok(())
}

/// The csv crate's own line numbers drift after blank lines and quoted newlines, so lines are
/// counted here: the reader below notes every LF and where its run of CR/LF bytes began, and
/// a record's line is found from the byte offset csv gives for it (the end of the previous
/// record, before any terminators and blank lines).
#[derive(Clone, Default)]
struct LineTracker(Rc<RefCell<LineState>>);

#[derive(Default)]
struct LineState {
    /// (offset of an LF, offset where its run of CR/LF bytes began), not yet passed.
    pending: VecDeque<(u64, u64)>,
    /// LFs already passed.
    passed: u64,
}

impl LineTracker {
    /// The 1-based line of the first content byte at or after `offset`. Offsets must not
    /// go backwards between calls.
    fn line_at(&self, offset: u64) -> u64 {
        let mut state = self.0.borrow_mut();
        while let Some(&(lf, run_start)) = state.pending.front() {
            if lf < offset || run_start <= offset {
                state.pending.pop_front();
                state.passed += 1;
            } else {
                break;
            }
        }
        state.passed + 1
    }
}

struct LineCounting<R> {
    inner: R,
    tracker: LineTracker,
    offset: u64,
    in_run: bool,
    run_start: u64,
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        let mut state = self.tracker.0.borrow_mut();
        let mut i = 0;
        while let Some(k) = memchr::memchr2(b'\r', b'\n', &data[i..]) {
            let pos = i + k;
            if k > 0 || !self.in_run {
                self.in_run = true;
                self.run_start = self.offset + pos as u64;
            }
            if data[pos] == b'\n' {
                state
                    .pending
                    .push_back((self.offset + pos as u64, self.run_start));
            }
            i = pos + 1;
        }
        if i < n {
            self.in_run = false;
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The candidate that occurs most often outside quotes in the header line; `,` on a tie.
pub(super) fn detect_delimiter(header: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in header {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let mut best = 0;
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    candidates[best]
}

pub(crate) fn not_utf8(name: &str, line: u64) -> Error {
    Error::input(
        name,
        line,
        "not valid UTF-8; convert the file first (e.g. iconv -f latin1 -t utf-8)",
    )
}
