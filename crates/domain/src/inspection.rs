//! Joint "double random, one public" inspections (双随机、一公开): inspector rosters,
//! plans over published items, a draw anyone can re-derive, one joint task per drawn
//! entity, results per department, and the over-inspection alert.
//!
//! **The draw (algorithm `sha256-rank-v1`).** The seed is
//! `SHA-256("concord-draw-v1" ‖ plan id ‖ revision ‖ timestamp ‖ audit chain head
//! before the draw)` of the log entry that draws: nobody knows it before the entry
//! is applied, and it commits to the whole history before it. The population (entities matching the plan's filter, with their
//! tiers) is snapshotted into the draw. Per tier, `k = round(n × ratio_bp / 10000)`
//! entities are drawn: those with the smallest `SHA-256(seed ‖ uscc)`. Per entity
//! and participating department, the inspectors are the active, non-conflicted ones
//! with the smallest `SHA-256(seed ‖ uscc ‖ department ‖ inspector id)`. Nothing
//! depends on iteration order, so the draw is the same on every replica and
//! re-derivable by anyone from the stored seed and population.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credit::TierPolicy;
use crate::validate::{self, MAX_NAME_CHARS, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use crate::DomainError;

pub const ALGORITHM: &str = "sha256-rank-v1";
pub const MAX_PARTICIPANTS: usize = 16;
pub const MAX_PLAN_ITEMS: usize = 64;
pub const MAX_FILTER_VALUES: usize = 32;
pub const MAX_INSPECTORS_PER_DEPARTMENT: u32 = 8;
pub const MAX_CONFLICTS: usize = 256;
pub const MAX_EVIDENCE: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectorSpec {
    /// 1-32 of A-Z a-z 0-9 - _ ; unique within the department.
    pub id: String,
    pub name: String,
    pub certification: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspector {
    pub department: String,
    #[serde(flatten)]
    pub spec: InspectorSpec,
    pub updated_revision: u64,
}

pub fn validate_inspector_id(field: &str, id: &str) -> Result<(), DomainError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "must be 1-32 characters of A-Z a-z 0-9 - _",
        ))
    }
}

impl InspectorSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        validate_inspector_id(&format!("{prefix}.id"), &self.id)?;
        validate::required_text(&format!("{prefix}.name"), &self.name, MAX_SHORT_CHARS)?;
        validate::required_text(
            &format!("{prefix}.certification"),
            &self.certification,
            MAX_SHORT_CHARS,
        )
    }
}

/// A sampling ratio that replaces the policy's for one tier, within its range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatioOverride {
    pub tier: String,
    /// Per cent × 100 (basis points): 1250 = 12.5 %.
    pub ratio_bp: u32,
}

/// An inspector who must not inspect an entity (e.g. a relative works there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub department: String,
    pub inspector: String,
    pub uscc: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpec {
    pub name: String,
    /// Departments taking part, the lead (the caller) included.
    pub participants: Vec<String>,
    /// Published supervision items the visits cover.
    pub items: Vec<String>,
    /// Population filter; empty lists match everything.
    pub districts: Vec<String>,
    pub industries: Vec<String>,
    pub tiers: Vec<String>,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub ratio_overrides: Vec<RatioOverride>,
    pub inspectors_per_department: u32,
    pub conflicts: Vec<Conflict>,
}

fn distinct(field: &str, values: &[String], max: usize) -> Result<(), DomainError> {
    if values.len() > max {
        return Err(DomainError::invalid(field, format!("at most {max} values")));
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(DomainError::invalid(
                format!("{field}[{i}]"),
                format!("{v} is listed twice"),
            ));
        }
    }
    Ok(())
}

