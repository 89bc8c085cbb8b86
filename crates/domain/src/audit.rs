//! The full-process record (执法全过程记录): every applied command appends one
//! record — who, in what capacity, did what to which record, on which basis, when,
//! with what outcome — chained by hash: `hash = SHA-256(prev_hash ‖ canonical
//! record)`. Every replica computes the same chain from the same log, so comparing
//! heads across departments shows whether anyone's copy was rewritten, and
//! [`verify`] finds the first record that no longer matches.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{CommandKind, Envelope, Principal};
use crate::state::{decode, keys, StateRead};
use crate::StorageFault;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub revision: u64,
    pub actor: String,
    pub principal: Principal,
    pub kind: CommandKind,
    /// The record acted on (item id, department code), empty when none.
    pub target: String,
    /// The legal basis, opinion or reason the caller gave.
    pub basis: String,
    pub request_id: String,
    pub timestamp_ms: i64,
    /// `OK`, or the code of the refusal (refused attempts are recorded too).
    pub outcome: String,
    /// The revision of the record before this one (0 for the first), so any record
    /// can be checked against its predecessor without walking the whole chain.
    pub prev_revision: u64,
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this record with `hash` empty.
    pub hash: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The revision of the newest record (0: none yet).
    pub revision: u64,
    pub hash: String,
    pub count: u64,
}

