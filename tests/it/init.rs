//! `init` (issue 29, item 1) on exports as the HR and identity systems write them: the user
//! column it picks is the one an admin would (a work e-mail or a login, never a manager's or a
//! personal address), group columns and a leavers' filter where the export has them, the
//! encoding and title rows as `sync` needs them, and a configuration `validate` reads.

use std::path::Path;

use crate::common::*;
use velt_group_sync::init::{Reading, Request, Written};

struct Case {
    system: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    user: &'static str,
    groups: &'static [&'static str],
    /// A line the configuration holds (a filter, an encoding, a separator).
    holds: &'static [&'static str],
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn utf16le_with_bom(s: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

fn adp_workbook() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write(0, 0, "Employee Roster").unwrap();
    sheet.write(1, 0, "Run date: 30 Nov 2026").unwrap();
    let rows: [[&str; 7]; 4] = [
        [
            "Associate ID",
            "Legal First Name",
            "Legal Last Name",
            "Work Contact: Work Email",
            "Personal Contact: Personal Email",
            "Home Department Description",
            "Position Status",
        ],
        [
            "A1",
            "Ada",
            "Lovelace",
            "ada@acme.example",
            "ada@home.example",
            "Engineering",
            "Active",
        ],
        [
            "A2",
            "Alan",
            "Turing",
            "alan@acme.example",
            "alan@home.example",
            "Research",
            "Terminated",
        ],
        [
            "A3",
            "Grace",
            "Hopper",
            "grace@acme.example",
            "g@home.example",
            "Engineering",
            "Active",
        ],
    ];
    for (r, cells) in rows.iter().enumerate() {
        for (c, v) in cells.iter().enumerate() {
            sheet.write_string(r as u32 + 3, c as u16, *v).unwrap();
        }
    }
    book.save_to_buffer().unwrap()
}