impl PlanSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |n: &str| format!("{prefix}.{n}");
        validate::required_text(&f("name"), &self.name, MAX_NAME_CHARS)?;
        if self.participants.is_empty() {
            return Err(DomainError::invalid(f("participants"), "at least one"));
        }
        distinct(&f("participants"), &self.participants, MAX_PARTICIPANTS)?;
        for (i, d) in self.participants.iter().enumerate() {
            validate::department_code(&f(&format!("participants[{i}]")), d)?;
        }
        if self.items.is_empty() {
            return Err(DomainError::invalid(
                f("items"),
                "at least one published item",
            ));
        }
        distinct(&f("items"), &self.items, MAX_PLAN_ITEMS)?;
        for (i, it) in self.items.iter().enumerate() {
            validate::required_text(&f(&format!("items[{i}]")), it, MAX_SHORT_CHARS)?;
        }
        distinct(&f("districts"), &self.districts, MAX_FILTER_VALUES)?;
        distinct(&f("industries"), &self.industries, MAX_FILTER_VALUES)?;
        for (i, ind) in self.industries.iter().enumerate() {
            validate::slug(&f(&format!("industries[{i}]")), ind)?;
        }
        distinct(&f("tiers"), &self.tiers, MAX_FILTER_VALUES)?;
        if self.period_start_ms <= 0 {
            return Err(DomainError::invalid(f("period_start_ms"), "is required"));
        }
        if self.period_end_ms <= self.period_start_ms {
            return Err(DomainError::invalid(
                f("period_end_ms"),
                "must be after period_start_ms",
            ));
        }
        for (i, o) in self.ratio_overrides.iter().enumerate() {
            if o.ratio_bp > 10_000 {
                return Err(DomainError::invalid(
                    f(&format!("ratio_overrides[{i}].ratio_bp")),
                    "at most 10000 (100 %)",
                ));
            }
            if self.ratio_overrides[..i].iter().any(|p| p.tier == o.tier) {
                return Err(DomainError::invalid(
                    f(&format!("ratio_overrides[{i}].tier")),
                    "one override per tier",
                ));
            }
        }
        if self.inspectors_per_department == 0
            || self.inspectors_per_department > MAX_INSPECTORS_PER_DEPARTMENT
        {
            return Err(DomainError::invalid(
                f("inspectors_per_department"),
                format!("between 1 and {MAX_INSPECTORS_PER_DEPARTMENT}"),
            ));
        }
        if self.conflicts.len() > MAX_CONFLICTS {
            return Err(DomainError::invalid(
                f("conflicts"),
                format!("at most {MAX_CONFLICTS}"),
            ));
        }
        for (i, c) in self.conflicts.iter().enumerate() {
            let p = |n: &str| f(&format!("conflicts[{i}].{n}"));
            validate::department_code(&p("department"), &c.department)?;
            if !self.participants.contains(&c.department) {
                return Err(DomainError::invalid(
                    p("department"),
                    format!("{} does not take part in the plan", c.department),
                ));
            }
            validate_inspector_id(&p("inspector"), &c.inspector)?;
            crate::uscc::validate(&p("uscc"), &c.uscc)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Planned,
    Drawn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `plan-<revision>`.
    pub id: String,
    pub lead: String,
    #[serde(flatten)]
    pub spec: PlanSpec,
    pub status: PlanStatus,
    pub created_revision: u64,
    pub updated_revision: u64,
}

/// One member of the population the draw chose from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Candidate {
    pub uscc: String,
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierSample {
    pub tier: String,
    pub population: u32,
    pub ratio_bp: u32,
    pub drawn: u32,
}

/// Inspectors drawn for one entity from one department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub uscc: String,
    pub department: String,
    pub inspectors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    pub plan_id: String,
    pub algorithm: String,
    pub seed: String,
    pub revision: u64,
    pub timestamp_ms: i64,
    /// The audit chain head before the draw's own record (part of the seed).
    pub chain_hash: String,
    /// The tier policy version the tiers and ratios come from.
    pub policy_version: u32,
    /// SHA-256 of the plan as drawn (its conflicts and inspector count included).
    pub plan_hash: String,
    /// The population, sorted by code, as it stood at `revision`.
    pub population: Vec<Candidate>,
    pub population_hash: String,
    pub tiers: Vec<TierSample>,
    /// Drawn entities, sorted by code.
    pub entities: Vec<String>,
    pub assignments: Vec<Assignment>,
    /// Per department, the active inspectors the draw chose from, sorted.
    pub rosters: Vec<(String, Vec<String>)>,
    /// SHA-256 over everything above: written into the audit record of the draw.
    pub digest: String,
}

fn hex_sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    crate::digest::hex(h)
}

pub fn seed(plan_id: &str, revision: u64, timestamp_ms: i64, chain_hash: &str) -> String {
    hex_sha(&[
        b"concord-draw-v1",
        plan_id.as_bytes(),
        &revision.to_be_bytes(),
        &timestamp_ms.to_be_bytes(),
        chain_hash.as_bytes(),
    ])
}

