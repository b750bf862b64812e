//! What the command line says about turning records into memberships beyond finding their
//! fields: which records to keep (`--include`, `--exclude`), how a group cell reads
//! (`--group-separator`), what a group value means (`--group-map`, `--unmapped`) and how user
//! IDs compare (`--user-id-case`). `record::Mapper` applies it, one record at a time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::error::Error;
use crate::text::clip;

/// The mapping stage's settings.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// `--include` and `--exclude` rules, in the order given: all must hold.
    pub filters: Vec<Filter>,
    /// `--group-separator`.
    pub separator: Option<String>,
    /// `--group-map`.
    pub map: Option<Arc<GroupMap>>,
    pub unmapped: Unmapped,
    /// `--user-id-case lower`.
    pub lower_user_ids: bool,
}

/// One `--include` (`keep`) or `--exclude` rule.
#[derive(Debug, Clone)]
pub struct Filter {
    pub column: String,
    /// Compared trimmed and case-folded (see `fold`).
    values: Vec<String>,
    /// `--include`: a record is kept when its value is listed. `--exclude`: when it is not.
    pub keep: bool,
}

impl Filter {
    pub fn new(column: &str, values: &[String], keep: bool) -> Filter {
        Filter {
            column: column.trim().to_string(),
            values: values.iter().map(|v| fold(v).into_owned()).collect(),
            keep,
        }
    }

    pub fn flag(&self) -> &'static str {
        if self.keep { "--include" } else { "--exclude" }
    }

    /// Whether the record with this value in the rule's column passes the rule.
    pub fn passes(&self, value: &str) -> bool {
        let value = value.trim();
        let listed = if value.is_ascii() {
            self.values.iter().any(|w| value.eq_ignore_ascii_case(w))
        } else {
            let value = fold(value);
            self.values.iter().any(|w| *w == value)
        };
        listed == self.keep
    }
}

/// What to do with a group value that `--group-map` does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Unmapped {
    #[default]
    Invalid,
    Skip,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
/// `--user-id-case`: IDs as given, or lower-cased (ASCII).
pub enum UserIdCase {
    Keep,
    Lower,
}

/// Trimmed and lower-cased: how filter values and group map sources compare.
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    let s = s.trim();
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// One group a map row sends a value to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The group column this row applies to (case-folded); any when `None`.
    column: Option<String>,
    pub id: String,
    /// The display name for `--create-missing-groups`.
    pub name: Option<String>,
}

/// `--group-map`: group values (display names, e-mails) to group IDs.
#[derive(Debug, Default)]
pub struct GroupMap {
    /// Where it was read from, for messages.
    pub path: String,
    by_source: HashMap<String, SmallVec<[Target; 1]>>,
}

const SOURCE: &str = "source";
/// The largest group map read: some 2 million rows.
const MAX_MAP_BYTES: u64 = 128 << 20;
const TARGETS: &[&str] = &["organizationUserGroupId", "groupId"];

impl GroupMap {
    /// Reads a map file: a CSV whose header names `source` and `organizationUserGroupId` (or
    /// `groupId`), optionally `name` and `column`. Every fault is `file:line: what is wrong`.
    pub fn load(path: &Path) -> Result<GroupMap, Error> {
        use std::io::Read;
        let name = path.display().to_string();
        let io_err = |source: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                source.kind(),
                format!("cannot read the group map: {source}; check --group-map"),
            ),
        };
        // Bounded like an input: a wrong file (`/dev/zero`, a dump) cannot fill the memory.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_MAP_BYTES + 1).read_to_end(&mut bytes))
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_MAP_BYTES {
            return Err(Error::input(
                &name,
                1,
                format!(
                    "the group map is larger than {} MiB: is this the right file? check --group-map",
                    MAX_MAP_BYTES >> 20
                ),
            ));
        }
        let bytes = bytes.strip_prefix(super::BOM).unwrap_or(&bytes);
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(Error::input(
                &name,
                1,
                "the group map is not valid UTF-8; save it as UTF-8 CSV",
            ));
        };
        GroupMap::parse(text, &name)
    }

    pub fn parse(text: &str, name: &str) -> Result<GroupMap, Error> {
        let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let mut csv = ::csv::ReaderBuilder::new()
            .delimiter(super::csv::detect_delimiter(first_line.as_bytes()))
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers = csv
            .headers()
            .map_err(|e| Error::input(name, 1, format!("cannot read the group map: {e}")))?
            .clone();
        let header_line = line_at(text, headers.position());
        let cols = MapColumns::find(&headers, name, header_line)?;
        let mut map = GroupMap {
            path: name.to_string(),
            by_source: HashMap::new(),
        };
        let mut record = ::csv::StringRecord::new();
        loop {
            match csv.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let line = line_at(text, e.position());
                    let message = format!("cannot read the group map: {e}");
                    return Err(Error::input(name, line, message));
                }
            }
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            // Counted only for a message: counting for every row was quadratic.
            let error =
                |message: String| Error::input(name, line_at(text, record.position()), message);
            let (source, target) = cols.target(&record, &headers).map_err(error)?;
            let targets = map.by_source.entry(fold(source).into_owned()).or_default();
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        if map.by_source.is_empty() {
            return Err(Error::input(
                name,
                header_line,
                "the group map has no rows; add one `source,organizationUserGroupId` row per group value",
            ));
        }
        Ok(map)
    }

    /// The groups `value` (already folded) maps to when it comes from group column `column`.
    pub fn lookup<'m>(&'m self, value: &str, column: &'m str) -> impl Iterator<Item = &'m Target> {
        self.by_source
            .get(value)
            .into_iter()
            .flatten()
            .filter(move |t| {
                t.column
                    .as_deref()
                    .is_none_or(|c| column.trim().eq_ignore_ascii_case(c) || fold(column) == c)
            })
    }
}

