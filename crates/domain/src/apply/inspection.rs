//! Apply for rosters, plans, the draw, joint tasks, results, ad-hoc inspections and
//! the over-inspection alert.

use super::*;
use crate::credit::{TierPolicy, TierState};
use crate::entity::Entity;
use crate::inspection::{
    self, Alert, Candidate, Draw, DrawInput, InspectionEvent, Inspector, InspectorSpec,
    OverInspectionRule, Plan, PlanSpec, PlanStatus, ResultSpec, Task, TaskPart, TaskStatus,
};

const DAY_MS: i64 = 86_400_000;

fn rule(tx: &Tx) -> Result<OverInspectionRule, Failure> {
    Ok(tx.get(keys::OVER_INSPECTION_RULE)?.unwrap_or_default())
}

fn policy(tx: &Tx) -> Result<Option<TierPolicy>, Failure> {
    Ok(tx.get(keys::POLICY)?)
}

pub(super) fn put_inspector(tx: &mut Tx, spec: &InspectorSpec) -> Result<Outcome, Failure> {
    spec.validate("inspector")?;
    let inspector = Inspector {
        department: tx.env.actor.clone(),
        spec: spec.clone(),
        updated_revision: tx.revision,
    };
    tx.put(keys::inspector(&inspector.department, &spec.id), &inspector);
    tx.emit(
        RecordKind::Inspector,
        format!("{}/{}", inspector.department, spec.id),
        "inspector.updated",
        vec![inspector.department.clone()],
        EventRecord::Inspector(inspector.clone()),
    );
    Ok(Outcome::Inspector(inspector))
}

pub(super) fn create_plan(tx: &mut Tx, spec: &PlanSpec) -> Result<Outcome, Failure> {
    spec.validate("plan")?;
    let lead = tx.env.actor.clone();
    if !spec.participants.contains(&lead) {
        return Err(DomainError::invalid(
            "plan.participants",
            format!("must include the lead department {lead}"),
        )
        .into());
    }
    let items = published_items(tx, spec).map_err(|e| match e {
        Failure::Refused(DomainError::FailedPrecondition { reason }) => {
            DomainError::invalid("plan.items", reason).into()
        }
        other => other,
    })?;
    for (i, d) in spec.participants.iter().enumerate() {
        if tx.get::<Department>(&keys::department(d))?.is_none() {
            return Err(DomainError::invalid(
                format!("plan.participants[{i}]"),
                format!("unknown department {d}"),
            )
            .into());
        }
        if !items.iter().any(|it| it.departments().contains(d)) {
            return Err(DomainError::invalid(
                format!("plan.participants[{i}]"),
                format!("{d} leads or cooperates on none of the plan's items"),
            )
            .into());
        }
    }
    if let Some(p) = policy(tx)? {
        inspection::ratios(spec, &p)?;
        for (i, t) in spec.tiers.iter().enumerate() {
            if !p.spec.tiers.iter().any(|d| &d.name == t) {
                return Err(DomainError::invalid(
                    format!("plan.tiers[{i}]"),
                    format!("{t} is not a tier of policy v{}", p.version),
                )
                .into());
            }
        }
    }
    let districts: Vec<String> = tx
        .get(keys::DISTRICTS)?
        .unwrap_or_else(crate::entity::default_districts);
    for (i, d) in spec.districts.iter().enumerate() {
        if !districts.contains(d) {
            return Err(DomainError::invalid(
                format!("plan.districts[{i}]"),
                format!("{d} is not one of {}", districts.join(", ")),
            )
            .into());
        }
    }
    let plan = Plan {
        id: format!("plan-{}", tx.revision),
        lead,
        spec: spec.clone(),
        status: PlanStatus::Planned,
        created_revision: tx.revision,
        updated_revision: tx.revision,
    };
    tx.put(keys::plan(&plan.id), &plan);
    tx.emit(
        RecordKind::Plan,
        plan.id.clone(),
        "plan.created",
        plan.spec.participants.clone(),
        EventRecord::Plan(plan.clone()),
    );
    Ok(Outcome::Plan(plan))
}

pub(super) fn plan(tx: &Tx, id: &str) -> Result<Plan, Failure> {
    tx.get::<Plan>(&keys::plan(id))?
        .ok_or_else(|| DomainError::not_found("plan", id).into())
}

