//! `velt-group-sync init EXPORT`: reads an export the way `sync` would and writes a commented
//! configuration file for it (and a group map to fill in when its groups are names), saying
//! what it found and why it chose each column.

mod choose;
mod table;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use table::Reading;

use choose::{Choices, Column};
use table::Table;

/// What `init` wrote and what to tell the admin.
#[derive(Debug)]
pub struct Written {
    /// What was found and chosen, for standard output.
    pub findings: String,
    pub config: PathBuf,
    /// The group map skeleton, if one was written (or one was there already: `false`).
    pub map: Option<(PathBuf, bool)>,
    /// The user column chosen, if any.
    pub user_column: Option<String>,
    pub group_columns: Vec<String>,
}

/// What `init` is asked.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub export: &'a Path,
    pub org: Option<&'a str>,
    pub out: &'a Path,
    pub reading: Reading,
}

pub fn run(req: &Request<'_>) -> Result<Written, String> {
    if req.out.exists() {
        return Err(format!(
            "{}: exists already; init never overwrites a configuration: choose another --out, or move it away",
            req.out.display()
        ));
    }
    let table = table::read(req.export, &req.reading)?;
    if table.names.is_empty() {
        return Err(format!(
            "{}: no rows in it: is the export empty?",
            req.export.display()
        ));
    }
    let columns = choose::columns(&table);
    let choices = choose::choose(&table, &columns);
    let dir = req.out.parent().unwrap_or(Path::new(""));
    let map_path = dir.join("group-map.csv");
    let map = if choices.needs_map && !choices.groups.is_empty() {
        let existed = map_path.exists();
        if !existed {
            std::fs::write(&map_path, group_map(&columns, &choices))
                .map_err(|e| format!("{}: cannot write the group map ({e})", map_path.display()))?;
        }
        Some((map_path, !existed))
    } else {
        None
    };
    let config = render(req, &table, &choices, map.is_some());
    std::fs::write(req.out, config).map_err(|e| {
        format!(
            "{}: cannot write the configuration ({e}); check the folder exists (mkdir -p)",
            req.out.display()
        )
    })?;
    Ok(Written {
        findings: findings(req, &table, &columns, &choices),
        config: req.out.to_path_buf(),
        map,
        user_column: choices.user.as_ref().map(|p| p.column.clone()),
        group_columns: choices.groups.iter().map(|p| p.column.clone()).collect(),
    })
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()).to_string()
}

fn described(t: &Table) -> String {
    let format = match t.format {
        Some(crate::input::Format::Xlsx) => format!(
            "workbook, sheet {}",
            t.sheet.as_deref().map_or("1".into(), quoted)
        ),
        Some(crate::input::Format::Json) => "JSON".into(),
        Some(crate::input::Format::Jsonl) => "JSON Lines".into(),
        _ => format!(
            "CSV (delimiter {})",
            match t.delimiter {
                Some(b'\t') => "tab".to_string(),
                Some(d) => format!("`{}`", d as char),
                None => "`,`".into(),
            }
        ),
    };
    let encoding = if t.encoding == "xlsx" {
        String::new()
    } else {
        format!(", {}", t.encoding)
    };
    format!(
        "{format}{encoding}, header on line {}, {} rows, {} columns",
        t.header_line,
        t.rows.len(),
        t.names.len()
    )
}

/// The configuration file's text.
fn render(req: &Request<'_>, t: &Table, ch: &Choices, map: bool) -> String {
    let mut s = String::new();
    let export = req.export.display();
    let _ = writeln!(
        s,
        "# velt-group-sync configuration, written by `velt-group-sync init` from {export}\n\
         # ({}).\n\
         # Keys are the long flags of `velt-group-sync sync --help`. A flag on the command line, then\n\
         # its VELT_* variable, win over this file. Paths are relative to this file.\n\
         # Secrets never go here: name the files holding them with api-key-file and\n\
         # auth-token-file, or set VELT_API_KEY and VELT_AUTH_TOKEN.\n",
        described(t)
    );
    match (req.org, &ch.org_column) {
        (Some(org), _) => {
            let _ = writeln!(
                s,
                "# The organization every row goes to.\norg = {}\n",
                quoted(org)
            );
        }
        (None, Some(p)) => {
            let _ = writeln!(
                s,
                "# The organization: {}.\norg-column = {}\n",
                p.why,
                quoted(&p.column)
            );
        }
        (None, None) => {
            let _ = writeln!(
                s,
                "# The organization every row goes to: REQUIRED, the export names none.\n\
                 # (Or run init again with --org ID.)\n# org = \"your-organization-id\"\n"
            );
        }
    }
    match &ch.user {
        Some(p) => {
            let _ = writeln!(s, "# The user: `{}` is {}.", p.column, p.why);
            if !ch.user_considered.is_empty() {
                let _ = writeln!(s, "# Also considered: {}.", ch.user_considered.join("; "));
            }
            let _ = writeln!(s, "user-column = {}", quoted(&p.column));
            if ch.lower_ids {
                let _ = writeln!(
                    s,
                    "# The user IDs are e-mail addresses, which compare without case.\nuser-id-case = \"lower\""
                );
            }
        }
        None => {
            let _ = writeln!(
                s,
                "# The user: REQUIRED, no column looked like a work e-mail or a login.\n# user-column = \"...\""
            );
        }
    }
    s.push('\n');
    if ch.groups.is_empty() {
        let _ = writeln!(
            s,
            "# Groups: no column looked like a department, team or group. Name one, or give one\n\
             # group for every row:\n# group-column = [\"...\"]\n# group = \"group-id\""
        );
    } else {
        let names: Vec<String> = ch.groups.iter().map(|g| g.column.clone()).collect();
        for g in &ch.groups {
            let _ = writeln!(s, "# Group column `{}`: {}.", g.column, g.why);
        }
        if !ch.groups_considered.is_empty() {
            let _ = writeln!(s, "# Also considered: {}.", ch.groups_considered.join(", "));
        }
        let _ = writeln!(s, "group-column = {}", list(&names));
        if let Some(sep) = ch.separator {
            let _ = writeln!(
                s,
                "# A cell lists several groups.\ngroup-separator = {}",
                quoted(&sep.to_string())
            );
        }
        if map {
            let _ = writeln!(
                s,
                "# The group values are names, not group IDs: fill in the organizationUserGroupId\n\
                 # column of group-map.csv (one row per value), then validate.\n\
                 group-map = \"group-map.csv\""
            );
        }
    }
    s.push('\n');
    for (key, rules) in [("include", &ch.include), ("exclude", &ch.exclude)] {
        if rules.is_empty() {
            continue;
        }
        for (_, why) in rules.iter() {
            let _ = writeln!(s, "# {why}.");
        }
        let rules: Vec<String> = rules.iter().map(|(r, _)| r.clone()).collect();
        let _ = writeln!(s, "{key} = {}", list(&rules));
    }
    reading(&mut s, req, t);
    provisioning(&mut s, ch);
    s.push_str(
        "\n# A nightly run (the README's \"Schedule it\"): uncomment what you use.\n\
         # mode = \"mirror\"\n\
         # report = \"reports/report-{date}.csv\"\n\
         # keep-reports = 30\n\
         # state = \"state/journal.jsonl\"\n\
         # api-key-file = \"/etc/velt-group-sync/api-key\"\n\
         # auth-token-file = \"/etc/velt-group-sync/auth-token\"\n",
    );
    s
}

