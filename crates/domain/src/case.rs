//! Case hand-offs (线索移交) and risk warnings: the closed loop between departments
//! (生成、推送、核查、处置、反馈) with a deadline on every stage.
//!
//! ```text
//! pushed ──accept──▶ in_progress ──resolve──▶ resolved ──confirm──▶ closed
//!   │                    ▲                       │
//!   └─reject─▶ rejected  └──────── return for rework (originator)
//!                │  ├─reroute (originator) ─▶ pushed (to another department)
//!                │  └─escalate (originator) ─▶ escalated ──assign (arbiter)──▶ in_progress
//! ```

use serde::{Deserialize, Serialize};

use crate::validate::{self, MAX_NAME_CHARS, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use crate::DomainError;

pub const MAX_RECEIVERS: usize = 16;
pub const MAX_EVIDENCE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseSource {
    Hotline12345,
    Complaint,
    Report,
    InspectionResult,
    RiskWarningModel,
    PublicOpinion,
    Other,
    /// A licensing decision pushed to the supervising departments (审管联动).
    LicensingDecision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// A clue in another department's remit.
    Clue,
    /// A risk warning: verify → handle → feedback, on shorter deadlines.
    RiskWarning,
    /// A case suspected to be a crime, transferred by the handling department to
    /// a judicial organ with the documents the rules require (行刑衔接).
    CriminalTransfer,
    /// Assistance the judicial organ asks of the transferring department
    /// (inspection, appraisal, evidence custody), linked to the transfer.
    Assistance,
    /// A licensing decision, pushed by the licensing bureau to the departments
    /// that supervise the licensed matter (审管联动).
    LicensingNotice,
}

impl CaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::Clue => "clue",
            CaseKind::RiskWarning => "risk_warning",
            CaseKind::CriminalTransfer => "criminal_transfer",
            CaseKind::Assistance => "assistance",
            CaseKind::LicensingNotice => "licensing_notice",
        }
    }
}

/// The documents of a transfer to a judicial organ (《行政执法机关移送涉嫌犯罪案件的规定》
/// art. 6): the transfer letter, the investigation report and the list of items
/// involved are required; inspection or appraisal reports where there are any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    TransferLetter,
    InvestigationReport,
    ItemList,
    AppraisalReport,
    Other,
}

pub const REQUIRED_TRANSFER_DOCUMENTS: [DocumentKind; 3] = [
    DocumentKind::TransferLetter,
    DocumentKind::InvestigationReport,
    DocumentKind::ItemList,
];

pub const MAX_DOCUMENTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDocument {
    pub kind: DocumentKind,
    pub title: String,
    /// SHA-256 (lower-case hex) of the file, kept where the department keeps files.
    pub sha256: String,
}