pub fn plan_hash(spec: &PlanSpec) -> String {
    hex_sha(&[b"plan", &serde_json::to_vec(spec).unwrap_or_default()])
}

pub fn population_hash(population: &[Candidate]) -> String {
    let encoded = serde_json::to_vec(population).unwrap_or_default();
    hex_sha(&[b"population", &encoded])
}

/// Entities to draw from `n` at `ratio_bp` basis points, rounded to nearest.
pub fn sample_size(n: u32, ratio_bp: u32) -> u32 {
    ((n as u64 * ratio_bp as u64 + 5_000) / 10_000).min(n as u64) as u32
}

/// The deterministic part of a draw: everything but the identifiers and digest.
pub struct DrawInput<'a> {
    pub plan: &'a Plan,
    pub seed: &'a str,
    pub population: &'a [Candidate],
    /// (tier name, ratio in basis points) for every tier in the population.
    pub ratios: &'a [(String, u32)],
    /// Per participating department, its active inspectors (any order).
    pub rosters: &'a [(String, Vec<String>)],
}

/// Draws entities and inspectors from `input`.
pub fn draw(input: &DrawInput) -> (Vec<TierSample>, Vec<String>, Vec<Assignment>) {
    let seed = input.seed.as_bytes();
    let mut tiers: Vec<TierSample> = vec![];
    let mut chosen: Vec<String> = vec![];
    for (tier, ratio_bp) in input.ratios {
        let mut members: Vec<(String, &str)> = input
            .population
            .iter()
            .filter(|c| &c.tier == tier)
            .map(|c| (hex_sha(&[seed, c.uscc.as_bytes()]), c.uscc.as_str()))
            .collect();
        members.sort();
        let k = sample_size(members.len() as u32, *ratio_bp);
        chosen.extend(members.iter().take(k as usize).map(|(_, u)| u.to_string()));
        tiers.push(TierSample {
            tier: tier.clone(),
            population: members.len() as u32,
            ratio_bp: *ratio_bp,
            drawn: k,
        });
    }
    chosen.sort();
    let mut assignments = Vec::with_capacity(chosen.len() * input.rosters.len());
    for uscc in &chosen {
        for (dept, roster) in input.rosters {
            let mut ranked: Vec<(String, &String)> =
                roster
                    .iter()
                    .filter(|id| {
                        !input.plan.spec.conflicts.iter().any(|c| {
                            &c.department == dept && &c.inspector == *id && &c.uscc == uscc
                        })
                    })
                    .map(|id| {
                        (
                            hex_sha(&[seed, uscc.as_bytes(), dept.as_bytes(), id.as_bytes()]),
                            id,
                        )
                    })
                    .collect();
            ranked.sort();
            let mut inspectors: Vec<String> = ranked
                .into_iter()
                .take(input.plan.spec.inspectors_per_department as usize)
                .map(|(_, id)| id.clone())
                .collect();
            inspectors.sort();
            assignments.push(Assignment {
                uscc: uscc.clone(),
                department: dept.clone(),
                inspectors,
            });
        }
    }
    (tiers, chosen, assignments)
}

impl Draw {
    /// The digest over the draw's content (with `digest` empty).
    pub fn compute_digest(&self) -> String {
        let mut d = self.clone();
        d.digest = String::new();
        hex_sha(&[b"draw", &serde_json::to_vec(&d).unwrap_or_default()])
    }
}

