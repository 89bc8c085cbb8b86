//! Node-to-node transport: openraft's `RaftNetwork` over the internal gRPC
//! `RaftService`, and the forwarding protocol followers use to reach the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_domain::{Command, Response};
use concord_proto::raft::v1::raft_service_client::RaftServiceClient;
use concord_proto::raft::v1::RaftPayload;
use concord_store::{EncodedEntries, NodeId, NodeInfo, TypeConfig};
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

/// An AppendEntries as [`encode`] gives it, byte for byte, with the entries the
/// raft log encoded when it appended them copied in: a leader sends every entry to
/// each peer, and encoding it again per peer was most of what a peer cost it
/// (docs/performance.md, "An entry encoded once for all peers").
pub fn encode_append(
    rpc: &AppendEntriesRequest<TypeConfig>,
    encoded: Option<&EncodedEntries>,
) -> Result<Vec<u8>, serde_json::Error> {
    let Some(encoded) = encoded.filter(|_| !rpc.entries.is_empty()) else {
        return encode(rpc);
    };
    assemble_append(rpc, encoded.of(&rpc.entries))
}

/// `rpc` encoded with `json[i]`, where given, as the JSON of `rpc.entries[i]`.
fn assemble_append(
    rpc: &AppendEntriesRequest<TypeConfig>,
    json: Vec<Option<Arc<[u8]>>>,
) -> Result<Vec<u8>, serde_json::Error> {
    let size: usize = json
        .iter()
        .map(|j| j.as_ref().map_or(512, |j| j.len()))
        .sum();
    let mut out = Vec::with_capacity(size + rpc.entries.len() + 256);
    // The fields in the order openraft declares them, as its derived
    // `Serialize` writes them.
    out.extend_from_slice(br#"{"vote":"#);
    serde_json::to_writer(&mut out, &rpc.vote)?;
    out.extend_from_slice(br#","prev_log_id":"#);
    serde_json::to_writer(&mut out, &rpc.prev_log_id)?;
    out.extend_from_slice(br#","entries":["#);
    for (i, (entry, json)) in rpc.entries.iter().zip(json).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match json {
            Some(json) => out.extend_from_slice(&json),
            None => serde_json::to_writer(&mut out, entry)?,
        }
    }
    out.extend_from_slice(br#"],"leader_commit":"#);
    serde_json::to_writer(&mut out, &rpc.leader_commit)?;
    out.push(b'}');
    Ok(out)
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
    /// Idle `ForwardStream`s by leader address. A forward takes one (or opens
    /// one) and puts it back once answered, so concurrent forwards each have
    /// their own and an abandoned one takes its stream with it.
    forward_streams: Arc<Mutex<HashMap<String, Vec<CallStream>>>>,
    /// Leaders that answered the stream UNIMPLEMENTED (an earlier version), and when.
    unary_forwards: Arc<Mutex<HashMap<String, Instant>>>,
    stream_retry: Duration,
}

/// How long a peer that answered a stream UNIMPLEMENTED gets unary calls before
/// the stream is tried again: during a rolling upgrade the peer is upgraded too,
/// and its callers should not keep the slower calls until they restart.
const STREAM_RETRY: Duration = Duration::from_secs(60);

fn unary_for_now(found: Option<Instant>, retry: Duration) -> bool {
    found.is_some_and(|at| at.elapsed() < retry)
}

/// Idle forward streams kept per leader: the forwarder's batches in flight and a
/// read index or two.
const IDLE_FORWARD_STREAMS: usize = 4;

impl Peers {
    pub fn new(tls: Option<Arc<concord_pki::ReloadingTls>>) -> Peers {
        Peers {
            channels: Arc::default(),
            tls,
            forward_streams: Arc::default(),
            unary_forwards: Arc::default(),
            stream_retry: STREAM_RETRY,
        }
    }

    /// Whether forwards to the leader at `addr` go on a `ForwardStream`: false
    /// for a while after it answered one UNIMPLEMENTED.
    pub fn streams_forwards_to(&self, addr: &str) -> bool {
        let found = lock(&self.unary_forwards).get(addr).copied();
        !unary_for_now(found, self.stream_retry)
    }

    /// `request` to the leader at `addr` over a `ForwardStream`, its reply, or
    /// None when that leader turns out to have no such stream.
    pub async fn forward_streamed(
        &self,
        addr: &str,
        request: RaftPayload,
        timeout: Duration,
    ) -> Option<Result<RaftPayload, tonic::Status>> {
        let client = match self.client(addr) {
            Ok(c) => c,
            Err(e) => return Some(Err(tonic::Status::unavailable(e.to_string()))),
        };
        let open = lock(&self.forward_streams).get_mut(addr).and_then(Vec::pop);
        match exchange_within(client, StreamRpc::Forward, open, request, timeout).await {
            Err(s) => Some(Err(s)),
            Ok(None) => {
                lock(&self.unary_forwards).insert(addr.to_string(), Instant::now());
                None
            }
            Ok(Some((stream, reply))) => {
                let mut idle = lock(&self.forward_streams);
                let streams = idle.entry(addr.to_string()).or_default();
                if streams.len() < IDLE_FORWARD_STREAMS {
                    streams.push(stream);
                }
                Some(Ok(reply))
            }
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
    /// This node's raft log's JSON of recent entries (`encode_append`).
    pub encoded: Option<EncodedEntries>,
    /// Where each AppendEntries' round trip goes, by target (`Metrics::peer_appends`).
    pub append_seconds: Option<prometheus::HistogramVec>,
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
        lock(&self.0)
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
            encoded: self.encoded.clone(),
            append_stream: None,
            unary_appends: None,
            stream_retry: STREAM_RETRY,
            append_seconds: self
                .append_seconds
                .as_ref()
                .map(|h| h.with_label_values(&[target.to_string()])),
        }
    }
}

pub struct PeerNetwork {
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    snapshot_timeouts: SnapshotTimeouts,
    snapshot_sends: SnapshotSends,
    encoded: Option<EncodedEntries>,
    /// The `AppendEntriesStream` to the target, opened by the first AppendEntries.
    /// It is taken out for each exchange and put back only once answered, so a
    /// call openraft abandons (a timeout drops it) takes its stream with it, and
    /// no late answer is read as the answer to the next request.
    append_stream: Option<CallStream>,
    /// When the target answered the stream UNIMPLEMENTED (an earlier version):
    /// unary AppendEntries to it for `stream_retry` from then.
    unary_appends: Option<Instant>,
    stream_retry: Duration,
    append_seconds: Option<prometheus::Histogram>,
}

/// A stream of requests answered one by one, in turn.
struct CallStream {
    requests: tokio::sync::mpsc::Sender<RaftPayload>,
    replies: tonic::Streaming<RaftPayload>,
}

/// The request-and-reply streams of `RaftService`.
#[derive(Clone, Copy, Debug)]
enum StreamRpc {
    AppendEntries,
    Forward,
}

/// One request and its reply over `open`, or over a new `rpc` stream when there
/// is none.
async fn exchange(
    mut client: RaftServiceClient<Channel>,
    rpc: StreamRpc,
    open: Option<CallStream>,
    request: RaftPayload,
) -> Result<(CallStream, RaftPayload), tonic::Status> {
    let closed = |_| tonic::Status::unavailable(format!("the {rpc:?} stream is closed"));
    let mut stream = match open {
        Some(s) => {
            s.requests.send(request).await.map_err(closed)?;
            s
        }
        None => {
            // The first request is queued before the call, so it leaves with the
            // stream's headers.
            let (requests, queued) = tokio::sync::mpsc::channel(1);
            requests.send(request).await.map_err(closed)?;
            let queued = tokio_stream::wrappers::ReceiverStream::new(queued);
            let replies = match rpc {
                StreamRpc::AppendEntries => client.append_entries_stream(queued).await?,
                StreamRpc::Forward => client.forward_stream(queued).await?,
            }
            .into_inner();
            CallStream { requests, replies }
        }
    };
    match stream.replies.message().await? {
        Some(reply) => Ok((stream, reply)),
        None => Err(tonic::Status::unavailable(format!(
            "the peer ended the {rpc:?} stream"
        ))),
    }
}

/// [`exchange`] within `timeout`; Ok(None) when the peer has no such stream
/// (it answered UNIMPLEMENTED: a version before the streams).
async fn exchange_within(
    client: RaftServiceClient<Channel>,
    rpc: StreamRpc,
    open: Option<CallStream>,
    request: RaftPayload,
    timeout: Duration,
) -> Result<Option<(CallStream, RaftPayload)>, tonic::Status> {
    match tokio::time::timeout(timeout, exchange(client, rpc, open, request)).await {
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        ))),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Ok(None),
        Ok(exchanged) => exchanged.map(Some),
    }
}