fn cases() -> Vec<Case> {
    let bamboo = std::fs::read(samples().join("hr/bamboohr-employees.csv")).unwrap();
    let adobe = std::fs::read(samples().join("hr/adobe-users-file.csv")).unwrap();
    let personio = encoding_rs::WINDOWS_1252
        .encode(
            "ID;First name;Last name;Email;Department;Office;Supervisor;Status\n\
             1;Jürgen;Müller;juergen@acme.example;Vertrieb;Zürich;Anna Groß;active\n\
             2;Anna;Groß;anna@acme.example;Geschäftsführung;München;;active\n\
             3;Jörg;Weiß;joerg@acme.example;Vertrieb;Zürich;Anna Groß;inactive\n",
        )
        .0
        .into_owned();
    vec![
        Case {
            system: "BambooHR",
            file: "employees.csv",
            bytes: bamboo,
            user: "Work Email",
            groups: &["Department", "Location"],
            holds: &[
                "include = [\"Status=Active\"]",
                "group-map = \"group-map.csv\"",
            ],
        },
        Case {
            system: "Workday",
            file: "workers.csv",
            bytes: text(
                "Employee_ID,Worker,Email_Address_-_Primary_Home,Email_Address_-_Primary_Work,Manager_Email,Supervisory_Organization,Location,Active_Status\n\
                 21001,Ada Lovelace,ada@home.example,ada@acme.example,grace@acme.example,Engineering (Grace Hopper),Berlin,1\n\
                 21002,Grace Hopper,grace@home.example,grace@acme.example,ceo@acme.example,Engineering (Grace Hopper),Berlin,1\n\
                 21003,Alan Turing,alan@home.example,alan@acme.example,grace@acme.example,Research (Alan Turing),London,0\n",
            ),
            user: "Email_Address_-_Primary_Work",
            groups: &["Supervisory_Organization", "Location"],
            holds: &["include = [\"Active_Status=1\"]"],
        },
        Case {
            system: "Microsoft Entra",
            file: "users.csv",
            bytes: text(
                "userPrincipalName,displayName,surname,mail,givenName,objectId,userType,jobTitle,department,accountEnabled,alternateEmailAddress\n\
                 ada@acme.example,Ada Lovelace,Lovelace,ada@acme.example,Ada,1a,Member,Engineer,Engineering,True,ada@gmail.example\n\
                 grace@acme.example,Grace Hopper,Hopper,grace@acme.example,Grace,2b,Member,Director,Engineering,True,\n\
                 guest_x#EXT#@acme.example,Guest,X,x@partner.example,X,3c,Guest,,Sales,True,\n\
                 alan@acme.example,Alan Turing,Turing,alan@acme.example,Alan,4d,Member,Researcher,Research,False,\n",
            ),
            user: "userPrincipalName",
            groups: &["department"],
            holds: &["include = [\"userType=Member\", \"accountEnabled=True\"]"],
        },
        Case {
            system: "GAM print users",
            file: "gam-users.csv",
            bytes: text(
                "primaryEmail,name.givenName,name.familyName,name.fullName,isAdmin,suspended,orgUnitPath\n\
                 ada@acme.example,Ada,Lovelace,Ada Lovelace,False,False,/Engineering\n\
                 grace@acme.example,Grace,Hopper,Grace Hopper,True,False,/Engineering\n\
                 alan@acme.example,Alan,Turing,Alan Turing,False,True,/Research\n",
            ),
            user: "primaryEmail",
            groups: &["orgUnitPath"],
            holds: &[
                "include = [\"suspended=False\"]",
                "name-column = \"name.fullName\"",
            ],
        },
        Case {
            system: "GAM group members",
            file: "members.csv",
            bytes: text(
                "group,type,role,id,status,email\n\
                 eng@acme.example,USER,MEMBER,1001,ACTIVE,ada@acme.example\n\
                 eng@acme.example,USER,MANAGER,1002,SUSPENDED,grace@acme.example\n\
                 eng@acme.example,GROUP,MEMBER,2001,,design@acme.example\n\
                 design@acme.example,USER,OWNER,1004,ACTIVE,barbara@acme.example\n",
            ),
            user: "email",
            groups: &["group"],
            holds: &["include = [\"type=USER\", \"status=ACTIVE\"]"],
        },
        Case {
            system: "Adobe User Sync",
            file: "adobe.csv",
            bytes: adobe,
            user: "email",
            groups: &["groups"],
            holds: &["group-separator = \",\""],
        },
        Case {
            system: "Slack",
            file: "slack.csv",
            bytes: text(
                "username,email,status,billing-active,has-2fa,has-sso,userid,fullname,displayname,expiration-timestamp\n\
                 ada,ada@acme.example,Member,1,1,0,U01,Ada Lovelace,ada,\n\
                 grace,grace@acme.example,Admin,1,1,0,U02,Grace Hopper,grace,\n\
                 old,old@acme.example,Deactivated,0,0,0,U03,Old Timer,old,\n\
                 slackbot,,Bot,0,0,0,USLACKBOT,Slackbot,slackbot,\n",
            ),
            user: "email",
            groups: &[],
            holds: &["exclude = [\"status=Deactivated,Bot\"]"],
        },
        Case {
            system: "Personio (windows-1252, semicolons)",
            file: "personio.csv",
            bytes: personio,
            user: "Email",
            groups: &["Department", "Office"],
            holds: &[
                "encoding = \"windows-1252\"",
                "include = [\"Status=active\"]",
            ],
        },
        Case {
            system: "HiBob (UTF-16 with a BOM)",
            file: "hibob.csv",
            bytes: utf16le_with_bom(
                "Employee ID,Display name,Email,Reports to email,Department,Site,Lifecycle status\r\n\
                 1,Ada Lovelace,ada@acme.example,grace@acme.example,Engineering,Berlin,Employed\r\n\
                 2,Grace Hopper,grace@acme.example,,Engineering,Berlin,Employed\r\n\
                 3,Alan Turing,alan@acme.example,grace@acme.example,Research,London,Terminated\r\n",
            ),
            user: "Email",
            groups: &["Department", "Site"],
            holds: &["include = [\"Lifecycle status=Employed\"]"],
        },
        Case {
            system: "ADP (workbook, title rows)",
            file: "adp.xlsx",
            bytes: adp_workbook(),
            user: "Work Contact: Work Email",
            groups: &["Home Department Description"],
            holds: &["include = [\"Position Status=Active\"]", "above the header"],
        },
        Case {
            system: "SCIM",
            file: "scim.json",
            bytes: text(
                r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":2,
                "Resources":[
                 {"id":"2819c223","userName":"bjensen@example.com","displayName":"Babs Jensen","active":true,
                  "emails":[{"value":"bjensen@example.com","type":"work"}]},
                 {"id":"9a1b22f0","userName":"jsmith@example.com","displayName":"Jim Smith","active":false,
                  "emails":[{"value":"jsmith@example.com","type":"work"}]}]}"#,
            ),
            user: "userName",
            groups: &[],
            holds: &[
                "records-path = \"Resources\"",
                "include = [\"active=true\"]",
            ],
        },
        Case {
            system: "Okta",
            file: "okta.csv",
            bytes: text(
                "Username,First name,Last name,Primary email,Secondary email,Status,Manager,Department\n\
                 ada@acme.example,Ada,Lovelace,ada@acme.example,ada@home.example,ACTIVE,Grace Hopper,Engineering\n\
                 grace@acme.example,Grace,Hopper,grace@acme.example,,ACTIVE,,Engineering\n\
                 alan@acme.example,Alan,Turing,alan@acme.example,,DEPROVISIONED,Grace Hopper,Research\n",
            ),
            user: "Username",
            groups: &["Department"],
            holds: &["include = [\"Status=ACTIVE\"]"],
        },
    ]
}

