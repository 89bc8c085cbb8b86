//! The authority matrix: for every command, who may issue it. It is data, checked
//! in one place at apply time from the replicated state (department roles, the
//! item's lead and cooperating departments) and the envelope's principal, so every
//! replica reaches the same verdict. Tests are generated from this table.

use crate::case::Case;
use crate::command::{Command, CommandKind, Envelope, Principal};
use crate::credit::CreditRecord;
use crate::department::{Department, Role};
use crate::inspection::{Plan, Task};
use crate::item::Item;
use crate::query;
use crate::sharing::Scope;
use crate::state::{get_typed, keys, StateRead};
use crate::{DomainError, Failure};

/// One way of being allowed to issue a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Authority {
    /// The cluster's own housekeeping, proposed by the leader.
    System,
    /// An operator with an admin certificate, presented to the leader.
    Admin,
    /// The first write of a new cluster; refused by the command itself once done.
    Anyone,
    /// Any registered department.
    AnyMember,
    /// The department that leads the item (for a new item: the lead it names).
    LeadDepartment,
    /// A department named as cooperating on the item.
    CooperatingDepartment,
    LegalityReviewer,
    CreditAuthority,
    LicensingBureau,
    /// The department whose records a sharing rule shares.
    DataProvider,
    LicensingRegistrar,
    /// The department that made the credit record concerned.
    Recorder,
    /// A department taking part in the plan or joint task concerned.
    Participant,
    /// The department a case is with on the receiving side.
    Receiver,
    /// The department that pushed the case.
    Originator,
    /// A department with the ARBITER role (jurisdiction disputes).
    Arbiter,
    /// A judicial organ (department of kind judicial) the case is with.
    JudicialOrgan,
}

impl Authority {
    pub const ALL: [Authority; 17] = [
        Authority::System,
        Authority::Admin,
        Authority::Anyone,
        Authority::AnyMember,
        Authority::LeadDepartment,
        Authority::CooperatingDepartment,
        Authority::LegalityReviewer,
        Authority::CreditAuthority,
        Authority::LicensingBureau,
        Authority::DataProvider,
        Authority::LicensingRegistrar,
        Authority::Recorder,
        Authority::Participant,
        Authority::Receiver,
        Authority::Originator,
        Authority::Arbiter,
        Authority::JudicialOrgan,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Authority::System => "the cluster itself",
            Authority::Admin => "an administrator",
            Authority::Anyone => "anyone",
            Authority::AnyMember => "any member department",
            Authority::LeadDepartment => "the lead department",
            Authority::CooperatingDepartment => "a cooperating department",
            Authority::LegalityReviewer => "the legality reviewer (LEGALITY_REVIEWER)",
            Authority::CreditAuthority => "the credit authority (CREDIT_AUTHORITY)",
            Authority::LicensingBureau => "the licensing bureau (LICENSING_BUREAU)",
            Authority::DataProvider => "the providing department",
            Authority::LicensingRegistrar => "the licensing registrar (LICENSING_REGISTRAR)",
            Authority::Recorder => "the recording department",
            Authority::Participant => "a department taking part in the task",
            Authority::Receiver => "the department the case is with",
            Authority::Originator => "the department that pushed the case",
            Authority::Arbiter => "the arbiter (ARBITER)",
            Authority::JudicialOrgan => "the judicial organ the case is with",
        }
    }
}

/// The matrix. Exhaustive: a new command does not compile until it has a row.
pub fn authorities(kind: CommandKind) -> &'static [Authority] {
    use Authority::*;
    match kind {
        CommandKind::Bootstrap => &[Anyone],
        CommandKind::RegisterDepartment => &[Admin],
        CommandKind::Tick => &[System],
        CommandKind::CreateItem => &[LeadDepartment],
        CommandKind::UpdateDraft => &[LeadDepartment],
        CommandKind::SubmitForReview => &[LeadDepartment],
        CommandKind::ReviewItem => &[LegalityReviewer],
        CommandKind::PublishItem => &[LeadDepartment],
        CommandKind::ReviseItem => &[LeadDepartment],
        CommandKind::AbolishItem => &[LeadDepartment],
        CommandKind::PutSharingRule => &[DataProvider],
        CommandKind::DeleteSharingRule => &[DataProvider],
        CommandKind::RegisterEntity => &[LicensingRegistrar, LicensingBureau],
        CommandKind::SetDistricts => &[Admin],
        CommandKind::RecordCredit => &[AnyMember],
        CommandKind::CorrectCredit => &[Recorder],
        CommandKind::PutTierPolicy => &[CreditAuthority],
        CommandKind::PutOnList => &[CreditAuthority],
        CommandKind::RemoveFromList => &[CreditAuthority],
        CommandKind::PutInspector => &[AnyMember],
        CommandKind::CreatePlan => &[Participant],
        CommandKind::DrawPlan => &[LeadDepartment],
        CommandKind::SubmitResult => &[Participant],
        CommandKind::RecordInspection => &[AnyMember],
        CommandKind::SetOverInspectionRule => &[Admin],
        CommandKind::PushCase => &[AnyMember],
        CommandKind::AcknowledgeCase
        | CommandKind::AcceptCase
        | CommandKind::RejectCase
        | CommandKind::ResolveCase => &[Receiver],
        CommandKind::RerouteCase
        | CommandKind::EscalateCase
        | CommandKind::ConfirmCaseFeedback
        | CommandKind::ReturnCaseForRework => &[Originator],
        CommandKind::AssignCase => &[Arbiter],
        CommandKind::SetCaseDeadlines => &[Admin],
        // The handler transfers; the judicial organ holding the transfer asks.
        CommandKind::TransferCaseToJudicial => &[Receiver],
        CommandKind::RequestCaseAssistance => &[JudicialOrgan],
        CommandKind::RecordLicensingDecision => &[LicensingBureau],
    }
}

