//! One log entry in, one [`Transition`] out: the writes, the change-feed events and the
//! response of that revision. A refused command produces no writes and no events
//! (only the memory of its request id, so a retry gets the same refusal).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditRecord};
use crate::authority;
use crate::command::{Command, Envelope, Outcome, Principal, Response};
use crate::department::{Department, DepartmentSpec};
use crate::event::{Event, EventRecord, RecordKind};
use crate::item::{self, ChangeCause, Item, ItemContent, ItemStatus};
use crate::sharing::{self, RecordClass, SharingRule, SharingRuleSpec};
use crate::state::{decode, encode, keys, scan_decoded, scan_prefix, StateRead, Write};
use crate::validate::{self, MAX_TEXT_CHARS};
use crate::{DomainError, Failure, StorageFault};

/// At most this many remembered request ids are forgotten by one tick, so a tick
/// stays a small log entry to apply.
pub const MAX_PURGE_PER_TICK: usize = 10_000;

mod case;
mod credit;
mod inspection;
mod licensing;
pub use case::{case_work_due, ARBITER};
pub use credit::{tier_work_due, RETIER_BATCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// In key order, so every replica writes the same bytes in the same order.
    pub writes: Vec<Write>,
    pub events: Vec<Event>,
    /// The JSON of each of `events`, as the store keeps it.
    pub encoded_events: Vec<Vec<u8>>,
    pub response: Response,
}

/// What is remembered of an applied request id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DedupRecord {
    response: Response,
    at_ms: i64,
    /// SHA-256 of the command, so a request id reused for another command is refused
    /// rather than answered with the first command's result. Empty in old records.
    #[serde(default)]
    command_digest: String,
}

/// What `encode(&DedupRecord { response, at_ms, command_digest })` gives, for a
/// successful `response` whose outcome's JSON is `outcome` already.
fn dedup_record_json(response: &Response, outcome: &[u8], at_ms: i64, digest: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(outcome.len() + 160);
    // Writes to a Vec cannot fail; a digest is hex, which needs no escaping.
    let _ = write!(
        out,
        "{{\"response\":{{\"revision\":{},\"result\":{{\"Ok\":",
        response.revision
    );
    out.extend_from_slice(outcome);
    let _ = write!(
        out,
        "}},\"replayed\":{}}},\"at_ms\":{at_ms},\"command_digest\":",
        response.replayed
    );
    let _ = serde_json::to_writer(&mut out, digest);
    out.push(b'}');
    out
}

fn command_digest(command: &Command) -> String {
    let mut hash = sha2::Sha256::default();
    crate::digest::update_json(&mut hash, command);
    crate::digest::hex(hash)
}

/// Who a request id belongs to: the actor, and the capacity it acted in, so an
/// admin's request ids and a department's never collide.
fn dedup_owner(env: &Envelope) -> String {
    match env.principal {
        Principal::Member => env.actor.clone(),
        // '~' never occurs in a department code.
        other => format!("{}~{}", env.actor, other.as_str()),
    }
}