impl AuditRecord {
    pub fn new(env: &Envelope, revision: u64, target: String, outcome: String) -> AuditRecord {
        AuditRecord {
            revision,
            actor: env.actor.clone(),
            principal: env.principal,
            kind: env.command.kind(),
            target,
            basis: env.command.basis(),
            request_id: env.request_id.clone(),
            timestamp_ms: env.timestamp_ms,
            outcome,
            prev_revision: 0,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The hash this record should carry given its `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.hash = String::new();
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update([0u8]);
        // Struct fields serialise in declaration order: a canonical encoding.
        crate::digest::update_json(&mut h, &unsigned);
        crate::digest::hex(h)
    }

    /// Links this record after `head` and seals it.
    pub fn seal(mut self, head: &AuditHead) -> (AuditRecord, AuditHead) {
        (self.prev_revision, self.prev_hash) = if head.count == 0 {
            (0, GENESIS.to_string())
        } else {
            (head.revision, head.hash.clone())
        };
        self.hash = self.compute_hash();
        let next = AuditHead {
            revision: self.revision,
            hash: self.hash.clone(),
            count: head.count + 1,
        };
        (self, next)
    }
}

pub fn head(view: &dyn StateRead) -> Result<AuditHead, StorageFault> {
    Ok(crate::state::get_typed(view, keys::AUDIT_HEAD)?.unwrap_or_default())
}

/// The outcome of re-deriving part of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: u64,
    /// The first record that does not match, and why.
    pub broken: Option<(u64, String)>,
    /// Where to continue when `limit` stopped the walk (0: done).
    pub next_revision: u64,
    pub head: AuditHead,
}

/// Recomputes every record with `from <= revision <= to` (`to` 0: to the head), at
/// most `limit`: each record's hash, its link to its predecessor (also when the
/// predecessor is outside the range), the link of the record after the range back to
/// the last one checked, and — when the walk covers the whole chain — the stored
/// head and count.
pub fn verify(
    view: &dyn StateRead,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Verification, StorageFault> {
    let head = head(view)?;
    let to = if to == 0 { u64::MAX } else { to };
    let first_of_chain = first_revision(view)?;
    let mut checked: u64 = 0;
    let mut prev: Option<AuditRecord> = None;
    let mut after = (from > 0).then(|| keys::audit(from - 1));
    let page = 1024.min(limit.max(1));
    let mut next_revision = 0;
    // The first record past the walk, whose link to the last one is checked at the end.
    let mut beyond: Option<AuditRecord> = None;
    'walk: loop {
        let batch = view.scan(keys::AUDIT, after.as_deref(), page)?;
        if batch.is_empty() {
            break;
        }
        for (key, bytes) in &batch {
            let record: AuditRecord = match decode(key, bytes) {
                Ok(r) => r,
                Err(e) => {
                    let rev = key[keys::AUDIT.len()..].parse().unwrap_or(0);
                    return Ok(broken(checked, rev, e.to_string(), head));
                }
            };
            if record.revision > to || checked as usize == limit {
                if checked as usize == limit && record.revision <= to {
                    next_revision = record.revision;
                }
                beyond = Some(record);
                break 'walk;
            }
            let fail = |why: &str| {
                Ok(broken(
                    checked,
                    record.revision,
                    why.to_string(),
                    head.clone(),
                ))
            };
            if key != &keys::audit(record.revision) {
                return fail("the record is stored under another revision's key");
            }
            if record.compute_hash() != record.hash {
                return fail(
                    "the record does not match its hash (it was changed after it was written)",
                );
            }
            if let Err(why) = check_link(view, &record, prev.as_ref(), first_of_chain)? {
                return fail(why);
            }
            checked += 1;
            prev = Some(record);
        }
        after = batch.last().map(|(k, _)| k.clone());
    }
    let Some(last) = prev else {
        let expected_some = head.count > 0 && from <= head.revision && to >= head.revision;
        if beyond.is_none() && expected_some {
            return Ok(broken(
                0,
                head.revision,
                "the head names records that are missing".into(),
                head,
            ));
        }
        return Ok(done(checked, next_revision, head));
    };
    match beyond {
        Some(next) => {
            if next.prev_revision != last.revision || next.prev_hash != last.hash {
                return Ok(broken(
                    checked,
                    next.revision,
                    "the record after the range does not link to the last one in it (a record was changed, removed or inserted)".into(),
                    head,
                ));
            }
        }
        None => {
            if last.revision != head.revision || last.hash != head.hash {
                return Ok(broken(
                    checked,
                    last.revision,
                    format!(
                        "the newest record is not the stored head (revision {}): records were removed or added at the end",
                        head.revision
                    ),
                    head,
                ));
            }
            if from <= first_of_chain && checked != head.count {
                return Ok(broken(
                    checked,
                    last.revision,
                    format!(
                        "the chain holds {checked} records but the head counts {}",
                        head.count
                    ),
                    head,
                ));
            }
        }
    }
    Ok(done(checked, next_revision, head))
}

/// Checks `record`'s link to its predecessor: the previous record of the walk, or,
/// for the first record of a walk, the record it names (or the genesis).
fn check_link(
    view: &dyn StateRead,
    record: &AuditRecord,
    walked: Option<&AuditRecord>,
    first_of_chain: u64,
) -> Result<Result<(), &'static str>, StorageFault> {
    if let Some(p) = walked {
        if record.prev_revision != p.revision || record.prev_hash != p.hash {
            return Ok(Err("the record does not link to the one before it (a record was changed, removed or inserted)"));
        }
        return Ok(Ok(()));
    }
    if record.prev_revision == 0 {
        let ok = record.prev_hash == GENESIS && record.revision == first_of_chain;
        return Ok(if ok {
            Ok(())
        } else {
            Err("the record claims to start the chain but does not")
        });
    }
    let key = keys::audit(record.prev_revision);
    let Some(bytes) = view.get(&key)? else {
        return Ok(Err("the record it links to is missing"));
    };
    let p: AuditRecord = decode(&key, &bytes)?;
    Ok(
        if p.hash == record.prev_hash && p.compute_hash() == p.hash {
            Ok(())
        } else {
            Err("the record does not link to the one before it (a record was changed, removed or inserted)")
        },
    )
}

fn first_revision(view: &dyn StateRead) -> Result<u64, StorageFault> {
    Ok(view
        .scan(keys::AUDIT, None, 1)?
        .first()
        .and_then(|(k, _)| k[keys::AUDIT.len()..].parse().ok())
        .unwrap_or(0))
}

fn broken(checked: u64, revision: u64, why: String, head: AuditHead) -> Verification {
    Verification {
        checked,
        broken: Some((revision, why)),
        next_revision: 0,
        head,
    }
}

fn done(checked: u64, next_revision: u64, head: AuditHead) -> Verification {
    Verification {
        checked,
        broken: None,
        next_revision,
        head,
    }
}

/// Audit records from `from` on, only those about `target` (or the hand-off it
/// belongs to) when given, at most
/// `limit`; also where to continue (0 when the chain's end was reached). Reads at
/// most `scan_budget` records, so a rare target does not make one call unbounded.
pub fn list(
    view: &dyn StateRead,
    from: u64,
    target: Option<&str>,
    limit: usize,
    scan_budget: usize,
) -> Result<(Vec<AuditRecord>, u64), StorageFault> {
    let mut out = vec![];
    let mut after = (from > 0).then(|| keys::audit(from - 1));
    let mut scanned = 0;
    loop {
        let batch = view.scan(keys::AUDIT, after.as_deref(), 512)?;
        if batch.is_empty() {
            return Ok((out, 0));
        }
        for (k, v) in &batch {
            let r: AuditRecord = decode(k, v)?;
            if out.len() == limit || scanned == scan_budget {
                return Ok((out, r.revision));
            }
            scanned += 1;
            // A hand-off's own record belongs to each of its cases (`<hand-off>-<n>`).
            let about = |t: &str| {
                t == r.target
                    || (!r.target.is_empty()
                        && t.strip_prefix(r.target.as_str())
                            .is_some_and(|rest| rest.starts_with('-')))
            };
            if target.is_none_or(about) {
                out.push(r);
            }
        }
        after = batch.last().map(|(k, _)| k.clone());
    }
}
