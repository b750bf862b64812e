//! Workbooks (`.xlsx`, `.xlsm`, `.xls`, `.ods`) through calamine: one sheet read as a table,
//! every cell as text (an integer-valued number as its digits, a date as ISO 8601), with the
//! header found as in CSV and the sheet's row numbers as line numbers.

use std::io::{Cursor, Read};

use calamine::{Data, Reader};

use super::columns::Resolver;
use super::csv::{HEADER_SEARCH, is_example};
use super::record::{Layout, Mapper};
use super::{InputOptions, InputStats};
use crate::error::Error;
use crate::plan::Sink;
use crate::text::clip;

/// The largest workbook read: calamine needs the whole file in memory.
const MAX_WORKBOOK: u64 = 1 << 30;

pub(crate) fn read_workbook<R: Read>(
    reader: R,
    name: &str,
    opts: &InputOptions,
    sink: &mut impl Sink,
    stats: &mut InputStats,
) -> Result<(), Error> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_WORKBOOK + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::input(name, 0, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_WORKBOOK {
        return Err(Error::input(
            name,
            0,
            "the workbook is larger than 1 GiB; export the sheet as CSV",
        ));
    }
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| {
        Error::input(
            name,
            0,
            format!("cannot read the workbook: {e}; is it an Excel or OpenDocument file?"),
        )
    })?;
    let sheets = book.sheet_names();
    let sheet = match &opts.sheet {
        Some(wanted) => sheets
            .iter()
            .find(|s| s.eq_ignore_ascii_case(wanted.trim()))
            .cloned()
            .ok_or_else(|| {
                Error::input(
                    name,
                    0,
                    format!(
                        "no sheet named `{}` (sheets: {}); check --sheet",
                        clip(wanted),
                        sheets
                            .iter()
                            .map(|s| clip(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| Error::input(name, 0, "the workbook has no sheets"))?,
    };
    // A sheet's name is the file's text: escaped wherever it is shown, so a newline in it
    // cannot forge a line of the log.
    let shown = clip(&sheet).into_owned();
    let range = book
        .worksheet_range(&sheet)
        .map_err(|e| Error::input(name, 0, format!("cannot read sheet `{shown}`: {e}")))?;
    // The sheet's own row numbers: the range starts where its first used cell is.
    let first_row = u64::from(range.start().map_or(0, |(row, _)| row)) + 1;
    let mut rows = range
        .rows()
        .enumerate()
        .map(|(i, cells)| {
            (
                first_row + i as u64,
                cells.iter().map(text).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, cells)| cells.iter().any(|c| !c.trim().is_empty()));

    let resolver = Resolver::new(opts);
    // The header: `--header-row`, or the first of the first 20 rows that names the columns
    // the run needs, or else the first (whose message says what is missing).
    let mut top: Vec<(u64, Vec<String>)> = Vec::new();
    let mut chosen = None;
    while top.len() < HEADER_SEARCH {
        let Some((line, cells)) = rows.next() else {
            break;
        };
        let names: Vec<String> = cells.iter().map(|c| c.trim().to_string()).collect();
        let fits = match opts.header_row {
            Some(n) => line >= n,
            None => resolver.fits(&names, opts),
        };
        top.push((line, names));
        if fits {
            chosen = Some(top.len() - 1);
            break;
        }
    }
    let at = match (chosen, opts.header_row) {
        (Some(at), _) => at,
        (None, Some(n)) => {
            return Err(Error::input(
                name,
                n,
                format!("--header-row {n}: sheet `{shown}` has no row {n} with anything in it"),
            ));
        }
        (None, None) if top.is_empty() => {
            return Err(Error::input(
                name,
                first_row,
                format!("sheet `{shown}` is empty"),
            ));
        }
        (None, None) => 0,
    };
    let (header_at, names) = top.swap_remove(at);
    if at > 0 {
        tracing::debug!(
            event = "header_row",
            line = header_at,
            skipped = at,
            message = "rows above the header row were skipped"
        );
    }
    let found = resolver.positions(names.iter().map(String::as_str));
    if let Some(message) = resolver.missing(&found, &names, opts) {
        return Err(Error::input(name, header_at, message));
    }
    let layout = Layout::new(&resolver, &found, &names, opts)
        .ok_or_else(|| Error::input(name, header_at, "no user column"))?;
    let mut mapper = Mapper::new(opts);
    let mut first_data = true;
    for (line, cells) in rows {
        if std::mem::take(&mut first_data)
            && cells.first().is_some_and(|c| is_example(c.as_bytes()))
        {
            tracing::debug!(
                event = "example_row",
                line,
                message = "skipped the template's example row"
            );
            continue;
        }
        let record = layout.record(line, |i| cells.get(i).map(String::as_str));
        mapper.take(record, sink, stats);
    }
    Ok(())
}

/// A cell as the text a CSV export would hold.
fn text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => {
            let (y, mo, day, h, mi, s, _) = d.to_ymd_hms_milli();
            if d.is_datetime() && (h, mi, s) != (0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02}")
            }
        }
        Data::Error(e) => format!("#{e:?}"),
    }
}