/// Applies `env` as revision `revision` to the state `view`.
pub fn apply(
    view: &dyn StateRead,
    env: &Envelope,
    revision: u64,
) -> Result<Transition, StorageFault> {
    let owner = dedup_owner(env);
    let digest = command_digest(&env.command);
    if !env.request_id.is_empty() {
        let key = keys::dedup(&owner, &env.request_id);
        if let Some(bytes) = view.get(&key)? {
            let mut record: DedupRecord = decode(&key, &bytes)?;
            if !record.command_digest.is_empty() && record.command_digest != digest {
                // Not a retry: answer with a refusal and change nothing.
                return Ok(Transition {
                    writes: vec![],
                    events: vec![],
                    encoded_events: vec![],
                    response: Response {
                        revision,
                        result: Err(DomainError::invalid(
                            "request_id",
                            format!(
                                "{} was already used by {} for a different request (revision {})",
                                env.request_id, env.actor, record.response.revision
                            ),
                        )),
                        replayed: false,
                    },
                });
            }
            record.response.replayed = true;
            return Ok(Transition {
                writes: vec![],
                events: vec![],
                encoded_events: vec![],
                response: record.response,
            });
        }
    }
    let mut tx = Tx {
        base: view,
        env,
        revision,
        writes: BTreeMap::new(),
        events: vec![],
        event_records: vec![],
        outcome_json: None,
    };
    let result = match execute(&mut tx, &env.command) {
        Ok(outcome) => Ok(outcome),
        Err(Failure::Refused(e)) => {
            tx.writes.clear();
            tx.events.clear();
            tx.event_records.clear();
            Err(e)
        }
        Err(Failure::Fault(f)) => return Err(f),
    };
    let target = match (env.command.target(), &result) {
        (Some(t), _) => t.to_string(),
        (None, Ok(Outcome::Item(item))) => item.id.clone(),
        (None, Ok(Outcome::Department(d))) => d.code().to_string(),
        (None, Ok(Outcome::Plan(p))) => p.id.clone(),
        // A hand-off is recorded under its id; its cases are `<hand-off>-<n>`.
        (None, Ok(Outcome::Cases(cases))) => {
            cases.first().map(|c| c.handoff.clone()).unwrap_or_default()
        }
        (None, Ok(Outcome::Licensing { decision, .. })) => decision.id.clone(),
        _ => String::new(),
    };
    let outcome = match &result {
        Ok(_) => "OK".to_string(),
        Err(e) => e.code_name().to_string(),
    };
    let head = audit::head(view)?;
    let mut record = AuditRecord::new(env, revision, target, outcome);
    // A draw is recorded by its digest, so rewriting the stored draw breaks the chain.
    if let Ok(Outcome::Drawn { draw, .. }) = &result {
        record.basis = format!("draw {}", draw.digest);
    }
    let (record, head) = record.seal(&head);
    tx.put(keys::audit(revision), &record);
    tx.put(keys::AUDIT_HEAD.to_string(), &head);
    let response = Response {
        revision,
        result,
        replayed: false,
    };
    if !env.request_id.is_empty() {
        let json = match (&response.result, tx.outcome_json.take()) {
            (Ok(_), Some(outcome)) => {
                dedup_record_json(&response, &outcome, env.timestamp_ms, &digest)
            }
            _ => encode(&DedupRecord {
                response: response.clone(),
                at_ms: env.timestamp_ms,
                command_digest: digest,
            }),
        };
        tx.writes
            .insert(keys::dedup(&owner, &env.request_id), Some(json));
        tx.writes.insert(
            keys::dedup_by_time(env.timestamp_ms, &owner, &env.request_id),
            Some(vec![]),
        );
    }
    let encoded_events = tx
        .events
        .iter()
        .zip(&tx.event_records)
        .map(|(event, record)| crate::event::encode(event, record.as_deref()))
        .collect();
    Ok(Transition {
        writes: tx.writes.into_iter().collect(),
        events: tx.events,
        encoded_events,
        response,
    })
}

/// Whether a tick at `now_ms` would have work to do, so an idle leader proposes none.
pub fn tick_due(
    view: &dyn StateRead,
    now_ms: i64,
    dedup_retention_ms: i64,
) -> Result<bool, StorageFault> {
    let oldest = view.scan(keys::DEDUP_BY_TIME, None, 1)?;
    let dedup = match oldest.first() {
        Some((key, _)) => dedup_time(key).is_some_and(|t| t < now_ms - dedup_retention_ms),
        None => false,
    };
    Ok(dedup || tier_work_due(view, now_ms)? || case_work_due(view, now_ms)?)
}

fn dedup_time(key: &str) -> Option<i64> {
    key.strip_prefix(keys::DEDUP_BY_TIME)?
        .get(..20)?
        .parse()
        .ok()
}

/// The writes of one command, readable before they are committed.
struct Tx<'a> {
    base: &'a dyn StateRead,
    env: &'a Envelope,
    revision: u64,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    events: Vec<Event>,
    /// For each of `events`, its record's JSON when the emitter wrote it already.
    event_records: Vec<Option<Vec<u8>>>,
    /// The JSON of the command's outcome, when the command had it already.
    outcome_json: Option<Vec<u8>>,
}

