//! The ops port: plaintext grpc.health.v1 (what Kubernetes probes call, without a
//! client certificate) and Prometheus metrics, and nothing else.

use concord_proto::item::v1::ListItemsRequest;
use concord_tests::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_and_metrics_are_served_in_plaintext_on_the_ops_port_only() {
    let c = Cluster::start(3).await;
    let node = &c.nodes[&1];
    let ops = node.running.as_ref().unwrap().ops_addr.expect("ops port");
    // A probe without any certificate.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{ops}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(plain.clone());
    let r = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), ServingStatus::Serving);
    // Data is not on the ops port.
    let mut items = concord_proto::item::v1::item_service_client::ItemServiceClient::new(plain);
    let e = items
        .list_items(ListItemsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
    // Metrics count the calls made on the gRPC port, and show the raft position.
    c.items(1)
        .list_items(ListItemsRequest::default())
        .await
        .unwrap();
    let _ = c
        .items(1)
        .get_item(concord_proto::item::v1::GetItemRequest {
            id: "bad id".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let m = get(ops, "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    let line = |needle: &str| {
        m.lines()
            .find(|l| l.starts_with(needle) || (l.contains(needle) && !l.starts_with('#')))
            .unwrap_or_else(|| panic!("no {needle} in\n{m}"))
            .to_string()
    };
    let counted = |method: &str, code: &str| {
        m.lines().any(|l| {
            l.starts_with("concord_rpc_requests_total{")
                && l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
    };
    assert!(
        counted("concord.item.v1.ItemService/ListItems", "OK"),
        "{m}"
    );
    assert!(
        counted("concord.item.v1.ItemService/GetItem", "NOT_FOUND"),
        "{m}"
    );
    assert!(line("concord_raft{").contains("node_id=\"1\""));
    assert!(m.contains("field=\"leader\""));
    assert!(m.contains("concord_storage_bytes{"), "{m}");
    assert!(m.contains("concord_case_backlog{"), "{m}");
    assert!(m.contains("concord_rpc_duration_seconds_bucket{"), "{m}");
    c.shutdown().await;
}

/// The value of the sample `name{…}` whose labels include `label` (any labels when empty).
fn sample(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} with {label:?} in\n{metrics}"))
}

/// An operator reads where a slow write's time went from the leader's metrics:
/// the proposal as a whole, the raft log's syncs, each follower's AppendEntries
/// round trip, and the applies (with their batch sizes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leaders_metrics_split_a_write_into_sync_replication_and_apply() {
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let department = concord_tests::DEPARTMENTS[leader as usize - 1];
    for n in 0..3 {
        c.items(leader)
            .create_item(concord_proto::item::v1::CreateItemRequest {
                request_id: format!("metrics-{n}"),
                content: Some(concord_tests::item_content(
                    department,
                    &format!("item {n}"),
                )),
            })
            .await
            .expect("create");
    }
    let ops = c.nodes[&leader]
        .running
        .as_ref()
        .unwrap()
        .ops_addr
        .expect("ops port");
    let m = get(ops, "/metrics").await;
    let proposals = sample(&m, "concord_proposal_duration_seconds_count", "");
    assert!(proposals >= 3.0, "{m}");
    assert!(
        sample(&m, "concord_proposal_duration_seconds_sum", "") > 0.0,
        "{m}"
    );
    assert!(
        sample(&m, "concord_log_sync_duration_seconds_count", "") >= 1.0,
        "{m}"
    );
    let batches = sample(&m, "concord_apply_batch_duration_seconds_count", "");
    assert!(batches >= 1.0, "{m}");
    // Every proposal was applied, in batches of one or more.
    assert!(
        sample(&m, "concord_apply_batch_entries_sum", "") >= proposals,
        "{m}"
    );
    assert!(
        sample(&m, "concord_apply_batch_entries_sum", "") >= batches,
        "{m}"
    );
    for follower in c.followers(leader) {
        let peer = format!("peer=\"{follower}\"");
        let n = sample(&m, "concord_peer_append_duration_seconds_count", &peer);
        assert!(n >= 1.0, "no AppendEntries timed to {follower}:\n{m}");
    }
    c.shutdown().await;
}
