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
