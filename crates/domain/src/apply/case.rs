//! Apply for case hand-offs: push, each step of the closed loop, deadlines and
//! reminders driven by the leader's tick, and the per-department inbox index.

use super::*;
use crate::case::{
    Awaiting, Case, CaseAction, CaseKind, CaseNotice, CaseSpec, CaseStatus, CaseStep,
    DeadlinePolicy,
};
use crate::department::DepartmentKind;

const HOUR_MS: i64 = 3_600_000;
/// The awaiting-index owner for cases waiting on the arbiter role.
pub const ARBITER: &str = "@arbiter";
/// Deadlines and reminders handled by one tick; the rest follow in the next.
const DUE_BATCH: usize = 1_000;

fn deadlines(tx: &Tx) -> Result<DeadlinePolicy, Failure> {
    Ok(tx.get(keys::CASE_DEADLINES)?.unwrap_or_default())
}

/// Departments with the ARBITER role, in code order.
fn arbiters(tx: &Tx) -> Result<Vec<String>, Failure> {
    // Every case step asks: one key, kept by every department change. A state
    // from before that key (a cluster upgraded in place) scans the registry
    // until its next department change; both give the same list, so replicas
    // agree whichever they use.
    if let Some(codes) = tx.get::<Vec<String>>(keys::ARBITERS)? {
        return Ok(codes);
    }
    Ok(super::arbiters_in_registry(tx, &[])?)
}

fn awaiting_owner(case: &Case) -> Option<String> {
    match case.awaiting() {
        Awaiting::Department(d) => Some(d),
        Awaiting::Arbiter => Some(ARBITER.to_string()),
        Awaiting::Nobody => None,
    }
}

/// Who hears about a case: both sides, and the arbiters.
fn audience(tx: &Tx, case: &Case) -> Result<Vec<String>, Failure> {
    let mut d = vec![case.from.clone(), case.to.clone()];
    d.extend(case.steps.iter().map(|s| s.by.clone()));
    d.extend(arbiters(tx)?);
    d.sort();
    d.dedup();
    Ok(d)
}

impl Tx<'_> {
    /// Removes the case's current deadline, reminder and awaiting entries (by the
    /// times stored on the case, whatever the policy says now).
    fn unindex_case(&mut self, case: &Case) -> Result<(), Failure> {
        self.writes
            .insert(keys::case_due(case.due_ms, &case.id), None);
        if case.remind_at_ms > 0 {
            self.writes
                .insert(keys::case_reminder(case.remind_at_ms, &case.id), None);
        }
        if let Some(owner) = awaiting_owner(case) {
            self.writes
                .insert(keys::case_awaiting(&owner, &case.id), None);
        }
        Ok(())
    }

    /// Saves a case that entered a new stage: its deadline, reminder and awaiting
    /// entries, and emits it.
    fn save_case(&mut self, case: &Case, action: &str) -> Result<(), Failure> {
        if case.status != CaseStatus::Closed && !case.overdue {
            self.writes
                .insert(keys::case_due(case.due_ms, &case.id), Some(vec![]));
            if case.remind_at_ms > 0 {
                self.writes.insert(
                    keys::case_reminder(case.remind_at_ms, &case.id),
                    Some(vec![]),
                );
            }
        }
        if let Some(owner) = awaiting_owner(case) {
            self.writes
                .insert(keys::case_awaiting(&owner, &case.id), Some(vec![]));
        }
        self.record_case(case, action)
    }

    /// Saves the case record alone (its stage and indexes unchanged) and emits it.
    fn record_case(&mut self, case: &Case, action: &str) -> Result<(), Failure> {
        let json = encode(case);
        self.writes.insert(keys::case(&case.id), Some(json.clone()));
        let audience = audience(self, case)?;
        self.emit(
            RecordKind::Case,
            case.id.clone(),
            action,
            audience,
            EventRecord::Case(case.clone()),
        );
        // The event carries the same JSON (`event::encode`).
        if let Some(last) = self.event_records.last_mut() {
            *last = Some(json);
        }
        Ok(())
    }

    fn notify(&mut self, departments: &[String], notice: &CaseNotice) {
        for d in departments {
            self.put(
                keys::case_notice(d, self.revision, &notice.case_id, &notice.kind),
                notice,
            );
        }
    }
}

