//! A cluster of `concord node` child processes on 127.0.0.1, for `concord dev` and
//! `concord bench --local`: the first `voters` departments initialise the cluster,
//! the rest join as learners, and every port speaks mutual TLS with a dev PKI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_pki::{CertRole, Identity, ReloadingTls};
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::{ListDepartmentsRequest, StatusRequest};
use concord_proto::common::v1::{Consistency, ReadOptions};

pub struct Spec<'a> {
    pub dir: &'a Path,
    pub departments: &'a [&'a str],
    pub voters: usize,
    pub base_port: u16,
    /// Plaintext everywhere, nobody authenticated (debugging only).
    pub insecure: bool,
    /// Further `CONCORD_*` settings for every node.
    pub env: Vec<(String, String)>,
    /// The last `later` departments are not started now: [`LocalCluster::start_later`]
    /// starts each and adds it as a learner (a learner that joins a loaded cluster).
    pub later: usize,
}

pub struct LocalCluster {
    /// The running nodes, in department order (those started so far).
    pub children: Vec<tokio::process::Child>,
    pub addrs: Vec<String>,
    pub departments: Vec<String>,
    pub pki_dir: PathBuf,
    pub identities: Vec<Identity>,
    pub admin: Identity,
    /// The admin's TLS (None when insecure).
    pub tls: Option<Arc<ReloadingTls>>,
    launch: Launch,
}

/// How node `i` is started, kept so a node can be started again or later.
struct Launch {
    exe: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// `CONCORD_INITIAL_MEMBERS` of the voters.
    members: String,
    voters: usize,
}

impl LocalCluster {
    /// Starts the nodes and returns once every one knows the leader and has applied
    /// the seeded department registry. A node that exits during start fails it.
    pub async fn start(spec: Spec<'_>) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(spec.dir)?;
        let pki_dir = spec.dir.join("pki");
        let identities = crate::pki::dev_identities(spec.departments);
        let admin = identities
            .iter()
            .find(|i| i.role == CertRole::Admin)
            .cloned()
            .context("the dev PKI has an admin")?;
        let tls = if spec.insecure {
            None
        } else {
            crate::pki::ensure_dev_pki(&pki_dir, &identities)
                .with_context(|| format!("creating the dev PKI in {}", pki_dir.display()))?;
            Some(crate::pki::load(&pki_dir, &admin)?)
        };
        let exe = std::env::current_exe().context("locating the concord binary")?;
        let addrs: Vec<String> = (0..spec.departments.len())
            .map(|i| format!("127.0.0.1:{}", spec.base_port as usize + i))
            .collect();
        let members: Vec<String> = (0..spec.voters)
            .map(|i| format!("{}={}@{}", i + 1, spec.departments[i], addrs[i]))
            .collect();
        let mut cluster = LocalCluster {
            children: vec![],
            addrs,
            departments: spec.departments.iter().map(|d| d.to_string()).collect(),
            pki_dir,
            identities,
            admin,
            tls,
            launch: Launch {
                exe,
                dir: spec.dir.to_path_buf(),
                env: spec.env.clone(),
                members: members.join(","),
                voters: spec.voters,
            },
        };
        let now = spec
            .departments
            .len()
            .saturating_sub(spec.later)
            .max(spec.voters);
        for i in 0..now {
            let child = cluster.spawn(i)?;
            cluster.children.push(child);
        }
        let voters = spec.voters;
        // A child that exits during start (say, its port is taken) fails the start
        // rather than being masked by whatever else answers on that port.
        let mut children = std::mem::take(&mut cluster.children);
        let ready = tokio::select! {
            ready = async {
                wait_ready(&cluster.addrs[..voters], cluster.tls.clone(), Duration::from_secs(30)).await?;
                for i in voters..now {
                    cluster.add_learner(i, true).await?;
                }
                wait_ready(&cluster.addrs[voters..now], cluster.tls.clone(), Duration::from_secs(30)).await
            } => {
                ready.map_err(|e| anyhow::anyhow!("the cluster did not become ready: {e:#}"))
            }
            (i, status) = first_exit(&mut children) => {
                Err(anyhow::anyhow!("node {} exited during start ({status})", i + 1))
            }
        };
        cluster.children = children;
        if let Err(e) = ready {
            cluster.stop().await;
            bail!("{e} (logs in {})", spec.dir.display());
        }
        Ok(cluster)
    }

    /// The certificate of `department`'s client application (None when insecure).
    pub fn client_tls(&self, department: &str) -> anyhow::Result<Option<Arc<ReloadingTls>>> {
        if self.tls.is_none() {
            return Ok(None);
        }
        let id = self
            .identities
            .iter()
            .find(|i| i.department == department && i.role == CertRole::Client)
            .with_context(|| format!("no client certificate for {department}"))?;
        Ok(Some(crate::pki::load(&self.pki_dir, id)?))
    }

