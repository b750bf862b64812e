//! Writes the inputs of the format benchmarks into a directory:
//! `cargo run --release --example gen_formats -- DIR [ROWS]` (ROWS default 1,000,000):
//! - `roster.xlsx`: a 200,000-row workbook with a title row, 4 columns;
//! - `plain.csv` and `utf16.csv`: the same ROWS-row CSV in UTF-8 and in UTF-16LE with a BOM;
//! - `plain.json` and `wrapped.json`: the same ROWS records as an array, and wrapped as
//!   Workday writes them (`{"Report_Entry": [...]}`).
//!
//! `cargo run --release --example gen_formats -- --samples samples` writes the small
//! `samples/roster.xlsx` (an HR report with title rows) and `samples/unicode-text.txt` (Excel's
//! "Unicode Text": UTF-16LE with a BOM, tab-delimited) instead.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--samples") {
        args.next();
        return samples(&PathBuf::from(
            args.next().unwrap_or_else(|| "samples".into()),
        ));
    }
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(&dir)?;

    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write(0, 0, "Employee Roster")?;
    for (c, h) in ["Employee ID", "Email", "Department", "Location"]
        .iter()
        .enumerate()
    {
        sheet.write(2, c as u16, *h)?;
    }
    for i in 0..200_000u32 {
        let r = 3 + i;
        sheet.write(r, 0, f64::from(i))?;
        sheet.write(r, 1, format!("person.{i:07}@acme.example"))?;
        sheet.write(r, 2, format!("Department {}", i % 120))?;
        sheet.write(r, 3, format!("Office {}", i % 80))?;
    }
    book.save(dir.join("roster.xlsx"))?;

    let record = |i: u64| {
        (
            format!("org-{}", i % 4),
            format!("group-{:03}", (i * 7919) % 200),
            format!("user-{i:07}"),
        )
    };
    let mut csv = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 0..rows {
        let (o, g, u) = record(i);
        csv.push_str(&format!("{o},{g},{u}\n"));
    }
    std::fs::write(dir.join("plain.csv"), &csv)?;
    let mut utf16 = BufWriter::new(std::fs::File::create(dir.join("utf16.csv"))?);
    utf16.write_all(&[0xFF, 0xFE])?;
    for unit in csv.encode_utf16() {
        utf16.write_all(&unit.to_le_bytes())?;
    }
    utf16.flush()?;

    for (name, open, close) in [
        ("plain.json", "[\n", "]\n"),
        ("wrapped.json", "{\"Report_Entry\": [\n", "]}\n"),
    ] {
        let mut out = BufWriter::new(std::fs::File::create(dir.join(name))?);
        out.write_all(open.as_bytes())?;
        for i in 0..rows {
            let (o, g, u) = record(i);
            let sep = if i + 1 == rows { "" } else { "," };
            writeln!(
                out,
                "{{\"organizationId\": \"{o}\", \"organizationUserGroupId\": \"{g}\", \"userId\": \"{u}\"}}{sep}"
            )?;
        }
        out.write_all(close.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

fn samples(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet().set_name("Roster")?;
    sheet.write(0, 0, "Employee Roster - Acme Corp")?;
    sheet.write(1, 0, "Run date: 2026-11-27")?;
    let header = [
        "Employee ID",
        "Work Email",
        "Department",
        "Location",
        "Status",
    ];
    for (c, h) in header.iter().enumerate() {
        sheet.write(3, c as u16, *h)?;
    }
    let rows = [
        (
            1001.0,
            "ada.lovelace@acme.example",
            "Engineering & Product",
            "São Paulo",
            "Active",
        ),
        (
            1002.0,
            "grace@acme.example",
            "Engineering & Product",
            "Berlin",
            "Active",
        ),
        (
            1003.0,
            "alan@acme.example",
            "Research",
            "Berlin",
            "Inactive",
        ),
        (
            1004.0,
            "barbara@acme.example",
            "Research",
            "São Paulo",
            "Active",
        ),
    ];
    for (i, (id, email, dept, loc, status)) in rows.iter().enumerate() {
        let r = 4 + i as u32;
        sheet.write(r, 0, *id)?;
        sheet.write(r, 1, *email)?;
        sheet.write(r, 2, *dept)?;
        sheet.write(r, 3, *loc)?;
        sheet.write(r, 4, *status)?;
    }
    book.save(dir.join("roster.xlsx"))?;
    let text = "organizationId\torganizationUserGroupId\tuserId\r\n\
                acme\tdesign\tzoë@acme.example\r\n\
                acme\tdesign\tjürgen@acme.example\r\n\
                acme\tsupport\t李雷@acme.example\r\n";
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    std::fs::write(dir.join("unicode-text.txt"), bytes)?;
    Ok(())
}
