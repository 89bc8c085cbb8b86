//! The state view `apply` and the queries read, and the key layout of the shared record.
//!
//! Keys are UTF-8 strings whose prefixes name the record class, so one ordered
//! key-value tree holds the whole state and a prefix scan lists one class.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StorageFault;

/// Read access to the replicated state, provided by the store (fjall) or by [`MemState`].
pub trait StateRead {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageFault>;
    /// Entries whose key starts with `prefix`, in key order, strictly after `after`
    /// when given, at most `limit`.
    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageFault>;
}

/// One key's new value (`None` deletes it).
pub type Write = (String, Option<Vec<u8>>);

pub mod keys {
    pub const DEPARTMENT: &str = "dept/";
    pub const ITEM: &str = "item/";
    pub const ITEM_VERSION: &str = "itemv/";
    pub const DEDUP: &str = "dedup/";
    pub const DEDUP_BY_TIME: &str = "dedupt/";
    pub const BOOTSTRAPPED: &str = "meta/bootstrapped";
    pub const AUDIT: &str = "audit/";
    pub const SHARING: &str = "share/";
    pub const ENTITY: &str = "ent/";
    pub const TIER: &str = "tier/";
    pub const TIER_HISTORY: &str = "tierh/";
    pub const CREDIT: &str = "cr/";
    pub const CREDIT_BY_ID: &str = "crid/";
    pub const CREDIT_VERSION: &str = "crv/";
    /// `crdue/<time>/<uscc>/<record id>`: when a record takes effect or expires.
    pub const CREDIT_DUE: &str = "crdue/";
    pub const POLICY: &str = "meta/tier_policy";
    pub const POLICY_VERSION: &str = "policyv/";
    /// The entity after which re-tiering under a new policy continues.
    pub const RETIER_AFTER: &str = "meta/retier_after";
    pub const DISTRICTS: &str = "meta/districts";
    pub const LISTING: &str = "list/";
    pub const LISTING_BY_ID: &str = "listid/";
    pub const INSPECTOR: &str = "inspr/";
    pub const PLAN: &str = "plan/";
    pub const DRAW: &str = "draw/";
    pub const TASK: &str = "task/";
    pub const TASK_BY_PLAN: &str = "taskp/";
    /// `ievt/<uscc>/<time:20>/<revision:20>`: inspections of an entity, by time.
    pub const INSPECTION_EVENT: &str = "ievt/";
    /// `ires/<uscc>/<revision:20>/<department>`: results filed about an entity.
    pub const RESULT: &str = "ires/";
    pub const ALERT: &str = "alert/";
    pub const INBOX: &str = "inbox/";
    pub const OVER_INSPECTION_RULE: &str = "meta/over_inspection_rule";

    pub fn inspector(department: &str, id: &str) -> String {
        format!("{INSPECTOR}{department}/{id}")
    }
    pub fn inspectors(department: &str) -> String {
        format!("{INSPECTOR}{department}/")
    }
    pub fn plan(id: &str) -> String {
        format!("{PLAN}{id}")
    }
    pub fn draw(plan_id: &str) -> String {
        format!("{DRAW}{plan_id}")
    }
    pub fn task(id: &str) -> String {
        format!("{TASK}{id}")
    }
    pub fn task_by_plan(plan_id: &str, task_id: &str) -> String {
        format!("{TASK_BY_PLAN}{plan_id}/{task_id}")
    }
    pub fn tasks_of_plan(plan_id: &str) -> String {
        format!("{TASK_BY_PLAN}{plan_id}/")
    }
    pub fn inspection_event(uscc: &str, at_ms: i64, revision: u64) -> String {
        format!(
            "{INSPECTION_EVENT}{uscc}/{:020}/{revision:020}",
            at_ms.max(0)
        )
    }
    pub fn inspection_events(uscc: &str) -> String {
        format!("{INSPECTION_EVENT}{uscc}/")
    }
    pub fn result(uscc: &str, revision: u64, department: &str) -> String {
        format!("{RESULT}{uscc}/{revision:020}/{department}")
    }
    pub fn results(uscc: &str) -> String {
        format!("{RESULT}{uscc}/")
    }
    pub const CASE: &str = "case/";
    pub const CASE_DEADLINES: &str = "meta/case_deadlines";
    /// `casedue/<time:20>/<case id>`: when a case's current stage is due.
    pub const CASE_DUE: &str = "casedue/";
    /// `caserem/<time:20>/<case id>`: when to remind the department that must act.
    pub const CASE_REMINDER: &str = "caserem/";
    /// `caseaw/<department or @arbiter>/<case id>`: whose move it is.
    pub const CASE_AWAITING: &str = "caseaw/";
    /// `casenote/<department>/<revision:20>/<case id>/<kind>`: reminders and
    /// overdue notices (several cases can fall due in one tick).
    pub const CASE_NOTICE: &str = "casenote/";