/// What the check needs to know about the caller and the record acted on.
pub struct Subject<'a> {
    pub principal: Principal,
    /// The acting department, if registered.
    pub department: Option<&'a Department>,
    /// The lead and cooperating departments of the record acted on, if any.
    pub lead: Option<&'a str>,
    pub cooperating: &'a [String],
    /// The providing department of the sharing rule acted on, if any.
    pub provider: Option<&'a str>,
    /// The recording department of the credit record acted on, if any.
    pub recorder: Option<&'a str>,
    /// The departments with a part in the joint task acted on.
    pub participants: &'a [String],
    /// The case acted on, if any.
    pub case: Option<&'a Case>,
}

impl Subject<'_> {
    /// Whether this subject holds `authority`.
    pub fn holds(&self, authority: Authority) -> bool {
        let member = self.principal == Principal::Member;
        let dept = self.department.filter(|_| member);
        let role = |r: Role| dept.is_some_and(|d| d.has_role(r));
        match authority {
            Authority::System => self.principal == Principal::System,
            Authority::Admin => self.principal == Principal::Admin,
            Authority::Anyone => true,
            Authority::AnyMember => dept.is_some(),
            Authority::LeadDepartment => {
                dept.is_some_and(|d| self.lead.is_some_and(|l| l == d.code()))
            }
            Authority::CooperatingDepartment => {
                dept.is_some_and(|d| self.cooperating.iter().any(|c| c == d.code()))
            }
            Authority::LegalityReviewer => role(Role::LegalityReviewer),
            Authority::CreditAuthority => role(Role::CreditAuthority),
            Authority::LicensingBureau => role(Role::LicensingBureau),
            Authority::DataProvider => {
                dept.is_some_and(|d| self.provider.is_some_and(|p| p == d.code()))
            }
            Authority::LicensingRegistrar => role(Role::LicensingRegistrar),
            Authority::Recorder => {
                dept.is_some_and(|d| self.recorder.is_some_and(|r| r == d.code()))
            }
            Authority::Participant => {
                dept.is_some_and(|d| self.participants.iter().any(|p| p == d.code()))
            }
            Authority::Receiver => {
                dept.is_some_and(|d| self.case.is_some_and(|c| c.to == d.code()))
            }
            Authority::Originator => {
                dept.is_some_and(|d| self.case.is_some_and(|c| c.from == d.code()))
            }
            Authority::Arbiter => role(Role::Arbiter),
            Authority::JudicialOrgan => dept.is_some_and(|d| {
                d.spec.kind == crate::department::DepartmentKind::Judicial
                    && self.case.is_some_and(|c| c.to == d.code())
            }),
        }
    }
}

