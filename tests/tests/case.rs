//! Case hand-offs over gRPC: the loop across departments with its audit trail, a
//! push during a leader failover applied exactly once, and an inbox watch resumed
//! after a disconnect that delivers every case exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_proto::case::v1::case_service_client::CaseServiceClient;
use concord_proto::case::v1::*;
use concord_proto::cluster::v1::{AuditHeadRequest, ListAuditRequest};
use concord_proto::watch::v1::watch_service_client::WatchServiceClient;
use concord_proto::watch::v1::{event, RecordKind, WatchRequest};
use concord_tests::{at_least, must_eventually, Cluster, TestPki};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

fn cases(c: &Cluster, id: u64) -> CaseServiceClient<Channel> {
    CaseServiceClient::new(c.channel(id))
}

fn clue(to: &[&str], title: &str) -> Case {
    Case {
        kind: CaseKind::Clue as i32,
        source: CaseSource::Hotline12345 as i32,
        source_ref: "12345-0042".into(),
        uscc: "91140311729YDWUJ0U".into(),
        title: title.into(),
        description: "群众反映夜间违规卸油".into(),
        evidence: vec!["cd".repeat(32)],
        to: to.iter().map(|d| d.to_string()).collect(),
        priority: Priority::High as i32,
        ..Default::default()
    }
}

