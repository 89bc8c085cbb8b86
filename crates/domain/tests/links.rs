//! The links between the closed loop and the rest of supervision: transfer of a
//! suspected crime to a judicial organ with its documents and the organ's requests
//! for assistance (行刑衔接); licensing decisions pushed to the supervisors, and
//! violations found in supervision pushed back to the licensing bureau (审管联动).

mod common;
use common::*;

use concord_domain::case::{
    AssistanceKind, Case, CaseAction, CaseKind, CaseSource, CaseStatus, DocumentKind, Resolution,
};
use concord_domain::entity::LicenceStatus;
use concord_domain::inspection::ResultOutcome;
use concord_domain::licensing::LicensingAction;
use concord_domain::{query, Command, DomainError, Outcome};

fn step(w: &mut World, by: &str, id: &str, action: CaseAction) -> Case {
    let rid = format!("s-{}", w.revision);
    match w
        .run(
            by,
            &rid,
            Command::CaseStep {
                id: id.into(),
                action,
            },
        )
        .result
    {
        Ok(Outcome::Case(c)) => c,
        other => panic!("{by}: {other:?}"),
    }
}

fn transfer(to: &str) -> CaseAction {
    CaseAction::TransferToJudicial {
        to: to.into(),
        documents: transfer_documents(),
        reason: "涉嫌非法经营罪，涉案油品货值逾五万元".into(),
    }
}

fn resolution(penalty_ref: &str) -> Resolution {
    Resolution {
        outcome: "已处置".into(),
        measures: "立案查处".into(),
        penalty_ref: penalty_ref.into(),
    }
}

fn case(w: &World, id: &str) -> Case {
    query::case(&w.state, id).unwrap()
}

#[test]
fn a_suspected_crime_goes_to_the_judicial_organ_and_its_assistance_requests_come_back() {
    let mut w = World::new();
    let admin_case = case_in(&mut w, CaseStatus::InProgress);
    // TRANS, handling the case, transfers it to the public security bureau.
    let t = step(&mut w, "TRANS", &admin_case, transfer("PSB"));
    assert_eq!(t.spec.kind, CaseKind::CriminalTransfer);
    assert_eq!((t.from.as_str(), t.to.as_str()), ("TRANS", "PSB"));
    assert_eq!(t.parent.as_deref(), Some(admin_case.as_str()));
    assert_eq!(t.status, CaseStatus::Pushed);
    assert_eq!(t.spec.documents.len(), 4);
    assert_eq!(t.spec.source_ref, admin_case);
    // The administrative case keeps its stage and records the link.
    let parent = case(&w, &admin_case);
    assert_eq!(parent.status, CaseStatus::InProgress);
    assert_eq!(parent.linked, vec![t.id.clone()]);
    assert_eq!(parent.steps.last().unwrap().action, "transfer_to_judicial");
    // The organ runs the same loop: it acknowledges and accepts (立案)...
    step(&mut w, "PSB", &t.id, CaseAction::Acknowledge);
    step(&mut w, "PSB", &t.id, CaseAction::Accept);
    // ...and asks TRANS for an appraisal: a linked case to TRANS.
    let a = step(
        &mut w,
        "PSB",
        &t.id,
        CaseAction::RequestAssistance {
            assistance: AssistanceKind::Appraisal,
            description: "请对查扣油品出具质量鉴定意见".into(),
            evidence: vec!["aa".repeat(32)],
        },
    );
    assert_eq!(a.spec.kind, CaseKind::Assistance);
    assert_eq!(a.spec.assistance, Some(AssistanceKind::Appraisal));
    assert_eq!((a.from.as_str(), a.to.as_str()), ("PSB", "TRANS"));
    assert_eq!(a.parent.as_deref(), Some(t.id.as_str()));
    // The assistance is delivered and confirmed by the organ.
    step(&mut w, "TRANS", &a.id, CaseAction::Accept);
    step(
        &mut w,
        "TRANS",
        &a.id,
        CaseAction::Resolve {
            resolution: resolution(""),
        },
    );
    let done = step(
        &mut w,
        "PSB",
        &a.id,
        CaseAction::ConfirmFeedback {
            note: "鉴定意见已收".into(),
        },
    );
    assert_eq!(done.status, CaseStatus::Closed);
    // The organ feeds back its handling; TRANS confirms; then closes its own case.
    step(
        &mut w,
        "PSB",
        &t.id,
        CaseAction::Resolve {
            resolution: resolution("阳公立〔2026〕88号"),
        },
    );
    let closed = step(
        &mut w,
        "TRANS",
        &t.id,
        CaseAction::ConfirmFeedback {
            note: String::new(),
        },
    );
    assert_eq!(closed.status, CaseStatus::Closed);
    assert_eq!(case(&w, &t.id).linked, vec![a.id.clone()]);
    // The assistance request is on the organ's own deadline policy.
    let policy = concord_domain::case::DeadlinePolicy::default();
    assert_eq!(
        a.due_ms - a.steps[0].at_ms,
        policy.assistance.accept as i64 * 3_600_000
    );
}

