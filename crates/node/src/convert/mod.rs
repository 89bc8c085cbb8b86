//! Conversions between wire (prost) and domain types: the only module that knows both.
//! Unknown enum numbers and missing messages become INVALID_ARGUMENT naming the field.

use concord_domain::department::{Department, DepartmentKind, DepartmentSpec, Role};
use concord_domain::event::{Event, EventRecord, RecordKind};
use concord_domain::item::{
    ChangeCause, DepartmentDuty, Item, ItemContent, ItemStatus, Level, Mechanism, MechanismKind,
    Method,
};
use concord_domain::sharing::{
    Confidentiality, Frequency, RecordClass, SharingRule, SharingRuleSpec,
};
use concord_domain::DomainError;
use concord_proto::cluster::v1 as pc;
use concord_proto::item::v1 as pi;
use concord_proto::sharing::v1 as ps;
use concord_proto::watch::v1 as pw;

mod case;
mod credit;
mod inspection;
pub use case::*;
pub use credit::*;
pub use inspection::*;

/// A message field the request must carry.
fn required<'a, T>(field: &str, m: Option<&'a T>) -> Result<&'a T, DomainError> {
    m.ok_or_else(|| DomainError::invalid(field, "is required"))
}

fn unknown(field: &str, n: i32) -> DomainError {
    DomainError::invalid(field, format!("{n} is not a known value"))
}

fn unspecified(field: &str) -> DomainError {
    DomainError::invalid(field, "must be specified")
}

pub fn department_kind(field: &str, n: i32) -> Result<DepartmentKind, DomainError> {
    match pc::DepartmentKind::try_from(n).map_err(|_| unknown(field, n))? {
        pc::DepartmentKind::Unspecified => Err(unspecified(field)),
        pc::DepartmentKind::Administrative => Ok(DepartmentKind::Administrative),
        pc::DepartmentKind::Judicial => Ok(DepartmentKind::Judicial),
        pc::DepartmentKind::Other => Ok(DepartmentKind::Other),
    }
}

fn role(field: &str, n: i32) -> Result<Role, DomainError> {
    use pc::DepartmentRole as R;
    Ok(match R::try_from(n).map_err(|_| unknown(field, n))? {
        R::Unspecified => return Err(unspecified(field)),
        R::LegalityReviewer => Role::LegalityReviewer,
        R::Arbiter => Role::Arbiter,
        R::CreditAuthority => Role::CreditAuthority,
        R::LicensingRegistrar => Role::LicensingRegistrar,
        R::LicensingBureau => Role::LicensingBureau,
        R::PlatformOperator => Role::PlatformOperator,
        R::CriminalIntake => Role::CriminalIntake,
    })
}

fn role_to_wire(r: Role) -> pc::DepartmentRole {
    use pc::DepartmentRole as R;
    match r {
        Role::LegalityReviewer => R::LegalityReviewer,
        Role::Arbiter => R::Arbiter,
        Role::CreditAuthority => R::CreditAuthority,
        Role::LicensingRegistrar => R::LicensingRegistrar,
        Role::LicensingBureau => R::LicensingBureau,
        Role::PlatformOperator => R::PlatformOperator,
        Role::CriminalIntake => R::CriminalIntake,
    }
}

pub fn department_spec(field: &str, d: &pc::Department) -> Result<DepartmentSpec, DomainError> {
    let roles = d
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| role(&format!("{field}.roles[{i}]"), *r))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = DepartmentSpec {
        code: d.code.clone(),
        name: d.name.clone(),
        name_en: d.name_en.clone(),
        kind: department_kind(&format!("{field}.kind"), d.kind)?,
        roles,
    };
    spec.validate(field)?;
    Ok(spec.normalized())
}

pub fn department_to_wire(d: &Department) -> pc::Department {
    pc::Department {
        code: d.spec.code.clone(),
        name: d.spec.name.clone(),
        name_en: d.spec.name_en.clone(),
        kind: match d.spec.kind {
            DepartmentKind::Administrative => pc::DepartmentKind::Administrative,
            DepartmentKind::Judicial => pc::DepartmentKind::Judicial,
            DepartmentKind::Other => pc::DepartmentKind::Other,
        } as i32,
        roles: d
            .spec
            .roles
            .iter()
            .map(|r| role_to_wire(*r) as i32)
            .collect(),
        created_revision: d.created_revision,
        updated_revision: d.updated_revision,
    }
}

