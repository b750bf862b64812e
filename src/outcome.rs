//! What happened to each membership: the data that flows from execution into the report.

use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Added,
    Failed,
    Unconfirmed,
    Invalid,
    NotAttempted,
    Planned,
    /// Already a member (`--mode delta|mirror`): nothing to send.
    Unchanged,
    /// A member the input does not list, removed (`--mode mirror`).
    Removed,
    /// A removal `--protect-users` or `--protect-groups` kept from being sent.
    Protected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Added => "added",
            Status::Failed => "failed",
            Status::Unconfirmed => "unconfirmed",
            Status::Invalid => "invalid",
            Status::NotAttempted => "not_attempted",
            Status::Planned => "planned",
            Status::Unchanged => "unchanged",
            Status::Removed => "removed",
            Status::Protected => "protected",
        }
    }

    /// Whether a row with this status counts as done for the exit code.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Status::Added
                | Status::Planned
                | Status::Unchanged
                | Status::Removed
                | Status::Protected
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a membership ended as it did, shared by every user of one response where it is the same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detail {
    pub message: String,
    pub error_status: Option<String>,
    pub http_status: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// Requests that carried this membership.
    pub attempts: u32,
    pub detail: Option<Arc<Detail>>,
    /// A `not_attempted` membership that is not to be sent (a removal a safety limit refused,
    /// a request the server asked to hold for too long); its `detail` says why.
    pub held_back: bool,
}

impl Outcome {
    pub fn new(status: Status) -> Outcome {
        Outcome {
            status,
            attempts: 0,
            detail: None,
            held_back: false,
        }
    }

    /// Not to be sent, for `reason`.
    pub fn hold(&mut self, reason: Arc<Detail>) {
        self.status = Status::NotAttempted;
        self.detail = Some(reason);
        self.held_back = true;
    }

    /// Not sent yet, and not held back.
    pub fn still_to_send(&self) -> bool {
        self.status == Status::NotAttempted && !self.held_back
    }
}

/// Counts by status, for the summary line and the JSON report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub added: u64,
    pub failed: u64,
    pub unconfirmed: u64,
    pub invalid: u64,
    pub not_attempted: u64,
    pub planned: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub protected: u64,
}

impl Counts {
    pub fn add(&mut self, status: Status) {
        *match status {
            Status::Added => &mut self.added,
            Status::Failed => &mut self.failed,
            Status::Unconfirmed => &mut self.unconfirmed,
            Status::Invalid => &mut self.invalid,
            Status::NotAttempted => &mut self.not_attempted,
            Status::Planned => &mut self.planned,
            Status::Unchanged => &mut self.unchanged,
            Status::Removed => &mut self.removed,
            Status::Protected => &mut self.protected,
        } += 1;
    }

    /// Rows about memberships: the valid input ones and, in mirror mode, the removals
    /// (invalid records are counted apart).
    pub fn memberships(&self) -> u64 {
        self.added
            + self.failed
            + self.unconfirmed
            + self.not_attempted
            + self.planned
            + self.unchanged
            + self.removed
            + self.protected
    }

    pub fn all_succeeded(&self) -> bool {
        self.failed + self.unconfirmed + self.invalid + self.not_attempted == 0
    }
}
