use serde::{Deserialize, Serialize};

use crate::case::{Case, CaseAction, CaseSpec, DeadlinePolicy};
use crate::credit::{CreditRecord, CreditRecordSpec, TierPolicy, TierPolicySpec, TierState};
use crate::department::{Department, DepartmentSpec};
use crate::entity::{Entity, EntitySpec, Listing, ListingSpec};
use crate::inspection::{
    Alert, Draw, InspectionEvent, Inspector, InspectorSpec, OverInspectionRule, Plan, PlanSpec,
    ResultSpec, Task,
};
use crate::item::{ChangeCause, Item, ItemContent};
use crate::licensing::{LicensingDecision, LicensingDecisionSpec};
use crate::sharing::{RecordClass, SharingRule, SharingRuleSpec};
use crate::DomainError;

/// One replicated write: who asks, under which idempotency key, at what time (the
/// proposing leader's clock, so every replica uses the same instant), and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Department code of the node that received the request.
    pub actor: String,
    /// In what capacity the actor acts; set by the leader, never by a forwarder.
    #[serde(default)]
    pub principal: Principal,
    /// Idempotency key, unique per actor. Empty for system commands (ticks).
    pub request_id: String,
    pub timestamp_ms: i64,
    pub command: Command,
}

/// The capacity behind an envelope. Only the leader sets anything but `Member`:
/// `Admin` for an admin certificate presented to it directly, `System` for its own
/// housekeeping. A forwarded write is always `Member` of the forwarding department.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    #[default]
    Member,
    Admin,
    System,
}

impl Principal {
    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Member => "member",
            Principal::Admin => "admin",
            Principal::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Seeds the department registry of a new cluster; refused once seeded.
    Bootstrap {
        departments: Vec<DepartmentSpec>,
    },
    RegisterDepartment {
        department: DepartmentSpec,
        expected_revision: Option<u64>,
    },
    /// Time-driven housekeeping, proposed by the leader.
    Tick {
        dedup_retention_ms: i64,
    },
    CreateItem {
        content: ItemContent,
    },
    UpdateDraft {
        id: String,
        content: ItemContent,
        expected_revision: Option<u64>,
    },
    SubmitForReview {
        id: String,
        expected_revision: Option<u64>,
    },
    ReviewItem {
        id: String,
        approve: bool,
        opinion: String,
        expected_revision: Option<u64>,
    },
    PublishItem {
        id: String,
        expected_revision: Option<u64>,
    },
    ReviseItem {
        id: String,
        cause: ChangeCause,
        change_note: String,
        content: ItemContent,
        expected_revision: Option<u64>,
    },
    AbolishItem {
        id: String,
        reason: String,
        expected_revision: Option<u64>,
    },
    /// Creates or replaces a rule of the data-sharing catalogue.
    PutSharingRule {
        rule: SharingRuleSpec,
        expected_revision: Option<u64>,
    },
    DeleteSharingRule {
        class: RecordClass,
        provider: String,
        id: String,
        expected_revision: Option<u64>,
    },
    /// Registers an entity in the directory or updates it.
    RegisterEntity {
        entity: EntitySpec,
        expected_revision: Option<u64>,
    },
    /// Replaces the list of districts entities may be registered in.
    SetDistricts {
        districts: Vec<String>,
    },
    RecordCredit {
        record: CreditRecordSpec,
    },
    /// A correction by the recording department; the previous version stays in history.
    CorrectCredit {
        id: String,
        record: CreditRecordSpec,
        reason: String,
        expected_revision: Option<u64>,
    },
    /// Installs a new version of the tier policy and re-tiers every entity.
    PutTierPolicy {
        policy: TierPolicySpec,
        expected_version: Option<u32>,
    },
    PutOnList {
        listing: ListingSpec,
    },
    RemoveFromList {
        id: String,
        reason: String,
        expected_revision: Option<u64>,
    },
    /// Adds or updates an inspector of the caller's department.
    PutInspector {
        inspector: InspectorSpec,
    },
    CreatePlan {
        plan: PlanSpec,
    },
    /// Draws entities and inspectors for a plan and creates its joint tasks.
    DrawPlan {
        plan_id: String,
    },
    SubmitResult {
        task_id: String,
        result: ResultSpec,
    },
    /// An inspection made outside a plan, counted for the over-inspection alert.
    RecordInspection {
        uscc: String,
        note: String,
    },
    SetOverInspectionRule {
        rule: OverInspectionRule,
    },
    /// Hands a case to one or more departments (one linked case per receiver).
    PushCase {
        case: CaseSpec,
    },
    /// One step of the closed loop on a case.
    CaseStep {
        id: String,
        action: CaseAction,
    },
    SetCaseDeadlines {
        policy: DeadlinePolicy,
    },
    /// A licensing decision, pushed to the supervisors of its items.
    RecordLicensingDecision {
        decision: LicensingDecisionSpec,
    },
}