pub fn level(field: &str, n: i32) -> Result<Level, DomainError> {
    match pi::SupervisionLevel::try_from(n).map_err(|_| unknown(field, n))? {
        pi::SupervisionLevel::Unspecified => Err(unspecified(field)),
        pi::SupervisionLevel::Province => Ok(Level::Province),
        pi::SupervisionLevel::City => Ok(Level::City),
        pi::SupervisionLevel::County => Ok(Level::County),
    }
}

fn level_to_wire(l: Level) -> pi::SupervisionLevel {
    match l {
        Level::Province => pi::SupervisionLevel::Province,
        Level::City => pi::SupervisionLevel::City,
        Level::County => pi::SupervisionLevel::County,
    }
}

fn method(field: &str, n: i32) -> Result<Method, DomainError> {
    match pi::InspectionMethod::try_from(n).map_err(|_| unknown(field, n))? {
        pi::InspectionMethod::Unspecified => Err(unspecified(field)),
        pi::InspectionMethod::DoubleRandom => Ok(Method::DoubleRandom),
        pi::InspectionMethod::KeySupervision => Ok(Method::KeySupervision),
        pi::InspectionMethod::Credit => Ok(Method::Credit),
        pi::InspectionMethod::OtherMethod => Ok(Method::Other),
    }
}

fn method_to_wire(m: Method) -> pi::InspectionMethod {
    match m {
        Method::DoubleRandom => pi::InspectionMethod::DoubleRandom,
        Method::KeySupervision => pi::InspectionMethod::KeySupervision,
        Method::Credit => pi::InspectionMethod::Credit,
        Method::Other => pi::InspectionMethod::OtherMethod,
    }
}

fn mechanism_kind(field: &str, n: i32) -> Result<MechanismKind, DomainError> {
    use pi::MechanismKind as K;
    Ok(match K::try_from(n).map_err(|_| unknown(field, n))? {
        K::Unspecified => return Err(unspecified(field)),
        K::JointMeeting => MechanismKind::JointMeeting,
        K::JointInspection => MechanismKind::JointInspection,
        K::Consultation => MechanismKind::Consultation,
        K::Notification => MechanismKind::Notification,
        K::DataSharing => MechanismKind::DataSharing,
        K::OtherMechanism => MechanismKind::Other,
    })
}

fn mechanism_kind_to_wire(k: MechanismKind) -> pi::MechanismKind {
    use pi::MechanismKind as K;
    match k {
        MechanismKind::JointMeeting => K::JointMeeting,
        MechanismKind::JointInspection => K::JointInspection,
        MechanismKind::Consultation => K::Consultation,
        MechanismKind::Notification => K::Notification,
        MechanismKind::DataSharing => K::DataSharing,
        MechanismKind::Other => K::OtherMechanism,
    }
}

pub fn change_cause(field: &str, n: i32) -> Result<ChangeCause, DomainError> {
    match pi::ChangeCause::try_from(n).map_err(|_| unknown(field, n))? {
        pi::ChangeCause::Unspecified => Err(unspecified(field)),
        pi::ChangeCause::Enact => Ok(ChangeCause::Enact),
        pi::ChangeCause::Amend => Ok(ChangeCause::Amend),
        pi::ChangeCause::Repeal => Ok(ChangeCause::Repeal),
        pi::ChangeCause::Interpret => Ok(ChangeCause::Interpret),
    }
}

fn cause_to_wire(c: ChangeCause) -> pi::ChangeCause {
    match c {
        ChangeCause::Enact => pi::ChangeCause::Enact,
        ChangeCause::Amend => pi::ChangeCause::Amend,
        ChangeCause::Repeal => pi::ChangeCause::Repeal,
        ChangeCause::Interpret => pi::ChangeCause::Interpret,
    }
}