impl Tx<'_> {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageFault> {
        match self.writes.get(key) {
            Some(pending) => pending.as_deref().map(|b| decode(key, b)).transpose(),
            None => self.base.get(key)?.map(|b| decode(key, &b)).transpose(),
        }
    }

    /// Whether `key` holds a value, without decoding it.
    fn holds(&self, key: &str) -> Result<bool, StorageFault> {
        Ok(match self.writes.get(key) {
            Some(pending) => pending.is_some(),
            None => self.base.get(key)?.is_some(),
        })
    }

    fn put<T: Serialize>(&mut self, key: String, value: &T) {
        self.writes.insert(key, Some(encode(value)));
    }

    fn now(&self) -> i64 {
        self.env.timestamp_ms
    }

    fn emit(
        &mut self,
        kind: RecordKind,
        key: String,
        action: &str,
        departments: Vec<String>,
        record: EventRecord,
    ) {
        self.event_records.push(None);
        self.events.push(Event {
            revision: self.revision,
            kind,
            key,
            action: action.to_string(),
            actor: self.env.actor.clone(),
            timestamp_ms: self.env.timestamp_ms,
            departments,
            record,
        });
    }

    fn item(&self, id: &str) -> Result<Item, Failure> {
        self.get::<Item>(&keys::item(id))?
            .ok_or_else(|| DomainError::not_found("item", id).into())
    }

    fn save_item(&mut self, item: &Item, action: &str, mut departments: Vec<String>) {
        self.put(keys::item(&item.id), item);
        self.put(keys::item_version(&item.id, item.version), item);
        departments.sort();
        departments.dedup();
        self.emit(
            RecordKind::Item,
            item.id.clone(),
            action,
            departments,
            EventRecord::Item(item.clone()),
        );
    }

    /// Every department named in `content` must be registered.
    fn require_registered(&self, content: &ItemContent) -> Result<(), Failure> {
        let duties = std::iter::once(("content.lead".to_string(), &content.lead)).chain(
            content
                .cooperating
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("content.cooperating[{i}]"), d)),
        );
        for (path, duty) in duties {
            if self
                .get::<Department>(&keys::department(&duty.department))?
                .is_none()
            {
                return Err(DomainError::invalid(
                    format!("{path}.department"),
                    format!("unknown department {}", duty.department),
                )
                .into());
            }
        }
        Ok(())
    }
}

fn check_expected(expected: Option<u64>, actual: u64) -> Result<(), DomainError> {
    match expected {
        Some(e) if e != actual => Err(DomainError::RevisionMismatch {
            expected: e,
            actual,
        }),
        _ => Ok(()),
    }
}