    pub fn case(id: &str) -> String {
        format!("{CASE}{id}")
    }
    pub fn case_due(at_ms: i64, id: &str) -> String {
        format!("{CASE_DUE}{:020}/{id}", at_ms.max(0))
    }
    pub fn case_reminder(at_ms: i64, id: &str) -> String {
        format!("{CASE_REMINDER}{:020}/{id}", at_ms.max(0))
    }
    pub fn case_awaiting(owner: &str, id: &str) -> String {
        format!("{CASE_AWAITING}{owner}/{id}")
    }
    pub fn cases_awaiting(owner: &str) -> String {
        format!("{CASE_AWAITING}{owner}/")
    }
    pub fn case_notice(department: &str, revision: u64, case_id: &str, kind: &str) -> String {
        format!("{CASE_NOTICE}{department}/{revision:020}/{case_id}/{kind}")
    }
    pub fn case_notices(department: &str) -> String {
        format!("{CASE_NOTICE}{department}/")
    }
    /// `lic/<decision id>`: licensing decisions.
    pub const LICENSING: &str = "lic/";
    /// `licno/<document number>` → decision id: a number is recorded once.
    pub const LICENSING_NUMBER: &str = "licno/";
    /// `licent/<uscc>/<decision id>` → the bureau: who licensed an entity, so
    /// violations found in supervision go back to it.
    pub const LICENSING_BY_ENTITY: &str = "licent/";

    pub fn licensing(id: &str) -> String {
        format!("{LICENSING}{id}")
    }
    pub fn licensing_number(number: &str) -> String {
        format!("{LICENSING_NUMBER}{number}")
    }
    pub fn licensing_by_entity(uscc: &str, id: &str) -> String {
        format!("{LICENSING_BY_ENTITY}{uscc}/{id}")
    }
    pub fn licensings_of(uscc: &str) -> String {
        format!("{LICENSING_BY_ENTITY}{uscc}/")
    }
    pub fn last_alert(uscc: &str) -> String {
        format!("alertlast/{uscc}")
    }
    pub fn alert(id: &str) -> String {
        format!("{ALERT}{id}")
    }
    pub fn inbox(department: &str, revision: u64) -> String {
        format!("{INBOX}{department}/{revision:020}")
    }
    pub fn inbox_of(department: &str) -> String {
        format!("{INBOX}{department}/")
    }

    pub fn entity(uscc: &str) -> String {
        format!("{ENTITY}{uscc}")
    }
    pub fn tier(uscc: &str) -> String {
        format!("{TIER}{uscc}")
    }
    pub fn tier_history(uscc: &str, revision: u64) -> String {
        format!("{TIER_HISTORY}{uscc}/{revision:020}")
    }
    pub fn tier_histories(uscc: &str) -> String {
        format!("{TIER_HISTORY}{uscc}/")
    }
    pub fn credit(uscc: &str, id: &str) -> String {
        format!("{CREDIT}{uscc}/{id}")
    }
    pub fn credits(uscc: &str) -> String {
        format!("{CREDIT}{uscc}/")
    }
    pub fn credit_by_id(id: &str) -> String {
        format!("{CREDIT_BY_ID}{id}")
    }
    pub fn credit_version(id: &str, version: u32) -> String {
        format!("{CREDIT_VERSION}{id}/{version:010}")
    }
    pub fn credit_versions(id: &str) -> String {
        format!("{CREDIT_VERSION}{id}/")
    }
    pub fn credit_due(at_ms: i64, uscc: &str, id: &str) -> String {
        format!("{CREDIT_DUE}{:020}/{uscc}/{id}", at_ms.max(0))
    }
    pub fn policy_version(version: u32) -> String {
        format!("{POLICY_VERSION}{version:010}")
    }
    pub fn listing(uscc: &str, id: &str) -> String {
        format!("{LISTING}{uscc}/{id}")
    }
    pub fn listings(uscc: &str) -> String {
        format!("{LISTING}{uscc}/")
    }
    pub fn listing_by_id(id: &str) -> String {
        format!("{LISTING_BY_ID}{id}")
    }
    pub const AUDIT_HEAD: &str = "meta/audit_head";
    /// The codes of the departments with the ARBITER role, in code order: derived
    /// from `dept/`, kept so a case step need not scan the registry.
    pub const ARBITERS: &str = "meta/arbiters";