/// The sampling ratio (basis points) of each tier of the policy: the plan's override,
/// or the middle of the policy's range.
pub fn ratios(spec: &PlanSpec, policy: &TierPolicy) -> Result<Vec<(String, u32)>, DomainError> {
    for (i, o) in spec.ratio_overrides.iter().enumerate() {
        let Some(t) = policy.spec.tiers.iter().find(|t| t.name == o.tier) else {
            return Err(DomainError::invalid(
                format!("plan.ratio_overrides[{i}].tier"),
                format!("{} is not a tier of policy v{}", o.tier, policy.version),
            ));
        };
        let (lo, hi) = (t.sampling_min_pct * 100, t.sampling_max_pct * 100);
        if o.ratio_bp < lo || o.ratio_bp > hi {
            return Err(DomainError::invalid(
                format!("plan.ratio_overrides[{i}].ratio_bp"),
                format!(
                    "{} is outside tier {}'s range {lo}-{hi} (policy v{})",
                    o.ratio_bp, t.name, policy.version
                ),
            ));
        }
    }
    Ok(policy
        .spec
        .tiers
        .iter()
        .map(|t| {
            let bp = spec
                .ratio_overrides
                .iter()
                .find(|o| o.tier == t.name)
                .map_or((t.sampling_min_pct + t.sampling_max_pct) * 50, |o| {
                    o.ratio_bp
                });
            (t.name.clone(), bp)
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultOutcome {
    Compliant,
    NonCompliant,
    RectificationOrdered,
    ReferredForCase,
}

impl ResultOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultOutcome::Compliant => "compliant",
            ResultOutcome::NonCompliant => "non_compliant",
            ResultOutcome::RectificationOrdered => "rectification_ordered",
            ResultOutcome::ReferredForCase => "referred_for_case",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSpec {
    pub outcome: ResultOutcome,
    pub findings: String,
    /// SHA-256 (hex) of each evidence file, kept where the department keeps files.
    pub evidence: Vec<String>,
    pub inspectors: Vec<String>,
    /// Listed for publication ("one public"); otherwise shared by the catalogue.
    pub public: bool,
}

impl ResultSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |n: &str| format!("{prefix}.{n}");
        validate::required_text(&f("findings"), &self.findings, MAX_TEXT_CHARS)?;
        validate::sha256_list(&f("evidence"), &self.evidence, MAX_EVIDENCE)?;
        if self.inspectors.is_empty() {
            return Err(DomainError::invalid(
                f("inspectors"),
                "at least one inspector",
            ));
        }
        distinct(&f("inspectors"), &self.inspectors, 16)?;
        for (i, id) in self.inspectors.iter().enumerate() {
            validate_inspector_id(&f(&format!("inspectors[{i}]")), id)?;
        }
        Ok(())
    }
}

/// One department's part of a joint task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPart {
    pub department: String,
    /// The plan's items this department leads or cooperates on.
    pub items: Vec<String>,
    pub inspectors: Vec<String>,
    pub result: Option<ResultSpec>,
    pub submitted_revision: u64,
    pub submitted_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Completed,
}

/// One visit to one drawn entity, for every participating department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// `task-<draw revision>-<n>`.
    pub id: String,
    pub plan_id: String,
    pub uscc: String,
    pub parts: Vec<TaskPart>,
    pub status: TaskStatus,
    pub created_revision: u64,
    pub updated_revision: u64,
}

/// One inspection of an entity, as counted for mutual recognition and the
/// over-inspection alert: a joint visit (once, whatever the number of departments)
/// or an ad-hoc inspection a department recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionEvent {
    pub uscc: String,
    pub departments: Vec<String>,
    /// `task-…` for a joint visit, `adhoc-<revision>` otherwise.
    pub source: String,
    pub at_ms: i64,
    pub revision: u64,
    pub note: String,
}

/// Alert when, within `window_days`, an entity has had at least `min_inspections`
/// inspections by at least `min_departments` departments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverInspectionRule {
    pub min_inspections: u32,
    pub min_departments: u32,
    pub window_days: u32,
}

impl Default for OverInspectionRule {
    fn default() -> Self {
        OverInspectionRule {
            min_inspections: 3,
            min_departments: 2,
            window_days: 30,
        }
    }
}

impl OverInspectionRule {
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.min_inspections < 2 || self.min_inspections > 1000 {
            return Err(DomainError::invalid(
                "rule.min_inspections",
                "between 2 and 1000",
            ));
        }
        if self.min_departments < 1 || self.min_departments > 100 {
            return Err(DomainError::invalid(
                "rule.min_departments",
                "between 1 and 100",
            ));
        }
        if self.window_days < 1 || self.window_days > 3660 {
            return Err(DomainError::invalid(
                "rule.window_days",
                "between 1 and 3660",
            ));
        }
        Ok(())
    }

    /// Whether `events` (all within the window) meet the rule.
    pub fn met_by(&self, events: &[InspectionEvent]) -> bool {
        let mut depts: Vec<&String> = events.iter().flat_map(|e| &e.departments).collect();
        depts.sort();
        depts.dedup();
        events.len() as u32 >= self.min_inspections && depts.len() as u32 >= self.min_departments
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// `alert-<revision>`.
    pub id: String,
    pub uscc: String,
    pub inspections: u32,
    pub departments: Vec<String>,
    pub window_days: u32,
    pub sources: Vec<String>,
    pub revision: u64,
    pub at_ms: i64,
}