fn execute(tx: &mut Tx, command: &Command) -> Result<Outcome, Failure> {
    authority::authorize(tx.base, tx.env)?;
    match command {
        Command::Bootstrap { departments } => bootstrap(tx, departments),
        Command::RegisterDepartment {
            department,
            expected_revision,
        } => register_department(tx, department, *expected_revision),
        Command::Tick { dedup_retention_ms } => tick(tx, *dedup_retention_ms),
        Command::CreateItem { content } => create_item(tx, content),
        Command::UpdateDraft {
            id,
            content,
            expected_revision,
        } => update_draft(tx, id, content, *expected_revision),
        Command::SubmitForReview {
            id,
            expected_revision,
        } => {
            let item = tx.item(id)?;
            check_expected(*expected_revision, item.updated_revision)?;
            item::require_status(&item, "submit", &[ItemStatus::Draft, ItemStatus::Rejected])?;
            transition(tx, item, ItemStatus::InReview, "item.submitted")
        }
        Command::ReviewItem {
            id,
            approve,
            opinion,
            expected_revision,
        } => review_item(tx, id, *approve, opinion, *expected_revision),
        Command::PublishItem {
            id,
            expected_revision,
        } => publish_item(tx, id, *expected_revision),
        Command::ReviseItem {
            id,
            cause,
            change_note,
            content,
            expected_revision,
        } => revise_item(tx, id, *cause, change_note, content, *expected_revision),
        Command::AbolishItem {
            id,
            reason,
            expected_revision,
        } => abolish_item(tx, id, reason, *expected_revision),
        Command::PutSharingRule {
            rule,
            expected_revision,
        } => put_sharing_rule(tx, rule, *expected_revision),
        Command::DeleteSharingRule {
            class,
            provider,
            id,
            expected_revision,
        } => delete_sharing_rule(tx, *class, provider, id, *expected_revision),
        Command::RegisterEntity {
            entity,
            expected_revision,
        } => credit::register_entity(tx, entity, *expected_revision),
        Command::SetDistricts { districts } => credit::set_districts(tx, districts),
        Command::RecordCredit { record } => credit::record_credit(tx, record),
        Command::CorrectCredit {
            id,
            record,
            reason,
            expected_revision,
        } => credit::correct_credit(tx, id, record, reason, *expected_revision),
        Command::PutTierPolicy {
            policy,
            expected_version,
        } => credit::put_tier_policy(tx, policy, *expected_version),
        Command::PutOnList { listing } => credit::put_on_list(tx, listing),
        Command::RemoveFromList {
            id,
            reason,
            expected_revision,
        } => credit::remove_from_list(tx, id, reason, *expected_revision),
        Command::PutInspector { inspector } => inspection::put_inspector(tx, inspector),
        Command::CreatePlan { plan } => inspection::create_plan(tx, plan),
        Command::DrawPlan { plan_id } => inspection::draw_plan(tx, plan_id),
        Command::SubmitResult { task_id, result } => inspection::submit_result(tx, task_id, result),
        Command::RecordInspection { uscc, note } => inspection::record_inspection(tx, uscc, note),
        Command::SetOverInspectionRule { rule } => inspection::set_rule(tx, rule),
        Command::PushCase { case } => case::push_case(tx, case),
        Command::CaseStep { id, action } => case::case_step(tx, id, action),
        Command::SetCaseDeadlines { policy } => case::set_deadlines(tx, policy),
        Command::RecordLicensingDecision { decision } => licensing::record_decision(tx, decision),
    }
}

fn put_sharing_rule(
    tx: &mut Tx,
    spec: &SharingRuleSpec,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    let spec = spec.clone().validated("rule")?;
    for (i, reader) in spec.readers.iter().enumerate() {
        if tx.get::<Department>(&keys::department(reader))?.is_none() {
            return Err(DomainError::invalid(
                format!("rule.readers[{i}]"),
                format!("unknown department {reader}"),
            )
            .into());
        }
    }
    let key = sharing::rule_key(spec.class, &spec.provider, &spec.id);
    let existing = tx.get::<SharingRule>(&key)?;
    check_expected(
        expected,
        existing.as_ref().map_or(0, |r| r.updated_revision),
    )?;
    let rule = SharingRule {
        created_revision: existing
            .as_ref()
            .map_or(tx.revision, |r| r.created_revision),
        updated_revision: tx.revision,
        spec,
    };
    tx.put(key.clone(), &rule);
    let mut departments = rule.spec.readers.clone();
    departments.push(rule.spec.provider.clone());
    departments.sort();
    tx.emit(
        RecordKind::SharingRule,
        key,
        if existing.is_some() {
            "sharing_rule.updated"
        } else {
            "sharing_rule.created"
        },
        departments,
        EventRecord::SharingRule(rule.clone()),
    );
    Ok(Outcome::SharingRule(rule))
}

fn delete_sharing_rule(
    tx: &mut Tx,
    class: RecordClass,
    provider: &str,
    id: &str,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    sharing::validate_rule_id("id", id)?;
    let key = sharing::rule_key(class, provider, id);
    let rule = tx
        .get::<SharingRule>(&key)?
        .ok_or_else(|| DomainError::not_found("sharing rule", format!("{provider}/{id}")))?;
    check_expected(expected, rule.updated_revision)?;
    tx.writes.insert(key.clone(), None);
    let mut departments = rule.spec.readers.clone();
    departments.push(rule.spec.provider.clone());
    departments.sort();
    tx.emit(
        RecordKind::SharingRule,
        key,
        "sharing_rule.deleted",
        departments,
        EventRecord::SharingRule(rule),
    );
    Ok(Outcome::SharingRuleDeleted)
}

