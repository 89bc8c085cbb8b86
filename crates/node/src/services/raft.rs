//! The internal node-to-node service: raft RPCs and forwarding to the leader.

use std::sync::Arc;

use concord_proto::raft::v1::raft_service_server::RaftService;
use concord_proto::raft::v1::RaftPayload;
use concord_store::TypeConfig;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::core::NodeCore;
use crate::network::{decode, encode, ForwardRequest};

pub struct RaftSvc {
    pub core: Arc<NodeCore>,
}

fn payload<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload {
        data: encode(v).map_err(|e| Status::internal(e.to_string()))?,
    }))
}

fn parse<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

#[tonic::async_trait]
impl RaftService for RaftSvc {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = parse(req)?;
        payload(&self.core.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<u64> = parse(req)?;
        payload(&self.core.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = parse(req)?;
        payload(&self.core.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let caller = crate::auth::caller(&req)?;
        let fwd: ForwardRequest = parse(req)?;
        payload(
            &self
                .core
                .handle_forward(caller.node_department(), fwd)
                .await,
        )
    }
}
