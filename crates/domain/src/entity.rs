//! The directory of supervised entities (市场主体), keyed by the Unified Social
//! Credit Code, and the joint incentive and punishment lists (守信联合激励、失信联合惩戒).

use serde::{Deserialize, Serialize};

use crate::validate::{self, MAX_NAME_CHARS, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use crate::{uscc, DomainError};

/// Yangquan's districts (GB/T 2260), the default list; the list is replicated state.
pub fn default_districts() -> Vec<String> {
    ["城区", "矿区", "郊区", "平定县", "盂县", "高新区"]
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// Checks a district list: 1-200 distinct names, each 1-100 characters.
pub fn validate_districts(districts: &[String]) -> Result<(), DomainError> {
    if districts.is_empty() || districts.len() > 200 {
        return Err(DomainError::invalid(
            "districts",
            "between 1 and 200 districts",
        ));
    }
    for (i, d) in districts.iter().enumerate() {
        validate::required_text(&format!("districts[{i}]"), d, MAX_SHORT_CHARS)?;
        if districts[..i].contains(d) {
            return Err(DomainError::invalid(
                format!("districts[{i}]"),
                format!("{d} is listed twice"),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceStatus {
    Active,
    Suspended,
    Revoked,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitySpec {
    pub uscc: String,
    pub name: String,
    /// One of the configured districts.
    pub district: String,
    /// A slug such as `refined_oil` or `catering`.
    pub industry: String,
    pub address: String,
    pub licence: LicenceStatus,
}

impl EntitySpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |name: &str| format!("{prefix}.{name}");
        uscc::validate(&f("uscc"), &self.uscc)?;
        validate::required_text(&f("name"), &self.name, MAX_NAME_CHARS)?;
        validate::required_text(&f("district"), &self.district, MAX_SHORT_CHARS)?;
        validate::slug(&f("industry"), &self.industry)?;
        validate::optional_text(&f("address"), &self.address, MAX_TEXT_CHARS)?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(flatten)]
    pub spec: EntitySpec,
    /// The department that registered the entity in the directory.
    pub registered_by: String,
    pub created_revision: u64,
    pub updated_revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// 守信联合激励: joint incentives for trustworthy entities (red list).
    Incentive,
    /// 失信联合惩戒: joint punishment for dishonest entities (black list).
    Punishment,
}

impl ListKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Incentive => "incentive",
            ListKind::Punishment => "punishment",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingSpec {
    pub list: ListKind,
    pub uscc: String,
    pub reason: String,
    pub legal_basis: String,
    /// When the listing ends (ms since the epoch); None: until removed.
    pub until_ms: Option<i64>,
}

impl ListingSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |name: &str| format!("{prefix}.{name}");
        uscc::validate(&f("uscc"), &self.uscc)?;
        validate::required_text(&f("reason"), &self.reason, MAX_TEXT_CHARS)?;
        validate::required_text(&f("legal_basis"), &self.legal_basis, MAX_SHORT_CHARS)?;
        if self.until_ms.is_some_and(|t| t <= 0) {
            return Err(DomainError::invalid(
                f("until_ms"),
                "must be a time after 1970",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// `list-<revision>`.
    pub id: String,
    #[serde(flatten)]
    pub spec: ListingSpec,
    pub department: String,
    pub since_ms: i64,
    /// Set when the listing was removed before its end.
    pub removed_reason: String,
    pub removed: bool,
    pub created_revision: u64,
    pub updated_revision: u64,
}

impl Listing {
    pub fn active_at(&self, now_ms: i64) -> bool {
        !self.removed && self.until_ms_or_max() > now_ms
    }

    fn until_ms_or_max(&self) -> i64 {
        self.spec.until_ms.unwrap_or(i64::MAX)
    }
}
