//! Wire ↔ domain for case hand-offs.

use concord_domain::case::{
    AssistanceKind, Case, CaseAction, CaseDocument, CaseKind, CaseNotice, CaseSource, CaseSpec,
    DeadlinePolicy, DocumentKind, Priority, Resolution, StageHours, WarningLevel,
};
use concord_domain::licensing::{LicensingAction, LicensingDecision, LicensingDecisionSpec};
use concord_domain::DomainError;
use concord_proto::case::v1 as pk;

use super::{required, unknown, unspecified};

fn kind(field: &str, n: i32) -> Result<CaseKind, DomainError> {
    match pk::CaseKind::try_from(n).map_err(|_| unknown(field, n))? {
        pk::CaseKind::Unspecified => Err(unspecified(field)),
        pk::CaseKind::Clue => Ok(CaseKind::Clue),
        pk::CaseKind::RiskWarning => Ok(CaseKind::RiskWarning),
        pk::CaseKind::CriminalTransfer => Ok(CaseKind::CriminalTransfer),
        pk::CaseKind::Assistance => Ok(CaseKind::Assistance),
        pk::CaseKind::LicensingNotice => Ok(CaseKind::LicensingNotice),
    }
}

fn kind_to_wire(k: CaseKind) -> pk::CaseKind {
    match k {
        CaseKind::Clue => pk::CaseKind::Clue,
        CaseKind::RiskWarning => pk::CaseKind::RiskWarning,
        CaseKind::CriminalTransfer => pk::CaseKind::CriminalTransfer,
        CaseKind::Assistance => pk::CaseKind::Assistance,
        CaseKind::LicensingNotice => pk::CaseKind::LicensingNotice,
    }
}

pub fn documents(field: &str, docs: &[pk::CaseDocument]) -> Result<Vec<CaseDocument>, DomainError> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let f = format!("{field}[{i}].kind");
            use pk::DocumentKind as K;
            let kind = match K::try_from(d.kind).map_err(|_| unknown(&f, d.kind))? {
                K::Unspecified => return Err(unspecified(&f)),
                K::TransferLetter => DocumentKind::TransferLetter,
                K::InvestigationReport => DocumentKind::InvestigationReport,
                K::ItemList => DocumentKind::ItemList,
                K::AppraisalReport => DocumentKind::AppraisalReport,
                K::OtherDocument => DocumentKind::Other,
            };
            Ok(CaseDocument {
                kind,
                title: d.title.clone(),
                sha256: d.sha256.clone(),
            })
        })
        .collect()
}

fn documents_to_wire(docs: &[CaseDocument]) -> Vec<pk::CaseDocument> {
    docs.iter()
        .map(|d| pk::CaseDocument {
            kind: match d.kind {
                DocumentKind::TransferLetter => pk::DocumentKind::TransferLetter,
                DocumentKind::InvestigationReport => pk::DocumentKind::InvestigationReport,
                DocumentKind::ItemList => pk::DocumentKind::ItemList,
                DocumentKind::AppraisalReport => pk::DocumentKind::AppraisalReport,
                DocumentKind::Other => pk::DocumentKind::OtherDocument,
            } as i32,
            title: d.title.clone(),
            sha256: d.sha256.clone(),
        })
        .collect()
}

/// The assistance asked; `required` refuses UNSPECIFIED.
pub fn assistance(
    field: &str,
    n: i32,
    required: bool,
) -> Result<Option<AssistanceKind>, DomainError> {
    use pk::AssistanceKind as A;
    Ok(match A::try_from(n).map_err(|_| unknown(field, n))? {
        A::Unspecified if required => return Err(unspecified(field)),
        A::Unspecified => None,
        A::Inspection => Some(AssistanceKind::Inspection),
        A::Appraisal => Some(AssistanceKind::Appraisal),
        A::EvidenceCustody => Some(AssistanceKind::EvidenceCustody),
    })
}

fn assistance_to_wire(a: Option<AssistanceKind>) -> pk::AssistanceKind {
    match a {
        None => pk::AssistanceKind::Unspecified,
        Some(AssistanceKind::Inspection) => pk::AssistanceKind::Inspection,
        Some(AssistanceKind::Appraisal) => pk::AssistanceKind::Appraisal,
        Some(AssistanceKind::EvidenceCustody) => pk::AssistanceKind::EvidenceCustody,
    }
}

