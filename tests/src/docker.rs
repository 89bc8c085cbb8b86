//! A Concord cluster in Docker containers (testcontainers), one container per
//! department on its own network, peers addressed by container name, mutual TLS
//! from a test CA. The node image is built here from the workspace binary — the
//! machine has no registry — as a `docker import` of a root file system holding the
//! binary and the shared libraries `ldd` lists.
//!
//! Faults: kill -9 (then start), stop/start, pause/unpause, disconnect/reconnect
//! from the network. testcontainers owns the containers' lifecycles (and removes
//! them on drop); kill and network changes go through the docker CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_pki::{layout, CertRole, Identity, Validity};
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::StatusRequest;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tonic::transport::{Channel, Endpoint};

use crate::TestPki;

pub const IMAGE: &str = "concord-node";
const PORT: u16 = 7000;

/// Whether a Docker engine answers. In CI (`CI` set) its absence fails the test
/// instead of skipping it.
pub fn require_docker() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but no Docker engine answers `docker info`: the Docker tests cannot run");
    }
    eprintln!("SKIPPED: no Docker engine (set CI to make this a failure)");
    false
}

/// The `concord` binary the tests and images use.
pub fn workspace_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CONCORD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/concord");
    if !bin.exists() {
        bail!(
            "{} is missing: build it first (`cargo build -p concord`), or set CONCORD_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// Runs `cmd`; its standard output, or an error with its standard error.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds (once per binary) the node image and returns its name:tag. The tag is the
/// binary's digest, so a rebuilt binary gets a fresh image.
pub fn ensure_image() -> anyhow::Result<String> {
    use sha2::Digest;
    let bin = workspace_binary()?;
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let tag = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
    let image = format!("{IMAGE}:{tag}");
    if Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(image);
    }
    let root = tempfile::tempdir()?;
    let r = root.path();
    for d in ["data", "pki", "tmp", "etc"] {
        std::fs::create_dir_all(r.join(d))?;
    }
    // Name resolution: glibc's files and dns backends are built into libc.so.6.
    std::fs::write(r.join("etc/nsswitch.conf"), "hosts: files dns\n")?;
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/:/concord\n")?;
    // Debug information is for the host; the image carries the code only.
    let stripped = r.join("concord");
    if Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&bin)
        .arg(&stripped)
        .status()
        .map_or(true, |s| !s.success())
    {
        std::fs::copy(&bin, &stripped)?;
    }
    for line in run(Command::new("ldd").arg(&bin))?.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            let dest = r.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("library path has a parent"))?;
            std::fs::copy(p, &dest).with_context(|| format!("copying {p}"))?;
        }
    }
    let tar = Command::new("tar")
        .args(["--owner=0", "--group=0", "-C"])
        .arg(r)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("tar")?;
    let out = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENTRYPOINT [\"/concord\"]",
            "--change",
            "CMD [\"node\"]",
            "--change",
            "EXPOSE 7000",
            "-",
            &image,
        ])
        .stdin(tar.stdout.context("tar output")?)
        .output()
        .context("docker import")?;
    if !out.status.success() {
        bail!(
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(image)
}

pub struct DockerNode {
    pub id: u64,
    pub department: String,
    /// Container name, also the host name peers dial.
    pub name: String,
    pub container: ContainerAsync<GenericImage>,
}

/// Host ports of the nodes, refreshed after every restart or reconnect (Docker
/// hands out a new one); channels look them up at every connection attempt.
pub type Ports = Arc<Mutex<BTreeMap<u64, u16>>>;

pub struct DockerCluster {
    pub network: String,
    pub nodes: BTreeMap<u64, DockerNode>,
    pub pki: TestPki,
    pub ports: Ports,
    image: String,
    run_id: String,
    /// Every node's config file.
    config: String,
    _dir: tempfile::TempDir,
}

/// Small snapshots and a short log tail, and a leader that waits for a stalled
/// peer only 3 s, so a node that is down for a few seconds under load comes back
/// behind the purged log and needs a snapshot.
const NODE_CONFIG: &str = "[raft]\nsnapshot_after_entries = 300\nkeep_entries_behind_snapshot = 50\nlagging_peer_grace_ms = 3000\n";

impl DockerCluster {
    /// Starts `departments.len()` voters; node 1 bootstraps the cluster.
    pub async fn start(departments: &[&str]) -> anyhow::Result<DockerCluster> {
        Self::start_with_config(departments, NODE_CONFIG).await
    }

    /// [`DockerCluster::start`] with `config` as every node's config file.
    pub async fn start_with_config(
        departments: &[&str],
        config: &str,
    ) -> anyhow::Result<DockerCluster> {
        crate::init_tracing();
        let image = ensure_image()?;
        let (name, tag) = image.split_once(':').context("image tag")?;
        let dir = tempfile::tempdir()?;
        let pki = TestPki::new(&dir.path().join("pki"));
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let network = format!("concord-{run_id}");
        let names: Vec<String> = (1..=departments.len())
            .map(|i| format!("concord-{run_id}-n{i}"))
            .collect();
        let members: Vec<String> = departments
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{}={d}@{}:{PORT}", i + 1, names[i]))
            .collect();
        let mut cluster = DockerCluster {
            network,
            nodes: BTreeMap::new(),
            pki,
            ports: Arc::default(),
            image: format!("{name}:{tag}"),
            run_id,
            config: config.to_string(),
            _dir: dir,
        };
        for (i, dept) in departments.iter().enumerate() {
            let id = i as u64 + 1;
            cluster
                .launch(id, dept, id == 1, &members.join(","))
                .await?;
        }
        for id in cluster.ids() {
            cluster
                .wait_serving(id, Duration::from_secs(60))
                .await
                .with_context(|| format!("node {id} never served"))?;
        }
        Ok(cluster)
    }

    /// Starts the container of node `id` for `department`.
    async fn launch(
        &mut self,
        id: u64,
        department: &str,
        bootstrap: bool,
        members: &str,
    ) -> anyhow::Result<()> {
        let name = format!("concord-{}-n{id}", self.run_id);
        let identity = Identity::new(department, CertRole::Node, format!("n{id}"))?;
        let hosts = vec![
            name.clone(),
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ];
        layout::issue_into(
            &self.pki.ca,
            &self.pki.dir,
            &identity,
            &hosts,
            Validity::days_from_now(30),
        )?;
        let files = layout::tls_files(&self.pki.dir, &identity);
        let (image, tag) = self.image.split_once(':').context("image tag")?;
        let container = GenericImage::new(image, tag)
            .with_exposed_port(ContainerPort::Tcp(PORT))
            .with_network(&self.network)
            .with_container_name(&name)
            .with_cmd(["node", "--config", "/etc/concord.toml"])
            .with_env_var("CONCORD_NODE_ID", id.to_string())
            .with_env_var("CONCORD_DEPARTMENT", department)
            .with_env_var("CONCORD_LISTEN", format!("0.0.0.0:{PORT}"))
            .with_env_var("CONCORD_ADVERTISE", format!("{name}:{PORT}"))
            .with_env_var("CONCORD_DATA_DIR", "/data")
            .with_env_var(
                "CONCORD_BOOTSTRAP",
                if bootstrap { "true" } else { "false" },
            )
            .with_env_var("CONCORD_INITIAL_MEMBERS", members)
            .with_env_var("CONCORD_TLS_CA", "/pki/ca.pem")
            .with_env_var("CONCORD_TLS_CERT", "/pki/node.pem")
            .with_env_var("CONCORD_TLS_KEY", "/pki/node.key")
            .with_env_var("RUST_LOG", "info")
            .with_copy_to("/etc/concord.toml", self.config.as_bytes().to_vec())
            .with_copy_to("/pki/ca.pem", std::fs::read(&files.ca)?)
            .with_copy_to("/pki/node.pem", std::fs::read(&files.cert)?)
            .with_copy_to("/pki/node.key", std::fs::read(&files.key)?)
            .start()
            .await
            .with_context(|| format!("starting container {name}"))?;
        let port = container.get_host_port_ipv4(PORT).await?;
        self.ports.lock().expect("ports").insert(id, port);
        self.nodes.insert(
            id,
            DockerNode {
                id,
                department: department.to_string(),
                name,
                container,
            },
        );
        Ok(())
    }

    /// Starts a node for `department` and adds it as a learner through the leader
    /// (without waiting for it to catch up); returns its id.
    pub async fn add_learner(&mut self, department: &str, leader: u64) -> anyhow::Result<u64> {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.launch(id, department, false, "").await?;
        let addr = format!("{}:{PORT}", self.nodes[&id].name);
        let mut req = tonic::Request::new(concord_proto::cluster::v1::AddLearnerRequest {
            node_id: id,
            addr,
            department: department.to_string(),
            blocking: Some(false),
        });
        req.set_timeout(Duration::from_secs(10));
        self.admin(leader).add_learner(req).await?;
        Ok(id)
    }

    /// Node `id`'s raft status.
    pub async fn status(
        &self,
        id: u64,
    ) -> anyhow::Result<concord_proto::cluster::v1::StatusResponse> {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        Ok(self.admin(id).status(req).await?.into_inner())
    }

    /// Status, asked again until it answers or `timeout` passes.
    pub async fn status_within(
        &self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<concord_proto::cluster::v1::StatusResponse> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.status(id).await {
                Ok(s) => return Ok(s),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(e.context(format!("node {id} gave no status in {timeout:?}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// A channel to node `id` presenting `identity`, dialling whatever host port the
    /// node has at the moment of each connection.
    pub fn channel_as(&self, id: u64, identity: &Identity) -> Channel {
        channel_to(self.ports.clone(), id, self.pki.tls(identity))
    }

    /// A channel to node `id` as its own department's client.
    pub fn channel(&self, id: u64) -> Channel {
        self.channel_as(id, &TestPki::client(&self.nodes[&id].department))
    }

    pub fn admin(&self, id: u64) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel_as(id, &TestPki::admin()))
    }

    async fn refresh_port(&self, id: u64) -> anyhow::Result<()> {
        let port = self.nodes[&id].container.get_host_port_ipv4(PORT).await?;
        self.ports.lock().expect("ports").insert(id, port);
        Ok(())
    }

    /// Waits until node `id` answers Status with a known leader.
    pub async fn wait_serving(&self, id: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut admin = self.admin(id);
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(Duration::from_secs(2));
            match admin.status(req).await {
                Ok(s) if s.get_ref().leader_id != 0 => return Ok(()),
                Ok(_) => last = "no leader yet".into(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("node {id}: {last}")
    }

    /// The leader as most reachable nodes see it (0: none agreed).
    pub async fn leader(&self) -> u64 {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.ids() {
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(Duration::from_secs(1));
            if let Ok(s) = self.admin(id).status(req).await {
                *votes.entry(s.get_ref().leader_id).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .filter(|(l, n)| *l != 0 && *n > self.nodes.len() / 2)
            .map(|(l, _)| l)
            .next()
            .unwrap_or(0)
    }

    fn container_id(&self, id: u64) -> String {
        self.nodes[&id].container.id().to_string()
    }

    /// kill -9: the process gets no chance to flush anything.
    pub async fn kill(&self, id: u64) -> anyhow::Result<()> {
        run(Command::new("docker").args(["kill", "-s", "KILL", &self.container_id(id)]))?;
        Ok(())
    }

    /// Starts a stopped or killed node again (with its data).
    pub async fn start_node(&self, id: u64) -> anyhow::Result<()> {
        self.nodes[&id].container.start().await?;
        self.refresh_port(id).await
    }

    /// A clean stop (SIGTERM, then the engine's grace period).
    pub async fn stop(&self, id: u64) -> anyhow::Result<()> {
        self.nodes[&id]
            .container
            .stop_with_timeout(Some(10))
            .await?;
        Ok(())
    }

    pub async fn pause(&self, id: u64) -> anyhow::Result<()> {
        Ok(self.nodes[&id].container.pause().await?)
    }

    pub async fn unpause(&self, id: u64) -> anyhow::Result<()> {
        Ok(self.nodes[&id].container.unpause().await?)
    }

    /// Cuts node `id` off the cluster network (and from clients: its published
    /// port goes with it).
    pub async fn disconnect(&self, id: u64) -> anyhow::Result<()> {
        run(Command::new("docker").args([
            "network",
            "disconnect",
            &self.network,
            &self.container_id(id),
        ]))?;
        Ok(())
    }

    pub async fn reconnect(&self, id: u64) -> anyhow::Result<()> {
        run(Command::new("docker").args([
            "network",
            "connect",
            "--alias",
            &self.nodes[&id].name,
            &self.network,
            &self.container_id(id),
        ]))?;
        self.refresh_port(id).await
    }

    /// The node's log so far (for failure reports).
    pub async fn logs(&self, id: u64) -> String {
        let c = &self.nodes[&id].container;
        let out = c.stdout_to_vec().await.unwrap_or_default();
        let err = c.stderr_to_vec().await.unwrap_or_default();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    }
}

/// A lazily connecting channel to node `id` through the host port in `ports`.
pub fn channel_to(ports: Ports, id: u64, tls: Arc<concord_pki::ReloadingTls>) -> Channel {
    Endpoint::from_static("http://concord-node")
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_with_connector_lazy(tower::service_fn(move |_uri| {
            let port = ports.lock().expect("ports").get(&id).copied().unwrap_or(1);
            let tls = tls.clone();
            async move {
                let uri: tonic::transport::Uri = format!("http://127.0.0.1:{port}")
                    .parse()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                concord_node::transport::dial(tls, uri).await
            }
        }))
}
