//! Which line (a workbook's row) names the columns, for CSV and workbooks alike: `--header-row
//! N` (line N itself, which must not be blank), or else the first of the first 20 non-blank
//! lines that names the columns the run needs. Report titles, run dates and Entra's
//! `version:v1.0` line above it are skipped.

use super::InputOptions;

/// How many lines (not blank) may stand above the header row.
pub(crate) const HEADER_SEARCH: usize = 20;

/// The search, fed the non-blank lines in order.
pub(super) struct Search {
    wanted: Option<u64>,
    looked: usize,
    /// The last line offered.
    last: u64,
    /// The lines looked at, with how many columns each names and its first few names, for
    /// the message when none fits.
    seen: Vec<(u64, usize, String)>,
}

/// A column check's `message`, with the lines considered when no line named the columns.
pub(super) fn with_considered(message: String, considered: Option<String>) -> String {
    match considered {
        Some(lines) => format!("{message}; {lines}"),
        None => message,
    }
}

/// Names of a line shown in the list of lines considered.
const NAMES_SHOWN: usize = 6;

impl Search {
    pub fn new(opts: &InputOptions) -> Search {
        Search {
            wanted: opts.header_row,
            looked: 0,
            last: 0,
            seen: Vec::new(),
        }
    }

    /// Whether the non-blank line `line` is the header; `fits` says whether it names the
    /// columns the run needs (asked only without `--header-row`).
    pub fn is_header(&mut self, line: u64, fits: impl FnOnce() -> bool) -> bool {
        self.looked += 1;
        self.last = line;
        match self.wanted {
            Some(n) => line == n,
            None => fits(),
        }
    }

    /// Whether more lines may still hold the header.
    pub fn goes_on(&self) -> bool {
        match self.wanted {
            Some(n) => self.last < n,
            None => self.looked < HEADER_SEARCH,
        }
    }

    /// Notes the names a non-blank line holds (before `is_header` is asked about it).
    pub fn seen(&mut self, line: u64, names: &[String]) {
        let named: Vec<&str> = names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        let mut shown = named
            .iter()
            .take(NAMES_SHOWN)
            .map(|n| crate::text::clip(n).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        if named.len() > NAMES_SHOWN {
            shown.push_str(", ...");
        }
        self.seen.push((line, named.len(), shown));
    }

    /// When no line fits: the position (among the lines seen) of the one that names the most
    /// columns, first of equals, which is taken as the header so that what it lacks is said;
    /// a title row above it names one at most.
    pub fn widest(&self) -> Option<usize> {
        let most = self.seen.iter().map(|s| s.1).max()?;
        self.seen.iter().position(|s| s.1 == most)
    }

    /// When no line fits and the widest one (taken as the header) is not the first: the
    /// lines above it and it, with their line numbers, for the message. A title row is then
    /// shown as what it is, not as the columns.
    pub fn considered(&self) -> Option<String> {
        let taken = self.widest().filter(|&i| i > 0)?;
        let lines: Vec<String> = self.seen[..=taken]
            .iter()
            .map(|(line, _, names)| format!("{line}: {names}"))
            .collect();
        Some(format!(
            "no line names every column the run needs, so line {} (the one naming the most) \
             was taken as the header; lines considered: {}; if the header is another line, \
             name it with --header-row N",
            self.seen[taken].0,
            lines.join(" | ")
        ))
    }

    /// Why the search ended without a header, at which line, when that is an error: only
    /// with `--header-row` (without, the widest line is taken, and what it lacks is said).
    pub fn missing(&self) -> Option<(u64, String)> {
        let n = self.wanted?;
        Some((
            n,
            format!("--header-row {n}: line {n} is blank, or the input ends before it"),
        ))
    }
}