fn source(field: &str, n: i32) -> Result<CaseSource, DomainError> {
    use pk::CaseSource as S;
    Ok(match S::try_from(n).map_err(|_| unknown(field, n))? {
        S::Unspecified => return Err(unspecified(field)),
        S::Hotline12345 => CaseSource::Hotline12345,
        S::Complaint => CaseSource::Complaint,
        S::Report => CaseSource::Report,
        S::InspectionResult => CaseSource::InspectionResult,
        S::RiskWarningModel => CaseSource::RiskWarningModel,
        S::PublicOpinion => CaseSource::PublicOpinion,
        S::Other => CaseSource::Other,
        S::LicensingDecision => CaseSource::LicensingDecision,
    })
}

fn priority(field: &str, n: i32) -> Result<Priority, DomainError> {
    Ok(
        match pk::Priority::try_from(n).map_err(|_| unknown(field, n))? {
            pk::Priority::Unspecified => return Err(unspecified(field)),
            pk::Priority::Low => Priority::Low,
            pk::Priority::Normal => Priority::Normal,
            pk::Priority::High => Priority::High,
            pk::Priority::Urgent => Priority::Urgent,
        },
    )
}

pub fn case_spec(field: &str, c: Option<&pk::Case>) -> Result<CaseSpec, DomainError> {
    let c = required(field, c)?;
    let spec = CaseSpec {
        kind: kind(&format!("{field}.kind"), c.kind)?,
        source: source(&format!("{field}.source"), c.source)?,
        source_ref: c.source_ref.clone(),
        uscc: (!c.uscc.is_empty()).then(|| c.uscc.clone()),
        title: c.title.clone(),
        description: c.description.clone(),
        evidence: c.evidence.clone(),
        to: c.to.clone(),
        priority: priority(&format!("{field}.priority"), c.priority)?,
        level: match pk::WarningLevel::try_from(c.level)
            .map_err(|_| unknown(&format!("{field}.level"), c.level))?
        {
            pk::WarningLevel::Unspecified => None,
            pk::WarningLevel::Blue => Some(WarningLevel::Blue),
            pk::WarningLevel::Yellow => Some(WarningLevel::Yellow),
            pk::WarningLevel::Orange => Some(WarningLevel::Orange),
            pk::WarningLevel::Red => Some(WarningLevel::Red),
        },
        entities: c.entities.clone(),
        documents: documents(&format!("{field}.documents"), &c.documents)?,
        assistance: assistance(&format!("{field}.assistance"), c.assistance, false)?,
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn case_to_wire(c: &Case) -> pk::Case {
    let s = &c.spec;
    pk::Case {
        id: c.id.clone(),
        handoff: c.handoff.clone(),
        from: c.from.clone(),
        to: vec![c.to.clone()],
        kind: kind_to_wire(s.kind) as i32,
        source: match s.source {
            CaseSource::Hotline12345 => pk::CaseSource::Hotline12345,
            CaseSource::Complaint => pk::CaseSource::Complaint,
            CaseSource::Report => pk::CaseSource::Report,
            CaseSource::InspectionResult => pk::CaseSource::InspectionResult,
            CaseSource::RiskWarningModel => pk::CaseSource::RiskWarningModel,
            CaseSource::PublicOpinion => pk::CaseSource::PublicOpinion,
            CaseSource::Other => pk::CaseSource::Other,
            CaseSource::LicensingDecision => pk::CaseSource::LicensingDecision,
        } as i32,
        source_ref: s.source_ref.clone(),
        uscc: s.uscc.clone().unwrap_or_default(),
        title: s.title.clone(),
        description: s.description.clone(),
        evidence: s.evidence.clone(),
        priority: match s.priority {
            Priority::Low => pk::Priority::Low,
            Priority::Normal => pk::Priority::Normal,
            Priority::High => pk::Priority::High,
            Priority::Urgent => pk::Priority::Urgent,
        } as i32,
        status: c.status.as_str().into(),
        due_ms: c.due_ms,
        overdue: c.overdue,
        acknowledged_at_ms: c.acknowledged_at_ms.unwrap_or(0),
        resolution: c.resolution.as_ref().map(|r| pk::Resolution {
            outcome: r.outcome.clone(),
            measures: r.measures.clone(),
            penalty_ref: r.penalty_ref.clone(),
        }),
        steps: c
            .steps
            .iter()
            .map(|s| pk::CaseStep {
                action: s.action.clone(),
                by: s.by.clone(),
                at_ms: s.at_ms,
                revision: s.revision,
                note: s.note.clone(),
            })
            .collect(),
        created_revision: c.created_revision,
        updated_revision: c.updated_revision,
        level: match s.level {
            None => pk::WarningLevel::Unspecified,
            Some(WarningLevel::Blue) => pk::WarningLevel::Blue,
            Some(WarningLevel::Yellow) => pk::WarningLevel::Yellow,
            Some(WarningLevel::Orange) => pk::WarningLevel::Orange,
            Some(WarningLevel::Red) => pk::WarningLevel::Red,
        } as i32,
        entities: s.entities.clone(),
        parent: c.parent.clone().unwrap_or_default(),
        linked: c.linked.clone(),
        documents: documents_to_wire(&s.documents),
        assistance: assistance_to_wire(s.assistance) as i32,
    }
}

/// The action of a step request for `method`, with its fields checked.
pub fn case_action(method: &str, r: &pk::CaseStepRequest) -> Result<CaseAction, DomainError> {
    let action = match method {
        "acknowledge" => CaseAction::Acknowledge,
        "accept" => CaseAction::Accept,
        "reject" => CaseAction::Reject {
            reason: r.reason.clone(),
        },
        "reroute" => CaseAction::Reroute {
            to: r.to.clone(),
            reason: r.reason.clone(),
        },
        "escalate" => CaseAction::Escalate {
            reason: r.reason.clone(),
        },
        "assign" => CaseAction::Assign {
            to: r.to.clone(),
            reason: r.reason.clone(),
        },
        "resolve" => {
            let res = r
                .resolution
                .as_ref()
                .ok_or_else(|| DomainError::invalid("resolution", "is required"))?;
            CaseAction::Resolve {
                resolution: Resolution {
                    outcome: res.outcome.clone(),
                    measures: res.measures.clone(),
                    penalty_ref: res.penalty_ref.clone(),
                },
            }
        }
        "confirm_feedback" => CaseAction::ConfirmFeedback {
            note: r.reason.clone(),
        },
        _ => CaseAction::ReturnForRework {
            reason: r.reason.clone(),
        },
    };
    // The step request's fields are top-level: validate with an empty prefix.
    action.validate("").map_err(top_level)?;
    Ok(action)
}

pub fn notice_to_wire(n: &CaseNotice) -> pk::CaseNotice {
    pk::CaseNotice {
        case_id: n.case_id.clone(),
        kind: n.kind.clone(),
        status: n.status.as_str().into(),
        due_ms: n.due_ms,
        revision: n.revision,
        at_ms: n.at_ms,
    }
}

fn hours(field: &str, h: Option<&pk::StageHours>) -> Result<StageHours, DomainError> {
    let h = required(field, h)?;
    Ok(StageHours {
        accept: h.accept,
        assign: h.assign,
        handle: h.handle,
        feedback: h.feedback,
        reroute: h.reroute,
        remind_before: h.remind_before,
    })
}

pub fn deadline_policy(
    field: &str,
    p: Option<&pk::DeadlinePolicy>,
) -> Result<DeadlinePolicy, DomainError> {
    let p = required(field, p)?;
    let policy = DeadlinePolicy {
        clue: hours(&format!("{field}.clue"), p.clue.as_ref())?,
        risk_warning: hours(&format!("{field}.risk_warning"), p.risk_warning.as_ref())?,
        criminal_transfer: match &p.criminal_transfer {
            None => concord_domain::case::default_criminal_transfer(),
            h => hours(&format!("{field}.criminal_transfer"), h.as_ref())?,
        },
        assistance: match &p.assistance {
            None => concord_domain::case::default_assistance(),
            h => hours(&format!("{field}.assistance"), h.as_ref())?,
        },
        licensing_notice: match &p.licensing_notice {
            None => concord_domain::case::default_licensing_notice(),
            h => hours(&format!("{field}.licensing_notice"), h.as_ref())?,
        },
    };
    policy.validate()?;
    Ok(policy)
}

pub fn deadline_policy_to_wire(p: &DeadlinePolicy) -> pk::DeadlinePolicy {
    let h = |s: &StageHours| pk::StageHours {
        accept: s.accept,
        assign: s.assign,
        handle: s.handle,
        feedback: s.feedback,
        reroute: s.reroute,
        remind_before: s.remind_before,
    };
    pk::DeadlinePolicy {
        clue: Some(h(&p.clue)),
        risk_warning: Some(h(&p.risk_warning)),
        criminal_transfer: Some(h(&p.criminal_transfer)),
        assistance: Some(h(&p.assistance)),
        licensing_notice: Some(h(&p.licensing_notice)),
    }
}

/// Strips the leading '.' the empty prefix leaves on field names.
fn top_level(e: DomainError) -> DomainError {
    match e {
        DomainError::InvalidArgument { field, reason } => DomainError::InvalidArgument {
            field: field.trim_start_matches('.').to_string(),
            reason,
        },
        other => other,
    }
}

pub fn transfer_action(r: &pk::TransferToJudicialRequest) -> Result<CaseAction, DomainError> {
    let action = CaseAction::TransferToJudicial {
        to: r.to.clone(),
        documents: documents("documents", &r.documents)?,
        reason: r.reason.clone(),
    };
    action.validate("").map_err(top_level)?;
    Ok(action)
}

pub fn assistance_action(r: &pk::RequestAssistanceRequest) -> Result<CaseAction, DomainError> {
    let action = CaseAction::RequestAssistance {
        assistance: assistance("assistance", r.assistance, true)?
            .ok_or_else(|| unspecified("assistance"))?,
        description: r.description.clone(),
        evidence: r.evidence.clone(),
    };
    action.validate("").map_err(top_level)?;
    Ok(action)
}

pub fn licensing_spec(
    field: &str,
    d: Option<&pk::LicensingDecision>,
) -> Result<LicensingDecisionSpec, DomainError> {
    let d = required(field, d)?;
    let f = format!("{field}.action");
    use pk::LicensingAction as A;
    let action = match A::try_from(d.action).map_err(|_| unknown(&f, d.action))? {
        A::Unspecified => return Err(unspecified(&f)),
        A::Grant => LicensingAction::Grant,
        A::Change => LicensingAction::Change,
        A::Renew => LicensingAction::Renew,
        A::Suspend => LicensingAction::Suspend,
        A::Revoke => LicensingAction::Revoke,
    };
    let spec = LicensingDecisionSpec {
        number: d.number.clone(),
        uscc: d.uscc.clone(),
        action,
        matter: d.matter.clone(),
        items: d.items.clone(),
        document: d.document.clone(),
        valid_until_ms: (d.valid_until_ms != 0).then_some(d.valid_until_ms),
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn licensing_to_wire(d: &LicensingDecision) -> pk::LicensingDecision {
    let s = &d.spec;
    pk::LicensingDecision {
        id: d.id.clone(),
        number: s.number.clone(),
        uscc: s.uscc.clone(),
        action: match s.action {
            LicensingAction::Grant => pk::LicensingAction::Grant,
            LicensingAction::Change => pk::LicensingAction::Change,
            LicensingAction::Renew => pk::LicensingAction::Renew,
            LicensingAction::Suspend => pk::LicensingAction::Suspend,
            LicensingAction::Revoke => pk::LicensingAction::Revoke,
        } as i32,
        matter: s.matter.clone(),
        items: s.items.clone(),
        document: s.document.clone(),
        valid_until_ms: s.valid_until_ms.unwrap_or(0),
        by: d.by.clone(),
        at_ms: d.at_ms,
        revision: d.revision,
        supervisors: d.supervisors.clone(),
        cases: d.cases.clone(),
    }
}
