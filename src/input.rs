//! Reading membership records from CSV, JSON or JSON Lines, streaming, into a `Planner`.
//!
//! Two kinds of trouble are told apart. A record that is wrong (a blank ID, a row with too many
//! fields, a JSON Lines line that is not JSON) becomes an `invalid` row of the report and the
//! run goes on. A file that cannot be read as its format at all (no header, a JSON syntax
//! error, invalid UTF-8) stops the run with `file:line: what is wrong`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use serde_json::Value;

use crate::cli::FormatArg;
use crate::error::Error;
use crate::plan::{Planner, Sink};

const BOM: &[u8] = b"\xEF\xBB\xBF";

const ORG_ALIASES: &[&str] = &["organizationId", "organization_id", "orgId"];
const GROUP_ALIASES: &[&str] = &[
    "organizationUserGroupId",
    "organization_user_group_id",
    "groupId",
    "group_id",
    "group",
];
const USER_ALIASES: &[&str] = &["userId", "user_id", "user"];
const USERS_ALIASES: &[&str] = &["userIds", "user_ids"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Jsonl,
}

/// Column (or JSON key) names chosen on the command line.
#[derive(Debug, Default, Clone)]
pub struct Columns {
    pub org: Option<String>,
    pub group: Option<String>,
    pub user: Option<String>,
    /// `--group-name-column`: the group's display name, for `--create-missing-groups`.
    pub group_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InputOptions {
    pub format: FormatArg,
    pub delimiter: Option<u8>,
    pub columns: Columns,
    /// Whether `--org` / `--group` give a default, so that a missing column is not an error.
    pub has_default_org: bool,
    pub has_default_group: bool,
    /// Take only rows whose `status` is one of these (the input is a previous report).
    pub only_status: Option<Vec<String>>,
    /// Longest line, and longest JSON array element, read.
    pub max_record_bytes: u64,
}

impl Default for InputOptions {
    fn default() -> InputOptions {
        InputOptions {
            format: FormatArg::Auto,
            delimiter: None,
            columns: Columns::default(),
            has_default_org: false,
            has_default_group: false,
            only_status: None,
            max_record_bytes: 1 << 20,
        }
    }
}

/// A line longer than `--max-record-bytes`, carried inside an `io::Error` so that every
/// reader's message names its line.
#[derive(Debug)]
struct TooLong {
    line: u64,
    max: u64,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} is longer than {} bytes: is this the right file? (--max-record-bytes raises the limit)",
            self.line, self.max
        )
    }
}

impl std::error::Error for TooLong {}

/// A read error as an input error: at the over-long line when that is what it is.
fn read_error(name: &str, line: u64, e: &io::Error) -> Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<TooLong>()) {
        Some(t) => Error::input(name, t.line, t.to_string()),
        None => Error::input(name, line, format!("cannot read: {e}")),
    }
}

/// Fails the read once a line runs past `max` bytes, so that no reader above it (the CSV
/// reader's record buffer, a JSON Lines line) can grow without bound on a wrong file such as
/// `/dev/zero`.
struct Bounded<R> {
    inner: R,
    max: u64,
    /// Bytes since the last LF.
    run: u64,
    /// LFs passed.
    lines: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut start = 0;
        for lf in memchr::memchr_iter(b'\n', &buf[..n]) {
            if self.run + (lf - start) as u64 > self.max {
                break;
            }
            self.run = 0;
            self.lines += 1;
            start = lf + 1;
        }
        self.run += (n - start) as u64;
        if self.run > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLong {
                    line: self.lines + 1,
                    max: self.max,
                },
            ));
        }
        Ok(n)
    }
}

/// A report row's `action`: rows that removed a member are left out when a report is input.
fn is_removal(action: &str) -> bool {
    action.trim() == "remove"
}

impl InputOptions {
    fn status_wanted(&self, status: &str) -> bool {
        self.only_status
            .as_ref()
            .is_none_or(|want| want.iter().any(|w| w == status.trim()))
    }
}

