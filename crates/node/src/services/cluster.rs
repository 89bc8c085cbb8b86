use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_domain::{query, validate, Command, DomainError, Outcome};
use concord_proto::cluster::v1::cluster_service_server::ClusterService;
use concord_proto::cluster::v1::*;
use concord_store::NodeInfo;
use openraft::ServerState;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::auth;
use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{self, header, timeout_of, write_as};

pub struct ClusterSvc {
    pub core: Arc<NodeCore>,
}

fn invalid(field: &str, reason: impl Into<String>) -> Status {
    NodeError::from(DomainError::invalid(field, reason)).into()
}

impl ClusterSvc {
    fn members(&self) -> Vec<Member> {
        let m = self.core.raft.metrics().borrow().clone();
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, node)| Member {
                node_id: *id,
                addr: node.addr.clone(),
                department: node.department.clone(),
                voter: voters.contains(id),
                matched_index: replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .map_or(0, |l| l.index),
            })
            .collect()
    }

    /// Answers with the membership as this node sees it once it applied `revision`.
    async fn membership(
        &self,
        revision: u64,
        timeout: Duration,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.core.reader.wait_applied(revision, timeout).await;
        Ok(Response::new(MembershipResponse {
            header: header(&self.core, revision, false),
            members: self.members(),
        }))
    }
}

/// Refuses `method` unless the caller holds an admin certificate; returns the
/// department the admin acts for (this node's in insecure mode).
fn require_admin<T>(core: &NodeCore, req: &Request<T>, method: &str) -> Result<String, Status> {
    let caller = auth::caller(req)?;
    if caller.is_admin() {
        return Ok(caller
            .identity
            .map_or_else(|| core.department.clone(), |i| i.department));
    }
    let who = caller
        .identity
        .as_ref()
        .map_or_else(String::new, |i| format!(" ({i})"));
    Err(Status::permission_denied(format!(
        "{method} needs an admin certificate; the caller{who} holds none"
    )))
}

/// Builds a snapshot covering at least revision `target`; returns its revision.
async fn snapshot_at_least(
    core: &NodeCore,
    target: u64,
    timeout: Duration,
) -> Result<u64, NodeError> {
    core.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| NodeError::unavailable(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut metrics = core.raft.metrics();
    loop {
        let index = metrics.borrow_and_update().snapshot.map_or(0, |l| l.index);
        if index >= target {
            return Ok(index);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NodeError::DeadlineExceeded(format!(
                "snapshot at {target} not built in time"
            )));
        }
        let _ = tokio::time::timeout(left, metrics.changed()).await;
    }
}

type BackupStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<BackupChunk, Status>> + Send>>;