fn bootstrap(tx: &mut Tx, specs: &[DepartmentSpec]) -> Result<Outcome, Failure> {
    if tx.get::<bool>(keys::BOOTSTRAPPED)?.is_some() {
        return Err(DomainError::precondition("the cluster is already bootstrapped").into());
    }
    if specs.is_empty() {
        return Err(
            DomainError::invalid("departments", "at least one department is required").into(),
        );
    }
    for (i, spec) in specs.iter().enumerate() {
        spec.validate(&format!("departments[{i}]"))?;
        if tx
            .get::<Department>(&keys::department(&spec.code))?
            .is_some()
        {
            return Err(DomainError::invalid(
                format!("departments[{i}].code"),
                format!("{} is listed twice", spec.code),
            )
            .into());
        }
        let dept = Department {
            spec: spec.clone().normalized(),
            created_revision: tx.revision,
            updated_revision: tx.revision,
        };
        tx.put(keys::department(&spec.code), &dept);
        tx.emit(
            RecordKind::Department,
            spec.code.clone(),
            "department.registered",
            vec![spec.code.clone()],
            EventRecord::Department(dept.clone()),
        );
    }
    let changed: Vec<&DepartmentSpec> = specs.iter().collect();
    let arbiters = arbiters_in_registry(tx, &changed)?;
    tx.put(keys::ARBITERS.to_string(), &arbiters);
    tx.put(keys::BOOTSTRAPPED.to_string(), &true);
    credit::seed(tx);
    Ok(Outcome::Bootstrapped {
        departments: specs.len() as u32,
    })
}

/// The codes of the ARBITER departments, in code order, once `changed` (specs
/// this command registers or updates) replace what the registry holds for them.
fn arbiters_in_registry(tx: &Tx, changed: &[&DepartmentSpec]) -> Result<Vec<String>, StorageFault> {
    // Only these two fields of each department are decoded, not the whole
    // record (a `flatten`ed struct, slow in serde).
    #[derive(serde::Deserialize)]
    struct Roles {
        code: String,
        roles: Vec<crate::department::Role>,
    }
    let arbiter = crate::department::Role::Arbiter;
    let mut codes: Vec<String> = crate::state::scan_decoded::<Roles>(tx.base, keys::DEPARTMENT)?
        .into_iter()
        .filter(|d| !changed.iter().any(|c| c.code == d.code))
        .filter(|d| d.roles.contains(&arbiter))
        .map(|d| d.code)
        .collect();
    codes.extend(
        changed
            .iter()
            .filter(|c| c.roles.contains(&arbiter))
            .map(|c| c.code.clone()),
    );
    codes.sort();
    codes.dedup();
    Ok(codes)
}

fn register_department(
    tx: &mut Tx,
    spec: &DepartmentSpec,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    spec.validate("department")?;
    let key = keys::department(&spec.code);
    let existing = tx.get::<Department>(&key)?;
    check_expected(
        expected,
        existing.as_ref().map_or(0, |d| d.updated_revision),
    )?;
    let dept = Department {
        spec: spec.clone().normalized(),
        created_revision: existing
            .as_ref()
            .map_or(tx.revision, |d| d.created_revision),
        updated_revision: tx.revision,
    };
    let action = if existing.is_some() {
        "department.updated"
    } else {
        "department.registered"
    };
    tx.put(key, &dept);
    let arbiters = arbiters_in_registry(tx, &[spec])?;
    tx.put(keys::ARBITERS.to_string(), &arbiters);
    tx.emit(
        RecordKind::Department,
        spec.code.clone(),
        action,
        vec![spec.code.clone()],
        EventRecord::Department(dept.clone()),
    );
    Ok(Outcome::Department(dept))
}

