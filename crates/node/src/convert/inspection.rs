//! Wire ↔ domain for rosters, plans, draws, tasks, results and alerts.

use concord_domain::inspection::{
    Alert, Conflict, Draw, Inspector, InspectorSpec, OverInspectionRule, Plan, PlanSpec,
    PlanStatus, RatioOverride, ResultOutcome, ResultSpec, Task, TaskStatus,
};
use concord_domain::query::FiledResult;
use concord_domain::DomainError;
use concord_proto::inspection::v1 as pi;

use super::{required, unknown, unspecified};

pub fn inspector_spec(
    field: &str,
    i: Option<&pi::Inspector>,
) -> Result<InspectorSpec, DomainError> {
    let i = required(field, i)?;
    let spec = InspectorSpec {
        id: i.id.clone(),
        name: i.name.clone(),
        certification: i.certification.clone(),
        active: i.active,
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn inspector_to_wire(i: &Inspector) -> pi::Inspector {
    pi::Inspector {
        id: i.spec.id.clone(),
        name: i.spec.name.clone(),
        certification: i.spec.certification.clone(),
        active: i.spec.active,
        department: i.department.clone(),
        updated_revision: i.updated_revision,
    }
}

pub fn plan_spec(field: &str, p: Option<&pi::Plan>) -> Result<PlanSpec, DomainError> {
    let p = required(field, p)?;
    let spec = PlanSpec {
        name: p.name.clone(),
        participants: p.participants.clone(),
        items: p.items.clone(),
        districts: p.districts.clone(),
        industries: p.industries.clone(),
        tiers: p.tiers.clone(),
        period_start_ms: p.period_start_ms,
        period_end_ms: p.period_end_ms,
        ratio_overrides: p
            .ratio_overrides
            .iter()
            .map(|o| RatioOverride {
                tier: o.tier.clone(),
                ratio_bp: o.ratio_bp,
            })
            .collect(),
        inspectors_per_department: if p.inspectors_per_department == 0 {
            2
        } else {
            p.inspectors_per_department
        },
        conflicts: p
            .conflicts
            .iter()
            .map(|c| Conflict {
                department: c.department.clone(),
                inspector: c.inspector.clone(),
                uscc: c.uscc.clone(),
            })
            .collect(),
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn plan_to_wire(p: &Plan) -> pi::Plan {
    let s = &p.spec;
    pi::Plan {
        id: p.id.clone(),
        lead: p.lead.clone(),
        status: match p.status {
            PlanStatus::Planned => "PLANNED",
            PlanStatus::Drawn => "DRAWN",
        }
        .into(),
        name: s.name.clone(),
        participants: s.participants.clone(),
        items: s.items.clone(),
        districts: s.districts.clone(),
        industries: s.industries.clone(),
        tiers: s.tiers.clone(),
        period_start_ms: s.period_start_ms,
        period_end_ms: s.period_end_ms,
        ratio_overrides: s
            .ratio_overrides
            .iter()
            .map(|o| pi::RatioOverride {
                tier: o.tier.clone(),
                ratio_bp: o.ratio_bp,
            })
            .collect(),
        inspectors_per_department: s.inspectors_per_department,
        conflicts: s
            .conflicts
            .iter()
            .map(|c| pi::Conflict {
                department: c.department.clone(),
                inspector: c.inspector.clone(),
                uscc: c.uscc.clone(),
            })
            .collect(),
        created_revision: p.created_revision,
        updated_revision: p.updated_revision,
    }
}

pub fn draw_to_wire(d: &Draw) -> pi::Draw {
    pi::Draw {
        plan_id: d.plan_id.clone(),
        algorithm: d.algorithm.clone(),
        seed: d.seed.clone(),
        revision: d.revision,
        timestamp_ms: d.timestamp_ms,
        population_size: d.population.len() as u32,
        population_hash: d.population_hash.clone(),
        tiers: d
            .tiers
            .iter()
            .map(|t| pi::TierSample {
                tier: t.tier.clone(),
                population: t.population,
                ratio_bp: t.ratio_bp,
                drawn: t.drawn,
            })
            .collect(),
        entities: d.entities.clone(),
        assignments: d
            .assignments
            .iter()
            .map(|a| pi::Assignment {
                uscc: a.uscc.clone(),
                department: a.department.clone(),
                inspectors: a.inspectors.clone(),
            })
            .collect(),
        digest: d.digest.clone(),
        population: d
            .population
            .iter()
            .map(|c| pi::Candidate {
                uscc: c.uscc.clone(),
                tier: c.tier.clone(),
            })
            .collect(),
        rosters: d
            .rosters
            .iter()
            .map(|(department, inspectors)| pi::Roster {
                department: department.clone(),
                inspectors: inspectors.clone(),
            })
            .collect(),
        chain_hash: d.chain_hash.clone(),
        policy_version: d.policy_version,
        plan_hash: d.plan_hash.clone(),
    }
}

/// What a department outside the plan sees of it: no conflicts of interest.
pub fn plan_for(p: &Plan, department: &str) -> pi::Plan {
    let mut wire = plan_to_wire(p);
    if !p.spec.participants.iter().any(|d| d == department) {
        wire.conflicts.clear();
    }
    wire
}

/// What `department` may see of a task: results of other departments only when
/// flagged public, unless it takes part or a sharing rule grants them.
pub fn task_for(t: &Task, department: &str, granted: impl Fn(&str) -> bool) -> pi::Task {
    let mut wire = task_to_wire(t);
    let participant = t.parts.iter().any(|p| p.department == department);
    if !participant {
        for part in &mut wire.parts {
            let visible =
                part.result.as_ref().is_some_and(|r| r.public) || granted(&part.department);
            if !visible {
                part.result = None;
            }
        }
    }
    wire
}

fn outcome(field: &str, n: i32) -> Result<ResultOutcome, DomainError> {
    Ok(
        match pi::Outcome::try_from(n).map_err(|_| unknown(field, n))? {
            pi::Outcome::Unspecified => return Err(unspecified(field)),
            pi::Outcome::Compliant => ResultOutcome::Compliant,
            pi::Outcome::NonCompliant => ResultOutcome::NonCompliant,
            pi::Outcome::RectificationOrdered => ResultOutcome::RectificationOrdered,
            pi::Outcome::ReferredForCase => ResultOutcome::ReferredForCase,
        },
    )
}

pub fn result_spec(
    field: &str,
    r: Option<&pi::InspectionResult>,
) -> Result<ResultSpec, DomainError> {
    let r = required(field, r)?;
    let spec = ResultSpec {
        outcome: outcome(&format!("{field}.outcome"), r.outcome)?,
        findings: r.findings.clone(),
        evidence: r.evidence.clone(),
        inspectors: r.inspectors.clone(),
        public: r.public,
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn result_to_wire(r: &ResultSpec) -> pi::InspectionResult {
    pi::InspectionResult {
        outcome: match r.outcome {
            ResultOutcome::Compliant => pi::Outcome::Compliant,
            ResultOutcome::NonCompliant => pi::Outcome::NonCompliant,
            ResultOutcome::RectificationOrdered => pi::Outcome::RectificationOrdered,
            ResultOutcome::ReferredForCase => pi::Outcome::ReferredForCase,
        } as i32,
        findings: r.findings.clone(),
        evidence: r.evidence.clone(),
        inspectors: r.inspectors.clone(),
        public: r.public,
    }
}

pub fn task_to_wire(t: &Task) -> pi::Task {
    pi::Task {
        id: t.id.clone(),
        plan_id: t.plan_id.clone(),
        uscc: t.uscc.clone(),
        parts: t
            .parts
            .iter()
            .map(|p| pi::TaskPart {
                department: p.department.clone(),
                items: p.items.clone(),
                inspectors: p.inspectors.clone(),
                result: p.result.as_ref().map(result_to_wire),
                submitted_revision: p.submitted_revision,
                submitted_at_ms: p.submitted_at_ms,
            })
            .collect(),
        status: match t.status {
            TaskStatus::Open => "OPEN",
            TaskStatus::Completed => "COMPLETED",
        }
        .into(),
        created_revision: t.created_revision,
        updated_revision: t.updated_revision,
    }
}

pub fn alert_to_wire(a: &Alert) -> pi::Alert {
    pi::Alert {
        id: a.id.clone(),
        uscc: a.uscc.clone(),
        inspections: a.inspections,
        departments: a.departments.clone(),
        window_days: a.window_days,
        sources: a.sources.clone(),
        revision: a.revision,
        at_ms: a.at_ms,
    }
}

pub fn filed_result_to_wire(r: &FiledResult) -> pi::FiledResult {
    pi::FiledResult {
        task_id: r.task_id.clone(),
        department: r.department.clone(),
        result: Some(result_to_wire(&r.result)),
        at_ms: r.at_ms,
        revision: r.revision,
    }
}

pub fn rule_from_wire(
    field: &str,
    r: Option<&pi::OverInspectionRule>,
) -> Result<OverInspectionRule, DomainError> {
    let r = required(field, r)?;
    let rule = OverInspectionRule {
        min_inspections: r.min_inspections,
        min_departments: r.min_departments,
        window_days: r.window_days,
    };
    rule.validate()?;
    Ok(rule)
}

pub fn rule_to_wire(r: &OverInspectionRule) -> pi::OverInspectionRule {
    pi::OverInspectionRule {
        min_inspections: r.min_inspections,
        min_departments: r.min_departments,
        window_days: r.window_days,
    }
}
