//! Tiny hostile workbooks: each must end in exit 0 or exit 2 with `file:sheet:row` and what to
//! do, never an abort or a panic, within the reader's 1 GiB and 60 s. The files are written
//! here (rust_xlsxwriter, or a zip of hand-written parts), a few KB each; a seeded fuzz then
//! flips bytes of good workbooks and JSON exports.

use std::io::{Cursor, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// An xlsx of hand-written parts: one sheet, `Sheet1`, whose XML is `sheet`, and `extra`
/// parts (name, text) such as shared strings.
fn xlsx(sheet: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut parts = xlsx_parts_without_sheet();
    parts.push(("xl/worksheets/sheet1.xml", sheet.to_string()));
    parts.extend(extra.iter().map(|(n, t)| (*n, t.to_string())));
    zip_of(&parts)
}

/// The parts of a one-sheet xlsx but the sheet.
fn xlsx_parts_without_sheet() -> Vec<(&'static str, String)> {
    vec![
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#.to_string(),
        ),
    ]
}

fn zip_of(parts: &[(&str, String)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, text) in parts {
        out.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

const SHEET_START: &str = r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#;
const SHEET_END: &str = "</sheetData></worksheet>";
const HEADER_AND_ONE: &str = r#"<row r="1"><c r="A1" t="inlineStr"><is><t>userId</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>u1</t></is></c></row>"#;

/// `validate FILE --org acme --group g`: the exit code and stderr. A run that hangs is killed
/// after 120 s and has no exit code, which fails the test; the limits' own messages say which
/// limit stopped a read.
fn validate(dir: &Path, file: &str, bytes: &[u8]) -> (Option<i32>, String) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let out = bin(dir)
        .args(["validate", file, "--org", "acme", "--group", "g"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 2 naming `file:Sheet1:` and the limit, without a panic or an abort.
fn refused(dir: &Path, file: &str, bytes: &[u8], what: &str) {
    let (code, err) = validate(dir, file, bytes);
    assert_eq!(code, Some(2), "{file}: {err}");
    assert!(err.contains(&format!("{file}:Sheet1:")), "{file}: {err}");
    assert!(err.contains(what), "{file}: {err}");
    assert!(!err.contains("panicked"), "{file}: {err}");
}

#[test]
fn a_cell_far_from_the_table_is_refused_not_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let sheet = format!(
        r#"{SHEET_START}{HEADER_AND_ONE}<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>{SHEET_END}"#
    );
    let bytes = xlsx(&sheet, &[]);
    assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    refused(
        dir.path(),
        "far.xlsx",
        &bytes,
        "delete stray cells far from the table",
    );
}

#[test]
fn a_huge_shared_string_used_by_thousands_of_cells_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(1 << 20);
    let strings = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="2" uniqueCount="2"><si><t>userId</t></si><si><t>{big}</t></si></sst>"#
    );
    let mut rows = String::from(r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row>"#);
    for r in 2..2002 {
        rows.push_str(&format!(
            r#"<row r="{r}"><c r="A{r}" t="s"><v>1</v></c></row>"#
        ));
    }
    let sheet = format!("{SHEET_START}{rows}{SHEET_END}");
    let bytes = xlsx(&sheet, &[("xl/sharedStrings.xml", &strings)]);
    refused(
        dir.path(),
        "strings.xlsx",
        &bytes,
        "needs more than 1024 MiB",
    );
}

#[test]
fn a_zip_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // One cell of 1.5 GB that inflates from a hundredth of that, written in 1 MB pieces (the
    // fastest compression: a slower one makes a smaller file, no different a bomb).
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let parts = xlsx_parts_without_sheet();
    for (name, text) in &parts {
        out.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }
    let options = zip::write::SimpleFileOptions::default()
        .compression_level(Some(1))
        .large_file(true);
    out.start_file("xl/worksheets/sheet1.xml", options).unwrap();
    out.write_all(SHEET_START.as_bytes()).unwrap();
    out.write_all(HEADER_AND_ONE.as_bytes()).unwrap();
    out.write_all(br#"<row r="3"><c r="A3" t="inlineStr"><is><t>"#)
        .unwrap();
    let piece = vec![b'x'; 1 << 20];
    for _ in 0..1536 {
        out.write_all(&piece).unwrap();
    }
    out.write_all(b"</t></is></c></row>").unwrap();
    out.write_all(SHEET_END.as_bytes()).unwrap();
    let bytes = out.finish().unwrap().into_inner();
    assert!(bytes.len() < 16 << 20, "{} bytes", bytes.len());
    refused(dir.path(), "bomb.xlsx", &bytes, "needs more than 1024 MiB");
}

#[test]
fn an_ods_row_repeated_300000_times_100_columns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let content = r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="Sheet1"><table:table-row><table:table-cell office:value-type="string"><text:p>userId</text:p></table:table-cell></table:table-row><table:table-row table:number-rows-repeated="300000"><table:table-cell table:number-columns-repeated="100" office:value-type="string"><text:p>x</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet></office:body></office:document-content>"#;
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    let bytes = zip_of(&[
        (
            "mimetype",
            "application/vnd.oasis.opendocument.spreadsheet".into(),
        ),
        ("content.xml", content.into()),
        ("META-INF/manifest.xml", manifest.into()),
    ]);
    let (code, err) = validate(dir.path(), "rows.ods", &bytes);
    // Either read within the limits or refused with what to do; never an abort. (calamine
    // reads every sheet of an ODS file as it opens it, so no sheet is named yet.)
    assert!(
        code == Some(2) && err.contains("rows.ods:1: reading the workbook needs more than")
            || code == Some(0),
        "{code:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn two_parts_of_one_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let one = format!("{SHEET_START}{HEADER_AND_ONE}{SHEET_END}");
    let two = format!(
        r#"{SHEET_START}<row r="1"><c r="A1" t="inlineStr"><is><t>userId</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>intruder</t></is></c></row>{SHEET_END}"#
    );
    // The zip writer refuses a second entry of one name: write `sheetX.xml`, then rename it
    // in the local header and the central directory (names are stored uncompressed).
    let mut bytes = xlsx(&one, &[("xl/worksheets/sheetX.xml", &two)]);
    let from = b"xl/worksheets/sheetX.xml";
    let to = b"xl/worksheets/sheet1.xml";
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        bytes[i + at..i + at + to.len()].copy_from_slice(to);
        i += at + to.len();
    }
    let (code, err) = validate(dir.path(), "twice.xlsx", &bytes);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("two parts named `xl/worksheets/sheet1.xml`"),
        "{err}"
    );
}