/// `None` for UNSPECIFIED (a filter that matches any status).
pub fn status_filter(field: &str, n: i32) -> Result<Option<ItemStatus>, DomainError> {
    use pi::ItemStatus as S;
    Ok(Some(
        match S::try_from(n).map_err(|_| unknown(field, n))? {
            S::Unspecified => return Ok(None),
            S::Draft => ItemStatus::Draft,
            S::InReview => ItemStatus::InReview,
            S::Rejected => ItemStatus::Rejected,
            S::Approved => ItemStatus::Approved,
            S::Published => ItemStatus::Published,
            S::Superseded => ItemStatus::Superseded,
            S::Abolished => ItemStatus::Abolished,
        },
    ))
}

fn status_to_wire(s: ItemStatus) -> pi::ItemStatus {
    use pi::ItemStatus as S;
    match s {
        ItemStatus::Draft => S::Draft,
        ItemStatus::InReview => S::InReview,
        ItemStatus::Rejected => S::Rejected,
        ItemStatus::Approved => S::Approved,
        ItemStatus::Published => S::Published,
        ItemStatus::Superseded => S::Superseded,
        ItemStatus::Abolished => S::Abolished,
    }
}

fn duty(field: &str, d: Option<&pi::DepartmentDuty>) -> Result<DepartmentDuty, DomainError> {
    let d = required(field, d)?;
    Ok(DepartmentDuty {
        department: d.department.clone(),
        duty: d.duty.clone(),
        legal_basis: d.legal_basis.clone(),
    })
}

fn duty_to_wire(d: &DepartmentDuty) -> pi::DepartmentDuty {
    pi::DepartmentDuty {
        department: d.department.clone(),
        duty: d.duty.clone(),
        legal_basis: d.legal_basis.clone(),
    }
}

/// Converts and fully validates item content (`field` is its path, e.g. "content").
pub fn item_content(field: &str, c: Option<&pi::ItemContent>) -> Result<ItemContent, DomainError> {
    let c = required(field, c)?;
    let f = |name: &str| format!("{field}.{name}");
    let content = ItemContent {
        name: c.name.clone(),
        field: c.field.clone(),
        lead: duty(&f("lead"), c.lead.as_ref())?,
        cooperating: c
            .cooperating
            .iter()
            .enumerate()
            .map(|(i, d)| duty(&f(&format!("cooperating[{i}]")), Some(d)))
            .collect::<Result<_, _>>()?,
        targets: c.targets.clone(),
        level: level(&f("level"), c.level)?,
        methods: c
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| method(&f(&format!("methods[{i}]")), *m))
            .collect::<Result<_, _>>()?,
        mechanisms: c
            .mechanisms
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(Mechanism {
                    kind: mechanism_kind(&f(&format!("mechanisms[{i}].kind")), m.kind)?,
                    name: m.name.clone(),
                    document_number: m.document_number.clone(),
                })
            })
            .collect::<Result<_, DomainError>>()?,
        public: c.public,
        non_public_reason: c.non_public_reason.clone(),
    };
    content.validate(field)?;
    Ok(content)
}

fn content_to_wire(c: &ItemContent) -> pi::ItemContent {
    pi::ItemContent {
        name: c.name.clone(),
        field: c.field.clone(),
        lead: Some(duty_to_wire(&c.lead)),
        cooperating: c.cooperating.iter().map(duty_to_wire).collect(),
        targets: c.targets.clone(),
        level: level_to_wire(c.level) as i32,
        methods: c
            .methods
            .iter()
            .map(|m| method_to_wire(*m) as i32)
            .collect(),
        mechanisms: c
            .mechanisms
            .iter()
            .map(|m| pi::Mechanism {
                kind: mechanism_kind_to_wire(m.kind) as i32,
                name: m.name.clone(),
                document_number: m.document_number.clone(),
            })
            .collect(),
        public: c.public,
        non_public_reason: c.non_public_reason.clone(),
    }
}

