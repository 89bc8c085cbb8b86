//! The public API as a department's integration engineer meets it: the item life cycle
//! across three departments' nodes, status codes for every kind of refusal, and bad
//! input that names the field and changes nothing.

use concord_proto::cluster::v1::{GetDepartmentRequest, RegisterDepartmentRequest};
use concord_proto::common::v1::Consistency;
use concord_proto::item::v1::*;
use concord_proto::watch::v1::WatchRequest;
use concord_tests::{item_content, read, Cluster};
use tokio_stream::StreamExt;
use tonic::Code;

fn field_of(s: &tonic::Status) -> String {
    s.metadata()
        .get("concord-field")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn item_life_cycle_across_departments_with_every_refusal_code() {
    let c = Cluster::start(3).await; // 1 = SAMR, 2 = TRANS, 3 = JUST
    let (samr, trans, just) = (1, 2, 3);
    let created = c
        .items(samr)
        .create_item(CreateItemRequest {
            request_id: "e2e-1".into(),
            content: Some(item_content("SAMR", "成品油流通")),
        })
        .await
        .expect("create")
        .into_inner();
    let item = created.item.expect("item");
    let id = item.id.clone();
    let mut watch = c
        .watch(trans)
        .watch(WatchRequest {
            start_revision: item.created_revision,
            department: "TRANS".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();

    // Drafting for another department, reviewing without the role, publishing a draft.
    let e = c
        .items(trans)
        .create_item(CreateItemRequest {
            request_id: String::new(),
            content: Some(item_content("SAMR", "x")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .items(samr)
        .publish_item(PublishItemRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = c
        .items(samr)
        .submit_for_review(SubmitForReviewRequest {
            id: id.clone(),
            expected_revision: Some(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    let e = c
        .items(trans)
        .get_item(GetItemRequest {
            id: "item-999999".into(),
            version: 0,
            read: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    c.items(samr)
        .submit_for_review(SubmitForReviewRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("submit");
    let e = c
        .items(trans)
        .review_item(ReviewItemRequest {
            id: id.clone(),
            approve: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    c.items(just)
        .review_item(ReviewItemRequest {
            id: id.clone(),
            approve: true,
            opinion: "合法".into(),
            ..Default::default()
        })
        .await
        .expect("legality review by the justice bureau");
    let e = c
        .items(trans)
        .publish_item(PublishItemRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let published = c
        .items(samr)
        .publish_item(PublishItemRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("publish")
        .into_inner();
    assert_eq!(
        published.item.expect("item").status,
        ItemStatus::Published as i32
    );

    // The cooperating department sees each step on its change feed.
    let mut actions = vec![];
    while actions.len() < 4 {
        let msg = watch.next().await.expect("open").expect("message");
        actions.extend(msg.events.into_iter().map(|e| e.action));
    }
    assert_eq!(
        actions,
        [
            "item.created",
            "item.submitted",
            "item.approved",
            "item.published"
        ]
    );

    let listed = c
        .items(trans)
        .list_items(ListItemsRequest {
            status: ItemStatus::Published as i32,
            involves_department: "TRANS".into(),
            read: read(Consistency::Linearizable),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.items.len(), 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_invalid_argument_naming_the_field_and_changes_nothing() {
    let c = Cluster::start(3).await;

    let mut cases: Vec<(CreateItemRequest, &str)> = vec![];
    let with = |f: &dyn Fn(&mut ItemContent)| {
        let mut content = item_content("SAMR", "事项");
        f(&mut content);
        CreateItemRequest {
            request_id: String::new(),
            content: Some(content),
        }
    };
    cases.push((
        CreateItemRequest {
            request_id: String::new(),
            content: None,
        },
        "content",
    ));
    cases.push((with(&|c| c.name.clear()), "content.name"));
    cases.push((with(&|c| c.level = 99), "content.level"));
    cases.push((with(&|c| c.level = 0), "content.level"));
    cases.push((with(&|c| c.methods = vec![1, 42]), "content.methods[1]"));
    cases.push((with(&|c| c.lead = None), "content.lead"));
    cases.push((
        with(&|c| c.cooperating[0].department = "NOSUCH".into()),
        "content.cooperating[0].department",
    ));
    cases.push((
        with(&|c| c.cooperating[0].department = "SAMR".into()),
        "content.cooperating[0].department",
    ));
    cases.push((with(&|c| c.public = false), "content.non_public_reason"));
    cases.push((
        CreateItemRequest {
            request_id: "has/slash".into(),
            content: Some(item_content("SAMR", "x")),
        },
        "request_id",
    ));
    for (req, field) in cases {
        let e = c.items(1).create_item(req).await.expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert_eq!(field_of(&e), field, "{e:?}");
        assert!(e.message().starts_with(field), "{}", e.message());
    }
    let e = c
        .items(1)
        .list_items(ListItemsRequest {
            page_token: "zz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), field_of(&e).as_str()),
        (Code::InvalidArgument, "page_token")
    );
    let e = c
        .items(1)
        .list_items(ListItemsRequest {
            page_size: 10_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), field_of(&e).as_str()),
        (Code::InvalidArgument, "page_size")
    );
    let e = c
        .admin(1)
        .get_department(GetDepartmentRequest {
            code: "bad code".into(),
            read: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), field_of(&e).as_str()),
        (Code::InvalidArgument, "code")
    );
    let e = c
        .admin(1)
        .register_department(RegisterDepartmentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), field_of(&e).as_str()),
        (Code::InvalidArgument, "department")
    );

    // Larger than the node's request limit: refused before decoding.
    let huge = with(&|c| c.targets = "大".repeat(100_000));
    let e = c.items(1).create_item(huge).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{e:?}"
    );

    // Nothing was created. (An unregistered department is refused at apply, where the
    // registry is known; every other case never reached the log.)
    let listed = c
        .items(2)
        .list_items(ListItemsRequest {
            read: read(Consistency::Linearizable),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.items.is_empty(), "{:?}", listed.items);
    c.shutdown().await;
}