    /// Starts node `i` (department `i`, node id `i + 1`) as a `concord node` child
    /// with its log appended to `node-<id>.log`.
    fn spawn(&self, i: usize) -> anyhow::Result<tokio::process::Child> {
        let l = &self.launch;
        let department = &self.departments[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(l.dir.join(format!("node-{}.log", i + 1)))?;
        let mut command = tokio::process::Command::new(&l.exe);
        if self.tls.is_none() {
            command.env("CONCORD_INSECURE", "true");
        } else {
            let node = self
                .identities
                .iter()
                .find(|id| id.department == *department && id.role == CertRole::Node)
                .context("the dev PKI has a node certificate per department")?;
            let files = concord_pki::layout::tls_files(&self.pki_dir, node);
            command
                .env("CONCORD_TLS_CA", files.ca)
                .env("CONCORD_TLS_CERT", files.cert)
                .env("CONCORD_TLS_KEY", files.key);
        }
        let initial = if i < l.voters {
            l.members.clone()
        } else {
            String::new()
        };
        command
            .arg("node")
            .env("CONCORD_NODE_ID", (i + 1).to_string())
            .env("CONCORD_DEPARTMENT", department)
            .env("CONCORD_LISTEN", &self.addrs[i])
            .env("CONCORD_DATA_DIR", l.dir.join(format!("node-{}", i + 1)))
            .env("CONCORD_BOOTSTRAP", if i == 0 { "true" } else { "false" })
            .env("CONCORD_INITIAL_MEMBERS", initial)
            .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {}", i + 1))
    }

    /// kill -9 of node `i`, then the same node started again on its data; returns
    /// once the new process is running (not yet serving).
    pub async fn kill_and_restart(&mut self, i: usize) -> anyhow::Result<()> {
        let old = &mut self.children[i];
        old.kill().await.context("kill -9")?;
        self.children[i] = self.spawn(i)?;
        Ok(())
    }

    /// Starts the next department held back by `Spec::later` and adds it as a
    /// learner; returns its index.
    pub async fn start_later(&mut self) -> anyhow::Result<usize> {
        let i = self.children.len();
        if i >= self.departments.len() {
            bail!("every department's node is running");
        }
        let child = self.spawn(i)?;
        self.children.push(child);
        // Not blocking: the caller measures the catch-up itself.
        self.add_learner(i, false).await?;
        Ok(i)
    }

    /// Fails when a node has exited (say, its port was taken): a wait on the
    /// cluster that checks this ends at once instead of at its timeout.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match exited(&mut self.children) {
            Some((i, status)) => bail!(
                "node {} exited ({status}); see node-{}.log in {}",
                i + 1,
                i + 1,
                self.launch.dir.display()
            ),
            None => Ok(()),
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    /// SIGTERM (so nodes close their stores cleanly), then kill after 5 s.
    pub async fn stop(&mut self) {
        for c in &mut self.children {
            if let Some(pid) = c.id() {
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        for c in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
            let _ = c.kill().await;
        }
    }

    /// Adds node `i` as a learner, at the leader (admin writes run there only); a
    /// node that is a member already is left as it is.
    async fn add_learner(&self, i: usize, blocking: bool) -> anyhow::Result<()> {
        let voters = self.launch.voters;
        let deadline = Instant::now() + Duration::from_secs(30);
        let channel = |addr: &str| concord_node::client::channel(addr, self.tls.clone());
        loop {
            let mut first = ClusterServiceClient::new(channel(&self.addrs[0])?);
            let status = first.status(StatusRequest {}).await?.into_inner();
            if status.members.iter().any(|m| m.node_id == i as u64 + 1) {
                return Ok(());
            }
            let leader = status.leader_id as usize;
            if leader >= 1 && leader <= voters {
                let mut at_leader = ClusterServiceClient::new(channel(&self.addrs[leader - 1])?);
                let added = at_leader
                    .add_learner(concord_proto::cluster::v1::AddLearnerRequest {
                        node_id: i as u64 + 1,
                        addr: self.addrs[i].clone(),
                        department: self.departments[i].clone(),
                        blocking: Some(blocking),
                    })
                    .await;
                if added.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "could not add {} (node {}) as a learner",
                    self.departments[i],
                    i + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The first child found to have exited, with its index and exit status.
fn exited(children: &mut [tokio::process::Child]) -> Option<(usize, std::process::ExitStatus)> {
    children
        .iter_mut()
        .enumerate()
        .find_map(|(i, c)| c.try_wait().ok().flatten().map(|status| (i, status)))
}

/// Resolves when any child has exited, with its index and exit status.
pub async fn first_exit(
    children: &mut [tokio::process::Child],
) -> (usize, std::process::ExitStatus) {
    loop {
        if let Some(exit) = exited(children) {
            return exit;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ready = every node knows the leader and has applied the seeded department registry.
pub async fn wait_ready(
    addrs: &[String],
    tls: Option<Arc<ReloadingTls>>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for addr in addrs {
        loop {
            match node_ready(addr, tls.clone()).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!("node at {addr}")))
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                bail!("node at {addr} not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn node_ready(addr: &str, tls: Option<Arc<ReloadingTls>>) -> anyhow::Result<bool> {
    let mut client = ClusterServiceClient::new(concord_node::client::channel(addr, tls)?);
    let status = client.status(StatusRequest {}).await?.into_inner();
    if status.leader_id == 0 {
        return Ok(false);
    }
    let read = Some(ReadOptions {
        consistency: Consistency::Serializable as i32,
        min_revision: 0,
    });
    let departments = client
        .list_departments(ListDepartmentsRequest { read })
        .await?
        .into_inner();
    Ok(!departments.departments.is_empty())
}
