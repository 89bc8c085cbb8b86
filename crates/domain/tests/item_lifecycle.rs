//! The item life cycle through `apply`, on an in-memory state: every legal step, every
//! illegal one (generated from the status × step table), every wrong department, the
//! whole authority matrix (generated from the matrix), and the audit chain.

use concord_domain::audit;
use concord_domain::authority::{authorities, Authority};
use concord_domain::credit::{CreditKind, Severity, TierPolicySpec};
use concord_domain::department::{default_departments, DepartmentKind, DepartmentSpec};
use concord_domain::entity::{ListKind, ListingSpec};
use concord_domain::item::{ChangeCause, DepartmentDuty, ItemContent, ItemStatus, Method};
use concord_domain::sharing::{Confidentiality, Frequency, RecordClass, Scope, SharingRuleSpec};
use concord_domain::{
    query, Command, CommandKind, DomainError, MemState, Outcome, Principal, StateRead,
};

mod common;
use common::*;

fn is_precondition(e: &DomainError) -> bool {
    matches!(e, DomainError::FailedPrecondition { .. })
}

#[test]
fn full_life_cycle_with_revision_and_supersession() {
    let mut w = World::new();
    let item = w.ok_item("SAMR", Command::CreateItem { content: content() });
    assert_eq!((item.version, item.status), (1, ItemStatus::Draft));
    assert_eq!(item.created_revision, w.revision);
    let id = item.id.clone();
    w.ok_item(
        "SAMR",
        Command::SubmitForReview {
            id: id.clone(),
            expected_revision: Some(item.updated_revision),
        },
    );
    let rejected = w.ok_item(
        "JUST",
        Command::ReviewItem {
            id: id.clone(),
            approve: false,
            opinion: "依据不足".into(),
            expected_revision: None,
        },
    );
    assert_eq!(rejected.status, ItemStatus::Rejected);
    assert_eq!(
        rejected.review.as_ref().map(|r| r.opinion.as_str()),
        Some("依据不足")
    );
    let mut c = content();
    c.lead.legal_basis = "《产品质量法》第十五条".into();
    w.ok_item(
        "SAMR",
        Command::UpdateDraft {
            id: id.clone(),
            content: c.clone(),
            expected_revision: None,
        },
    );
    w.ok_item(
        "SAMR",
        Command::SubmitForReview {
            id: id.clone(),
            expected_revision: None,
        },
    );
    w.ok_item(
        "JUST",
        Command::ReviewItem {
            id: id.clone(),
            approve: true,
            opinion: String::new(),
            expected_revision: None,
        },
    );
    let v1 = w.ok_item(
        "SAMR",
        Command::PublishItem {
            id: id.clone(),
            expected_revision: None,
        },
    );
    assert_eq!(
        (v1.status, v1.published_version),
        (ItemStatus::Published, 1)
    );

    let v2 = w.ok_item(
        "SAMR",
        Command::ReviseItem {
            id: id.clone(),
            cause: ChangeCause::Amend,
            change_note: "法规修订".into(),
            content: c,
            expected_revision: None,
        },
    );
    assert_eq!(
        (v2.version, v2.status, v2.published_version),
        (2, ItemStatus::Draft, 1)
    );
    w.ok_item(
        "SAMR",
        Command::SubmitForReview {
            id: id.clone(),
            expected_revision: None,
        },
    );
    w.ok_item(
        "JUST",
        Command::ReviewItem {
            id: id.clone(),
            approve: true,
            opinion: "同意".into(),
            expected_revision: None,
        },
    );
    let v2 = w.ok_item(
        "SAMR",
        Command::PublishItem {
            id: id.clone(),
            expected_revision: None,
        },
    );
    assert_eq!(
        (v2.status, v2.published_version),
        (ItemStatus::Published, 2)
    );
    let samr = Scope::load(&w.state, "SAMR").unwrap();
    let history = query::item_history(&w.state, &samr, &id).unwrap();
    let statuses: Vec<_> = history.iter().map(|i| (i.version, i.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, ItemStatus::Superseded), (2, ItemStatus::Published)]
    );

    let gone = w.ok_item(
        "SAMR",
        Command::AbolishItem {
            id: id.clone(),
            reason: "职能调整".into(),
            expected_revision: None,
        },
    );
    assert_eq!(
        (gone.status, gone.published_version),
        (ItemStatus::Abolished, 0)
    );
}