#[test]
fn a_transfer_is_refused_without_its_documents_or_to_a_non_judicial_department() {
    let mut w = World::new();
    let id = case_in(&mut w, CaseStatus::InProgress);
    // Each required document, missing: INVALID_ARGUMENT naming the documents.
    for missing in [
        DocumentKind::TransferLetter,
        DocumentKind::InvestigationReport,
        DocumentKind::ItemList,
    ] {
        let e = w.err(
            "TRANS",
            Command::CaseStep {
                id: id.clone(),
                action: CaseAction::TransferToJudicial {
                    to: "PSB".into(),
                    documents: transfer_documents()
                        .into_iter()
                        .filter(|d| d.kind != missing)
                        .collect(),
                    reason: "涉嫌犯罪".into(),
                },
            },
        );
        match e {
            DomainError::InvalidArgument { field, .. } => assert_eq!(field, "action.documents"),
            other => panic!("{other:?}"),
        }
    }
    // A malformed digest is named by its index.
    let mut docs = transfer_documents();
    docs[1].sha256 = "not-a-digest".into();
    let e = w.err(
        "TRANS",
        Command::CaseStep {
            id: id.clone(),
            action: CaseAction::TransferToJudicial {
                to: "PSB".into(),
                documents: docs,
                reason: "涉嫌犯罪".into(),
            },
        },
    );
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "action.documents[1].sha256"),
        "{e:?}"
    );
    // ECO is an administrative department.
    let e = w.err(
        "TRANS",
        Command::CaseStep {
            id: id.clone(),
            action: transfer("ECO"),
        },
    );
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "action.to"),
        "{e:?}"
    );
    // Only the handler transfers; the originator may not.
    let e = w.err(
        "SAMR",
        Command::CaseStep {
            id: id.clone(),
            action: transfer("PSB"),
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
    // Only a case in progress is transferred.
    let pushed = case_in(&mut w, CaseStatus::Pushed);
    let e = w.err(
        "TRANS",
        Command::CaseStep {
            id: pushed,
            action: transfer("PSB"),
        },
    );
    assert!(matches!(e, DomainError::FailedPrecondition { .. }), "{e:?}");
    // PushCase does not open transfers, assistance or licensing notices.
    for kind in [
        CaseKind::CriminalTransfer,
        CaseKind::Assistance,
        CaseKind::LicensingNotice,
    ] {
        let mut spec = case_spec(&["PSB"]);
        spec.kind = kind;
        if kind == CaseKind::CriminalTransfer {
            spec.documents = transfer_documents();
        }
        if kind == CaseKind::Assistance {
            spec.assistance = Some(AssistanceKind::Inspection);
        }
        let e = w.err("SAMR", Command::PushCase { case: spec });
        assert!(
            matches!(&e, DomainError::InvalidArgument { field, .. } if field == "case.kind"),
            "{kind:?}: {e:?}"
        );
    }
    // A rejected transfer may be re-routed only to another judicial organ.
    let t = step(&mut w, "TRANS", &id, transfer("PSB"));
    step(
        &mut w,
        "PSB",
        &t.id,
        CaseAction::Reject {
            reason: "不符合立案条件".into(),
        },
    );
    let e = w.err(
        "TRANS",
        Command::CaseStep {
            id: t.id.clone(),
            action: CaseAction::Reroute {
                to: "EMER".into(),
                reason: "改派".into(),
            },
        },
    );
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "action.to"),
        "{e:?}"
    );
    // Assistance is asked only on a transfer, and only by the organ holding it.
    let e = w.err(
        "TRANS",
        Command::CaseStep {
            id,
            action: CaseAction::RequestAssistance {
                assistance: AssistanceKind::Inspection,
                description: "协助".into(),
                evidence: vec![],
            },
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
}

/// A world with a published item (lead SAMR, cooperating TRANS) and entity 0.
fn licensed_world() -> (World, String, String) {
    let mut w = World::new();
    let item = item_in(&mut w, concord_domain::item::ItemStatus::Published);
    let uscc = register(&mut w, 0);
    (w, item, uscc)
}

fn decide(
    w: &mut World,
    number: &str,
    uscc: &str,
    item: &str,
    action: LicensingAction,
) -> Vec<Case> {
    let rid = format!("lic-{number}");
    match w
        .run(
            "APPROVAL",
            &rid,
            Command::RecordLicensingDecision {
                decision: licensing_spec(number, uscc, item, action),
            },
        )
        .result
    {
        Ok(Outcome::Licensing { decision, cases }) => {
            assert_eq!(decision.cases.len(), cases.len());
            cases
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_licensing_decision_is_pushed_to_every_supervisor_of_its_items() {
    let (mut w, item, uscc) = licensed_world();
    let cases = decide(
        &mut w,
        "阳审批许字〔2026〕118号",
        &uscc,
        &item,
        LicensingAction::Grant,
    );
    let to: Vec<&str> = cases.iter().map(|c| c.to.as_str()).collect();
    assert_eq!(to, ["SAMR", "TRANS"], "lead and cooperating departments");
    for c in &cases {
        assert_eq!(c.spec.kind, CaseKind::LicensingNotice);
        assert_eq!(c.spec.source, CaseSource::LicensingDecision);
        assert_eq!(c.from, "APPROVAL");
        assert_eq!(c.spec.uscc.as_deref(), Some(uscc.as_str()));
    }
    // Each supervisor claims it into supervision; the bureau sees the loop close.
    step(&mut w, "TRANS", &cases[1].id, CaseAction::Accept);
    step(
        &mut w,
        "TRANS",
        &cases[1].id,
        CaseAction::Resolve {
            resolution: Resolution {
                outcome: "已纳入监管".into(),
                measures: "列入年度检查计划".into(),
                penalty_ref: String::new(),
            },
        },
    );
    let c = step(
        &mut w,
        "APPROVAL",
        &cases[1].id,
        CaseAction::ConfirmFeedback {
            note: String::new(),
        },
    );
    assert_eq!(c.status, CaseStatus::Closed);
    // A number is recorded once.
    let e = w.err(
        "APPROVAL",
        Command::RecordLicensingDecision {
            decision: licensing_spec(
                "阳审批许字〔2026〕118号",
                &uscc,
                &item,
                LicensingAction::Grant,
            ),
        },
    );
    assert!(matches!(e, DomainError::AlreadyExists { .. }), "{e:?}");
    // Only the licensing bureau records decisions.
    let e = w.err(
        "SAMR",
        Command::RecordLicensingDecision {
            decision: licensing_spec("x-1", &uscc, &item, LicensingAction::Grant),
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
    // An unpublished item is as missing; so is an unregistered entity.
    let draft = item_in(&mut w, concord_domain::item::ItemStatus::Draft);
    let e = w.err(
        "APPROVAL",
        Command::RecordLicensingDecision {
            decision: licensing_spec("x-2", &uscc, &draft, LicensingAction::Grant),
        },
    );
    assert!(matches!(e, DomainError::NotFound { .. }), "{e:?}");
    let e = w.err(
        "APPROVAL",
        Command::RecordLicensingDecision {
            decision: licensing_spec("x-3", ENTITIES[1].0, &item, LicensingAction::Grant),
        },
    );
    assert!(matches!(e, DomainError::NotFound { .. }), "{e:?}");
    // A revocation takes the entity out of the directory's active licences.
    decide(
        &mut w,
        "阳审批撤字〔2026〕7号",
        &uscc,
        &item,
        LicensingAction::Revoke,
    );
    assert_eq!(
        query::entity(&w.state, &uscc).unwrap().spec.licence,
        LicenceStatus::Revoked
    );
    let all = query::licensing_decisions(&w.state, &uscc).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].spec.action, LicensingAction::Revoke);
}

#[test]
fn violations_found_on_a_licensed_entity_go_back_to_its_licensing_bureau() {
    let mut w = World::new();
    let plan = planned(&mut w);
    let uscc = ENTITIES[0].0;
    let item = query::plan(&w.state, &plan).unwrap().spec.items[0].clone();
    let tasks = match w
        .run("SAMR", "draw", Command::DrawPlan { plan_id: plan })
        .result
    {
        Ok(Outcome::Drawn { tasks, .. }) => tasks,
        other => panic!("{other:?}"),
    };
    let task = tasks
        .iter()
        .find(|t| t.uscc == uscc)
        .expect("entity drawn")
        .id
        .clone();
    decide(
        &mut w,
        "阳审批许字〔2026〕200号",
        uscc,
        &item,
        LicensingAction::Grant,
    );
    // A compliant result pushes nothing.
    match w
        .run(
            "SAMR",
            "ok",
            Command::SubmitResult {
                task_id: task.clone(),
                result: result_spec(),
            },
        )
        .result
    {
        Ok(Outcome::Submitted { pushed, .. }) => assert!(pushed.is_empty()),
        other => panic!("{other:?}"),
    }
    // A non-compliant one reaches the bureau in the same revision.
    let mut bad = result_spec();
    bad.outcome = ResultOutcome::NonCompliant;
    bad.findings = "储油罐未按规定检测".into();
    let r = w.run(
        "TRANS",
        "bad",
        Command::SubmitResult {
            task_id: task.clone(),
            result: bad,
        },
    );
    let pushed = match r.result {
        Ok(Outcome::Submitted { pushed, .. }) => pushed,
        other => panic!("{other:?}"),
    };
    assert_eq!(pushed.len(), 1);
    let p = &pushed[0];
    assert_eq!((p.from.as_str(), p.to.as_str()), ("TRANS", "APPROVAL"));
    assert_eq!(p.spec.source, CaseSource::InspectionResult);
    assert_eq!(p.spec.source_ref, task);
    assert_eq!(p.created_revision, r.revision);
    assert_eq!(p.spec.description, "储油罐未按规定检测");
    // A penalty decided in a case on the licensed entity goes back too...
    let id = case_in(&mut w, CaseStatus::InProgress);
    let before = query::case_inbox(&w.state, "APPROVAL").unwrap().len();
    step(
        &mut w,
        "TRANS",
        &id,
        CaseAction::Resolve {
            resolution: resolution("阳交罚〔2026〕31号"),
        },
    );
    let inbox = query::case_inbox(&w.state, "APPROVAL").unwrap();
    assert_eq!(inbox.len(), before + 1);
    let back = inbox
        .iter()
        .find(|c| c.spec.source_ref == id)
        .expect("pushed back");
    assert!(back.spec.description.contains("阳交罚〔2026〕31号"));
    // ...but not a resolution without a penalty, nor anything about an unlicensed entity.
    let id = case_in(&mut w, CaseStatus::InProgress);
    step(
        &mut w,
        "TRANS",
        &id,
        CaseAction::Resolve {
            resolution: resolution(""),
        },
    );
    assert_eq!(
        query::case_inbox(&w.state, "APPROVAL").unwrap().len(),
        before + 1
    );
}
