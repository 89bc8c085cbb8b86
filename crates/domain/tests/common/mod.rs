//! The in-memory world the domain tests drive: a state, a revision counter and a
//! clock that advances one second per command.
#![allow(dead_code)]

use concord_domain::credit::{CreditKind, CreditRecordSpec, Severity};
use concord_domain::department::default_departments;
use concord_domain::entity::{EntitySpec, LicenceStatus};
use concord_domain::item::{DepartmentDuty, ItemContent, ItemStatus, Level, Method};
use concord_domain::{
    apply, Command, DomainError, Envelope, MemState, Outcome, Principal, Response,
};

pub struct World {
    pub state: MemState,
    pub revision: u64,
    pub now: i64,
}

impl World {
    pub fn new() -> World {
        let mut w = World {
            state: MemState::default(),
            revision: 0,
            now: 1_700_000_000_000,
        };
        let r = w.run(
            "SAMR",
            "seed",
            Command::Bootstrap {
                departments: default_departments(),
            },
        );
        assert!(r.result.is_ok(), "{r:?}");
        w
    }

    /// Runs `command` in the capacity its kind needs (housekeeping as the system,
    /// registry changes as an admin, the rest as the actor department).
    pub fn run(&mut self, actor: &str, request_id: &str, command: Command) -> Response {
        let principal = match command {
            Command::Tick { .. } => Principal::System,
            Command::RegisterDepartment { .. }
            | Command::SetDistricts { .. }
            | Command::SetOverInspectionRule { .. }
            | Command::SetCaseDeadlines { .. } => Principal::Admin,
            _ => Principal::Member,
        };
        self.run_as(principal, actor, request_id, command)
    }

    pub fn run_as(
        &mut self,
        principal: Principal,
        actor: &str,
        request_id: &str,
        command: Command,
    ) -> Response {
        self.revision += 1;
        self.now += 1000;
        let env = Envelope {
            actor: actor.into(),
            principal,
            request_id: request_id.into(),
            timestamp_ms: self.now,
            command,
        };
        let t = apply(&self.state, &env, self.revision).expect("no storage fault");
        // The store keeps `encoded_events`; watchers decode them as `Event`s.
        assert_eq!(t.encoded_events.len(), t.events.len());
        for (event, bytes) in t.events.iter().zip(&t.encoded_events) {
            let plain = serde_json::to_vec(event).expect("events encode");
            assert!(
                *bytes == plain,
                "event {} {} is stored as\n{}\nnot\n{}",
                event.key,
                event.action,
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&plain)
            );
        }
        self.state.apply_writes(&t.writes);
        t.response
    }

    pub fn ok_item(&mut self, actor: &str, command: Command) -> concord_domain::item::Item {
        let rid = format!("r{}", self.revision + 1);
        match self.run(actor, &rid, command).result {
            Ok(Outcome::Item(i)) => i,
            other => panic!("expected an item, got {other:?}"),
        }
    }

    pub fn err(&mut self, actor: &str, command: Command) -> DomainError {
        let before = self.state.clone();
        let rid = format!("r{}", self.revision + 1);
        let r = self.run(actor, &rid, command);
        let err = r.result.expect_err("expected a refusal");
        // A refused request changes nothing but the memory of its request id and
        // the audit trail that records the attempt.
        let untouched = |k: &String| {
            !k.starts_with("dedup") && !k.starts_with("audit/") && k != "meta/audit_head"
        };
        let mut after = self.state.clone();
        after.map.retain(|k, _| untouched(k));
        let mut before = before;
        before.map.retain(|k, _| untouched(k));
        assert_eq!(before, after, "refused command changed state");
        err
    }
}

pub fn content() -> ItemContent {
    ItemContent {
        name: "成品油流通".into(),
        field: "refined_oil".into(),
        lead: DepartmentDuty {
            department: "SAMR".into(),
            duty: "质量监管".into(),
            legal_basis: "《产品质量法》".into(),
        },
        cooperating: vec![DepartmentDuty {
            department: "TRANS".into(),
            duty: "运输监管".into(),
            legal_basis: "《道路运输条例》".into(),
        }],
        targets: "加油站、油库".into(),
        level: Level::City,
        methods: vec![Method::DoubleRandom],
        mechanisms: vec![],
        public: true,
        non_public_reason: String::new(),
    }
}

/// Drives a fresh item to `status` by legal steps.
pub fn item_in(w: &mut World, status: ItemStatus) -> String {
    item_with(w, content(), status)
}

