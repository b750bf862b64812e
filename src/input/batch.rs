//! Records parsed but not yet planned, handed from the reading thread to the planner in
//! batches: their text end to end and what to do with each, so that parsing and planning use
//! both cores without an allocation per record.

use std::sync::mpsc::SyncSender;

use crate::plan::{Planner, Sink};

/// Records parsed but not yet planned: their text end to end, and what to do with each.
#[derive(Default)]
pub(super) struct Batch {
    text: String,
    ops: Vec<Op>,
}

/// A span of `Batch::text`; `None` for an absent field.
type Span = Option<(u32, u32)>;

enum Op {
    Record {
        line: u64,
        org: Span,
        group: Span,
        user: Span,
    },
    Reject {
        line: u64,
        org: Span,
        group: Span,
        user: Span,
        reason: String,
    },
    Name {
        org: Span,
        group: Span,
        name: Span,
    },
}

impl Batch {
    const RECORDS: usize = 8192;

    /// Spans are 32-bit: `Batcher::make_room` flushes a batch before a record that would not
    /// fit, so the conversions below hold (a single record's fields are far below 4 GiB under
    /// `--max-record-bytes`).
    fn push(&mut self, value: Option<&str>) -> Span {
        let v = value?;
        let at = u32::try_from(self.text.len()).ok();
        let len = u32::try_from(v.len()).ok();
        debug_assert!(
            at.is_some() && len.is_some(),
            "make_room keeps spans in 32 bits"
        );
        self.text.push_str(v);
        Some((at?, len?))
    }

    fn get(&self, span: Span) -> Option<&str> {
        span.map(|(at, len)| &self.text[at as usize..(at + len) as usize])
    }

    /// Records ahead of the one being planned whose table slot is prefetched.
    const AHEAD: usize = 12;

    pub fn replay(&self, planner: &mut Planner) {
        // What `prefetch` resolved for record i sits at i % AHEAD until record i is planned.
        let prefetch = |planner: &mut Planner, i: usize| match self.ops.get(i) {
            Some(Op::Record {
                org, group, user, ..
            }) => planner.prefetch(
                self.get(*org),
                self.get(*group),
                self.get(*user).unwrap_or(""),
            ),
            _ => None,
        };
        let mut resolved = [None; Self::AHEAD];
        for (i, slot) in resolved.iter_mut().enumerate() {
            *slot = prefetch(planner, i);
        }
        for (i, op) in self.ops.iter().enumerate() {
            let ahead = prefetch(planner, i + Self::AHEAD);
            let mine = std::mem::replace(&mut resolved[i % Self::AHEAD], ahead);
            match op {
                Op::Record {
                    line,
                    org,
                    group,
                    user,
                } => planner.record_resolved(
                    *line,
                    self.get(*org),
                    self.get(*group),
                    self.get(*user).unwrap_or(""),
                    mine,
                ),
                Op::Name { org, group, name } => planner.group_name(
                    self.get(*org),
                    self.get(*group),
                    self.get(*name).unwrap_or(""),
                ),
                Op::Reject {
                    line,
                    org,
                    group,
                    user,
                    reason,
                } => planner.reject_record(
                    *line,
                    self.get(*org),
                    self.get(*group),
                    self.get(*user).unwrap_or(""),
                    reason.clone(),
                ),
            }
        }
    }
}

/// A `Sink` that fills batches and sends them to the planning thread.
pub(super) struct Batcher {
    pub batch: Batch,
    pub tx: SyncSender<Batch>,
}

impl Batcher {
    pub fn flush(&mut self) {
        if !self.batch.ops.is_empty() {
            // The receiver only goes away when the planner is done, so a failed send loses nothing.
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }

    /// Sends the batch on first if `bytes` more would not fit its 32-bit spans.
    fn make_room(&mut self, fields: &[Option<&str>]) {
        let bytes: usize = fields.iter().flatten().map(|f| f.len()).sum();
        if self.batch.text.len() + bytes > u32::MAX as usize {
            self.flush();
        }
    }

    fn push(&mut self, op: Op) {
        self.batch.ops.push(op);
        if self.batch.ops.len() >= Batch::RECORDS {
            self.flush();
        }
    }
}

impl Sink for Batcher {
    fn group_name(&mut self, org: Option<&str>, group: Option<&str>, name: &str) {
        self.make_room(&[org, group, Some(name)]);
        let b = &mut self.batch;
        let op = Op::Name {
            org: b.push(org),
            group: b.push(group),
            name: b.push(Some(name)),
        };
        self.push(op);
    }

    fn record(&mut self, line: u64, org: Option<&str>, group: Option<&str>, user: &str) {
        self.make_room(&[org, group, Some(user)]);
        let b = &mut self.batch;
        let op = Op::Record {
            line,
            org: b.push(org),
            group: b.push(group),
            user: b.push(Some(user)),
        };
        self.push(op);
    }

    fn reject_record(
        &mut self,
        line: u64,
        org: Option<&str>,
        group: Option<&str>,
        user: &str,
        reason: String,
    ) {
        self.make_room(&[org, group, Some(user)]);
        let b = &mut self.batch;
        let op = Op::Reject {
            line,
            org: b.push(org),
            group: b.push(group),
            user: b.push(Some(user)),
            reason,
        };
        self.push(op);
    }
}
