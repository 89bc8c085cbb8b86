//! A node's engine room: proposing writes (locally or through the leader), read
//! barriers for each consistency level, membership changes, and the leader's ticks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use concord_domain::{Command, Envelope, Principal, Response};
use concord_proto::common::v1::{Consistency, ReadOptions};
use concord_store::{NodeId, NodeInfo, Raft, StoreReader};
use openraft::error::{ClientWriteError, RaftError};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::network::{ForwardError, ForwardReply, ForwardRequest, ForwardWrite, Peers};

pub struct NodeCore {
    pub id: NodeId,
    pub department: String,
    pub raft: Raft,
    pub reader: StoreReader,
    pub peers: Peers,
    /// Writes this node passes to the leader, many per RPC under load.
    pub forwarder: crate::forwarder::Forwarder,
    /// Snapshots being sent to peers, which the log compaction policy waits for.
    pub snapshot_sends: crate::network::SnapshotSends,
    pub config: NodeConfig,
    /// Flips to true when the node stops, ending watch streams.
    pub stopping: tokio::sync::watch::Sender<bool>,
    pub security: crate::transport::Security,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Concurrent linearizable reads here share one read index from the leader...
    pub read_index: crate::coalesce::Coalescer<Result<u64, NodeError>>,
    /// ...and, on the leader, reads from every node share one leadership confirmation.
    pub leader_read_index: crate::coalesce::Coalescer<Result<ForwardReply, ForwardError>>,
}

/// The leader these metrics know of, and the address it is reached at.
pub fn leader_of(m: &openraft::RaftMetrics<NodeId, NodeInfo>) -> (Option<NodeId>, Option<String>) {
    let addr = m.current_leader.and_then(|l| {
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.addr.clone())
    });
    (m.current_leader, addr)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The index a linearizable read waits for, once the leader has confirmed its
/// leadership: openraft's read log id, but never below the leader's last log entry
/// (see `confirm_read_index` for the stale reads this prevents).
fn read_index(read_log_id: Option<u64>, last_log_index: Option<u64>) -> u64 {
    read_log_id.unwrap_or(0).max(last_log_index.unwrap_or(0))
}

fn client_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ForwardError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ForwardError::Refused {
            code: tonic::Code::FailedPrecondition as i32,
            message: c.to_string(),
        },
        RaftError::Fatal(f) => ForwardError::Refused {
            code: tonic::Code::Unavailable as i32,
            message: f.to_string(),
        },
    }
}