fn init(dir: &Path, file: &str) -> Result<Written, String> {
    velt_group_sync::init::run(&Request {
        export: &dir.join(file),
        org: Some("acme"),
        out: &dir.join("velt-group-sync.toml"),
        reading: Reading::default(),
    })
}

#[test]
fn init_picks_the_columns_an_admin_would_on_real_exports() {
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(case.file), &case.bytes).unwrap();
        let written =
            init(dir.path(), case.file).unwrap_or_else(|e| panic!("{}: {e}", case.system));
        let config = std::fs::read_to_string(&written.config).unwrap();
        assert_eq!(
            written.user_column.as_deref(),
            Some(case.user),
            "{}: {config}",
            case.system
        );
        assert_eq!(
            written.group_columns, case.groups,
            "{}: {config}",
            case.system
        );
        for line in case.holds {
            assert!(
                config.contains(line),
                "{}: no `{line}` in:\n{config}",
                case.system
            );
        }
        // The file is one `validate` reads: every key known, every value its flag's.
        let argv: Vec<std::ffi::OsString> = vec![
            "velt-group-sync".into(),
            "validate".into(),
            dir.path().join(case.file).into(),
            "--config".into(),
            written.config.clone().into(),
        ];
        let parsed = velt_group_sync::cli::config::parse(argv);
        assert!(parsed.is_ok(), "{}: {parsed:?}\n{config}", case.system);
        // Without a group map to fill in, the export reads with it as it stands.
        if written.map.is_none() && !case.groups.is_empty() {
            let out = bin(dir.path())
                .args(["validate", case.file, "--config", "velt-group-sync.toml"])
                .output()
                .unwrap();
            assert!(
                out.status.code() == Some(0) || out.status.code() == Some(1),
                "{}: {}",
                case.system,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The binary: what it found and chose, the map to fill in, the next command; never over an
/// existing file; and once the map is filled in, the configuration validates.
#[test]
fn init_prints_its_findings_writes_a_map_to_fill_in_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        samples().join("hr/bamboohr-employees.csv"),
        dir.path().join("employees.csv"),
    )
    .unwrap();
    let out = bin(dir.path())
        .args(["init", "employees.csv", "--org", "acme"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for said in [
        "employees.csv: CSV (delimiter `,`), UTF-8, header on line 1, 5 rows, 7 columns",
        "Work Email  Ada.Lovelace@acme.example, grace@acme.example",
        "user column    Work Email",
        "group columns  Department, Location",
        "filter         include Status=Active",
        "wrote velt-group-sync.toml and group-map.csv",
        "check: not readable with it yet: group-map.csv:2: no group ID for `Engineering & Product`",
        "velt-group-sync validate employees.csv --config velt-group-sync.toml",
    ] {
        assert!(stdout.contains(said), "no `{said}` in:\n{stdout}");
    }
    let map = std::fs::read_to_string(dir.path().join("group-map.csv")).unwrap();
    assert_eq!(
        map,
        "source,organizationUserGroupId,name,column\n\
         Engineering & Product,,Engineering & Product,Department\n\
         Research,,Research,Department\n\
         São Paulo,,São Paulo,Location\n\
         Berlin,,Berlin,Location\n\
         Remote,,Remote,Location\n"
    );
    let again = bin(dir.path())
        .args(["init", "employees.csv", "--org", "acme"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("init never overwrites"));
    // A second configuration beside the first leaves the map as it is.
    let second = bin(dir.path())
        .args([
            "init",
            "employees.csv",
            "--org",
            "acme",
            "--out",
            "second.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&second.stdout)
            .contains("group-map.csv was there already and was left as it is")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("group-map.csv")).unwrap(),
        map
    );
    // The admin fills in the map: the configuration validates.
    let filled = map
        .replace("Engineering & Product,,", "Engineering & Product,eng,")
        .replace("Research,,", "Research,research,")
        .replace("São Paulo,,", "São Paulo,office-sao-paulo,")
        .replace("Berlin,,", "Berlin,office-berlin,")
        .replace("Remote,,", "Remote,remote,");
    std::fs::write(dir.path().join("group-map.csv"), filled).unwrap();
    let out = bin(dir.path())
        .args([
            "validate",
            "employees.csv",
            "--config",
            "velt-group-sync.toml",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("5 groups, 7 memberships"), "{stdout}");
}
