//! CSV: the header found past blank lines and a BOM, its delimiter guessed when not given,
//! line numbers kept true across quoted newlines and blank lines, and each row handed over as
//! a record.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufRead, Cursor, Read};
use std::rc::Rc;

use super::columns::Resolver;
use super::header;
use super::record::{Layout, Mapper};
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
    let resolver = Resolver::new(opts);
    let Header {
        prefix,
        at: header_at,
        delimiter,
        considered,
    } = find_header(&mut reader, name, opts, &resolver)?;
    let lines = LineTracker::default();
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(LineCounting {
            inner: Cursor::new(prefix).chain(reader),
            tracker: lines.clone(),
            offset: 0,
            in_run: false,
            run_start: 0,
        });
    let csv_err = |e| csv_error(name, e);
    // The records above the header were looked at already.
    let mut headers = csv::ByteRecord::new();
    while csv.read_byte_record(&mut headers).map_err(csv_err)? {
        if lines.line_at(headers.position().map_or(0, |p| p.byte())) >= header_at {
            break;
        }
        headers.clear();
    }
    let names = column_names(&headers, name, header_at)?;
    let found = resolver.positions(names.iter().map(String::as_str));
    if let Some(message) = resolver.missing(&found, &names, opts) {
        let message = header::with_considered(message, considered);
        return Err(Error::input(name, header_at, message));
    }
    let layout = Layout::new(&resolver, &found, &names, opts)
        .ok_or_else(|| Error::input(name, header_at, "no user column"))?;
    let mut mapper = Mapper::new(opts);
    let width = headers.len();
    let mut first_data = true;
    let mut record = csv::ByteRecord::new();
    while csv.read_byte_record(&mut record).map_err(csv_err)? {
        let line = lines.line_at(record.position().map_or(0, |p| p.byte()));
        if std::str::from_utf8(record.as_slice()).is_err() {
            return Err(not_utf8(name, line));
        }
        if record.iter().all(|f| f.trim_ascii().is_empty()) {
            continue; // a blank line (or only delimiters): no data to lose
        }
        if first_data && is_example(record.get(0).unwrap_or_default()) {
            // Entra's bulk templates keep a row of examples under the header.
            tracing::debug!(
                event = "example_row",
                line,
                message = "skipped the template's example row"
            );
            first_data = false;
            continue;
        }
        first_data = false;
        // Every field was checked as UTF-8 above.
        let mut r = layout.record(line, |i| {
            record.get(i).map(|f| std::str::from_utf8(f).unwrap_or(""))
        });
        if record.len() != width {
            r.problem = Some(width_problem(record.len(), width));
        }
        mapper.take(r, planner, stats);
    }
    Ok(())
}

fn csv_error(name: &str, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::Io(io) => read_error(name, line, io),
        _ => Error::input(name, line, format!("cannot read: {e}")),
    }
}

/// Why a row with `fields` fields does not fit a header of `width`.
fn width_problem(fields: usize, width: usize) -> String {
    let hint = if fields > width {
        " (an unquoted delimiter inside a value?)"
    } else {
        ""
    };
    format!("row has {fields} fields but the header has {width}{hint}")
}

/// Where the header row is: every byte read up to it (so that line numbers stay true), its
/// line number and the delimiter.
struct Header {
    prefix: Vec<u8>,
    at: u64,
    delimiter: u8,
    /// When no line named the columns: the lines considered, for the message.
    considered: Option<String>,
}

