//! An export read as a table for `init`: its format, encoding, header and rows as text, the
//! way `sync` reads it (a BOM or UTF-16 told by the first bytes, a workbook's first sheet, the
//! line naming the most columns among the first taken as the header).

use std::path::Path;

use crate::input::{
    Format, detect_delimiter, format_from_extension, is_workbook, sniff, utf16_without_bom,
};

/// The largest export `init` reads whole.
const MAX_BYTES: u64 = 512 << 20;
/// Lines looked at for the header.
const HEADER_SEARCH: usize = 20;

/// What `init` read.
#[derive(Debug, Default)]
pub struct Table {
    pub format: Option<Format>,
    /// The encoding label, and whether `sync` needs `encoding = ...` to read it.
    pub encoding: &'static str,
    pub needs_encoding: bool,
    pub delimiter: Option<u8>,
    pub sheet: Option<String>,
    /// The header's line (a workbook's row), 1 for the first.
    pub header_line: u64,
    /// Lines above the header that hold something (title rows).
    pub above: Vec<(u64, String)>,
    pub names: Vec<String>,
    /// Every row under the header, as many cells as names (missing ones empty).
    pub rows: Vec<Vec<String>>,
    /// A JSON export's array of records, when it is inside an object.
    pub records_path: Option<String>,
}

/// How `init` is told to read the export (the same flags as `sync`'s).
#[derive(Debug, Default, Clone)]
pub struct Reading {
    pub encoding: Option<&'static encoding_rs::Encoding>,
    pub sheet: Option<String>,
    pub format: Option<Format>,
}

pub fn read(path: &Path, how: &Reading) -> Result<Table, String> {
    use std::io::Read;
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{shown}: cannot read the export ({e}); check the path"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{shown}: larger than {} MiB; give init the first rows of it (head -n 1000)",
            MAX_BYTES >> 20
        ));
    }
    let format = how.format.or_else(|| format_from_extension(path));
    if format == Some(Format::Xlsx) || (format.is_none() && is_workbook(&bytes)) {
        return workbook(bytes, how.sheet.as_deref()).map_err(|e| format!("{shown}: {e}"));
    }
    let (text, encoding, needs_encoding) = decode(&bytes, how.encoding);
    let format = format.unwrap_or_else(|| sniff(text.as_bytes()));
    let mut table = match format {
        Format::Json | Format::Jsonl => json(&text, format).map_err(|e| format!("{shown}: {e}"))?,
        _ => csv_table(&text)?,
    };
    table.encoding = encoding;
    table.needs_encoding = needs_encoding;
    Ok(table)
}

/// The text, its encoding's label, and whether `sync` must be told it (no BOM says it).
fn decode(
    bytes: &[u8],
    given: Option<&'static encoding_rs::Encoding>,
) -> (String, &'static str, bool) {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return (text.into_owned(), encoding.name(), false);
    }
    if let Some(encoding) = given {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        return (text.into_owned(), encoding.name(), true);
    }
    if let Some(encoding) = utf16_without_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        return (text.into_owned(), encoding.name(), true);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), "UTF-8", false),
        // Excel's CSV on Windows, and most legacy HR exports.
        Err(_) => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            (text.into_owned(), encoding_rs::WINDOWS_1252.name(), true)
        }
    }
}

/// How many cells of a row hold something.
fn filled(cells: &[String]) -> usize {
    cells.iter().filter(|c| !c.trim().is_empty()).count()
}

/// Rows (line, cells) as a table: the header is the row naming the most among the first.
fn with_header(rows: Vec<(u64, Vec<String>)>) -> Table {
    let rows: Vec<(u64, Vec<String>)> = rows.into_iter().filter(|(_, c)| filled(c) > 0).collect();
    let most = rows
        .iter()
        .take(HEADER_SEARCH)
        .map(|(_, c)| filled(c))
        .max()
        .unwrap_or(0);
    let at = rows
        .iter()
        .position(|(_, c)| filled(c) == most)
        .unwrap_or(0);
    let mut table = Table::default();
    let mut rows = rows.into_iter();
    for (line, cells) in rows.by_ref().take(at) {
        table.above.push((line, cells.join(" ").trim().to_string()));
    }
    let Some((line, names)) = rows.next() else {
        return table;
    };
    table.header_line = line;
    table.names = names.iter().map(|n| n.trim().to_string()).collect();
    let width = table.names.len();
    table.rows = rows
        .map(|(_, mut cells)| {
            cells.resize(width, String::new());
            cells
        })
        .collect();
    table
}

fn csv_table(text: &str) -> Result<Table, String> {
    let head: String = text
        .lines()
        .take(HEADER_SEARCH)
        .collect::<Vec<_>>()
        .join("\n");
    let delimiter = detect_delimiter(head.as_bytes());
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("cannot read it as CSV: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    let mut table = with_header(rows);
    table.format = Some(Format::Csv);
    table.delimiter = Some(delimiter);
    Ok(table)
}

fn workbook(bytes: Vec<u8>, sheet: Option<&str>) -> Result<Table, String> {
    let mut rows = Vec::new();
    let name = crate::input::sheet::read_rows(bytes, sheet, &mut |_, n, cells| {
        rows.push((n, cells));
        Ok(())
    })
    .map_err(|e| format!("row {}: {}", e.row, e.message))?;
    let mut table = with_header(rows);
    table.format = Some(Format::Xlsx);
    table.sheet = Some(name);
    table.encoding = "xlsx";
    Ok(table)
}

/// A JSON array of objects (or one inside an object: Graph's `value`, SCIM's `Resources`), or
/// JSON Lines: the top-level keys are the columns; arrays of plain values are joined by `;`.
fn json(text: &str, format: Format) -> Result<Table, String> {
    let mut records_path = None;
    let records: Vec<serde_json::Value> = if format == Format::Jsonl {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not JSON Lines: {e}"))?
    } else {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        match value {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(fields) => {
                let found = fields.into_iter().find(|(_, v)| {
                    v.as_array()
                        .is_some_and(|a| a.iter().any(|i| i.is_object()))
                });
                let Some((key, serde_json::Value::Array(items))) = found else {
                    return Err("no array of records in it".into());
                };
                records_path = Some(key);
                items
            }
            _ => return Err("not an array of records".into()),
        }
    };
    let mut names: Vec<String> = Vec::new();
    for r in &records {
        if let Some(object) = r.as_object() {
            for key in object.keys() {
                if !names.contains(key) {
                    names.push(key.clone());
                }
            }
        }
    }
    let text_of = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(i.to_string()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(";"),
        Some(serde_json::Value::Object(_) | serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let rows = records
        .iter()
        .map(|r| names.iter().map(|n| text_of(r.get(n))).collect())
        .collect();
    Ok(Table {
        format: Some(format),
        encoding: "UTF-8",
        header_line: 1,
        names,
        rows,
        records_path,
        ..Table::default()
    })
}
