//! The files HR systems and admins actually produce: Excel workbooks with title rows,
//! Windows-1252 and UTF-16 text, Entra's bulk template. Each test asserts the exact
//! memberships planned, or the message that says which flag to use.

use std::path::Path;

use crate::common::*;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};

/// `org/group/user@line` for each planned row of a dry run (in-process), and the exit code and
/// the error message.
fn plan(dir: &Path, input: &str, args: &[&str]) -> (i32, Vec<String>, String) {
    let emu = in_process_emulator(Default::default());
    let mut argv = vec![input, "--dry-run", "--report", "out.csv"];
    argv.extend_from_slice(args);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(sync_argv(Server::Emulator(&emu), dir, &argv));
    (run.code(), planned(&run.rows), run.error())
}

/// The same, through the binary's standard input.
fn plan_stdin(dir: &Path, args: &[&str], stdin: Vec<u8>) -> (i32, Vec<String>, String) {
    let mut cmd = bin(dir);
    cmd.args(["sync", "-", "--dry-run", "--report", "out.csv"])
        .args(args)
        .write_stdin(stdin);
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rows = if code < 2 {
        read_report(&dir.join("out.csv"))
    } else {
        Vec::new()
    };
    (code, planned(&rows), stderr)
}

fn planned(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{}/{}/{}@{}",
                r["organizationId"], r["organizationUserGroupId"], r["userId"], r["line"]
            )
        })
        .collect()
}

/// An ADP/Workday-style report: a title, a run date and a blank row above the header;
/// numeric employee IDs and a date column.
fn report_workbook(path: &Path) {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet().set_name("Report").unwrap();
    sheet.write(0, 0, "Employee Roster").unwrap();
    sheet.write(1, 0, "Run date: 27 Nov 2026").unwrap();
    for (c, h) in ["Employee ID", "Email", "Department", "Hire Date"]
        .iter()
        .enumerate()
    {
        sheet.write(3, c as u16, *h).unwrap();
    }
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let rows = [
        (1001.0, "ada@acme.example", "Engineering"),
        (1002.0, "grace@acme.example", "Research"),
    ];
    for (i, (id, email, dept)) in rows.iter().enumerate() {
        let r = 4 + i as u32;
        sheet.write(r, 0, *id).unwrap();
        sheet.write(r, 1, *email).unwrap();
        sheet.write(r, 2, *dept).unwrap();
        let d = ExcelDateTime::from_ymd(2020, 3, 1 + i as u8).unwrap();
        sheet.write_with_format(r, 3, &d, &date).unwrap();
    }
    let other = book.add_worksheet().set_name("Leavers").unwrap();
    other.write(0, 0, "Employee ID").unwrap();
    other.write(0, 1, "Department").unwrap();
    other.write(1, 0, 2001).unwrap();
    other.write(1, 1, "Sales").unwrap();
    book.save(path).unwrap();
}

#[test]
fn a_workbook_with_title_rows_reads_cells_as_text_at_their_sheet_rows() {
    let dir = tempfile::tempdir().unwrap();
    report_workbook(&dir.path().join("roster.xlsx"));
    let args = [
        "--org",
        "acme",
        "--user-column",
        "Employee ID",
        "--group-column",
        "Department",
    ];
    let (code, rows, stderr) = plan(dir.path(), "roster.xlsx", &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        rows,
        ["acme/Engineering/1001@5", "acme/Research/1002@6"],
        "digits, no .0"
    );
    // A date column is ISO 8601 text (here as the group, to see it).
    let (_, rows, _) = plan(
        dir.path(),
        "roster.xlsx",
        &[
            "--org",
            "acme",
            "--user-column",
            "Email",
            "--group-column",
            "Hire Date",
        ],
    );
    assert_eq!(
        rows,
        [
            "acme/2020-03-01/ada@acme.example@5",
            "acme/2020-03-02/grace@acme.example@6"
        ]
    );
    // Another sheet by name; through standard input, found by its first bytes.
    let bytes = std::fs::read(dir.path().join("roster.xlsx")).unwrap();
    let (code, rows, stderr) = plan_stdin(
        dir.path(),
        &[
            "--org",
            "acme",
            "--user-column",
            "Employee ID",
            "--group-column",
            "Department",
            "--sheet",
            "leavers",
        ],
        bytes,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, ["acme/Sales/2001@2"]);
    let (code, _, stderr) = plan(
        dir.path(),
        "roster.xlsx",
        &["--org", "acme", "--sheet", "Nope"],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no sheet named `Nope` (sheets: Report, Leavers)"),
        "{stderr}"
    );
}

