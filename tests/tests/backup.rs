//! Backup and restore: an online, consistent backup of a running replica to a
//! checksummed file, and a new cluster built from it whose revisions move forward —
//! a watcher that had read past the backup gets OUT_OF_RANGE, never a rewind.

use std::io::Write;

use concord_proto::cluster::v1::{BackupRequest, VerifyAuditRequest};
use concord_proto::common::v1::Consistency;
use concord_proto::item::v1::{CreateItemRequest, GetItemRequest};
use concord_proto::watch::v1::WatchRequest;
use concord_tests::{at_least, item_content, read, Cluster};
use sha2::Digest;
use tokio_stream::StreamExt;
use tonic::Code;

async fn create(c: &Cluster, node: u64, request_id: &str, name: &str) -> (String, u64) {
    let lead = c.nodes[&node].department.clone();
    let r = c
        .items(node)
        .create_item(CreateItemRequest {
            request_id: request_id.into(),
            content: Some(item_content(&lead, name)),
        })
        .await
        .unwrap()
        .into_inner();
    (r.item.unwrap().id, r.header.unwrap().revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_into_a_new_cluster_whose_revisions_move_forward() {
    let c = Cluster::start(3).await;
    let (before, rev) = create(&c, 1, "before", "成品油流通").await;
    c.must_apply(2, rev).await;
    // Online, from a follower, while the cluster serves.
    let mut stream = c
        .admin(2)
        .backup(BackupRequest {})
        .await
        .unwrap()
        .into_inner();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.backup");
    let mut file = std::fs::File::create(&path).unwrap();
    let (mut hash, mut revision, mut last) = (sha2::Sha256::new(), 0, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        revision = chunk.revision;
        hash.update(&chunk.data);
        file.write_all(&chunk.data).unwrap();
        if !chunk.sha256.is_empty() {
            last = Some(chunk.sha256);
        }
    }
    drop(file);
    assert_eq!(last.as_deref(), Some(hex::encode(hash.finalize()).as_str()));
    assert!(revision >= rev, "backup at {revision}, item at {rev}");
    let (after, _) = create(&c, 1, "after", "危化品运输").await;
    // A damaged backup is refused.
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let e = concord_store::state_machine::restore(
        &dir.path().join("x"),
        &damaged,
        1,
        concord_store::NodeInfo::default(),
        10,
    )
    .unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    c.shutdown().await;

    // A new cluster from the backup.
    let (r, restored) = Cluster::start_restored(&path, "SAMR", 1_000).await;
    assert_eq!(restored.backup_revision, revision);
    assert_eq!(restored.base_revision, revision + 1_000);
    let get = |id: String| {
        let mut items = r.items(1);
        async move {
            items
                .get_item(GetItemRequest {
                    id,
                    version: 0,
                    read: read(Consistency::Linearizable),
                })
                .await
        }
    };
    assert!(
        get(before.clone()).await.is_ok(),
        "state up to the backup is there"
    );
    assert_eq!(get(after).await.unwrap_err().code(), Code::NotFound);
    // Revisions move forward, past the skipped range.
    let (_, new_rev) = create(&r, 1, "restored", "城镇燃气").await;
    assert!(new_rev > revision + 1_000, "{new_rev}");
    // A watcher that had read past the backup is told, not rewound.
    let mut watch = r
        .watch(1)
        .watch(WatchRequest {
            start_revision: revision + 1,
            ..Default::default()
        })
        .await;
    let e = match &mut watch {
        Err(e) => e.clone(),
        Ok(s) => s.get_mut().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    // The audit chain carried over and still verifies.
    let v = r
        .admin(1)
        .verify_audit(VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(v.intact, "{v:?}");
    let _ = at_least(new_rev);
    r.shutdown().await;
}
