//! A workbook's sheet as rows of text, read by calamine in a child process with an
//! address-space limit (1 GiB) and a time limit (60 s).
//!
//! calamine cannot be bounded from outside: a 1.7 KB `.xlsx` whose one cell sits at
//! `XFD1048576` makes it ask for a dense 550 GB range and abort the process; a compound file
//! with a FAT cycle, a zip bomb, a shared string used by thousands of cells or an ODS row
//! repeated 300,000 times take gigabytes; fuzzed files panic with "capacity overflow". In a
//! child, each of these ends the child, and the run stops with exit 2 and what to do, its
//! report, metrics and journal handled as for any input error. The binary starts the child
//! as itself (`main` hands `WORKER_ARG` to [`worker_main`]); a library caller that has not
//! named the binary with [`use_worker`] reads in-process, unbounded.
//!
//! The child reads the workbook's bytes on its stdin and writes JSON lines on its stdout:
//! `{"sheet": NAME}`, then `[ROW, [CELL, ...]]` for every row with anything in it, or
//! `{"error": MESSAGE}`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use calamine::{Data, Reader};

use crate::text::clip;

/// The first argument that makes the binary a workbook reader.
pub const WORKER_ARG: &str = "__read-workbook";
/// The reader's address space: the workbook's cells, strings and calamine's buffers.
const MEMORY_LIMIT: u64 = 1 << 30;
/// The reader's time.
const TIME_LIMIT: Duration = Duration::from_secs(60);

static WORKER: OnceLock<PathBuf> = OnceLock::new();

/// Reads workbooks in children started from `exe` (this binary), bounded.
pub fn use_worker(exe: PathBuf) {
    let _ = WORKER.set(exe);
}

/// Where the rows go: (sheet, row number, cells); an error stops the read.
pub type RowSink<'a> = dyn FnMut(&str, u64, Vec<String>) -> Result<(), SheetError> + 'a;

/// What went wrong reading a sheet: the message, the sheet's name once known, and the row
/// after the last one read (1 before any).
#[derive(Debug)]
pub struct SheetError {
    pub sheet: Option<String>,
    pub row: u64,
    pub message: String,
}

fn fail(message: impl Into<String>) -> SheetError {
    SheetError {
        sheet: None,
        row: 1,
        message: message.into(),
    }
}

/// The rows of the chosen sheet (`--sheet`, or the first), each with its row number and cells
/// as text, handed to `row` as they come; returns the sheet's name.
pub fn read_rows(
    bytes: Vec<u8>,
    sheet: Option<&str>,
    row: &mut RowSink<'_>,
) -> Result<String, SheetError> {
    refuse_duplicate_entries(&bytes)?;
    match WORKER.get() {
        Some(exe) => read_in_child(exe, bytes, sheet, row),
        None => {
            let mut name = String::new();
            read_here(bytes, sheet, &mut |event| match event {
                Event::Sheet(s) => {
                    name = s.to_string();
                    Ok(())
                }
                Event::Row(n, cells) => row(&name, n, cells),
            })?;
            Ok(name)
        }
    }
}

/// Two zip entries of one name (`xl/worksheets/sheet1.xml` twice): which one a reader takes
/// is up to it (the zip crate keeps the last), so the file is refused rather than read either
/// way. Read from the zip's central directory itself, which readers then index by name.
fn refuse_duplicate_entries(bytes: &[u8]) -> Result<(), SheetError> {
    let Some(names) = central_directory_names(bytes) else {
        return Ok(()); // not a zip, or one the reader will say is damaged
    };
    let mut seen = HashSet::new();
    for name in names {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if !seen.insert(name.clone()) {
            return Err(fail(format!(
                "the workbook holds two parts named `{}`; it is damaged or was tampered with: \
                 save it again from Excel, or export the sheet as CSV",
                clip(&name)
            )));
        }
    }
    Ok(())
}

