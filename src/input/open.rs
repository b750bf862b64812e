//! What a stream is and how it is read: opened (a file or standard input), told apart by its
//! first bytes (a workbook, UTF-16, which text format), decoded when it is not UTF-8, and
//! bounded so that no line can grow without end.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::FormatArg;
use super::{BOM, Format, InputOptions, InputStats, read_bounded, xlsx};
use crate::error::Error;
use crate::plan::Sink;

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
    let inner = e.get_ref();
    if let Some(t) = inner.and_then(|i| i.downcast_ref::<TooLong>()) {
        return Error::input(name, t.line, t.to_string());
    }
    if let Some(m) = inner.and_then(|i| i.downcast_ref::<super::decode::Malformed>()) {
        return Error::input(name, m.line, m.to_string());
    }
    Error::input(name, line, format!("cannot read: {e}"))
}

/// Fails the read once a line runs past `max` bytes, so that no reader above it (the CSV
/// reader's record buffer, a JSON Lines line) can grow without bound on a wrong file such as
/// `/dev/zero`.
struct Bounded<R> {
    inner: R,
    /// Shared with the reader above, which lifts it for a JSON array (bounded per element,
    /// not per line: Graph, SCIM and Workday write one line of many megabytes).
    max: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bytes since the last LF.
    run: u64,
    /// LFs passed.
    lines: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        let mut start = 0;
        for lf in memchr::memchr_iter(b'\n', &buf[..n]) {
            if self.run + (lf - start) as u64 > max {
                break;
            }
            self.run = 0;
            self.lines += 1;
            start = lf + 1;
        }
        self.run += (n - start) as u64;
        if self.run > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLong {
                    line: self.lines + 1,
                    max,
                },
            ));
        }
        Ok(n)
    }
}

pub(super) fn read_path_into(
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
    if opts.encoding.is_none() && !utf16_bom && utf16_without_bom(&head).is_some() {
        return Err(Error::input(
            &name,
            1,
            "this looks like UTF-16 text without a byte order mark; give --encoding utf-16le (or utf-16be)",
        ));
    }
    let line_limit = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(opts.max_record_bytes));
    let bounded = |inner| Bounded {
        inner,
        max: line_limit.clone(),
        run: 0,
        lines: 0,
    };
    let text: Box<dyn Read> = if opts.encoding.is_some() || utf16_bom {
        // Decoded to UTF-8 as it streams; a BOM overrides --encoding, as browsers do.
        let encoding = opts.encoding.unwrap_or(encoding_rs::UTF_16LE);
        Box::new(bounded(
            Box::new(super::decode::Decoding::new(raw, encoding)) as Box<dyn Read>,
        ))
    } else {
        Box::new(bounded(Box::new(raw) as Box<dyn Read>))
    };
    let reader = BufReader::with_capacity(256 * 1024, text);
    read_bounded(reader, &name, path, opts, sink, Some(&line_limit))
        .map_err(|e| explain_not_utf8(e, &head))
}

/// How many bytes are looked at to tell what a stream is.
const HEAD: usize = 8192;

/// A zip (xlsx, xlsm, ods) or OLE (xls) file's first bytes.
pub(crate) fn is_workbook(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1")
}

/// Text whose every other byte is NUL, most of the time: UTF-16 of mostly ASCII, without a
/// byte order mark; which UTF-16 it is (little-endian when the odd bytes are the NULs).
pub(crate) fn utf16_without_bom(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let sample = &head[..head.len().min(4096)];
    if sample.len() < 4 {
        return None;
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
    let mostly = |n: usize| n * 10 >= half * 7;
    let hardly = |n: usize| n * 10 <= half;
    if mostly(odd) && hardly(even) {
        Some(encoding_rs::UTF_16LE)
    } else if mostly(even) && hardly(odd) {
        Some(encoding_rs::UTF_16BE)
    } else {
        None
    }
}

/// The not-UTF-8 message, with what the file most likely is and the flag to use.
fn explain_not_utf8(e: Error, head: &[u8]) -> Error {
    match e {
        Error::Input {
            file,
            line,
            message,
        } if message == super::csv::NOT_UTF8 => {
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

pub(crate) fn format_from_extension(path: &Path) -> Option<Format> {
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
pub(crate) fn sniff(head: &[u8]) -> Format {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    let Some(at) = head.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Format::Csv;
    };
    match head[at] {
        b'[' => Format::Json,
        super::json::OBJECT_START => {
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