/// Every kind of command, for the authority matrix and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Bootstrap,
    RegisterDepartment,
    Tick,
    CreateItem,
    UpdateDraft,
    SubmitForReview,
    ReviewItem,
    PublishItem,
    ReviseItem,
    AbolishItem,
    PutSharingRule,
    DeleteSharingRule,
    RegisterEntity,
    SetDistricts,
    RecordCredit,
    CorrectCredit,
    PutTierPolicy,
    PutOnList,
    RemoveFromList,
    PutInspector,
    CreatePlan,
    DrawPlan,
    SubmitResult,
    RecordInspection,
    SetOverInspectionRule,
    PushCase,
    AcknowledgeCase,
    AcceptCase,
    RejectCase,
    RerouteCase,
    EscalateCase,
    AssignCase,
    ResolveCase,
    ConfirmCaseFeedback,
    ReturnCaseForRework,
    SetCaseDeadlines,
    TransferCaseToJudicial,
    RequestCaseAssistance,
    RecordLicensingDecision,
}

impl CommandKind {
    pub const ALL: [CommandKind; 39] = [
        CommandKind::Bootstrap,
        CommandKind::RegisterDepartment,
        CommandKind::Tick,
        CommandKind::CreateItem,
        CommandKind::UpdateDraft,
        CommandKind::SubmitForReview,
        CommandKind::ReviewItem,
        CommandKind::PublishItem,
        CommandKind::ReviseItem,
        CommandKind::AbolishItem,
        CommandKind::PutSharingRule,
        CommandKind::DeleteSharingRule,
        CommandKind::RegisterEntity,
        CommandKind::SetDistricts,
        CommandKind::RecordCredit,
        CommandKind::CorrectCredit,
        CommandKind::PutTierPolicy,
        CommandKind::PutOnList,
        CommandKind::RemoveFromList,
        CommandKind::PutInspector,
        CommandKind::CreatePlan,
        CommandKind::DrawPlan,
        CommandKind::SubmitResult,
        CommandKind::RecordInspection,
        CommandKind::SetOverInspectionRule,
        CommandKind::PushCase,
        CommandKind::AcknowledgeCase,
        CommandKind::AcceptCase,
        CommandKind::RejectCase,
        CommandKind::RerouteCase,
        CommandKind::EscalateCase,
        CommandKind::AssignCase,
        CommandKind::ResolveCase,
        CommandKind::ConfirmCaseFeedback,
        CommandKind::ReturnCaseForRework,
        CommandKind::SetCaseDeadlines,
        CommandKind::TransferCaseToJudicial,
        CommandKind::RequestCaseAssistance,
        CommandKind::RecordLicensingDecision,
    ];

