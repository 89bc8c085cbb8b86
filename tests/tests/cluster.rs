//! In-process three-node clusters on ephemeral ports: replication, consistency modes,
//! failover, exactly-once retries, restart, snapshot catch-up and watch resumption.

use std::time::Duration;

use concord_node::config::{Housekeeping, RaftTuning};
use concord_proto::cluster::v1::TriggerSnapshotRequest;
use concord_proto::common::v1::Consistency;
use concord_proto::item::v1::{CreateItemRequest, GetItemRequest, ListItemsRequest};
use concord_proto::watch::v1::{RecordKind, WatchRequest};
use concord_tests::{at_least, item_content, must_eventually, read, test_tuning, Cluster};
use tokio_stream::StreamExt;
use tonic::Code;

async fn create(
    c: &Cluster,
    node: u64,
    request_id: &str,
    name: &str,
) -> Result<(String, u64), tonic::Status> {
    let lead = c.nodes[&node].department.clone();
    let r = c
        .items(node)
        .create_item(CreateItemRequest {
            request_id: request_id.into(),
            content: Some(item_content(&lead, name)),
        })
        .await?
        .into_inner();
    Ok((r.item.expect("item").id, r.header.expect("header").revision))
}

/// The leader holds a new commit index at most a millisecond for entries to carry it
/// (the openraft patch in vendor/openraft/PATCHED.md); when none come it still
/// sends the index alone, so an idle follower applies a write at once, not at the
/// next heartbeat. Heartbeats here are 5 s apart: a follower that waited for one
/// would miss the 1.5 s bound for a write two times in three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_follower_applies_each_write_without_waiting_for_a_heartbeat() {
    let tuning = RaftTuning {
        heartbeat_ms: 5_000,
        election_timeout_min_ms: 11_000,
        election_timeout_max_ms: 12_000,
        ..test_tuning()
    };
    let c = Cluster::start_with(3, tuning, Housekeeping::default()).await;
    let leader = c.must_leader().await;
    let follower = c.followers(leader)[0];
    for i in 0..4 {
        let (_, revision) = create(&c, leader, &format!("idle-{i}"), &format!("闲置 {i}"))
            .await
            .expect("write at the leader");
        must_eventually(
            Duration::from_millis(1_500),
            &format!("follower {follower} applies revision {revision} with no write after it"),
            || async {
                let s = c.status(follower).await.ok()?;
                (s.applied_index >= revision).then_some(())
            },
        )
        .await;
    }
}