/// The line of `text` a CSV position is on. The csv crate's line numbers drift over blank
/// lines: this counts them from the byte offset.
fn line_at(text: &str, pos: Option<&::csv::Position>) -> u64 {
    let at = pos.map_or(0, |p| p.byte() as usize).min(text.len());
    let before = memchr::memchr_iter(b'\n', &text.as_bytes()[..at]).count();
    let blank = text.as_bytes()[at..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .filter(|&&b| b == b'\n')
        .count();
    (before + blank + 1) as u64
}

/// Where a group map's columns are.
struct MapColumns {
    source: usize,
    target: usize,
    name: Option<usize>,
    column: Option<usize>,
}

impl MapColumns {
    fn find(headers: &::csv::StringRecord, name: &str, line: u64) -> Result<MapColumns, Error> {
        let find = |wanted: &[&str]| {
            wanted.iter().find_map(|w| {
                headers
                    .iter()
                    .position(|h| h.trim().eq_ignore_ascii_case(w))
            })
        };
        let (Some(source), Some(target)) = (find(&[SOURCE]), find(TARGETS)) else {
            let has: Vec<&str> = headers.iter().map(str::trim).collect();
            return Err(Error::input(
                name,
                line,
                format!(
                    "a group map needs the columns `source` and `organizationUserGroupId` (or `groupId`); its columns are: {}",
                    clip(&has.join(", "))
                ),
            ));
        };
        Ok(MapColumns {
            source,
            target,
            name: find(&["name"]),
            column: find(&["column"]),
        })
    }

    /// The source value of one row and the group it maps to, or why the row is wrong.
    fn target<'r>(
        &self,
        record: &'r ::csv::StringRecord,
        headers: &::csv::StringRecord,
    ) -> Result<(&'r str, Target), String> {
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).map(str::trim);
        let source = cell(Some(self.source)).unwrap_or("");
        let id = cell(Some(self.target)).unwrap_or("");
        if record.len() != headers.len() {
            return Err(format!(
                "row has {} fields but the header has {} (quote values that hold the delimiter)",
                record.len(),
                headers.len()
            ));
        }
        if source.is_empty() {
            return Err("`source` is empty; give the group value as the export writes it".into());
        }
        if id.is_empty() {
            return Err(format!(
                "no group ID for `{}`; fill in `{}`",
                clip(source),
                headers
                    .get(self.target)
                    .unwrap_or("organizationUserGroupId")
            ));
        }
        let target = Target {
            column: cell(self.column)
                .filter(|c| !c.is_empty())
                .map(|c| fold(c).into_owned()),
            id: id.to_string(),
            name: cell(self.name).filter(|n| !n.is_empty()).map(String::from),
        };
        Ok((source, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_reads_names_columns_and_duplicate_sources() {
        let map = GroupMap::parse(
            "\u{feff}Source,groupId,Name,Column\n\
             Engineering & Product,eng,Engineering,\n\
             \n\
             São Paulo,loc-sp,,Location\n\
             engineering & product,product,,\n",
            "map.csv",
        )
        .unwrap();
        let ids = |v: &str, col: &'static str| {
            map.lookup(&fold(v), col)
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(" ENGINEERING & product ", "Department"),
            ["eng", "product"]
        );
        assert_eq!(ids("são paulo", "location"), ["loc-sp"]);
        assert!(
            ids("São Paulo", "Department").is_empty(),
            "only for Location"
        );
        let eng = map.lookup("engineering & product", "x").next().unwrap();
        assert_eq!(eng.name.as_deref(), Some("Engineering"));
    }

    #[test]
    fn a_bad_map_names_its_file_and_line() {
        let err = |text| GroupMap::parse(text, "map.csv").unwrap_err().to_string();
        assert_eq!(
            err("from,to\na,b\n"),
            "map.csv:1: a group map needs the columns `source` and `organizationUserGroupId` (or `groupId`); its columns are: from, to"
        );
        assert_eq!(
            err("source,organizationUserGroupId\na,g\n\nb, \n"),
            "map.csv:4: no group ID for `b`; fill in `organizationUserGroupId`"
        );
        assert_eq!(
            err("source,groupId\n"),
            "map.csv:1: the group map has no rows; add one `source,organizationUserGroupId` row per group value"
        );
        assert!(err("source,groupId\na,b,c\n").starts_with("map.csv:2: row has 3 fields"));
    }

    #[test]
    fn filters_compare_trimmed_and_case_insensitively() {
        let include = Filter::new("Status", &["Active".into(), "Ünter".into()], true);
        assert!(include.passes(" active "));
        assert!(include.passes("ÜNTER"));
        assert!(!include.passes("Inactive"));
        assert!(!include.passes(""));
        let exclude = Filter::new("type", &["GROUP".into()], false);
        assert!(!exclude.passes("group"));
        assert!(exclude.passes("USER"));
    }
}
