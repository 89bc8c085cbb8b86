//! One cluster harness for the workspace tests: real nodes (in this process, on
//! ephemeral ports, each with its own data dir and certificates from a test CA,
//! mutual TLS on every connection) and `must_*` helpers that wait on a condition
//! with a deadline and fail loudly.

pub mod campaign;
pub mod docker;
pub mod lin;
pub mod scenario;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_node::config::{Housekeeping, Limits, RaftTuning, TlsSettings};
use concord_node::{NodeConfig, RunningNode};
use concord_pki::{layout, Ca, CertRole, Identity, ReloadingTls, TlsFiles, Validity};
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::{
    AddLearnerRequest, ListDepartmentsRequest, StatusRequest, StatusResponse,
};
use concord_proto::common::v1::{Consistency, ReadOptions};
use concord_proto::item::v1::item_service_client::ItemServiceClient;
use concord_proto::item::v1::{DepartmentDuty, ItemContent};
use concord_proto::watch::v1::watch_service_client::WatchServiceClient;
use tonic::transport::Channel;

/// The first of `n` consecutive ports on 127.0.0.1 that nothing listens on, for
/// nodes started as processes (which bind their ports themselves, later).
///
/// Taken below the kernel's ephemeral range: a port that binding port 0 gives is
/// one any outgoing connection may take before the node binds it. In CI the scale
/// bench's learner, started a minute after the check, lost its port that way, and
/// the run waited for it until the test's timeout. Candidates are spread by process
/// and by call, so concurrent tests do not pick the same ones.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let ephemeral: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low: u16 = 10_000;
    let span = u64::from(ephemeral.saturating_sub(low).saturating_sub(n).max(1));
    let seed = u64::from(std::process::id()) << 20 ^ CALLS.fetch_add(1, Ordering::Relaxed) << 8;
    for attempt in 0..1000u64 {
        // splitmix64 of the seed: neighbouring seeds land far apart.
        let mut z = (seed + attempt).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let first = low + ((z ^ (z >> 31)) % span) as u16;
        let held: Vec<_> = (0..n)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)))
            .collect();
        if held.iter().all(|r| r.is_ok()) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports between {low} and {ephemeral}");
}

/// Whether `program` runs (as `program version_arg`). In CI (`CI` set) its absence
/// fails the test instead of skipping it, as Docker's does
/// ([`docker::require_docker`]).
pub fn require_tool(program: &str, version_arg: &str, install: &str) -> bool {
    if std::process::Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {program} is missing"
    );
    eprintln!("SKIPPED: {program} is missing ({install})");
    false
}

/// Node departments in start order: node 1 is SAMR, …, node 6 NDRC (the credit authority).
pub const DEPARTMENTS: [&str; 6] = ["SAMR", "TRANS", "JUST", "ECO", "EMER", "NDRC"];

