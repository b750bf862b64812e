//! One JSON value as a record: its keys resolved by the same rules as CSV headers, and field
//! paths (`emails[0].value`, `groups[].display`) for named fields that are no key.

use std::borrow::Cow;

use serde_json::Value;

use super::columns::{Field, Resolver};
use super::record::{GroupCell, Mapper, Record, Values};
use super::{InputOptions, InputStats};
use crate::error::Error;
use crate::plan::Sink;
use crate::text::clip;

/// What reading JSON records keeps from one record to the next: the mapping stage, and which
/// `--include` / `--exclude` columns some record had (a column no record has is a usage
/// error, as a missing CSV column is).
pub(crate) struct JsonRecords<'o> {
    mapper: Mapper<'o>,
    resolver: Resolver<'o>,
    opts: &'o InputOptions,
    filter_seen: Vec<bool>,
    /// The keys of the first object, for that message.
    first_keys: Option<Vec<String>>,
}

impl<'o> JsonRecords<'o> {
    pub fn new(opts: &'o InputOptions) -> JsonRecords<'o> {
        JsonRecords {
            mapper: Mapper::new(opts),
            resolver: Resolver::new(opts),
            opts,
            filter_seen: vec![false; opts.mapping.filters.len()],
            first_keys: None,
        }
    }

    /// After the last record: a filter column that no record has is an error.
    pub fn finish(&self, name: &str) -> Result<(), Error> {
        let Some(keys) = &self.first_keys else {
            return Ok(());
        };
        for (f, seen) in self.opts.mapping.filters.iter().zip(&self.filter_seen) {
            if !seen {
                return Err(Error::input(
                    name,
                    1,
                    format!(
                        "no record has a key named `{}` (the first has: {}); check {}",
                        clip(&f.column),
                        clip(&keys.join(", ")),
                        f.flag()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Turns one JSON value into a record: the fields found by the column resolver.
    pub fn take(&mut self, line: u64, value: Value, sink: &mut impl Sink, stats: &mut InputStats) {
        // (Declared before the record, which borrows from it.)
        let mut paths: Vec<(Field, String, Value)> = Vec::new();
        let mut record = Record::new(line);
        let Value::Object(map) = &value else {
            record.problem = Some(format!(
                "expected a JSON object, found {}",
                json_kind(&value)
            ));
            return self.mapper.take(record, sink, stats);
        };
        if self.first_keys.is_none() {
            self.first_keys = Some(map.keys().take(30).cloned().collect());
        }
        let found = self.resolver.positions(map.keys().map(String::as_str));
        // Field paths (`emails[0].value`, `groups[].display`) for named fields that are no
        // key of the object: evaluated here, their values kept for the record.
        for (field, name) in self.resolver.chosen_fields() {
            if found.get(field).is_none()
                && let Some(steps) = parse_path(name)
                && let Some(v) = eval_path(&value, &steps)
            {
                paths.push((field, name.to_string(), v));
            }
        }
        let entry = |field| {
            found
                .get(field)
                .and_then(|at| map.iter().nth(at))
                .or_else(|| {
                    paths
                        .iter()
                        .find(|(f, _, _)| *f == field)
                        .map(|(_, k, v)| (k, v))
                })
        };
        let text = |field| entry(field).and_then(|(_, v)| v.as_str());
        record.group_name = text(Field::GroupName);
        record.name = text(Field::Name);
        record.first_name = text(Field::FirstName);
        record.last_name = text(Field::LastName);
        record.email = text(Field::Email);
        record.status = text(Field::Status);
        record.action = text(Field::Action);
        match entry(Field::Org) {
            None | Some((_, Value::Null)) => {}
            Some((key, v)) => match json_id(v) {
                Some(id) => record.org = Some(id),
                None => {
                    record.problem = Some(format!("{key} must be a string, found {}", json_kind(v)))
                }
            },
        }
        for i in 0..self.resolver.group_count() {
            let Some((key, v)) = entry(Field::Group(i)) else {
                continue;
            };
            let values = group_values(key, v, &mut record.problem);
            record.groups.push(GroupCell {
                column: key,
                values,
            });
        }
        for (i, seen) in self.filter_seen.iter_mut().enumerate() {
            let value = entry(Field::Filter(i)).and_then(|(key, v)| {
                *seen = true;
                filter_value(key, v, &mut record.problem)
            });
            record.filters.push(value);
        }
        let users = entry(Field::User).or_else(|| entry(Field::Users));
        record.users = users_of(users, &mut record.problem);
        self.mapper.take(record, sink, stats);
    }
}

/// The group values of a group field: a string (or number), a list of them, or null.
fn group_values<'v>(key: &str, v: &'v Value, problem: &mut Option<String>) -> Values<'v> {
    match v {
        Value::Null => Values::Missing,
        Value::Array(items) => Values::Many(
            items
                .iter()
                .map(|v| {
                    json_id(v)
                        .ok_or_else(|| format!("{key} must hold strings, found {}", json_kind(v)))
                })
                .collect(),
        ),
        v => match json_id(v) {
            Some(id) => Values::One(id),
            None => {
                problem.get_or_insert_with(|| {
                    format!("{key} must be a string, found {}", json_kind(v))
                });
                Values::Missing
            }
        },
    }
}

/// The single value an `--include` / `--exclude` filter compares.
fn filter_value<'v>(key: &str, v: &'v Value, problem: &mut Option<String>) -> Option<Cow<'v, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => {
            problem.get_or_insert_with(|| {
                format!(
                    "{key} is {}; --include and --exclude compare single values",
                    json_kind(other)
                )
            });
            None
        }
    }
}

/// The user IDs of the user field (`userId`) or the user list (`userIds`).
fn users_of<'v>(users: Option<(&String, &'v Value)>, problem: &mut Option<String>) -> Values<'v> {
    match users {
        None => Values::Missing,
        Some((key, Value::Array(items))) => {
            if items.is_empty() && problem.is_none() {
                *problem = Some(format!("{key} is an empty list"));
            }
            Values::Many(items.iter().map(user_id).collect())
        }
        Some((key, Value::Null)) => Values::Many(vec![Err(format!("{key} is null"))]),
        Some((_, Value::String(s))) => Values::One(Cow::Borrowed(s)),
        Some((_, other)) => Values::Many(vec![user_id(other)]),
    }
}

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Step<'p> {
    Key(&'p str),
    Index(usize),
    Each,
}