/// The entities matching the plan's filter, with their tiers, sorted by code.
fn population(tx: &Tx, spec: &PlanSpec) -> Result<Vec<Candidate>, Failure> {
    let mut out = vec![];
    for e in scan_decoded::<Entity>(tx.base, keys::ENTITY)? {
        let tier: Option<TierState> = tx.get(&keys::tier(&e.spec.uscc))?;
        let Some(tier) = tier else { continue };
        let ok = (spec.districts.is_empty() || spec.districts.contains(&e.spec.district))
            && (spec.industries.is_empty() || spec.industries.contains(&e.spec.industry))
            && (spec.tiers.is_empty() || spec.tiers.contains(&tier.tier))
            && e.spec.licence == crate::entity::LicenceStatus::Active;
        if ok {
            out.push(Candidate {
                uscc: e.spec.uscc,
                tier: tier.tier,
            });
        }
    }
    Ok(out)
}

fn active_inspectors(tx: &Tx, department: &str) -> Result<Vec<String>, Failure> {
    let mut out = vec![];
    for (k, v) in tx.base.scan(&keys::inspectors(department), None, 10_000)? {
        let i: Inspector = decode(&k, &v)?;
        if i.spec.active {
            out.push(i.spec.id);
        }
    }
    out.sort();
    Ok(out)
}

pub(super) fn draw_plan(tx: &mut Tx, plan_id: &str) -> Result<Outcome, Failure> {
    let mut plan = plan(tx, plan_id)?;
    if plan.status != PlanStatus::Planned {
        return Err(DomainError::precondition(format!("{plan_id} is already drawn")).into());
    }
    if tx.now() > plan.spec.period_end_ms {
        return Err(DomainError::precondition(format!("the period of {plan_id} has ended")).into());
    }
    if tx.get::<String>(keys::RETIER_AFTER)?.is_some() {
        return Err(DomainError::precondition(
            "entities are being re-tiered under a new policy; draw when that has finished",
        )
        .into());
    }
    refuse_second_draw(tx, &plan)?;
    let policy = policy(tx)?.ok_or_else(|| DomainError::precondition("no tier policy"))?;
    let ratios = inspection::ratios(&plan.spec, &policy)?;
    let items = published_items(tx, &plan.spec)?;
    let population = population(tx, &plan.spec)?;
    let mut rosters = vec![];
    for d in &plan.spec.participants {
        rosters.push((d.clone(), active_inspectors(tx, d)?));
    }
    let head = crate::audit::head(tx.base)?;
    let chain_hash = if head.count == 0 {
        crate::audit::GENESIS.to_string()
    } else {
        head.hash
    };
    let seed = inspection::seed(plan_id, tx.revision, tx.now(), &chain_hash);
    let (tiers, entities, assignments) = inspection::draw(&DrawInput {
        plan: &plan,
        seed: &seed,
        population: &population,
        ratios: &ratios,
        rosters: &rosters,
    });
    let wanted = plan.spec.inspectors_per_department as usize;
    if let Some(short) = assignments.iter().find(|a| a.inspectors.len() < wanted) {
        return Err(DomainError::precondition(format!(
            "{} has {} eligible inspector(s) for {}, the plan needs {wanted}",
            short.department,
            short.inspectors.len(),
            short.uscc
        ))
        .into());
    }
    let mut draw = Draw {
        plan_id: plan_id.to_string(),
        algorithm: inspection::ALGORITHM.to_string(),
        seed,
        revision: tx.revision,
        timestamp_ms: tx.now(),
        chain_hash,
        policy_version: policy.version,
        plan_hash: inspection::plan_hash(&plan.spec),
        population_hash: inspection::population_hash(&population),
        population,
        tiers,
        entities,
        assignments,
        rosters,
        digest: String::new(),
    };
    draw.digest = draw.compute_digest();
    let by_pair: BTreeMap<(&str, &str), &Vec<String>> = draw
        .assignments
        .iter()
        .map(|a| ((a.uscc.as_str(), a.department.as_str()), &a.inspectors))
        .collect();
    let mut tasks = vec![];
    for (n, uscc) in draw.entities.iter().enumerate() {
        let parts = plan
            .spec
            .participants
            .iter()
            .map(|d| TaskPart {
                department: d.clone(),
                items: items
                    .iter()
                    .filter(|it| it.departments().contains(d))
                    .map(|it| it.id.clone())
                    .collect(),
                inspectors: by_pair
                    .get(&(uscc.as_str(), d.as_str()))
                    .map(|v| (*v).clone())
                    .unwrap_or_default(),
                result: None,
                submitted_revision: 0,
                submitted_at_ms: 0,
            })
            .collect();
        let task = Task {
            id: format!("task-{}-{}", tx.revision, n + 1),
            plan_id: plan_id.to_string(),
            uscc: uscc.clone(),
            parts,
            status: TaskStatus::Open,
            created_revision: tx.revision,
            updated_revision: tx.revision,
        };
        tx.put(keys::task(&task.id), &task);
        tx.writes
            .insert(keys::task_by_plan(plan_id, &task.id), Some(vec![]));
        tx.emit(
            RecordKind::Task,
            task.id.clone(),
            "task.created",
            plan.spec.participants.clone(),
            EventRecord::Task(task.clone()),
        );
        tasks.push(task);
    }
    plan.status = PlanStatus::Drawn;
    plan.updated_revision = tx.revision;
    tx.put(keys::plan(plan_id), &plan);
    tx.put(keys::draw(plan_id), &draw);
    tx.emit(
        RecordKind::Plan,
        plan.id.clone(),
        "plan.drawn",
        plan.spec.participants.clone(),
        EventRecord::Plan(plan.clone()),
    );
    // The answer (also remembered for retries) leaves out the bulky snapshot, which
    // GetDraw serves from the stored draw.
    draw.population.clear();
    draw.rosters.clear();
    Ok(Outcome::Drawn {
        plan,
        draw: Box::new(draw),
        tasks,
    })
}