fn status_error<E: std::error::Error>(s: tonic::Status) -> RpcErr<E> {
    if s.code() == tonic::Code::Unavailable {
        RPCError::Unreachable(Unreachable::new(&TransportError(s.to_string())))
    } else {
        RPCError::Network(NetworkError::new(&TransportError(s.to_string())))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// A map's lock, still usable after a panic elsewhere (its maps hold no invariant
/// a half-made change could break).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_encoded(rpc, data, chunk, timeout).await
    }

    /// `call` with the request already encoded.
    async fn call_encoded<Resp, E>(
        &mut self,
        rpc: RaftRpc,
        data: Vec<u8>,
        chunk: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
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
        match result {
            Ok(r) => self.answer(&r.into_inner()),
            Err(s) => Err(status_error(s)),
        }
    }

    fn answer<Resp, E>(&self, payload: &RaftPayload) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply: Result<Resp, RaftError<NodeId, E>> =
            decode(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// One AppendEntries over the target's stream; None when the target has no
    /// such stream.
    async fn append_streamed(
        &mut self,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Option<Result<AppendEntriesResponse<NodeId>, RpcErr>> {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Some(Err(RPCError::Unreachable(Unreachable::new(
                    &TransportError(e.clone()),
                ))))
            }
        };
        let request = RaftPayload {
            data,
            chunk: vec![],
        };
        let open = self.append_stream.take();
        match exchange_within(client, StreamRpc::AppendEntries, open, request, timeout).await {
            Err(s) => Some(Err(status_error(s))),
            Ok(None) => None,
            Ok(Some((stream, reply))) => {
                self.append_stream = Some(stream);
                Some(self.answer(&reply))
            }
        }
    }

    /// One AppendEntries, on the stream if the target has one.
    async fn append_entries_now(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let network_err = |e: serde_json::Error| RPCError::Network(NetworkError::new(&e));
        if !unary_for_now(self.unary_appends, self.stream_retry) {
            let data = encode_append(&rpc, self.encoded.as_ref()).map_err(network_err)?;
            match self.append_streamed(data, option.hard_ttl()).await {
                Some(answer) => return answer,
                None => {
                    tracing::info!(
                        target = self.target,
                        "the peer has no AppendEntries stream (an earlier version): unary calls to it for a while"
                    );
                    self.unary_appends = Some(Instant::now());
                }
            }
        }
        let data = encode_append(&rpc, self.encoded.as_ref()).map_err(network_err)?;
        self.call_encoded(RaftRpc::AppendEntries, data, vec![], option.hard_ttl())
            .await
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let started = Instant::now();
        let answer = self.append_entries_now(rpc, option).await;
        if let (Ok(_), Some(h)) = (&answer, &self.append_seconds) {
            h.observe(started.elapsed().as_secs_f64());
        }
        answer
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

    use std::sync::atomic::Ordering;

    use tonic::Status;

    use crate::test_peer::TestPeer;

    /// Answers each AppendEntries with `PartialSuccess(prev_log_id)`, so a reply
    /// says which request it answers.
    fn echo(data: &[u8]) -> Result<RaftPayload, Status> {
        let req: AppendEntriesRequest<TypeConfig> =
            decode(data).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let reply: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Ok(AppendEntriesResponse::PartialSuccess(req.prev_log_id));
        Ok(RaftPayload {
            data: encode(&reply).map_err(|e| Status::internal(e.to_string()))?,
            chunk: vec![],
        })
    }

    /// Serves `peer` on a loopback port; a leader's view of it.
    async fn leader_view(peer: &TestPeer) -> PeerNetwork {
        let addr = peer.serve().await;
        let mut factory = NetworkFactory {
            peers: Peers::new(None),
            snapshot_timeouts: SnapshotTimeouts {
                chunk: Duration::from_secs(10),
                install_bytes_per_s: 1 << 20,
            },
            snapshot_sends: SnapshotSends::default(),
            encoded: None,
            append_seconds: None,
        };
        factory
            .new_client(
                2,
                &NodeInfo {
                    addr,
                    ..NodeInfo::default()
                },
            )
            .await
    }

    fn request(prev_index: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                prev_index,
            )),
            entries: vec![],
            leader_commit: None,
        }
    }

    /// Peers decode an AppendEntries a leader assembled from its log's JSON as
    /// they decode one it encoded whole: the bytes are the same, entries with JSON
    /// and without mixed, heartbeats (no entries) included.
    #[test]
    fn an_assembled_append_is_the_encoded_one_byte_for_byte() -> Result<(), serde_json::Error> {
        use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
        let id = |i| LogId::new(CommittedLeaderId::new(3, 2), i);
        let envelope = |i: u64| concord_domain::Envelope {
            actor: "SAMR".into(),
            principal: concord_domain::Principal::Member,
            request_id: format!("r-{i} \"quoted\"\n"),
            timestamp_ms: 1_700_000_000_000 + i as i64,
            command: concord_domain::Command::Tick {
                dedup_retention_ms: 1,
            },
        };
        let members = std::collections::BTreeSet::from([1u64, 2, 3]);
        let entries: Vec<Entry<TypeConfig>> = vec![
            Entry {
                log_id: id(5),
                payload: EntryPayload::Normal(envelope(5)),
            },
            Entry {
                log_id: id(6),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(7),
                payload: EntryPayload::Membership(Membership::new(vec![members], None)),
            },
            Entry {
                log_id: id(8),
                payload: EntryPayload::Normal(envelope(8)),
            },
        ];
        let mut rpc = request(4);
        rpc.leader_commit = Some(id(3));
        rpc.entries = entries;
        // The log's JSON for some entries, not for others (older ones it no longer
        // holds in memory).
        let json = rpc
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let bytes = serde_json::to_vec(e)?;
                Ok((i % 2 == 0).then(|| Arc::<[u8]>::from(bytes)))
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        assert_eq!(assemble_append(&rpc, json)?, encode(&rpc)?);
        assert_eq!(assemble_append(&rpc, vec![None; 4])?, encode(&rpc)?);
        let heartbeat = request(9);
        assert_eq!(assemble_append(&heartbeat, vec![])?, encode(&heartbeat)?);
        Ok(())
    }

    fn answered(r: Result<AppendEntriesResponse<NodeId>, RpcErr>) -> Option<u64> {
        match r {
            Ok(AppendEntriesResponse::PartialSuccess(Some(l))) => Some(l.index),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[tokio::test]
    async fn appends_share_one_stream_and_each_gets_its_own_answer() {
        let peer = TestPeer::new(echo);
        let mut net = leader_view(&peer).await;
        let ttl = RPCOption::new(Duration::from_secs(5));
        for i in 1..=20 {
            assert_eq!(
                answered(net.append_entries(request(i), ttl.clone()).await),
                Some(i)
            );
        }
        assert_eq!(peer.streams_opened.load(Ordering::SeqCst), 1);
        assert_eq!(peer.unary_calls.load(Ordering::SeqCst), 0);
    }

    /// openraft drops an AppendEntries that outlives its TTL. Its answer, when it
    /// comes, must not be taken for the answer to the next request.
    #[tokio::test]
    async fn an_abandoned_append_takes_its_stream_and_its_late_answer_with_it() {
        let peer = TestPeer::new(echo).first_streamed_answer_after(Duration::from_millis(500));
        let mut net = leader_view(&peer).await;
        let short = RPCOption::new(Duration::from_millis(100));
        assert!(net.append_entries(request(1), short).await.is_err());
        let ttl = RPCOption::new(Duration::from_secs(5));
        assert_eq!(
            answered(net.append_entries(request(2), ttl.clone()).await),
            Some(2)
        );
        assert_eq!(answered(net.append_entries(request(3), ttl).await), Some(3));
        assert_eq!(peer.streams_opened.load(Ordering::SeqCst), 2);
    }

    /// During a rolling upgrade a new leader replicates to nodes of the version
    /// before, which have only the unary call, and uses the stream once they are
    /// upgraded too.
    #[tokio::test]
    async fn a_peer_without_the_stream_gets_unary_appends_until_it_has_one() {
        let peer = TestPeer::new(echo).without_streams();
        let mut net = leader_view(&peer).await;
        let ttl = RPCOption::new(Duration::from_secs(5));
        for i in 1..=3 {
            assert_eq!(
                answered(net.append_entries(request(i), ttl.clone()).await),
                Some(i)
            );
        }
        assert_eq!(peer.unary_calls.load(Ordering::SeqCst), 3);
        // Within the retry period the stream is not asked for again.
        assert_eq!(peer.stream_attempts.load(Ordering::SeqCst), 1);
        // The peer is upgraded; once the period is over the stream is used.
        peer.streams.store(true, Ordering::SeqCst);
        net.stream_retry = Duration::ZERO;
        for i in 4..=6 {
            assert_eq!(
                answered(net.append_entries(request(i), ttl.clone()).await),
                Some(i)
            );
        }
        assert_eq!(peer.unary_calls.load(Ordering::SeqCst), 3);
        assert_eq!(peer.streams_opened.load(Ordering::SeqCst), 1);
    }

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
