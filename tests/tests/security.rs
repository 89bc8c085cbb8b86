//! Department identity and trust against real mutual-TLS listeners: every refused
//! connection with its reason, who may act for whom, forwarded writes that claim
//! another department, admin writes, certificate rotation, and the audit chain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use concord_node::network::{
    decode, encode, ForwardError, ForwardReply, ForwardRequest, ForwardWrite,
};
use concord_pki::{CertRole, Identity, Validity};
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::{
    AuditHeadRequest, Department, DepartmentKind, RegisterDepartmentRequest, StatusRequest,
    VerifyAuditRequest,
};
use concord_proto::item::v1::item_service_client::ItemServiceClient;
use concord_proto::item::v1::{CreateItemRequest, ListItemsRequest};
use concord_proto::raft::v1::raft_service_client::RaftServiceClient;
use concord_proto::raft::v1::RaftPayload;
use concord_tests::{at_least, item_content, must_eventually, Cluster, TestPki};
use tonic::Code;

fn days(from: i64, to: i64) -> Validity {
    let now = time::OffsetDateTime::now_utc();
    Validity {
        not_before: now + time::Duration::days(from),
        not_after: now + time::Duration::days(to),
    }
}

/// Waits until node `id` has recorded a refusal of `kind`.
async fn must_record(c: &Cluster, id: u64, kind: &str) {
    let log = c.nodes[&id]
        .running
        .as_ref()
        .expect("running")
        .core
        .security
        .refusals
        .clone();
    let seen = log.counts();
    must_eventually(
        Duration::from_secs(5),
        &format!("node {id} records a {kind} refusal (recorded so far: {seen:?})"),
        || {
            let log = log.clone();
            async move { log.counts().contains_key(kind).then_some(()) }
        },
    )
    .await;
}