fn tick(tx: &mut Tx, retention_ms: i64) -> Result<Outcome, Failure> {
    let cutoff = tx.now().saturating_sub(retention_ms.max(0));
    let expired = tx
        .base
        .scan(keys::DEDUP_BY_TIME, None, MAX_PURGE_PER_TICK)?;
    let mut purged = 0;
    for (key, _) in expired {
        match dedup_time(&key) {
            Some(t) if t < cutoff => {}
            _ => break,
        }
        // key = dedupt/<time:20>/<actor>/<request id>
        if let Some(rest) = key.get(keys::DEDUP_BY_TIME.len() + 21..) {
            tx.writes.insert(format!("{}{rest}", keys::DEDUP), None);
        }
        tx.writes.insert(key, None);
        purged += 1;
    }
    let retiered = credit::retier_due(tx)? + credit::continue_retier(tx)?;
    case::process_due(tx)?;
    Ok(Outcome::Ticked {
        purged_request_ids: purged,
        retiered,
    })
}

fn create_item(tx: &mut Tx, content: &ItemContent) -> Result<Outcome, Failure> {
    content.validate("content")?;
    tx.require_registered(content)?;
    let item = Item {
        id: format!("item-{}", tx.revision),
        version: 1,
        status: ItemStatus::Draft,
        content: content.clone(),
        cause: ChangeCause::Enact,
        change_note: String::new(),
        review: None,
        published_version: 0,
        abolish_reason: String::new(),
        created_revision: tx.revision,
        updated_revision: tx.revision,
        created_at_ms: tx.now(),
        updated_at_ms: tx.now(),
    };
    tx.save_item(&item, "item.created", item.departments());
    Ok(Outcome::Item(item))
}

/// The content of a later version keeps the item's lead department.
fn check_same_lead(item: &Item, content: &ItemContent) -> Result<(), DomainError> {
    if content.lead.department != item.lead() {
        return Err(DomainError::invalid(
            "content.lead.department",
            format!(
                "the lead department of {} is {} and cannot change",
                item.id,
                item.lead()
            ),
        ));
    }
    Ok(())
}

fn update_draft(
    tx: &mut Tx,
    id: &str,
    content: &ItemContent,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    content.validate("content")?;
    let mut item = tx.item(id)?;
    check_expected(expected, item.updated_revision)?;
    item::require_status(&item, "editing", &[ItemStatus::Draft, ItemStatus::Rejected])?;
    check_same_lead(&item, content)?;
    tx.require_registered(content)?;
    let mut departments = item.departments();
    departments.extend(content.departments());
    item.content = content.clone();
    item.status = ItemStatus::Draft;
    item.updated_revision = tx.revision;
    item.updated_at_ms = tx.now();
    tx.save_item(&item, "item.updated", departments);
    Ok(Outcome::Item(item))
}

fn transition(
    tx: &mut Tx,
    mut item: Item,
    to: ItemStatus,
    action: &str,
) -> Result<Outcome, Failure> {
    item.status = to;
    item.updated_revision = tx.revision;
    item.updated_at_ms = tx.now();
    let departments = item.departments();
    tx.save_item(&item, action, departments);
    Ok(Outcome::Item(item))
}

fn review_item(
    tx: &mut Tx,
    id: &str,
    approve: bool,
    opinion: &str,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    validate::optional_text("opinion", opinion, MAX_TEXT_CHARS)?;
    if !approve && opinion.trim().is_empty() {
        return Err(DomainError::invalid("opinion", "required when rejecting").into());
    }
    let mut item = tx.item(id)?;
    check_expected(expected, item.updated_revision)?;
    item::require_status(&item, "review", &[ItemStatus::InReview])?;
    item.review = Some(item::Review {
        reviewer: tx.env.actor.clone(),
        approved: approve,
        opinion: opinion.to_string(),
        revision: tx.revision,
        reviewed_at_ms: tx.now(),
    });
    if approve {
        transition(tx, item, ItemStatus::Approved, "item.approved")
    } else {
        transition(tx, item, ItemStatus::Rejected, "item.rejected")
    }
}

