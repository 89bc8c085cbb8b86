//! Credit records, the tier policy and tier evaluation (信用分级分类监管).
//!
//! An entity's tier is a pure function of its records that are in force at a time,
//! the policy, and that time: `score = policy.base_score + Σ score(record)`, the tier
//! is the first (best) whose `min_score` the score reaches, and a record of a kind in
//! `policy.blocks_best_tier` in force, or a joint-punishment listing in force, keeps
//! the entity out of the best tier. The tier
//! sets the sampling-ratio range and the maximum inspection frequency.

use serde::{Deserialize, Serialize};

use crate::validate::{self, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use crate::{uscc, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditKind {
    /// 表彰奖励
    Commendation,
    /// 违法违规
    Violation,
    /// 行政处罚
    AdministrativePenalty,
    /// 严重失信主体名单
    DishonestyListing,
    /// 信用修复: rectification completed
    RectificationCompleted,
}

impl CreditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditKind::Commendation => "commendation",
            CreditKind::Violation => "violation",
            CreditKind::AdministrativePenalty => "administrative_penalty",
            CreditKind::DishonestyListing => "dishonesty_listing",
            CreditKind::RectificationCompleted => "rectification_completed",
        }
    }

    pub const ALL: [CreditKind; 5] = [
        CreditKind::Commendation,
        CreditKind::Violation,
        CreditKind::AdministrativePenalty,
        CreditKind::DishonestyListing,
        CreditKind::RectificationCompleted,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// 轻微
    Minor,
    /// 一般
    General,
    /// 严重
    Serious,
    /// 特别严重
    Grave,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::General => "general",
            Severity::Serious => "serious",
            Severity::Grave => "grave",
        }
    }
}

/// What a department observed about an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditRecordSpec {
    pub uscc: String,
    pub kind: CreditKind,
    pub severity: Severity,
    pub description: String,
    pub legal_basis: String,
    /// From when the record counts (ms since the epoch).
    pub effective_ms: i64,
    /// Until when it counts; None: indefinitely.
    pub expires_ms: Option<i64>,
    /// Where it comes from, e.g. an inspection result or a case id.
    pub source_ref: String,
}