/// The plan's items, each at its version in force; an item no longer published
/// stops the draw.
fn published_items(tx: &Tx, spec: &PlanSpec) -> Result<Vec<Item>, Failure> {
    let mut out = vec![];
    for id in &spec.items {
        let head = tx.get::<Item>(&keys::item(id))?;
        let in_force = match head {
            Some(h) if h.published_version > 0 => {
                tx.get::<Item>(&keys::item_version(id, h.published_version))?
            }
            _ => None,
        };
        out.push(
            in_force
                .ok_or_else(|| DomainError::precondition(format!("{id} is no longer published")))?,
        );
    }
    Ok(out)
}

/// A lead draws once per set of items and period: a second plan over any of the
/// same items, overlapping in time, cannot be drawn after the first was.
fn refuse_second_draw(tx: &Tx, plan: &Plan) -> Result<(), Failure> {
    for other in scan_decoded::<Plan>(tx.base, keys::PLAN)? {
        let overlaps = other.id != plan.id
            && other.lead == plan.lead
            && other.status == PlanStatus::Drawn
            && other.spec.items.iter().any(|i| plan.spec.items.contains(i))
            && other.spec.period_start_ms < plan.spec.period_end_ms
            && plan.spec.period_start_ms < other.spec.period_end_ms;
        if overlaps {
            return Err(DomainError::precondition(format!(
                "{} by {} over the same items and period is already drawn",
                other.id, other.lead
            ))
            .into());
        }
    }
    Ok(())
}

pub(super) fn task(tx: &Tx, id: &str) -> Result<Task, Failure> {
    tx.get::<Task>(&keys::task(id))?
        .ok_or_else(|| DomainError::not_found("task", id).into())
}

pub(super) fn submit_result(
    tx: &mut Tx,
    task_id: &str,
    result: &ResultSpec,
) -> Result<Outcome, Failure> {
    result.validate("result")?;
    let mut task = task(tx, task_id)?;
    let actor = tx.env.actor.clone();
    let Some(index) = task.parts.iter().position(|p| p.department == actor) else {
        return Err(DomainError::denied(format!("{actor} takes no part in {task_id}")).into());
    };
    if let Some(existing) = &task.parts[index].result {
        if existing == result {
            // The same result again: nothing to do (a retry under a new request id).
            // Whatever it pushed was pushed then.
            return Ok(Outcome::Submitted {
                task,
                alert: None,
                pushed: vec![],
            });
        }
        return Err(DomainError::precondition(format!(
            "{actor} already filed its result for {task_id} at revision {}",
            task.parts[index].submitted_revision
        ))
        .into());
    }
    if task.status == TaskStatus::Completed {
        return Err(DomainError::precondition(format!("{task_id} is completed")).into());
    }
    for (i, inspector) in result.inspectors.iter().enumerate() {
        if !task.parts[index].inspectors.contains(inspector) {
            return Err(DomainError::invalid(
                format!("result.inspectors[{i}]"),
                format!("{inspector} was not drawn for {actor}'s part of {task_id}"),
            )
            .into());
        }
    }
    let first_result = task.parts.iter().all(|p| p.result.is_none());
    let part = &mut task.parts[index];
    part.result = Some(result.clone());
    part.submitted_revision = tx.revision;
    part.submitted_at_ms = tx.now();
    if task.parts.iter().all(|p| p.result.is_some()) {
        task.status = TaskStatus::Completed;
    }
    task.updated_revision = tx.revision;
    tx.put(keys::task(task_id), &task);
    tx.put(
        keys::result(&task.uscc, tx.revision, &actor),
        &(task.id.clone(), actor.clone(), result.clone(), tx.now()),
    );
    let departments: Vec<String> = task.parts.iter().map(|p| p.department.clone()).collect();
    tx.emit(
        RecordKind::Task,
        task.id.clone(),
        if task.status == TaskStatus::Completed {
            "task.completed"
        } else {
            "task.result_filed"
        },
        departments.clone(),
        EventRecord::Task(task.clone()),
    );
    // The joint visit counts as one inspection, when its first result is filed.
    let alert = if first_result {
        record_event(tx, &task.uscc, departments, task.id.clone(), String::new())?.1
    } else {
        None
    };
    // A violation found on a licensed entity goes back to its licensing bureau.
    let pushed = if result.outcome == crate::inspection::ResultOutcome::NonCompliant {
        super::licensing::push_violation(
            tx,
            &task.uscc,
            &[],
            super::licensing::Violation {
                source: crate::case::CaseSource::InspectionResult,
                source_ref: task.id.clone(),
                findings: result.findings.clone(),
                evidence: result.evidence.clone(),
            },
        )?
    } else {
        vec![]
    };
    Ok(Outcome::Submitted {
        task,
        alert,
        pushed,
    })
}