/// Sets the case's deadline and reminder for the stage it is in now.
fn schedule(policy: &DeadlinePolicy, case: &mut Case, now: i64) {
    let hours = stage_hours(policy, case) as i64;
    let remind = policy.for_kind(case.spec.kind).remind_before as i64;
    if case.status == CaseStatus::Closed {
        case.due_ms = 0;
        case.remind_at_ms = 0;
    } else {
        case.due_ms = now + hours * HOUR_MS;
        case.remind_at_ms = if remind > 0 && remind < hours {
            case.due_ms - remind * HOUR_MS
        } else {
            0
        };
    }
}

fn stage_hours(policy: &DeadlinePolicy, case: &Case) -> u32 {
    let h = policy.for_kind(case.spec.kind);
    match case.status {
        CaseStatus::Pushed => h.accept,
        CaseStatus::Rejected => h.reroute,
        CaseStatus::Escalated => h.assign,
        CaseStatus::InProgress => h.handle,
        CaseStatus::Resolved => h.feedback,
        CaseStatus::Closed => 0,
    }
}

pub(super) fn push_case(tx: &mut Tx, spec: &CaseSpec) -> Result<Outcome, Failure> {
    spec.validate("case")?;
    match spec.kind {
        CaseKind::Clue | CaseKind::RiskWarning => {}
        CaseKind::CriminalTransfer | CaseKind::Assistance | CaseKind::LicensingNotice => {
            return Err(DomainError::invalid(
                "case.kind",
                "criminal transfers are opened with TransferToJudicial, assistance with RequestAssistance, licensing notices by RecordLicensingDecision",
            )
            .into())
        }
    }
    let first_event = tx.events.len();
    let cases = open_handoff(tx, spec, None)?;
    // The outcome is the cases as just recorded, one event each: the request-id
    // record takes their JSON from there rather than encoding them again.
    let recorded: Option<Vec<&[u8]>> = tx.event_records[first_event..]
        .iter()
        .map(Option::as_deref)
        .collect();
    if let Some(recorded) = recorded.filter(|r| r.len() == cases.len()) {
        let mut json = b"{\"cases\":[".to_vec();
        for (i, case) in recorded.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(case);
        }
        json.extend_from_slice(b"]}");
        tx.outcome_json = Some(json);
    }
    Ok(Outcome::Cases(cases))
}

/// Opens one case per receiver of `spec`, from the actor, under the hand-off
/// `case-<revision>` (one per revision: no command opens two hand-offs).
pub(super) fn open_handoff(
    tx: &mut Tx,
    spec: &CaseSpec,
    parent: Option<&str>,
) -> Result<Vec<Case>, Failure> {
    let from = tx.env.actor.clone();
    for (i, d) in spec.to.iter().enumerate() {
        if *d == from {
            return Err(DomainError::invalid(
                format!("case.to[{i}]"),
                "a department does not hand a case to itself",
            )
            .into());
        }
        if !tx.holds(&keys::department(d))? {
            return Err(DomainError::invalid(
                format!("case.to[{i}]"),
                format!("unknown department {d}"),
            )
            .into());
        }
    }
    let policy = deadlines(tx)?;
    let handoff = format!("case-{}", tx.revision);
    let mut cases = vec![];
    for (i, to) in spec.to.iter().enumerate() {
        let mut case = Case {
            id: format!("{handoff}-{}", i + 1),
            handoff: handoff.clone(),
            from: from.clone(),
            to: to.clone(),
            spec: CaseSpec {
                to: vec![to.clone()],
                ..spec.clone()
            },
            status: CaseStatus::Pushed,
            due_ms: 0,
            remind_at_ms: 0,
            overdue: false,
            acknowledged_at_ms: None,
            resolution: None,
            steps: vec![CaseStep {
                action: "push".into(),
                by: from.clone(),
                at_ms: tx.now(),
                revision: tx.revision,
                note: String::new(),
            }],
            parent: parent.map(str::to_string),
            linked: vec![],
            created_revision: tx.revision,
            updated_revision: tx.revision,
        };
        schedule(&policy, &mut case, tx.now());
        tx.save_case(&case, "case.pushed")?;
        cases.push(case);
    }
    Ok(cases)
}

