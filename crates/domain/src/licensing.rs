//! Licensing decisions (审管联动): what the licensing bureau decided about an
//! entity, pushed at once to the departments that supervise the licensed matter;
//! violations supervision finds about a licensed entity go back to the bureau.

use serde::{Deserialize, Serialize};

use crate::validate::{self, MAX_NAME_CHARS, MAX_SHORT_CHARS};
use crate::DomainError;

pub const MAX_DECISION_ITEMS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicensingAction {
    Grant,
    Change,
    Renew,
    Suspend,
    Revoke,
}

impl LicensingAction {
    /// How the decision reads in a pushed case's title.
    pub fn label(self) -> &'static str {
        match self {
            LicensingAction::Grant => "准予许可",
            LicensingAction::Change => "变更许可",
            LicensingAction::Renew => "延续许可",
            LicensingAction::Suspend => "暂扣许可",
            LicensingAction::Revoke => "撤销许可",
        }
    }

    /// The entity's licence after the decision.
    pub fn licence(self) -> crate::entity::LicenceStatus {
        use crate::entity::LicenceStatus;
        match self {
            LicensingAction::Grant | LicensingAction::Change | LicensingAction::Renew => {
                LicenceStatus::Active
            }
            LicensingAction::Suspend => LicenceStatus::Suspended,
            LicensingAction::Revoke => LicenceStatus::Revoked,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicensingDecisionSpec {
    /// The decision's document number, e.g. 阳审批许字〔2026〕118号; unique.
    pub number: String,
    pub uscc: String,
    pub action: LicensingAction,
    /// The licensed matter, e.g. 道路货物运输经营许可.
    pub matter: String,
    /// The supervision items that cover the matter: their lead and cooperating
    /// departments are the supervisors the decision is pushed to.
    pub items: Vec<String>,
    /// SHA-256 of the decision document.
    pub document: String,
    /// When the licence lapses (ms since the epoch), if it does.
    pub valid_until_ms: Option<i64>,
}

impl LicensingDecisionSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |n: &str| format!("{prefix}.{n}");
        validate::required_text(&f("number"), &self.number, MAX_SHORT_CHARS)?;
        crate::uscc::validate(&f("uscc"), &self.uscc)?;
        validate::required_text(&f("matter"), &self.matter, MAX_NAME_CHARS)?;
        if self.items.is_empty() || self.items.len() > MAX_DECISION_ITEMS {
            return Err(DomainError::invalid(
                f("items"),
                format!("between 1 and {MAX_DECISION_ITEMS} supervision items"),
            ));
        }
        for (i, id) in self.items.iter().enumerate() {
            validate::generated_id(&f(&format!("items[{i}]")), id, "item", 1)?;
            if self.items[..i].contains(id) {
                return Err(DomainError::invalid(
                    f(&format!("items[{i}]")),
                    format!("{id} is listed twice"),
                ));
            }
        }
        validate::sha256_hex(&f("document"), &self.document)?;
        if self.valid_until_ms.is_some_and(|t| t <= 0) {
            return Err(DomainError::invalid(
                f("valid_until_ms"),
                "a time after the epoch, or absent",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicensingDecision {
    /// `lic-<revision>`.
    pub id: String,
    pub spec: LicensingDecisionSpec,
    /// The licensing bureau that recorded it.
    pub by: String,
    pub at_ms: i64,
    pub revision: u64,
    /// The departments it was pushed to, and the case each received.
    pub supervisors: Vec<String>,
    pub cases: Vec<String>,
}
