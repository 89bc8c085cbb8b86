//! The data-sharing catalogue across a real cluster: a non-public item is invisible
//! to departments outside the rule on Get, List, History and Watch (live and
//! replayed), and visible once its provider shares it with them.

use std::time::Duration;

use concord_proto::item::v1::{
    ChangeCause, CreateItemRequest, GetItemRequest, ItemHistoryRequest, ListItemsRequest,
    PublishItemRequest, ReviewItemRequest, ReviseItemRequest, SubmitForReviewRequest,
};
use concord_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use concord_proto::sharing::v1::{
    Confidentiality, Frequency, PutSharingRuleRequest, RecordClass, SharingRule,
};
use concord_proto::watch::v1::watch_service_client::WatchServiceClient;
use concord_proto::watch::v1::{event, Event, WatchRequest};
use concord_tests::{at_least, item_content, Cluster, TestPki};
use tokio_stream::StreamExt;
use tonic::Code;

/// Node ids of the departments in [`concord_tests::DEPARTMENTS`] order.
const SAMR: u64 = 1;
const JUST: u64 = 3;
const ECO: u64 = 4;
const EMER: u64 = 5;

/// Every event a watch from revision 1 at node `id` delivers through `through`.
async fn events_through(c: &Cluster, id: u64, through: u64) -> Vec<Event> {
    let mut client = WatchServiceClient::new(c.pki.channel(
        c.nodes[&id].addr,
        &TestPki::client(&c.nodes[&id].department),
    ));
    let mut stream = client
        .watch(WatchRequest {
            start_revision: 1,
            progress_interval_ms: 50,
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut out = vec![];
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("watch answers")
            .expect("stream open")
            .expect("message");
        out.extend(msg.events);
        if msg.progress_revision >= through {
            return out;
        }
    }
}

fn item_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.record {
            Some(event::Record::Item(i)) => Some(i.id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_public_items_are_invisible_outside_the_rule_on_every_read_path() {
    let c = Cluster::start(5).await;
    // SAMR drafts and publishes an item that must not be public.
    let mut samr = c.items(SAMR);
    let mut content = item_content("SAMR", "危险化学品联合执法部署");
    content.cooperating.retain(|d| d.department == "TRANS");
    content.public = false;
    content.non_public_reason = "涉及执法部署".into();
    let id = samr
        .create_item(CreateItemRequest {
            request_id: "secret-1".into(),
            content: Some(content.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap()
        .id;
    samr.submit_for_review(SubmitForReviewRequest {
        id: id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.items(JUST)
        .review_item(ReviewItemRequest {
            id: id.clone(),
            approve: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let published = samr
        .publish_item(PublishItemRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;

    // Whether department node `node` can see the item on Get, List and History.
    let visible = |node: u64, revision: u64| {
        let mut items = c.items(node);
        let id = id.clone();
        async move {
            let get = items
                .get_item(GetItemRequest {
                    id: id.clone(),
                    version: 0,
                    read: at_least(revision),
                })
                .await;
            let list = items
                .list_items(ListItemsRequest {
                    read: at_least(revision),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .items;
            let history = items
                .item_history(ItemHistoryRequest {
                    id: id.clone(),
                    read: at_least(revision),
                })
                .await;
            let listed = list.iter().any(|i| i.id == id);
            assert_eq!(get.is_ok(), listed, "node {node}: Get and List disagree");
            assert_eq!(
                history.is_ok(),
                listed,
                "node {node}: History and List disagree"
            );
            if let Err(e) = get {
                // Hidden exactly like a missing item: existence is confidential.
                assert_eq!(e.code(), Code::NotFound, "node {node}: {e:?}");
                assert!(!e.message().contains("permission"), "{e:?}");
            }
            listed
        }
    };
    assert!(visible(SAMR, published).await);
    assert!(visible(JUST, published).await, "the legality reviewer");
    assert!(!visible(ECO, published).await);
    assert!(!visible(EMER, published).await);

    // SAMR shares its item records with ECO.
    let rule =
        SharingServiceClient::new(c.pki.channel(c.nodes[&SAMR].addr, &TestPki::client("SAMR")))
            .put_sharing_rule(PutSharingRuleRequest {
                request_id: "share-1".into(),
                rule: Some(SharingRule {
                    id: "enforcement-plans".into(),
                    class: RecordClass::Item as i32,
                    readers: vec!["ECO".into()],
                    purpose: "联合执法准备".into(),
                    frequency: Frequency::OnChange as i32,
                    confidentiality: Confidentiality::Restricted as i32,
                    legal_basis: "《阳泉市监管数据共享办法》".into(),
                    ..Default::default()
                }),
                expected_revision: None,
            })
            .await
            .unwrap()
            .into_inner();
    let shared = rule.header.unwrap().revision;
    assert_eq!(rule.rule.unwrap().provider, "SAMR");
    assert!(visible(ECO, shared).await, "ECO is named by the rule");
    assert!(!visible(EMER, shared).await, "EMER is not");

    // A later change of the item: ECO's feed carries it, EMER's never carried any.
    let revised = samr
        .revise_item(ReviseItemRequest {
            request_id: "revise-1".into(),
            id: id.clone(),
            cause: ChangeCause::Amend as i32,
            change_note: "调整部署".into(),
            content: Some(content),
            expected_revision: None,
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let eco = events_through(&c, ECO, revised).await;
    let emer = events_through(&c, EMER, revised).await;
    assert!(item_ids(&eco).contains(&id), "ECO sees the item's events");
    assert!(
        item_ids(&emer).is_empty(),
        "EMER saw item events: {:?}",
        item_ids(&emer)
    );
    // Both see the catalogue change itself: the catalogue is known to every member.
    for events in [&eco, &emer] {
        assert!(events
            .iter()
            .any(|e| matches!(&e.record, Some(event::Record::SharingRule(_)))));
    }
    c.shutdown().await;
}