/// Transfer to a judicial organ, or a judicial organ's request for assistance:
/// opens a case linked to `case`, which keeps its stage and records the link.
fn open_linked(tx: &mut Tx, mut case: Case, action: &CaseAction) -> Result<Outcome, Failure> {
    let base = CaseSpec {
        to: vec![],
        level: None,
        documents: vec![],
        assistance: None,
        source_ref: case.id.clone(),
        ..case.spec.clone()
    };
    let (spec, note) = match action {
        CaseAction::TransferToJudicial {
            to,
            documents,
            reason,
        } => {
            let organ = tx.get::<Department>(&keys::department(to))?;
            if !organ.is_some_and(|d| d.spec.kind == DepartmentKind::Judicial) {
                return Err(DomainError::invalid(
                    "action.to",
                    format!("{to} is not a registered judicial organ"),
                )
                .into());
            }
            let spec = CaseSpec {
                kind: CaseKind::CriminalTransfer,
                to: vec![to.clone()],
                documents: documents.clone(),
                description: reason.clone(),
                ..base
            };
            (spec, reason.clone())
        }
        CaseAction::RequestAssistance {
            assistance,
            description,
            evidence,
        } => {
            if case.spec.kind != CaseKind::CriminalTransfer {
                return Err(DomainError::precondition(format!(
                    "assistance is requested on a criminal transfer; {} is a {}",
                    case.id,
                    case.spec.kind.as_str()
                ))
                .into());
            }
            let spec = CaseSpec {
                kind: CaseKind::Assistance,
                to: vec![case.from.clone()],
                assistance: Some(*assistance),
                description: description.clone(),
                evidence: evidence.clone(),
                entities: vec![],
                ..base
            };
            (spec, description.clone())
        }
        other => {
            return Err(
                DomainError::precondition(format!("{} opens no linked case", other.name())).into(),
            )
        }
    };
    spec.validate("action")?;
    let opened = open_handoff(tx, &spec, Some(&case.id))?;
    let Some(linked) = opened.into_iter().next() else {
        return Err(DomainError::precondition("no linked case was opened").into());
    };
    case.linked.push(linked.id.clone());
    case.steps.push(CaseStep {
        action: action.name().to_string(),
        by: tx.env.actor.clone(),
        at_ms: tx.now(),
        revision: tx.revision,
        note: format!("{}: {note}", linked.id),
    });
    case.updated_revision = tx.revision;
    tx.record_case(&case, &format!("case.{}", action.name()))?;
    Ok(Outcome::Case(linked))
}

pub(super) fn case(tx: &Tx, id: &str) -> Result<Case, Failure> {
    tx.get::<Case>(&keys::case(id))?
        .ok_or_else(|| DomainError::not_found("case", id).into())
}

