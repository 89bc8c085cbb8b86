//! Supervision items (事项) and their life cycle. The transition functions here decide
//! what a command does to an item; `apply` looks records up and stores the result.

use serde::{Deserialize, Serialize};

use crate::validate::{self, MAX_NAME_CHARS, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use crate::DomainError;

pub const MAX_COOPERATING: usize = 32;
pub const MAX_MECHANISMS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    City,
    County,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    DoubleRandom,
    KeySupervision,
    Credit,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MechanismKind {
    JointMeeting,
    JointInspection,
    Consultation,
    Notification,
    DataSharing,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCause {
    Enact,
    Amend,
    Repeal,
    Interpret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Draft,
    InReview,
    Rejected,
    Approved,
    Published,
    Superseded,
    Abolished,
}

impl ItemStatus {
    pub fn name(self) -> &'static str {
        match self {
            ItemStatus::Draft => "DRAFT",
            ItemStatus::InReview => "IN_REVIEW",
            ItemStatus::Rejected => "REJECTED",
            ItemStatus::Approved => "APPROVED",
            ItemStatus::Published => "PUBLISHED",
            ItemStatus::Superseded => "SUPERSEDED",
            ItemStatus::Abolished => "ABOLISHED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentDuty {
    pub department: String,
    pub duty: String,
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mechanism {
    pub kind: MechanismKind,
    pub name: String,
    pub document_number: String,
}

/// The editable content of one version: the plan's item template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemContent {
    pub name: String,
    pub field: String,
    pub lead: DepartmentDuty,
    pub cooperating: Vec<DepartmentDuty>,
    pub targets: String,
    pub level: Level,
    pub methods: Vec<Method>,
    pub mechanisms: Vec<Mechanism>,
    pub public: bool,
    pub non_public_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub reviewer: String,
    pub approved: bool,
    pub opinion: String,
    pub revision: u64,
    pub reviewed_at_ms: i64,
}

/// One version of an item. The latest version is also the item's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub version: u32,
    pub status: ItemStatus,
    pub content: ItemContent,
    pub cause: ChangeCause,
    pub change_note: String,
    pub review: Option<Review>,
    /// The version in force; 0 while none is published.
    pub published_version: u32,
    pub abolish_reason: String,
    pub created_revision: u64,
    pub updated_revision: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Item {
    pub fn lead(&self) -> &str {
        &self.content.lead.department
    }

    /// Every department with a duty in this version, lead first.
    pub fn departments(&self) -> Vec<String> {
        self.content.departments()
    }
}

impl ItemContent {
    pub fn departments(&self) -> Vec<String> {
        std::iter::once(&self.lead)
            .chain(self.cooperating.iter())
            .map(|d| d.department.clone())
            .collect()
    }

    /// Field-level checks that need no state. Department existence is checked at apply.
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |name: &str| format!("{prefix}.{name}");
        validate::required_text(&f("name"), &self.name, MAX_NAME_CHARS)?;
        validate::slug(&f("field"), &self.field)?;
        validate_duty(&f("lead"), &self.lead)?;
        if self.cooperating.len() > MAX_COOPERATING {
            return Err(DomainError::invalid(
                f("cooperating"),
                format!(
                    "{} departments, at most {MAX_COOPERATING} allowed",
                    self.cooperating.len()
                ),
            ));
        }
        let mut seen = vec![self.lead.department.as_str()];
        for (i, duty) in self.cooperating.iter().enumerate() {
            let path = f(&format!("cooperating[{i}]"));
            validate_duty(&path, duty)?;
            if seen.contains(&duty.department.as_str()) {
                return Err(DomainError::invalid(
                    format!("{path}.department"),
                    format!(
                        "{} is listed more than once (a lead may not also cooperate)",
                        duty.department
                    ),
                ));
            }
            seen.push(&duty.department);
        }
        validate::required_text(&f("targets"), &self.targets, MAX_TEXT_CHARS)?;
        if self.methods.is_empty() {
            return Err(DomainError::invalid(
                f("methods"),
                "at least one inspection method is required",
            ));
        }
        let mut methods = self.methods.clone();
        methods.sort();
        methods.dedup();
        if methods.len() != self.methods.len() {
            return Err(DomainError::invalid(
                f("methods"),
                "must not repeat a method",
            ));
        }
        if self.mechanisms.len() > MAX_MECHANISMS {
            return Err(DomainError::invalid(
                f("mechanisms"),
                format!(
                    "{} mechanisms, at most {MAX_MECHANISMS} allowed",
                    self.mechanisms.len()
                ),
            ));
        }
        for (i, m) in self.mechanisms.iter().enumerate() {
            let path = f(&format!("mechanisms[{i}]"));
            validate::required_text(&format!("{path}.name"), &m.name, MAX_NAME_CHARS)?;
            validate::optional_text(
                &format!("{path}.document_number"),
                &m.document_number,
                MAX_SHORT_CHARS,
            )?;
        }
        if self.public {
            if !self.non_public_reason.is_empty() {
                return Err(DomainError::invalid(
                    f("non_public_reason"),
                    "must be empty when public is true",
                ));
            }
        } else {
            validate::required_text(
                &f("non_public_reason"),
                &self.non_public_reason,
                MAX_TEXT_CHARS,
            )
            .map_err(|_| {
                DomainError::invalid(f("non_public_reason"), "required when public is false")
            })?;
        }
        Ok(())
    }
}

fn validate_duty(path: &str, duty: &DepartmentDuty) -> Result<(), DomainError> {
    validate::department_code(&format!("{path}.department"), &duty.department)?;
    validate::required_text(&format!("{path}.duty"), &duty.duty, MAX_TEXT_CHARS)?;
    validate::required_text(
        &format!("{path}.legal_basis"),
        &duty.legal_basis,
        MAX_TEXT_CHARS,
    )
}

/// Refuses a step from the wrong status, naming both, e.g. "item-7 v2 is PUBLISHED; publish needs APPROVED".
pub fn require_status(item: &Item, step: &str, allowed: &[ItemStatus]) -> Result<(), DomainError> {
    if allowed.contains(&item.status) {
        return Ok(());
    }
    let need: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
    Err(DomainError::precondition(format!(
        "{} v{} is {}; {step} needs {}",
        item.id,
        item.version,
        item.status.name(),
        need.join(" or ")
    )))
}