fn step(id: &str, reason: &str) -> CaseStepRequest {
    CaseStepRequest {
        id: id.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_case_is_pushed_disputed_assigned_resolved_and_closed_across_departments() {
    // SAMR, TRANS, JUST (the arbiter), ECO.
    let c = Cluster::start(4).await;
    let (samr, trans, just, eco) = (1, 2, 3, 4);
    let pushed = cases(&c, samr)
        .push_case(PushCaseRequest {
            request_id: "push-1".into(),
            case: Some(clue(&["TRANS"], "加油站违规储存危化品")),
        })
        .await
        .unwrap()
        .into_inner();
    let id = pushed.cases[0].id.clone();
    let first_revision = pushed.header.unwrap().revision;
    // Not visible to a department outside the case.
    let e = cases(&c, eco)
        .get_case(GetCaseRequest {
            id: id.clone(),
            read: at_least(first_revision),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The receiver sees it in its inbox, acknowledges, and rejects it.
    let inbox = cases(&c, trans)
        .list_inbox(ListCaseInboxRequest {
            read: at_least(first_revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.awaiting.len(), 1);
    let mut t = cases(&c, trans);
    t.acknowledge_case(step(&id, "")).await.unwrap();
    // Only the receiver accepts; the originator cannot.
    let e = cases(&c, samr)
        .accept_case(step(&id, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    t.reject_case(step(&id, "不属本部门职责")).await.unwrap();
    // Resolving a rejected case is not a step of the loop.
    let e = t
        .resolve_case(CaseStepRequest {
            id: id.clone(),
            resolution: Some(Resolution {
                outcome: "x".into(),
                measures: "y".into(),
                penalty_ref: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    cases(&c, samr)
        .escalate_case(step(&id, "职责争议"))
        .await
        .unwrap();
    let assigned = cases(&c, just)
        .assign_case(CaseStepRequest {
            id: id.clone(),
            to: "TRANS".into(),
            reason: "依《道路危险货物运输管理规定》属交通运输".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(assigned.status, "IN_PROGRESS");
    t.resolve_case(CaseStepRequest {
        id: id.clone(),
        resolution: Some(Resolution {
            outcome: "责令改正".into(),
            measures: "立案查处，罚款".into(),
            penalty_ref: "阳交罚〔2026〕12号".into(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let closed = cases(&c, samr)
        .confirm_feedback(step(&id, "确认办结"))
        .await
        .unwrap()
        .into_inner();
    let revision = closed.header.unwrap().revision;
    let case = closed.case.unwrap();
    assert_eq!(case.status, "CLOSED");
    let trail: Vec<(String, String)> = case
        .steps
        .iter()
        .map(|s| (s.action.clone(), s.by.clone()))
        .collect();
    assert_eq!(
        trail,
        [
            ("push", "SAMR"),
            ("acknowledge", "TRANS"),
            ("reject", "TRANS"),
            ("escalate", "SAMR"),
            ("assign", "JUST"),
            ("resolve", "TRANS"),
            ("confirm_feedback", "SAMR"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // The full-process record of the case, refused attempts included.
    let trail = c
        .admin(eco)
        .list_audit(ListAuditRequest {
            target: id.clone(),
            read: at_least(revision),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let kinds: Vec<(String, String, String)> = trail
        .iter()
        .map(|r| (r.kind.clone(), r.actor.clone(), r.outcome.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("push_case", "SAMR", "OK"),
            ("acknowledge_case", "TRANS", "OK"),
            ("accept_case", "SAMR", "PERMISSION_DENIED"),
            ("reject_case", "TRANS", "OK"),
            ("resolve_case", "TRANS", "FAILED_PRECONDITION"),
            ("escalate_case", "SAMR", "OK"),
            ("assign_case", "JUST", "OK"),
            ("resolve_case", "TRANS", "OK"),
            ("confirm_case_feedback", "SAMR", "OK"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    // Every replica holds the same audit chain through the close.
    let mut heads = vec![];
    for node in [samr, trans, just, eco] {
        c.must_apply(node, revision).await;
        let h = c
            .admin(node)
            .audit_head(AuditHeadRequest {
                read: at_least(revision),
            })
            .await
            .unwrap()
            .into_inner();
        heads.push((h.revision, h.hash));
    }
    assert!(heads.iter().all(|h| h == &heads[0]), "{heads:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_during_leader_failover_is_applied_exactly_once() {
    let mut c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let origin = c.followers(leader)[0];
    let receiver = c.followers(leader)[1];
    let to = c.nodes[&receiver].department.clone();
    let request = PushCaseRequest {
        request_id: "failover-push-1".into(),
        case: Some(clue(&[to.as_str()], "故障切换中移交")),
    };
    // The first attempt races the leader's shutdown; it may or may not land.
    let mut client = cases(&c, origin);
    let first = {
        let mut client = client.clone();
        let request = request.clone();
        tokio::spawn(async move { client.push_case(request).await })
    };
    c.stop(leader).await;
    let _ = first.await;
    // Retried under the same request id until a new leader answers.
    let answer = must_eventually(
        Duration::from_secs(20),
        "push through the new leader",
        || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.push_case(request).await.ok() }
        },
    )
    .await
    .into_inner();
    let id = answer.cases[0].id.clone();
    let again = client.push_case(request).await.unwrap().into_inner();
    assert_eq!(again.cases[0].id, id, "a retry answers with the same case");
    assert!(again.header.unwrap().replayed);
    let inbox = cases(&c, receiver)
        .list_inbox(ListCaseInboxRequest {
            read: at_least(answer.header.unwrap().revision),
        })
        .await
        .unwrap()
        .into_inner();
    let titles: Vec<&str> = inbox.awaiting.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, vec!["故障切换中移交"], "exactly one case arrived");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inbox_watch_resumed_after_a_disconnect_delivers_every_case_once() {
    let c = Cluster::start(3).await;
    let (samr, trans) = (1, 2);
    let push = |n: usize| {
        let mut client = cases(&c, samr);
        async move {
            client
                .push_case(PushCaseRequest {
                    request_id: format!("watch-push-{n}"),
                    case: Some(clue(&["TRANS"], &format!("线索{n}"))),
                })
                .await
                .unwrap()
                .into_inner()
                .cases[0]
                .id
                .clone()
        }
    };
    let mut sent = vec![];
    for n in 0..5 {
        sent.push(push(n).await);
    }
    let watch = |start: u64| {
        let mut client = WatchServiceClient::new(
            c.pki
                .channel(c.nodes[&trans].addr, &TestPki::client("TRANS")),
        );
        async move {
            client
                .watch(WatchRequest {
                    start_revision: start,
                    kinds: vec![RecordKind::Case as i32],
                    department: "TRANS".into(),
                    progress_interval_ms: 0,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Read two pushes, then drop the stream.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut last = 0;
    let mut stream = watch(1).await;
    while seen.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events")
            .expect("open")
            .expect("message");
        for e in msg.events {
            last = e.revision;
            if let (Some(event::Record::Case(case)), "case.pushed") = (&e.record, e.action.as_str())
            {
                *seen.entry(case.id.clone()).or_default() += 1;
            }
        }
    }
    drop(stream);
    for n in 5..10 {
        sent.push(push(n).await);
    }
    // Resume after the last revision seen: the rest arrive, none twice.
    let mut stream = watch(last + 1).await;
    while seen.len() < sent.len() {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events")
            .expect("open")
            .expect("message");
        for e in msg.events {
            if let (Some(event::Record::Case(case)), "case.pushed") = (&e.record, e.action.as_str())
            {
                *seen.entry(case.id.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), {
        let mut s = sent.clone();
        s.sort();
        s
    });
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    c.shutdown().await;
}

fn document(kind: DocumentKind, title: &str, n: &str) -> CaseDocument {
    CaseDocument {
        kind: kind as i32,
        title: title.into(),
        sha256: n.repeat(32),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crime_is_transferred_to_the_police_and_a_licence_is_pushed_to_its_supervisors() {
    use concord_proto::entity::v1::entity_service_client::EntityServiceClient;
    use concord_proto::entity::v1::{Entity, LicenceStatus, RegisterEntityRequest};
    // SAMR, TRANS, JUST; the public security bureau and the approval bureau join
    // as learners (a department's clients are served by its own node).
    let mut c = Cluster::start(3).await;
    let (samr, trans) = (1, 2);
    let psb = c.add_learner("PSB", 1).await;
    let approval = c.add_learner("APPROVAL", 1).await;
    let pushed = cases(&c, samr)
        .push_case(PushCaseRequest {
            request_id: "push-crime".into(),
            case: Some(clue(&["TRANS"], "无证经营危化品运输")),
        })
        .await
        .unwrap()
        .into_inner();
    let id = pushed.cases[0].id.clone();
    let mut t = cases(&c, trans);
    t.accept_case(step(&id, "")).await.unwrap();
    let docs = vec![
        document(DocumentKind::TransferLetter, "涉嫌犯罪案件移送书", "01"),
        document(DocumentKind::InvestigationReport, "调查报告", "02"),
        document(DocumentKind::ItemList, "涉案物品清单", "03"),
    ];
    // Without the list of items involved: refused, naming the field.
    let e = t
        .transfer_to_judicial(TransferToJudicialRequest {
            request_id: "transfer-1".into(),
            id: id.clone(),
            to: "PSB".into(),
            documents: docs[..2].to_vec(),
            reason: "涉嫌非法经营罪".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("documents"), "{e:?}");
    let transfer = t
        .transfer_to_judicial(TransferToJudicialRequest {
            request_id: "transfer-2".into(),
            id: id.clone(),
            to: "PSB".into(),
            documents: docs,
            reason: "涉嫌非法经营罪".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let revision = transfer.header.unwrap().revision;
    let transfer = transfer.case.unwrap();
    assert_eq!(transfer.kind, CaseKind::CriminalTransfer as i32);
    assert_eq!(transfer.parent, id);
    assert_eq!(transfer.documents.len(), 3);
    // The bureau finds it in its inbox at its own node, and asks for an appraisal.
    let mut p = cases(&c, psb);
    let inbox = p
        .list_inbox(ListCaseInboxRequest {
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.awaiting.len(), 1);
    assert_eq!(inbox.awaiting[0].id, transfer.id);
    p.accept_case(step(&transfer.id, "")).await.unwrap();
    let asked = p
        .request_assistance(RequestAssistanceRequest {
            request_id: "assist-1".into(),
            id: transfer.id.clone(),
            assistance: AssistanceKind::Appraisal as i32,
            description: "请对查扣危化品出具鉴定意见".into(),
            evidence: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let assistance = asked.case.unwrap();
    assert_eq!(assistance.kind, CaseKind::Assistance as i32);
    assert_eq!(
        (assistance.from.as_str(), assistance.to[0].as_str()),
        ("PSB", "TRANS")
    );
    let revision = asked.header.unwrap().revision;
    let inbox = t
        .list_inbox(ListCaseInboxRequest {
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(inbox.awaiting.iter().any(|c| c.id == assistance.id));
    // The administrative case lists its transfer.
    let parent = t
        .get_case(GetCaseRequest {
            id: id.clone(),
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(parent.linked, vec![transfer.id.clone()]);

    // 审管联动: a licence granted by the approval bureau reaches the supervisors.
    let item = c
        .publish_item(samr, 3, concord_tests::item_content("SAMR", "成品油零售"))
        .await;
    let uscc = "91140311729YDWUJ0U";
    EntityServiceClient::new(c.channel(samr))
        .register_entity(RegisterEntityRequest {
            request_id: "reg".into(),
            entity: Some(Entity {
                uscc: uscc.into(),
                name: "郊区成品油经营有限公司".into(),
                district: "郊区".into(),
                industry: "refined_oil".into(),
                licence: LicenceStatus::Active as i32,
                ..Default::default()
            }),
            expected_revision: None,
        })
        .await
        .unwrap();
    let mut a = cases(&c, approval);
    let decision = |number: &str, document: String| LicensingDecision {
        number: number.into(),
        uscc: uscc.into(),
        action: LicensingAction::Grant as i32,
        matter: "成品油零售经营许可".into(),
        items: vec![item.clone()],
        document,
        ..Default::default()
    };
    let e = a
        .record_licensing_decision(RecordLicensingDecisionRequest {
            request_id: "lic-bad".into(),
            decision: Some(decision("阳审批许字〔2026〕118号", "ef".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("decision.document"), "{e:?}");
    let recorded = a
        .record_licensing_decision(RecordLicensingDecisionRequest {
            request_id: "lic-1".into(),
            decision: Some(decision("阳审批许字〔2026〕118号", "ef".repeat(32))),
        })
        .await
        .unwrap()
        .into_inner();
    let revision = recorded.header.unwrap().revision;
    let receivers: Vec<String> = recorded.cases.iter().map(|c| c.to[0].clone()).collect();
    assert_eq!(receivers, ["ECO", "EMER", "JUST", "NDRC", "SAMR", "TRANS"]);
    // Any member reads the decision (双公示); TRANS has its notice in its inbox.
    let listed = cases(&c, trans)
        .list_licensing_decisions(ListLicensingDecisionsRequest {
            uscc: uscc.into(),
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.decisions.len(), 1);
    assert_eq!(listed.decisions[0].supervisors.len(), 6);
    let inbox = t
        .list_inbox(ListCaseInboxRequest {
            read: at_least(revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(inbox
        .awaiting
        .iter()
        .any(|c| c.kind == CaseKind::LicensingNotice as i32
            && c.source_ref == "阳审批许字〔2026〕118号"));
    // Only the licensing bureau records decisions.
    let e = cases(&c, samr)
        .record_licensing_decision(RecordLicensingDecisionRequest {
            request_id: "lic-2".into(),
            decision: Some(decision("阳审批许字〔2026〕119号", "ef".repeat(32))),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    c.shutdown().await;
}
