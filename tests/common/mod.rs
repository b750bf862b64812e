//! Helpers shared by the integration tests: a command for the real binary with a clean
//! environment, and the report read back as rows.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub const API_KEY: &str = "test-key-Zq81vXe-distinctive";
pub const AUTH_TOKEN: &str = "test-token-Kp44uWm-distinctive";

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// The binary, run in `dir`, with no VELT_* variables from the outer environment.
pub fn bin(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("velt-group-sync").expect("binary built");
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("VELT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The binary with the test credentials set.
pub fn bin_with_credentials(dir: &Path) -> Command {
    let mut cmd = bin(dir);
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN);
    cmd
}

/// The report's columns, in their documented order (spelt out here, not taken from the
/// library, so that a change to the contract fails the tests). `action` was appended after
/// the first nine so that their readers keep working.
pub const REPORT_COLUMNS: [&str; 10] = [
    "organizationId",
    "organizationUserGroupId",
    "userId",
    "status",
    "message",
    "errorStatus",
    "httpStatus",
    "attempts",
    "line",
    "action",
];

pub type Row = HashMap<String, String>;

/// Reads a CSV report; also checks the header is exactly the documented one.
pub fn read_report(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("report exists");
    parse_csv_report(&text)
}

pub fn parse_csv_report(text: &str) -> Vec<Row> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), REPORT_COLUMNS);
    reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// `org/group/user=status` for each row, in report order.
pub fn statuses(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{}/{}/{}={}",
                r["organizationId"], r["organizationUserGroupId"], r["userId"], r["status"]
            )
        })
        .collect()
}

/// The most requests that arrived within any window of that length.
pub fn max_in_window(times: &[std::time::Duration], window: std::time::Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..t.len() {
        while t[end] - t[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}