/// Validates a transfer's documents: each well formed, the required kinds present.
pub fn validate_documents(
    field: &(impl std::fmt::Display + ?Sized),
    documents: &[CaseDocument],
) -> Result<(), DomainError> {
    if documents.len() > MAX_DOCUMENTS {
        return Err(DomainError::invalid(
            field.to_string(),
            format!("at most {MAX_DOCUMENTS}"),
        ));
    }
    for (i, d) in documents.iter().enumerate() {
        validate::required_text(&format!("{field}[{i}].title"), &d.title, MAX_NAME_CHARS)?;
        validate::sha256_hex(&format!("{field}[{i}].sha256"), &d.sha256)?;
    }
    for required in REQUIRED_TRANSFER_DOCUMENTS {
        if !documents.iter().any(|d| d.kind == required) {
            return Err(DomainError::invalid(
                field.to_string(),
                format!(
                    "{} is missing (a transfer to a judicial organ carries a transfer_letter, an investigation_report and an item_list)",
                    serde_json::to_value(required)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// What a judicial organ asks of the administrative department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssistanceKind {
    Inspection,
    Appraisal,
    EvidenceCustody,
}

/// How serious a risk warning is (蓝、黄、橙、红).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningLevel {
    Blue,
    Yellow,
    Orange,
    Red,
}

pub const MAX_WARNING_ENTITIES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Pushed,
    Rejected,
    Escalated,
    InProgress,
    Resolved,
    Closed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Pushed => "PUSHED",
            CaseStatus::Rejected => "REJECTED",
            CaseStatus::Escalated => "ESCALATED",
            CaseStatus::InProgress => "IN_PROGRESS",
            CaseStatus::Resolved => "RESOLVED",
            CaseStatus::Closed => "CLOSED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSpec {
    pub kind: CaseKind,
    pub source: CaseSource,
    /// e.g. the hotline ticket, the inspection task, the model's run id.
    pub source_ref: String,
    /// The subject entity, when known.
    pub uscc: Option<String>,
    pub title: String,
    pub description: String,
    /// SHA-256 (hex) of each evidence file.
    pub evidence: Vec<String>,
    /// Receiving departments: one linked sub-case per receiver.
    pub to: Vec<String>,
    pub priority: Priority,
    /// Risk warnings: the warning level (required) and the other entities the
    /// warning concerns besides `uscc`.
    #[serde(default)]
    pub level: Option<WarningLevel>,
    #[serde(default)]
    pub entities: Vec<String>,
    /// Criminal transfers: the documents sent with it.
    #[serde(default)]
    pub documents: Vec<CaseDocument>,
    /// Assistance requests: what is asked.
    #[serde(default)]
    pub assistance: Option<AssistanceKind>,
}

pub fn validate_evidence(
    field: &(impl std::fmt::Display + ?Sized),
    evidence: &[String],
) -> Result<(), DomainError> {
    validate::sha256_list(field, evidence, MAX_EVIDENCE)
}

impl CaseSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |n: &'static str| validate::Path(prefix, n);
        validate::optional_text(&f("source_ref"), &self.source_ref, MAX_SHORT_CHARS)?;
        if let Some(u) = &self.uscc {
            crate::uscc::validate(&f("uscc"), u)?;
        }
        validate::required_text(&f("title"), &self.title, MAX_NAME_CHARS)?;
        validate::required_text(&f("description"), &self.description, MAX_TEXT_CHARS)?;
        validate_evidence(&f("evidence"), &self.evidence)?;
        match (self.kind, self.level) {
            (CaseKind::RiskWarning, None) => {
                return Err(DomainError::invalid(
                    f("level"),
                    "required for a risk warning",
                ))
            }
            (CaseKind::Clue, Some(_)) => {
                return Err(DomainError::invalid(
                    f("level"),
                    "only risk warnings have a level",
                ))
            }
            _ => {}
        }
        match (self.kind, self.documents.is_empty()) {
            (CaseKind::CriminalTransfer, _) => {
                validate_documents(&f("documents"), &self.documents)?
            }
            (_, false) => {
                return Err(DomainError::invalid(
                    f("documents"),
                    "only a transfer to a judicial organ carries documents",
                ))
            }
            _ => {}
        }
        match (self.kind, self.assistance) {
            (CaseKind::Assistance, None) => {
                return Err(DomainError::invalid(
                    f("assistance"),
                    "required for an assistance request",
                ))
            }
            (CaseKind::Assistance, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(DomainError::invalid(
                    f("assistance"),
                    "only assistance requests say what is asked",
                ))
            }
        }
        if self.entities.len() > MAX_WARNING_ENTITIES {
            return Err(DomainError::invalid(
                f("entities"),
                format!("at most {MAX_WARNING_ENTITIES}"),
            ));
        }
        for (i, u) in self.entities.iter().enumerate() {
            crate::uscc::validate(&validate::Indexed(&f("entities"), i), u)?;
            if self.entities[..i].contains(u) || self.uscc.as_ref() == Some(u) {
                return Err(DomainError::invalid(
                    format!("{prefix}.entities[{i}]"),
                    format!("{u} is listed twice"),
                ));
            }
        }
        if self.to.is_empty() || self.to.len() > MAX_RECEIVERS {
            return Err(DomainError::invalid(
                f("to"),
                format!("between 1 and {MAX_RECEIVERS} receiving departments"),
            ));
        }
        for (i, d) in self.to.iter().enumerate() {
            validate::department_code(&validate::Indexed(&f("to"), i), d)?;
            if self.to[..i].contains(d) {
                return Err(DomainError::invalid(
                    format!("{prefix}.to[{i}]"),
                    format!("{d} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

/// Hours allowed per stage, per kind of case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageHours {
    /// From push (or re-route) to accept or reject.
    pub accept: u32,
    /// From escalation to the arbiter's assignment.
    pub assign: u32,
    /// From acceptance (or assignment, or rework) to resolution.
    pub handle: u32,
    /// From resolution to the originator's confirmation.
    pub feedback: u32,
    /// From rejection to the originator's re-route or escalation.
    pub reroute: u32,
    /// A reminder this many hours before a deadline (0: none).
    pub remind_before: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlinePolicy {
    pub clue: StageHours,
    pub risk_warning: StageHours,
    #[serde(default = "default_criminal_transfer")]
    pub criminal_transfer: StageHours,
    #[serde(default = "default_assistance")]
    pub assistance: StageHours,
    #[serde(default = "default_licensing_notice")]
    pub licensing_notice: StageHours,
}

/// The organ decides within three days whether to open a criminal case.
pub fn default_criminal_transfer() -> StageHours {
    StageHours {
        accept: 72,
        assign: 120,
        handle: 720,
        feedback: 168,
        reroute: 72,
        remind_before: 24,
    }
}

pub fn default_assistance() -> StageHours {
    StageHours {
        accept: 24,
        assign: 48,
        handle: 240,
        feedback: 72,
        reroute: 24,
        remind_before: 8,
    }
}

/// A licensing decision is claimed by its supervisors within a day, and their
/// supervision arranged within thirty.
pub fn default_licensing_notice() -> StageHours {
    StageHours {
        accept: 24,
        assign: 48,
        handle: 720,
        feedback: 168,
        reroute: 24,
        remind_before: 8,
    }
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        DeadlinePolicy {
            criminal_transfer: default_criminal_transfer(),
            assistance: default_assistance(),
            licensing_notice: default_licensing_notice(),
            clue: StageHours {
                accept: 72,
                assign: 120,
                handle: 360,
                feedback: 168,
                reroute: 72,
                remind_before: 24,
            },
            risk_warning: StageHours {
                accept: 24,
                assign: 48,
                handle: 120,
                feedback: 72,
                reroute: 24,
                remind_before: 8,
            },
        }
    }
}

impl DeadlinePolicy {
    pub fn validate(&self) -> Result<(), DomainError> {
        for (name, h) in [
            ("clue", &self.clue),
            ("risk_warning", &self.risk_warning),
            ("criminal_transfer", &self.criminal_transfer),
            ("assistance", &self.assistance),
            ("licensing_notice", &self.licensing_notice),
        ] {
            for (stage, v) in [
                ("accept", h.accept),
                ("assign", h.assign),
                ("handle", h.handle),
                ("feedback", h.feedback),
                ("reroute", h.reroute),
            ] {
                if v == 0 || v > 24 * 366 {
                    return Err(DomainError::invalid(
                        format!("policy.{name}.{stage}"),
                        "between 1 and 8784 hours",
                    ));
                }
            }
            let shortest = h
                .accept
                .min(h.assign)
                .min(h.handle)
                .min(h.feedback)
                .min(h.reroute);
            if h.remind_before >= shortest {
                return Err(DomainError::invalid(
                    format!("policy.{name}.remind_before"),
                    "must be shorter than every stage",
                ));
            }
        }
        Ok(())
    }

    pub fn for_kind(&self, kind: CaseKind) -> &StageHours {
        match kind {
            CaseKind::Clue => &self.clue,
            CaseKind::RiskWarning => &self.risk_warning,
            CaseKind::CriminalTransfer => &self.criminal_transfer,
            CaseKind::Assistance => &self.assistance,
            CaseKind::LicensingNotice => &self.licensing_notice,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub outcome: String,
    pub measures: String,
    /// e.g. the administrative penalty decision number.
    pub penalty_ref: String,
}

/// One step of a case, kept forever (the full-process record of the case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseStep {
    pub action: String,
    pub by: String,
    pub at_ms: i64,
    pub revision: u64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// `case-<revision>-<n>`: one per receiver of a hand-off.
    pub id: String,
    /// The hand-off this case belongs to (`case-<revision>`); its siblings share it.
    pub handoff: String,
    pub from: String,
    /// The department that must act now on the receiving side (after an
    /// assignment: the one the arbiter chose).
    pub to: String,
    /// As pushed (its `to` lists every receiver of the hand-off; not flattened,
    /// since `to` above is this case's current receiver).
    pub spec: CaseSpec,
    pub status: CaseStatus,
    /// When the current stage is due (ms since the epoch).
    pub due_ms: i64,
    /// When the reminder of the current stage goes out (0: none).
    #[serde(default)]
    pub remind_at_ms: i64,
    pub overdue: bool,
    /// When the receiving department acknowledged receipt (first time only).
    pub acknowledged_at_ms: Option<i64>,
    pub resolution: Option<Resolution>,
    pub steps: Vec<CaseStep>,
    /// The case this one was opened from (a transfer's administrative case, an
    /// assistance request's transfer).
    #[serde(default)]
    pub parent: Option<String>,
    /// Cases opened from this one, in order.
    #[serde(default)]
    pub linked: Vec<String>,
    pub created_revision: u64,
    pub updated_revision: u64,
}

impl Case {
    /// The department whose move it is: the receiver, the originator, or (while
    /// escalated) the arbiter role; None once closed.
    pub fn awaiting(&self) -> Awaiting {
        match self.status {
            CaseStatus::Pushed | CaseStatus::InProgress => Awaiting::Department(self.to.clone()),
            CaseStatus::Rejected | CaseStatus::Resolved => Awaiting::Department(self.from.clone()),
            CaseStatus::Escalated => Awaiting::Arbiter,
            CaseStatus::Closed => Awaiting::Nobody,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Awaiting {
    Department(String),
    Arbiter,
    Nobody,
}

/// A step a department takes on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseAction {
    Acknowledge,
    Accept,
    Reject {
        reason: String,
    },
    Reroute {
        to: String,
        reason: String,
    },
    Escalate {
        reason: String,
    },
    Assign {
        to: String,
        reason: String,
    },
    Resolve {
        resolution: Resolution,
    },
    ConfirmFeedback {
        note: String,
    },
    ReturnForRework {
        reason: String,
    },
    /// The handler transfers the case to a judicial organ; opens a linked case.
    TransferToJudicial {
        to: String,
        documents: Vec<CaseDocument>,
        reason: String,
    },
    /// The judicial organ asks the transferring department for assistance; opens a
    /// linked case.
    RequestAssistance {
        assistance: AssistanceKind,
        description: String,
        evidence: Vec<String>,
    },
}

impl CaseAction {
    pub fn name(&self) -> &'static str {
        match self {
            CaseAction::Acknowledge => "acknowledge",
            CaseAction::Accept => "accept",
            CaseAction::Reject { .. } => "reject",
            CaseAction::Reroute { .. } => "reroute",
            CaseAction::Escalate { .. } => "escalate",
            CaseAction::Assign { .. } => "assign",
            CaseAction::Resolve { .. } => "resolve",
            CaseAction::ConfirmFeedback { .. } => "confirm_feedback",
            CaseAction::ReturnForRework { .. } => "return_for_rework",
            CaseAction::TransferToJudicial { .. } => "transfer_to_judicial",
            CaseAction::RequestAssistance { .. } => "request_assistance",
        }
    }

    /// The statuses the action may be taken in.
    pub fn from_statuses(&self) -> &'static [CaseStatus] {
        use CaseStatus::*;
        match self {
            CaseAction::Acknowledge => &[Pushed, InProgress],
            CaseAction::Accept | CaseAction::Reject { .. } => &[Pushed],
            CaseAction::Reroute { .. } | CaseAction::Escalate { .. } => &[Rejected],
            CaseAction::Assign { .. } => &[Escalated],
            CaseAction::Resolve { .. } => &[InProgress],
            CaseAction::ConfirmFeedback { .. } | CaseAction::ReturnForRework { .. } => &[Resolved],
            CaseAction::TransferToJudicial { .. } => &[InProgress],
            CaseAction::RequestAssistance { .. } => &[Pushed, InProgress],
        }
    }

    /// Checks the action's own fields; `prefix` is their field path.
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |n: &str| format!("{prefix}.{n}");
        match self {
            CaseAction::Acknowledge | CaseAction::Accept => Ok(()),
            CaseAction::Reject { reason }
            | CaseAction::Escalate { reason }
            | CaseAction::ReturnForRework { reason } => {
                validate::required_text(&f("reason"), reason, MAX_TEXT_CHARS)
            }
            CaseAction::Reroute { to, reason } | CaseAction::Assign { to, reason } => {
                validate::department_code(&f("to"), to)?;
                validate::required_text(&f("reason"), reason, MAX_TEXT_CHARS)
            }
            CaseAction::Resolve { resolution } => {
                validate::required_text(
                    &f("resolution.outcome"),
                    &resolution.outcome,
                    MAX_SHORT_CHARS,
                )?;
                validate::required_text(
                    &f("resolution.measures"),
                    &resolution.measures,
                    MAX_TEXT_CHARS,
                )?;
                validate::optional_text(
                    &f("resolution.penalty_ref"),
                    &resolution.penalty_ref,
                    MAX_SHORT_CHARS,
                )
            }
            CaseAction::ConfirmFeedback { note } => {
                validate::optional_text(&f("note"), note, MAX_TEXT_CHARS)
            }
            CaseAction::TransferToJudicial {
                to,
                documents,
                reason,
            } => {
                validate::department_code(&f("to"), to)?;
                validate_documents(&f("documents"), documents)?;
                validate::required_text(&f("reason"), reason, MAX_TEXT_CHARS)
            }
            CaseAction::RequestAssistance {
                description,
                evidence,
                ..
            } => {
                validate::required_text(&f("description"), description, MAX_TEXT_CHARS)?;
                validate_evidence(&f("evidence"), evidence)
            }
        }
    }
}

/// A notice in a department's case inbox: a reminder or an overdue stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseNotice {
    pub case_id: String,
    /// `reminder` or `overdue`.
    pub kind: String,
    pub status: CaseStatus,
    pub due_ms: i64,
    pub revision: u64,
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CaseSpec {
        CaseSpec {
            kind: CaseKind::RiskWarning,
            source: CaseSource::Hotline12345,
            source_ref: "12345-1".into(),
            uscc: Some("91310110666007217T".into()),
            title: "无证经营".into(),
            description: "线索".into(),
            evidence: vec!["a".repeat(64)],
            to: vec!["SAMR".into()],
            priority: Priority::Normal,
            level: Some(WarningLevel::Red),
            entities: vec!["91110000600037341L".into()],
            documents: vec![],
            assistance: None,
        }
    }

    fn field_of(s: &CaseSpec) -> String {
        match s.validate("spec") {
            Err(DomainError::InvalidArgument { field, .. }) => field,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    /// Field paths are built only when a check fails; they must still name the
    /// element, as integration engineers read them.
    #[test]
    fn a_refused_spec_names_the_element_that_failed() {
        spec().validate("spec").unwrap();
        let mut s = spec();
        s.evidence.push("not-a-digest".into());
        assert_eq!(field_of(&s), "spec.evidence[1]");
        let mut s = spec();
        s.entities.push("91310110666007217X".into());
        assert_eq!(field_of(&s), "spec.entities[1]");
        let mut s = spec();
        s.entities.push("91110000600037341L".into());
        assert_eq!(field_of(&s), "spec.entities[1]");
        let mut s = spec();
        s.to.push("samr".into());
        assert_eq!(field_of(&s), "spec.to[1]");
        let mut s = spec();
        s.uscc = Some("9131011066600721７T".into());
        assert_eq!(field_of(&s), "spec.uscc");
        let mut s = spec();
        s.title = " ".into();
        assert_eq!(field_of(&s), "spec.title");
    }
}