/// Refuses `env` unless its actor holds one of the command's authorities. Reads
/// the record acted on: a missing record — or one the actor may not even see under
/// the sharing rules — is NOT_FOUND, so a refusal never reveals a hidden record.
pub fn authorize(view: &dyn StateRead, env: &Envelope) -> Result<(), Failure> {
    let kind = env.command.kind();
    let allowed = authorities(kind);
    let department: Option<Department> = get_typed(view, &keys::department(&env.actor))?;
    let mut target_item: Option<Item> = None;
    let (lead, cooperating): (Option<String>, Vec<String>) = match &env.command {
        Command::CreateItem { content } => (Some(content.lead.department.clone()), vec![]),
        Command::UpdateDraft { id, .. }
        | Command::SubmitForReview { id, .. }
        | Command::ReviewItem { id, .. }
        | Command::PublishItem { id, .. }
        | Command::ReviseItem { id, .. }
        | Command::AbolishItem { id, .. } => {
            let item: Item = get_typed(view, &keys::item(id))?
                .ok_or_else(|| DomainError::not_found("item", id))?;
            let coop = item
                .content
                .cooperating
                .iter()
                .map(|d| d.department.clone())
                .collect();
            let lead = item.lead().to_string();
            target_item = Some(item);
            (Some(lead), coop)
        }
        Command::Bootstrap { .. }
        | Command::RegisterDepartment { .. }
        | Command::Tick { .. }
        | Command::PutSharingRule { .. }
        | Command::DeleteSharingRule { .. }
        | Command::RegisterEntity { .. }
        | Command::SetDistricts { .. }
        | Command::RecordCredit { .. }
        | Command::CorrectCredit { .. }
        | Command::PutTierPolicy { .. }
        | Command::PutOnList { .. }
        | Command::RemoveFromList { .. }
        | Command::PutInspector { .. }
        | Command::CreatePlan { .. }
        | Command::SubmitResult { .. }
        | Command::RecordInspection { .. }
        | Command::SetOverInspectionRule { .. }
        | Command::PushCase { .. }
        | Command::CaseStep { .. }
        | Command::SetCaseDeadlines { .. }
        | Command::RecordLicensingDecision { .. } => (None, vec![]),
        Command::DrawPlan { plan_id } => {
            let plan: Plan = get_typed(view, &keys::plan(plan_id))?
                .ok_or_else(|| DomainError::not_found("plan", plan_id))?;
            (Some(plan.lead), vec![])
        }
    };
    let case: Option<Case> = match &env.command {
        Command::CaseStep { id, .. } => Some(
            get_typed(view, &keys::case(id))?.ok_or_else(|| DomainError::not_found("case", id))?,
        ),
        _ => None,
    };
    let participants: Vec<String> = match &env.command {
        Command::CreatePlan { plan } => plan.participants.clone(),
        Command::SubmitResult { task_id, .. } => {
            let task: Task = get_typed(view, &keys::task(task_id))?
                .ok_or_else(|| DomainError::not_found("task", task_id))?;
            task.parts.into_iter().map(|p| p.department).collect()
        }
        _ => vec![],
    };
    let recorder: Option<String> = match &env.command {
        Command::CorrectCredit { id, .. } => {
            let uscc: String = get_typed(view, &keys::credit_by_id(id))?
                .ok_or_else(|| DomainError::not_found("credit record", id))?;
            let record: CreditRecord = get_typed(view, &keys::credit(&uscc, id))?
                .ok_or_else(|| DomainError::not_found("credit record", id))?;
            Some(record.department)
        }
        _ => None,
    };
    let provider = match &env.command {
        Command::PutSharingRule { rule, .. } => Some(rule.provider.as_str()),
        Command::DeleteSharingRule { provider, .. } => Some(provider.as_str()),
        _ => None,
    };
    let subject = Subject {
        principal: env.principal,
        department: department.as_ref(),
        lead: lead.as_deref(),
        cooperating: &cooperating,
        provider,
        recorder: recorder.as_deref(),
        participants: &participants,
        case: case.as_ref(),
    };
    if allowed.iter().any(|a| subject.holds(*a)) {
        return Ok(());
    }
    if let Some(case) = &case {
        if !query::may_see_case(view, &env.actor, case)? {
            return Err(DomainError::not_found("case", &case.id).into());
        }
    }
    if let Some(item) = &target_item {
        if !query::visible(view, &Scope::load(view, &env.actor)?, item)? {
            return Err(DomainError::not_found("item", &item.id).into());
        }
    }
    let who = allowed
        .iter()
        .map(|a| match (a, lead.as_deref()) {
            (Authority::LeadDepartment, Some(l)) => format!("the lead department ({l})"),
            (Authority::Recorder, _) => format!(
                "the recording department ({})",
                recorder.as_deref().unwrap_or_default()
            ),
            (Authority::DataProvider, _) => {
                format!(
                    "the providing department ({})",
                    provider.unwrap_or_default()
                )
            }
            _ => a.describe().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let target = env
        .command
        .target()
        .map(|t| format!(" of {t}"))
        .unwrap_or_default();
    let registered = if department.is_none() && env.principal == Principal::Member {
        " (not a registered department)"
    } else {
        ""
    };
    Err(DomainError::denied(format!(
        "{}{target} is for {who}; the caller is {} as {}{registered}",
        kind.as_str(),
        env.actor,
        env.principal.as_str(),
    ))
    .into())
}