const BACKUP_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl ClusterService for ClusterSvc {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let m = self.core.raft.metrics().borrow().clone();
        let commit_index = self
            .core
            .raft
            .with_raft_state(|s| s.committed.map_or(0, |l| l.index))
            .await
            .unwrap_or(0);
        let role = match m.state {
            ServerState::Leader => NodeRole::Leader,
            ServerState::Follower => NodeRole::Follower,
            ServerState::Learner => NodeRole::Learner,
            ServerState::Candidate => NodeRole::Candidate,
            ServerState::Shutdown => NodeRole::Shutdown,
        };
        Ok(Response::new(StatusResponse {
            node_id: self.core.id,
            department: self.core.department.clone(),
            role: role as i32,
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            commit_index,
            applied_index: self.core.reader.applied(),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            members: self.members(),
            oldest_watch_revision: self.core.reader.compacted_through() + 1,
        }))
    }

    async fn add_learner(
        &self,
        req: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        require_admin(&self.core, &req, "AddLearner")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(&self.core, "ClusterService/AddLearner", "");
        async {
            if r.node_id == 0 {
                return Err(invalid("node_id", "must be positive"));
            }
            validate::department_code("department", &r.department).map_err(NodeError::from)?;
            crate::config::parse_member("addr", &format!("{}@{}", r.department, r.addr))
                .map_err(|_| invalid("addr", format!("{:?} is not host:port", r.addr)))?;
            let node = NodeInfo {
                addr: r.addr,
                department: r.department,
            };
            let revision = self
                .core
                .add_learner(r.node_id, node, r.blocking.unwrap_or(true))
                .await?;
            self.membership(revision, timeout).await
        }
        .instrument(span)
        .await
    }

    async fn change_membership(
        &self,
        req: Request<ChangeMembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        require_admin(&self.core, &req, "ChangeMembership")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(&self.core, "ClusterService/ChangeMembership", "");
        async {
            let voters: BTreeSet<u64> = r.voters.iter().copied().collect();
            if voters.is_empty() {
                return Err(invalid("voters", "at least one voter is required"));
            }
            if voters.len() != r.voters.len() {
                return Err(invalid("voters", "must not repeat a node id"));
            }
            let known: BTreeSet<u64> = self.members().iter().map(|m| m.node_id).collect();
            if let Some(unknown) = voters.iter().find(|v| !known.contains(v)) {
                return Err(invalid(
                    "voters",
                    format!("node {unknown} is not a member; add it as a learner first"),
                ));
            }
            let revision = self.core.change_membership(voters, r.retain).await?;
            self.membership(revision, timeout).await
        }
        .instrument(span)
        .await
    }

    type BackupStream = BackupStream;

    async fn backup(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        require_admin(&self.core, &req, "Backup")?;
        // Building a large snapshot may take longer than a usual call.
        let timeout = timeout_of(&req, &self.core).max(Duration::from_secs(120));
        let span = rpc::span(&self.core, "ClusterService/Backup", "");
        let target = self.core.reader.applied();
        let revision = snapshot_at_least(&self.core, target, timeout)
            .instrument(span.clone())
            .await?;
        let path = self.core.reader.snapshot_path();
        // The open file pins this snapshot even if a newer one replaces the path.
        let mut file = std::fs::File::open(&path)
            .map_err(|e| NodeError::Internal(format!("opening {}: {e}", path.display())))?;
        let meta = concord_store::snapshot::read_header(&mut std::io::BufReader::new(&file))
            .map_err(|e| NodeError::Internal(format!("snapshot header: {e}")))?;
        let revision = meta.last_log_id.map_or(revision, |l| l.index);
        tracing::info!(parent: &span, revision, "backup started");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            use std::io::{Read, Seek};
            let mut hash = sha2::Sha256::new();
            let mut total = 0u64;
            if let Err(e) = file.seek(std::io::SeekFrom::Start(0)) {
                let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                return;
            }
            loop {
                let mut buf = vec![0u8; BACKUP_CHUNK];
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                };
                if n == 0 {
                    let _ = tx.blocking_send(Ok(BackupChunk {
                        revision,
                        data: vec![],
                        sha256: hex::encode(hash.finalize()),
                        total_bytes: total,
                    }));
                    return;
                }
                buf.truncate(n);
                hash.update(&buf);
                total += n as u64;
                let chunk = BackupChunk {
                    revision,
                    data: buf,
                    sha256: String::new(),
                    total_bytes: 0,
                };
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn trigger_snapshot(
        &self,
        req: Request<TriggerSnapshotRequest>,
    ) -> Result<Response<TriggerSnapshotResponse>, Status> {
        require_admin(&self.core, &req, "TriggerSnapshot")?;
        let timeout = timeout_of(&req, &self.core);
        let span = rpc::span(&self.core, "ClusterService/TriggerSnapshot", "");
        async {
            let target = self.core.reader.applied();
            let index = snapshot_at_least(&self.core, target, timeout).await?;
            Ok(Response::new(TriggerSnapshotResponse {
                header: header(&self.core, target, false),
                snapshot_index: index,
            }))
        }
        .instrument(span)
        .await
    }

    async fn list_departments(
        &self,
        req: Request<ListDepartmentsRequest>,
    ) -> Result<Response<ListDepartmentsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let departments = query::departments(&self.core.reader).map_err(NodeError::from)?;
        Ok(Response::new(ListDepartmentsResponse {
            header: header(&self.core, revision, false),
            departments: departments
                .iter()
                .map(convert::department_to_wire)
                .collect(),
        }))
    }

    async fn get_department(
        &self,
        req: Request<GetDepartmentRequest>,
    ) -> Result<Response<Department>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        validate::department_code("code", &r.code).map_err(NodeError::from)?;
        self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let d = query::department(&self.core.reader, &r.code).map_err(NodeError::from)?;
        Ok(Response::new(convert::department_to_wire(&d)))
    }

    async fn register_department(
        &self,
        req: Request<RegisterDepartmentRequest>,
    ) -> Result<Response<RegisterDepartmentResponse>, Status> {
        let admin = require_admin(&self.core, &req, "RegisterDepartment")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let d = r
            .department
            .as_ref()
            .ok_or_else(|| invalid("department", "is required"))?;
        let spec = convert::department_spec("department", d).map_err(NodeError::from)?;
        let command = Command::RegisterDepartment {
            department: spec,
            expected_revision: r.expected_revision,
        };
        write_as(
            &self.core,
            "ClusterService/RegisterDepartment",
            Some(admin),
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::Department(d) => Ok(RegisterDepartmentResponse {
                    header,
                    department: Some(convert::department_to_wire(&d)),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn set_districts(
        &self,
        req: Request<SetDistrictsRequest>,
    ) -> Result<Response<SetDistrictsResponse>, Status> {
        let admin = require_admin(&self.core, &req, "SetDistricts")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        concord_domain::entity::validate_districts(&r.districts).map_err(NodeError::from)?;
        let command = Command::SetDistricts {
            districts: r.districts,
        };
        write_as(
            &self.core,
            "ClusterService/SetDistricts",
            Some(admin),
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::Districts(districts) => Ok(SetDistrictsResponse { header, districts }),
                other => Err(other),
            },
        )
        .await
    }

    async fn set_over_inspection_rule(
        &self,
        req: Request<SetOverInspectionRuleRequest>,
    ) -> Result<Response<SetOverInspectionRuleResponse>, Status> {
        let admin = require_admin(&self.core, &req, "SetOverInspectionRule")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let rule = convert::rule_from_wire("rule", r.rule.as_ref()).map_err(NodeError::from)?;
        let command = Command::SetOverInspectionRule { rule };
        write_as(
            &self.core,
            "ClusterService/SetOverInspectionRule",
            Some(admin),
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::OverInspectionRule(rule) => Ok(SetOverInspectionRuleResponse {
                    header,
                    rule: Some(convert::rule_to_wire(&rule)),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn set_case_deadlines(
        &self,
        req: Request<SetCaseDeadlinesRequest>,
    ) -> Result<Response<SetCaseDeadlinesResponse>, Status> {
        let admin = require_admin(&self.core, &req, "SetCaseDeadlines")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let policy =
            convert::deadline_policy("policy", r.policy.as_ref()).map_err(NodeError::from)?;
        let command = Command::SetCaseDeadlines { policy };
        write_as(
            &self.core,
            "ClusterService/SetCaseDeadlines",
            Some(admin),
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::CaseDeadlines(policy) => Ok(SetCaseDeadlinesResponse {
                    header,
                    policy: Some(convert::deadline_policy_to_wire(&policy)),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn list_audit(
        &self,
        req: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        // Records carry reasons and bases of non-public records: operators only.
        require_admin(&self.core, &req, "ListAudit")?;
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        if r.limit > 1000 {
            return Err(invalid("limit", "at most 1000"));
        }
        if !r.target.is_empty() {
            validate::required_text("target", &r.target, validate::MAX_SHORT_CHARS)
                .map_err(NodeError::from)?;
        }
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let target = (!r.target.is_empty()).then_some(r.target.as_str());
        let core = self.core.clone();
        let target = target.map(str::to_string);
        let (records, next_revision) = tokio::task::spawn_blocking(move || {
            concord_domain::audit::list(
                &core.reader,
                r.from_revision,
                target.as_deref(),
                limit,
                20_000,
            )
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(NodeError::from)?;
        Ok(Response::new(ListAuditResponse {
            header: header(&self.core, revision, false),
            records: records
                .into_iter()
                .map(|a| concord_proto::cluster::v1::AuditRecord {
                    revision: a.revision,
                    actor: a.actor,
                    principal: a.principal.as_str().into(),
                    kind: a.kind.as_str().into(),
                    target: a.target,
                    basis: a.basis,
                    request_id: a.request_id,
                    timestamp_ms: a.timestamp_ms,
                    outcome: a.outcome,
                    prev_revision: a.prev_revision,
                    prev_hash: a.prev_hash,
                    hash: a.hash,
                })
                .collect(),
            next_revision,
        }))
    }

    async fn audit_head(
        &self,
        req: Request<AuditHeadRequest>,
    ) -> Result<Response<AuditHeadResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let head = concord_domain::audit::head(&self.core.reader).map_err(NodeError::from)?;
        Ok(Response::new(audit_head_to_wire(
            &self.core, revision, head,
        )))
    }

    async fn verify_audit(
        &self,
        req: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        if r.to_revision != 0 && r.to_revision < r.from_revision {
            return Err(invalid(
                "to_revision",
                "must be 0 (through the head) or at least from_revision",
            ));
        }
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let limit = if r.limit == 0 {
            100_000
        } else {
            r.limit as usize
        };
        let core = self.core.clone();
        // Verification reads and hashes every record: keep it off the async workers.
        let v = tokio::task::spawn_blocking(move || {
            concord_domain::audit::verify(&core.reader, r.from_revision, r.to_revision, limit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(NodeError::from)?;
        let (broken_revision, problem) = v.broken.clone().unwrap_or_default();
        Ok(Response::new(VerifyAuditResponse {
            header: header(&self.core, revision, false),
            intact: v.broken.is_none(),
            checked: v.checked,
            broken_revision,
            problem,
            next_revision: v.next_revision,
            head: Some(audit_head_to_wire(&self.core, revision, v.head)),
        }))
    }
}

fn audit_head_to_wire(
    core: &NodeCore,
    revision: u64,
    head: concord_domain::audit::AuditHead,
) -> AuditHeadResponse {
    AuditHeadResponse {
        header: header(core, revision, false),
        revision: head.revision,
        hash: head.hash,
        count: head.count,
    }
}