/// `a.b`, `a[0].b`, `a[].b`; `None` for a plain name (no `.` or `[`) or a malformed path.
fn parse_path(path: &str) -> Option<Vec<Step<'_>>> {
    if !path.contains(['.', '[']) {
        return None;
    }
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            steps.push(Step::Key(key.trim()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let inside = r[..close].trim();
            steps.push(if inside.is_empty() {
                Step::Each
            } else {
                Step::Index(inside.parse().ok()?)
            });
            rest = &r[close + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(steps)
}

/// The value a path names: one value, or with `[]` an array of every value it reaches.
/// `None` when it reaches nothing.
fn eval_path(root: &Value, steps: &[Step<'_>]) -> Option<Value> {
    let mut current: Vec<&Value> = vec![root];
    for step in steps {
        current = current
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match (step, v) {
                    (Step::Key(k), Value::Object(m)) => m
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v)
                        .into_iter()
                        .collect(),
                    (Step::Index(i), Value::Array(a)) => a.get(*i).into_iter().collect(),
                    (Step::Each, Value::Array(a)) => a.iter().collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    if steps.contains(&Step::Each) {
        Some(Value::Array(current.into_iter().cloned().collect()))
    } else {
        current.first().map(|v| (*v).clone())
    }
}

fn user_id(v: &Value) -> Result<Cow<'_, str>, String> {
    json_id(v).ok_or_else(|| format!("a user ID must be a string, found {}", json_kind(v)))
}

/// A string, or an integer written as its decimal digits (HR systems often number people).
fn json_id(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
