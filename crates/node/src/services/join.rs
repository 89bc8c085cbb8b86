//! JoinService: a node of a registered department asks to be added as a learner,
//! so a StatefulSet pod beyond the initial voters joins without an operator.

use std::sync::Arc;
use std::time::Duration;

use concord_proto::raft::v1::join_service_client::JoinServiceClient;
use concord_proto::raft::v1::join_service_server::JoinService;
use concord_proto::raft::v1::{JoinRequest, JoinResponse};
use concord_store::NodeInfo;
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::core::NodeCore;
use crate::error::NodeError;

pub struct JoinSvc {
    pub core: Arc<NodeCore>,
}

fn leader_of(core: &NodeCore) -> (u64, String) {
    let (leader, addr) = crate::core::leader_of(&core.raft.metrics().borrow());
    (leader.unwrap_or(0), addr.unwrap_or_default())
}

#[tonic::async_trait]
impl JoinService for JoinSvc {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let department = caller(&req)?
            .identity
            .map(|i| i.department)
            .ok_or_else(|| Status::unauthenticated("no certificate identity"))?;
        let r = req.into_inner();
        if r.node_id == 0 {
            return Err(NodeError::from(concord_domain::DomainError::invalid(
                "node_id",
                "must be positive",
            ))
            .into());
        }
        crate::config::parse_member("addr", &format!("{department}@{}", r.addr)).map_err(|_| {
            NodeError::from(concord_domain::DomainError::invalid(
                "addr",
                format!("{:?} is not host:port", r.addr),
            ))
        })?;
        let (leader, leader_addr) = leader_of(&self.core);
        if leader != self.core.id {
            return Ok(Response::new(JoinResponse {
                joined: false,
                leader_id: leader,
                leader_addr,
            }));
        }
        let membership = self
            .core
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        // One node per department joins by itself: a second replica for a department
        // (or a leaked node certificate) needs an administrator's AddLearner.
        if let Some((id, _)) = membership
            .nodes()
            .find(|(id, n)| n.department == department && **id != r.node_id)
        {
            return Err(Status::permission_denied(format!(
                "{department} already has node {id}; a further node of a department is added by an administrator (AddLearner)"
            )));
        }
        let existing = membership.get_node(&r.node_id).cloned();
        if let Some(n) = existing {
            if n.addr == r.addr && n.department == department {
                return Ok(Response::new(JoinResponse {
                    joined: true,
                    leader_id: leader,
                    leader_addr,
                }));
            }
            return Err(Status::already_exists(format!(
                "node {} is already a member as {}@{}",
                r.node_id, n.department, n.addr
            )));
        }
        // A pod a scale-down removed must not come back in by asking.
        if crate::membership::removed(&self.core.config.membership, r.node_id, Some(&r.addr)) {
            return Err(Status::failed_precondition(format!(
                "node {} is above membership.max_node_id {}: its pod was scaled away",
                r.node_id,
                self.core.config.membership.max_node_id.unwrap_or(0)
            )));
        }
        tracing::info!(node_id = r.node_id, addr = %r.addr, %department, "adding a joining node as a learner");
        self.core
            .add_learner(
                r.node_id,
                NodeInfo {
                    addr: r.addr,
                    department,
                },
                false,
            )
            .await?;
        Ok(Response::new(JoinResponse {
            joined: true,
            leader_id: leader,
            leader_addr,
        }))
    }
}

/// Asks `seeds` (and the leader they name) to add this node, until it is a member
/// or the node stops.
pub async fn join_until_member(core: Arc<NodeCore>, seeds: Vec<String>) {
    let mut stopping = core.stopping.subscribe();
    let is_member = |core: &NodeCore| {
        core.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&core.id)
            .is_some()
    };
    let mut targets = seeds.clone();
    loop {
        if is_member(&core) || *stopping.borrow() {
            return;
        }
        let mut next = seeds.clone();
        for target in &targets {
            let Ok(channel) = crate::client::channel(target, core.security.tls.clone()) else {
                continue;
            };
            let mut req = Request::new(JoinRequest {
                node_id: core.id,
                addr: core.config.advertise.clone(),
            });
            req.set_timeout(Duration::from_secs(5));
            match JoinServiceClient::new(channel).join(req).await {
                Ok(r) if r.get_ref().joined => {
                    tracing::info!(via = %target, "joined the cluster as a learner");
                    return;
                }
                Ok(r) if !r.get_ref().leader_addr.is_empty() => {
                    next.insert(0, r.get_ref().leader_addr.clone());
                    break;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(via = %target, error = %e, "join refused or failed"),
            }
        }
        targets = next;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}