#[test]
fn a_good_workbook_still_reads_with_its_sheet_rows() {
    let dir = tempfile::tempdir().unwrap();
    let sheet = format!("{SHEET_START}{HEADER_AND_ONE}{SHEET_END}");
    let (code, err) = validate(dir.path(), "good.xlsx", &xlsx(&sheet, &[]));
    assert_eq!(code, Some(0), "{err}");
    let out = bin(dir.path())
        .args(["validate", "good.xlsx", "--org", "acme", "--group", "g"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 memberships"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Seeded byte flips, cuts and splices of a good workbook and a good JSON export: every one
/// ends in exit 0 or 2 with a `file:` message, never a panic, an abort or a hang.
#[test]
fn fuzzed_workbooks_and_json_end_in_exit_0_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "userId").unwrap();
    sheet.write_string(0, 1, "groupId").unwrap();
    for r in 1..40u32 {
        sheet.write_string(r, 0, format!("user-{r}")).unwrap();
        sheet.write_string(r, 1, format!("g{}", r % 3)).unwrap();
    }
    let good_xlsx = book.save_to_buffer().unwrap();
    let good_json = serde_json::to_vec(&serde_json::json!({"value": (1..40)
        .map(|r| serde_json::json!({"userId": format!("user-{r}"), "groupId": format!("g{}", r % 3)}))
        .collect::<Vec<_>>()}))
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(2026);
    let cases: u64 = std::env::var("VELT_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(120);
    let deadline = Instant::now() + Duration::from_secs(240);
    for case in 0..cases {
        if Instant::now() > deadline {
            break; // bounded in time; the seed makes the cases run the same every time
        }
        let (file, good, extra): (&str, &[u8], &[&str]) = if case % 3 == 2 {
            ("f.json", &good_json, &["--records-path", "value"])
        } else {
            ("f.xlsx", &good_xlsx, &[])
        };
        let mut bytes = good.to_vec();
        match rng.u8(0..4) {
            0 => {
                for _ in 0..rng.usize(1..20) {
                    let at = rng.usize(0..bytes.len());
                    bytes[at] = rng.u8(..);
                }
            }
            1 => bytes.truncate(rng.usize(0..bytes.len())),
            2 => {
                let at = rng.usize(0..bytes.len());
                let len = rng.usize(1..64).min(bytes.len() - at);
                let chunk: Vec<u8> = bytes[at..at + len].to_vec();
                let to = rng.usize(0..bytes.len());
                bytes.splice(
                    to..to,
                    chunk.iter().copied().cycle().take(len * rng.usize(1..200)),
                );
            }
            _ => {
                let at = rng.usize(0..bytes.len());
                bytes[at] ^= 1 << rng.u8(0..8);
            }
        }
        std::fs::write(dir.path().join(file), &bytes).unwrap();
        let out = bin(dir.path())
            .args(["validate", file, "--org", "acme", "--group", "g"])
            .args(extra)
            .timeout(Duration::from_secs(90))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        assert!(
            code == Some(0)
                || code == Some(1)
                || code == Some(2) && err.contains(&format!("{file}:")),
            "case {case}: {code:?} {err}"
        );
        assert!(!err.contains("panicked"), "case {case}: {err}");
    }
}

/// A compound file (`.xls`) whose directory chain points back at itself: a reader that
/// follows the chain never ends. 1.5 KB.
#[test]
fn an_xls_whose_sector_chain_loops_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = vec![0u8; 512 * 3];
    let header = &mut file[..512];
    header[..8].copy_from_slice(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1");
    let put16 = |h: &mut [u8], at: usize, v: u16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |h: &mut [u8], at: usize, v: u32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(header, 0x18, 0x3E); // minor version
    put16(header, 0x1A, 3); // major version: 512-byte sectors
    put16(header, 0x1C, 0xFFFE); // byte order
    put16(header, 0x1E, 9); // sector shift
    put16(header, 0x20, 6); // mini sector shift
    put32(header, 0x2C, 1); // FAT sectors
    put32(header, 0x30, 1); // first directory sector
    put32(header, 0x38, 4096); // mini stream cutoff
    put32(header, 0x3C, 0xFFFF_FFFE); // no mini FAT
    put32(header, 0x44, 0xFFFF_FFFE); // no DIFAT sectors
    put32(header, 0x4C, 0); // DIFAT[0]: the FAT is sector 0
    for i in 1..109 {
        put32(header, 0x4C + 4 * i, 0xFFFF_FFFF);
    }
    let fat = &mut file[512..1024];
    put32(fat, 0, 0xFFFF_FFFD); // sector 0 is the FAT
    put32(fat, 4, 1); // sector 1, the directory, is followed by ... sector 1
    for i in 2..128 {
        put32(fat, 4 * i, 0xFFFF_FFFF);
    }
    std::fs::write(dir.path().join("loop.xls"), &file).unwrap();
    let out = bin(dir.path())
        .args(["validate", "loop.xls", "--org", "acme", "--group", "g"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("loop.xls:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
