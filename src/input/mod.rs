//! Reading membership records from CSV, JSON or JSON Lines, streaming, into a `Planner`.
//!
//! Two kinds of trouble are told apart. A record that is wrong (a blank ID, a row with too many
//! fields, a JSON Lines line that is not JSON) becomes an `invalid` row of the report and the
//! run goes on. A file that cannot be read as its format at all (no header, a JSON syntax
//! error, invalid UTF-8) stops the run with `file:line: what is wrong`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::cli::FormatArg;
use crate::error::Error;
use crate::plan::{Planner, Sink};
use batch::{Batch, Batcher};

mod batch;
mod columns;
mod csv;
mod json;
mod mapping;
mod record;
mod xlsx;

pub use mapping::{Filter, GroupMap, Mapping};

pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Jsonl,
    Xlsx,
}

/// Column (or JSON key) names chosen on the command line.
#[derive(Debug, Default, Clone)]
pub struct Columns {
    pub org: Option<String>,
    /// `--group-column`, each time it is given.
    pub group: Vec<String>,
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
    /// Which records count and what their group values mean.
    pub mapping: Mapping,
    /// `--encoding`: the text's encoding when it is not UTF-8 (a BOM is recognised without).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// `--header-row`: the line (a workbook's row) that names the columns.
    pub header_row: Option<u64>,
    /// `--sheet`: the workbook's sheet to read (default: the first).
    pub sheet: Option<String>,
    /// `--records-path`: the array of records inside a top-level JSON object (dotted).
    pub records_path: Option<String>,
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
            mapping: Mapping::default(),
            encoding: None,
            header_row: None,
            sheet: None,
            records_path: None,
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
pub(crate) fn read_error(name: &str, line: u64, e: &io::Error) -> Error {
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

/// What was read, for the log and the summary.
#[derive(Debug, Clone)]
pub struct InputStats {
    pub format: Format,
    /// Records read, filtered ones included.
    pub records: u64,
    /// Records left out by `--only-status` (and removal rows of a previous report).
    pub skipped: u64,
    /// Records left out by `--include` / `--exclude`.
    pub filtered: u64,
    /// Memberships left out because `--group-map` does not list their group (`--unmapped skip`).
    pub unmapped_skipped: u64,
    /// (group column, value) pairs the group map does not list, and how often each came.
    pub unmapped: HashMap<(String, String), u64>,
}

impl InputStats {
    fn new(format: Format) -> InputStats {
        InputStats {
            format,
            records: 0,
            skipped: 0,
            filtered: 0,
            unmapped_skipped: 0,
            unmapped: HashMap::new(),
        }
    }
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

fn read_path_into(
    path: &Path,
    opts: &InputOptions,
    sink: &mut impl Sink,
) -> Result<InputStats, Error> {
    let stdin = path.as_os_str() == "-";
    let (raw, name): (Box<dyn Read>, String) = if stdin {
        (Box::new(io::stdin().lock()), "<stdin>".to_string())
    } else {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        (Box::new(file), path.display().to_string())
    };
    // The first bytes tell a workbook or UTF-16 apart; they are read once and chained back
    // in front of the rest (no second buffer for the whole stream).
    let mut raw = raw;
    let mut head = vec![0u8; HEAD];
    let mut got = 0;
    while got < HEAD {
        match raw.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(&name, 1, &e)),
        }
    }
    head.truncate(got);
    let raw: Box<dyn Read> = Box::new(io::Cursor::new(head.clone()).chain(raw));
    let path = (!stdin).then_some(path);
    let workbook = match opts.format {
        FormatArg::Xlsx => true,
        FormatArg::Auto => match path.and_then(format_from_extension) {
            Some(f) => f == Format::Xlsx,
            None => is_workbook(&head),
        },
        _ => false,
    };
    if workbook {
        let mut stats = InputStats::new(Format::Xlsx);
        xlsx::read_workbook(raw, &name, opts, sink, &mut stats)?;
        return Ok(stats);
    }
    let utf16_bom = head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF");
    if opts.encoding.is_none() && !utf16_bom && looks_utf16(&head) {
        return Err(Error::input(
            &name,
            1,
            "this looks like UTF-16 text without a byte order mark; give --encoding utf-16le (or utf-16be)",
        ));
    }
    let bounded = |inner| Bounded {
        inner,
        max: opts.max_record_bytes,
        run: 0,
        lines: 0,
    };
    let text: Box<dyn Read> = if opts.encoding.is_some() || utf16_bom {
        // Decoded to UTF-8 as it streams; a BOM overrides --encoding, as browsers do.
        Box::new(bounded(Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(opts.encoding)
                .bom_override(true)
                .strip_bom(true)
                .build(raw),
        ) as Box<dyn Read>))
    } else {
        Box::new(bounded(Box::new(raw) as Box<dyn Read>))
    };
    let reader = BufReader::with_capacity(256 * 1024, text);
    read(reader, &name, path, opts, sink).map_err(|e| explain_not_utf8(e, &head))
}