/// A test CA in a directory, issuing (once) and loading certificates on demand.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: Ca,
    loaded: Mutex<HashMap<Identity, Arc<ReloadingTls>>>,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        concord_pki::install_default_provider();
        let ca = layout::init_ca(dir, "Concord test CA", 30, false).expect("test CA");
        TestPki {
            dir: dir.to_path_buf(),
            ca,
            loaded: Mutex::default(),
        }
    }

    pub fn node(department: &str) -> Identity {
        Identity::new(department, CertRole::Node, "node").expect("identity")
    }

    pub fn client(department: &str) -> Identity {
        Identity::new(department, CertRole::Client, "app").expect("identity")
    }

    pub fn admin() -> Identity {
        Identity::new("BIGDATA", CertRole::Admin, "operator").expect("identity")
    }

    /// The files of `id`, issued by the test CA the first time they are asked for.
    pub fn files(&self, id: &Identity) -> TlsFiles {
        let files = layout::tls_files(&self.dir, id);
        if !files.cert.exists() {
            let hosts = match id.role {
                CertRole::Node => vec!["127.0.0.1".to_string(), "localhost".to_string()],
                _ => vec![],
            };
            layout::issue_into(&self.ca, &self.dir, id, &hosts, Validity::days_from_now(30))
                .expect("issue certificate");
        }
        files
    }

    pub fn tls(&self, id: &Identity) -> Arc<ReloadingTls> {
        let mut loaded = self.loaded.lock().expect("pki lock");
        loaded
            .entry(id.clone())
            .or_insert_with(|| Arc::new(ReloadingTls::load(self.files(id)).expect("load TLS")))
            .clone()
    }

    /// A channel to `addr` presenting `id`'s certificate.
    pub fn channel(&self, addr: impl ToString, id: &Identity) -> Channel {
        concord_node::client::channel(&addr.to_string(), Some(self.tls(id))).expect("channel")
    }

    /// The TLS settings of a node of `department`: its own copies of the CA bundle,
    /// certificate and key (as on a real machine), so a test can rotate them.
    pub fn node_settings(&self, department: &str) -> TlsSettings {
        let f = self.node_files(department);
        TlsSettings {
            insecure: false,
            ca: f.ca,
            cert: f.cert,
            key: f.key,
            reload_interval_ms: 100,
            ..TlsSettings::default()
        }
    }

    /// Where the node of `department` reads its PEM files.
    pub fn node_files(&self, department: &str) -> TlsFiles {
        let issued = self.files(&Self::node(department));
        let dir = self.dir.join(format!("{department}-node-files"));
        let own = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
        };
        if !own.cert.exists() {
            std::fs::create_dir_all(&dir).expect("node files dir");
            for (from, to) in [
                (&issued.ca, &own.ca),
                (&issued.cert, &own.cert),
                (&issued.key, &own.key),
            ] {
                std::fs::copy(from, to).expect("copy node file");
            }
        }
        own
    }

    /// Issues a certificate for `id` valid over `validity` into `dir` (outside the
    /// usual layout) and loads it, trusting `ca_bundle_pem` as roots.
    pub fn issue_loaded(
        &self,
        dir: &Path,
        id: &Identity,
        validity: Validity,
        ca_bundle_pem: &str,
    ) -> Arc<ReloadingTls> {
        let hosts = match id.role {
            CertRole::Node => vec!["127.0.0.1".to_string()],
            _ => vec![],
        };
        let issued = self.ca.issue(id, &hosts, validity).expect("issue");
        std::fs::create_dir_all(dir).expect("dir");
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("cert.key"),
        };
        std::fs::write(&files.ca, ca_bundle_pem).expect("write");
        std::fs::write(&files.cert, &issued.cert_pem).expect("write");
        std::fs::write(&files.key, &issued.key_pem).expect("write");
        Arc::new(ReloadingTls::load(files).expect("load TLS"))
    }

    /// `CONCORD_TLS_*` variables for a `concord node` process of `department`.
    pub fn node_env(&self, department: &str) -> Vec<(String, String)> {
        let f = self.files(&Self::node(department));
        vec![
            ("CONCORD_TLS_CA".into(), f.ca.display().to_string()),
            ("CONCORD_TLS_CERT".into(), f.cert.display().to_string()),
            ("CONCORD_TLS_KEY".into(), f.key.display().to_string()),
        ]
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Fast timeouts so failover tests finish quickly on a 2-core machine.
pub fn test_tuning() -> RaftTuning {
    RaftTuning {
        heartbeat_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..RaftTuning::default()
    }
}

pub struct TestNode {
    pub id: u64,
    pub department: String,
    pub addr: SocketAddr,
    pub config: NodeConfig,
    pub running: Option<RunningNode>,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, TestNode>,
    pub pki: TestPki,
    pub dir: tempfile::TempDir,
    pub tuning: RaftTuning,
    pub housekeeping: Housekeeping,
}

fn node_config(
    id: u64,
    department: &str,
    addr: SocketAddr,
    data_dir: PathBuf,
    tuning: &RaftTuning,
    hk: &Housekeeping,
    pki: &TestPki,
) -> NodeConfig {
    NodeConfig {
        node_id: id,
        department: department.to_string(),
        listen: addr.to_string(),
        advertise: addr.to_string(),
        ops_listen: Some("127.0.0.1:0".into()),
        join: vec![],
        data_dir,
        bootstrap: false,
        initial_members: BTreeMap::new(),
        raft: tuning.clone(),
        limits: Limits {
            max_request_bytes: 64 * 1024,
            default_timeout_ms: 10_000,
        },
        housekeeping: hk.clone(),
        storage: Default::default(),
        tls: pki.node_settings(department),
        membership: Default::default(),
    }
}

impl Cluster {
    pub async fn start(voters: usize) -> Cluster {
        Self::start_with(voters, test_tuning(), Housekeeping::default()).await
    }

    /// Starts `voters` nodes (departments in [`DEPARTMENTS`] order); node 1 bootstraps.
    pub async fn start_with(
        voters: usize,
        tuning: RaftTuning,
        housekeeping: Housekeeping,
    ) -> Cluster {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(&dir.path().join("pki"));
        let mut listeners = vec![];
        for _ in 0..voters {
            listeners.push(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            );
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let members: BTreeMap<u64, String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, format!("{}@{a}", DEPARTMENTS[i])))
            .collect();
        let mut nodes = BTreeMap::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut config = node_config(
                id,
                DEPARTMENTS[i],
                addrs[i],
                dir.path().join(format!("node-{id}")),
                &tuning,
                &housekeeping,
                &pki,
            );
            if id == 1 {
                config.bootstrap = true;
                config.initial_members = members.clone();
            }
            let running = concord_node::start_with_listener(config.clone(), listener)
                .await
                .expect("start node");
            nodes.insert(
                id,
                TestNode {
                    id,
                    department: DEPARTMENTS[i].into(),
                    addr: addrs[i],
                    config,
                    running: Some(running),
                },
            );
        }
        let cluster = Cluster {
            nodes,
            pki,
            dir,
            tuning,
            housekeeping,
        };
        for id in cluster.nodes.keys() {
            cluster.must_be_ready(*id).await;
        }
        cluster
    }

    /// A new one-node cluster built from `backup` (see `concord restore`): node 1 of
    /// `department`, continuing `skip` revisions after the backup's.
    pub async fn start_restored(
        backup: &Path,
        department: &str,
        skip: u64,
    ) -> (Cluster, concord_store::state_machine::Restored) {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(&dir.path().join("pki"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let data = dir.path().join("node-1");
        let restored = concord_store::state_machine::restore(
            &data,
            backup,
            1,
            concord_store::NodeInfo {
                addr: addr.to_string(),
                department: department.into(),
            },
            skip,
        )
        .expect("restore");
        let (tuning, housekeeping) = (test_tuning(), Housekeeping::default());
        let config = node_config(1, department, addr, data, &tuning, &housekeeping, &pki);
        let running = concord_node::start_with_listener(config.clone(), listener)
            .await
            .expect("start restored node");
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            TestNode {
                id: 1,
                department: department.into(),
                addr,
                config,
                running: Some(running),
            },
        );
        let cluster = Cluster {
            nodes,
            pki,
            dir,
            tuning,
            housekeeping,
        };
        cluster.must_be_ready(1).await;
        (cluster, restored)
    }

    /// A channel to node `id` as its own department's client system.
    pub fn channel(&self, id: u64) -> Channel {
        let node = &self.nodes[&id];
        self.pki
            .channel(node.addr, &TestPki::client(&node.department))
    }

    /// A channel to node `id` presenting `identity`'s certificate.
    pub fn channel_as(&self, id: u64, identity: &Identity) -> Channel {
        self.pki.channel(self.nodes[&id].addr, identity)
    }

    /// Creates an item at node `lead` with `content`, has node `reviewer` (the
    /// legality reviewer) approve it, and publishes it; returns its id.
    pub async fn publish_item(&self, lead: u64, reviewer: u64, content: ItemContent) -> String {
        use concord_proto::item::v1::{
            CreateItemRequest, PublishItemRequest, ReviewItemRequest, SubmitForReviewRequest,
        };
        let mut items = self.items(lead);
        let id = items
            .create_item(CreateItemRequest {
                // Request ids are ASCII; item names need not be.
                request_id: format!(
                    "publish-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                ),
                content: Some(content),
            })
            .await
            .expect("create item")
            .into_inner()
            .item
            .expect("item")
            .id;
        items
            .submit_for_review(SubmitForReviewRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .expect("submit item");
        self.items(reviewer)
            .review_item(ReviewItemRequest {
                id: id.clone(),
                approve: true,
                ..Default::default()
            })
            .await
            .expect("review item");
        items
            .publish_item(PublishItemRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .expect("publish item");
        id
    }

    pub fn items(&self, id: u64) -> ItemServiceClient<Channel> {
        ItemServiceClient::new(self.channel(id))
    }

    /// ClusterService at node `id` with the operator's admin certificate.
    pub fn admin(&self, id: u64) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel_as(id, &TestPki::admin()))
    }

    pub fn watch(&self, id: u64) -> WatchServiceClient<Channel> {
        WatchServiceClient::new(self.channel(id))
    }

    pub async fn status(&self, id: u64) -> Result<StatusResponse, tonic::Status> {
        self.admin(id)
            .status(StatusRequest {})
            .await
            .map(|r| r.into_inner())
    }

    /// Waits until node `id` knows a leader and has the seeded department registry.
    pub async fn must_be_ready(&self, id: u64) {
        must_eventually(
            Duration::from_secs(20),
            &format!("node {id} ready"),
            || async move {
                let s = self.status(id).await.ok()?;
                if s.leader_id == 0 {
                    return None;
                }
                let read = Some(ReadOptions {
                    consistency: Consistency::Serializable as i32,
                    min_revision: 0,
                });
                let d = self
                    .admin(id)
                    .list_departments(ListDepartmentsRequest { read })
                    .await
                    .ok()?
                    .into_inner();
                (!d.departments.is_empty()).then_some(())
            },
        )
        .await
    }

    /// The leader as seen by every running node, once they agree.
    pub async fn must_leader(&self) -> u64 {
        must_eventually(Duration::from_secs(20), "an agreed leader", || async move {
            let mut leader = None;
            for (id, n) in &self.nodes {
                if n.running.is_none() {
                    continue;
                }
                let s = self.status(*id).await.ok()?;
                if s.leader_id == 0 || leader.is_some_and(|l| l != s.leader_id) {
                    return None;
                }
                leader = Some(s.leader_id);
            }
            let l = leader?;
            self.nodes
                .get(&l)
                .filter(|n| n.running.is_some())
                .map(|_| l)
        })
        .await
    }

    pub fn followers(&self, leader: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(id, n)| **id != leader && n.running.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Waits until node `id` has applied at least `revision`.
    pub async fn must_apply(&self, id: u64, revision: u64) {
        must_eventually(
            Duration::from_secs(30),
            &format!("node {id} applies {revision}"),
            || async move {
                let s = self.status(id).await.ok()?;
                (s.applied_index >= revision).then_some(())
            },
        )
        .await
    }

    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        if let Some(running) = node.running.take() {
            running.shutdown().await;
        }
    }

    /// Restarts a stopped node from its data dir on its old address.
    pub async fn restart(&mut self, id: u64) {
        let config = self.nodes[&id].config.clone();
        let running = must_eventually(
            Duration::from_secs(10),
            &format!("restart node {id}"),
            || {
                let config = config.clone();
                async move { concord_node::start(config).await.ok() }
            },
        )
        .await;
        self.nodes.get_mut(&id).expect("node").running = Some(running);
    }

    /// Starts one more node for `department` (not yet a member), with `join` as its
    /// join seeds; returns its id.
    async fn start_extra(&mut self, department: &str, join: Vec<String>) -> u64 {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = node_config(
            id,
            department,
            addr,
            self.dir.path().join(format!("node-{id}")),
            &self.tuning,
            &self.housekeeping,
            &self.pki,
        );
        config.join = join;
        let running = concord_node::start_with_listener(config.clone(), listener)
            .await
            .expect("start node");
        self.nodes.insert(
            id,
            TestNode {
                id,
                department: department.into(),
                addr,
                config,
                running: Some(running),
            },
        );
        id
    }

    /// Starts a new node for `department` that joins by itself (JoinService), asking
    /// every current node; returns its id without waiting.
    pub async fn start_joining(&mut self, department: &str) -> u64 {
        let seeds = self.nodes.values().map(|n| n.addr.to_string()).collect();
        self.start_extra(department, seeds).await
    }

    /// Starts a new node for `department` and adds it as a learner through node `via`.
    pub async fn add_learner(&mut self, department: &str, via: u64) -> u64 {
        let id = self.start_extra(department, vec![]).await;
        self.admin(via)
            .add_learner(AddLearnerRequest {
                node_id: id,
                addr: self.nodes[&id].addr.to_string(),
                department: department.into(),
                blocking: Some(true),
            })
            .await
            .expect("add learner");
        id
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// Polls `f` until it returns `Some`, panicking with `what` after `timeout`.
pub async fn must_eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn read(consistency: Consistency) -> Option<ReadOptions> {
    Some(ReadOptions {
        consistency: consistency as i32,
        min_revision: 0,
    })
}

pub fn at_least(revision: u64) -> Option<ReadOptions> {
    Some(ReadOptions {
        consistency: Consistency::Unspecified as i32,
        min_revision: revision,
    })
}

/// Item content led by `lead`, with every other test department cooperating, so
/// every test node may read it under the data-sharing rules (drafts are visible
/// only to the departments an item names).
pub fn item_content(lead: &str, name: &str) -> ItemContent {
    ItemContent {
        name: name.to_string(),
        field: "refined_oil".into(),
        lead: Some(DepartmentDuty {
            department: lead.into(),
            duty: "质量监管".into(),
            legal_basis: "《产品质量法》".into(),
        }),
        cooperating: DEPARTMENTS
            .iter()
            .filter(|d| **d != lead)
            .map(|d| DepartmentDuty {
                department: d.to_string(),
                duty: "协同监管".into(),
                legal_basis: "《道路运输条例》".into(),
            })
            .collect(),
        targets: "加油站、油库".into(),
        level: concord_proto::item::v1::SupervisionLevel::City as i32,
        methods: vec![concord_proto::item::v1::InspectionMethod::DoubleRandom as i32],
        mechanisms: vec![],
        public: true,
        non_public_reason: String::new(),
    }
}
