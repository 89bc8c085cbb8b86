//! Wire ↔ domain for the entity directory, the joint lists, credit records, tiers
//! and the tier policy.

use concord_domain::credit::{
    CreditKind, CreditRecord, CreditRecordSpec, ScoreRule, Severity, TierChange, TierDef,
    TierPolicy, TierPolicySpec, TierState,
};
use concord_domain::entity::{Entity, EntitySpec, LicenceStatus, ListKind, Listing, ListingSpec};
use concord_domain::DomainError;
use concord_proto::credit::v1 as pcr;
use concord_proto::entity::v1 as pe;

use super::{required, unknown, unspecified};

fn licence(field: &str, n: i32) -> Result<LicenceStatus, DomainError> {
    match pe::LicenceStatus::try_from(n).map_err(|_| unknown(field, n))? {
        pe::LicenceStatus::Unspecified => Err(unspecified(field)),
        pe::LicenceStatus::Active => Ok(LicenceStatus::Active),
        pe::LicenceStatus::Suspended => Ok(LicenceStatus::Suspended),
        pe::LicenceStatus::Revoked => Ok(LicenceStatus::Revoked),
        pe::LicenceStatus::Cancelled => Ok(LicenceStatus::Cancelled),
    }
}

fn licence_to_wire(l: LicenceStatus) -> pe::LicenceStatus {
    match l {
        LicenceStatus::Active => pe::LicenceStatus::Active,
        LicenceStatus::Suspended => pe::LicenceStatus::Suspended,
        LicenceStatus::Revoked => pe::LicenceStatus::Revoked,
        LicenceStatus::Cancelled => pe::LicenceStatus::Cancelled,
    }
}