fn publish_item(tx: &mut Tx, id: &str, expected: Option<u64>) -> Result<Outcome, Failure> {
    let mut item = tx.item(id)?;
    check_expected(expected, item.updated_revision)?;
    item::require_status(&item, "publishing", &[ItemStatus::Approved])?;
    if item.published_version > 0 {
        let key = keys::item_version(id, item.published_version);
        if let Some(mut old) = tx.get::<Item>(&key)? {
            old.status = ItemStatus::Superseded;
            old.updated_revision = tx.revision;
            old.updated_at_ms = tx.now();
            tx.put(key, &old);
        }
    }
    item.published_version = item.version;
    transition(tx, item, ItemStatus::Published, "item.published")
}

fn revise_item(
    tx: &mut Tx,
    id: &str,
    cause: ChangeCause,
    change_note: &str,
    content: &ItemContent,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    if cause == ChangeCause::Enact {
        return Err(DomainError::invalid(
            "cause",
            "ENACT is the cause of a first version; a revision is AMEND, REPEAL or INTERPRET",
        )
        .into());
    }
    validate::required_text("change_note", change_note, MAX_TEXT_CHARS)?;
    content.validate("content")?;
    let item = tx.item(id)?;
    check_expected(expected, item.updated_revision)?;
    item::require_status(&item, "revision", &[ItemStatus::Published])?;
    check_same_lead(&item, content)?;
    tx.require_registered(content)?;
    let mut departments = item.departments();
    departments.extend(content.departments());
    let next = Item {
        id: item.id.clone(),
        version: item.version + 1,
        status: ItemStatus::Draft,
        content: content.clone(),
        cause,
        change_note: change_note.to_string(),
        review: None,
        published_version: item.published_version,
        abolish_reason: String::new(),
        created_revision: tx.revision,
        updated_revision: tx.revision,
        created_at_ms: tx.now(),
        updated_at_ms: tx.now(),
    };
    tx.save_item(&next, "item.revised", departments);
    Ok(Outcome::Item(next))
}

fn abolish_item(
    tx: &mut Tx,
    id: &str,
    reason: &str,
    expected: Option<u64>,
) -> Result<Outcome, Failure> {
    validate::required_text("reason", reason, MAX_TEXT_CHARS)?;
    let mut item = tx.item(id)?;
    check_expected(expected, item.updated_revision)?;
    item::require_status(&item, "abolition", &[ItemStatus::Published])?;
    item.abolish_reason = reason.to_string();
    item.published_version = 0;
    transition(tx, item, ItemStatus::Abolished, "item.abolished")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::department::default_departments;
    use crate::state::MemState;

    /// The request-id record a push writes from its cases' JSON is the record's
    /// own encoding, byte for byte: a retry decodes it, and replicas that wrote
    /// it either way must hold the same state.
    #[test]
    fn a_push_remembers_its_answer_as_the_record_encodes_it(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut state = MemState::default();
        let env = |revision: u64, actor: &str, command: Command| Envelope {
            actor: actor.into(),
            principal: Principal::Member,
            request_id: format!("r-{revision}"),
            timestamp_ms: 1_700_000_000_000 + revision as i64,
            command,
        };
        let departments = default_departments();
        let boot = env(1, "SAMR", Command::Bootstrap { departments });
        let t = apply(&state, &boot, 1)?;
        state.apply_writes(&t.writes);
        let case = serde_json::from_value(serde_json::json!({
            "kind": "clue", "source": "hotline12345", "source_ref": "t-\"2\"",
            "uscc": "91140311729YDWUJ0U", "title": "加油站夜间违规卸油\n",
            "description": "two receivers", "evidence": [], "to": ["TRANS", "JUST"],
            "priority": "normal",
        }))?;
        let push = env(2, "SAMR", Command::PushCase { case });
        let t = apply(&state, &push, 2)?;
        assert!(matches!(&t.response.result, Ok(Outcome::Cases(c)) if c.len() == 2));
        let stored = t
            .writes
            .iter()
            .find_map(|(k, v)| k.starts_with(keys::DEDUP).then_some(v.clone()))
            .flatten()
            .ok_or("the push remembered no request id")?;
        let record = DedupRecord {
            response: t.response.clone(),
            at_ms: push.timestamp_ms,
            command_digest: command_digest(&push.command),
        };
        assert_eq!(
            String::from_utf8(stored)?,
            String::from_utf8(encode(&record))?
        );
        Ok(())
    }
}