/// Drives a fresh item with `content` to `status` by legal steps.
pub fn item_with(w: &mut World, content: ItemContent, status: ItemStatus) -> String {
    let id = w.ok_item("SAMR", Command::CreateItem { content }).id;
    let steps: Vec<(&str, Command)> = vec![
        (
            "SAMR",
            Command::SubmitForReview {
                id: id.clone(),
                expected_revision: None,
            },
        ),
        (
            "JUST",
            Command::ReviewItem {
                id: id.clone(),
                approve: true,
                opinion: String::new(),
                expected_revision: None,
            },
        ),
        (
            "SAMR",
            Command::PublishItem {
                id: id.clone(),
                expected_revision: None,
            },
        ),
    ];
    let n = match status {
        ItemStatus::Draft => 0,
        ItemStatus::InReview => 1,
        ItemStatus::Approved => 2,
        ItemStatus::Published | ItemStatus::Abolished => 3,
        ItemStatus::Rejected => {
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
                    approve: false,
                    opinion: "不合法".into(),
                    expected_revision: None,
                },
            );
            return id;
        }
        ItemStatus::Superseded => unreachable!("a head is never superseded"),
    };
    for (actor, cmd) in steps.into_iter().take(n) {
        w.ok_item(actor, cmd);
    }
    if status == ItemStatus::Abolished {
        w.ok_item(
            "SAMR",
            Command::AbolishItem {
                id: id.clone(),
                reason: "废止".into(),
                expected_revision: None,
            },
        );
    }
    id
}

/// Entities of the sample data (valid codes, real districts).
pub const ENTITIES: [(&str, &str, &str); 3] = [
    ("9114030254PNMK4N6B", "狮脑山恒永兴电梯工程有限公司", "城区"),
    ("91140300142GAP0U9Y", "桃河鑫惠民建筑工程有限公司", "高新区"),
    ("91140311729YDWUJ0U", "郊区成品油经营有限公司", "郊区"),
];

pub fn entity_spec(i: usize) -> EntitySpec {
    let (uscc, name, district) = ENTITIES[i];
    EntitySpec {
        uscc: uscc.into(),
        name: name.into(),
        district: district.into(),
        industry: "refined_oil".into(),
        address: "阳泉市".into(),
        licence: LicenceStatus::Active,
    }
}