pub(super) fn case_step(tx: &mut Tx, id: &str, action: &CaseAction) -> Result<Outcome, Failure> {
    action.validate("action")?;
    let mut case = case(tx, id)?;
    if !action.from_statuses().contains(&case.status) {
        return Err(DomainError::precondition(format!(
            "{} is not a step of {id} in status {}",
            action.name(),
            case.status.as_str()
        ))
        .into());
    }
    let by = tx.env.actor.clone();
    if let CaseAction::Acknowledge = action {
        if case.acknowledged_at_ms.is_some() {
            return Ok(Outcome::Case(case));
        }
        case.acknowledged_at_ms = Some(tx.now());
        case.steps.push(CaseStep {
            action: "acknowledge".into(),
            by,
            at_ms: tx.now(),
            revision: tx.revision,
            note: String::new(),
        });
        case.updated_revision = tx.revision;
        tx.record_case(&case, "case.acknowledged")?;
        return Ok(Outcome::Case(case));
    }
    if let CaseAction::TransferToJudicial { .. } | CaseAction::RequestAssistance { .. } = action {
        return open_linked(tx, case, action);
    }
    let check_target = |tx: &Tx, field: &str, to: &str, case: &Case| -> Result<(), Failure> {
        if tx.get::<Department>(&keys::department(to))?.is_none() {
            return Err(DomainError::invalid(field, format!("unknown department {to}")).into());
        }
        if to == case.from {
            return Err(
                DomainError::invalid(field, "the originator does not handle its own case").into(),
            );
        }
        // A suspected crime stays with the judicial organs.
        if case.spec.kind == CaseKind::CriminalTransfer
            && !tx
                .get::<Department>(&keys::department(to))?
                .is_some_and(|d| d.spec.kind == DepartmentKind::Judicial)
        {
            return Err(DomainError::invalid(
                field,
                format!("{to} is not a judicial organ; a criminal transfer stays with one"),
            )
            .into());
        }
        Ok(())
    };
    let old = case.clone();
    let (status, note) = match action {
        // Handled above; they never change the stage.
        CaseAction::Acknowledge
        | CaseAction::TransferToJudicial { .. }
        | CaseAction::RequestAssistance { .. } => return Ok(Outcome::Case(case)),
        CaseAction::Accept => (CaseStatus::InProgress, String::new()),
        CaseAction::Reject { reason } => (CaseStatus::Rejected, reason.clone()),
        CaseAction::Reroute { to, reason } => {
            check_target(tx, "action.to", to, &case)?;
            if *to == case.to {
                return Err(
                    DomainError::invalid("action.to", format!("{to} already rejected it")).into(),
                );
            }
            case.to = to.clone();
            case.acknowledged_at_ms = None;
            (CaseStatus::Pushed, reason.clone())
        }
        CaseAction::Escalate { reason } => {
            if arbiters(tx)?.is_empty() {
                return Err(DomainError::precondition(
                    "no department holds the ARBITER role to take an escalation",
                )
                .into());
            }
            (CaseStatus::Escalated, reason.clone())
        }
        CaseAction::Assign { to, reason } => {
            check_target(tx, "action.to", to, &case)?;
            if *to != case.to {
                case.acknowledged_at_ms = None;
            }
            case.to = to.clone();
            (CaseStatus::InProgress, reason.clone())
        }
        CaseAction::Resolve { resolution } => {
            case.resolution = Some(resolution.clone());
            (CaseStatus::Resolved, resolution.outcome.clone())
        }
        CaseAction::ConfirmFeedback { note } => (CaseStatus::Closed, note.clone()),
        CaseAction::ReturnForRework { reason } => (CaseStatus::InProgress, reason.clone()),
    };
    tx.unindex_case(&old)?;
    case.status = status;
    case.overdue = false;
    case.steps.push(CaseStep {
        action: action.name().to_string(),
        by,
        at_ms: tx.now(),
        revision: tx.revision,
        note,
    });
    let policy = deadlines(tx)?;
    schedule(&policy, &mut case, tx.now());
    case.updated_revision = tx.revision;
    tx.save_case(&case, &format!("case.{}", action.name()))?;
    // A penalty decided on a licensed entity goes back to its licensing bureau.
    if let (CaseAction::Resolve { resolution }, Some(uscc)) = (action, &case.spec.uscc) {
        if !resolution.penalty_ref.is_empty() {
            super::licensing::push_violation(
                tx,
                uscc,
                &[case.from.as_str()],
                super::licensing::Violation {
                    source: case.spec.source,
                    source_ref: case.id.clone(),
                    findings: format!(
                        "{}（处罚决定 {}）：{}",
                        resolution.outcome, resolution.penalty_ref, resolution.measures
                    ),
                    evidence: case.spec.evidence.clone(),
                },
            )?;
        }
    }
    Ok(Outcome::Case(case))
}