pub(super) fn record_inspection(tx: &mut Tx, uscc: &str, note: &str) -> Result<Outcome, Failure> {
    crate::uscc::validate("uscc", uscc)?;
    validate::required_text("note", note, MAX_TEXT_CHARS)?;
    if tx.get::<Entity>(&keys::entity(uscc))?.is_none() {
        return Err(
            DomainError::invalid("uscc", format!("no entity {uscc} in the directory")).into(),
        );
    }
    let source = format!("adhoc-{}", tx.revision);
    let by = vec![tx.env.actor.clone()];
    let (event, alert) = record_event(tx, uscc, by, source, note.to_string())?;
    Ok(Outcome::Inspected { event, alert })
}

/// Records one inspection of `uscc` and raises the over-inspection alert when this
/// inspection is the one that meets the rule.
fn record_event(
    tx: &mut Tx,
    uscc: &str,
    departments: Vec<String>,
    source: String,
    note: String,
) -> Result<(InspectionEvent, Option<Alert>), Failure> {
    let rule = rule(tx)?;
    let event = InspectionEvent {
        uscc: uscc.to_string(),
        departments,
        source,
        at_ms: tx.now(),
        revision: tx.revision,
        note,
    };
    let since = tx.now() - rule.window_days as i64 * DAY_MS;
    let start = keys::inspection_event(uscc, since - 1, u64::MAX);
    let mut window: Vec<InspectionEvent> = vec![];
    for (k, v) in tx
        .base
        .scan(&keys::inspection_events(uscc), Some(&start), 100_000)?
    {
        let e: InspectionEvent = decode(&k, &v)?;
        if e.at_ms >= since {
            window.push(e);
        }
    }
    window.push(event.clone());
    tx.put(
        keys::inspection_event(uscc, event.at_ms, event.revision),
        &event,
    );
    // One alert per entity and window: raised when the rule is met and no alert
    // about this entity was raised within the window.
    let last_alert: Option<i64> = tx.get(&keys::last_alert(uscc))?;
    if !rule.met_by(&window) || last_alert.is_some_and(|t| t >= since) {
        return Ok((event, None));
    }
    let now = tx.now();
    tx.put(keys::last_alert(uscc), &now);
    let mut departments: Vec<String> = window.iter().flat_map(|e| e.departments.clone()).collect();
    departments.sort();
    departments.dedup();
    let alert = Alert {
        id: format!("alert-{}", tx.revision),
        uscc: uscc.to_string(),
        inspections: window.len() as u32,
        departments: departments.clone(),
        window_days: rule.window_days,
        sources: window.iter().map(|e| e.source.clone()).collect(),
        revision: tx.revision,
        at_ms: tx.now(),
    };
    tx.put(keys::alert(&alert.id), &alert);
    for d in &departments {
        tx.put(keys::inbox(d, tx.revision), &alert.id);
    }
    tx.emit(
        RecordKind::Alert,
        alert.id.clone(),
        "alert.over_inspection",
        departments,
        EventRecord::Alert(alert.clone()),
    );
    Ok((event, Some(alert)))
}

pub(super) fn set_rule(tx: &mut Tx, rule: &OverInspectionRule) -> Result<Outcome, Failure> {
    rule.validate()?;
    tx.put(keys::OVER_INSPECTION_RULE.to_string(), rule);
    Ok(Outcome::OverInspectionRule(rule.clone()))
}