/// What was read, for the log.
#[derive(Debug, Clone, Copy)]
pub struct InputStats {
    pub format: Format,
    pub records: u64,
    /// Records left out by `--only-status` (and removal rows of a previous report).
    pub skipped: u64,
}

/// Reads `path` (`-` is standard input) into the planner. Parsing runs on its own thread and
/// hands records over in batches, so that parsing and planning use both cores.
pub fn read_path(
    path: &Path,
    opts: &InputOptions,
    planner: &mut Planner,
) -> Result<InputStats, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut sink = Batcher {
                batch: Batch::default(),
                tx,
            };
            let stats = read_path_into(path, opts, &mut sink)?;
            sink.flush();
            Ok(stats)
        });
        for batch in rx {
            batch.replay(planner);
        }
        reader.join().unwrap_or_else(|_| {
            Err(Error::input(
                &path.display().to_string(),
                0,
                "the input reader stopped unexpectedly",
            ))
        })
    })
}

/// Records parsed but not yet planned: their text end to end, and what to do with each.
#[derive(Default)]
struct Batch {
    text: String,
    ops: Vec<Op>,
}

/// A span of `Batch::text`; `None` for an absent field.
type Span = Option<(u32, u32)>;

enum Op {
    Record {
        line: u64,
        org: Span,
        group: Span,
        user: Span,
    },
    Reject {
        line: u64,
        org: Span,
        group: Span,
        user: Span,
        reason: String,
    },
    Name {
        org: Span,
        group: Span,
        name: Span,
    },
}

impl Batch {
    const RECORDS: usize = 8192;

    fn push(&mut self, value: Option<&str>) -> Span {
        let v = value?;
        let at = self.text.len() as u32;
        self.text.push_str(v);
        Some((at, v.len() as u32))
    }

    fn get(&self, span: Span) -> Option<&str> {
        span.map(|(at, len)| &self.text[at as usize..(at + len) as usize])
    }

    /// Records ahead of the one being planned whose table slot is prefetched.
    const AHEAD: usize = 12;

    fn replay(&self, planner: &mut Planner) {
        // What `prefetch` resolved for record i sits at i % AHEAD until record i is planned.
        let prefetch = |planner: &mut Planner, i: usize| match self.ops.get(i) {
            Some(Op::Record {
                org, group, user, ..
            }) => planner.prefetch(
                self.get(*org),
                self.get(*group),
                self.get(*user).unwrap_or(""),
            ),
            _ => None,
        };
        let mut resolved = [None; Self::AHEAD];
        for (i, slot) in resolved.iter_mut().enumerate() {
            *slot = prefetch(planner, i);
        }
        for (i, op) in self.ops.iter().enumerate() {
            let ahead = prefetch(planner, i + Self::AHEAD);
            let mine = std::mem::replace(&mut resolved[i % Self::AHEAD], ahead);
            match op {
                Op::Record {
                    line,
                    org,
                    group,
                    user,
                } => planner.record_resolved(
                    *line,
                    self.get(*org),
                    self.get(*group),
                    self.get(*user).unwrap_or(""),
                    mine,
                ),
                Op::Name { org, group, name } => planner.group_name(
                    self.get(*org),
                    self.get(*group),
                    self.get(*name).unwrap_or(""),
                ),
                Op::Reject {
                    line,
                    org,
                    group,
                    user,
                    reason,
                } => planner.reject_record(
                    *line,
                    self.get(*org),
                    self.get(*group),
                    self.get(*user).unwrap_or(""),
                    reason.clone(),
                ),
            }
        }
    }
}

/// A `Sink` that fills batches and sends them to the planning thread.
struct Batcher {
    batch: Batch,
    tx: std::sync::mpsc::SyncSender<Batch>,
}

impl Batcher {
    fn flush(&mut self) {
        if !self.batch.ops.is_empty() {
            // The receiver only goes away when the planner is done, so a failed send loses nothing.
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }

    fn push(&mut self, op: Op) {
        self.batch.ops.push(op);
        if self.batch.ops.len() >= Batch::RECORDS {
            self.flush();
        }
    }
}

impl Sink for Batcher {
    fn group_name(&mut self, org: Option<&str>, group: Option<&str>, name: &str) {
        let b = &mut self.batch;
        let op = Op::Name {
            org: b.push(org),
            group: b.push(group),
            name: b.push(Some(name)),
        };
        self.push(op);
    }

