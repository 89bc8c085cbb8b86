//! Node-to-node transport: openraft's `RaftNetwork` over the internal gRPC
//! `RaftService`, and the forwarding protocol followers use to reach the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_domain::{Command, Response};
use concord_proto::raft::v1::raft_service_client::RaftServiceClient;
use concord_proto::raft::v1::RaftPayload;
use concord_store::{NodeId, NodeInfo, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::error::NodeError;

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// What a non-leader asks the leader to do on its behalf. Administrative actions
/// are not forwarded: they run on the leader with the admin's own certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(ForwardWrite),
    /// Writes queued together at a follower (`forwarder`), answered each on its
    /// own, in order, by `ForwardReply::Writes`.
    Writes(Vec<ForwardWrite>),
    /// The leader confirms it still leads and returns its commit point.
    ReadIndex,
}

/// A write as `actor`, which the leader accepts only when it is the forwarding
/// node's own department. (As `ForwardRequest::Write` it has the JSON form of the
/// struct variant it was before batches, so leaders of either version read it.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardWrite {
    pub actor: String,
    pub request_id: String,
    pub command: Command,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Written(Response),
    Writes(Vec<Result<Response, ForwardError>>),
    ReadIndex { index: u64 },
}

/// Why the leader did not do it. `NotLeader` is retried against the new leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardError {
    NotLeader { leader: Option<NodeId> },
    Refused { code: i32, message: String },
}

/// gRPC channels to peers, by address, created lazily and reused. Each new
/// connection is dialled with the certificates current at that moment.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<Arc<concord_pki::ReloadingTls>>,
}

impl Peers {
    pub fn new(tls: Option<Arc<concord_pki::ReloadingTls>>) -> Peers {
        Peers {
            channels: Arc::default(),
            tls,
        }
    }

    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, NodeError> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| NodeError::Internal("peer table poisoned".into()))?;
        if let Some(ch) = map.get(addr) {
            return Ok(RaftServiceClient::new(ch.clone()).max_decoding_message_size(usize::MAX));
        }
        let ch = crate::client::channel(addr, self.tls.clone())?;
        map.insert(addr.to_string(), ch.clone());
        Ok(RaftServiceClient::new(ch).max_decoding_message_size(usize::MAX))
    }
}

pub struct NetworkFactory {
    pub peers: Peers,
    pub snapshot_timeouts: SnapshotTimeouts,
    pub snapshot_sends: SnapshotSends,
}

/// The snapshots this node is sending, by target. A target that installs a
/// snapshot resumes from the log right after it; the log compaction policy
/// (`compaction`) keeps that part of the log until the install is over, or the
/// target would need a second snapshot (seen at 1 M records: 146 s more).
#[derive(Clone, Default)]
pub struct SnapshotSends(Arc<Mutex<HashMap<NodeId, Sending>>>);

#[derive(Clone, Copy, Debug)]
struct Sending {
    /// The last log index the snapshot covers.
    last_index: u64,
    /// Chunks awaiting their answer (the final one lasts the whole install).
    in_flight: u32,
    /// When the last chunk was sent or answered.
    at: Instant,
}

impl SnapshotSends {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Sending>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a chunk in flight until the returned guard is dropped (answered,
    /// failed or cancelled alike).
    fn chunk(&self, target: NodeId, last_index: u64) -> ChunkInFlight {
        let mut map = self.map();
        let s = map.entry(target).or_insert(Sending {
            last_index,
            in_flight: 0,
            at: Instant::now(),
        });
        s.last_index = last_index;
        s.in_flight += 1;
        s.at = Instant::now();
        ChunkInFlight {
            sends: self.clone(),
            target,
        }
    }

    /// Targets with a chunk in flight, or one sent or answered within `recent`
    /// (between chunks, and between a failed transfer and its retry), with the
    /// last index of the snapshot they get.
    pub fn active(&self, recent: Duration) -> Vec<(NodeId, u64)> {
        let mut map = self.map();
        map.retain(|_, s| s.in_flight > 0 || s.at.elapsed() < recent);
        map.iter().map(|(id, s)| (*id, s.last_index)).collect()
    }
}

struct ChunkInFlight {
    sends: SnapshotSends,
    target: NodeId,
}

impl Drop for ChunkInFlight {
    fn drop(&mut self) {
        if let Some(s) = self.sends.map().get_mut(&self.target) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.at = Instant::now();
        }
    }
}

