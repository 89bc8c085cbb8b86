//! Apply for the entity directory, credit records, the tier policy, tiers and the
//! joint lists. Every change that can move an entity's tier re-evaluates it here,
//! in the same revision, and records the change with its cause.

use super::*;
use crate::credit::{
    evaluate, CreditRecord, CreditRecordSpec, TierChange, TierPolicy, TierPolicySpec, TierState,
};
use crate::entity::{Entity, EntitySpec, ListKind, Listing, ListingSpec};

/// Entities re-tiered by one policy change or one tick; the rest continue in ticks.
pub const RETIER_BATCH: usize = 500;

impl Tx<'_> {
    fn entity(&self, field: &str, uscc: &str) -> Result<Entity, Failure> {
        self.get::<Entity>(&keys::entity(uscc))?.ok_or_else(|| {
            DomainError::invalid(field, format!("no entity {uscc} in the directory")).into()
        })
    }

    fn policy(&self) -> Result<TierPolicy, Failure> {
        Ok(self
            .get::<TierPolicy>(keys::POLICY)?
            .unwrap_or_else(default_policy))
    }

    /// Every value under `prefix`, including this revision's writes, in key order.
    fn scan_pending<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, Failure> {
        let mut out: BTreeMap<String, T> = BTreeMap::new();
        for (k, v) in scan_prefix(self.base, prefix)? {
            out.insert(k.clone(), decode(&k, &v)?);
        }
        for (k, v) in self.writes.range(prefix.to_string()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(bytes) => {
                    out.insert(k.clone(), decode(k, bytes)?);
                }
                None => {
                    out.remove(k);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// Re-evaluates the tier of `uscc`; records a change (and emits it) when the
    /// tier moves, with `cause`.
    pub(super) fn retier(&mut self, uscc: &str, cause: &str) -> Result<TierState, Failure> {
        let records: Vec<CreditRecord> = self.scan_pending(&keys::credits(uscc))?;
        let punished = self.on_punishment_list(uscc)?;
        let policy = self.policy()?;
        let state = evaluate(uscc, &records, punished, &policy, self.now(), self.revision);
        let previous = self.get::<TierState>(&keys::tier(uscc))?;
        let from = previous.as_ref().map_or(String::new(), |p| p.tier.clone());
        let moved = from != state.tier;
        // Saved when anything but the evaluation's own revision and time differs.
        let changed = previous.as_ref().is_none_or(|p| {
            let mut same = p.clone();
            same.evaluated_revision = state.evaluated_revision;
            same.evaluated_at_ms = state.evaluated_at_ms;
            same != state
        });
        if !changed {
            return Ok(previous.unwrap_or(state));
        }
        self.put(keys::tier(uscc), &state);
        if moved {
            let change = TierChange {
                uscc: uscc.to_string(),
                from,
                to: state.tier.clone(),
                score: state.score,
                cause: cause.to_string(),
                revision: self.revision,
                at_ms: self.now(),
            };
            self.put(keys::tier_history(uscc, self.revision), &change);
            self.emit(
                RecordKind::Tier,
                uscc.to_string(),
                "tier.changed",
                vec![],
                EventRecord::Tier(state.clone()),
            );
        }
        Ok(state)
    }

    /// Whether a joint-punishment listing of `uscc` is in force (this revision's
    /// writes included).
    fn on_punishment_list(&self, uscc: &str) -> Result<bool, Failure> {
        let listings: Vec<Listing> = self.scan_pending(&keys::listings(uscc))?;
        Ok(listings
            .iter()
            .any(|l| l.spec.list == ListKind::Punishment && l.active_at(self.now())))
    }

    /// Indexes when `record` takes effect or expires, so a tick re-tiers its entity.
    fn index_due(&mut self, record: &CreditRecord) {
        let s = &record.spec;
        if s.effective_ms > self.now() {
            self.writes.insert(
                keys::credit_due(s.effective_ms, &s.uscc, &record.id),
                Some(vec![]),
            );
        }
        if let Some(e) = s.expires_ms {
            if e > self.now() {
                self.writes
                    .insert(keys::credit_due(e, &s.uscc, &record.id), Some(vec![]));
            }
        }
    }

    fn unindex_due(&mut self, record: &CreditRecord) -> Result<(), Failure> {
        let s = &record.spec;
        for t in std::iter::once(s.effective_ms).chain(s.expires_ms) {
            let key = keys::credit_due(t, &s.uscc, &record.id);
            if self.base.get(&key)?.is_some() || self.writes.contains_key(&key) {
                self.writes.insert(key, None);
            }
        }
        Ok(())
    }
}

/// Seeds what a new cluster needs besides departments: districts and the policy.
pub(super) fn seed(tx: &mut Tx) {
    tx.put(
        keys::DISTRICTS.to_string(),
        &crate::entity::default_districts(),
    );
    let policy = TierPolicy {
        revision: tx.revision,
        ..default_policy()
    };
    tx.put(keys::policy_version(1), &policy);
    tx.put(keys::POLICY.to_string(), &policy);
}

fn default_policy() -> TierPolicy {
    TierPolicy {
        version: 1,
        spec: TierPolicySpec::default_policy(),
        department: String::new(),
        revision: 0,
    }
}

/// The districts entities may be registered in (the defaults in a state seeded
/// before districts were configurable).
fn districts(tx: &Tx) -> Result<Vec<String>, Failure> {
    Ok(tx
        .get(keys::DISTRICTS)?
        .unwrap_or_else(crate::entity::default_districts))
}

pub(super) fn register_entity(
    tx: &mut Tx,
    spec: &EntitySpec,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    spec.validate("entity")?;
    let districts = districts(tx)?;
    if !districts.contains(&spec.district) {
        return Err(DomainError::invalid(
            "entity.district",
            format!("{} is not one of {}", spec.district, districts.join(", ")),
        )
        .into());
    }
    let key = keys::entity(&spec.uscc);
    let existing = tx.get::<Entity>(&key)?;
    check_expected(
        expected,
        existing.as_ref().map_or(0, |e| e.updated_revision),
    )?;
    let entity = Entity {
        spec: spec.clone(),
        registered_by: existing
            .as_ref()
            .map_or_else(|| tx.env.actor.clone(), |e| e.registered_by.clone()),
        created_revision: existing
            .as_ref()
            .map_or(tx.revision, |e| e.created_revision),
        updated_revision: tx.revision,
    };
    tx.put(key, &entity);
    let action = if existing.is_some() {
        "entity.updated"
    } else {
        "entity.registered"
    };
    tx.emit(
        RecordKind::Entity,
        spec.uscc.clone(),
        action,
        vec![tx.env.actor.clone()],
        EventRecord::Entity(entity.clone()),
    );
    let cause = if existing.is_none() {
        "registered in the directory"
    } else {
        "directory entry updated"
    };
    let tier = tx.retier(&spec.uscc, cause)?;
    Ok(Outcome::Entity { entity, tier })
}

pub(super) fn set_districts(tx: &mut Tx, districts: &[String]) -> Result<Outcome, Failure> {
    crate::entity::validate_districts(districts)?;
    tx.put(keys::DISTRICTS.to_string(), &districts.to_vec());
    tx.emit(
        RecordKind::Entity,
        keys::DISTRICTS.to_string(),
        "districts.set",
        vec![],
        EventRecord::Districts(districts.to_vec()),
    );
    Ok(Outcome::Districts(districts.to_vec()))
}

fn describe(record: &CreditRecord) -> String {
    format!(
        "{} {}/{} by {}",
        record.id,
        record.spec.kind.as_str(),
        record.spec.severity.as_str(),
        record.department
    )
}

pub(super) fn record_credit(tx: &mut Tx, spec: &CreditRecordSpec) -> Result<Outcome, Failure> {
    spec.validate("record")?;
    tx.entity("record.uscc", &spec.uscc)?;
    let record = CreditRecord {
        id: format!("cr-{}", tx.revision),
        department: tx.env.actor.clone(),
        spec: spec.clone(),
        version: 1,
        correction_reason: String::new(),
        created_revision: tx.revision,
        updated_revision: tx.revision,
    };
    save_credit(tx, &record, "credit.recorded")?;
    tx.index_due(&record);
    let tier = tx.retier(&spec.uscc, &format!("record {}", describe(&record)))?;
    Ok(Outcome::Credit { record, tier })
}

fn save_credit(tx: &mut Tx, record: &CreditRecord, action: &str) -> Result<(), Failure> {
    tx.put(keys::credit(&record.spec.uscc, &record.id), record);
    tx.put(keys::credit_by_id(&record.id), &record.spec.uscc);
    tx.put(keys::credit_version(&record.id, record.version), record);
    tx.emit(
        RecordKind::CreditRecord,
        record.id.clone(),
        action,
        vec![record.department.clone()],
        EventRecord::CreditRecord(record.clone()),
    );
    Ok(())
}

/// The current version of credit record `id`.
pub(super) fn credit_record(tx: &Tx, id: &str) -> Result<CreditRecord, Failure> {
    let uscc: String = tx
        .get(&keys::credit_by_id(id))?
        .ok_or_else(|| DomainError::not_found("credit record", id))?;
    tx.get(&keys::credit(&uscc, id))?
        .ok_or_else(|| DomainError::not_found("credit record", id).into())
}

pub(super) fn correct_credit(
    tx: &mut Tx,
    id: &str,
    spec: &CreditRecordSpec,
    reason: &str,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    spec.validate("record")?;
    validate::required_text("reason", reason, MAX_TEXT_CHARS)?;
    let old = credit_record(tx, id)?;
    check_expected(expected, old.updated_revision)?;
    if spec.uscc != old.spec.uscc {
        return Err(DomainError::invalid(
            "record.uscc",
            format!("a correction keeps the entity ({})", old.spec.uscc),
        )
        .into());
    }
    tx.unindex_due(&old)?;
    let record = CreditRecord {
        spec: spec.clone(),
        version: old.version + 1,
        correction_reason: reason.to_string(),
        updated_revision: tx.revision,
        ..old
    };
    save_credit(tx, &record, "credit.corrected")?;
    tx.index_due(&record);
    let tier = tx.retier(
        &spec.uscc,
        &format!(
            "correction of {} (v{}): {reason}",
            record.id, record.version
        ),
    )?;
    Ok(Outcome::Credit { record, tier })
}

pub(super) fn put_tier_policy(
    tx: &mut Tx,
    spec: &TierPolicySpec,
    expected: Option<u32>,
) -> Result<Outcome, Failure> {
    spec.validate("policy")?;
    let current = tx.policy()?;
    if let Some(e) = expected {
        if e != current.version {
            return Err(DomainError::RevisionMismatch {
                expected: e as u64,
                actual: current.version as u64,
            }
            .into());
        }
    }
    let policy = TierPolicy {
        version: current.version + 1,
        spec: spec.clone(),
        department: tx.env.actor.clone(),
        revision: tx.revision,
    };
    tx.put(keys::policy_version(policy.version), &policy);
    tx.put(keys::POLICY.to_string(), &policy);
    tx.emit(
        RecordKind::TierPolicy,
        keys::POLICY.to_string(),
        "tier_policy.changed",
        vec![tx.env.actor.clone()],
        EventRecord::TierPolicy(policy.clone()),
    );
    tx.put(keys::RETIER_AFTER.to_string(), &String::new());
    let retiered = continue_retier(tx)?;
    Ok(Outcome::TierPolicy { policy, retiered })
}

/// Re-tiers the next batch of entities under the current policy; returns how many.
pub(super) fn continue_retier(tx: &mut Tx) -> Result<u32, Failure> {
    let Some(after) = tx.get::<String>(keys::RETIER_AFTER)? else {
        return Ok(0);
    };
    let version = tx.policy()?.version;
    let start = (!after.is_empty()).then(|| keys::entity(&after));
    let batch = tx.base.scan(keys::ENTITY, start.as_deref(), RETIER_BATCH)?;
    let mut n = 0;
    for (key, _) in &batch {
        let uscc = key[keys::ENTITY.len()..].to_string();
        tx.retier(&uscc, &format!("tier policy v{version}"))?;
        n += 1;
    }
    match batch.last() {
        Some((key, _)) if batch.len() == RETIER_BATCH => {
            tx.put(
                keys::RETIER_AFTER.to_string(),
                &key[keys::ENTITY.len()..].to_string(),
            );
        }
        _ => {
            tx.writes.insert(keys::RETIER_AFTER.to_string(), None);
        }
    }
    Ok(n)
}

/// Re-tiers entities whose records took effect or expired by now; returns how many.
pub(super) fn retier_due(tx: &mut Tx) -> Result<u32, Failure> {
    let due = tx.base.scan(keys::CREDIT_DUE, None, RETIER_BATCH)?;
    let mut n = 0;
    for (key, _) in due {
        // crdue/<time:20>/<uscc>/<id>
        let rest = &key[keys::CREDIT_DUE.len()..];
        let Some((time, rest)) = rest.split_once('/') else {
            continue;
        };
        if time.parse::<i64>().map_or(true, |t| t > tx.now()) {
            break;
        }
        let Some((uscc, id)) = rest.split_once('/') else {
            continue;
        };
        tx.writes.insert(key.clone(), None);
        let what = if id.starts_with("list-") {
            "listing"
        } else {
            "record"
        };
        tx.retier(uscc, &format!("{what} {id} took effect or ended"))?;
        n += 1;
    }
    Ok(n)
}

/// Whether a tick has tier work: records due by `now_ms`, or re-tiering in progress.
pub fn tier_work_due(view: &dyn StateRead, now_ms: i64) -> Result<bool, StorageFault> {
    if view.get(keys::RETIER_AFTER)?.is_some() {
        return Ok(true);
    }
    Ok(view
        .scan(keys::CREDIT_DUE, None, 1)?
        .first()
        .and_then(|(k, _)| k[keys::CREDIT_DUE.len()..].get(..20)?.parse::<i64>().ok())
        .is_some_and(|t| t <= now_ms))
}

pub(super) fn put_on_list(tx: &mut Tx, spec: &ListingSpec) -> Result<Outcome, Failure> {
    spec.validate("listing")?;
    tx.entity("listing.uscc", &spec.uscc)?;
    if spec.until_ms.is_some_and(|t| t <= tx.now()) {
        return Err(DomainError::invalid("listing.until_ms", "must be in the future").into());
    }
    let listing = Listing {
        id: format!("list-{}", tx.revision),
        spec: spec.clone(),
        department: tx.env.actor.clone(),
        since_ms: tx.now(),
        removed_reason: String::new(),
        removed: false,
        created_revision: tx.revision,
        updated_revision: tx.revision,
    };
    save_listing(tx, &listing, "listing.added")?;
    if let Some(until) = listing.spec.until_ms {
        tx.writes.insert(
            keys::credit_due(until, &listing.spec.uscc, &listing.id),
            Some(vec![]),
        );
    }
    tx.retier(
        &listing.spec.uscc,
        &format!("{} on the {} list", listing.id, listing.spec.list.as_str()),
    )?;
    Ok(Outcome::Listing(listing))
}

pub(super) fn remove_from_list(
    tx: &mut Tx,
    id: &str,
    reason: &str,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    validate::required_text("reason", reason, MAX_TEXT_CHARS)?;
    let uscc: String = tx
        .get(&keys::listing_by_id(id))?
        .ok_or_else(|| DomainError::not_found("listing", id))?;
    let mut listing: Listing = tx
        .get(&keys::listing(&uscc, id))?
        .ok_or_else(|| DomainError::not_found("listing", id))?;
    check_expected(expected, listing.updated_revision)?;
    if !listing.active_at(tx.now()) {
        return Err(DomainError::precondition(format!(
            "listing {id} is no longer in force (removed or ended)"
        ))
        .into());
    }
    listing.removed = true;
    listing.removed_reason = reason.to_string();
    listing.updated_revision = tx.revision;
    save_listing(tx, &listing, "listing.removed")?;
    if let Some(until) = listing.spec.until_ms {
        tx.writes
            .insert(keys::credit_due(until, &uscc, &listing.id), None);
    }
    tx.retier(&uscc, &format!("{} removed: {reason}", listing.id))?;
    Ok(Outcome::Listing(listing))
}

/// Saves a listing and tells every registered department.
fn save_listing(tx: &mut Tx, listing: &Listing, action: &str) -> Result<(), Failure> {
    tx.put(keys::listing(&listing.spec.uscc, &listing.id), listing);
    tx.put(keys::listing_by_id(&listing.id), &listing.spec.uscc);
    let everyone = crate::query::departments(tx.base)?
        .into_iter()
        .map(|d| d.spec.code)
        .collect();
    tx.emit(
        RecordKind::Listing,
        listing.id.clone(),
        action,
        everyone,
        EventRecord::Listing(listing.clone()),
    );
    Ok(())
}