    fn record(&mut self, line: u64, org: Option<&str>, group: Option<&str>, user: &str) {
        let b = &mut self.batch;
        let op = Op::Record {
            line,
            org: b.push(org),
            group: b.push(group),
            user: b.push(Some(user)),
        };
        self.push(op);
    }

    fn reject_record(
        &mut self,
        line: u64,
        org: Option<&str>,
        group: Option<&str>,
        user: &str,
        reason: String,
    ) {
        let b = &mut self.batch;
        let op = Op::Reject {
            line,
            org: b.push(org),
            group: b.push(group),
            user: b.push(Some(user)),
            reason,
        };
        self.push(op);
    }
}

fn read_path_into(
    path: &Path,
    opts: &InputOptions,
    sink: &mut impl Sink,
) -> Result<InputStats, Error> {
    let bounded = |inner| Bounded {
        inner,
        max: opts.max_record_bytes,
        run: 0,
        lines: 0,
    };
    if path.as_os_str() == "-" {
        let stdin: Box<dyn Read> = Box::new(io::stdin().lock());
        let reader = BufReader::with_capacity(256 * 1024, bounded(stdin));
        return read(reader, "<stdin>", None, opts, sink);
    }
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: Box<dyn Read> = Box::new(file);
    let reader = BufReader::with_capacity(256 * 1024, bounded(file));
    let name = path.display().to_string();
    read(reader, &name, Some(path), opts, sink)
}

/// Reads one input stream into the planner; `name` is used in messages.
pub fn read<R: BufRead>(
    mut reader: R,
    name: &str,
    path: Option<&Path>,
    opts: &InputOptions,
    planner: &mut impl Sink,
) -> Result<InputStats, Error> {
    let io_err = |e: io::Error| read_error(name, 1, &e);
    let format = match opts.format {
        FormatArg::Csv => Format::Csv,
        FormatArg::Json => Format::Json,
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Auto => match path.and_then(format_from_extension) {
            Some(f) => f,
            None => sniff(reader.fill_buf().map_err(io_err)?),
        },
    };
    let mut stats = InputStats {
        format,
        records: 0,
        skipped: 0,
    };
    match format {
        Format::Csv => read_csv(reader, name, opts, planner, &mut stats)?,
        Format::Json => read_json(reader, name, opts, planner, &mut stats)?,
        Format::Jsonl => read_jsonl(reader, name, opts, planner, &mut stats)?,
    }
    Ok(stats)
}

fn format_from_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        _ => None,
    }
}

/// The first non-blank byte decides: `[` is JSON, `{` is JSON Lines, anything else CSV.
fn sniff(head: &[u8]) -> Format {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        Some(b'{') => Format::Jsonl,
        _ => Format::Csv,
    }
}

// ---------------------------------------------------------------------------------------- CSV