/// How long the leader waits for an InstallSnapshot chunk. The final chunk is
/// answered only once the follower has installed the whole snapshot, which takes
/// time in proportion to its size: under a fixed timeout a large snapshot was
/// installed, counted as failed by the leader, and sent again from the start.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotTimeouts {
    /// For every chunk, and the base of the final one.
    pub chunk: Duration,
    /// The slowest install the leader still waits for, in bytes per second.
    pub install_bytes_per_s: u64,
}

impl SnapshotTimeouts {
    /// The timeout of the chunk at `offset` of `len` bytes.
    pub fn for_chunk(&self, offset: u64, len: usize, done: bool) -> Duration {
        if !done {
            return self.chunk;
        }
        let size = offset.saturating_add(len as u64);
        self.chunk + Duration::from_secs(size / self.install_bytes_per_s.max(1))
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerNetwork {
            target,
            client: self.peers.client(&node.addr).map_err(|e| e.to_string()),
            snapshot_timeouts: self.snapshot_timeouts,
            snapshot_sends: self.snapshot_sends.clone(),
        }
    }
}

pub struct PeerNetwork {
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    snapshot_timeouts: SnapshotTimeouts,
    snapshot_sends: SnapshotSends,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// The raft RPCs a peer serves.
#[derive(Clone, Copy)]
enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

impl PeerNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: RaftRpc,
        req: &Req,
        chunk: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    e.clone(),
                ))))
            }
        };
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data, chunk });
        request.set_timeout(timeout);
        let sent = async {
            match rpc {
                RaftRpc::AppendEntries => client.append_entries(request).await,
                RaftRpc::Vote => client.vote(request).await,
                RaftRpc::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        // grpc-timeout bounds the peer's work; this bounds the wait for a peer
        // that no longer answers at all.
        let Ok(result) = tokio::time::timeout(timeout, sent).await else {
            return Err(RPCError::Network(NetworkError::new(&TransportError(
                format!("no answer within {timeout:?}"),
            ))));
        };
        let payload = match result {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    s.to_string(),
                ))))
            }
            Err(s) => {
                return Err(RPCError::Network(NetworkError::new(&TransportError(
                    s.to_string(),
                ))))
            }
        };
        let reply: Result<Resp, RaftError<NodeId, E>> =
            decode(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call(RaftRpc::AppendEntries, &rpc, vec![], option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        // openraft's own limit (`install_snapshot_timeout`) is set far above these:
        // it applies one value to every chunk, the final one included.
        let chunk = std::mem::take(&mut rpc.data);
        let timeout = self
            .snapshot_timeouts
            .for_chunk(rpc.offset, chunk.len(), rpc.done);
        let last_index = rpc.meta.last_log_id.map_or(0, |l| l.index);
        let _in_flight = self.snapshot_sends.chunk(self.target, last_index);
        self.call(RaftRpc::InstallSnapshot, &rpc, chunk, timeout)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call(RaftRpc::Vote, &rpc, vec![], option.hard_ttl())
            .await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_snapshot_chunk_waits_longer_the_larger_the_snapshot() {
        let t = SnapshotTimeouts {
            chunk: Duration::from_secs(10),
            install_bytes_per_s: 4 << 20,
        };
        assert_eq!(t.for_chunk(0, 1 << 20, false), Duration::from_secs(10));
        assert_eq!(
            t.for_chunk(2 << 30, 1 << 20, false),
            Duration::from_secs(10)
        );
        // 2.5 GiB at 4 MiB/s: 640 s more than a chunk.
        assert_eq!(
            t.for_chunk((5 << 29) - (1 << 20), 1 << 20, true),
            Duration::from_secs(650)
        );
        assert_eq!(t.for_chunk(0, 1000, true), Duration::from_secs(10));
    }

    #[test]
    fn a_snapshot_send_counts_while_a_chunk_is_out_and_for_a_while_after() {
        let sends = SnapshotSends::default();
        assert!(sends.active(Duration::from_secs(60)).is_empty());
        let first = sends.chunk(4, 900);
        let second = sends.chunk(4, 900);
        drop(first);
        // One chunk still out: active however short the window.
        assert_eq!(sends.active(Duration::ZERO), vec![(4, 900)]);
        drop(second);
        assert_eq!(sends.active(Duration::from_secs(60)), vec![(4, 900)]);
        // Nothing out and nothing recent: forgotten.
        assert!(sends.active(Duration::ZERO).is_empty());
        assert!(sends.active(Duration::from_secs(60)).is_empty());
    }
}
