//! The internal node-to-node service: raft RPCs and forwarding to the leader.

use std::pin::Pin;
use std::sync::Arc;

use concord_proto::raft::v1::raft_service_server::RaftService;
use concord_proto::raft::v1::RaftPayload;
use concord_store::TypeConfig;
use futures::Stream;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{caller, Caller};
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::network::{decode, encode, ForwardRequest};

#[derive(Clone)]
pub struct RaftSvc {
    pub core: Arc<NodeCore>,
}

type Replies = Pin<Box<dyn Stream<Item = Result<RaftPayload, Status>> + Send>>;

/// What the requests of a stream are.
#[derive(Clone, Copy)]
enum Answer {
    Append,
    Forward,
}

impl RaftSvc {
    /// A stream's requests, taken one at a time, each answered before the next is
    /// read. The first refused or undecodable request ends the stream with its
    /// status, and so does this node's shutdown (which waits for open streams to
    /// end); the sender opens a new one.
    fn in_turn(
        &self,
        req: Request<Streaming<RaftPayload>>,
        answer: Answer,
    ) -> Result<Response<Replies>, Status> {
        let caller = caller(&req)?;
        let requests = req.into_inner();
        let stopping = self.core.stopping.subscribe();
        let state = (self.clone(), caller, requests, stopping, false);
        Ok(Response::new(Box::pin(futures::stream::unfold(
            state,
            move |(svc, caller, mut requests, mut stopping, ended)| async move {
                if ended {
                    return None;
                }
                let request = tokio::select! {
                    r = requests.message() => r,
                    _ = stopping.wait_for(|s| *s) => return None,
                };
                let request =
                    request.and_then(|r| crate::auth::still_member(&svc.core, &caller).map(|_| r));
                let reply = match (request, answer) {
                    (Ok(Some(request)), Answer::Append) => svc.append(&caller, &request.data).await,
                    (Ok(Some(request)), Answer::Forward) => {
                        svc.forward_one(&caller, &request.data).await
                    }
                    (Ok(None), _) => return None,
                    (Err(status), _) => Err(status),
                };
                let ended = reply.is_err();
                Some((reply, (svc, caller, requests, stopping, ended)))
            },
        ))))
    }

    /// One forwarded request from `caller`, answered as the unary call answers it.
    async fn forward_one(&self, caller: &Caller, data: &[u8]) -> Result<RaftPayload, Status> {
        let fwd: ForwardRequest = parse_data(data)?;
        let reply = self
            .core
            .handle_forward(caller.node_department(), fwd)
            .await;
        Ok(payload(&reply)?.into_inner())
    }

    /// One AppendEntries from `caller`, answered as the unary call answers it.
    async fn append(&self, caller: &Caller, data: &[u8]) -> Result<RaftPayload, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = parse_data(data)?;
        self.check_sender(caller, rpc.vote.leader_id().voted_for())?;
        Ok(payload(&self.core.raft.append_entries(rpc).await)?.into_inner())
    }

    /// A node may speak in raft only as itself: the node id a request claims (as
    /// leader or candidate) must be, in this node's membership, a node of the
    /// caller certificate's department. A node that has no membership yet accepts
    /// the leader that is adding it.
    fn check_sender(&self, req_caller: &Caller, claimed: Option<u64>) -> Result<(), Status> {
        let (Some(dept), Some(node)) = (req_caller.node_department(), claimed) else {
            return Ok(());
        };
        let metrics = self.core.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        if membership.nodes().next().is_none() {
            return Ok(());
        }
        let why = match membership.get_node(&node) {
            Some(info) if info.department == dept => return Ok(()),
            Some(info) => format!(
                "a node certificate of {dept} claimed to be node {node}, which belongs to {}",
                info.department
            ),
            None => format!(
                "a node certificate of {dept} claimed to be node {node}, which is not a member"
            ),
        };
        let refusal = concord_pki::Refusal::WrongDepartment(why);
        self.core
            .security
            .refusals
            .record(refusal.clone(), &req_caller.peer);
        Err(NodeError::Refused(refusal).into())
    }
}

fn payload<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload {
        data: encode(v).map_err(|e| Status::internal(e.to_string()))?,
        chunk: vec![],
    }))
}

fn parse<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    parse_data(&req.into_inner().data)
}

fn parse_data<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    decode(data).map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

#[tonic::async_trait]
impl RaftService for RaftSvc {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&req)?;
        Ok(Response::new(
            self.append(&caller, &req.into_inner().data).await?,
        ))
    }

    type AppendEntriesStreamStream = Replies;

    /// See `in_turn`: openraft keeps one AppendEntries in flight per follower.
    async fn append_entries_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Replies>, Status> {
        self.in_turn(req, Answer::Append)
    }

    type ForwardStreamStream = Replies;

    /// See `in_turn`: a follower uses one stream per forward it has in flight.
    async fn forward_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Replies>, Status> {
        self.in_turn(req, Answer::Forward)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&req)?;
        let rpc: VoteRequest<u64> = parse(req)?;
        self.check_sender(&caller, rpc.vote.leader_id().voted_for())?;
        payload(&self.core.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&req)?;
        let RaftPayload { data, chunk } = req.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> = parse_data(&data)?;
        // A leader from before `chunk` existed sends the bytes inside `data`.
        if rpc.data.is_empty() {
            rpc.data = chunk;
        }
        self.check_sender(&caller, rpc.vote.leader_id().voted_for())?;
        payload(&self.core.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&req)?;
        Ok(Response::new(
            self.forward_one(&caller, &req.into_inner().data).await?,
        ))
    }
}
