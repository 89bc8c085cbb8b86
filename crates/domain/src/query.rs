//! Read-side functions over a [`StateRead`]: the same code answers on every node.

use crate::case::{Case, CaseNotice};
use crate::credit::{CreditRecord, TierChange, TierPolicy, TierState};
use crate::department::Department;
use crate::entity::{Entity, Listing};
use crate::inspection::{self, Alert, Draw, Inspector, Plan, ResultSpec, Task};
use crate::item::{Item, ItemStatus, Level};
use crate::sharing::RecordClass;
use crate::sharing::Scope;
use crate::state::{decode, get_typed, keys, scan_decoded, scan_prefix, StateRead};
use crate::StorageFault;
use crate::{DomainError, Failure};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 500;
const SCAN_BATCH: usize = 512;

pub fn department(view: &dyn StateRead, code: &str) -> Result<Department, Failure> {
    get_typed::<Department>(view, &keys::department(code))?
        .ok_or_else(|| DomainError::not_found("department", code).into())
}

pub fn departments(view: &dyn StateRead) -> Result<Vec<Department>, Failure> {
    Ok(scan_decoded(view, keys::DEPARTMENT)?)
}

/// What `scope` sees of an item whose latest version is `head`: the head for an
/// insider; otherwise the head if it is a public published version, else the
/// version in force if that one is public, else nothing.
fn visible_head(view: &dyn StateRead, scope: &Scope, head: Item) -> Result<Option<Item>, Failure> {
    if scope.is_insider(&head) || Scope::is_public_version(&head) {
        return Ok(Some(head));
    }
    if head.published_version == 0 {
        return Ok(None);
    }
    let key = keys::item_version(&head.id, head.published_version);
    Ok(get_typed::<Item>(view, &key)?.filter(Scope::is_public_version))
}

/// Whether `scope` may see anything of the item whose latest version is `head`.
pub fn visible(view: &dyn StateRead, scope: &Scope, head: &Item) -> Result<bool, Failure> {
    Ok(visible_head(view, scope, head.clone())?.is_some())
}

/// `version` 0 is the latest version the reader may see. An item the reader may
/// not see is NOT_FOUND, like a missing one.
pub fn item(view: &dyn StateRead, scope: &Scope, id: &str, version: u32) -> Result<Item, Failure> {
    let not_found = || -> Failure {
        if version == 0 {
            DomainError::not_found("item", id).into()
        } else {
            DomainError::not_found("item version", format!("{id} v{version}")).into()
        }
    };
    let head = get_typed::<Item>(view, &keys::item(id))?.ok_or_else(not_found)?;
    if version == 0 {
        return visible_head(view, scope, head)?.ok_or_else(not_found);
    }
    let item = get_typed::<Item>(view, &keys::item_version(id, version))?.ok_or_else(not_found)?;
    if scope.can_see_version(&item, &head) {
        Ok(item)
    } else {
        Err(not_found())
    }
}

/// Every version of an item the reader may see, oldest first.
pub fn item_history(view: &dyn StateRead, scope: &Scope, id: &str) -> Result<Vec<Item>, Failure> {
    let head = get_typed::<Item>(view, &keys::item(id))?
        .ok_or_else(|| Failure::from(DomainError::not_found("item", id)))?;
    let all = item_versions(view, id)?;
    let out: Vec<Item> = all
        .into_iter()
        .filter(|v| scope.can_see_version(v, &head))
        .collect();
    if out.is_empty() {
        return Err(DomainError::not_found("item", id).into());
    }
    Ok(out)
}

fn item_versions(view: &dyn StateRead, id: &str) -> Result<Vec<Item>, Failure> {
    Ok(scan_decoded(view, &keys::item_versions(id))?)
}

/// Filters of ListItems; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    pub lead_department: Option<String>,
    pub involves_department: Option<String>,
    pub status: Option<ItemStatus>,
    pub field: Option<String>,
    pub level: Option<Level>,
    pub public: Option<bool>,
}