    pub fn audit(revision: u64) -> String {
        format!("{AUDIT}{revision:020}")
    }

    pub fn department(code: &str) -> String {
        format!("{DEPARTMENT}{code}")
    }
    pub fn item(id: &str) -> String {
        format!("{ITEM}{id}")
    }
    pub fn item_version(id: &str, version: u32) -> String {
        format!("{ITEM_VERSION}{id}/{version:010}")
    }
    pub fn item_versions(id: &str) -> String {
        format!("{ITEM_VERSION}{id}/")
    }
    pub fn dedup(actor: &str, request_id: &str) -> String {
        format!("{DEDUP}{actor}/{request_id}")
    }
    pub fn dedup_by_time(at_ms: i64, actor: &str, request_id: &str) -> String {
        // Zero-padded so lexical order is time order (times before 1970 clamp to 0).
        format!("{DEDUP_BY_TIME}{:020}/{actor}/{request_id}", at_ms.max(0))
    }
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StorageFault> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageFault(format!("value of {key} does not decode: {e}")))
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail (no maps with non-string keys).
    // Most records are a few hundred bytes to a kilobyte: start there rather than
    // at serde_json's 128 bytes and reallocate on the way.
    let mut out = Vec::with_capacity(512);
    let _ = serde_json::to_writer(&mut out, value);
    out
}

/// Every entry under `prefix`, in key order, read in pages.
pub fn scan_prefix(
    view: &dyn StateRead,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StorageFault> {
    const PAGE: usize = 512;
    let mut out = vec![];
    loop {
        let batch = view.scan(
            prefix,
            out.last().map(|(k, _): &(String, Vec<u8>)| k.as_str()),
            PAGE,
        )?;
        let done = batch.len() < PAGE;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// Every value under `prefix`, decoded, in key order.
pub fn scan_decoded<T: DeserializeOwned>(
    view: &dyn StateRead,
    prefix: &str,
) -> Result<Vec<T>, StorageFault> {
    scan_prefix(view, prefix)?
        .iter()
        .map(|(k, v)| decode(k, v))
        .collect()
}

pub fn get_typed<T: DeserializeOwned>(
    view: &dyn StateRead,
    key: &str,
) -> Result<Option<T>, StorageFault> {
    match view.get(key)? {
        Some(bytes) => decode(key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Where a `StateRead::scan` of an ordered map starts.
fn scan_start(prefix: &str, after: Option<&str>) -> Bound<String> {
    match after {
        Some(a) => Bound::Excluded(a.to_string()),
        None => Bound::Included(prefix.to_string()),
    }
}

/// An in-memory state, for tests and for replaying a log without a store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemState {
    pub map: BTreeMap<String, Vec<u8>>,
}

impl MemState {
    pub fn apply_writes(&mut self, writes: &[Write]) {
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.map.insert(k.clone(), v.clone());
                }
                None => {
                    self.map.remove(k);
                }
            }
        }
    }
}

impl StateRead for MemState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageFault> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageFault> {
        Ok(self
            .map
            .range((scan_start(prefix, after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Pending writes over a base view: what a batch of entries has written so far is
/// visible to the next entry before anything reaches the store.
pub struct Overlay<'a> {
    pub base: &'a dyn StateRead,
    pub writes: &'a BTreeMap<String, Option<Vec<u8>>>,
}

impl StateRead for Overlay<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageFault> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageFault> {
        let pending: Vec<(&String, &Option<Vec<u8>>)> = self
            .writes
            .range((scan_start(prefix, after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        // Each pending write can hide at most one base entry, so this many base
        // entries are enough to fill `limit` after the merge.
        let mut merged: BTreeMap<String, Vec<u8>> = self
            .base
            .scan(prefix, after, limit.saturating_add(pending.len()))?
            .into_iter()
            .collect();
        let base_end = merged.keys().next_back().cloned();
        let base_full = merged.len() == limit.saturating_add(pending.len());
        for (k, v) in pending {
            // Past the last base key of a full base page, the base may hold keys we did
            // not read: stop there so nothing is skipped.
            if base_full && base_end.as_ref().is_some_and(|end| k > end) {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}