/// How to read the export, where `sync` would need telling.
fn reading(s: &mut String, req: &Request<'_>, t: &Table) {
    if t.needs_encoding {
        let _ = writeln!(
            s,
            "# The export is not UTF-8 and has no byte order mark: it reads as {}.\nencoding = {}",
            t.encoding,
            quoted(&t.encoding.to_ascii_lowercase())
        );
    }
    if let Some(sheet) = &req.reading.sheet {
        let _ = writeln!(s, "sheet = {}", quoted(sheet));
    }
    if let Some(path) = &t.records_path {
        let _ = writeln!(
            s,
            "# The records are the `{path}` array.\nrecords-path = {}",
            quoted(path)
        );
    }
    if !t.above.is_empty() {
        let _ = writeln!(
            s,
            "# Lines above the header ({}) are skipped: the header is found by the columns above.",
            t.above
                .iter()
                .map(|(l, text)| format!("{l}: {}", crate::text::clip(text)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}

fn provisioning(s: &mut String, ch: &Choices) {
    s.push_str(
        "\n# Provisioning: make every user a user of the organization, with a name and an e-mail,\n\
         # before adding it to groups. Uncomment to use.\n# provision-users = true\n",
    );
    match (&ch.name, &ch.name_parts) {
        (Some(p), _) => {
            let _ = writeln!(s, "# name-column = {}   # {}", quoted(&p.column), p.why);
        }
        (None, Some((first, last))) => {
            let _ = writeln!(
                s,
                "# name-columns = {}   # first and last names",
                quoted(&format!("{first},{last}"))
            );
        }
        (None, None) => s.push_str("# name-column = \"...\"   # no name column found\n"),
    }
    match &ch.email {
        Some(p) => {
            let _ = writeln!(s, "# email-column = {}   # {}", quoted(&p.column), p.why);
        }
        None => s.push_str("# email-column = \"...\"   # no e-mail column found\n"),
    }
}

/// `group-map.csv`: every distinct group value with an empty target.
fn group_map(columns: &[Column], ch: &Choices) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["source", "organizationUserGroupId", "name", "column"]);
    for g in &ch.groups {
        let Some(c) = columns.iter().find(|c| c.name == g.column) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for v in &c.values {
            let parts: Vec<&str> = match ch.separator {
                Some(sep) => v
                    .split(sep)
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect(),
                None => vec![v.as_str()],
            };
            for p in parts {
                if seen.insert(p.to_string()) {
                    let _ = w.write_record([p, "", p, &c.name]);
                }
            }
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// What `init` prints: the export as read, and what it chose.
fn findings(req: &Request<'_>, t: &Table, columns: &[Column], ch: &Choices) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: {}:", req.export.display(), described(t));
    let width = columns
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(32);
    for c in columns {
        // The first three distinct values.
        let samples: Vec<String> = c
            .values
            .iter()
            .take(3)
            .map(|v| crate::text::clip(v).into_owned())
            .collect();
        let _ = writeln!(s, "  {:<width$}  {}", c.name, samples.join(", "));
    }
    for (line, text) in &t.above {
        let _ = writeln!(
            s,
            "  (line {line}, above the header: {})",
            crate::text::clip(text)
        );
    }
    let _ = writeln!(s, "chosen:");
    let user = ch
        .user
        .as_ref()
        .map_or("none: set user-column".to_string(), |p| {
            format!("{} ({})", p.column, p.why)
        });
    let _ = writeln!(s, "  user column    {user}");
    let groups: Vec<&str> = ch.groups.iter().map(|g| g.column.as_str()).collect();
    let groups = if groups.is_empty() {
        "none: set group-column or group".to_string()
    } else {
        groups.join(", ")
    };
    let _ = writeln!(s, "  group columns  {groups}");
    for (rule, _) in &ch.include {
        let _ = writeln!(s, "  filter         include {rule}");
    }
    for (rule, _) in &ch.exclude {
        let _ = writeln!(s, "  filter         exclude {rule}");
    }
    s
}
