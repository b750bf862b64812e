//! The second hardening round: what a hostile file, a hostile server and a careless operator
//! tried on the surfaces added since the first (listing pages, the Pushgateway, the report
//! opened in a spreadsheet, provisioning profiles, legacy encodings, case folding, file modes,
//! the journal's path), each shown by what the operator would see.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::common::*;
use velt_group_sync::emulator::{Call, Emulator, EmulatorConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn in_process() -> Emulator {
    in_process_emulator(EmulatorConfig::default())
}

fn code(run: &InProcess) -> i64 {
    match &run.result {
        Ok(c) => i64::from(*c),
        Err(e) => -i64::from(e.exit_code()),
    }
}

async fn output(mut cmd: std::process::Command) -> std::process::Output {
    cmd.stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_listing_page_is_cut_off_and_removes_nothing() {
    let api = MockServer::start().await;
    // 8 MB of one page, far more than 10 entries can take.
    let users: Vec<String> = (0..200_000)
        .map(|i| format!("{{\"userId\":\"user-{i:08}-padding-padding\"}}"))
        .collect();
    let body = format!(
        "{{\"result\":{{\"status\":\"success\",\"data\":[{}]}}}}",
        users.join(",")
    );
    Mock::given(method("POST"))
        .and(path("/v1/users/get"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/organizations/usergroups/users/add"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"result":{"status":"success","data":{"alice":{"success":true}}}}"#,
        ))
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "groupId,userId\neng,alice\n").unwrap();
    let mut cmd = process(dir.path());
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args(["sync", "in.csv", "--org", "acme", "--base-url", &api.uri()])
        .args([
            "--mode",
            "mirror",
            "--page-size",
            "10",
            "--max-retries",
            "1",
        ]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the answer is larger than 104 KB"),
        "{}",
        stderr(&out)
    );
    let deletes = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/delete"))
        .count();
    assert_eq!(deletes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushgateways_password_never_shows_and_never_crosses_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "groupId,userId\neng,alice\n").unwrap();
    // A gateway that cannot be reached: the warning names it without its password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for format in ["text", "json"] {
        let mut cmd = process(dir.path());
        cmd.args(["--log-format", format, "sync", "in.csv", "--org", "acme"])
            .args(["--emulator", "--metrics-push"])
            .arg(format!("http://pusher:s3cret-Pw@127.0.0.1:{port}"));
        let out = output(cmd).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("could not push the metrics to http://***@127.0.0.1"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{format}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    }
    // Credentials over plain http to another host: refused before anything, like --base-url.
    let mut cmd = process(dir.path());
    cmd.args([
        "sync",
        "in.csv",
        "--org",
        "acme",
        "--emulator",
        "--metrics-push",
    ])
    .arg("http://pusher:s3cret-Pw@gateway.example:9091");
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("plain http to another host"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("s3cret"));
    // The variable's value never shows in --help.
    let mut cmd = process(dir.path());
    cmd.args(["sync", "--help"]).env(
        "VELT_METRICS_PUSH",
        "https://pusher:s3cret-Pw@gateway.example",
    );
    let out = output(cmd).await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_gateways_huge_answers_are_cut_off() {
    let gateway = MockServer::start().await;
    let huge = "x".repeat(64 << 20);
    Mock::given(method("GET"))
        .and(path("/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge.clone()))
        .mount(&gateway)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(500).set_body_string(huge))
        .mount(&gateway)
        .await;
    let dir = tempfile::tempdir().unwrap();
    // An invalid row: the run is not a success, so the gateway's last success is read.
    std::fs::write(
        dir.path().join("in.csv"),
        "groupId,userId\neng,alice\neng,\n",
    )
    .unwrap();
    let mut cmd = process(dir.path());
    cmd.args(["sync", "in.csv", "--org", "acme", "--emulator"])
        .args(["--metrics-push", &gateway.uri()]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let warning = err
        .lines()
        .find(|l| l.contains("could not push the metrics"))
        .expect("a warning");
    assert!(warning.contains("HTTP 500"), "{warning}");
    assert!(warning.len() < 400, "{} bytes", warning.len());
}

#[tokio::test(start_paused = true)]
async fn formulas_in_ids_are_neutralised_and_a_refed_report_reads_them_back() {
    let emu = in_process();
    let evil = r#"=HYPERLINK("http://evil.example/","Click to fix")"#;
    emu.seed("acme", "eng", [evil, "bob"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "groupId,userId\neng,bob\neng,@SUM(A1)\neng,+1-555\n",
    )
    .unwrap();
    let args = [
        "--org",
        "acme",
        "--mode",
        "mirror",
        "--max-removals",
        "100%",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    let text = std::fs::read_to_string(dir.path().join("report.csv")).unwrap();
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(
            !cells.iter().any(|c| {
                let c = c.trim_start_matches('"');
                velt_group_sync::text::looks_like_formula(c)
            }),
            "a cell a spreadsheet would run: {line}"
        );
    }
    assert!(
        text.contains(r#""'=HYPERLINK(""http://evil.example/"""#),
        "{text}"
    );
    assert!(text.contains(",'@SUM(A1),"), "{text}");
    assert_eq!(
        held(&emu),
        ["eng/+1-555", "eng/@SUM(A1)", "eng/bob"]
            .map(String::from)
            .into()
    );
    // The report fed back to undo the run: the original IDs are removed, not the guarded ones.
    std::fs::copy(dir.path().join("report.csv"), dir.path().join("in.csv")).unwrap();
    let args = [
        "--only-status",
        "added",
        "--mode",
        "remove",
        "--max-removals",
        "100%",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert_eq!(
        rows_with(&run.rows, "removed").len(),
        2,
        "{:?}",
        statuses(&run.rows)
    );
    assert_eq!(held(&emu), ["eng/bob"].map(String::from).into());
}

#[tokio::test(start_paused = true)]
async fn names_and_e_mails_with_invisible_characters_or_no_end_are_invalid() {
    let emu = in_process();
    emu.seed_org_user("acme", "someone", "Some One", "someone@x.com");
    let dir = tempfile::tempdir().unwrap();
    let long = "A".repeat(200_000);
    std::fs::write(
        dir.path().join("in.csv"),
        format!(
            "userId,name,email,groupId\n\
             u1,Ann\u{7}Bell,u1@x.com,eng\n\
             u2,Bob\u{202E}moc.liame,u2@x.com,eng\n\
             u3,{long},u3@x.com,eng\n\
             u4,Dan Day,u4@x.com\u{202E},eng\n\
             u5,Eve East,u5@x.com,eng\n"
        ),
    )
    .unwrap();
    let run = sync_in_process(&emu, dir.path(), &["--org", "acme", "--provision-users"]).await;
    assert_eq!(code(&run), 1, "{:?}", run.result);
    let invalid: Vec<String> = run
        .rows
        .iter()
        .filter(|r| r["status"] == "invalid")
        .map(|r| format!("{} {}", r["line"], r["message"]))
        .collect();
    assert_eq!(invalid.len(), 4, "{invalid:?}");
    assert!(invalid[0].starts_with("2 name `Ann\\u{7}Bell` holds the invisible character U+0007"));
    assert!(invalid[1].starts_with("3 name "), "{}", invalid[1]);
    assert!(invalid[1].contains("U+202E"), "{}", invalid[1]);
    assert!(
        invalid[2].starts_with("4 name is 200000 characters long"),
        "{}",
        invalid[2]
    );
    assert!(invalid[3].starts_with("5 email "), "{}", invalid[3]);
    let users = emu.org_users("acme");
    assert!(users.contains_key("u5"));
    for u in ["u1", "u2", "u3", "u4"] {
        assert!(!users.contains_key(u), "{u} was sent");
    }
}

/// A zip with `entry`'s text changed by `edit`, every other entry as it was.
fn rewrite_zip(zip_bytes: &[u8], entry: &str, edit: impl Fn(&str) -> String) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        if name == entry {
            data = edit(std::str::from_utf8(&data).unwrap()).into_bytes();
        }
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn a_sheet_name_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = rust_xlsxwriter::Workbook::new();
    book.add_worksheet().set_name("Roster").unwrap();
    let plain = book.save_to_buffer().unwrap();
    // Excel's writer refuses a newline in a sheet name; a hostile file just has one.
    let forged = rewrite_zip(&plain, "xl/workbook.xml", |xml| {
        xml.replace(
            "name=\"Roster\"",
            "name=\"Roster&#10;velt-group-sync: 0 memberships\"",
        )
    });
    std::fs::write(dir.path().join("in.xlsx"), forged).unwrap();
    let out = bin(dir.path())
        .args(["validate", "in.xlsx", "--org", "acme"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("in.xlsx:Roster\\nvelt-group-sync: 0 memberships:1: the sheet is empty"),
        "{err}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("velt-group-sync: 0")),
        "{err}"
    );
}

#[test]
fn malformed_bytes_in_any_encoding_stop_the_read_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    // UTF-16LE with a BOM, a lone surrogate in line 3's user ID.
    let mut utf16 = b"\xFF\xFE".to_vec();
    let units: Vec<u16> = "groupId,userId\neng,alice\neng,b"
        .encode_utf16()
        .chain([0xD800])
        .chain("b\n".encode_utf16())
        .collect();
    for u in units {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(dir.path().join("utf16.csv"), utf16).unwrap();
    // Shift_JIS: a lead byte with no trail at line 2.
    std::fs::write(
        dir.path().join("sjis.csv"),
        b"groupId,userId\neng,\x81\neng,c\n",
    )
    .unwrap();
    for (file, extra, line, encoding) in [
        ("utf16.csv", None, 3, "UTF-16LE"),
        ("sjis.csv", Some("shift_jis"), 2, "Shift_JIS"),
    ] {
        let mut cmd = bin(dir.path());
        cmd.args(["validate", file, "--org", "acme"]);
        if let Some(e) = extra {
            cmd.args(["--encoding", e]);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{file}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{file}:{line}: bytes that are not valid {encoding} text"
            )),
            "{file}: {err}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn case_folding_is_ascii_only() {
    let emu = in_process();
    let dir = tempfile::tempdir().unwrap();
    // The Kelvin sign folds to `k` under Unicode rules: two users would become one.
    std::fs::write(
        dir.path().join("in.csv"),
        "groupId,userId\neng,\u{212A}ate@x.com\neng,KATE@x.com\n",
    )
    .unwrap();
    let args = ["--org", "acme", "--user-id-case", "lower"];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    assert_eq!(
        held(&emu),
        ["eng/kate@x.com", "eng/\u{212A}ate@x.com"]
            .map(String::from)
            .into()
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(start_paused = true)]
async fn files_with_e_mail_addresses_are_private_and_keep_an_operators_mode() {
    let emu = in_process();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "groupId,userId\neng,a@x.com\n").unwrap();
    let state = dir.path().join("state");
    let metrics = dir.path().join("m.prom");
    let args = [
        "--org",
        "acme",
        "--state",
        state.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(code(&run), 0, "{:?}", run.result);
    let report = dir.path().join("report.csv");
    assert_eq!(mode(&report), 0o600, "report");
    assert_eq!(mode(&state), 0o600, "journal");
    // The metrics file is for node_exporter: readable by others. (Written by the binary's
    // caller, not `sync`: checked through the library's writer.)
    velt_group_sync::metrics::write(
        &metrics,
        &run.stats,
        0,
        std::time::Duration::from_secs(1),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(mode(&metrics), 0o644, "metrics");
    // An operator's chmod survives the next run.
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o640)).unwrap();
    sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(mode(&report), 0o640);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_as_the_journal_is_refused() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "groupId,userId\neng,alice\n").unwrap();
    let fifo = dir.path().join("state");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut cmd = process(dir.path());
    cmd.env("VELT_API_KEY", API_KEY)
        .env("VELT_AUTH_TOKEN", AUTH_TOKEN)
        .args([
            "sync",
            "in.csv",
            "--org",
            "acme",
            "--base-url",
            &emu.base_url(),
        ])
        .args(["--state", fifo.to_str().unwrap()]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--state must be a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(emu.calls(Call::Add), 0, "nothing sent");
}

#[test]
fn minified_json_is_bounded_by_element_not_by_line() {
    let dir = tempfile::tempdir().unwrap();
    // Graph's answer on one line of 3 MB, with a skipped member holding a 200 KB string.
    let users: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"userId":"user-{i:06}","groupId":"g{}"}}"#, i % 7))
        .collect();
    let json = format!(
        r#"{{"@odata.context":"{}","value":[{}]}}"#,
        "c".repeat(200_000),
        users.join(",")
    );
    assert!(json.len() > 3 << 20 && !json.contains('\n'));
    std::fs::write(dir.path().join("graph.json"), &json).unwrap();
    let out = bin(dir.path())
        .args(["validate", "graph.json", "--org", "acme"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("100000 memberships"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // One element past --max-record-bytes is still refused, at its line.
    std::fs::write(
        dir.path().join("long.json"),
        format!(
            r#"{{"value":[{{"userId":"a","groupId":"g"}},{{"userId":"{}","groupId":"g"}}]}}"#,
            "b".repeat(2000)
        ),
    )
    .unwrap();
    let out = bin(dir.path())
        .args([
            "validate",
            "long.json",
            "--org",
            "acme",
            "--max-record-bytes",
            "1024",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("long.json:1: the record starting here is longer than 1024 bytes"),
        "{}",
        stderr(&out)
    );
    // Two arrays under the records path: which holds the records is unclear.
    std::fs::write(
        dir.path().join("twice.json"),
        r#"{"value":[{"userId":"a","groupId":"g"}],"value":[{"userId":"evil","groupId":"g"}]}"#,
    )
    .unwrap();
    let out = bin(dir.path())
        .args([
            "validate",
            "twice.json",
            "--org",
            "acme",
            "--records-path",
            "value",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the object holds `value` twice"),
        "{}",
        stderr(&out)
    );
}
