//! Apply for licensing decisions (审管联动): record the decision, push it to the
//! supervisors of its items as linked cases, bring the directory's licence status
//! along; and push violations found about a licensed entity back to its bureau.

use super::*;
use crate::case::{Case, CaseKind, CaseSource, CaseSpec, Priority};
use crate::entity::Entity;
use crate::licensing::{LicensingAction, LicensingDecision, LicensingDecisionSpec};

pub(super) fn record_decision(
    tx: &mut Tx,
    spec: &LicensingDecisionSpec,
) -> Result<Outcome, Failure> {
    spec.validate("decision")?;
    if let Some(existing) = tx.get::<String>(&keys::licensing_number(&spec.number))? {
        return Err(DomainError::AlreadyExists {
            kind: "licensing decision number".into(),
            key: format!("{} (recorded as {existing})", spec.number),
        }
        .into());
    }
    let mut entity = tx
        .get::<Entity>(&keys::entity(&spec.uscc))?
        .ok_or_else(|| DomainError::not_found("entity", &spec.uscc))?;
    let actor = tx.env.actor.clone();
    // The supervisors: lead and cooperating departments of the items in force.
    // Unpublished items are as missing: drafts are not the bureau's to see.
    let mut supervisors = vec![];
    for id in &spec.items {
        let in_force = match tx.get::<Item>(&keys::item(id))? {
            Some(h) if h.published_version > 0 => {
                tx.get::<Item>(&keys::item_version(id, h.published_version))?
            }
            _ => None,
        };
        let item = in_force.ok_or_else(|| DomainError::not_found("published item", id))?;
        supervisors.push(item.lead().to_string());
        supervisors.extend(
            item.content
                .cooperating
                .iter()
                .map(|c| c.department.clone()),
        );
    }
    supervisors.sort();
    supervisors.dedup();
    supervisors.retain(|d| *d != actor);
    if supervisors.is_empty() {
        return Err(DomainError::invalid(
            "decision.items",
            "no department other than the bureau supervises these items",
        )
        .into());
    }
    let id = format!("lic-{}", tx.revision);
    let case_spec = CaseSpec {
        kind: CaseKind::LicensingNotice,
        source: CaseSource::LicensingDecision,
        source_ref: spec.number.clone(),
        uscc: Some(spec.uscc.clone()),
        title: format!("{}：{}", spec.action.label(), spec.matter),
        description: format!(
            "行政许可决定 {}（{}），监管事项 {}",
            spec.number,
            id,
            spec.items.join("、")
        ),
        evidence: vec![spec.document.clone()],
        to: supervisors.clone(),
        priority: match spec.action {
            LicensingAction::Suspend | LicensingAction::Revoke => Priority::High,
            _ => Priority::Normal,
        },
        level: None,
        entities: vec![],
        documents: vec![],
        assistance: None,
    };
    let cases = super::case::open_handoff(tx, &case_spec, None)?;
    let decision = LicensingDecision {
        id: id.clone(),
        spec: spec.clone(),
        by: actor.clone(),
        at_ms: tx.now(),
        revision: tx.revision,
        supervisors: supervisors.clone(),
        cases: cases.iter().map(|c| c.id.clone()).collect(),
    };
    tx.put(keys::licensing(&id), &decision);
    tx.put(keys::licensing_number(&spec.number), &id);
    tx.put(keys::licensing_by_entity(&spec.uscc, &id), &actor);
    // The directory follows the decision: a suspended or revoked licence takes the
    // entity out of the draws.
    let licence = spec.action.licence();
    if entity.spec.licence != licence {
        entity.spec.licence = licence;
        entity.updated_revision = tx.revision;
        tx.put(keys::entity(&spec.uscc), &entity);
        let mut told = supervisors;
        told.push(actor);
        told.sort();
        tx.emit(
            RecordKind::Entity,
            spec.uscc.clone(),
            "entity.licence_changed",
            told,
            EventRecord::Entity(entity),
        );
    }
    Ok(Outcome::Licensing { decision, cases })
}

/// A violation found in supervision.
pub(super) struct Violation {
    pub source: CaseSource,
    pub source_ref: String,
    pub findings: String,
    pub evidence: Vec<String>,
}

/// Pushes `violation` about `uscc` to every bureau that licensed it (except the
/// actor and `except`), as one hand-off in this revision. None licensed it: nothing.
pub(super) fn push_violation(
    tx: &mut Tx,
    uscc: &str,
    except: &[&str],
    violation: Violation,
) -> Result<Vec<Case>, Failure> {
    let mut bureaus: Vec<String> = scan_prefix(tx.base, &keys::licensings_of(uscc))?
        .iter()
        .map(|(k, v)| decode::<String>(k, v))
        .collect::<Result<_, _>>()?;
    bureaus.sort();
    bureaus.dedup();
    bureaus.retain(|b| *b != tx.env.actor && !except.contains(&b.as_str()));
    if bureaus.is_empty() {
        return Ok(vec![]);
    }
    let mut findings: String = violation.findings.chars().take(3_900).collect();
    if findings.trim().is_empty() {
        findings = "监管发现违法".into();
    }
    let spec = CaseSpec {
        kind: CaseKind::Clue,
        source: violation.source,
        source_ref: violation.source_ref.chars().take(100).collect(),
        uscc: Some(uscc.to_string()),
        title: format!("监管发现违法：{uscc}"),
        description: findings,
        evidence: violation.evidence,
        to: bureaus,
        priority: Priority::High,
        level: None,
        entities: vec![],
        documents: vec![],
        assistance: None,
    };
    super::case::open_handoff(tx, &spec, None)
}