/// The entry names of a zip's central directory, if it has a readable one (not zip64).
fn central_directory_names(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let u16_at = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    if !bytes.starts_with(b"PK\x03\x04") || bytes.len() < 22 {
        return None;
    }
    // The end record: its signature within the last 22 + 65,535 (comment) bytes.
    let from = bytes.len().saturating_sub(22 + 0xFFFF);
    let end = (from..=bytes.len() - 22)
        .rev()
        .find(|&i| bytes[i..].starts_with(b"PK\x05\x06"))?;
    let count = u16_at(end + 10)?;
    let mut at = u32_at(end + 16)?;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        if !bytes.get(at..)?.starts_with(b"PK\x01\x02") {
            return None;
        }
        let (name_len, extra, comment) = (u16_at(at + 28)?, u16_at(at + 30)?, u16_at(at + 32)?);
        names.push(bytes.get(at + 46..at + 46 + name_len)?);
        at += 46 + name_len + extra + comment;
    }
    Some(names)
}

enum Event<'a> {
    Sheet(&'a str),
    Row(u64, Vec<String>),
}

/// calamine, in this process.
fn read_here(
    bytes: Vec<u8>,
    wanted: Option<&str>,
    emit: &mut dyn FnMut(Event<'_>) -> Result<(), SheetError>,
) -> Result<(), SheetError> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| {
        fail(format!(
            "cannot read the workbook: {e}; is it an Excel or OpenDocument file?"
        ))
    })?;
    let sheets = book.sheet_names();
    let sheet = match wanted {
        Some(wanted) => sheets
            .iter()
            .find(|s| s.eq_ignore_ascii_case(wanted.trim()))
            .cloned()
            .ok_or_else(|| {
                fail(format!(
                    "no sheet named `{}` (sheets: {}); check --sheet",
                    clip(wanted),
                    sheets
                        .iter()
                        .map(|s| clip(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| fail("the workbook has no sheets"))?,
    };
    emit(Event::Sheet(&sheet))?;
    let range = book.worksheet_range(&sheet).map_err(|e| SheetError {
        sheet: Some(sheet.clone()),
        row: 1,
        message: format!("cannot read the sheet: {e}"),
    })?;
    // The sheet's own row numbers: the range starts where its first used cell is.
    let first_row = u64::from(range.start().map_or(0, |(row, _)| row)) + 1;
    for (i, cells) in range.rows().enumerate() {
        let cells: Vec<String> = cells.iter().map(text).collect();
        if cells.iter().any(|c| !c.trim().is_empty()) {
            emit(Event::Row(first_row + i as u64, cells))?;
        }
    }
    Ok(())
}

/// The child: the workbook on stdin, the sheet's rows as JSON lines on stdout.
pub fn worker_main(sheet: Option<String>) -> ExitCode {
    let mut bytes = Vec::new();
    if std::io::stdin().lock().read_to_end(&mut bytes).is_err() {
        return ExitCode::from(2);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut emit = |event: Event<'_>| {
        let (line, flush) = match event {
            // Said at once: if the sheet then kills the reader, the run still names it.
            Event::Sheet(name) => (serde_json::json!({ "sheet": name }), true),
            Event::Row(n, cells) => (serde_json::json!([n, cells]), false),
        };
        serde_json::to_writer(&mut out, &line)
            .ok()
            .and_then(|()| out.write_all(b"\n").ok())
            .and_then(|()| if flush { out.flush().ok() } else { Some(()) })
            .ok_or_else(|| fail("the reader's output was closed"))
    };
    let result = read_here(bytes, sheet.as_deref(), &mut emit);
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = serde_json::to_writer(&mut out, &serde_json::json!({ "error": e.message }));
            let _ = out.write_all(b"\n");
            2
        }
    };
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(code)
}

/// calamine in a child of `exe`, bounded; its rows handed to `row` as they come.
fn read_in_child(
    exe: &PathBuf,
    bytes: Vec<u8>,
    sheet: Option<&str>,
    row: &mut RowSink<'_>,
) -> Result<String, SheetError> {
    let mut cmd = Command::new(exe);
    cmd.arg(WORKER_ARG)
        .args(sheet)
        // The child needs nothing of the environment, credentials least of all.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start the workbook reader: {e}")))?;
    let pid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(fail("cannot talk to the workbook reader"));
    };
    // The bytes go in on a thread of their own, so that rows can come out meanwhile; a child
    // that stopped reading (it failed) makes the write fail, which says nothing more.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let last_words = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.take(64 << 10).read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let late = finished.recv_timeout(TIME_LIMIT).is_err();
        if late {
            kill(pid);
        }
        late
    });
    let outcome = take_rows(BufReader::new(stdout), row);
    let _ = done.send(());
    // The watchdog has killed the child or never will: only then may it be reaped.
    let timed_out = watchdog.join().unwrap_or(false);
    if outcome.is_err() {
        kill(pid);
    }
    let status = child.wait();
    let _ = feeder.join();
    let said = last_words.join().unwrap_or_default();
    let (name, next_row, error) = outcome?;
    let located = |message: String| SheetError {
        sheet: name.clone(),
        row: next_row,
        message,
    };
    if let Some(message) = error {
        return Err(located(message));
    }
    let status = status.map_err(|e| fail(format!("the workbook reader was lost: {e}")))?;
    if timed_out {
        return Err(located(format!(
            "reading the workbook took longer than {} s: it is damaged, or built to be \
             endless; export the sheet as CSV",
            TIME_LIMIT.as_secs()
        )));
    }
    if !status.success() {
        return Err(located(death(&status, &said)));
    }
    name.ok_or_else(|| fail("the workbook reader said nothing"))
}