    /// Stable name for logs, metrics and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Bootstrap => "bootstrap",
            CommandKind::RegisterDepartment => "register_department",
            CommandKind::Tick => "tick",
            CommandKind::CreateItem => "create_item",
            CommandKind::UpdateDraft => "update_draft",
            CommandKind::SubmitForReview => "submit_for_review",
            CommandKind::ReviewItem => "review_item",
            CommandKind::PublishItem => "publish_item",
            CommandKind::ReviseItem => "revise_item",
            CommandKind::AbolishItem => "abolish_item",
            CommandKind::PutSharingRule => "put_sharing_rule",
            CommandKind::DeleteSharingRule => "delete_sharing_rule",
            CommandKind::RegisterEntity => "register_entity",
            CommandKind::SetDistricts => "set_districts",
            CommandKind::RecordCredit => "record_credit",
            CommandKind::CorrectCredit => "correct_credit",
            CommandKind::PutTierPolicy => "put_tier_policy",
            CommandKind::PutOnList => "put_on_list",
            CommandKind::RemoveFromList => "remove_from_list",
            CommandKind::PutInspector => "put_inspector",
            CommandKind::CreatePlan => "create_plan",
            CommandKind::DrawPlan => "draw_plan",
            CommandKind::SubmitResult => "submit_result",
            CommandKind::RecordInspection => "record_inspection",
            CommandKind::SetOverInspectionRule => "set_over_inspection_rule",
            CommandKind::PushCase => "push_case",
            CommandKind::AcknowledgeCase => "acknowledge_case",
            CommandKind::AcceptCase => "accept_case",
            CommandKind::RejectCase => "reject_case",
            CommandKind::RerouteCase => "reroute_case",
            CommandKind::EscalateCase => "escalate_case",
            CommandKind::AssignCase => "assign_case",
            CommandKind::ResolveCase => "resolve_case",
            CommandKind::ConfirmCaseFeedback => "confirm_case_feedback",
            CommandKind::ReturnCaseForRework => "return_case_for_rework",
            CommandKind::SetCaseDeadlines => "set_case_deadlines",
            CommandKind::TransferCaseToJudicial => "transfer_case_to_judicial",
            CommandKind::RequestCaseAssistance => "request_case_assistance",
            CommandKind::RecordLicensingDecision => "record_licensing_decision",
        }
    }
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Bootstrap { .. } => CommandKind::Bootstrap,
            Command::RegisterDepartment { .. } => CommandKind::RegisterDepartment,
            Command::Tick { .. } => CommandKind::Tick,
            Command::CreateItem { .. } => CommandKind::CreateItem,
            Command::UpdateDraft { .. } => CommandKind::UpdateDraft,
            Command::SubmitForReview { .. } => CommandKind::SubmitForReview,
            Command::ReviewItem { .. } => CommandKind::ReviewItem,
            Command::PublishItem { .. } => CommandKind::PublishItem,
            Command::ReviseItem { .. } => CommandKind::ReviseItem,
            Command::AbolishItem { .. } => CommandKind::AbolishItem,
            Command::PutSharingRule { .. } => CommandKind::PutSharingRule,
            Command::DeleteSharingRule { .. } => CommandKind::DeleteSharingRule,
            Command::RegisterEntity { .. } => CommandKind::RegisterEntity,
            Command::SetDistricts { .. } => CommandKind::SetDistricts,
            Command::RecordCredit { .. } => CommandKind::RecordCredit,
            Command::CorrectCredit { .. } => CommandKind::CorrectCredit,
            Command::PutTierPolicy { .. } => CommandKind::PutTierPolicy,
            Command::PutOnList { .. } => CommandKind::PutOnList,
            Command::RemoveFromList { .. } => CommandKind::RemoveFromList,
            Command::PutInspector { .. } => CommandKind::PutInspector,
            Command::CreatePlan { .. } => CommandKind::CreatePlan,
            Command::DrawPlan { .. } => CommandKind::DrawPlan,
            Command::SubmitResult { .. } => CommandKind::SubmitResult,
            Command::RecordInspection { .. } => CommandKind::RecordInspection,
            Command::SetOverInspectionRule { .. } => CommandKind::SetOverInspectionRule,
            Command::PushCase { .. } => CommandKind::PushCase,
            Command::CaseStep { action, .. } => match action {
                CaseAction::Acknowledge => CommandKind::AcknowledgeCase,
                CaseAction::Accept => CommandKind::AcceptCase,
                CaseAction::Reject { .. } => CommandKind::RejectCase,
                CaseAction::Reroute { .. } => CommandKind::RerouteCase,
                CaseAction::Escalate { .. } => CommandKind::EscalateCase,
                CaseAction::Assign { .. } => CommandKind::AssignCase,
                CaseAction::Resolve { .. } => CommandKind::ResolveCase,
                CaseAction::ConfirmFeedback { .. } => CommandKind::ConfirmCaseFeedback,
                CaseAction::ReturnForRework { .. } => CommandKind::ReturnCaseForRework,
                CaseAction::TransferToJudicial { .. } => CommandKind::TransferCaseToJudicial,
                CaseAction::RequestAssistance { .. } => CommandKind::RequestCaseAssistance,
            },
            Command::SetCaseDeadlines { .. } => CommandKind::SetCaseDeadlines,
            Command::RecordLicensingDecision { .. } => CommandKind::RecordLicensingDecision,
        }
    }

    /// The existing record the command acts on, if it names one.
    pub fn target(&self) -> Option<&str> {
        match self {
            Command::Bootstrap { .. } | Command::Tick { .. } | Command::CreateItem { .. } => None,
            Command::RegisterDepartment { department, .. } => Some(&department.code),
            Command::UpdateDraft { id, .. }
            | Command::SubmitForReview { id, .. }
            | Command::ReviewItem { id, .. }
            | Command::PublishItem { id, .. }
            | Command::ReviseItem { id, .. }
            | Command::AbolishItem { id, .. } => Some(id),
            Command::PutSharingRule { rule, .. } => Some(&rule.id),
            Command::DeleteSharingRule { id, .. } => Some(id),
            Command::RegisterEntity { entity, .. } => Some(&entity.uscc),
            Command::SetDistricts { .. } | Command::PutTierPolicy { .. } => None,
            Command::RecordCredit { record } => Some(&record.uscc),
            Command::CorrectCredit { id, .. } | Command::RemoveFromList { id, .. } => Some(id),
            Command::PutOnList { listing } => Some(&listing.uscc),
            Command::PutInspector { inspector } => Some(&inspector.id),
            Command::CreatePlan { .. } | Command::SetOverInspectionRule { .. } => None,
            Command::DrawPlan { plan_id } => Some(plan_id),
            Command::SubmitResult { task_id, .. } => Some(task_id),
            Command::RecordInspection { uscc, .. } => Some(uscc),
            Command::PushCase { .. } | Command::SetCaseDeadlines { .. } => None,
            Command::CaseStep { id, .. } => Some(id),
            Command::RecordLicensingDecision { .. } => None,
        }
    }

    /// The basis or reason the caller gave, kept in the audit trail.
    pub fn basis(&self) -> String {
        match self {
            Command::CreateItem { content } | Command::UpdateDraft { content, .. } => {
                content.lead.legal_basis.clone()
            }
            Command::ReviewItem { opinion, .. } => opinion.clone(),
            Command::ReviseItem { change_note, .. } => change_note.clone(),
            Command::AbolishItem { reason, .. } => reason.clone(),
            Command::PutSharingRule { rule, .. } => rule.legal_basis.clone(),
            Command::RecordCredit { record } => record.legal_basis.clone(),
            Command::CorrectCredit { reason, .. } | Command::RemoveFromList { reason, .. } => {
                reason.clone()
            }
            Command::PutOnList { listing } => listing.legal_basis.clone(),
            Command::SubmitResult { result, .. } => result.findings.clone(),
            Command::RecordInspection { note, .. } => note.clone(),
            Command::PushCase { case } => case.title.clone(),
            Command::RecordLicensingDecision { decision } => decision.number.clone(),
            Command::CaseStep { action, .. } => match action {
                CaseAction::Reject { reason }
                | CaseAction::Reroute { reason, .. }
                | CaseAction::Escalate { reason }
                | CaseAction::Assign { reason, .. }
                | CaseAction::ReturnForRework { reason }
                | CaseAction::TransferToJudicial { reason, .. } => reason.clone(),
                CaseAction::RequestAssistance { description, .. } => description.clone(),
                CaseAction::Resolve { resolution } => resolution.outcome.clone(),
                CaseAction::ConfirmFeedback { note } => note.clone(),
                CaseAction::Acknowledge | CaseAction::Accept => String::new(),
            },
            _ => String::new(),
        }
    }
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Bootstrapped {
        departments: u32,
    },
    Department(Department),
    Item(Item),
    SharingRule(SharingRule),
    SharingRuleDeleted,
    /// The entity and its tier after the change.
    Entity {
        entity: Entity,
        tier: TierState,
    },
    Districts(Vec<String>),
    /// A credit record and the entity's tier after it.
    Credit {
        record: CreditRecord,
        tier: TierState,
    },
    TierPolicy {
        policy: TierPolicy,
        /// Entities re-tiered by this command (the rest follow in ticks).
        retiered: u32,
    },
    Listing(Listing),
    Inspector(Inspector),
    Plan(Plan),
    /// The plan after its draw, the draw and the tasks it created.
    Drawn {
        plan: Plan,
        draw: Box<Draw>,
        tasks: Vec<Task>,
    },
    /// The task after the result, and the alert it raised, if any.
    Submitted {
        task: Task,
        alert: Option<Alert>,
        /// Cases a non-compliant result pushed to the entity's licensing bureau.
        #[serde(default)]
        pushed: Vec<Case>,
    },
    Inspected {
        event: InspectionEvent,
        alert: Option<Alert>,
    },
    OverInspectionRule(OverInspectionRule),
    /// The cases a hand-off created, one per receiver.
    Cases(Vec<Case>),
    Case(Case),
    CaseDeadlines(DeadlinePolicy),
    /// A licensing decision and the cases that pushed it to its supervisors.
    Licensing {
        decision: LicensingDecision,
        cases: Vec<Case>,
    },
    Ticked {
        purged_request_ids: u32,
        /// Entities whose tier was re-evaluated (records taking effect or expiring,
        /// or re-tiering under a new policy).
        retiered: u32,
    },
    /// Raft-internal entries (blank, membership) that carry no command.
    Nothing,
}

/// The result of one log entry, returned to the proposer and remembered under the
/// request id so a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The revision that applied the command (for a replay: the original one).
    pub revision: u64,
    pub result: Result<Outcome, DomainError>,
    /// True when this answers a retry of an already-applied request id.
    pub replayed: bool,
}