pub fn item_to_wire(i: &Item) -> pi::Item {
    pi::Item {
        id: i.id.clone(),
        version: i.version,
        status: status_to_wire(i.status) as i32,
        content: Some(content_to_wire(&i.content)),
        cause: cause_to_wire(i.cause) as i32,
        change_note: i.change_note.clone(),
        review: i.review.as_ref().map(|r| pi::LegalityReview {
            reviewer: r.reviewer.clone(),
            approved: r.approved,
            opinion: r.opinion.clone(),
            revision: r.revision,
            reviewed_at_ms: r.reviewed_at_ms,
        }),
        published_version: i.published_version,
        abolish_reason: i.abolish_reason.clone(),
        created_revision: i.created_revision,
        updated_revision: i.updated_revision,
        created_at_ms: i.created_at_ms,
        updated_at_ms: i.updated_at_ms,
    }
}

pub fn record_kind(field: &str, n: i32) -> Result<RecordKind, DomainError> {
    match pw::RecordKind::try_from(n).map_err(|_| unknown(field, n))? {
        pw::RecordKind::Unspecified => Err(unspecified(field)),
        pw::RecordKind::Department => Ok(RecordKind::Department),
        pw::RecordKind::Item => Ok(RecordKind::Item),
        pw::RecordKind::SharingRule => Ok(RecordKind::SharingRule),
        pw::RecordKind::Entity => Ok(RecordKind::Entity),
        pw::RecordKind::CreditRecord => Ok(RecordKind::CreditRecord),
        pw::RecordKind::Tier => Ok(RecordKind::Tier),
        pw::RecordKind::TierPolicy => Ok(RecordKind::TierPolicy),
        pw::RecordKind::Listing => Ok(RecordKind::Listing),
        pw::RecordKind::Inspector => Ok(RecordKind::Inspector),
        pw::RecordKind::InspectionPlan => Ok(RecordKind::Plan),
        pw::RecordKind::InspectionTask => Ok(RecordKind::Task),
        pw::RecordKind::Alert => Ok(RecordKind::Alert),
        pw::RecordKind::Case => Ok(RecordKind::Case),
    }
}

pub fn event_to_wire(e: &Event) -> pw::Event {
    pw::Event {
        revision: e.revision,
        kind: match e.kind {
            RecordKind::Department => pw::RecordKind::Department,
            RecordKind::Item => pw::RecordKind::Item,
            RecordKind::SharingRule => pw::RecordKind::SharingRule,
            RecordKind::Entity => pw::RecordKind::Entity,
            RecordKind::CreditRecord => pw::RecordKind::CreditRecord,
            RecordKind::Tier => pw::RecordKind::Tier,
            RecordKind::TierPolicy => pw::RecordKind::TierPolicy,
            RecordKind::Listing => pw::RecordKind::Listing,
            RecordKind::Inspector => pw::RecordKind::Inspector,
            RecordKind::Plan => pw::RecordKind::InspectionPlan,
            RecordKind::Task => pw::RecordKind::InspectionTask,
            RecordKind::Alert => pw::RecordKind::Alert,
            RecordKind::Case => pw::RecordKind::Case,
        } as i32,
        key: e.key.clone(),
        action: e.action.clone(),
        actor: e.actor.clone(),
        timestamp_ms: e.timestamp_ms,
        record: Some(match &e.record {
            EventRecord::Department(d) => pw::event::Record::Department(department_to_wire(d)),
            EventRecord::Item(i) => pw::event::Record::Item(item_to_wire(i)),
            EventRecord::SharingRule(r) => pw::event::Record::SharingRule(sharing_rule_to_wire(r)),
            EventRecord::Entity(en) => pw::event::Record::Entity(entity_to_wire(en, None)),
            EventRecord::Districts(d) => {
                pw::event::Record::Districts(concord_proto::entity::v1::Districts {
                    districts: d.clone(),
                })
            }
            EventRecord::CreditRecord(r) => pw::event::Record::CreditRecord(credit_to_wire(r)),
            EventRecord::Tier(t) => pw::event::Record::Tier(tier_to_wire(t)),
            EventRecord::TierPolicy(p) => pw::event::Record::TierPolicy(policy_to_wire(p)),
            EventRecord::Listing(l) => pw::event::Record::Listing(listing_to_wire(l)),
            EventRecord::Inspector(i) => pw::event::Record::Inspector(inspector_to_wire(i)),
            EventRecord::Plan(p) => pw::event::Record::Plan(plan_to_wire(p)),
            EventRecord::Task(t) => pw::event::Record::Task(task_to_wire(t)),
            EventRecord::Alert(a) => pw::event::Record::Alert(alert_to_wire(a)),
            EventRecord::Case(c) => pw::event::Record::Case(case_to_wire(c)),
        }),
    }
}