#[test]
fn a_german_excel_csv_in_windows_1252_with_semicolons() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"Benutzer;Gruppe;Abteilung\r\nj\xfcrgen@acme.example;Entwicklung;F\xfchrung\r\nm\xfcller@acme.example;Vertrieb;Au\xdfendienst\r\n";
    std::fs::write(dir.path().join("export.csv"), text).unwrap();
    let args = [
        "--org",
        "acme",
        "--user-column",
        "Benutzer",
        "--group-column",
        "Abteilung",
    ];
    let (code, _, stderr) = plan(dir.path(), "export.csv", &args);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("export.csv:2: not valid UTF-8; most likely a legacy single-byte encoding")
            && stderr.contains("--encoding windows-1252"),
        "{stderr}"
    );
    let mut with = args.to_vec();
    with.extend(["--encoding", "windows-1252"]);
    let (code, rows, stderr) = plan(dir.path(), "export.csv", &with);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        rows,
        [
            "acme/Führung/jürgen@acme.example@2",
            "acme/Außendienst/müller@acme.example@3"
        ]
    );
}

fn utf16le(text: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

#[test]
fn excel_unicode_text_is_utf16le_tab_delimited_with_or_without_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let text = "userId\tgroupId\r\nzoë@acme.example\tdesign\r\n李@acme.example\tdesign\r\n";
    std::fs::write(dir.path().join("bom.txt"), utf16le(text, true)).unwrap();
    std::fs::write(dir.path().join("nobom.txt"), utf16le(text, false)).unwrap();
    let expected = [
        "acme/design/zoë@acme.example@2",
        "acme/design/李@acme.example@3",
    ];
    let (code, rows, stderr) = plan(dir.path(), "bom.txt", &["--org", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, expected);
    let (code, _, stderr) = plan(dir.path(), "nobom.txt", &["--org", "acme"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("UTF-16 text without a byte order mark; give --encoding utf-16le"),
        "{stderr}"
    );
    let (code, rows, stderr) = plan(
        dir.path(),
        "nobom.txt",
        &["--org", "acme", "--encoding", "utf-16le"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, expected);
}

#[test]
fn entras_template_skips_its_version_line_and_example_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("members.csv"),
        "version:v1.0\n\
         Member object ID or user principal name [memberObjectIdOrUpn] Required\n\
         Example: chris@contoso.com\n\
         ada@acme.example\n\
         grace@acme.example\n",
    )
    .unwrap();
    let args = [
        "--org",
        "acme",
        "--group",
        "eng",
        "--user-column",
        "memberObjectIdOrUpn",
    ];
    let (code, rows, stderr) = plan(dir.path(), "members.csv", &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        rows,
        [
            "acme/eng/ada@acme.example@4",
            "acme/eng/grace@acme.example@5"
        ]
    );
}

#[test]
fn header_row_names_the_header_line_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    // The first line would fit too (it names userId), but the real header is line 3.
    std::fs::write(
        dir.path().join("in.csv"),
        "userId\nnote\nuser,groupId\nu1,g\n",
    )
    .unwrap();
    let (code, rows, stderr) = plan(dir.path(), "in.csv", &["--org", "o", "--header-row", "3"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, ["o/g/u1@4"]);
}

#[test]
fn workday_and_graph_wrapped_json_is_unwrapped() {
    let dir = tempfile::tempdir().unwrap();
    // Workday RaaS: the records under Report_Entry, pretty-printed (also on stdin).
    let workday = r#"{
  "Report_Entry": [
    {"Employee_ID": "21001", "Cost_Center": "CC-100", "Worker_Status": "Active"},
    {"Employee_ID": "21002", "Cost_Center": "CC-200", "Worker_Status": "Terminated"}
  ]
}"#;
    std::fs::write(dir.path().join("workday.json"), workday).unwrap();
    let args = [
        "--org",
        "acme",
        "--user-column",
        "Employee_ID",
        "--group-column",
        "Cost_Center",
        "--include",
        "Worker_Status=Active",
    ];
    let (code, rows, stderr) = plan(dir.path(), "workday.json", &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, ["acme/CC-100/21001@3"]);
    let (code, rows, stderr) = plan_stdin(dir.path(), &args, workday.as_bytes().to_vec());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, ["acme/CC-100/21001@3"]);
    let mut named = args.to_vec();
    named.extend(["--records-path", "Report_Entry"]);
    let (_, rows, _) = plan(dir.path(), "workday.json", &named);
    assert_eq!(rows, ["acme/CC-100/21001@3"]);

    // Graph: `value`, beside an @odata.context string and a nextLink.
    let graph = r#"{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
