//! Dated reports (`--report report-{date}.csv`) and how many are kept (`--keep-reports N`),
//! so that "who failed last Tuesday" has an answer after the next night.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The placeholders a report path may hold.
const DATE: &str = "{date}";
const TIME: &str = "{time}";

/// `path` with `{date}` (`2026-12-01`) and `{time}` (`021500`) filled in, in UTC.
pub fn dated(path: &Path, now: SystemTime) -> PathBuf {
    let text = path.to_string_lossy();
    if !text.contains(DATE) && !text.contains(TIME) {
        return path.to_path_buf();
    }
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil(secs / 86_400);
    let rest = secs % 86_400;
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!("{:02}{:02}{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    PathBuf::from(text.replace(DATE, &date).replace(TIME, &time))
}

/// The year, month and day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Removes the oldest reports that `pattern` (a path with `{date}` or `{time}`) names beyond
/// the `keep` newest; returns those removed. Names sort by their date, so the oldest come first.
pub fn prune(pattern: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let text = pattern.to_string_lossy();
    let Some(at) = [DATE, TIME].iter().filter_map(|p| text.find(p)).min() else {
        return Ok(Vec::new());
    };
    let dir = pattern
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Only the file name may hold placeholders; a date in a folder is not pruned.
    let name_at = text.len() - name.len();
    if at < name_at {
        return Ok(Vec::new());
    }
    let prefix = &name[..at - name_at];
    let last = [DATE, TIME]
        .iter()
        .filter_map(|p| name.rfind(p).map(|i| i + p.len()))
        .max()
        .unwrap_or(0);
    let suffix = &name[last..];
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.len() > prefix.len() + suffix.len()
                && n.starts_with(prefix)
                && n.ends_with(suffix)
                && n[prefix.len()..n.len() - suffix.len()]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-')
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    let drop = found.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = found.into_iter().take(drop).collect();
    for path in &removed {
        std::fs::remove_file(path)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_filled_in_utc() {
        // 2026-12-01 02:15:00 UTC.
        let at = UNIX_EPOCH + Duration::from_secs(1_796_091_300);
        assert_eq!(
            dated(Path::new("/var/log/r-{date}-{time}.csv"), at),
            PathBuf::from("/var/log/r-2026-12-01-021500.csv")
        );
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_416), (2023, 2, 28));
        assert_eq!(civil(19_417), (2023, 3, 1));
        assert_eq!(
            dated(Path::new("plain.csv"), at),
            PathBuf::from("plain.csv")
        );
    }

    #[test]
    fn the_oldest_dated_reports_beyond_n_go_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "r-2026-11-28.csv",
            "r-2026-11-29.csv",
            "r-2026-11-30.csv",
            "r-2026-12-01.csv",
            "r-notes.txt",
            "r-notes.csv",
            "other.csv",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let removed = prune(&dir.path().join("r-{date}.csv"), 2).unwrap();
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["r-2026-11-28.csv", "r-2026-11-29.csv"]);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other.csv",
                "r-2026-11-30.csv",
                "r-2026-12-01.csv",
                "r-notes.csv",
                "r-notes.txt"
            ]
        );
    }
}