pub(super) fn set_deadlines(tx: &mut Tx, policy: &DeadlinePolicy) -> Result<Outcome, Failure> {
    policy.validate()?;
    tx.put(keys::CASE_DEADLINES.to_string(), policy);
    Ok(Outcome::CaseDeadlines(policy.clone()))
}

/// Parses `<prefix><time:20>/<case id>`.
fn due_key<'k>(key: &'k str, prefix: &str) -> Option<(i64, &'k str)> {
    let rest = key.strip_prefix(prefix)?;
    let (time, id) = rest.split_once('/')?;
    Some((time.parse().ok()?, id))
}

/// Marks stages overdue and sends reminders due by now; returns how many.
pub(super) fn process_due(tx: &mut Tx) -> Result<u32, Failure> {
    let mut n = 0;
    for (key, _) in tx.base.scan(keys::CASE_DUE, None, DUE_BATCH)? {
        let Some((due, id)) = due_key(&key, keys::CASE_DUE) else {
            continue;
        };
        if due > tx.now() {
            break;
        }
        let id = id.to_string();
        tx.writes.insert(key.clone(), None);
        // A key whose case moved on (or vanished) is dropped, never fatal to the tick.
        let Some(mut case) = tx.get::<Case>(&keys::case(&id))? else {
            continue;
        };
        if case.due_ms != due || case.overdue || case.status == CaseStatus::Closed {
            continue;
        }
        case.steps.push(CaseStep {
            action: "overdue".into(),
            by: String::new(),
            at_ms: tx.now(),
            revision: tx.revision,
            note: format!("stage {} was due at {due}", case.status.as_str()),
        });
        case.overdue = true;
        case.updated_revision = tx.revision;
        let arbiters = arbiters(tx)?;
        let mut told = vec![case.from.clone(), case.to.clone()];
        told.extend(arbiters);
        told.sort();
        told.dedup();
        let notice = CaseNotice {
            case_id: case.id.clone(),
            kind: "overdue".into(),
            status: case.status,
            due_ms: case.due_ms,
            revision: tx.revision,
            at_ms: tx.now(),
        };
        tx.notify(&told, &notice);
        tx.put(keys::case(&case.id), &case);
        tx.emit(
            RecordKind::Case,
            case.id.clone(),
            "case.overdue",
            told,
            EventRecord::Case(case.clone()),
        );
        n += 1;
    }
    for (key, _) in tx.base.scan(keys::CASE_REMINDER, None, DUE_BATCH)? {
        let Some((at, id)) = due_key(&key, keys::CASE_REMINDER) else {
            continue;
        };
        if at > tx.now() {
            break;
        }
        let id = id.to_string();
        tx.writes.insert(key.clone(), None);
        let Some(case) = tx.get::<Case>(&keys::case(&id))? else {
            continue;
        };
        // Only the reminder of the stage the case is in, and not once overdue.
        if case.remind_at_ms != at || case.overdue || case.status == CaseStatus::Closed {
            continue;
        }
        let owner = match case.awaiting() {
            Awaiting::Department(d) => vec![d],
            Awaiting::Arbiter => arbiters(tx)?,
            Awaiting::Nobody => continue,
        };
        let notice = CaseNotice {
            case_id: case.id.clone(),
            kind: "reminder".into(),
            status: case.status,
            due_ms: case.due_ms,
            revision: tx.revision,
            at_ms: tx.now(),
        };
        tx.notify(&owner, &notice);
        n += 1;
    }
    Ok(n)
}

/// Whether a tick has case work: a deadline or a reminder due by `now_ms`.
pub fn case_work_due(view: &dyn StateRead, now_ms: i64) -> Result<bool, StorageFault> {
    for prefix in [keys::CASE_DUE, keys::CASE_REMINDER] {
        let first = view.scan(prefix, None, 1)?;
        if first
            .first()
            .and_then(|(k, _)| due_key(k, prefix))
            .is_some_and(|(t, _)| t <= now_ms)
        {
            return Ok(true);
        }
    }
    Ok(false)
}