async fn status_with(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    ClusterServiceClient::new(channel)
        .status(StatusRequest {})
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_connection_is_refused_with_its_reason() {
    let c = Cluster::start(3).await;
    let addr = c.nodes[&1].addr;
    let ca_pem = std::fs::read_to_string(c.pki.dir.join("ca.pem")).unwrap();
    let scratch = c.dir.path().join("scratch");

    // Plaintext to a TLS port.
    let plain = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    assert!(status_with(plain).await.is_err());
    must_record(&c, 1, "plaintext").await;

    // TLS without a client certificate.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        // TLS 1.3 reports the server's refusal on the first read.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut buf = [0u8; 64];
        assert!(
            !matches!(tls.read(&mut buf).await, Ok(n) if n > 0),
            "a connection without a client certificate was served"
        );
    }
    must_record(&c, 1, "no_client_certificate").await;

    // A certificate from a CA the node does not trust.
    let stranger = TestPki::new(&scratch.join("other-ca"));
    status_with(c.pki.channel(addr, &TestPki::client("SAMR")))
        .await
        .expect("the department's own client is served");
    let foreign = stranger.issue_loaded(
        &scratch.join("foreign"),
        &TestPki::client("SAMR"),
        days(-1, 30),
        &ca_pem,
    );
    let ch = concord_node::client::channel(&addr.to_string(), Some(foreign)).unwrap();
    assert!(status_with(ch).await.is_err());
    must_record(&c, 1, "unknown_ca").await;

    // Expired, and not yet valid.
    for (validity, kind, dir) in [
        (days(-30, -1), "expired", "expired"),
        (days(1, 30), "not_yet_valid", "future"),
    ] {
        let tls = c.pki.issue_loaded(
            &scratch.join(dir),
            &TestPki::client("SAMR"),
            validity,
            &ca_pem,
        );
        let ch = concord_node::client::channel(&addr.to_string(), Some(tls)).unwrap();
        assert!(status_with(ch).await.is_err(), "{kind} certificate served");
        must_record(&c, 1, kind).await;
    }

    // A client certificate on the raft service: wrong role.
    let vote = |ch| async move {
        RaftServiceClient::new(ch)
            .vote(RaftPayload::default())
            .await
    };
    let e = vote(c.pki.channel(addr, &TestPki::client("SAMR")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    must_record(&c, 1, "wrong_role").await;

    // A node certificate of a department with no member node.
    let e = vote(c.pki.channel(addr, &TestPki::node("ECO")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("ECO"), "{e:?}");
    must_record(&c, 1, "not_member").await;

    // A node certificate on a department service: wrong role again; a member's
    // node certificate on raft passes authentication (and fails only on the payload).
    let e = ItemServiceClient::new(c.pki.channel(addr, &TestPki::node("SAMR")))
        .list_items(ListItemsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = vote(c.pki.channel(addr, &TestPki::node("TRANS")))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::InvalidArgument,
        "member node authenticated: {e:?}"
    );

    // Another department's client certificate at this department's node.
    let e = ItemServiceClient::new(c.pki.channel(addr, &TestPki::client("TRANS")))
        .list_items(ListItemsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    must_record(&c, 1, "wrong_department").await;

    let counts = c.nodes[&1]
        .running
        .as_ref()
        .unwrap()
        .core
        .security
        .refusals
        .counts();
    eprintln!("refusals seen at node 1: {counts:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_forwarding_a_write_as_another_department_is_refused_at_the_leader() {
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let follower = c.followers(leader)[0];
    let (fdept, ldept) = (
        c.nodes[&follower].department.clone(),
        c.nodes[&leader].department.clone(),
    );
    // A modified node of `fdept` talks to the leader with its own node certificate.
    let mut raft =
        RaftServiceClient::new(c.pki.channel(c.nodes[&leader].addr, &TestPki::node(&fdept)));
    let write = |actor: &str, rid: &str| ForwardWrite {
        actor: actor.to_string(),
        request_id: rid.to_string(),
        command: concord_domain::Command::CreateItem {
            content: concord_node::convert::item_content(
                "content",
                Some(&item_content(actor, "冒名事项")),
            )
            .unwrap(),
        },
    };
    let forward = |actor: &str, rid: &str| ForwardRequest::Write(write(actor, rid));
    let send = |req: ForwardRequest| {
        let mut raft = raft.clone();
        async move {
            let reply = raft
                .forward(RaftPayload {
                    data: encode(&req).unwrap(),
                    chunk: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            decode::<Result<ForwardReply, ForwardError>>(&reply.data).unwrap()
        }
    };
    match send(forward(&ldept, "forged-1")).await {
        Err(ForwardError::Refused { code, message }) => {
            assert_eq!(code, Code::PermissionDenied as i32);
            assert!(
                message.contains(&fdept) && message.contains(&ldept),
                "{message}"
            );
        }
        other => panic!("a forged forward was not refused: {other:?}"),
    }
    // Acting for its own department is what forwarding is for.
    match send(forward(&fdept, "own-1")).await {
        Ok(ForwardReply::Written(r)) => assert!(r.result.is_ok(), "{r:?}"),
        other => panic!("an honest forward failed: {other:?}"),
    }
    // In a batch each write is checked on its own: the forged one is refused, the
    // honest one beside it is written.
    let batch = ForwardRequest::Writes(vec![write(&ldept, "forged-2"), write(&fdept, "own-2")]);
    match send(batch).await {
        Ok(ForwardReply::Writes(answers)) => match &answers[..] {
            [Err(ForwardError::Refused { code, .. }), Ok(r)] => {
                assert_eq!(*code, Code::PermissionDenied as i32);
                assert!(r.result.is_ok(), "{r:?}");
            }
            other => panic!("a batch with a forged write: {other:?}"),
        },
        other => panic!("a batch was not answered write by write: {other:?}"),
    }
    let _ = &mut raft;
    // Only the honest item exists, led by the follower's department.
    let items = ItemServiceClient::new(
        c.pki
            .channel(c.nodes[&leader].addr, &TestPki::client(&ldept)),
    )
    .list_items(ListItemsRequest {
        read: concord_tests::read(concord_proto::common::v1::Consistency::Linearizable),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .items;
    assert_eq!(items.len(), 2, "{items:?}");
    for item in &items {
        assert_eq!(
            item.content
                .as_ref()
                .unwrap()
                .lead
                .as_ref()
                .unwrap()
                .department,
            fdept
        );
    }
    must_record(&c, leader, "wrong_department").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_need_an_admin_certificate_and_run_on_the_leader() {
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let follower = c.followers(leader)[0];
    let req = || RegisterDepartmentRequest {
        request_id: "tax-1".into(),
        department: Some(Department {
            code: "TAX".into(),
            name: "市税务局".into(),
            name_en: "Tax bureau".into(),
            kind: DepartmentKind::Administrative as i32,
            roles: vec![],
            ..Default::default()
        }),
        expected_revision: None,
    };
    // A department's client certificate is not an admin's, even at its own node.
    let dept = c.nodes[&leader].department.clone();
    let e = ClusterServiceClient::new(
        c.pki
            .channel(c.nodes[&leader].addr, &TestPki::client(&dept)),
    )
    .register_department(req())
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // An admin at a follower is sent to the leader.
    let e = c
        .admin(follower)
        .register_department(req())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(
        e.metadata()
            .get("concord-leader-id")
            .and_then(|v| v.to_str().ok()),
        Some(leader.to_string().as_str())
    );
    assert_eq!(
        e.metadata()
            .get("concord-leader-addr")
            .and_then(|v| v.to_str().ok()),
        Some(c.nodes[&leader].addr.to_string().as_str())
    );
    // At the leader it applies, recorded in the audit chain as the admin's department.
    let r = c
        .admin(leader)
        .register_department(req())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.department.unwrap().code, "TAX");
    c.shutdown().await;
}

/// A stopped node's audit trail (fjall), once the node has let go of it: audit
/// records have a keyspace of their own (`concord_store`'s `keyspaces`).
fn open_audit(data_dir: &Path) -> Option<(fjall::Database, fjall::Keyspace)> {
    let db = fjall::Database::builder(data_dir.join("fjall"))
        .open()
        .ok()?;
    let audit = db
        .keyspace("audit", fjall::KeyspaceCreateOptions::default)
        .ok()?;
    Some((db, audit))
}

/// Rewrites the audit record of `revision` in a stopped node's files.
fn tamper_audit_record(data_dir: &Path, revision: u64) {
    let (db, sm) = open_audit(data_dir).expect("open the audit trail");
    let key = format!("s/audit/{revision:020}");
    let bytes = sm.get(&key).unwrap().expect("audit record");
    let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    record["actor"] = serde_json::Value::String("ECO".into());
    sm.insert(key, serde_json::to_vec(&record).unwrap())
        .unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_holds_the_same_audit_head_and_a_rewrite_is_detected() {
    let mut c = Cluster::start(3).await;
    let create = |c: &Cluster, id: u64, n: usize| {
        let dept = c.nodes[&id].department.clone();
        let mut items = c.items(id);
        async move {
            let mut last = 0;
            for i in 0..n {
                let r = items
                    .create_item(CreateItemRequest {
                        request_id: format!("{dept}-{i}"),
                        content: Some(item_content(&dept, &format!("事项{i}"))),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                last = r.header.unwrap().revision;
            }
            last
        }
    };
    let first = c.must_leader().await;
    create(&c, first, 5).await;
    c.stop(first).await;
    let second = c.must_leader().await;
    assert_ne!(first, second);
    let last = create(&c, second, 5).await;
    c.restart(first).await;
    let mut heads = vec![];
    for id in [1, 2, 3] {
        c.must_apply(id, last).await;
        let h = c
            .admin(id)
            .audit_head(AuditHeadRequest {
                read: at_least(last),
            })
            .await
            .unwrap()
            .into_inner();
        let v = c
            .admin(id)
            .verify_audit(VerifyAuditRequest {
                read: at_least(last),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.intact, "node {id}: {v:?}");
        assert_eq!(v.checked, h.count);
        heads.push((h.revision, h.hash, h.count));
    }
    assert!(heads.iter().all(|h| h == &heads[0]), "{heads:?}");
    assert_eq!(heads[0].0, last, "the last write is the head");
    assert!(heads[0].2 >= 11, "bootstrap and ten writes: {heads:?}");

    // Someone with disk access rewrites who did the 3rd recorded write on one node.
    let victim = c.followers(c.must_leader().await)[0];
    let data_dir = c.nodes[&victim].config.data_dir.clone();
    c.stop(victim).await;
    let revision = must_eventually(Duration::from_secs(10), "the store released", || {
        let data_dir = data_dir.clone();
        async move {
            let (_db, sm) = open_audit(&data_dir)?;
            let third = sm.prefix("s/audit/").nth(2)?.key().ok()?;
            Some(String::from_utf8_lossy(&third)[8..].parse::<u64>().unwrap())
        }
    })
    .await;
    tamper_audit_record(&data_dir, revision);
    c.restart(victim).await;
    let v = c
        .admin(victim)
        .verify_audit(VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!v.intact, "the rewrite went unnoticed");
    assert_eq!(v.broken_revision, revision, "{v:?}");
    eprintln!(
        "tampered audit record at revision {revision} detected: {}",
        v.problem
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart() {
    let c = Cluster::start(1).await;
    let addr = c.nodes[&1].addr;
    let node_files = c.pki.node_files("SAMR");
    let ca1 = std::fs::read_to_string(&node_files.ca).unwrap();
    let scratch = c.dir.path().join("rotation");
    let ca2 = TestPki::new(&scratch.join("ca2"));
    let ca2_pem = ca2.ca.cert_pem().to_string();
    let both = format!("{ca1}{ca2_pem}");
    // A client of the old CA that already trusts both (as it would during a rotation).
    let old_client = c.pki.issue_loaded(
        &scratch.join("old-client"),
        &TestPki::client("SAMR"),
        days(-1, 30),
        &both,
    );
    let old =
        || concord_node::client::channel(&addr.to_string(), Some(old_client.clone())).unwrap();
    status_with(old())
        .await
        .expect("old client before rotation");

    // Rotate: the bundle gains CA2, the node's certificate comes from CA2.
    let new_node = ca2
        .ca
        .issue(
            &Identity::new("SAMR", CertRole::Node, "node").unwrap(),
            &["127.0.0.1".into()],
            days(-1, 30),
        )
        .unwrap();
    concord_pki::layout::write_atomically(&node_files.ca, &both, false).unwrap();
    concord_pki::layout::write_atomically(&node_files.key, &new_node.key_pem, true).unwrap();
    concord_pki::layout::write_atomically(&node_files.cert, &new_node.cert_pem, false).unwrap();
    // A client that trusts only CA2 can connect once the node serves the new certificate.
    let new_client = ca2.issue_loaded(
        &scratch.join("new-client"),
        &TestPki::client("SAMR"),
        days(-1, 30),
        &ca2_pem,
    );
    must_eventually(Duration::from_secs(10), "new certificate served", || {
        let ch =
            concord_node::client::channel(&addr.to_string(), Some(new_client.clone())).unwrap();
        async move { status_with(ch).await.ok() }
    })
    .await;
    status_with(old())
        .await
        .expect("old CA still in the bundle");

    // Revoke CA1 by dropping it from the bundle: new connections with its certificates fail.
    concord_pki::layout::write_atomically(&node_files.ca, &ca2_pem, false).unwrap();
    must_eventually(Duration::from_secs(10), "old CA refused", || {
        let ch = old();
        async move { status_with(ch).await.is_err().then_some(()) }
    })
    .await;
    must_record(&c, 1, "unknown_ca").await;
    let ch = concord_node::client::channel(&addr.to_string(), Some(new_client.clone())).unwrap();
    status_with(ch).await.expect("new client after revocation");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_speak_in_raft_as_another_node() {
    let c = Cluster::start(3).await;
    // TRANS's node (node 2) asks node 3 for a vote, once as node 1 and once as itself.
    let mut raft = RaftServiceClient::new(c.pki.channel(c.nodes[&3].addr, &TestPki::node("TRANS")));
    let vote_as = |node: u64| {
        // Term 0 can never win, so the honest request changes nothing either.
        let rpc = openraft::raft::VoteRequest::new(openraft::Vote::new(0, node), None);
        RaftPayload {
            data: encode(&rpc).unwrap(),
            chunk: vec![],
        }
    };
    let e = raft.vote(vote_as(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("node 1") && e.message().contains("SAMR"),
        "{e:?}"
    );
    raft.vote(vote_as(2))
        .await
        .expect("a node speaking as itself is heard");
    let e = raft.vote(vote_as(9)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "a non-member id: {e:?}");
    must_record(&c, 3, "wrong_department").await;
    c.shutdown().await;
}

/// A raft stream is authenticated when it opens. A department whose nodes are all
/// removed from the cluster must be refused on the streams they already hold, as
/// on their next unary call, not served until the stream happens to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_removed_from_the_cluster_is_refused_on_the_stream_it_already_holds() {
    use concord_proto::cluster::v1::ChangeMembershipRequest;
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let removed = c.followers(leader)[0];
    let department = c.nodes[&removed].department.clone();
    let read_index = || RaftPayload {
        data: encode(&ForwardRequest::ReadIndex).unwrap(),
        chunk: vec![],
    };
    let (requests, queued) = tokio::sync::mpsc::channel(4);
    requests.send(read_index()).await.unwrap();
    let mut replies = RaftServiceClient::new(
        c.pki
            .channel(c.nodes[&leader].addr, &TestPki::node(&department)),
    )
    .forward_stream(tokio_stream::wrappers::ReceiverStream::new(queued))
    .await
    .expect("a member's node certificate opens the stream")
    .into_inner();
    let first = replies.message().await.unwrap().expect("an answer");
    let answer: Result<ForwardReply, ForwardError> = decode(&first.data).unwrap();
    assert!(
        matches!(answer, Ok(ForwardReply::ReadIndex { .. })),
        "{answer:?}"
    );

    let voters: Vec<u64> = c
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != removed)
        .collect();
    c.admin(leader)
        .change_membership(ChangeMembershipRequest {
            voters,
            retain: false,
        })
        .await
        .unwrap();
    requests.send(read_index()).await.unwrap();
    let e = replies
        .message()
        .await
        .expect_err("a removed department is refused on its open stream");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains(&department), "{e:?}");
    must_record(&c, leader, "not_member").await;
    c.shutdown().await;
}
