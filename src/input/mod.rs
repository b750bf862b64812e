//! Reading membership records from CSV, JSON or JSON Lines, streaming, into a `Planner`.
//!
//! Two kinds of trouble are told apart. A record that is wrong (a blank ID, a row with too many
//! fields, a JSON Lines line that is not JSON) becomes an `invalid` row of the report and the
//! run goes on. A file that cannot be read as its format at all (no header, a JSON syntax
//! error, invalid UTF-8) stops the run with `file:line: what is wrong`.

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::path::Path;

use crate::error::Error;
use crate::plan::{Planner, Sink};
use batch::{Batch, Batcher};

mod batch;
mod columns;
mod csv;
mod decode;
mod header;
mod json;
mod json_record;
pub mod mapping;
mod open;
mod record;
pub mod sheet;
mod xlsx;

pub use mapping::{Filter, GroupMap, Mapping};

pub(crate) use csv::detect_delimiter;
pub(crate) use open::read_error;
use open::read_path_into;
pub(crate) use open::{format_from_extension, is_workbook, sniff, utf16_without_bom};

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
    /// `--name-column`, `--name-columns First,Last`, `--email-column` (`--provision-users`).
    pub name: Option<String>,
    pub name_parts: Option<(String, String)>,
    pub email: Option<String>,
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
    /// `--provision-users`: every record carries its user's name and e-mail.
    pub provision: bool,
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
            provision: false,
        }
    }
}

/// What was read, for the log and the summary.
/// `--format`: a format, or told from the file name and first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Auto,
    Csv,
    Json,
    Jsonl,
    /// An Excel (`.xlsx`, `.xlsm`, `.xls`) or OpenDocument (`.ods`) workbook.
    Xlsx,
}

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
    /// `--provision-users`: each user's name and e-mail, from the first record naming it.
    pub profiles: HashMap<Box<str>, crate::provision::model::Profile>,
    /// Users named by records with a group value the map does not list and `--unmapped skip`
    /// left out: (the record's organization, if it names one; the user). What those records
    /// meant is unknown, so these users are never removed.
    pub partly_unmapped: Vec<(Option<Box<str>>, Box<str>)>,
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
            profiles: HashMap::new(),
            partly_unmapped: Vec::new(),
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

/// Reads one input stream into the planner; `name` is used in messages.
pub fn read<R: BufRead>(
    reader: R,
    name: &str,
    path: Option<&Path>,
    opts: &InputOptions,
    planner: &mut impl Sink,
) -> Result<InputStats, Error> {
    read_bounded(reader, name, path, opts, planner, None)
}

/// `read`, with the line limit of the stream below, which a JSON array lifts: it is bounded
/// per element instead.
fn read_bounded<R: BufRead>(
    mut reader: R,
    name: &str,
    path: Option<&Path>,
    opts: &InputOptions,
    planner: &mut impl Sink,
    line_limit: Option<&std::sync::atomic::AtomicU64>,
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
    if format == Format::Json
        && let Some(limit) = line_limit
    {
        limit.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    }
    let mut stats = InputStats::new(format);
    match format {
        Format::Csv => csv::read_csv(reader, name, opts, planner, &mut stats)?,
        Format::Json => json::read_json(reader, name, opts, planner, &mut stats)?,
        Format::Jsonl => json::read_jsonl(reader, name, opts, planner, &mut stats)?,
        Format::Xlsx => xlsx::read_workbook(reader, name, opts, planner, &mut stats)?,
    }
    Ok(stats)
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
                format!("{}/{}/{}@{}", g.org, g.id, plan.user(m), m.line())
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