"value": [{"userPrincipalName": "ada@acme.example", "department": "Eng"}],
"@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$skiptoken=x"}"#;
    std::fs::write(dir.path().join("graph.json"), graph).unwrap();
    let args = [
        "--org",
        "acme",
        "--user-column",
        "userPrincipalName",
        "--group-column",
        "department",
    ];
    let (code, rows, stderr) = plan(dir.path(), "graph.json", &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, ["acme/Eng/ada@acme.example@2"]);

    // A dotted path reaches an array nested in objects; other members are skipped unread.
    std::fs::write(
        dir.path().join("nested.json"),
        r#"{"meta": {"count": 1, "tags": ["a", {"b": "]"}]},
  "data": {"page": 1, "users": [{"userPrincipalName": "bob@acme.example", "department": "Ops"}]}}"#,
    )
    .unwrap();
    let mut nested = args.to_vec();
    nested.extend(["--records-path", "data.users"]);
    let (code, rows, stderr) = plan(dir.path(), "nested.json", &nested);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows, ["acme/Ops/bob@acme.example@2"]);

    // A wrong path, and an object without records, say what the object holds.
    let mut wrong = args.to_vec();
    wrong.extend(["--records-path", "data.users"]);
    let (code, _, stderr) = plan(dir.path(), "graph.json", &wrong);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "no array at `data.users` (the object's keys: @odata.context, value, @odata.nextLink)"
        ),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("one.json"),
        r#"{"userId": "u", "groupId": "g"}"#,
    )
    .unwrap();
    let (code, _, stderr) = plan(dir.path(), "one.json", &["--org", "acme"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the object holds no array of records (its keys: userId, groupId)")
            && stderr.contains("--format jsonl"),
        "{stderr}"
    );
}

#[test]
fn scim_users_and_groups_through_field_paths() {
    let dir = tempfile::tempdir().unwrap();
    let users = r#"{
  "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
  "totalResults": 2,
  "Resources": [
    {"id": "1", "userName": "ada", "active": true,
     "emails": [{"value": "ada@acme.example", "primary": true}, {"value": "ada@old.example"}],
     "groups": [{"value": "g1", "display": "Engineering"}, {"value": "g2", "display": "Leads"}]},
    {"id": "2", "userName": "bob", "active": false,
     "emails": [{"value": "bob@acme.example"}],
     "groups": [{"value": "g1", "display": "Engineering"}]}
  ]
}"#;
    std::fs::write(dir.path().join("users.json"), users).unwrap();
    let args = [
        "--org",
        "acme",
        "--user-column",
        "emails[0].value",
        "--group-column",
        "groups[].display",
        "--include",
        "active=true",
    ];
    let (code, rows, stderr) = plan(dir.path(), "users.json", &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        rows,
        [
            "acme/Engineering/ada@acme.example@5",
            "acme/Leads/ada@acme.example@5"
        ]
    );

    let groups = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