/// Finds the header: the first line (of the first 20 that are not blank) that names the
/// columns the run needs, so that report titles, run dates and Entra's `version:v1.0` line
/// above it are skipped; or the line `--header-row` names. If none fits, the first line is the
/// header, and the column check says what is missing.
fn find_header<R: BufRead>(
    reader: &mut R,
    name: &str,
    opts: &InputOptions,
    resolver: &Resolver,
) -> Result<Header, Error> {
    let mut prefix = Vec::new();
    let mut lines_seen: Vec<SeenLine> = Vec::new();
    let mut line_no = 0u64;
    let mut chosen: Option<(u64, u8)> = None;
    let mut line = Vec::new();
    let mut search = header::Search::new(opts);
    let candidates: &[u8] = match opts.delimiter {
        Some(d) => &[d],
        None => b",;\t",
    };
    while search.goes_on() {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| read_error(name, line_no + 1, &e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if prefix.is_empty() && line.starts_with(BOM) {
            line.drain(..BOM.len());
        }
        let at = prefix.len();
        prefix.extend_from_slice(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines_seen.push((line_no, at..prefix.len()));
        search.seen(
            line_no,
            &names_of(&line, detect(opts, &line)).unwrap_or_default(),
        );
        // The delimiter that makes the line name the columns, or (`--header-row`) the one
        // the line looks split by.
        let mut fitting = None;
        let header = search.is_header(line_no, || {
            fitting = candidates
                .iter()
                .copied()
                .find(|&d| names_of(&line, d).is_some_and(|n| resolver.fits(&n, opts)));
            fitting.is_some()
        });
        if header {
            let d = fitting.unwrap_or_else(|| detect(opts, &line));
            chosen = Some((line_no, d));
            break;
        }
    }
    let seen = (lines_seen.as_slice(), prefix.as_slice(), line_no);
    let (at, delimiter) = header_line(chosen, &search, seen, opts, name)?;
    let considered = chosen.is_none().then(|| search.considered()).flatten();
    let skipped = lines_seen.iter().filter(|(n, _)| *n < at).count();
    if skipped > 0 {
        tracing::debug!(
            event = "header_row",
            line = at,
            skipped,
            message = "lines above the header row were skipped"
        );
    }
    Ok(Header {
        prefix,
        at,
        delimiter,
        considered,
    })
}

/// A non-blank line read while looking for the header: its number and its bytes' place.
type SeenLine = (u64, std::ops::Range<usize>);

/// The header's line and delimiter: the line that fit, or (none did) the widest line seen,
/// whose column check then says what it lacks and which lines were considered.
fn header_line(
    chosen: Option<(u64, u8)>,
    search: &header::Search,
    (lines_seen, prefix, line_no): (&[SeenLine], &[u8], u64),
    opts: &InputOptions,
    name: &str,
) -> Result<(u64, u8), Error> {
    match (chosen, search.missing()) {
        (Some(c), _) => Ok(c),
        (None, Some((line, message))) => Err(Error::input(name, line, message)),
        (None, None) => {
            let widest = search.widest().and_then(|i| lines_seen.get(i));
            let default = (line_no.max(1), opts.delimiter.unwrap_or(b','));
            Ok(widest.map_or(default, |(n, range)| {
                (*n, detect(opts, &prefix[range.clone()]))
            }))
        }
    }
}

/// The delimiter given, or the one `line` looks split by.
fn detect(opts: &InputOptions, line: &[u8]) -> u8 {
    opts.delimiter.unwrap_or_else(|| detect_delimiter(line))
}

/// The columns the header row at `header_at` names.
fn column_names(
    headers: &csv::ByteRecord,
    name: &str,
    header_at: u64,
) -> Result<Vec<String>, Error> {
    if headers.iter().all(|h| h.trim_ascii().is_empty()) {
        return Err(Error::input(
            name,
            header_at,
            "no header row; the first line must name the columns, e.g. organizationId,organizationUserGroupId,userId",
        ));
    }
    headers
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim().to_string()))
        .collect::<Result<_, _>>()
        .map_err(|_| not_utf8(name, header_at))
}

/// The column names of one line split at `delimiter`, or `None` if it is not UTF-8 or has one
/// column only (a title).
fn names_of(line: &[u8], delimiter: u8) -> Option<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    if !r.read_record(&mut record).ok()? {
        return None;
    }
    Some(record.iter().map(|f| f.trim().to_string()).collect())
}

/// A first data row whose first cell starts `Example:` (Entra's templates).
pub(crate) fn is_example(first_cell: &[u8]) -> bool {
    let f = first_cell.trim_ascii_start();
    f.len() >= 8 && f[..8].eq_ignore_ascii_case(b"example:")
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
pub(crate) fn detect_delimiter(header: &[u8]) -> u8 {
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

/// Said of text that is not UTF-8; `explain_not_utf8` adds what the file most likely is.
pub(crate) const NOT_UTF8: &str = "not valid UTF-8";

pub(crate) fn not_utf8(name: &str, line: u64) -> Error {
    Error::input(name, line, NOT_UTF8)
}