impl ItemFilter {
    pub fn matches(&self, item: &Item) -> bool {
        self.lead_department
            .as_deref()
            .is_none_or(|d| item.lead() == d)
            && self
                .involves_department
                .as_ref()
                .is_none_or(|d| item.departments().contains(d))
            && self.status.is_none_or(|s| item.status == s)
            && self
                .field
                .as_deref()
                .is_none_or(|f| item.content.field == f)
            && self.level.is_none_or(|l| item.content.level == l)
            && self.public.is_none_or(|p| item.content.public == p)
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty when there is nothing after this page.
    pub next_page_token: String,
}

/// Page tokens are the hex of the last key scanned: opaque to callers, and a token
/// that was not issued here is refused rather than silently restarting the list.
pub fn decode_page_token(token: &str, prefix: &str) -> Result<Option<String>, DomainError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || DomainError::invalid("page_token", "not a token returned by this list");
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok(Some(key))
}

pub fn page_size(requested: u32) -> Result<usize, DomainError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n <= MAX_PAGE_SIZE => Ok(n as usize),
        n => Err(DomainError::invalid(
            "page_size",
            format!("{n} is more than {MAX_PAGE_SIZE}"),
        )),
    }
}

/// The latest visible versions of the items matching `filter`, in id order.
pub fn items(
    view: &dyn StateRead,
    scope: &Scope,
    filter: &ItemFilter,
    page_size: usize,
    page_token: &str,
) -> Result<Page<Item>, Failure> {
    let mut after = decode_page_token(page_token, keys::ITEM)?;
    let mut out = vec![];
    loop {
        let batch = view.scan(keys::ITEM, after.as_deref(), SCAN_BATCH)?;
        let exhausted = batch.len() < SCAN_BATCH;
        for (k, v) in &batch {
            after = Some(k.clone());
            let head: Item = decode(k, v)?;
            let Some(item) = visible_head(view, scope, head)? else {
                continue;
            };
            if filter.matches(&item) {
                out.push(item);
                if out.len() == page_size {
                    // Only hand out a token when something may follow.
                    let more = !view.scan(keys::ITEM, Some(k), 1)?.is_empty();
                    let next_page_token = if more { hex::encode(k) } else { String::new() };
                    return Ok(Page {
                        items: out,
                        next_page_token,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Page {
                items: out,
                next_page_token: String::new(),
            });
        }
    }
}

pub fn districts(view: &dyn StateRead) -> Result<Vec<String>, Failure> {
    Ok(get_typed(view, keys::DISTRICTS)?.unwrap_or_default())
}

pub fn entity(view: &dyn StateRead, uscc: &str) -> Result<Entity, Failure> {
    get_typed::<Entity>(view, &keys::entity(uscc))?
        .ok_or_else(|| DomainError::not_found("entity", uscc).into())
}

/// Filters of ListEntities; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityFilter {
    pub district: Option<String>,
    pub industry: Option<String>,
    pub tier: Option<String>,
}

/// Entities matching `filter`, with their tiers, in code order.
pub fn entities(
    view: &dyn StateRead,
    filter: &EntityFilter,
    page_size: usize,
    page_token: &str,
) -> Result<Page<(Entity, Option<TierState>)>, Failure> {
    let mut after = decode_page_token(page_token, keys::ENTITY)?;
    let mut out = vec![];
    loop {
        let batch = view.scan(keys::ENTITY, after.as_deref(), SCAN_BATCH)?;
        let exhausted = batch.len() < SCAN_BATCH;
        for (k, v) in &batch {
            after = Some(k.clone());
            let e: Entity = decode(k, v)?;
            let tier: Option<TierState> = get_typed(view, &keys::tier(&e.spec.uscc))?;
            let matches = filter
                .district
                .as_ref()
                .is_none_or(|d| *d == e.spec.district)
                && filter
                    .industry
                    .as_ref()
                    .is_none_or(|i| *i == e.spec.industry)
                && filter
                    .tier
                    .as_ref()
                    .is_none_or(|t| tier.as_ref().is_some_and(|s| s.tier == *t));
            if matches {
                out.push((e, tier));
                if out.len() == page_size {
                    let more = !view.scan(keys::ENTITY, Some(k), 1)?.is_empty();
                    let next_page_token = if more { hex::encode(k) } else { String::new() };
                    return Ok(Page {
                        items: out,
                        next_page_token,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Page {
                items: out,
                next_page_token: String::new(),
            });
        }
    }
}

/// The credit records of an entity (current versions), oldest first.
pub fn credit_records(view: &dyn StateRead, uscc: &str) -> Result<Vec<CreditRecord>, Failure> {
    let mut records: Vec<CreditRecord> = scan_decoded(view, &keys::credits(uscc))?;
    records.sort_by_key(|r| r.created_revision);
    Ok(records)
}

pub fn credit_record(view: &dyn StateRead, id: &str) -> Result<CreditRecord, Failure> {
    let not_found = || Failure::from(DomainError::not_found("credit record", id));
    let uscc: String = get_typed(view, &keys::credit_by_id(id))?.ok_or_else(not_found)?;
    get_typed(view, &keys::credit(&uscc, id))?.ok_or_else(not_found)
}

/// Every version of a credit record, oldest first.
pub fn credit_history(view: &dyn StateRead, id: &str) -> Result<Vec<CreditRecord>, Failure> {
    let out: Vec<CreditRecord> = scan_decoded(view, &keys::credit_versions(id))?;
    if out.is_empty() {
        return Err(DomainError::not_found("credit record", id).into());
    }
    Ok(out)
}

/// An entity's tier and the history of its changes, oldest first.
pub fn tier(view: &dyn StateRead, uscc: &str) -> Result<(TierState, Vec<TierChange>), Failure> {
    let state: TierState = get_typed(view, &keys::tier(uscc))?
        .ok_or_else(|| Failure::from(DomainError::not_found("entity", uscc)))?;
    let history = scan_decoded(view, &keys::tier_histories(uscc))?;
    Ok((state, history))
}

/// Version `version` of the tier policy (0: the one in force).
pub fn tier_policy(view: &dyn StateRead, version: u32) -> Result<TierPolicy, Failure> {
    let key = if version == 0 {
        keys::POLICY.to_string()
    } else {
        keys::policy_version(version)
    };
    get_typed(view, &key)?
        .ok_or_else(|| DomainError::not_found("tier policy version", version.to_string()).into())
}

/// The joint-list entries of an entity, oldest first.
pub fn listings(view: &dyn StateRead, uscc: &str) -> Result<Vec<Listing>, Failure> {
    let mut out: Vec<Listing> = scan_decoded(view, &keys::listings(uscc))?;
    out.sort_by_key(|l| l.created_revision);
    Ok(out)
}

pub fn inspectors(view: &dyn StateRead, department: &str) -> Result<Vec<Inspector>, Failure> {
    Ok(scan_decoded(view, &keys::inspectors(department))?)
}

pub fn plan(view: &dyn StateRead, id: &str) -> Result<Plan, Failure> {
    get_typed(view, &keys::plan(id))?.ok_or_else(|| DomainError::not_found("plan", id).into())
}

pub fn draw(view: &dyn StateRead, plan_id: &str) -> Result<Draw, Failure> {
    get_typed(view, &keys::draw(plan_id))?
        .ok_or_else(|| DomainError::not_found("draw of plan", plan_id).into())
}

pub fn task(view: &dyn StateRead, id: &str) -> Result<Task, Failure> {
    get_typed(view, &keys::task(id))?.ok_or_else(|| DomainError::not_found("task", id).into())
}

/// The tasks of a plan, in draw order.
pub fn tasks(view: &dyn StateRead, plan_id: &str) -> Result<Vec<Task>, Failure> {
    let prefix = keys::tasks_of_plan(plan_id);
    let mut out = scan_prefix(view, &prefix)?
        .iter()
        .map(|(k, _)| task(view, &k[prefix.len()..]))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|t| {
        t.id.rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    });
    Ok(out)
}

/// One department's result about an entity, as mutual recognition shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledResult {
    pub task_id: String,
    pub department: String,
    pub result: ResultSpec,
    pub at_ms: i64,
    pub revision: u64,
}

/// Results filed about `uscc` since `since_ms` that `scope` may see: public ones,
/// those of tasks its department took part in, and those shared with it by rule.
pub fn recent_results(
    view: &dyn StateRead,
    scope: &Scope,
    uscc: &str,
    since_ms: i64,
) -> Result<Vec<FiledResult>, Failure> {
    let prefix = keys::results(uscc);
    let mut out = vec![];
    for (k, v) in view.scan(&prefix, None, 100_000)? {
        let (task_id, department, result, at_ms): (String, String, ResultSpec, i64) =
            decode(&k, &v)?;
        if at_ms < since_ms {
            continue;
        }
        let visible = result.public
            || department == scope.department()
            || scope.is_granted(RecordClass::InspectionResult, &department)
            || task(view, &task_id)?
                .parts
                .iter()
                .any(|p| p.department == scope.department());
        if visible {
            let revision = k[prefix.len()..]
                .get(..20)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            out.push(FiledResult {
                task_id,
                department,
                result,
                at_ms,
                revision,
            });
        }
    }
    Ok(out)
}

/// The alerts in a department's inbox, oldest first.
pub fn inbox(view: &dyn StateRead, department: &str) -> Result<Vec<Alert>, Failure> {
    let ids: Vec<String> = scan_decoded(view, &keys::inbox_of(department))?;
    ids.iter()
        .map(|id| {
            get_typed(view, &keys::alert(id))?
                .ok_or_else(|| Failure::from(StorageFault(format!("alert {id} is missing"))))
        })
        .collect()
}

/// Re-derives a plan's draw from its stored seed and population; returns what does
/// not match (empty: the draw is what the algorithm gives).
pub fn verify_draw(view: &dyn StateRead, plan_id: &str) -> Result<Vec<String>, Failure> {
    let plan = plan(view, plan_id)?;
    let d = draw(view, plan_id)?;
    let mut problems = vec![];
    if d.algorithm != inspection::ALGORITHM {
        problems.push(format!("unknown algorithm {}", d.algorithm));
    }
    if d.seed != inspection::seed(plan_id, d.revision, d.timestamp_ms, &d.chain_hash) {
        problems.push("the seed is not the one its log entry gives".to_string());
    }
    if d.population_hash != inspection::population_hash(&d.population) {
        problems.push("the population does not match its hash".to_string());
    }
    if d.plan_hash != inspection::plan_hash(&plan.spec) {
        problems.push("the plan is not the one that was drawn".to_string());
    }
    match tier_policy(view, d.policy_version) {
        Ok(policy) => {
            let stored: Vec<(String, u32)> = d
                .tiers
                .iter()
                .map(|t| (t.tier.clone(), t.ratio_bp))
                .collect();
            if inspection::ratios(&plan.spec, &policy).ok() != Some(stored) {
                problems.push(format!(
                    "the sampling ratios are not those of the plan under policy v{}",
                    d.policy_version
                ));
            }
        }
        Err(_) => problems.push(format!("policy v{} is unknown", d.policy_version)),
    }
    let ratios: Vec<(String, u32)> = d
        .tiers
        .iter()
        .map(|t| (t.tier.clone(), t.ratio_bp))
        .collect();
    let (tiers, entities, assignments) = inspection::draw(&inspection::DrawInput {
        plan: &plan,
        seed: &d.seed,
        population: &d.population,
        ratios: &ratios,
        rosters: &d.rosters,
    });
    if tiers != d.tiers || entities != d.entities || assignments != d.assignments {
        problems.push("re-drawing from the seed and population gives another result".to_string());
    }
    if d.digest != d.compute_digest() {
        problems.push("the draw does not match its digest".to_string());
    }
    // The draw's audit record must carry its digest, link to the chain head the
    // seed used, and be intact where it stands in the chain.
    let audited: Option<crate::audit::AuditRecord> = get_typed(view, &keys::audit(d.revision))?;
    match audited {
        Some(a) if a.basis == format!("draw {}", d.digest) && a.prev_hash == d.chain_hash => {
            if let Some((rev, why)) = crate::audit::verify(view, d.revision, d.revision, 1)?.broken
            {
                problems.push(format!(
                    "the audit chain is broken at revision {rev}: {why}"
                ));
            }
        }
        _ => problems.push(format!(
            "the audit record of revision {} does not carry this draw's digest and chain head",
            d.revision
        )),
    }
    Ok(problems)
}

/// The results of a plan's tasks flagged for publication ("one public").
pub fn public_results(view: &dyn StateRead, plan_id: &str) -> Result<Vec<FiledResult>, Failure> {
    let mut out = vec![];
    for task in tasks(view, plan_id)? {
        for part in &task.parts {
            if let Some(result) = part.result.as_ref().filter(|r| r.public) {
                out.push(FiledResult {
                    task_id: task.id.clone(),
                    department: part.department.clone(),
                    result: result.clone(),
                    at_ms: part.submitted_at_ms,
                    revision: part.submitted_revision,
                });
            }
        }
    }
    Ok(out)
}

pub fn case(view: &dyn StateRead, id: &str) -> Result<Case, Failure> {
    get_typed(view, &keys::case(id))?.ok_or_else(|| DomainError::not_found("case", id).into())
}

/// Whether `scope`'s department may see a case: its two sides, every department
/// that took a step on it, and the arbiters.
pub fn may_see_case(view: &dyn StateRead, department: &str, case: &Case) -> Result<bool, Failure> {
    if case.from == department
        || case.to == department
        || case.steps.iter().any(|s| s.by == department)
    {
        return Ok(true);
    }
    Ok(
        get_typed::<Department>(view, &keys::department(department))?
            .is_some_and(|d| d.has_role(crate::department::Role::Arbiter)),
    )
}

/// A case `department` may see; NOT_FOUND otherwise, like a missing one.
pub fn case_for(view: &dyn StateRead, department: &str, id: &str) -> Result<Case, Failure> {
    let c = case(view, id)?;
    if may_see_case(view, department, &c)? {
        Ok(c)
    } else {
        Err(DomainError::not_found("case", id).into())
    }
}

/// The cases of one hand-off that `department` may see.
pub fn handoff(
    view: &dyn StateRead,
    department: &str,
    handoff: &str,
) -> Result<Vec<Case>, Failure> {
    let all: Vec<Case> = scan_decoded(view, &format!("{}{handoff}-", keys::CASE))?;
    let mut out = vec![];
    for c in all {
        if may_see_case(view, department, &c)? {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(DomainError::not_found("hand-off", handoff).into());
    }
    Ok(out)
}

/// What awaits `department`: its cases to act on (and, for an arbiter, the
/// escalated ones), soonest deadline first.
pub fn case_inbox(view: &dyn StateRead, department: &str) -> Result<Vec<Case>, Failure> {
    let mut owners = vec![department.to_string()];
    if get_typed::<Department>(view, &keys::department(department))?
        .is_some_and(|d| d.has_role(crate::department::Role::Arbiter))
    {
        owners.push("@arbiter".to_string());
    }
    let mut out = vec![];
    for owner in owners {
        let prefix = keys::cases_awaiting(&owner);
        for (k, _) in scan_prefix(view, &prefix)? {
            out.push(case(view, &k[prefix.len()..])?);
        }
    }
    out.sort_by(|a, b| (a.due_ms, &a.id).cmp(&(b.due_ms, &b.id)));
    Ok(out)
}

/// Reminders and overdue notices sent to `department`, oldest first.
pub fn case_notices(view: &dyn StateRead, department: &str) -> Result<Vec<CaseNotice>, Failure> {
    Ok(scan_decoded(view, &keys::case_notices(department))?)
}

/// A licensing decision; public to every member (双公示).
pub fn licensing_decision(
    view: &dyn StateRead,
    id: &str,
) -> Result<crate::licensing::LicensingDecision, Failure> {
    get_typed(view, &keys::licensing(id))?
        .ok_or_else(|| DomainError::not_found("licensing decision", id).into())
}

/// The licensing decisions on one entity, oldest first.
pub fn licensing_decisions(
    view: &dyn StateRead,
    uscc: &str,
) -> Result<Vec<crate::licensing::LicensingDecision>, Failure> {
    let mut out = vec![];
    for (key, _) in scan_prefix(view, &keys::licensings_of(uscc))? {
        if let Some(id) = key.rsplit('/').next() {
            out.push(licensing_decision(view, id)?);
        }
    }
    // Keys sort by id text; revisions order them in time.
    out.sort_by_key(|d| d.revision);
    Ok(out)
}