fn read_csv<R: BufRead>(
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
    let listed = listing(&names);
    // A column is found by the name given on the command line, or else by its aliases. It may
    // be missing only when a default (`--org`, `--group`) stands in for it.
    let column = |what: &str,
                  chosen: &Option<String>,
                  aliases: &[&str],
                  flag: &str,
                  default: Option<(&str, bool)>|
     -> Result<Option<usize>, Error> {
        if let Some(c) = find_column(&names, chosen.as_deref(), aliases) {
            return Ok(Some(c));
        }
        let message = match (chosen, default) {
            (Some(c), _) => format!("no column named `{c}` (columns: {listed}); check {flag}"),
            (None, Some((_, true))) => return Ok(None),
            (None, Some((default_flag, false))) => format!(
                "no {what} column (looked for {}; columns: {listed}); name it with {flag} or give one for every row with {default_flag}",
                aliases.join(", ")
            ),
            (None, None) => format!(
                "no {what} column (looked for {}; columns: {listed}); name it with {flag}",
                aliases.join(", ")
            ),
        };
        Err(Error::input(name, header_at, message))
    };
    let cols = &opts.columns;
    let org_col = column(
        "organization",
        &cols.org,
        ORG_ALIASES,
        "--org-column",
        Some(("--org", opts.has_default_org)),
    )?;
    let group_col = column(
        "group",
        &cols.group,
        GROUP_ALIASES,
        "--group-column",
        Some(("--group", opts.has_default_group)),
    )?;
    let Some(user_col) = column("user", &cols.user, USER_ALIASES, "--user-column", None)? else {
        return Err(Error::input(name, header_at, "no user column"));
    };
    let name_col = match &cols.group_name {
        None => None,
        Some(_) => column(
            "group name",
            &cols.group_name,
            &[],
            "--group-name-column",
            None,
        )?,
    };
    let status_col = match &opts.only_status {
        None => None,
        Some(_) => match names.iter().position(|n| n.eq_ignore_ascii_case("status")) {
            Some(c) => Some(c),
            None => {
                return Err(Error::input(
                    name,
                    header_at,
                    format!(
                        "--only-status needs a `status` column (a previous report as input); columns: {listed}"
                    ),
                ));
            }
        },
    };

    let action_col = status_col.and(names.iter().position(|n| n.eq_ignore_ascii_case("action")));
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
        // A removal row of a mirror report is not a membership to add back.
        if let Some(c) = status_col
            && (!opts.status_wanted(field(c).unwrap_or(""))
                || action_col.and_then(field).is_some_and(is_removal))
        {
            stats.skipped += 1;
            continue;
        }
        stats.records += 1;
        let org = org_col.and_then(field);
        let group = group_col.and_then(field);
        let user = field(user_col).unwrap_or("");
        if record.len() != width {
            let hint = if record.len() > width {
                " (an unquoted delimiter inside a value?)"
            } else {
                ""
            };
            planner.reject_record(
                line,
                org,
                group,
                user,
                format!(
                    "row has {} fields but the header has {width}{hint}",
                    record.len()
                ),
            );
            continue;
        }
        planner.record(line, org, group, user);
        if let Some(name) = name_col.and_then(field)
            && !name.trim().is_empty()
        {
            planner.group_name(org, group, name);
        }
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

/// The columns, for a message: each clipped, at most 30 of them.
fn listing(names: &[String]) -> String {
    const SHOWN: usize = 30;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| crate::text::clip(n))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn find_column(names: &[String], chosen: Option<&str>, aliases: &[&str]) -> Option<usize> {
    match chosen {
        Some(c) => names.iter().position(|n| n.eq_ignore_ascii_case(c.trim())),
        None => aliases
            .iter()
            .find_map(|a| names.iter().position(|n| n.eq_ignore_ascii_case(a))),
    }
}

/// The candidate that occurs most often outside quotes in the header line; `,` on a tie.
fn detect_delimiter(header: &[u8]) -> u8 {
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

fn not_utf8(name: &str, line: u64) -> Error {
    Error::input(
        name,
        line,
        "not valid UTF-8; convert the file first (e.g. iconv -f latin1 -t utf-8)",
    )
}

// ---------------------------------------------------------------------------------- JSON Lines

fn read_jsonl<R: BufRead>(
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
fn read_json<R: BufRead>(
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

/// Turns one JSON value into memberships (or an invalid row).
fn json_record(
    line: u64,
    value: Value,
    opts: &InputOptions,
    planner: &mut impl Sink,
    stats: &mut InputStats,
) {
    let columns = &opts.columns;
    if opts.only_status.is_some()
        && let Value::Object(map) = &value
    {
        let status = map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("status"))
            .and_then(|(_, v)| v.as_str());
        let removal = map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("action"))
            .and_then(|(_, v)| v.as_str())
            .is_some_and(is_removal);
        match status {
            Some(s) if !opts.status_wanted(s) || removal => {
                stats.skipped += 1;
                return;
            }
            Some(_) => {}
            None => {
                stats.records += 1;
                planner.reject_record(
                    line,
                    None,
                    None,
                    "",
                    "no `status` (--only-status needs a previous report as input)".into(),
                );
                return;
            }
        }
    }
    stats.records += 1;
    let Value::Object(map) = value else {
        let kind = json_kind(&value);
        planner.reject_record(
            line,
            None,
            None,
            "",
            format!("expected a JSON object, found {kind}"),
        );
        return;
    };
    let key_matches = |key: &str, chosen: Option<&str>, aliases: &[&str]| match chosen {
        Some(c) => key.eq_ignore_ascii_case(c.trim()),
        None => aliases.iter().any(|a| key.eq_ignore_ascii_case(a)),
    };
    let mut org = None;
    let mut group = None;
    let mut users: Vec<&Value> = Vec::new();
    let mut users_key_seen = false;
    let mut problem = None;
    let mut group_name = None;
    for (key, value) in &map {
        if let Some(c) = &columns.group_name
            && key.eq_ignore_ascii_case(c.trim())
        {
            group_name = value.as_str();
        } else if key_matches(key, columns.org.as_deref(), ORG_ALIASES) {
            org = Some((key, value));
        } else if key_matches(key, columns.group.as_deref(), GROUP_ALIASES) {
            group = Some((key, value));
        } else if key_matches(key, columns.user.as_deref(), USER_ALIASES)
            || (columns.user.is_none() && key_matches(key, None, USERS_ALIASES))
        {
            users_key_seen = true;
            match value {
                Value::Array(items) => users.extend(items.iter()),
                Value::Null => {}
                other => users.push(other),
            }
            if matches!(value, Value::Array(items) if items.is_empty()) {
                problem = Some(format!("{key} is an empty list"));
            }
        }
    }
    let id = |field: Option<(&String, &Value)>| -> Result<Option<String>, String> {
        match field {
            None | Some((_, Value::Null)) => Ok(None),
            Some((key, v)) => json_id(v)
                .map(Some)
                .ok_or_else(|| format!("{key} must be a string, found {}", json_kind(v))),
        }
    };
    let (org, group) = match (id(org), id(group)) {
        (Ok(o), Ok(g)) => (o, g),
        (Err(e), _) | (_, Err(e)) => {
            planner.reject_record(line, None, None, "", e);
            return;
        }
    };
    if let Some(reason) = problem {
        planner.reject_record(line, org.as_deref(), group.as_deref(), "", reason);
        return;
    }
    if !users_key_seen {
        planner.reject_record(
            line,
            org.as_deref(),
            group.as_deref(),
            "",
            "no userId or userIds".into(),
        );
        return;
    }
    for user in users {
        match json_id(user) {
            Some(u) => planner.record(line, org.as_deref(), group.as_deref(), &u),
            None => planner.reject_record(
                line,
                org.as_deref(),
                group.as_deref(),
                "",
                format!("a user ID must be a string, found {}", json_kind(user)),
            ),
        }
    }
    if let Some(name) = group_name {
        planner.group_name(org.as_deref(), group.as_deref(), name);
    }
}

/// A string, or an integer written as its decimal digits (HR systems often number people).
fn json_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Defaults, Plan};

    fn opts(format: FormatArg) -> InputOptions {
        InputOptions {
            format,
            ..InputOptions::default()
        }
    }

    #[test]
    fn an_endless_line_stops_the_read_at_the_limit_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeros");
        let mut text = b"organizationId,organizationUserGroupId,userId\nacme,eng,a\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 5000));
        std::fs::write(&path, &text).unwrap();
        for format in [FormatArg::Csv, FormatArg::Jsonl, FormatArg::Auto] {
            let opts = InputOptions {
                format,
                max_record_bytes: 4096,
                ..InputOptions::default()
            };
            let mut planner = Planner::new(Defaults::default());
            let err = read_path(&path, &opts, &mut planner)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(":3: line 3 is longer than 4096 bytes")
                    && err.contains("--max-record-bytes"),
                "{format:?}: {err}"
            );
        }
        // A JSON element spread over many short lines is bounded too.
        let mut json = b"[{\"userId\": [\n".to_vec();
        for _ in 0..1000 {
            json.extend_from_slice(b"\"xxxxxxxxxx\",\n");
        }
        std::fs::write(&path, &json).unwrap();
        let opts = InputOptions {
            format: FormatArg::Json,
            max_record_bytes: 4096,
            ..InputOptions::default()
        };
        let mut planner = Planner::new(Defaults::default());
        let err = read_path(&path, &opts, &mut planner)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":1: the record starting here is longer than 4096 bytes"),
            "{err}"
        );
    }

    fn parse(text: &str, opts: &InputOptions) -> Result<Plan, Error> {
        let mut planner = Planner::new(Defaults::default());
        read(text.as_bytes(), "in", None, opts, &mut planner)?;
        Ok(planner.finish())
    }

    fn rows(plan: &Plan) -> Vec<String> {
        plan.memberships
            .iter()
            .map(|m| {
                let g = plan.group_of(m);
                format!("{}/{}/{}@{}", g.org, g.id, plan.user(m), m.line)
            })
            .collect()
    }

    fn invalid(plan: &Plan) -> Vec<String> {
        plan.invalid
            .iter()
            .map(|i| format!("{}: {}", i.line, i.reason))
            .collect()
    }

    #[test]
    fn csv_with_bom_crlf_quotes_and_blank_lines() {
        let text = "\u{feff}organizationId,groupId,userId,name\r\n\
                    org,eng,u1,\"Doe, Jane\"\r\n\
                    \r\n\
                    org,eng,u2,\"Multi\r\nline\"\r\n\
                    , ,\r\n\
                    org,ops, u3 ,x\r\n";
        let plan = parse(text, &opts(FormatArg::Auto)).unwrap();
        assert_eq!(
            rows(&plan),
            ["org/eng/u1@2", "org/eng/u2@4", "org/ops/u3@7"]
        );
        assert!(plan.invalid.is_empty(), "{:?}", invalid(&plan));
    }

    #[test]
    fn csv_delimiter_is_detected_from_the_header() {
        let plan = parse(
            "user;group;organization_id\nu1;g;o\n",
            &opts(FormatArg::Csv),
        )
        .unwrap();
        assert_eq!(rows(&plan), ["o/g/u1@2"]);
        let plan = parse("userId\tgroup\torgId\nu1\tg\to\n", &opts(FormatArg::Csv)).unwrap();
        assert_eq!(rows(&plan), ["o/g/u1@2"]);
    }

    #[test]
    fn csv_rows_with_the_wrong_width_are_invalid_not_shifted() {
        let plan = parse(
            "orgId,groupId,userId,name\no,g,u1,Doe, Jane\no,g\no,g,u2,ok\n",
            &opts(FormatArg::Csv),
        )
        .unwrap();
        assert_eq!(rows(&plan), ["o/g/u2@4"]);
        assert_eq!(
            invalid(&plan),
            [
                "2: row has 5 fields but the header has 4 (an unquoted delimiter inside a value?)",
                "3: row has 2 fields but the header has 4"
            ]
        );
    }

    #[test]
    fn csv_without_a_user_column_is_a_file_error() {
        let err = parse("orgId,groupId,email\no,g,a@b\n", &opts(FormatArg::Csv)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("in:1: no user column"), "{msg}");
        assert!(msg.contains("--user-column"), "{msg}");
    }

    #[test]
    fn empty_csv_has_no_header() {
        let err = parse("\n\n", &opts(FormatArg::Csv)).unwrap_err();
        assert!(err.to_string().contains("no header row"), "{err}");
    }

    #[test]
    fn csv_invalid_utf8_names_the_line() {
        let mut planner = Planner::new(Defaults::default());
        let text = b"orgId,groupId,userId\no,g,u1\no,g,caf\xe9\n";
        let err = read(&text[..], "in", None, &opts(FormatArg::Csv), &mut planner).unwrap_err();
        assert!(
            err.to_string().starts_with("in:3: not valid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn json_array_streams_elements_with_start_lines() {
        let text = "[\n  {\"organizationId\": \"o\", \"organizationUserGroupId\": \"g\",\n   \"userIds\": [\"a\", \"b\"]},\n  {\"organizationId\": \"o\", \"organizationUserGroupId\": \"g\", \"userId\": \"c]\"},\n  7\n]\n";
        let plan = parse(text, &opts(FormatArg::Auto)).unwrap();
        assert_eq!(rows(&plan), ["o/g/a@2", "o/g/b@2", "o/g/c]@4"]);
        assert_eq!(
            invalid(&plan),
            ["5: expected a JSON object, found a number"]
        );
    }

    #[test]
    fn json_syntax_errors_name_the_line() {
        let err = parse(
            "[\n{\"userId\": \"a\"},\n{\"userId\": \"b\",\n \"x\": }\n]",
            &opts(FormatArg::Json),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("in:4: invalid JSON"), "{err}");
        let err = parse("[{\"userId\": \"a\"},\n", &opts(FormatArg::Json)).unwrap_err();
        assert!(err.to_string().contains("not closed"), "{err}");
        let err = parse("[{\"userId\": \"a\"},]", &opts(FormatArg::Json)).unwrap_err();
        assert!(err.to_string().contains("trailing comma"), "{err}");
        let err = parse("{\"userId\": \"a\"}", &opts(FormatArg::Json)).unwrap_err();
        assert!(err.to_string().contains("--format jsonl"), "{err}");
    }

    #[test]
    fn jsonl_broken_line_is_an_invalid_record() {
        let text = "{\"organizationId\":\"o\",\"groupId\":\"g\",\"userId\":\"a\"}\n\n{oops\n{\"organizationId\":\"o\",\"groupId\":\"g\",\"userId\":12}\n{\"organizationId\":\"o\",\"groupId\":\"g\",\"userId\":true}\n";
        let plan = parse(text, &opts(FormatArg::Auto)).unwrap();
        assert_eq!(rows(&plan), ["o/g/a@1", "o/g/12@4"]);
        let inv = invalid(&plan);
        assert_eq!(inv.len(), 2);
        assert!(inv[0].starts_with("3: not valid JSON"), "{inv:?}");
        assert_eq!(inv[1], "5: a user ID must be a string, found a boolean");
    }

    #[test]
    fn only_status_takes_the_chosen_rows_of_a_report() {
        let mut o = opts(FormatArg::Csv);
        o.only_status = Some(vec!["failed".into(), "not_attempted".into()]);
        let report = "organizationId,organizationUserGroupId,userId,status,message\n\
                      o,g,a,added,\no,g,b,failed,x\no,g,c,not_attempted,\no,g,d,unconfirmed,\n";
        let plan = parse(report, &o).unwrap();
        assert_eq!(rows(&plan), ["o/g/b@3", "o/g/c@4"]);
        let err = parse("orgId,groupId,userId\no,g,a\n", &o).unwrap_err();
        assert!(err.to_string().contains("needs a `status` column"), "{err}");
        o.format = FormatArg::Jsonl;
        let plan = parse(
            "{\"organizationId\":\"o\",\"groupId\":\"g\",\"userId\":\"a\",\"status\":\"failed\"}\n\
             {\"organizationId\":\"o\",\"groupId\":\"g\",\"userId\":\"b\",\"status\":\"added\"}\n",
            &o,
        )
        .unwrap();
        assert_eq!(rows(&plan), ["o/g/a@1"]);
    }

    #[test]
    fn sniffing_picks_the_format() {
        assert_eq!(sniff(b"\xEF\xBB\xBF  \n[{}]"), Format::Json);
        assert_eq!(sniff(b"{\"a\":1}\n"), Format::Jsonl);
        assert_eq!(sniff(b"userId\n"), Format::Csv);
        assert_eq!(sniff(b""), Format::Csv);
    }
}