pub fn record_class(field: &str, n: i32) -> Result<RecordClass, DomainError> {
    match ps::RecordClass::try_from(n).map_err(|_| unknown(field, n))? {
        ps::RecordClass::Unspecified => Err(unspecified(field)),
        ps::RecordClass::Item => Ok(RecordClass::Item),
        ps::RecordClass::InspectionResult => Ok(RecordClass::InspectionResult),
    }
}

fn confidentiality(field: &str, n: i32) -> Result<Confidentiality, DomainError> {
    match ps::Confidentiality::try_from(n).map_err(|_| unknown(field, n))? {
        ps::Confidentiality::Unspecified => Err(unspecified(field)),
        ps::Confidentiality::Internal => Ok(Confidentiality::Internal),
        ps::Confidentiality::Sensitive => Ok(Confidentiality::Sensitive),
        ps::Confidentiality::Restricted => Ok(Confidentiality::Restricted),
    }
}

fn frequency(field: &str, n: i32) -> Result<Frequency, DomainError> {
    match ps::Frequency::try_from(n).map_err(|_| unknown(field, n))? {
        ps::Frequency::Unspecified => Err(unspecified(field)),
        ps::Frequency::OnChange => Ok(Frequency::OnChange),
        ps::Frequency::Daily => Ok(Frequency::Daily),
        ps::Frequency::Weekly => Ok(Frequency::Weekly),
        ps::Frequency::Monthly => Ok(Frequency::Monthly),
        ps::Frequency::OnRequest => Ok(Frequency::OnRequest),
    }
}

/// A rule as sent by `caller_department`, which is its provider.
pub fn sharing_rule_spec(
    field: &str,
    r: Option<&ps::SharingRule>,
    caller_department: &str,
) -> Result<SharingRuleSpec, DomainError> {
    let r = required(field, r)?;
    let provider = if r.provider.is_empty() {
        caller_department.to_string()
    } else {
        r.provider.clone()
    };
    SharingRuleSpec {
        id: r.id.clone(),
        class: record_class(&format!("{field}.class"), r.class)?,
        provider,
        readers: r.readers.clone(),
        purpose: r.purpose.clone(),
        frequency: frequency(&format!("{field}.frequency"), r.frequency)?,
        confidentiality: confidentiality(&format!("{field}.confidentiality"), r.confidentiality)?,
        legal_basis: r.legal_basis.clone(),
    }
    .validated(field)
}

pub fn sharing_rule_to_wire(r: &SharingRule) -> ps::SharingRule {
    let s = &r.spec;
    ps::SharingRule {
        id: s.id.clone(),
        class: match s.class {
            RecordClass::Item => ps::RecordClass::Item,
            RecordClass::InspectionResult => ps::RecordClass::InspectionResult,
        } as i32,
        provider: s.provider.clone(),
        readers: s.readers.clone(),
        purpose: s.purpose.clone(),
        frequency: match s.frequency {
            Frequency::OnChange => ps::Frequency::OnChange,
            Frequency::Daily => ps::Frequency::Daily,
            Frequency::Weekly => ps::Frequency::Weekly,
            Frequency::Monthly => ps::Frequency::Monthly,
            Frequency::OnRequest => ps::Frequency::OnRequest,
        } as i32,
        confidentiality: match s.confidentiality {
            Confidentiality::Internal => ps::Confidentiality::Internal,
            Confidentiality::Sensitive => ps::Confidentiality::Sensitive,
            Confidentiality::Restricted => ps::Confidentiality::Restricted,
        } as i32,
        legal_basis: s.legal_basis.clone(),
        created_revision: r.created_revision,
        updated_revision: r.updated_revision,
    }
}