impl CreditRecordSpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |name: &str| format!("{prefix}.{name}");
        uscc::validate(&f("uscc"), &self.uscc)?;
        validate::required_text(&f("description"), &self.description, MAX_TEXT_CHARS)?;
        validate::required_text(&f("legal_basis"), &self.legal_basis, MAX_SHORT_CHARS)?;
        validate::optional_text(&f("source_ref"), &self.source_ref, MAX_SHORT_CHARS)?;
        if self.effective_ms <= 0 {
            return Err(DomainError::invalid(f("effective_ms"), "is required"));
        }
        if let Some(e) = self.expires_ms {
            if e <= self.effective_ms {
                return Err(DomainError::invalid(
                    f("expires_ms"),
                    "must be after effective_ms",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditRecord {
    /// `cr-<revision>`.
    pub id: String,
    /// The recording department, the only one that may correct the record.
    pub department: String,
    #[serde(flatten)]
    pub spec: CreditRecordSpec,
    /// 1 for the record as first made; each correction adds one.
    pub version: u32,
    /// Why the latest correction was made (empty for version 1).
    pub correction_reason: String,
    pub created_revision: u64,
    pub updated_revision: u64,
}

impl CreditRecord {
    pub fn in_force_at(&self, now_ms: i64) -> bool {
        self.spec.effective_ms <= now_ms && self.spec.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// One tier of the policy, best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierDef {
    pub name: String,
    /// The lowest score in this tier's band (ignored for the last, worst tier).
    pub min_score: i64,
    /// Sampling-ratio range in per cent, for "double random" draws.
    pub sampling_min_pct: u32,
    pub sampling_max_pct: u32,
    /// Most inspections per year; None: as needed.
    pub max_inspections_per_year: Option<u32>,
    /// Readable statement of the frequency, e.g. "< 1/yr".
    pub frequency_note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreRule {
    pub kind: CreditKind,
    pub severity: Severity,
    pub delta: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPolicySpec {
    pub base_score: i64,
    /// Score changes per (kind, severity); a pair not listed scores 0.
    pub rules: Vec<ScoreRule>,
    /// Tiers from best to worst; bands by descending `min_score`.
    pub tiers: Vec<TierDef>,
    /// Kinds whose records in force keep an entity out of the best tier (the plan: a
    /// dishonesty listing — and an open transferred case — lift an A-tier reduction).
    pub blocks_best_tier: Vec<CreditKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPolicy {
    pub version: u32,
    #[serde(flatten)]
    pub spec: TierPolicySpec,
    pub department: String,
    pub revision: u64,
}

pub const MAX_TIERS: usize = 10;

impl TierPolicySpec {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        let f = |name: &str| format!("{prefix}.{name}");
        if self.tiers.len() < 2 || self.tiers.len() > MAX_TIERS {
            return Err(DomainError::invalid(
                f("tiers"),
                format!("between 2 and {MAX_TIERS} tiers"),
            ));
        }
        let mut names = vec![];
        for (i, t) in self.tiers.iter().enumerate() {
            let p = |n: &str| f(&format!("tiers[{i}].{n}"));
            validate::required_text(&p("name"), &t.name, 16)?;
            if names.contains(&t.name) {
                return Err(DomainError::invalid(p("name"), "tier names must differ"));
            }
            names.push(t.name.clone());
            if t.sampling_max_pct > 100 {
                return Err(DomainError::invalid(p("sampling_max_pct"), "at most 100"));
            }
            if t.sampling_min_pct > t.sampling_max_pct {
                return Err(DomainError::invalid(
                    p("sampling_min_pct"),
                    "must not exceed sampling_max_pct",
                ));
            }
            validate::optional_text(&p("frequency_note"), &t.frequency_note, MAX_SHORT_CHARS)?;
            if i > 0 && i + 1 < self.tiers.len() && t.min_score >= self.tiers[i - 1].min_score {
                return Err(DomainError::invalid(
                    p("min_score"),
                    "bands must descend: each tier's min_score below the one before",
                ));
            }
        }
        let mut kinds = self.blocks_best_tier.clone();
        kinds.sort();
        kinds.dedup();
        if kinds.len() != self.blocks_best_tier.len() {
            return Err(DomainError::invalid(
                f("blocks_best_tier"),
                "must not repeat a kind",
            ));
        }
        if self.rules.len() > CreditKind::ALL.len() * 4 {
            return Err(DomainError::invalid(
                f("rules"),
                "at most one rule per kind and severity",
            ));
        }
        let mut seen = vec![];
        for (i, r) in self.rules.iter().enumerate() {
            if seen.contains(&(r.kind, r.severity)) {
                return Err(DomainError::invalid(
                    f(&format!("rules[{i}]")),
                    "one rule per kind and severity",
                ));
            }
            if r.delta.abs() > 1_000_000 {
                return Err(DomainError::invalid(
                    f(&format!("rules[{i}].delta")),
                    "at most 1000000 either way",
                ));
            }
            seen.push((r.kind, r.severity));
        }
        Ok(())
    }

    /// The default policy, after a published county scheme: A ≤ 5 %, < 1/yr;
    /// B 5-20 %, 1/yr; C 21-60 %, < 2/yr; D 61-100 %, as needed.
    pub fn default_policy() -> TierPolicySpec {
        use CreditKind::*;
        use Severity::*;
        let tier = |name: &str, min, lo, hi, max, note: &str| TierDef {
            name: name.into(),
            min_score: min,
            sampling_min_pct: lo,
            sampling_max_pct: hi,
            max_inspections_per_year: max,
            frequency_note: note.into(),
        };
        let rule = |kind, severity, delta| ScoreRule {
            kind,
            severity,
            delta,
        };
        let mut rules = vec![];
        for (kind, deltas) in [
            (Commendation, [5, 10, 15, 20]),
            (Violation, [-5, -10, -20, -30]),
            (AdministrativePenalty, [-10, -15, -30, -40]),
            (DishonestyListing, [-40, -50, -60, -80]),
            (RectificationCompleted, [3, 5, 8, 10]),
        ] {
            for (severity, delta) in [Minor, General, Serious, Grave].into_iter().zip(deltas) {
                rules.push(rule(kind, severity, delta));
            }
        }
        TierPolicySpec {
            base_score: 80,
            rules,
            tiers: vec![
                tier("A", 90, 0, 5, Some(0), "< 1/yr"),
                tier("B", 70, 5, 20, Some(1), "1/yr"),
                tier("C", 50, 21, 60, Some(1), "< 2/yr"),
                tier("D", 0, 61, 100, None, "as needed"),
            ],
            blocks_best_tier: vec![DishonestyListing],
        }
    }

    fn delta(&self, r: &CreditRecord) -> i64 {
        self.rules
            .iter()
            .find(|s| s.kind == r.spec.kind && s.severity == r.spec.severity)
            .map_or(0, |s| s.delta)
    }
}

/// An entity's tier as evaluated. `records_in_force` and the block are what the
/// evaluation saw, so a reader can tell why the entity is where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    pub uscc: String,
    pub tier: String,
    pub score: i64,
    pub policy_version: u32,
    pub sampling_min_pct: u32,
    pub sampling_max_pct: u32,
    pub max_inspections_per_year: Option<u32>,
    pub frequency_note: String,
    /// Records in force at evaluation, by id.
    pub records_in_force: Vec<String>,
    /// True when a record kept the entity out of the best tier.
    pub best_tier_blocked: bool,
    pub evaluated_revision: u64,
    pub evaluated_at_ms: i64,
}

/// One change of an entity's tier and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    pub uscc: String,
    pub from: String,
    pub to: String,
    pub score: i64,
    pub cause: String,
    pub revision: u64,
    pub at_ms: i64,
}

/// The tier of an entity with `records` under `policy` at `now_ms`; `on_punishment_list`
/// (a joint-punishment listing in force) keeps it out of the best tier like a
/// dishonesty record.
pub fn evaluate(
    uscc: &str,
    records: &[CreditRecord],
    on_punishment_list: bool,
    policy: &TierPolicy,
    now_ms: i64,
    revision: u64,
) -> TierState {
    let spec = &policy.spec;
    let in_force: Vec<&CreditRecord> = records.iter().filter(|r| r.in_force_at(now_ms)).collect();
    let score = in_force
        .iter()
        .fold(spec.base_score, |s, r| s.saturating_add(spec.delta(r)));
    let last = spec.tiers.len() - 1;
    let mut index = spec
        .tiers
        .iter()
        .position(|t| score >= t.min_score)
        .unwrap_or(last)
        .min(last);
    let blocked = on_punishment_list
        || in_force
            .iter()
            .any(|r| spec.blocks_best_tier.contains(&r.spec.kind));
    if blocked && index == 0 {
        index = 1;
    }
    let t = &spec.tiers[index];
    let mut ids: Vec<String> = in_force.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    TierState {
        uscc: uscc.to_string(),
        tier: t.name.clone(),
        score,
        policy_version: policy.version,
        sampling_min_pct: t.sampling_min_pct,
        sampling_max_pct: t.sampling_max_pct,
        max_inspections_per_year: t.max_inspections_per_year,
        frequency_note: t.frequency_note.clone(),
        records_in_force: ids,
        best_tier_blocked: blocked,
        evaluated_revision: revision,
        evaluated_at_ms: now_ms,
    }
}