"Resources": [
  {"id": "g1", "displayName": "Engineering", "members": [{"value": "u1"}, {"value": "u2"}]},
  {"id": "g2", "displayName": "Leads", "members": [{"value": "u1"}]}
]}"#;
    std::fs::write(dir.path().join("groups.json"), groups).unwrap();
    let args = [
        "--org",
        "acme",
        "--records-path",
        "Resources",
        "--group-column",
        "displayName",
        "--user-column",
        "members[].value",
    ];
    let (code, rows, stderr) = plan(dir.path(), "groups.json", &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        rows,
        [
            "acme/Engineering/u1@3",
            "acme/Engineering/u2@3",
            "acme/Leads/u1@4"
        ]
    );
}

/// `--header-row N` means line N itself in a CSV and row N itself in a workbook: the same
/// rows are read, and a blank line N is an error naming it in both.
#[test]
fn header_row_means_the_same_in_csv_and_workbooks() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        vec!["Employee Roster"],
        vec!["userId"],
        vec![],
        vec!["user", "groupId"],
        vec!["u1", "g"],
    ];
    let csv: String = lines.iter().map(|l| format!("{}\n", l.join(","))).collect();
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (r, cells) in lines.iter().enumerate() {
        for (c, v) in cells.iter().enumerate() {
            sheet.write_string(r as u32, c as u16, *v).unwrap();
        }
    }
    book.save(dir.path().join("in.xlsx")).unwrap();
    for file in ["in.csv", "in.xlsx"] {
        let (code, rows, stderr) = plan(dir.path(), file, &["--org", "o", "--header-row", "4"]);
        assert_eq!(code, 0, "{file}: {stderr}");
        assert_eq!(rows, ["o/g/u1@5"], "{file}");
        let (code, _, stderr) = plan(dir.path(), file, &["--org", "o", "--header-row", "3"]);
        assert_eq!(code, 2, "{file}");
        assert!(
            stderr.contains(":3: --header-row 3: line 3 is blank, or the input ends before it"),
            "{file}: {stderr}"
        );
    }
}

/// When no row names the columns the run needs, the message names the row taken (the one
/// naming the most columns, not the title above it) and lists the rows considered, with their
/// line numbers, in a workbook and in CSV alike.
#[test]
fn without_a_header_row_the_rows_considered_are_listed_not_a_title_as_columns() {
    let dir = tempfile::tempdir().unwrap();
    report_workbook(&dir.path().join("roster.xlsx"));
    std::fs::write(
        dir.path().join("roster.csv"),
        "Employee Roster\nRun date: 27 Nov 2026\n\nEmployee ID,Email,Department,Hire Date\n1001,ada@acme.example,Engineering,2020-03-01\n",
    )
    .unwrap();
    for file in ["roster.xlsx", "roster.csv"] {
        // No user column is named, and none of the usual names is there.
        let (code, _, error) = plan(dir.path(), file, &["--org", "acme", "--group", "g"]);
        assert_eq!(code, 2, "{file}: {error}");
        // The workbook's place names its sheet too: `roster.xlsx:Report:4:`.
        let at = if file.ends_with(".xlsx") {
            ":Report:4: "
        } else {
            ":4: "
        };
        assert!(error.contains(&format!("{file}{at}")), "{file}: {error}");
        assert!(
            error.contains("columns: Employee ID, Email, Department, Hire Date"),
            "{file}: {error}"
        );
        assert!(
            error.contains(
                "lines considered: 1: Employee Roster | 2: Run date: 27 Nov 2026 | 4: Employee ID, Email, Department, Hire Date; if the header is another line, name it with --header-row N"
            ),
            "{file}: {error}"
        );
        assert!(
            !error.contains("columns: Employee Roster"),
            "{file}: {error}"
        );
    }
}
