//! A joint inspection over gRPC on a six-department cluster: plan → draw (the same
//! on every node, verified everywhere) → tasks → results → the over-inspection alert
//! in each involved department's inbox.

use concord_node::core::now_ms;
use concord_proto::cluster::v1::SetOverInspectionRuleRequest;
use concord_proto::credit::v1::credit_service_client::CreditServiceClient;
use concord_proto::credit::v1::{CreditKind, CreditRecord, RecordCreditRequest, Severity};
use concord_proto::entity::v1::entity_service_client::EntityServiceClient;
use concord_proto::entity::v1::{Entity, LicenceStatus, RegisterEntityRequest};
use concord_proto::inspection::v1::inspection_service_client::InspectionServiceClient;
use concord_proto::inspection::v1::*;
use concord_tests::{at_least, item_content, Cluster};
use tonic::transport::Channel;
use tonic::Code;

const SAMR: u64 = 1;
const TRANS: u64 = 2;
const JUST: u64 = 3;
const ECO: u64 = 4;
const EMER: u64 = 5;

fn inspections(c: &Cluster, id: u64) -> InspectionServiceClient<Channel> {
    InspectionServiceClient::new(c.channel(id))
}

/// Valid codes in Yangquan's city district (area code 140302).
fn code(i: usize) -> String {
    let first = format!("91140302{i:09}");
    let check = concord_domain::uscc::check_character(&first).expect("alphabet");
    format!("{first}{check}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_draw_tasks_results_and_alert_across_the_cluster() {
    let c = Cluster::start(6).await;
    // A published item led by SAMR with every test department cooperating.
    let item = c
        .publish_item(SAMR, JUST, item_content("SAMR", "成品油流通"))
        .await;
    // Ten entities, six of them tier C after a serious violation.
    let mut directory = EntityServiceClient::new(c.channel(SAMR));
    let mut credit = CreditServiceClient::new(c.channel(TRANS));
    for i in 0..10 {
        directory
            .register_entity(RegisterEntityRequest {
                request_id: format!("reg-{i}"),
                entity: Some(Entity {
                    uscc: code(i),
                    name: format!("加油站{i}"),
                    district: "城区".into(),
                    industry: "refined_oil".into(),
                    licence: LicenceStatus::Active as i32,
                    ..Default::default()
                }),
                expected_revision: None,
            })
            .await
            .unwrap();
        if i < 6 {
            credit
                .record_credit(RecordCreditRequest {
                    request_id: format!("v-{i}"),
                    record: Some(CreditRecord {
                        uscc: code(i),
                        kind: CreditKind::Violation as i32,
                        severity: Severity::Serious as i32,
                        description: "超载".into(),
                        legal_basis: "《道路运输条例》".into(),
                        effective_ms: now_ms(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
    }
    for (node, dept) in [(SAMR, "SAMR"), (TRANS, "TRANS")] {
        for n in 1..=3 {
            inspections(&c, node)
                .put_inspector(PutInspectorRequest {
                    request_id: format!("{dept}-i{n}"),
                    inspector: Some(Inspector {
                        id: format!("{dept}-{n}"),
                        name: format!("检查员{n}"),
                        certification: "执法证".into(),
                        active: true,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
    }
    // The plan: 50 % of tier C (3 of 6), the policy's default for B (12.5 % of 4 → 1).
    let plan = inspections(&c, SAMR)
        .create_plan(CreatePlanRequest {
            request_id: "plan-1".into(),
            plan: Some(Plan {
                name: "成品油联合抽查".into(),
                participants: vec!["SAMR".into(), "TRANS".into()],
                items: vec![item.clone()],
                period_start_ms: now_ms(),
                period_end_ms: now_ms() + 30 * 86_400_000,
                ratio_overrides: vec![RatioOverride {
                    tier: "C".into(),
                    ratio_bp: 5000,
                }],
                inspectors_per_department: 2,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    // Only the lead draws.
    let e = inspections(&c, TRANS)
        .draw_plan(DrawPlanRequest {
            plan_id: plan.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let drawn = inspections(&c, SAMR)
        .draw_plan(DrawPlanRequest {
            request_id: "draw-1".into(),
            plan_id: plan.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let revision = drawn.header.unwrap().revision;
    let draw = drawn.draw.unwrap();
    let c_tier = draw.tiers.iter().find(|t| t.tier == "C").unwrap();
    assert_eq!((c_tier.population, c_tier.drawn), (6, 3));
    assert_eq!(drawn.tasks.len(), draw.entities.len());
    // The same draw on every node, and it verifies everywhere.
    let mut snapshots = vec![];
    for id in 1..=6 {
        let mut client = inspections(&c, id);
        let d = client
            .get_draw(GetDrawRequest {
                plan_id: plan.id.clone(),
                read: at_least(revision),
            })
            .await
            .unwrap()
            .into_inner()
            .draw
            .unwrap();
        // The DrawPlan answer leaves out the population snapshot; the rest matches.
        assert_eq!(d.population_size, 10, "node {id}");
        assert_eq!(
            (&d.seed, &d.entities, &d.assignments, &d.digest),
            (&draw.seed, &draw.entities, &draw.assignments, &draw.digest),
            "node {id}"
        );
        snapshots.push(d);
        let v = client
            .verify_draw(VerifyDrawRequest {
                plan_id: plan.id.clone(),
                read: at_least(revision),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.verified, "node {id}: {:?}", v.problems);
    }

    assert!(snapshots.iter().all(|s| s == &snapshots[0]));

    // Results for the first task: a stranger is refused; each part files once.
    let task = drawn.tasks[0].clone();
    let result_of = |dept: &str| {
        let part = task.parts.iter().find(|p| p.department == dept).unwrap();
        InspectionResult {
            outcome: Outcome::Compliant as i32,
            findings: "未发现问题".into(),
            evidence: vec!["ab".repeat(32)],
            inspectors: part.inspectors.clone(),
            public: true,
        }
    };
    let e = inspections(&c, EMER)
        .submit_result(SubmitResultRequest {
            task_id: task.id.clone(),
            result: Some(result_of("SAMR")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    for (node, dept) in [(TRANS, "TRANS"), (SAMR, "SAMR")] {
        inspections(&c, node)
            .submit_result(SubmitResultRequest {
                request_id: format!("r-{dept}"),
                task_id: task.id.clone(),
                result: Some(result_of(dept)),
            })
            .await
            .unwrap();
    }
    let mut late = result_of("SAMR");
    late.findings = "补充".into();
    let e = inspections(&c, SAMR)
        .submit_result(SubmitResultRequest {
            task_id: task.id.clone(),
            result: Some(late),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // A non-public result of another task is not shown to departments outside it.
    if let Some(other) = drawn.tasks.get(1) {
        let part = other.parts.iter().find(|p| p.department == "SAMR").unwrap();
        inspections(&c, SAMR)
            .submit_result(SubmitResultRequest {
                request_id: "r-private".into(),
                task_id: other.id.clone(),
                result: Some(InspectionResult {
                    outcome: Outcome::NonCompliant as i32,
                    findings: "台账不全".into(),
                    inspectors: part.inspectors.clone(),
                    public: false,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        for (node, sees) in [(TRANS, true), (JUST, false)] {
            let t = inspections(&c, node)
                .get_task(GetTaskRequest {
                    id: other.id.clone(),
                    read: concord_tests::read(concord_proto::common::v1::Consistency::Linearizable),
                })
                .await
                .unwrap()
                .into_inner()
                .task
                .unwrap();
            let samr = t.parts.iter().find(|p| p.department == "SAMR").unwrap();
            assert_eq!(samr.result.is_some(), sees, "node {node}");
        }
    }
    // Over-inspection: the joint visit counts once; two ad-hoc inspections by two
    // more departments reach 3 inspections by ≥ 2 departments — the alert.
    c.admin(c.must_leader().await)
        .set_over_inspection_rule(SetOverInspectionRuleRequest {
            request_id: "rule-1".into(),
            rule: Some(OverInspectionRule {
                min_inspections: 3,
                min_departments: 2,
                window_days: 30,
            }),
        })
        .await
        .unwrap();
    let first = inspections(&c, EMER)
        .record_inspection(RecordInspectionRequest {
            request_id: "adhoc-1".into(),
            uscc: task.uscc.clone(),
            note: "消防检查".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.alert.is_none(), "2 inspections: below the threshold");
    let second = inspections(&c, ECO)
        .record_inspection(RecordInspectionRequest {
            request_id: "adhoc-2".into(),
            uscc: task.uscc.clone(),
            note: "环保检查".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let revision = second.header.unwrap().revision;
    let alert = second.alert.expect("the third inspection raises the alert");
    assert_eq!(alert.inspections, 3);
    assert_eq!(alert.departments, vec!["ECO", "EMER", "SAMR", "TRANS"]);
    for id in [SAMR, TRANS, ECO, EMER] {
        let inbox = inspections(&c, id)
            .list_inbox(ListInboxRequest {
                read: at_least(revision),
            })
            .await
            .unwrap()
            .into_inner()
            .alerts;
        assert_eq!(inbox.len(), 1, "node {id}");
        assert_eq!(inbox[0].id, alert.id);
    }
    let jus = inspections(&c, JUST)
        .list_inbox(ListInboxRequest {
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(jus.is_empty(), "JUST was not involved");
    // Mutual recognition: EMER sees both public results before planning its own.
    let seen = inspections(&c, EMER)
        .recent_results(RecentResultsRequest {
            uscc: task.uscc.clone(),
            read: at_least(revision),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(seen.len(), 2);
    // "One public": the plan's published results, for any member.
    let public = inspections(&c, JUST)
        .list_public_results(ListPublicResultsRequest {
            plan_id: plan.id.clone(),
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(public.len(), 2);
    c.shutdown().await;
}