pub fn entity_spec(field: &str, e: Option<&pe::Entity>) -> Result<EntitySpec, DomainError> {
    let e = required(field, e)?;
    let spec = EntitySpec {
        uscc: e.uscc.clone(),
        name: e.name.clone(),
        district: e.district.clone(),
        industry: e.industry.clone(),
        address: e.address.clone(),
        licence: licence(&format!("{field}.licence"), e.licence)?,
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn entity_to_wire(e: &Entity, tier: Option<&TierState>) -> pe::Entity {
    pe::Entity {
        uscc: e.spec.uscc.clone(),
        name: e.spec.name.clone(),
        district: e.spec.district.clone(),
        industry: e.spec.industry.clone(),
        address: e.spec.address.clone(),
        licence: licence_to_wire(e.spec.licence) as i32,
        registered_by: e.registered_by.clone(),
        tier: tier.map(|t| t.tier.clone()).unwrap_or_default(),
        created_revision: e.created_revision,
        updated_revision: e.updated_revision,
    }
}

fn list_kind(field: &str, n: i32) -> Result<ListKind, DomainError> {
    match pe::ListKind::try_from(n).map_err(|_| unknown(field, n))? {
        pe::ListKind::Unspecified => Err(unspecified(field)),
        pe::ListKind::Incentive => Ok(ListKind::Incentive),
        pe::ListKind::Punishment => Ok(ListKind::Punishment),
    }
}

pub fn listing_spec(field: &str, l: Option<&pe::Listing>) -> Result<ListingSpec, DomainError> {
    let l = required(field, l)?;
    if l.until_ms < 0 {
        return Err(DomainError::invalid(
            format!("{field}.until_ms"),
            "must be 0 (until removed) or a time",
        ));
    }
    let spec = ListingSpec {
        list: list_kind(&format!("{field}.list"), l.list)?,
        uscc: l.uscc.clone(),
        reason: l.reason.clone(),
        legal_basis: l.legal_basis.clone(),
        until_ms: (l.until_ms > 0).then_some(l.until_ms),
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn listing_to_wire(l: &Listing) -> pe::Listing {
    pe::Listing {
        id: l.id.clone(),
        list: match l.spec.list {
            ListKind::Incentive => pe::ListKind::Incentive,
            ListKind::Punishment => pe::ListKind::Punishment,
        } as i32,
        uscc: l.spec.uscc.clone(),
        reason: l.spec.reason.clone(),
        legal_basis: l.spec.legal_basis.clone(),
        until_ms: l.spec.until_ms.unwrap_or(0),
        department: l.department.clone(),
        since_ms: l.since_ms,
        removed: l.removed,
        removed_reason: l.removed_reason.clone(),
        created_revision: l.created_revision,
        updated_revision: l.updated_revision,
    }
}

fn credit_kind(field: &str, n: i32) -> Result<CreditKind, DomainError> {
    use pcr::CreditKind as K;
    Ok(match K::try_from(n).map_err(|_| unknown(field, n))? {
        K::Unspecified => return Err(unspecified(field)),
        K::Commendation => CreditKind::Commendation,
        K::Violation => CreditKind::Violation,
        K::AdministrativePenalty => CreditKind::AdministrativePenalty,
        K::DishonestyListing => CreditKind::DishonestyListing,
        K::RectificationCompleted => CreditKind::RectificationCompleted,
    })
}

fn credit_kind_to_wire(k: CreditKind) -> pcr::CreditKind {
    use pcr::CreditKind as K;
    match k {
        CreditKind::Commendation => K::Commendation,
        CreditKind::Violation => K::Violation,
        CreditKind::AdministrativePenalty => K::AdministrativePenalty,
        CreditKind::DishonestyListing => K::DishonestyListing,
        CreditKind::RectificationCompleted => K::RectificationCompleted,
    }
}

fn severity(field: &str, n: i32) -> Result<Severity, DomainError> {
    use pcr::Severity as S;
    Ok(match S::try_from(n).map_err(|_| unknown(field, n))? {
        S::Unspecified => return Err(unspecified(field)),
        S::Minor => Severity::Minor,
        S::General => Severity::General,
        S::Serious => Severity::Serious,
        S::Grave => Severity::Grave,
    })
}

fn severity_to_wire(s: Severity) -> pcr::Severity {
    use pcr::Severity as S;
    match s {
        Severity::Minor => S::Minor,
        Severity::General => S::General,
        Severity::Serious => S::Serious,
        Severity::Grave => S::Grave,
    }
}

pub fn credit_spec(
    field: &str,
    r: Option<&pcr::CreditRecord>,
) -> Result<CreditRecordSpec, DomainError> {
    let r = required(field, r)?;
    if r.expires_ms < 0 {
        return Err(DomainError::invalid(
            format!("{field}.expires_ms"),
            "must be 0 (never) or a time",
        ));
    }
    let spec = CreditRecordSpec {
        uscc: r.uscc.clone(),
        kind: credit_kind(&format!("{field}.kind"), r.kind)?,
        severity: severity(&format!("{field}.severity"), r.severity)?,
        description: r.description.clone(),
        legal_basis: r.legal_basis.clone(),
        effective_ms: r.effective_ms,
        expires_ms: (r.expires_ms > 0).then_some(r.expires_ms),
        source_ref: r.source_ref.clone(),
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn credit_to_wire(r: &CreditRecord) -> pcr::CreditRecord {
    let s = &r.spec;
    pcr::CreditRecord {
        id: r.id.clone(),
        department: r.department.clone(),
        uscc: s.uscc.clone(),
        kind: credit_kind_to_wire(s.kind) as i32,
        severity: severity_to_wire(s.severity) as i32,
        description: s.description.clone(),
        legal_basis: s.legal_basis.clone(),
        effective_ms: s.effective_ms,
        expires_ms: s.expires_ms.unwrap_or(0),
        source_ref: s.source_ref.clone(),
        version: r.version,
        correction_reason: r.correction_reason.clone(),
        created_revision: r.created_revision,
        updated_revision: r.updated_revision,
    }
}

pub fn tier_to_wire(t: &TierState) -> pcr::Tier {
    pcr::Tier {
        uscc: t.uscc.clone(),
        tier: t.tier.clone(),
        score: t.score,
        policy_version: t.policy_version,
        sampling_min_pct: t.sampling_min_pct,
        sampling_max_pct: t.sampling_max_pct,
        max_inspections_per_year: t.max_inspections_per_year.unwrap_or(0),
        inspections_as_needed: t.max_inspections_per_year.is_none(),
        frequency_note: t.frequency_note.clone(),
        records_in_force: t.records_in_force.clone(),
        best_tier_blocked: t.best_tier_blocked,
        evaluated_revision: t.evaluated_revision,
        evaluated_at_ms: t.evaluated_at_ms,
    }
}

pub fn tier_change_to_wire(c: &TierChange) -> pcr::TierChange {
    pcr::TierChange {
        from: c.from.clone(),
        to: c.to.clone(),
        score: c.score,
        cause: c.cause.clone(),
        revision: c.revision,
        at_ms: c.at_ms,
    }
}

pub fn policy_spec(
    field: &str,
    p: Option<&pcr::TierPolicy>,
) -> Result<TierPolicySpec, DomainError> {
    let p = required(field, p)?;
    let rules = p
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("{field}.rules[{i}]");
            Ok(ScoreRule {
                kind: credit_kind(&format!("{f}.kind"), r.kind)?,
                severity: severity(&format!("{f}.severity"), r.severity)?,
                delta: r.delta,
            })
        })
        .collect::<Result<Vec<_>, DomainError>>()?;
    let tiers = p
        .tiers
        .iter()
        .map(|t| TierDef {
            name: t.name.clone(),
            min_score: t.min_score,
            sampling_min_pct: t.sampling_min_pct,
            sampling_max_pct: t.sampling_max_pct,
            max_inspections_per_year: (!t.inspections_as_needed)
                .then_some(t.max_inspections_per_year),
            frequency_note: t.frequency_note.clone(),
        })
        .collect();
    let blocks_best_tier = p
        .blocks_best_tier
        .iter()
        .enumerate()
        .map(|(i, k)| credit_kind(&format!("{field}.blocks_best_tier[{i}]"), *k))
        .collect::<Result<Vec<_>, DomainError>>()?;
    let spec = TierPolicySpec {
        base_score: p.base_score,
        rules,
        tiers,
        blocks_best_tier,
    };
    spec.validate(field)?;
    Ok(spec)
}

pub fn policy_to_wire(p: &TierPolicy) -> pcr::TierPolicy {
    let s = &p.spec;
    pcr::TierPolicy {
        version: p.version,
        base_score: s.base_score,
        rules: s
            .rules
            .iter()
            .map(|r| pcr::ScoreRule {
                kind: credit_kind_to_wire(r.kind) as i32,
                severity: severity_to_wire(r.severity) as i32,
                delta: r.delta,
            })
            .collect(),
        tiers: s
            .tiers
            .iter()
            .map(|t| pcr::TierDef {
                name: t.name.clone(),
                min_score: t.min_score,
                sampling_min_pct: t.sampling_min_pct,
                sampling_max_pct: t.sampling_max_pct,
                max_inspections_per_year: t.max_inspections_per_year.unwrap_or(0),
                inspections_as_needed: t.max_inspections_per_year.is_none(),
                frequency_note: t.frequency_note.clone(),
            })
            .collect(),
        blocks_best_tier: s
            .blocks_best_tier
            .iter()
            .map(|k| credit_kind_to_wire(*k) as i32)
            .collect(),
        department: p.department.clone(),
        revision: p.revision,
    }
}
