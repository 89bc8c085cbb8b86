use serde::{Deserialize, Serialize};

use crate::department::{Department, DepartmentSpec};
use crate::item::{ChangeCause, Item, ItemContent};
use crate::DomainError;

/// One replicated write: who asks, under which idempotency key, at what time (the
/// proposing leader's clock, so every replica uses the same instant), and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Department code of the node that received the request.
    pub actor: String,
    /// Idempotency key, unique per actor. Empty for system commands (ticks).
    pub request_id: String,
    pub timestamp_ms: i64,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Seeds the department registry of a new cluster; refused once seeded.
    Bootstrap {
        departments: Vec<DepartmentSpec>,
    },
    RegisterDepartment {
        department: DepartmentSpec,
        expected_revision: Option<u64>,
    },
    /// Time-driven housekeeping, proposed by the leader.
    Tick {
        dedup_retention_ms: i64,
    },
    CreateItem {
        content: ItemContent,
    },
    UpdateDraft {
        id: String,
        content: ItemContent,
        expected_revision: Option<u64>,
    },
    SubmitForReview {
        id: String,
        expected_revision: Option<u64>,
    },
    ReviewItem {
        id: String,
        approve: bool,
        opinion: String,
        expected_revision: Option<u64>,
    },
    PublishItem {
        id: String,
        expected_revision: Option<u64>,
    },
    ReviseItem {
        id: String,
        cause: ChangeCause,
        change_note: String,
        content: ItemContent,
        expected_revision: Option<u64>,
    },
    AbolishItem {
        id: String,
        reason: String,
        expected_revision: Option<u64>,
    },
}

impl Command {
    /// Stable name for logs, metrics and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Bootstrap { .. } => "bootstrap",
            Command::RegisterDepartment { .. } => "register_department",
            Command::Tick { .. } => "tick",
            Command::CreateItem { .. } => "create_item",
            Command::UpdateDraft { .. } => "update_draft",
            Command::SubmitForReview { .. } => "submit_for_review",
            Command::ReviewItem { .. } => "review_item",
            Command::PublishItem { .. } => "publish_item",
            Command::ReviseItem { .. } => "revise_item",
            Command::AbolishItem { .. } => "abolish_item",
        }
    }
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Bootstrapped {
        departments: u32,
    },
    Department(Department),
    Item(Item),
    Ticked {
        purged_request_ids: u32,
    },
    /// Raft-internal entries (blank, membership) that carry no command.
    Nothing,
}

/// The result of one log entry, returned to the proposer and remembered under the
/// request id so a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The revision that applied the command (for a replay: the original one).
    pub revision: u64,
    pub result: Result<Outcome, DomainError>,
    /// True when this answers a retry of an already-applied request id.
    pub replayed: bool,
}