/// How many bytes are looked at to tell what a stream is.
const HEAD: usize = 8192;

/// A zip (xlsx, xlsm, ods) or OLE (xls) file's first bytes.
fn is_workbook(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1")
}

/// Text whose every other byte is NUL, most of the time: UTF-16 of mostly ASCII.
fn looks_utf16(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(4096)];
    if sample.len() < 4 {
        return false;
    }
    let zeros = |parity: usize| {
        sample
            .iter()
            .skip(parity)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let half = sample.len() / 2;
    let (even, odd) = (zeros(0), zeros(1));
    // One half of the bytes mostly NUL, the other hardly ever (all NUL is no text at all).
    even.max(odd) * 10 >= half * 7 && even.min(odd) * 10 <= half
}

/// The not-UTF-8 message, with what the file most likely is and the flag to use.
fn explain_not_utf8(e: Error, head: &[u8]) -> Error {
    match e {
        Error::Input {
            file,
            line,
            message,
        } if message == csv::NOT_UTF8 => {
            let hint = if is_workbook(head) {
                "this is a workbook (Excel or OpenDocument): read it with --format xlsx"
            } else {
                "most likely a legacy single-byte encoding (Excel's CSV on Windows is \
                 windows-1252): give --encoding windows-1252 (or the file's, e.g. latin1, \
                 shift_jis)"
            };
            Error::Input {
                file,
                line,
                message: format!("{message}; {hint}"),
            }
        }
        other => other,
    }
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
        FormatArg::Xlsx => Format::Xlsx,
        FormatArg::Auto => match path.and_then(format_from_extension) {
            Some(f) => f,
            None => sniff(reader.fill_buf().map_err(io_err)?),
        },
    };
    let mut stats = InputStats::new(format);
    match format {
        Format::Csv => csv::read_csv(reader, name, opts, planner, &mut stats)?,
        Format::Json => json::read_json(reader, name, opts, planner, &mut stats)?,
        Format::Jsonl => json::read_jsonl(reader, name, opts, planner, &mut stats)?,
        Format::Xlsx => xlsx::read_workbook(reader, name, opts, planner, &mut stats)?,
    }
    Ok(stats)
}

fn format_from_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Some(Format::Xlsx),
        _ => None,
    }
}

/// The first non-blank byte decides: `[` is JSON; `{` is JSON Lines when the object ends on
/// its first line, else a JSON object wrapping the records; anything else CSV.
fn sniff(head: &[u8]) -> Format {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    let Some(at) = head.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Format::Csv;
    };
    match head[at] {
        b'[' => Format::Json,
        b'{' => {
            let rest = &head[at..];
            let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
            if line.trim_ascii_end().ends_with(b"}") {
                Format::Jsonl
            } else {
                Format::Json
            }
        }
        _ => Format::Csv,
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
        let read_err = |format| {
            let opts = InputOptions {
                format,
                max_record_bytes: 4096,
                ..InputOptions::default()
            };
            let mut planner = Planner::new(Defaults::default());
            read_path(&path, &opts, &mut planner)
                .unwrap_err()
                .to_string()
        };
        for format in [FormatArg::Csv, FormatArg::Jsonl, FormatArg::Auto] {
            let err = read_err(format);
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
        let err = read_err(FormatArg::Json);
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
                format!(
                    "{}/{}/{}@{}",
                    g.org,
                    g.id,
                    plan.user(m),
                    match m.origin() {
                        crate::plan::Origin::Line(l) => l,
                        crate::plan::Origin::Server => 0,
                    }
                )
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
