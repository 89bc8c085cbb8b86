//! The data-sharing catalogue (监管数据资源目录 and 共享责任清单): rules by which a
//! department that provides records of a class shares them with named departments,
//! for a stated purpose, at a stated frequency and confidentiality level.
//!
//! Visibility, deny by default:
//! - departments and sharing rules themselves: every member;
//! - an item version that was published with `public = true` (published, superseded
//!   or abolished): every member;
//! - anything else about an item (drafts, reviews, non-public items): the departments
//!   named in it (lead, cooperating), legality reviewers, and the readers of a rule
//!   of class ITEM whose provider is the item's lead department.
//!
//! A record the reader may not see is answered NOT_FOUND, exactly as a missing one:
//! the existence of a non-public supervision matter is itself confidential.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::department::{Department, Role};
use crate::event::{Event, EventRecord};
use crate::item::{Item, ItemStatus};
use crate::state::{get_typed, keys, scan_decoded, StateRead};
use crate::validate::{self, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use crate::{DomainError, Failure, StorageFault};

pub const MAX_READERS: usize = 64;

/// The classes of shared records a rule can cover. Later record classes (entities,
/// credit records, inspection results, cases) join this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordClass {
    Item,
    /// Inspection results not flagged public.
    InspectionResult,
}

impl RecordClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordClass::Item => "item",
            RecordClass::InspectionResult => "inspection_result",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidentiality {
    /// 内部: for government use.
    Internal,
    /// 敏感: personal or commercial data; readers must protect it.
    Sensitive,
    /// 受限: for the named purpose only; no onward sharing.
    Restricted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    OnChange,
    Daily,
    Weekly,
    Monthly,
    OnRequest,
}

/// What the providing department states when it shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingRuleSpec {
    /// Unique per (class, provider): 1-64 of A-Z a-z 0-9 - _ .
    pub id: String,
    pub class: RecordClass,
    /// The department whose records are shared (the rule's owner).
    pub provider: String,
    /// Department codes that may read; sorted and distinct once validated.
    pub readers: Vec<String>,
    pub purpose: String,
    pub frequency: Frequency,
    pub confidentiality: Confidentiality,
    /// The document that requires or allows the sharing.
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingRule {
    #[serde(flatten)]
    pub spec: SharingRuleSpec,
    pub created_revision: u64,
    pub updated_revision: u64,
}

pub fn rule_key(class: RecordClass, provider: &str, id: &str) -> String {
    format!("{}{}/{provider}/{id}", keys::SHARING, class.as_str())
}

pub fn validate_rule_id(field: &str, id: &str) -> Result<(), DomainError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "must be 1-64 characters of A-Z a-z 0-9 - _ .",
        ))
    }
}

impl SharingRuleSpec {
    /// Checks every field and sorts the readers; `prefix` is the spec's field path.
    pub fn validated(mut self, prefix: &str) -> Result<SharingRuleSpec, DomainError> {
        validate_rule_id(&format!("{prefix}.id"), &self.id)?;
        validate::department_code(&format!("{prefix}.provider"), &self.provider)?;
        if self.readers.is_empty() {
            return Err(DomainError::invalid(
                format!("{prefix}.readers"),
                "at least one reader is required",
            ));
        }
        if self.readers.len() > MAX_READERS {
            return Err(DomainError::invalid(
                format!("{prefix}.readers"),
                format!("at most {MAX_READERS} readers"),
            ));
        }
        for (i, r) in self.readers.iter().enumerate() {
            validate::department_code(&format!("{prefix}.readers[{i}]"), r)?;
            if *r == self.provider {
                return Err(DomainError::invalid(
                    format!("{prefix}.readers[{i}]"),
                    "the provider always reads its own records",
                ));
            }
        }
        let before = self.readers.len();
        self.readers.sort();
        self.readers.dedup();
        if self.readers.len() != before {
            return Err(DomainError::invalid(
                format!("{prefix}.readers"),
                "must not repeat a department",
            ));
        }
        validate::required_text(&format!("{prefix}.purpose"), &self.purpose, MAX_TEXT_CHARS)?;
        validate::required_text(
            &format!("{prefix}.legal_basis"),
            &self.legal_basis,
            MAX_SHORT_CHARS,
        )?;
        Ok(self)
    }
}

pub fn rules(view: &dyn StateRead) -> Result<Vec<SharingRule>, Failure> {
    Ok(scan_decoded(view, keys::SHARING)?)
}

/// What one department may see, resolved once per request or stream.
#[derive(Debug, Clone)]
pub struct Scope {
    department: String,
    reviewer: bool,
    /// (class, provider) pairs whose records a rule shares with this department.
    granted: BTreeSet<(RecordClass, String)>,
}

impl Scope {
    pub fn load(view: &dyn StateRead, department: &str) -> Result<Scope, StorageFault> {
        let dept: Option<Department> = get_typed(view, &keys::department(department))?;
        let granted = rules(view)
            .map_err(|f| match f {
                Failure::Fault(f) => f,
                Failure::Refused(e) => StorageFault(e.to_string()),
            })?
            .into_iter()
            .filter(|r| r.spec.readers.iter().any(|d| d == department))
            .map(|r| (r.spec.class, r.spec.provider))
            .collect();
        Ok(Scope {
            department: department.to_string(),
            reviewer: dept.is_some_and(|d| d.has_role(Role::LegalityReviewer)),
            granted,
        })
    }

    pub fn department(&self) -> &str {
        &self.department
    }

    /// Whether a rule shares `class` records of `provider` with this department.
    pub fn is_granted(&self, class: RecordClass, provider: &str) -> bool {
        self.granted.contains(&(class, provider.to_string()))
    }

    /// Whether this department sees every version of an item (not only its
    /// public, published ones).
    pub fn is_insider(&self, item: &Item) -> bool {
        self.reviewer
            || item.departments().iter().any(|d| *d == self.department)
            || self
                .granted
                .contains(&(RecordClass::Item, item.lead().to_string()))
    }

    /// Whether this version of an item is visible to every member.
    pub fn is_public_version(item: &Item) -> bool {
        item.content.public
            && matches!(
                item.status,
                ItemStatus::Published | ItemStatus::Superseded | ItemStatus::Abolished
            )
    }

    pub fn can_see_version(&self, version: &Item, head: &Item) -> bool {
        Self::is_public_version(version) || self.is_insider(head) || self.is_insider(version)
    }

    pub fn can_see_event(&self, e: &Event) -> bool {
        match &e.record {
            // The directory, credit records, tiers and lists are shared with every
            // member (tiers never leave the members: there is no public API).
            EventRecord::Department(_)
            | EventRecord::SharingRule(_)
            | EventRecord::Entity(_)
            | EventRecord::Districts(_)
            | EventRecord::CreditRecord(_)
            | EventRecord::Tier(_)
            | EventRecord::TierPolicy(_)
            | EventRecord::Listing(_)
            | EventRecord::Inspector(_) => true,
            // Plans name conflicts of interest, tasks carry results, and alerts go
            // to the departments involved.
            EventRecord::Plan(_)
            | EventRecord::Task(_)
            | EventRecord::Alert(_)
            | EventRecord::Case(_) => e.departments.iter().any(|d| *d == self.department),
            // Judged by the version the event carries: a department dropped from
            // an item in a new draft does not see that draft.
            EventRecord::Item(item) => Self::is_public_version(item) || self.is_insider(item),
        }
    }
}