async fn count_items(c: &Cluster, node: u64, consistency: Consistency) -> usize {
    let mut n = 0;
    let mut token = String::new();
    loop {
        let page = c
            .items(node)
            .list_items(ListItemsRequest {
                page_size: 500,
                page_token: token,
                read: read(consistency),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        n += page.items.len();
        if page.next_page_token.is_empty() {
            return n;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_at_a_follower_is_readable_at_every_node_in_every_mode() {
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let follower = c.followers(leader)[0];
    let (id, revision) = create(&c, follower, "w-1", "写在跟随者")
        .await
        .expect("write at follower");
    for node in c.nodes.keys().copied() {
        // Linearizable: sees the acknowledged write immediately, on any node.
        let item = c
            .items(node)
            .get_item(GetItemRequest {
                id: id.clone(),
                version: 0,
                read: read(Consistency::Linearizable),
            })
            .await;
        assert_eq!(
            item.expect("linearizable get")
                .into_inner()
                .item
                .expect("item")
                .id,
            id
        );
        // min_revision: waits for the local replica, then reads locally.
        let r = c
            .items(node)
            .get_item(GetItemRequest {
                id: id.clone(),
                version: 0,
                read: at_least(revision),
            })
            .await
            .expect("min_revision get");
        assert!(r.into_inner().header.expect("header").revision >= revision);
        // Serializable: local and possibly stale, but converges.
        must_eventually(
            Duration::from_secs(5),
            "serializable read converges",
            || {
                let mut client = c.items(node);
                let id = id.clone();
                async move {
                    client
                        .get_item(GetItemRequest {
                            id,
                            version: 0,
                            read: read(Consistency::Serializable),
                        })
                        .await
                        .ok()
                }
            },
        )
        .await;
    }
    // The actor is the department of the node that received the write.
    let item = c
        .items(leader)
        .get_item(GetItemRequest {
            id,
            version: 0,
            read: None,
        })
        .await
        .expect("get")
        .into_inner()
        .item
        .expect("item");
    assert_eq!(
        item.content
            .expect("content")
            .lead
            .expect("lead")
            .department,
        c.nodes[&follower].department
    );
    c.shutdown().await;
}

/// A follower passes writes that arrive together to the leader in shared RPCs
/// (`forwarder`); each caller must still get the answer to its own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_at_a_follower_share_forwarding_rpcs_and_each_gets_its_own_answer() {
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let follower = c.followers(leader)[0];
    let writes = (0..64).map(|i| {
        let c = &c;
        async move {
            let name = format!("批量写入{i}");
            (
                name.clone(),
                create(c, follower, &format!("batch-{i}"), &name).await,
            )
        }
    });
    let answers = futures::future::join_all(writes).await;
    let mut revisions = std::collections::BTreeSet::new();
    for (name, answer) in &answers {
        let (id, revision) = answer.as_ref().expect("a concurrent write at a follower");
        assert!(
            revisions.insert(*revision),
            "revision {revision} answered twice"
        );
        let item = c
            .items(leader)
            .get_item(GetItemRequest {
                id: id.clone(),
                version: 0,
                read: read(Consistency::Linearizable),
            })
            .await
            .expect("get")
            .into_inner()
            .item
            .expect("item");
        assert_eq!(&item.content.expect("content").name, name, "item {id}");
    }
    // A retry of one of them is answered from its record, not applied again.
    let (first_id, first_revision) = answers[0].1.as_ref().expect("first write").clone();
    let again = create(&c, follower, "batch-0", "批量写入0")
        .await
        .expect("retry");
    assert_eq!(again, (first_id, first_revision));
    assert_eq!(count_items(&c, leader, Consistency::Linearizable).await, 64);
    // They did share RPCs: 64 writes arriving at once cannot each find one of
    // the forwarder's two slots free.
    let metrics = &c.nodes[&follower]
        .running
        .as_ref()
        .expect("running")
        .core
        .metrics;
    let (forwarded, batches) = (
        metrics.forwarded_writes.get(),
        metrics.forward_batches.get(),
    );
    assert!(forwarded >= 65, "{forwarded} writes forwarded");
    assert!(
        batches < forwarded,
        "{forwarded} writes in {batches} forwarding RPCs"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_continue_through_leader_failover_and_nothing_acknowledged_is_lost() {
    let mut c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let mut acked = vec![];
    for i in 0..10 {
        let node = c.followers(leader)[i % 2];
        acked.push(
            create(&c, node, &format!("before-{i}"), &format!("事项{i}"))
                .await
                .expect("write")
                .0,
        );
    }
    c.stop(leader).await;
    let new_leader = c.must_leader().await;
    assert_ne!(new_leader, leader);
    for i in 0..10 {
        let node = c
            .followers(new_leader)
            .first()
            .copied()
            .unwrap_or(new_leader);
        acked.push(
            create(&c, node, &format!("after-{i}"), &format!("事项{i}"))
                .await
                .expect("write after failover")
                .0,
        );
    }
    c.restart(leader).await;
    let max_rev = c.status(new_leader).await.expect("status").applied_index;
    for node in c.nodes.keys().copied() {
        c.must_apply(node, max_rev).await;
        for id in &acked {
            c.items(node)
                .get_item(GetItemRequest {
                    id: id.clone(),
                    version: 0,
                    read: read(Consistency::Serializable),
                })
                .await
                .unwrap_or_else(|e| panic!("{id} missing on node {node}: {e}"));
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_id_across_a_leader_change_applies_once() {
    let mut c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let follower = c.followers(leader)[0];
    let lead = c.nodes[&follower].department.clone();
    let req = CreateItemRequest {
        request_id: "retry-me".into(),
        content: Some(item_content(&lead, "重试")),
    };
    let first = c
        .items(follower)
        .create_item(req.clone())
        .await
        .expect("first")
        .into_inner();
    c.stop(leader).await;
    c.must_leader().await;
    let again = c
        .items(follower)
        .create_item(req)
        .await
        .expect("retry")
        .into_inner();
    let (h1, h2) = (first.header.expect("header"), again.header.expect("header"));
    assert!(
        !h1.replayed && h2.replayed,
        "the retry is answered from the first result"
    );
    assert_eq!(h1.revision, h2.revision);
    assert_eq!(first.item, again.item);
    assert_eq!(
        count_items(&c, follower, Consistency::Linearizable).await,
        1
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_from_its_data_dir_returns_with_identical_state() {
    let mut c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let victim = c.followers(leader)[0];
    for i in 0..20 {
        create(&c, leader, &format!("r-{i}"), &format!("事项{i}"))
            .await
            .expect("write");
    }
    let before = c
        .items(victim)
        .list_items(ListItemsRequest {
            page_size: 500,
            read: read(Consistency::Linearizable),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let applied = before.header.as_ref().expect("header").revision;
    c.stop(victim).await;
    c.restart(victim).await;
    c.must_apply(victim, applied).await;
    let after = c
        .items(victim)
        .list_items(ListItemsRequest {
            page_size: 500,
            read: at_least(applied),
            ..Default::default()
        })
        .await
        .expect("list after restart")
        .into_inner();
    assert_eq!(before.items, after.items);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_added_after_log_purge_catches_up_by_snapshot() {
    let tuning = RaftTuning {
        keep_entries_behind_snapshot: 0,
        ..test_tuning()
    };
    let mut c = Cluster::start_with(3, tuning, Housekeeping::default()).await;
    let leader = c.must_leader().await;
    for i in 0..50 {
        create(&c, leader, &format!("s-{i}"), &format!("事项{i}"))
            .await
            .expect("write");
    }
    let snap = c
        .admin(leader)
        .trigger_snapshot(TriggerSnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    assert!(snap.snapshot_index >= 50);
    let purged = must_eventually(
        Duration::from_secs(10),
        "log purged behind the snapshot",
        || async {
            let s = c.status(leader).await.ok()?;
            (s.purged_index > 0).then_some(s.purged_index)
        },
    )
    .await;
    let learner = c.add_learner("ECO", leader).await;
    let target = c.status(leader).await.expect("status").applied_index;
    c.must_apply(learner, target).await;
    let s = c.status(learner).await.expect("learner status");
    assert!(
        s.snapshot_index >= purged,
        "the learner installed a snapshot covering the purged log"
    );
    assert_eq!(
        count_items(&c, learner, Consistency::Serializable).await,
        50
    );
    // The learner is a full replica that serves writes for its own department too.
    let (id, rev) = create(&c, learner, "from-learner", "生态事项")
        .await
        .expect("write at learner");
    c.must_apply(leader, rev).await;
    c.items(leader)
        .get_item(GetItemRequest {
            id,
            version: 0,
            read: None,
        })
        .await
        .expect("learner's write replicated");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_resumed_from_its_last_revision_sees_every_event_exactly_once() {
    let c = Cluster::start(3).await;
    let leader = c.must_leader().await;
    let watcher = c.followers(leader)[1];
    let start = c.status(watcher).await.expect("status").applied_index + 1;
    let mut written = vec![];
    for i in 0..5 {
        written.push(
            create(&c, leader, &format!("a-{i}"), &format!("事项{i}"))
                .await
                .expect("write")
                .1,
        );
    }
    let kinds = vec![RecordKind::Item as i32];
    let mut stream = c
        .watch(watcher)
        .watch(WatchRequest {
            start_revision: start,
            kinds: kinds.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut seen = vec![];
    while seen.len() < 3 {
        let msg = stream.next().await.expect("stream open").expect("message");
        seen.extend(msg.events.iter().map(|e| e.revision));
    }
    seen.truncate(3);
    drop(stream);
    for i in 5..10 {
        written.push(
            create(&c, leader, &format!("a-{i}"), &format!("事项{i}"))
                .await
                .expect("write")
                .1,
        );
    }
    let resume_from = seen.last().copied().expect("saw events") + 1;
    let mut stream = c
        .watch(watcher)
        .watch(WatchRequest {
            start_revision: resume_from,
            kinds,
            ..Default::default()
        })
        .await
        .expect("resume")
        .into_inner();
    while seen.len() < written.len() {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events arrive")
            .expect("stream open")
            .expect("message");
        seen.extend(msg.events.iter().map(|e| e.revision));
    }
    assert_eq!(seen, written, "every write's event exactly once, in order");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_compacted_history_is_out_of_range_with_the_oldest_revision() {
    let hk = Housekeeping {
        event_retention: 10,
        ..Housekeeping::default()
    };
    let c = Cluster::start_with(3, test_tuning(), hk).await;
    let leader = c.must_leader().await;
    for i in 0..40 {
        create(&c, leader, &format!("c-{i}"), &format!("事项{i}"))
            .await
            .expect("write");
    }
    let err = c
        .watch(leader)
        .watch(WatchRequest {
            start_revision: 1,
            ..Default::default()
        })
        .await
        .expect_err("compacted");
    assert_eq!(err.code(), Code::OutOfRange);
    let oldest: u64 = err
        .metadata()
        .get("concord-oldest-revision")
        .expect("oldest header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(oldest > 1);
    assert!(
        err.message().contains(&oldest.to_string()),
        "{}",
        err.message()
    );
    c.watch(leader)
        .watch(WatchRequest {
            start_revision: oldest,
            ..Default::default()
        })
        .await
        .expect("oldest is watchable");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_of_a_registered_department_joins_as_a_learner_by_itself() {
    use concord_proto::raft::v1::join_service_client::JoinServiceClient;
    use concord_proto::raft::v1::JoinRequest;
    use concord_tests::TestPki;
    let mut c = Cluster::start(3).await;
    // ECO is registered but has no node: its node asks the cluster and is added.
    let eco = c.start_joining("ECO").await;
    let status = must_eventually(Duration::from_secs(20), "ECO's node joined", || {
        let c = &c;
        async move {
            let s = c.status(1).await.ok()?;
            let m = s.members.iter().find(|m| m.node_id == eco)?;
            (m.department == "ECO" && !m.voter).then_some(s)
        }
    })
    .await;
    assert_eq!(status.members.len(), 4);
    // It replicates: a write at SAMR is readable at ECO's node.
    let (_, rev) = create(&c, 1, "join-1", "成品油联合抽查").await.unwrap();
    c.must_apply(eco, rev).await;
    // A second node of a department that has one is refused (an admin adds it).
    let mut as_eco = JoinServiceClient::new(c.channel_as(1, &TestPki::node("ECO")));
    let leader = c.must_leader().await;
    let mut at_leader = JoinServiceClient::new(c.channel_as(leader, &TestPki::node("ECO")));
    let e = at_leader
        .join(JoinRequest {
            node_id: 9,
            addr: "127.0.0.1:9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Any node names the leader; an unregistered department's node is refused.
    let r = as_eco
        .join(JoinRequest {
            node_id: eco,
            addr: c.nodes[&eco].addr.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.joined || r.leader_id == leader, "{r:?}");
    let mut stranger = JoinServiceClient::new(c.channel_as(1, &TestPki::node("NOBODY")));
    let e = stranger
        .join(JoinRequest {
            node_id: 10,
            addr: "127.0.0.1:10".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // A client certificate may not join.
    let mut client = JoinServiceClient::new(c.channel(1));
    let e = client
        .join(JoinRequest {
            node_id: 11,
            addr: "127.0.0.1:11".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bootstrapping_node_that_lost_its_disk_rejoins_instead_of_starting_a_second_cluster() {
    use concord_proto::cluster::v1::ChangeMembershipRequest;
    let mut c = Cluster::start(3).await;
    let (id, rev) = create(&c, 2, "before-loss", "成品油流通").await.unwrap();
    // Node 1 (bootstrap = true) loses its disk: as the runbook says, it is removed
    // from the voters first, then started again empty.
    let leader = c.must_leader().await;
    let survivor = if leader == 1 { 2 } else { leader };
    c.admin(leader)
        .change_membership(ChangeMembershipRequest {
            voters: vec![2, 3],
            retain: false,
        })
        .await
        .unwrap();
    c.stop(1).await;
    let data = c.nodes[&1].config.data_dir.clone();
    std::fs::remove_dir_all(&data).unwrap();
    // As a StatefulSet's pod 0 is configured: bootstrap, and the other voters to ask.
    let others: Vec<String> = [2, 3].iter().map(|i| c.nodes[i].addr.to_string()).collect();
    c.nodes.get_mut(&1).unwrap().config.join = others;
    c.restart(1).await;
    // It does not initialise a cluster of its own: it joins the existing one as a
    // learner and catches up.
    let status = must_eventually(Duration::from_secs(30), "node 1 rejoined", || {
        let c = &c;
        async move {
            let s = c.status(survivor).await.ok()?;
            let m = s.members.iter().find(|m| m.node_id == 1)?;
            (!m.voter).then_some(s)
        }
    })
    .await;
    assert_eq!(status.members.len(), 3);
    c.must_apply(1, rev).await;
    let item = c
        .items(1)
        .get_item(GetItemRequest {
            id,
            version: 0,
            read: read(Consistency::Linearizable),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(item.item.is_some());
    c.shutdown().await;
}

/// Voters and members as node 1 reports them, once they match.
async fn must_have_membership(c: &Cluster, at: u64, voters: &[u64], members: usize) {
    must_eventually(
        Duration::from_secs(30),
        &format!("voters {voters:?} among {members} members"),
        || async move {
            let s = c.status(at).await.ok()?;
            let v: Vec<u64> = s
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.node_id)
                .collect();
            (v == voters && s.members.len() == members).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_keeps_the_configured_voters_and_removes_nodes_above_the_last_id() {
    let mut c = Cluster::start(1).await;
    let eco = c.start_joining("ECO").await;
    let emer = c.start_joining("EMER").await;
    must_have_membership(&c, 1, &[1], 3).await;
    // Rolling restarts with a new membership target, as a Helm upgrade does.
    async fn roll(c: &mut Cluster, voters: usize, max_node_id: Option<u64>) {
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        for id in ids {
            c.stop(id).await;
            let m = &mut c.nodes.get_mut(&id).expect("node").config.membership;
            m.voters = Some(voters);
            m.max_node_id = max_node_id;
            m.interval_ms = 200;
            c.restart(id).await;
        }
    }
    // With a target of 3, the caught-up learners are promoted.
    roll(&mut c, 3, None).await;
    must_have_membership(&c, 1, &[1, eco, emer], 3).await;
    let (_, rev) = create(&c, eco, "promoted-1", "成品油联合抽查")
        .await
        .unwrap();
    c.must_apply(emer, rev).await;
    // With 2, one voter (never the leader) becomes a learner again.
    roll(&mut c, 2, None).await;
    must_eventually(Duration::from_secs(30), "two voters of three", || async {
        let s = c.status(1).await.ok()?;
        (s.members.iter().filter(|m| m.voter).count() == 2 && s.members.len() == 3).then_some(())
    })
    .await;
    // Shrunk to node ids up to 2 (a StatefulSet scaled down): node 3 leaves the
    // cluster, voter or learner, leader or not, and 1 and 2 end up the voters.
    roll(&mut c, 2, Some(2)).await;
    must_have_membership(&c, 1, &[1, eco], 2).await;
    let (_, rev) = create(&c, 1, "after-shrink", "成品油联合抽查")
        .await
        .unwrap();
    c.must_apply(eco, rev).await;
    c.shutdown().await;
}

/// The scenario `docker::the_leader_crash_scenario_loses_nothing_in_docker` runs with
/// kill -9, here with in-process stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_crash_scenario_loses_nothing_in_process() {
    let mut c = Cluster::start(3).await;
    concord_tests::scenario::leader_crash_loses_no_acknowledged_write(&mut c)
        .await
        .expect("scenario");
    c.shutdown().await;
}
