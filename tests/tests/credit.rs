//! The entity directory and credit tiers over gRPC on a six-department cluster:
//! field-named refusals, who may do what, tiers read at every node, a policy change
//! that re-tiers, and a joint-punishment listing every department hears about.

use std::time::Duration;

use concord_node::core::now_ms;
use concord_proto::credit::v1::credit_service_client::CreditServiceClient;
use concord_proto::credit::v1::{
    CreditKind, CreditRecord, GetTierPolicyRequest, GetTierRequest, PutTierPolicyRequest,
    RecordCreditRequest, Severity,
};
use concord_proto::entity::v1::entity_service_client::EntityServiceClient;
use concord_proto::entity::v1::{
    Entity, LicenceStatus, ListEntitiesRequest, ListKind, Listing, PutOnListRequest,
    RegisterEntityRequest,
};
use concord_proto::watch::v1::watch_service_client::WatchServiceClient;
use concord_proto::watch::v1::{event, RecordKind, WatchRequest};
use concord_tests::{at_least, Cluster, TestPki, DEPARTMENTS};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

const SAMR: u64 = 1;
const TRANS: u64 = 2;
const NDRC: u64 = 6;
const USCC: &str = "91140311729YDWUJ0U";

fn entities(c: &Cluster, id: u64) -> EntityServiceClient<Channel> {
    EntityServiceClient::new(c.channel(id))
}

fn credit(c: &Cluster, id: u64) -> CreditServiceClient<Channel> {
    CreditServiceClient::new(c.channel(id))
}

fn entity(uscc: &str) -> Entity {
    Entity {
        uscc: uscc.into(),
        name: "郊区成品油经营有限公司".into(),
        district: "郊区".into(),
        industry: "refined_oil".into(),
        address: "阳泉市郊区".into(),
        licence: LicenceStatus::Active as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiers_follow_credit_records_and_policy_at_every_node() {
    let c = Cluster::start(6).await;
    // A bad code is refused naming the field and the rule; nothing is registered.
    let e = entities(&c, SAMR)
        .register_entity(RegisterEntityRequest {
            entity: Some(entity("91140311729YDWUJ0X")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.metadata()
            .get("concord-field")
            .and_then(|v| v.to_str().ok()),
        Some("entity.uscc")
    );
    assert!(e.message().contains("check character"), "{e:?}");
    // Transport is no licensing registrar.
    let e = entities(&c, TRANS)
        .register_entity(RegisterEntityRequest {
            entity: Some(entity(USCC)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let registered = entities(&c, SAMR)
        .register_entity(RegisterEntityRequest {
            request_id: "reg-1".into(),
            entity: Some(entity(USCC)),
            expected_revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.entity.unwrap().tier, "B");

    // Transport records a serious violation: every node reads tier C, sampled 21-60 %.
    let recorded = credit(&c, TRANS)
        .record_credit(RecordCreditRequest {
            request_id: "v-1".into(),
            record: Some(CreditRecord {
                uscc: USCC.into(),
                kind: CreditKind::Violation as i32,
                severity: Severity::Serious as i32,
                description: "超载运输危险品".into(),
                legal_basis: "《道路危险货物运输管理规定》".into(),
                effective_ms: now_ms(),
                source_ref: "inspection-7".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let revision = recorded.header.unwrap().revision;
    assert_eq!(recorded.record.unwrap().department, "TRANS");
    for id in 1..=6 {
        let t = credit(&c, id)
            .get_tier(GetTierRequest {
                uscc: USCC.into(),
                read: at_least(revision),
            })
            .await
            .unwrap()
            .into_inner();
        let tier = t.tier.unwrap();
        assert_eq!(
            (
                tier.tier.as_str(),
                tier.score,
                tier.sampling_min_pct,
                tier.sampling_max_pct
            ),
            ("C", 60, 21, 60),
            "node {id}"
        );
        assert_eq!(t.history.len(), 2, "node {id}: {:?}", t.history);
    }
    let listed = entities(&c, TRANS)
        .list_entities(ListEntitiesRequest {
            tier: "C".into(),
            read: at_least(revision),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entities;
    assert_eq!(listed.len(), 1);

    // Only the credit authority changes the policy; a new base re-tiers at once.
    let mut policy = credit(&c, NDRC)
        .get_tier_policy(GetTierPolicyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    policy.base_score = 90;
    let e = credit(&c, SAMR)
        .put_tier_policy(PutTierPolicyRequest {
            policy: Some(policy.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let put = credit(&c, NDRC)
        .put_tier_policy(PutTierPolicyRequest {
            request_id: "policy-2".into(),
            policy: Some(policy),
            expected_version: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((put.policy.unwrap().version, put.retiered), (2, 1));
    let t = credit(&c, TRANS)
        .get_tier(GetTierRequest {
            uscc: USCC.into(),
            read: at_least(put.header.unwrap().revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.tier.unwrap().tier, "B");
    assert!(t.history.last().unwrap().cause.contains("policy v2"));

    // A joint-punishment listing reaches every department's feed.
    let mut watches = vec![];
    for id in 1..=6u64 {
        let mut client = WatchServiceClient::new(c.pki.channel(
            c.nodes[&id].addr,
            &TestPki::client(DEPARTMENTS[id as usize - 1]),
        ));
        watches.push(
            client
                .watch(WatchRequest {
                    kinds: vec![RecordKind::Listing as i32],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let listing = entities(&c, NDRC)
        .put_on_list(PutOnListRequest {
            request_id: "list-1".into(),
            listing: Some(Listing {
                list: ListKind::Punishment as i32,
                uscc: USCC.into(),
                reason: "严重违法失信".into(),
                legal_basis: "《失信联合惩戒备忘录》".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .listing
        .unwrap();
    for (i, stream) in watches.iter_mut().enumerate() {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("listing event arrives")
            .expect("stream open")
            .expect("message");
        let heard = msg.events.iter().any(|e| {
            e.action == "listing.added"
                && matches!(&e.record, Some(event::Record::Listing(l)) if l.id == listing.id)
        });
        assert!(heard, "{} did not hear the listing", DEPARTMENTS[i]);
    }
    c.shutdown().await;
}