/// What the child's end says about the workbook.
fn death(status: &std::process::ExitStatus, said: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let first = said
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| clip(l.trim()).into_owned())
        .unwrap_or_default();
    if status.signal() == Some(libc::SIGXCPU) {
        return format!(
            "reading the workbook took more than {} s of processor time: it is damaged, or \
             built to be endless; export the sheet as CSV",
            TIME_LIMIT.as_secs()
        );
    }
    if said.contains("memory allocation") || status.signal().is_some() {
        format!(
            "reading the workbook needs more than {} MiB of memory (the sheet's used range runs \
             far beyond its cells, or the file is a zip bomb or damaged): delete stray cells \
             far from the table, or export the sheet as CSV",
            MEMORY_LIMIT >> 20
        )
    } else {
        format!(
            "the workbook is damaged (the reader failed: {first}); save it again from Excel, or export the sheet as CSV"
        )
    }
}

/// What the child said: the sheet's name, the row after the last one, and its error.
type Said = (Option<String>, u64, Option<String>);

/// The child's JSON lines: the sheet's name, then rows to `row`, or the child's error.
fn take_rows(stdout: impl BufRead, row: &mut RowSink<'_>) -> Result<Said, SheetError> {
    let mut sheet: Option<String> = None;
    let mut next = 1;
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| fail(format!("the workbook reader's output is garbled: {e}")))?;
        if let Some(message) = value.get("error").and_then(|m| m.as_str()) {
            return Ok((sheet, next, Some(message.to_string())));
        }
        if let Some(name) = value.get("sheet").and_then(|s| s.as_str()) {
            sheet = Some(name.to_string());
            continue;
        }
        let parsed: Option<(u64, Vec<String>)> = serde_json::from_value(value).ok();
        let (Some(name), Some((n, cells))) = (&sheet, parsed) else {
            return Err(fail("the workbook reader's output is garbled"));
        };
        next = n + 1;
        row(name, n, cells).map_err(|e| SheetError {
            sheet: Some(name.clone()),
            row: n,
            ..e
        })?;
    }
    Ok((sheet, next, None))
}

/// The child's limits, set between fork and exec.
fn limit(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let cpu = TIME_LIMIT.as_secs();
    // SAFETY: setrlimit(2) is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, value: u64| {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            set(libc::RLIMIT_AS, MEMORY_LIMIT)?;
            set(libc::RLIMIT_CPU, cpu)?;
            // An abort leaves no core file of the workbook's contents behind.
            set(libc::RLIMIT_CORE, 0)
        });
    }
}

fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on our own child, not yet reaped (see `read_in_child`).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
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