impl NodeCore {
    /// What this node's department may read under the data-sharing catalogue.
    pub fn scope(&self) -> Result<concord_domain::sharing::Scope, NodeError> {
        Ok(concord_domain::sharing::Scope::load(
            &self.reader,
            &self.department,
        )?)
    }

    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.config.limits.default_timeout_ms)
    }

    /// Applies `command` as this node's department, through whichever node leads.
    /// The request id makes retries safe: a retried write is applied at most once.
    pub async fn write(
        &self,
        request_id: String,
        command: Command,
        timeout: Duration,
    ) -> Result<Response, NodeError> {
        let req = ForwardRequest::Write(ForwardWrite {
            actor: self.department.clone(),
            request_id,
            command,
        });
        match self.on_leader(req, timeout).await? {
            ForwardReply::Written(r) => Ok(r),
            other => Err(NodeError::Internal(format!(
                "unexpected reply to a write: {other:?}"
            ))),
        }
    }

    /// Runs `req` on the leader: here if this node leads, else over the forwarding
    /// RPC. Retries until a leader answers or `timeout` passes.
    pub async fn on_leader(
        &self,
        req: ForwardRequest,
        timeout: Duration,
    ) -> Result<ForwardReply, NodeError> {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        let mut last_problem = String::from("no leader is elected");
        loop {
            let (leader, leader_addr) = leader_of(&metrics.borrow_and_update());
            let attempt = match (leader, leader_addr) {
                (Some(l), _) if l == self.id => self.handle_forward(None, req.clone()).await,
                (Some(l), Some(addr)) => {
                    let remaining = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(50));
                    match &req {
                        ForwardRequest::Write(w) => self
                            .forwarder
                            .write(l, &addr, w.clone(), remaining)
                            .await
                            .map(ForwardReply::Written),
                        _ => self.forward(l, &addr, &req, remaining).await,
                    }
                }
                _ => Err(ForwardError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(reply) => return Ok(reply),
                Err(ForwardError::Refused { code, message }) => {
                    return Err(match tonic::Code::from_i32(code) {
                        tonic::Code::FailedPrecondition => {
                            NodeError::Domain(concord_domain::DomainError::precondition(message))
                        }
                        tonic::Code::Unavailable => NodeError::unavailable(message),
                        tonic::Code::PermissionDenied => {
                            NodeError::Domain(concord_domain::DomainError::denied(message))
                        }
                        _ => NodeError::Internal(message),
                    })
                }
                Err(ForwardError::NotLeader { leader }) => {
                    if let Some(l) = leader {
                        last_problem = format!("node {l} leads but did not answer");
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NodeError::Unavailable {
                    reason: last_problem,
                    leader,
                });
            }
            // Wake on a leadership change, or poll again shortly.
            let wait = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, metrics.changed()).await;
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        req: &ForwardRequest,
        timeout: Duration,
    ) -> Result<ForwardReply, ForwardError> {
        crate::forwarder::call(&self.peers, leader, addr, req, timeout)
            .await
            .unwrap_or(Err(ForwardError::NotLeader {
                leader: Some(leader),
            }))
    }

    /// Leader side of forwarding (also used for requests this node receives itself).
    /// `from` is the department of the forwarding node's certificate; None for this
    /// node's own requests and in insecure mode.
    pub async fn handle_forward(
        &self,
        from: Option<&str>,
        req: ForwardRequest,
    ) -> Result<ForwardReply, ForwardError> {
        match req {
            ForwardRequest::Write(w) => self
                .forwarded_write(from, w)
                .await
                .map(ForwardReply::Written),
            // Proposed together, so openraft appends them as one batch.
            ForwardRequest::Writes(ws) => Ok(ForwardReply::Writes(
                futures::future::join_all(ws.into_iter().map(|w| self.forwarded_write(from, w)))
                    .await,
            )),
            ForwardRequest::ReadIndex => {
                self.leader_read_index
                    .run(|| self.confirm_read_index())
                    .await
            }
        }
    }

    async fn forwarded_write(
        &self,
        from: Option<&str>,
        w: ForwardWrite,
    ) -> Result<Response, ForwardError> {
        let ForwardWrite {
            actor,
            request_id,
            command,
        } = w;
        if let Some(from) = from.filter(|f| *f != actor) {
            let why = format!(
                "a node of {from} forwarded a write as {actor}; a node acts only for its own department"
            );
            self.security.refusals.record(
                concord_pki::Refusal::WrongDepartment(why.clone()),
                format!("node of {from}"),
            );
            return Err(ForwardError::Refused {
                code: tonic::Code::PermissionDenied as i32,
                message: why,
            });
        }
        self.propose(actor, Principal::Member, request_id, command)
            .await
            .map_err(client_write_error)
    }

    /// Proposes `command` to raft (on the leader) and waits for its response.
    async fn propose(
        &self,
        actor: String,
        principal: Principal,
        request_id: String,
        command: Command,
    ) -> Result<Response, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>> {
        // The proposer stamps the time, so every replica applies the same instant.
        let envelope = Envelope {
            actor,
            principal,
            request_id,
            timestamp_ms: now_ms(),
            command,
        };
        let started = std::time::Instant::now();
        let written = self.raft.client_write(envelope).await?;
        self.metrics
            .proposals
            .observe(started.elapsed().as_secs_f64());
        Ok(written.data)
    }

    /// The leader's read index, after confirming with a quorum that it still leads.
    async fn confirm_read_index(&self) -> Result<ForwardReply, ForwardError> {
        match self.raft.get_read_log_id().await {
            // Not openraft's read log id alone: a leader restored at start-up
            // (openraft resumes a node whose committed vote is its own) has no
            // noop of its own yet and a committed index read from disk, which
            // can lag what was committed before the crash, so reads at it came
            // back stale (found by the fault campaign: a linearizable read saw
            // revision 22625 after 22627 had been read). Every committed entry
            // is in the confirmed leader's log, so waiting for its last entry is
            // safe whatever openraft reports.
            Ok((read_log_id, _applied)) => Ok(ForwardReply::ReadIndex {
                index: read_index(
                    read_log_id.map(|l| l.index),
                    self.raft.metrics().borrow().last_log_index,
                ),
            }),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ForwardError::NotLeader { leader: None })
                .inspect_err(|_| tracing::debug!(error = %e, "read index")),
        }
    }

    /// Administrative actions run here, on the leader, so they carry the admin's
    /// own certificate and no node can claim admin authority on another's behalf.
    fn require_leader(&self) -> Result<(), NodeError> {
        let (leader, addr) = leader_of(&self.raft.metrics().borrow());
        if leader == Some(self.id) {
            return Ok(());
        }
        Err(NodeError::NotLeader { leader, addr })
    }

    fn admin_error(&self, e: ForwardError) -> NodeError {
        match e {
            ForwardError::NotLeader { .. } => self
                .require_leader()
                .err()
                .unwrap_or_else(|| NodeError::unavailable("leadership changed")),
            ForwardError::Refused { code, message } => match tonic::Code::from_i32(code) {
                tonic::Code::FailedPrecondition => {
                    NodeError::Domain(concord_domain::DomainError::precondition(message))
                }
                _ => NodeError::unavailable(message),
            },
        }
    }

    /// Applies an administrative `command` as `admin_department`'s operator.
    pub async fn admin_write(
        &self,
        admin_department: String,
        request_id: String,
        command: Command,
    ) -> Result<Response, NodeError> {
        self.require_leader()?;
        self.propose(admin_department, Principal::Admin, request_id, command)
            .await
            .map_err(|e| self.admin_error(client_write_error(e)))
    }

    /// Adds a learner; returns the log index of the membership entry.
    pub async fn add_learner(
        &self,
        node_id: NodeId,
        node: NodeInfo,
        blocking: bool,
    ) -> Result<u64, NodeError> {
        self.require_leader()?;
        let r = self
            .raft
            .add_learner(node_id, node, blocking)
            .await
            .map_err(|e| self.admin_error(client_write_error(e)))?;
        Ok(r.log_id.index)
    }

    /// Sets the voters; returns the log index of the membership entry.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<u64, NodeError> {
        self.require_leader()?;
        let r = self
            .raft
            .change_membership(voters, retain)
            .await
            .map_err(|e| self.admin_error(client_write_error(e)))?;
        Ok(r.log_id.index)
    }

    /// Waits until this replica may answer a read with the requested consistency and
    /// returns the revision it reflects.
    pub async fn read_barrier(
        &self,
        opts: Option<&ReadOptions>,
        timeout: Duration,
    ) -> Result<u64, NodeError> {
        let default = ReadOptions::default();
        let opts = opts.unwrap_or(&default);
        let consistency = Consistency::try_from(opts.consistency).map_err(|_| {
            concord_domain::DomainError::invalid(
                "read.consistency",
                format!("{} is not a known value", opts.consistency),
            )
        })?;
        if opts.min_revision > 0 && !self.reader.wait_applied(opts.min_revision, timeout).await {
            return Err(NodeError::DeadlineExceeded(format!(
                "this replica has applied revision {}, below read.min_revision {}",
                self.reader.applied(),
                opts.min_revision
            )));
        }
        let linearizable = match consistency {
            Consistency::Linearizable => true,
            Consistency::Serializable => false,
            // min_revision alone asks for read-your-writes from the local replica.
            Consistency::Unspecified => opts.min_revision == 0,
        };
        if linearizable {
            let fetch = || async {
                match self.on_leader(ForwardRequest::ReadIndex, timeout).await? {
                    ForwardReply::ReadIndex { index } => Ok(index),
                    other => Err(NodeError::Internal(format!(
                        "unexpected reply to a read index: {other:?}"
                    ))),
                }
            };
            let index = tokio::time::timeout(timeout, self.read_index.run(fetch))
                .await
                .map_err(|_| {
                    NodeError::DeadlineExceeded("no read index from the leader in time".into())
                })??;
            if !self.reader.wait_applied(index, timeout).await {
                return Err(NodeError::DeadlineExceeded(format!(
                    "this replica did not apply the leader's read index {index} in time"
                )));
            }
        }
        Ok(self.reader.applied())
    }

    /// The leader's housekeeping: proposes a Tick when the domain says one is due.
    pub async fn run_ticker(self: Arc<Self>) {
        let hk = self.config.housekeeping.clone();
        let retention_ms = (hk.request_id_retention_secs as i64).saturating_mul(1000);
        let mut stopping = self.stopping.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(hk.tick_interval_ms)) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                continue;
            }
            let now = now_ms();
            match concord_domain::tick_due(&self.reader, now, retention_ms) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read state for housekeeping");
                    continue;
                }
            }
            let envelope = Envelope {
                actor: self.department.clone(),
                principal: Principal::System,
                request_id: String::new(),
                timestamp_ms: now,
                command: Command::Tick {
                    dedup_retention_ms: retention_ms,
                },
            };
            if let Err(e) = self.raft.client_write(envelope).await {
                tracing::debug!(error = %e, "tick not applied");
            }
        }
    }

    /// Initialises a new cluster (once) and seeds its department registry.
    /// Whether any of `addrs` belongs to a cluster with a leader (asked through
    /// JoinService: a node outside any cluster refuses or does not answer).
    async fn cluster_exists_at(&self, addrs: &[String]) -> bool {
        use concord_proto::raft::v1::join_service_client::JoinServiceClient;
        let asks = addrs.iter().map(|addr| async move {
            let channel = crate::client::channel(addr, self.security.tls.clone()).ok()?;
            let mut req = tonic::Request::new(concord_proto::raft::v1::JoinRequest {
                node_id: self.id,
                addr: self.config.advertise.clone(),
            });
            req.set_timeout(Duration::from_secs(1));
            let r = JoinServiceClient::new(channel).join(req).await.ok()?;
            (r.get_ref().joined || r.get_ref().leader_id != 0).then_some(())
        });
        futures::future::join_all(asks)
            .await
            .iter()
            .any(Option::is_some)
    }

    pub async fn bootstrap_if_configured(self: Arc<Self>) -> Result<(), NodeError> {
        if !self.config.bootstrap {
            return Ok(());
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        if !initialized {
            // An empty store with `bootstrap` set is also what a bootstrapping node
            // looks like after losing its disk. If the `join` seeds (a StatefulSet's
            // pod 0 has the other voters) already form a cluster, initialising would
            // start a second one: join it instead.
            let others = self.config.join.clone();
            if !others.is_empty() && self.cluster_exists_at(&others).await {
                tracing::warn!("bootstrap is set but the other initial members already form a cluster: not initialising another; joining it");
                tokio::spawn(crate::services::join::join_until_member(
                    self.clone(),
                    others,
                ));
                return Ok(());
            }
            let mut members = std::collections::BTreeMap::new();
            for (id, member) in &self.config.initial_members {
                let (department, addr) = crate::config::parse_member("initial_members", member)
                    .map_err(|e| NodeError::Internal(e.to_string()))?;
                members.insert(*id, NodeInfo { addr, department });
            }
            // Another bootstrapping attempt may have won the race; that is fine.
            if let Err(e) = self.raft.initialize(members).await {
                tracing::info!(error = %e, "cluster initialisation skipped");
            }
        }
        let core = self.clone();
        tokio::spawn(async move {
            let seed = Command::Bootstrap {
                departments: concord_domain::department::default_departments(),
            };
            let mut stopping = core.stopping.subscribe();
            loop {
                match core
                    .write(
                        "cluster-bootstrap".into(),
                        seed.clone(),
                        Duration::from_secs(10),
                    )
                    .await
                {
                    Ok(r) => {
                        match r.result {
                            Ok(_) => {
                                tracing::info!(revision = r.revision, "department registry seeded")
                            }
                            Err(e) => {
                                tracing::info!(reason = %e, "department registry already seeded")
                            }
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "waiting for a leader to seed the department registry")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::read_index;

    /// The fault campaign's stale read after kill -9 of every node: the restored
    /// leader's committed index (from disk) was 22625 while its log, with every
    /// acknowledged entry, reached 22627. Reads must wait for the log's end.
    #[test]
    fn a_restored_leaders_read_index_covers_its_whole_log_not_a_lagging_commit() {
        assert_eq!(read_index(Some(22_625), Some(22_627)), 22_627);
        assert_eq!(read_index(Some(22_627), Some(22_627)), 22_627);
        assert_eq!(read_index(None, Some(3)), 3);
        assert_eq!(read_index(None, None), 0);
    }
}
