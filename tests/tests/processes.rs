//! The real `concord` binary as three processes, with mutual TLS from a test CA:
//! `kill -9` the leader under a steady write load, restart it, and find every
//! acknowledged write on every node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::StatusRequest;
use concord_proto::common::v1::Consistency;
use concord_proto::item::v1::item_service_client::ItemServiceClient;
use concord_proto::item::v1::{CreateItemRequest, GetItemRequest};
use concord_tests::{at_least, item_content, must_eventually, read, TestPki};

/// `target/<profile>/concord`, next to this test's `deps/` directory.
fn concord_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("concord");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p concord` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

struct Proc {
    child: Child,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn spawn(env: &[(String, String)], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(concord_binary())
        .arg("node")
        .envs(env.iter().cloned())
        .env("RUST_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn concord")
}

async fn status(pki: &TestPki, addr: &str) -> Option<concord_proto::cluster::v1::StatusResponse> {
    let mut c = ClusterServiceClient::new(pki.channel(addr, &TestPki::admin()));
    c.status(StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_leader_under_writes_loses_no_acknowledged_write() {
    concord_tests::init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = std::sync::Arc::new(TestPki::new(&dir.path().join("pki")));
    let departments = ["SAMR", "TRANS", "JUST"];
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let members: Vec<String> = (0..3)
        .map(|i| format!("{}={}@{}", i + 1, departments[i], addrs[i]))
        .collect();
    let mut procs: BTreeMap<u64, Proc> = BTreeMap::new();
    for i in 0..3 {
        let mut env = vec![
            ("CONCORD_NODE_ID".to_string(), (i + 1).to_string()),
            ("CONCORD_DEPARTMENT".to_string(), departments[i].to_string()),
            ("CONCORD_LISTEN".to_string(), addrs[i].clone()),
            (
                "CONCORD_DATA_DIR".to_string(),
                dir.path()
                    .join(format!("node-{}", i + 1))
                    .display()
                    .to_string(),
            ),
            ("CONCORD_BOOTSTRAP".to_string(), (i == 0).to_string()),
            ("CONCORD_INITIAL_MEMBERS".to_string(), members.join(",")),
        ];
        env.extend(pki.node_env(departments[i]));
        let child = spawn(&env, &dir.path().join(format!("node-{}.log", i + 1)));
        procs.insert(i as u64 + 1, Proc { child, env });
    }
    let leader = must_eventually(Duration::from_secs(30), "a leader", || async {
        let s = status(&pki, &addrs[0]).await?;
        (s.leader_id != 0 && s.applied_index >= 2).then_some(s.leader_id)
    })
    .await;

    // Writers at both followers; each write retried under its request id until it is
    // acknowledged or 15 s pass.
    let writers: Vec<_> = (1..=3u64)
        .filter(|id| *id != leader)
        .map(|id| {
            let addr = addrs[id as usize - 1].clone();
            let dept = departments[id as usize - 1].to_string();
            let pki = pki.clone();
            tokio::spawn(async move {
                let mut client =
                    ItemServiceClient::new(pki.channel(&addr, &TestPki::client(&dept)));
                let mut acked = vec![];
                let mut failed = 0;
                let until = Instant::now() + Duration::from_secs(4);
                let mut n = 0;
                while Instant::now() < until {
                    n += 1;
                    let req = CreateItemRequest {
                        request_id: format!("{dept}-{n}"),
                        content: Some(item_content(&dept, &format!("事项{n}"))),
                    };
                    let give_up = Instant::now() + Duration::from_secs(15);
                    loop {
                        match client.create_item(req.clone()).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                acked.push((
                                    r.item.expect("item").id,
                                    r.header.expect("header").revision,
                                ));
                                break;
                            }
                            Err(_) if Instant::now() < give_up => {
                                tokio::time::sleep(Duration::from_millis(50)).await
                            }
                            Err(_) => {
                                failed += 1;
                                break;
                            }
                        }
                    }
                }
                (acked, failed)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let victim = procs.get_mut(&leader).expect("leader proc");
    victim.child.kill().expect("kill -9"); // SIGKILL
    victim.child.wait().expect("reap");
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let env = victim.env.clone();
    victim.child = spawn(&env, &dir.path().join(format!("node-{leader}.log")));

    let mut acked = vec![];
    let mut failed = 0;
    for w in writers {
        let (a, f) = w.await.expect("writer");
        acked.extend(a);
        failed += f;
    }
    assert_eq!(failed, 0, "every write was eventually acknowledged");
    assert!(
        acked.len() > 20,
        "the load kept writing ({} acked)",
        acked.len()
    );
    let max_rev = acked.iter().map(|(_, r)| *r).max().unwrap_or(0);
    for (addr, dept) in addrs.iter().zip(departments) {
        let mut client = ItemServiceClient::new(pki.channel(addr, &TestPki::client(dept)));
        must_eventually(Duration::from_secs(30), "node catches up", || {
            let mut client = client.clone();
            let id = acked[0].0.clone();
            async move {
                client
                    .get_item(GetItemRequest {
                        id,
                        version: 0,
                        read: at_least(max_rev),
                    })
                    .await
                    .ok()
            }
        })
        .await;
        for (id, _) in &acked {
            client
                .get_item(GetItemRequest {
                    id: id.clone(),
                    version: 0,
                    read: read(Consistency::Serializable),
                })
                .await
                .unwrap_or_else(|e| panic!("acknowledged {id} missing at {addr}: {e}"));
        }
    }
    eprintln!("{} writes acknowledged across a kill -9 of leader node {leader} ({:?} after the kill until all verified)", acked.len(), killed_at.elapsed());
    for p in procs.values_mut() {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}
