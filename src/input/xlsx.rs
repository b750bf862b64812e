//! Workbooks (`.xlsx`, `.xlsm`, `.xls`, `.ods`) through calamine: one sheet read as a table,
//! every cell as text (an integer-valued number as its digits, a date as ISO 8601), with the
//! header found as in CSV and the sheet's row numbers as line numbers.

use std::io::Read;

use super::columns::Resolver;
use super::csv::is_example;
use super::header;
use super::record::{Layout, Mapper};
use super::sheet;
use super::{InputOptions, InputStats};
use crate::error::Error;
use crate::plan::Sink;
use crate::text::clip;

/// The largest workbook read: calamine needs the whole file in memory, and so does its
/// bounded reader (1 GiB in all).
const MAX_WORKBOOK: u64 = 256 << 20;

/// What the reader thread hands over: a row of the sheet (named).
type Item = (String, u64, Vec<String>);
/// Why the reader stopped when the table stopped taking rows.
const STOPPED: &str = "stopped: the table took no more rows";

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
            format!(
                "the workbook is larger than {} MiB; export the sheet as CSV",
                MAX_WORKBOOK >> 20
            ),
        ));
    }
    // The sheet is read on a thread of its own (in a bounded child process, see `sheet`),
    // its rows taken here as they come; dropping `rows` stops it.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Item>(1024);
    let wanted = opts.sheet.clone();
    let reader = std::thread::spawn(move || {
        sheet::read_rows(bytes, wanted.as_deref(), &mut |sheet, line, cells| {
            tx.send((sheet.to_string(), line, cells))
                .map_err(|_| sheet::SheetError {
                    sheet: None,
                    row: line,
                    message: STOPPED.into(),
                })
        })
    });
    let mut shown = String::new();
    let result = read_table(
        rx.iter().map(|(sheet, line, cells)| {
            if shown.is_empty() {
                shown = clip(&sheet).into_owned();
            }
            (line, cells)
        }),
        opts,
        sink,
        stats,
    );
    drop(rx);
    let read = reader.join().unwrap_or_else(|_| {
        Err(sheet::SheetError {
            sheet: None,
            row: 1,
            message: "the workbook reader failed".into(),
        })
    });
    // The reader's own failure is the cause of anything the table then missed; a reader
    // stopped because the table failed is not.
    let sheet_name = match read {
        Ok(sheet) => sheet,
        Err(e) if e.message == STOPPED => e.sheet.unwrap_or(shown),
        Err(e) => {
            let at = match &e.sheet {
                Some(s) => format!("{name}:{}", clip(s)),
                None => name.to_string(),
            };
            return Err(Error::input(&at, e.row, e.message));
        }
    };
    let located = format!("{name}:{}", clip(&sheet_name));
    result.map_err(|problem| match problem {
        Table::At(line, message) => Error::input(&located, line, message),
        Table::Empty => Error::input(&located, 1, "the sheet is empty"),
    })
}

/// Why a sheet's table cannot be read: at a row, or because it holds nothing.
enum Table {
    At(u64, String),
    Empty,
}

/// The sheet's rows as a table: the header found as in CSV, then each row a record.
fn read_table(
    rows: impl Iterator<Item = (u64, Vec<String>)>,
    opts: &InputOptions,
    sink: &mut impl Sink,
    stats: &mut InputStats,
) -> Result<(), Table> {
    let mut rows = rows;
    let resolver = Resolver::new(opts);
    // The header: `--header-row`, or the first of the first 20 rows that names the columns
    // the run needs, or else the widest (whose message says what is missing, and which rows
    // were considered).
    let mut top: Vec<(u64, Vec<String>)> = Vec::new();
    let mut chosen = None;
    let mut search = header::Search::new(opts);
    while search.goes_on() {
        let Some((line, cells)) = rows.next() else {
            break;
        };
        let names: Vec<String> = cells.iter().map(|c| c.trim().to_string()).collect();
        search.seen(line, &names);
        let header = search.is_header(line, || resolver.fits(&names, opts));
        top.push((line, names));
        if header {
            chosen = Some(top.len() - 1);
            break;
        }
    }
    let at = match (chosen, search.missing()) {
        (Some(at), _) => at,
        (None, Some((line, message))) => return Err(Table::At(line, message)),
        (None, None) if top.is_empty() => return Err(Table::Empty),
        (None, None) => search.widest().unwrap_or(0),
    };
    let considered = if chosen.is_none() {
        search.considered()
    } else {
        None
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
        let message = header::with_considered(message, considered);
        return Err(Table::At(header_at, message));
    }
    let layout = Layout::new(&resolver, &found, &names, opts)
        .ok_or_else(|| Table::At(header_at, "no user column".into()))?;
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
