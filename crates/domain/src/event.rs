use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::credit::{CreditRecord, TierPolicy, TierState};
use crate::department::Department;
use crate::entity::{Entity, Listing};
use crate::inspection::{Alert, Inspector, Plan, Task};
use crate::item::Item;
use crate::sharing::SharingRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Department,
    Item,
    SharingRule,
    Entity,
    CreditRecord,
    Tier,
    TierPolicy,
    Listing,
    Inspector,
    Plan,
    Task,
    Alert,
    Case,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventRecord {
    Department(Department),
    Item(Item),
    SharingRule(SharingRule),
    Entity(Entity),
    Districts(Vec<String>),
    CreditRecord(CreditRecord),
    Tier(TierState),
    TierPolicy(TierPolicy),
    Listing(Listing),
    Inspector(Inspector),
    Plan(Plan),
    Task(Task),
    Alert(Alert),
    Case(Case),
}

/// One change on the feed. A revision emits zero or more events, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: u64,
    pub kind: RecordKind,
    pub key: String,
    /// e.g. `item.published`.
    pub action: String,
    pub actor: String,
    pub timestamp_ms: i64,
    /// Departments the change concerns (watch filter by department).
    pub departments: Vec<String>,
    pub record: EventRecord,
}

/// The JSON of `event`: the bytes `serde_json::to_vec(event)` gives. `record_json`
/// is the JSON of its record when the caller has it already (the apply wrote the
/// same case under its key), so the record is not encoded twice: it is the larger
/// part of the event, and a write applies on every replica.
pub fn encode(event: &Event, record_json: Option<&[u8]>) -> Vec<u8> {
    /// `Event` without its record, which is its last field.
    #[derive(Serialize)]
    struct Head<'a> {
        revision: u64,
        kind: RecordKind,
        key: &'a str,
        action: &'a str,
        actor: &'a str,
        timestamp_ms: i64,
        departments: &'a [String],
    }
    let (tag, record) = match (&event.record, record_json) {
        (EventRecord::Case(_), Some(json)) => ("case", json),
        _ => return crate::state::encode(event),
    };
    let mut out = crate::state::encode(&Head {
        revision: event.revision,
        kind: event.kind,
        key: &event.key,
        action: &event.action,
        actor: &event.actor,
        timestamp_ms: event.timestamp_ms,
        departments: &event.departments,
    });
    out.pop(); // the head's closing brace
    out.reserve(record.len() + tag.len() + 16);
    out.extend_from_slice(b",\"record\":{\"");
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(record);
    out.extend_from_slice(b"}}");
    out
}