#[test]
fn every_illegal_transition_is_a_failed_precondition() {
    use ItemStatus::*;
    // step name, the statuses it is legal from, who takes it, the command.
    type Make = fn(&str) -> (&'static str, Command);
    let steps: Vec<(&str, Vec<ItemStatus>, Make)> = vec![
        ("update", vec![Draft, Rejected], |id| {
            (
                "SAMR",
                Command::UpdateDraft {
                    id: id.into(),
                    content: content(),
                    expected_revision: None,
                },
            )
        }),
        ("submit", vec![Draft, Rejected], |id| {
            (
                "SAMR",
                Command::SubmitForReview {
                    id: id.into(),
                    expected_revision: None,
                },
            )
        }),
        ("review", vec![InReview], |id| {
            (
                "JUST",
                Command::ReviewItem {
                    id: id.into(),
                    approve: true,
                    opinion: String::new(),
                    expected_revision: None,
                },
            )
        }),
        ("publish", vec![Approved], |id| {
            (
                "SAMR",
                Command::PublishItem {
                    id: id.into(),
                    expected_revision: None,
                },
            )
        }),
        ("revise", vec![Published], |id| {
            (
                "SAMR",
                Command::ReviseItem {
                    id: id.into(),
                    cause: ChangeCause::Interpret,
                    change_note: "释义".into(),
                    content: content(),
                    expected_revision: None,
                },
            )
        }),
        ("abolish", vec![Published], |id| {
            (
                "SAMR",
                Command::AbolishItem {
                    id: id.into(),
                    reason: "废止".into(),
                    expected_revision: None,
                },
            )
        }),
    ];
    let mut refused = 0;
    for from in [Draft, InReview, Rejected, Approved, Published, Abolished] {
        for (name, legal, make) in &steps {
            let mut w = World::new();
            let id = item_in(&mut w, from);
            let (actor, cmd) = make(&id);
            if legal.contains(&from) {
                w.ok_item(actor, cmd);
            } else {
                let e = w.err(actor, cmd);
                assert!(is_precondition(&e), "{name} from {from:?}: {e:?}");
                refused += 1;
            }
        }
    }
    // 6 statuses × 6 steps, 8 of them legal.
    assert_eq!(refused, 6 * 6 - 8, "every status × step pair is covered");
}

#[test]
fn wrong_department_is_permission_denied_and_changes_nothing() {
    let mut w = World::new();
    // Drafting an item led by someone else.
    let e = w.err("TRANS", Command::CreateItem { content: content() });
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
    let id = item_in(&mut w, ItemStatus::Draft);
    for (actor, cmd) in [
        (
            "TRANS",
            Command::UpdateDraft {
                id: id.clone(),
                content: content(),
                expected_revision: None,
            },
        ),
        (
            "TRANS",
            Command::SubmitForReview {
                id: id.clone(),
                expected_revision: None,
            },
        ),
        (
            "JUST",
            Command::SubmitForReview {
                id: id.clone(),
                expected_revision: None,
            },
        ),
    ] {
        assert!(matches!(
            w.err(actor, cmd),
            DomainError::PermissionDenied { .. }
        ));
    }
    let id = item_in(&mut w, ItemStatus::InReview);
    // Only a legality reviewer reviews, the lead included.
    for actor in ["SAMR", "TRANS"] {
        let e = w.err(
            actor,
            Command::ReviewItem {
                id: id.clone(),
                approve: true,
                opinion: String::new(),
                expected_revision: None,
            },
        );
        assert!(
            matches!(e, DomainError::PermissionDenied { .. }),
            "{actor}: {e:?}"
        );
    }
    let id = item_in(&mut w, ItemStatus::Approved);
    assert!(matches!(
        w.err(
            "JUST",
            Command::PublishItem {
                id: id.clone(),
                expected_revision: None
            }
        ),
        DomainError::PermissionDenied { .. }
    ));
    let id = item_in(&mut w, ItemStatus::Published);
    assert!(matches!(
        w.err(
            "TRANS",
            Command::AbolishItem {
                id: id.clone(),
                reason: "x".into(),
                expected_revision: None
            }
        ),
        DomainError::PermissionDenied { .. }
    ));
    // An unregistered department can do nothing.
    let e = w.err(
        "NOBODY",
        Command::AbolishItem {
            id: id.clone(),
            reason: "x".into(),
            expected_revision: None,
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
    // A department that may not see a draft learns nothing about it.
    let draft = item_in(&mut w, ItemStatus::Draft);
    let e = w.err(
        "ECO",
        Command::SubmitForReview {
            id: draft,
            expected_revision: None,
        },
    );
    assert!(matches!(e, DomainError::NotFound { .. }), "{e:?}");
}

#[test]
fn a_repeated_request_id_returns_the_first_result_and_applies_once() {
    let mut w = World::new();
    let first = w.run(
        "SAMR",
        "create-1",
        Command::CreateItem { content: content() },
    );
    let again = w.run(
        "SAMR",
        "create-1",
        Command::CreateItem { content: content() },
    );
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.revision, again.revision);
    assert_eq!(first.result, again.result);
    let samr = Scope::load(&w.state, "SAMR").unwrap();
    let page = query::items(&w.state, &samr, &Default::default(), 100, "").unwrap();
    assert_eq!(page.items.len(), 1, "applied once");
    // The same id from another department is another request.
    let other = w.run(
        "TRANS",
        "create-1",
        Command::CreateItem { content: content() },
    );
    assert!(!other.replayed);
}

#[test]
fn expected_revision_mismatch_is_refused() {
    let mut w = World::new();
    let item = w.ok_item("SAMR", Command::CreateItem { content: content() });
    let e = w.err(
        "SAMR",
        Command::SubmitForReview {
            id: item.id.clone(),
            expected_revision: Some(item.updated_revision - 1),
        },
    );
    assert_eq!(
        e,
        DomainError::RevisionMismatch {
            expected: item.updated_revision - 1,
            actual: item.updated_revision
        }
    );
}

#[test]
fn unknown_departments_are_named_by_field() {
    let mut w = World::new();
    let mut c = content();
    c.cooperating[0].department = "NOSUCH".into();
    match w.err("SAMR", Command::CreateItem { content: c }) {
        DomainError::InvalidArgument { field, .. } => {
            assert_eq!(field, "content.cooperating[0].department")
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn content_validation_names_each_field() {
    let cases: Vec<(Box<dyn Fn(&mut ItemContent)>, &str)> = vec![
        (Box::new(|c| c.name = " ".into()), "content.name"),
        (
            Box::new(|c| c.field = "Refined Oil".into()),
            "content.field",
        ),
        (
            Box::new(|c| c.lead.duty = String::new()),
            "content.lead.duty",
        ),
        (
            Box::new(|c| c.cooperating[0].department = "SAMR".into()),
            "content.cooperating[0].department",
        ),
        (
            Box::new(|c| c.cooperating.push(c.cooperating[0].clone())),
            "content.cooperating[1].department",
        ),
        (Box::new(|c| c.methods.clear()), "content.methods"),
        (
            Box::new(|c| c.methods = vec![Method::Credit, Method::Credit]),
            "content.methods",
        ),
        (Box::new(|c| c.public = false), "content.non_public_reason"),
        (
            Box::new(|c| c.non_public_reason = "secret".into()),
            "content.non_public_reason",
        ),
        (
            Box::new(|c| c.targets = "x".repeat(4001)),
            "content.targets",
        ),
        (
            Box::new(|c| {
                c.cooperating = (0..33)
                    .map(|i| DepartmentDuty {
                        department: format!("D{i}"),
                        duty: "d".into(),
                        legal_basis: "b".into(),
                    })
                    .collect()
            }),
            "content.cooperating",
        ),
    ];
    for (mutate, field) in cases {
        let mut c = content();
        mutate(&mut c);
        match c.validate("content") {
            Err(DomainError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn replicas_applying_the_same_log_reach_the_same_state() {
    let log: Vec<(&str, Command)> = vec![
        ("SAMR", Command::CreateItem { content: content() }),
        (
            "SAMR",
            Command::SubmitForReview {
                id: "item-2".into(),
                expected_revision: None,
            },
        ),
        (
            "TRANS",
            Command::PublishItem {
                id: "item-2".into(),
                expected_revision: None,
            },
        ),
        (
            "JUST",
            Command::ReviewItem {
                id: "item-2".into(),
                approve: true,
                opinion: String::new(),
                expected_revision: None,
            },
        ),
        (
            "SAMR",
            Command::Tick {
                dedup_retention_ms: 0,
            },
        ),
    ];
    let replay = || {
        let mut w = World::new();
        for (i, (actor, cmd)) in log.iter().enumerate() {
            let rid = if matches!(cmd, Command::Tick { .. }) {
                String::new()
            } else {
                format!("req-{i}")
            };
            w.run(actor, &rid, cmd.clone());
        }
        w.state
    };
    let (a, b) = (replay(), replay());
    assert_eq!(a, b);
    // The tick forgot every request id older than zero milliseconds.
    assert!(a.scan("dedup/", None, 10).unwrap().is_empty());
}

#[test]
fn tick_forgets_request_ids_only_after_retention() {
    let mut w = World::new();
    w.run(
        "SAMR",
        "keep-me",
        Command::CreateItem { content: content() },
    );
    assert!(!concord_domain::tick_due(&w.state, w.now, 60_000).unwrap());
    w.run(
        "SAMR",
        "",
        Command::Tick {
            dedup_retention_ms: 60_000,
        },
    );
    assert!(w.state.get("dedup/SAMR/keep-me").unwrap().is_some());
    w.now += 120_000;
    assert!(concord_domain::tick_due(&w.state, w.now, 60_000).unwrap());
    let r = w.run(
        "SAMR",
        "",
        Command::Tick {
            dedup_retention_ms: 60_000,
        },
    );
    assert!(matches!(r.result, Ok(Outcome::Ticked { purged_request_ids: n, .. }) if n >= 1));
    assert!(w.state.get("dedup/SAMR/keep-me").unwrap().is_none());
}

/// A caller as the matrix test sees it, with the authorities it holds *towards the
/// fixture records* (items led by SAMR with TRANS cooperating), declared here from
/// the sample departments' roles rather than computed by the code under test.
struct Profile {
    name: &'static str,
    principal: Principal,
    actor: &'static str,
    holds: &'static [Authority],
}

const PROFILES: &[Profile] = {
    use Authority::*;
    &[
        Profile {
            name: "system",
            principal: Principal::System,
            actor: "SAMR",
            holds: &[System, Anyone],
        },
        Profile {
            name: "admin",
            principal: Principal::Admin,
            actor: "BIGDATA",
            holds: &[Admin, Anyone],
        },
        Profile {
            name: "lead department and data provider",
            principal: Principal::Member,
            actor: "SAMR",
            holds: &[
                Anyone,
                AnyMember,
                LeadDepartment,
                DataProvider,
                LicensingRegistrar,
                Recorder,
                Participant,
                Originator,
            ],
        },
        Profile {
            name: "cooperating department",
            principal: Principal::Member,
            actor: "TRANS",
            holds: &[
                Anyone,
                AnyMember,
                CooperatingDepartment,
                Participant,
                Receiver,
            ],
        },
        Profile {
            name: "legality reviewer",
            principal: Principal::Member,
            actor: "JUST",
            holds: &[Anyone, AnyMember, LegalityReviewer, Arbiter],
        },
        Profile {
            name: "credit authority",
            principal: Principal::Member,
            actor: "NDRC",
            holds: &[Anyone, AnyMember, CreditAuthority],
        },
        Profile {
            name: "licensing bureau",
            principal: Principal::Member,
            actor: "APPROVAL",
            holds: &[Anyone, AnyMember, LicensingBureau],
        },
        Profile {
            name: "judicial organ",
            principal: Principal::Member,
            actor: "PSB",
            holds: &[Anyone, AnyMember, JudicialOrgan],
        },
        Profile {
            name: "unrelated member",
            principal: Principal::Member,
            actor: "ECO",
            holds: &[Anyone, AnyMember],
        },
        Profile {
            name: "unregistered department",
            principal: Principal::Member,
            actor: "NOBODY",
            holds: &[Anyone],
        },
    ]
};

fn rule(readers: &[&str]) -> SharingRuleSpec {
    SharingRuleSpec {
        id: "oil-drafts".into(),
        class: RecordClass::Item,
        provider: "SAMR".into(),
        readers: readers.iter().map(|r| r.to_string()).collect(),
        purpose: "联合检查前的准备".into(),
        frequency: Frequency::OnChange,
        confidentiality: Confidentiality::Internal,
        legal_basis: "《市场监管数据共享办法》".into(),
    }
}

fn listing(uscc: &str) -> ListingSpec {
    ListingSpec {
        list: ListKind::Punishment,
        uscc: uscc.into(),
        reason: "严重违法失信".into(),
        legal_basis: "《失信联合惩戒备忘录》".into(),
        until_ms: None,
    }
}

/// A world in which `kind`, issued by an authorised caller, succeeds; and that command.
fn fixture(kind: CommandKind) -> (World, Command) {
    if kind == CommandKind::Bootstrap {
        let w = World {
            state: MemState::default(),
            revision: 0,
            now: 1_700_000_000_000,
        };
        let cmd = Command::Bootstrap {
            departments: default_departments(),
        };
        return (w, cmd);
    }
    let mut w = World::new();
    let status = match kind {
        CommandKind::UpdateDraft | CommandKind::SubmitForReview => Some(ItemStatus::Draft),
        CommandKind::ReviewItem => Some(ItemStatus::InReview),
        CommandKind::PublishItem => Some(ItemStatus::Approved),
        CommandKind::ReviseItem | CommandKind::AbolishItem => Some(ItemStatus::Published),
        _ => None,
    };
    let id = status.map(|s| item_in(&mut w, s)).unwrap_or_default();
    let cmd = match kind {
        CommandKind::Bootstrap => unreachable!(),
        CommandKind::RegisterDepartment => Command::RegisterDepartment {
            department: DepartmentSpec {
                code: "TAX".into(),
                name: "市税务局".into(),
                name_en: "Tax bureau".into(),
                kind: DepartmentKind::Administrative,
                roles: vec![],
            },
            expected_revision: None,
        },
        CommandKind::Tick => Command::Tick {
            dedup_retention_ms: 0,
        },
        CommandKind::CreateItem => Command::CreateItem { content: content() },
        CommandKind::UpdateDraft => Command::UpdateDraft {
            id,
            content: content(),
            expected_revision: None,
        },
        CommandKind::SubmitForReview => Command::SubmitForReview {
            id,
            expected_revision: None,
        },
        CommandKind::ReviewItem => Command::ReviewItem {
            id,
            approve: true,
            opinion: "合法".into(),
            expected_revision: None,
        },
        CommandKind::PublishItem => Command::PublishItem {
            id,
            expected_revision: None,
        },
        CommandKind::ReviseItem => Command::ReviseItem {
            id,
            cause: ChangeCause::Amend,
            change_note: "修订".into(),
            content: content(),
            expected_revision: None,
        },
        CommandKind::AbolishItem => Command::AbolishItem {
            id,
            reason: "废止".into(),
            expected_revision: None,
        },
        CommandKind::PutSharingRule => Command::PutSharingRule {
            rule: rule(&["ECO"]),
            expected_revision: None,
        },
        CommandKind::RegisterEntity => Command::RegisterEntity {
            entity: entity_spec(0),
            expected_revision: None,
        },
        CommandKind::SetDistricts => Command::SetDistricts {
            districts: vec!["城区".into(), "矿区".into()],
        },
        CommandKind::RecordCredit => {
            let uscc = register(&mut w, 0);
            Command::RecordCredit {
                record: credit(&w, &uscc, CreditKind::Violation, Severity::General, None),
            }
        }
        CommandKind::CorrectCredit => {
            let uscc = register(&mut w, 0);
            let record = credit(&w, &uscc, CreditKind::Violation, Severity::General, None);
            let r = w.run(
                "SAMR",
                "cr-1",
                Command::RecordCredit {
                    record: record.clone(),
                },
            );
            let id = match r.result {
                Ok(Outcome::Credit { record, .. }) => record.id,
                other => panic!("{other:?}"),
            };
            Command::CorrectCredit {
                id,
                record: credit(&w, &uscc, CreditKind::Violation, Severity::Minor, None),
                reason: "情节较轻".into(),
                expected_revision: None,
            }
        }
        CommandKind::PutTierPolicy => {
            let mut policy = TierPolicySpec::default_policy();
            policy.base_score = 75;
            Command::PutTierPolicy {
                policy,
                expected_version: None,
            }
        }
        CommandKind::PutOnList => {
            let uscc = register(&mut w, 0);
            Command::PutOnList {
                listing: listing(&uscc),
            }
        }
        CommandKind::RemoveFromList => {
            let uscc = register(&mut w, 0);
            let r = w.run(
                "NDRC",
                "list-1",
                Command::PutOnList {
                    listing: listing(&uscc),
                },
            );
            let id = match r.result {
                Ok(Outcome::Listing(l)) => l.id,
                other => panic!("{other:?}"),
            };
            Command::RemoveFromList {
                id,
                reason: "信用修复".into(),
                expected_revision: None,
            }
        }
        CommandKind::PutInspector => Command::PutInspector {
            inspector: inspector("i9"),
        },
        CommandKind::CreatePlan => {
            let item = item_in(&mut w, ItemStatus::Published);
            Command::CreatePlan {
                plan: plan_spec(&item),
            }
        }
        CommandKind::DrawPlan => {
            let plan = planned(&mut w);
            Command::DrawPlan { plan_id: plan }
        }
        CommandKind::SubmitResult => {
            let plan = planned(&mut w);
            let r = w.run("SAMR", "draw-1", Command::DrawPlan { plan_id: plan });
            let task = match r.result {
                Ok(Outcome::Drawn { tasks, .. }) => tasks[0].id.clone(),
                other => panic!("{other:?}"),
            };
            Command::SubmitResult {
                task_id: task,
                result: result_spec(),
            }
        }
        CommandKind::RecordInspection => {
            let uscc = register(&mut w, 0);
            Command::RecordInspection {
                uscc,
                note: "日常检查".into(),
            }
        }
        CommandKind::SetOverInspectionRule => Command::SetOverInspectionRule {
            rule: Default::default(),
        },
        CommandKind::PushCase => Command::PushCase {
            case: case_spec(&["EMER"]),
        },
        CommandKind::SetCaseDeadlines => Command::SetCaseDeadlines {
            policy: Default::default(),
        },
        CommandKind::TransferCaseToJudicial => Command::CaseStep {
            id: case_in(&mut w, concord_domain::case::CaseStatus::InProgress),
            action: concord_domain::case::CaseAction::TransferToJudicial {
                to: "PSB".into(),
                documents: transfer_documents(),
                reason: "涉嫌犯罪".into(),
            },
        },
        CommandKind::RequestCaseAssistance => {
            let id = case_in(&mut w, concord_domain::case::CaseStatus::InProgress);
            let r = w.run(
                "TRANS",
                "transfer-fixture",
                Command::CaseStep {
                    id,
                    action: concord_domain::case::CaseAction::TransferToJudicial {
                        to: "PSB".into(),
                        documents: transfer_documents(),
                        reason: "涉嫌犯罪".into(),
                    },
                },
            );
            let Ok(Outcome::Case(transfer)) = r.result else {
                panic!("{r:?}")
            };
            Command::CaseStep {
                id: transfer.id,
                action: concord_domain::case::CaseAction::RequestAssistance {
                    assistance: concord_domain::case::AssistanceKind::Appraisal,
                    description: "请出具鉴定意见".into(),
                    evidence: vec![],
                },
            }
        }
        CommandKind::RecordLicensingDecision => {
            let item = item_in(&mut w, ItemStatus::Published);
            let uscc = register(&mut w, 0);
            Command::RecordLicensingDecision {
                decision: licensing_spec(
                    "阳审批许字〔2026〕1号",
                    &uscc,
                    &item,
                    concord_domain::licensing::LicensingAction::Grant,
                ),
            }
        }
        CommandKind::AcknowledgeCase
        | CommandKind::AcceptCase
        | CommandKind::RejectCase
        | CommandKind::RerouteCase
        | CommandKind::EscalateCase
        | CommandKind::AssignCase
        | CommandKind::ResolveCase
        | CommandKind::ConfirmCaseFeedback
        | CommandKind::ReturnCaseForRework => {
            use concord_domain::case::{CaseAction, CaseStatus, Resolution};
            let (status, action) = match kind {
                CommandKind::AcknowledgeCase => (CaseStatus::Pushed, CaseAction::Acknowledge),
                CommandKind::AcceptCase => (CaseStatus::Pushed, CaseAction::Accept),
                CommandKind::RejectCase => (
                    CaseStatus::Pushed,
                    CaseAction::Reject {
                        reason: "不属本部门".into(),
                    },
                ),
                CommandKind::RerouteCase => (
                    CaseStatus::Rejected,
                    CaseAction::Reroute {
                        to: "EMER".into(),
                        reason: "改派".into(),
                    },
                ),
                CommandKind::EscalateCase => (
                    CaseStatus::Rejected,
                    CaseAction::Escalate {
                        reason: "争议".into(),
                    },
                ),
                CommandKind::AssignCase => (
                    CaseStatus::Escalated,
                    CaseAction::Assign {
                        to: "TRANS".into(),
                        reason: "依职责指定".into(),
                    },
                ),
                CommandKind::ResolveCase => (
                    CaseStatus::InProgress,
                    CaseAction::Resolve {
                        resolution: Resolution {
                            outcome: "已处置".into(),
                            measures: "责令整改".into(),
                            penalty_ref: String::new(),
                        },
                    },
                ),
                CommandKind::ConfirmCaseFeedback => (
                    CaseStatus::Resolved,
                    CaseAction::ConfirmFeedback {
                        note: "确认".into(),
                    },
                ),
                _ => (
                    CaseStatus::Resolved,
                    CaseAction::ReturnForRework {
                        reason: "整改不到位".into(),
                    },
                ),
            };
            let id = case_in(&mut w, status);
            Command::CaseStep { id, action }
        }
        CommandKind::DeleteSharingRule => {
            let r = w.run(
                "SAMR",
                "rule-1",
                Command::PutSharingRule {
                    rule: rule(&["ECO"]),
                    expected_revision: None,
                },
            );
            assert!(r.result.is_ok(), "{r:?}");
            Command::DeleteSharingRule {
                class: RecordClass::Item,
                provider: "SAMR".into(),
                id: "oil-drafts".into(),
                expected_revision: None,
            }
        }
    };
    (w, cmd)
}

#[test]
fn the_authority_matrix_is_enforced_for_every_profile_and_command() {
    let mut allowed = 0;
    let mut denied = 0;
    for kind in CommandKind::ALL {
        let row = authorities(kind);
        assert!(
            !row.is_empty(),
            "{kind:?} has no authority: nobody could issue it"
        );
        for p in PROFILES {
            let expect_allowed = row.iter().any(|a| p.holds.contains(a));
            let (mut w, cmd) = fixture(kind);
            let before = w.state.clone();
            let r = w.run_as(p.principal, p.actor, "matrix", cmd);
            let case = format!("{} as {} ({:?})", kind.as_str(), p.name, p.principal);
            if expect_allowed {
                assert!(r.result.is_ok(), "{case} should succeed: {:?}", r.result);
                allowed += 1;
            } else {
                // A caller who may not even see the unpublished item it names learns
                // nothing: NOT_FOUND, as for a missing item.
                // Likewise for a case: it exists only for its sides and arbiters.
                let unpublished_target = matches!(
                    kind,
                    CommandKind::UpdateDraft
                        | CommandKind::SubmitForReview
                        | CommandKind::ReviewItem
                        | CommandKind::PublishItem
                        | CommandKind::AcknowledgeCase
                        | CommandKind::AcceptCase
                        | CommandKind::RejectCase
                        | CommandKind::RerouteCase
                        | CommandKind::EscalateCase
                        | CommandKind::AssignCase
                        | CommandKind::ResolveCase
                        | CommandKind::ConfirmCaseFeedback
                        | CommandKind::ReturnCaseForRework
                        | CommandKind::TransferCaseToJudicial
                        | CommandKind::RequestCaseAssistance
                );
                // Visibility goes by the acting department, whatever its capacity:
                // the fixture item names SAMR and TRANS, and JUST reviews legality;
                // a transfer is TRANS's and PSB's (and the arbiter's), not SAMR's.
                let sees = if kind == CommandKind::RequestCaseAssistance {
                    ["TRANS", "PSB", "JUST"].contains(&p.actor)
                } else {
                    ["SAMR", "TRANS", "JUST"].contains(&p.actor)
                };
                match &r.result {
                    Err(DomainError::NotFound { .. }) if unpublished_target && !sees => {}
                    Err(DomainError::PermissionDenied { reason })
                        if !(unpublished_target && !sees) =>
                    {
                        assert!(reason.contains(kind.as_str()), "{case}: {reason}")
                    }
                    other => panic!(
                        "{case} should be {}, got {other:?}",
                        if unpublished_target && !sees {
                            "NOT_FOUND"
                        } else {
                            "PERMISSION_DENIED"
                        }
                    ),
                }
                let keep = |s: &MemState| {
                    let mut s = s.clone();
                    s.map.retain(|k, _| {
                        !k.starts_with("dedup")
                            && !k.starts_with("audit/")
                            && k != "meta/audit_head"
                    });
                    s
                };
                assert_eq!(keep(&before), keep(&w.state), "{case} changed state");
                denied += 1;
            }
        }
    }
    // Every pair was exercised; the split is what the matrix says.
    assert_eq!(allowed + denied, CommandKind::ALL.len() * PROFILES.len());
    assert!(
        allowed >= CommandKind::ALL.len(),
        "each command has an allowed profile"
    );
    eprintln!("authority matrix: {allowed} allowed and {denied} denied pairs checked");
}

#[test]
fn the_audit_chain_links_every_command_and_detects_a_rewrite() {
    let mut w = World::new();
    let id = item_in(&mut w, ItemStatus::Published);
    // A refused attempt is recorded too.
    let _ = w.err(
        "TRANS",
        Command::AbolishItem {
            id: id.clone(),
            reason: "x".into(),
            expected_revision: None,
        },
    );
    let v = audit::verify(&w.state, 0, 0, usize::MAX).unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.checked, w.revision, "one record per applied command");
    assert_eq!(v.head.count, w.revision);
    let last: audit::AuditRecord = serde_json::from_slice(
        &w.state
            .get(&format!("audit/{:020}", w.revision))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.outcome.as_str(),
            last.target.as_str()
        ),
        ("TRANS", "PERMISSION_DENIED", id.as_str())
    );
    // Rewrite who reviewed the item, in place, as an intruder with disk access would.
    let key = format!("audit/{:020}", 3);
    let mut rec: audit::AuditRecord =
        serde_json::from_slice(&w.state.get(&key).unwrap().unwrap()).unwrap();
    rec.actor = "ECO".into();
    w.state
        .map
        .insert(key.clone(), serde_json::to_vec(&rec).unwrap());
    let v = audit::verify(&w.state, 0, 0, usize::MAX).unwrap();
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(3), "{v:?}");
    // Re-sealing the record moves the break to the next link.
    rec.hash = rec.compute_hash();
    w.state.map.insert(key, serde_json::to_vec(&rec).unwrap());
    let v = audit::verify(&w.state, 0, 0, usize::MAX).unwrap();
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(4), "{v:?}");
    // A range that starts after the rewrite still finds it: its first record's
    // predecessor no longer matches.
    let v = audit::verify(&w.state, 4, 0, usize::MAX).unwrap();
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(4), "{v:?}");
    let v = audit::verify(&w.state, 5, 0, usize::MAX).unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.checked, w.revision - 4);
}

#[test]
fn audit_verification_finds_removed_records_at_every_edge() {
    let fresh = || {
        let mut w = World::new();
        item_in(&mut w, ItemStatus::Published);
        w
    };
    let key = |r: u64| format!("audit/{r:020}");
    let w = fresh();
    let n = w.revision;
    // Intact, in one walk and in pages of 2 that continue where the last stopped.
    assert_eq!(
        audit::verify(&w.state, 0, 0, usize::MAX).unwrap().broken,
        None
    );
    let mut from = 0;
    let mut total = 0;
    loop {
        let v = audit::verify(&w.state, from, 0, 2).unwrap();
        assert_eq!(v.broken, None, "page from {from}");
        total += v.checked;
        if v.next_revision == 0 {
            break;
        }
        from = v.next_revision;
    }
    assert_eq!(total, n);
    // The newest record removed: the head no longer matches.
    let mut w = fresh();
    w.state.map.remove(&key(n));
    assert!(audit::verify(&w.state, 0, 0, usize::MAX)
        .unwrap()
        .broken
        .is_some());
    // Every record removed.
    let mut w = fresh();
    w.state.map.retain(|k, _| !k.starts_with("audit/"));
    assert!(audit::verify(&w.state, 0, 0, usize::MAX)
        .unwrap()
        .broken
        .is_some());
    // A record in the middle removed: found by a walk over it, and by a page that
    // ends just before it (the next record no longer links back).
    let mut w = fresh();
    w.state.map.remove(&key(3));
    assert!(audit::verify(&w.state, 0, 0, usize::MAX)
        .unwrap()
        .broken
        .is_some());
    assert!(audit::verify(&w.state, 1, 2, usize::MAX)
        .unwrap()
        .broken
        .is_some());
    // The first record removed.
    let mut w = fresh();
    w.state.map.remove(&key(1));
    assert!(audit::verify(&w.state, 0, 0, usize::MAX)
        .unwrap()
        .broken
        .is_some());
}

#[test]
fn non_public_items_are_seen_only_by_the_departments_a_rule_names() {
    let mut w = World::new();
    // A non-public item, published: SAMR leads, TRANS cooperates.
    let mut secret = content();
    secret.public = false;
    secret.non_public_reason = "涉及执法部署".into();
    let id = item_with(&mut w, secret, ItemStatus::Published);
    // A public item still in draft, and a public published one.
    let draft = w
        .ok_item("SAMR", Command::CreateItem { content: content() })
        .id;
    let public = item_in(&mut w, ItemStatus::Published);
    let sees = |w: &World, dept: &str| -> Vec<String> {
        let scope = Scope::load(&w.state, dept).unwrap();
        let listed: Vec<String> = query::items(&w.state, &scope, &Default::default(), 100, "")
            .unwrap()
            .items
            .into_iter()
            .map(|i| i.id)
            .collect();
        // Get and History agree with List, and a hidden item is NOT_FOUND, not denied.
        for id in [&id, &draft, &public] {
            let got = query::item(&w.state, &scope, id, 0);
            let history = query::item_history(&w.state, &scope, id);
            assert_eq!(got.is_ok(), listed.contains(id), "{dept} get {id}");
            assert_eq!(history.is_ok(), listed.contains(id), "{dept} history {id}");
            if let Err(e) = got {
                assert!(
                    matches!(
                        e,
                        concord_domain::Failure::Refused(DomainError::NotFound { .. })
                    ),
                    "{e:?}"
                );
            }
        }
        listed
    };
    let all = vec![id.clone(), draft.clone(), public.clone()];
    assert_eq!(sees(&w, "SAMR"), all, "the lead sees everything it leads");
    assert_eq!(sees(&w, "TRANS"), all, "a cooperating department too");
    assert_eq!(sees(&w, "JUST"), all, "the legality reviewer too");
    assert_eq!(
        sees(&w, "ECO"),
        vec![public.clone()],
        "others: public published only"
    );
    assert_eq!(sees(&w, "EMER"), vec![public.clone()]);
    // SAMR shares its items with ECO: ECO now sees them; EMER still does not.
    let r = w.run(
        "SAMR",
        "share-1",
        Command::PutSharingRule {
            rule: rule(&["ECO"]),
            expected_revision: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    assert_eq!(sees(&w, "ECO"), all);
    assert_eq!(sees(&w, "EMER"), vec![public.clone()]);
    // A revision in draft of the public item: outsiders keep seeing the version in force.
    let v2 = w.ok_item(
        "SAMR",
        Command::ReviseItem {
            id: public.clone(),
            cause: ChangeCause::Amend,
            change_note: "修订".into(),
            content: content(),
            expected_revision: None,
        },
    );
    let emer = Scope::load(&w.state, "EMER").unwrap();
    let seen = query::item(&w.state, &emer, &public, 0).unwrap();
    assert_eq!((seen.version, seen.status), (1, ItemStatus::Published));
    assert!(query::item(&w.state, &emer, &public, v2.version).is_err());
    // Withdrawing the rule withdraws the access.
    let r = w.run(
        "SAMR",
        "unshare-1",
        Command::DeleteSharingRule {
            class: RecordClass::Item,
            provider: "SAMR".into(),
            id: "oil-drafts".into(),
            expected_revision: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    assert_eq!(sees(&w, "ECO"), vec![public.clone()]);
    // Only the provider writes its rules; readers must be registered departments.
    let e = w.err(
        "TRANS",
        Command::PutSharingRule {
            rule: rule(&["ECO"]),
            expected_revision: None,
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
    let e = w.err(
        "SAMR",
        Command::PutSharingRule {
            rule: rule(&["NOBODY"]),
            expected_revision: None,
        },
    );
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "rule.readers[0]"),
        "{e:?}"
    );
}
