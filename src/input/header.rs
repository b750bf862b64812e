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
}

impl Search {
    pub fn new(opts: &InputOptions) -> Search {
        Search {
            wanted: opts.header_row,
            looked: 0,
            last: 0,
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

    /// Why the search ended without a header, at which line, when that is an error: only
    /// with `--header-row` (without, the first line is taken, and what it lacks is said).
    pub fn missing(&self) -> Option<(u64, String)> {
        let n = self.wanted?;
        Some((
            n,
            format!("--header-row {n}: line {n} is blank, or the input ends before it"),
        ))
    }
}