/// Registers entity `i` of [`ENTITIES`] (as SAMR, the licensing registrar).
pub fn register(w: &mut World, i: usize) -> String {
    let rid = format!("reg-{i}-{}", w.revision);
    let r = w.run(
        "SAMR",
        &rid,
        Command::RegisterEntity {
            entity: entity_spec(i),
            expected_revision: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    ENTITIES[i].0.to_string()
}

/// A record about `uscc` in force from now, expiring after `days` when given.
pub fn credit(
    w: &World,
    uscc: &str,
    kind: CreditKind,
    severity: Severity,
    days: Option<i64>,
) -> CreditRecordSpec {
    CreditRecordSpec {
        uscc: uscc.into(),
        kind,
        severity,
        description: "检查发现".into(),
        legal_basis: "《安全生产法》".into(),
        effective_ms: w.now,
        expires_ms: days.map(|d| w.now + d * 86_400_000),
        source_ref: "inspection-1".into(),
    }
}

pub fn inspector(id: &str) -> concord_domain::inspection::InspectorSpec {
    concord_domain::inspection::InspectorSpec {
        id: id.into(),
        name: "检查员".into(),
        certification: "执法证 1403".into(),
        active: true,
    }
}

/// A plan by SAMR and TRANS over `item`, drawing 60 % of tier C.
pub fn plan_spec(item: &str) -> concord_domain::inspection::PlanSpec {
    concord_domain::inspection::PlanSpec {
        name: "成品油联合抽查".into(),
        participants: vec!["SAMR".into(), "TRANS".into()],
        items: vec![item.into()],
        districts: vec![],
        industries: vec![],
        tiers: vec![],
        period_start_ms: 1_700_000_000_000,
        period_end_ms: 1_800_000_000_000,
        ratio_overrides: vec![concord_domain::inspection::RatioOverride {
            tier: "C".into(),
            ratio_bp: 6000,
        }],
        inspectors_per_department: 1,
        conflicts: vec![],
    }
}

/// A world with a published item, one tier-C entity, an inspector `i1` in SAMR and
/// TRANS, and a plan over them; returns the plan id.
pub fn planned(w: &mut World) -> String {
    let item = item_in(w, ItemStatus::Published);
    let uscc = register(w, 0);
    let spec = credit(w, &uscc, CreditKind::Violation, Severity::Serious, None);
    let r = w.run("EMER", "v-fixture", Command::RecordCredit { record: spec });
    assert!(r.result.is_ok(), "{r:?}");
    for d in ["SAMR", "TRANS"] {
        let r = w.run(
            d,
            &format!("insp-{d}"),
            Command::PutInspector {
                inspector: inspector("i1"),
            },
        );
        assert!(r.result.is_ok(), "{r:?}");
    }
    match w
        .run(
            "SAMR",
            "plan-fixture",
            Command::CreatePlan {
                plan: plan_spec(&item),
            },
        )
        .result
    {
        Ok(Outcome::Plan(p)) => p.id,
        other => panic!("{other:?}"),
    }
}

pub fn result_spec() -> concord_domain::inspection::ResultSpec {
    concord_domain::inspection::ResultSpec {
        outcome: concord_domain::inspection::ResultOutcome::Compliant,
        findings: "未发现问题".into(),
        evidence: vec!["ab".repeat(32)],
        inspectors: vec!["i1".into()],
        public: true,
    }
}

pub fn case_spec(to: &[&str]) -> concord_domain::case::CaseSpec {
    concord_domain::case::CaseSpec {
        kind: concord_domain::case::CaseKind::Clue,
        source: concord_domain::case::CaseSource::Hotline12345,
        source_ref: "12345-20261129-0042".into(),
        uscc: Some(ENTITIES[0].0.into()),
        title: "加油站违规储存危化品".into(),
        description: "群众反映夜间违规卸油".into(),
        evidence: vec!["cd".repeat(32)],
        to: to.iter().map(|d| d.to_string()).collect(),
        priority: concord_domain::case::Priority::High,
        level: None,
        entities: vec![],
        documents: vec![],
        assistance: None,
    }
}

/// The documents a transfer to a judicial organ must carry.
pub fn transfer_documents() -> Vec<concord_domain::case::CaseDocument> {
    use concord_domain::case::{CaseDocument, DocumentKind};
    [
        (DocumentKind::TransferLetter, "涉嫌犯罪案件移送书", "01"),
        (
            DocumentKind::InvestigationReport,
            "涉嫌犯罪案件情况的调查报告",
            "02",
        ),
        (DocumentKind::ItemList, "涉案物品清单", "03"),
        (DocumentKind::AppraisalReport, "油品检验报告", "04"),
    ]
    .into_iter()
    .map(|(kind, title, n)| CaseDocument {
        kind,
        title: title.into(),
        sha256: n.repeat(32),
    })
    .collect()
}

/// A licensing decision by the licensing bureau on `uscc` under `item`.
pub fn licensing_spec(
    number: &str,
    uscc: &str,
    item: &str,
    action: concord_domain::licensing::LicensingAction,
) -> concord_domain::licensing::LicensingDecisionSpec {
    concord_domain::licensing::LicensingDecisionSpec {
        number: number.into(),
        uscc: uscc.into(),
        action,
        matter: "成品油零售经营许可".into(),
        items: vec![item.into()],
        document: "ef".repeat(32),
        valid_until_ms: None,
    }
}

/// Pushes a case from SAMR to TRANS and drives it to `status` by legal steps.
pub fn case_in(w: &mut World, status: concord_domain::case::CaseStatus) -> String {
    use concord_domain::case::{CaseAction, CaseStatus, Resolution};
    let id = match w
        .run(
            "SAMR",
            &format!("push-{}", w.revision),
            Command::PushCase {
                case: case_spec(&["TRANS"]),
            },
        )
        .result
    {
        Ok(Outcome::Cases(cases)) => cases[0].id.clone(),
        other => panic!("{other:?}"),
    };
    let step = |w: &mut World, by: &str, action: CaseAction| {
        let rid = format!("step-{}", w.revision);
        let r = w.run(
            by,
            &rid,
            Command::CaseStep {
                id: id.clone(),
                action,
            },
        );
        assert!(r.result.is_ok(), "{r:?}");
    };
    let resolve = CaseAction::Resolve {
        resolution: Resolution {
            outcome: "责令改正".into(),
            measures: "现场检查并立案".into(),
            penalty_ref: "阳交罚〔2026〕12号".into(),
        },
    };
    match status {
        CaseStatus::Pushed => {}
        CaseStatus::Rejected | CaseStatus::Escalated => {
            step(
                w,
                "TRANS",
                CaseAction::Reject {
                    reason: "不属本部门职责".into(),
                },
            );
            if status == CaseStatus::Escalated {
                step(
                    w,
                    "SAMR",
                    CaseAction::Escalate {
                        reason: "职责争议".into(),
                    },
                );
            }
        }
        CaseStatus::InProgress | CaseStatus::Resolved | CaseStatus::Closed => {
            step(w, "TRANS", CaseAction::Accept);
            if status != CaseStatus::InProgress {
                step(w, "TRANS", resolve);
            }
            if status == CaseStatus::Closed {
                step(
                    w,
                    "SAMR",
                    CaseAction::ConfirmFeedback {
                        note: "确认".into(),
                    },
                );
            }
        }
    }
    id
}
