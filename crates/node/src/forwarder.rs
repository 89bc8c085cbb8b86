//! Writes a follower forwards to the leader, many per RPC.
//!
//! A department writes at its own node; a follower passes the write on to the
//! leader. One RPC per write costs an HTTP/2 stream, its frames and TLS records
//! each way, on both nodes, for two writes in three of a three-node cluster.
//! Here writes that queue while earlier batches are in flight go together as one
//! `ForwardRequest::Writes`; the leader answers each write on its own. A lone
//! write goes at once, as a batch of one, so it waits no longer than before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_proto::raft::v1::RaftPayload;
use concord_store::NodeId;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::network::{
    decode, encode, ForwardError, ForwardReply, ForwardRequest, ForwardWrite, Peers,
};

/// Batches in flight to the leader at once. Writes that arrive while all are out
/// wait for the next, which is what makes batches.
const IN_FLIGHT: usize = 2;
/// The most writes in one batch (about 1 KiB each).
const MAX_BATCH: usize = 256;

type Reply = Result<concord_domain::Response, ForwardError>;

struct Pending {
    leader: NodeId,
    addr: String,
    write: ForwardWrite,
    deadline: Instant,
    reply: oneshot::Sender<Reply>,
}

/// The queue of writes to forward; a background task sends them.
pub struct Forwarder {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Forwarder {
    /// Starts the sending task, which ends when the `Forwarder` is dropped.
    pub fn start(peers: Peers, metrics: Arc<Metrics>) -> Forwarder {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(peers, metrics, rx));
        Forwarder { queue }
    }

    /// `write` as `leader`, at `addr`, answered it; `NotLeader` when it did not
    /// answer within `timeout` (the caller retries, and the request id makes a
    /// retry of an applied write harmless).
    pub async fn write(
        &self,
        leader: NodeId,
        addr: &str,
        write: ForwardWrite,
        timeout: Duration,
    ) -> Reply {
        let not_reached = ForwardError::NotLeader {
            leader: Some(leader),
        };
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            leader,
            addr: addr.to_string(),
            write,
            deadline: Instant::now() + timeout,
            reply,
        };
        if self.queue.send(pending).is_err() {
            return Err(not_reached);
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(reply)) => reply,
            _ => Err(not_reached),
        }
    }
}

async fn send_batches(
    peers: Peers,
    metrics: Arc<Metrics>,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // After a leader change a queue can hold writes for the old leader and
        // the new: each part goes where its caller sent it.
        let slot = Arc::new(slot);
        while !batch.is_empty() {
            let addr = batch[0].addr.clone();
            let (part, rest): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.addr == addr);
            batch = rest;
            metrics.forward_batches.inc();
            metrics.forwarded_writes.inc_by(part.len() as u64);
            tokio::spawn(send(peers.clone(), part, slot.clone()));
        }
    }
}

/// Sends one batch to one leader and hands each caller its answer.
async fn send(peers: Peers, batch: Vec<Pending>, _slot: Arc<OwnedSemaphorePermit>) {
    let leader = batch[0].leader;
    let addr = batch[0].addr.clone();
    let deadline = batch
        .iter()
        .map(|p| p.deadline)
        .max()
        .unwrap_or_else(Instant::now);
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(50));
    let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.reply)).unzip();
    let not_reached = || ForwardError::NotLeader {
        leader: Some(leader),
    };
    let answers: Vec<Reply> = if writes.len() == 1 {
        // Alone: the single form, which every version of the leader understands.
        let one = writes
            .into_iter()
            .map(|w| forward_one(&peers, leader, &addr, w, timeout));
        futures::future::join_all(one).await
    } else {
        match call(
            &peers,
            leader,
            &addr,
            &ForwardRequest::Writes(writes.clone()),
            timeout,
        )
        .await
        {
            Ok(Ok(ForwardReply::Writes(answers))) if answers.len() == writes.len() => answers,
            Ok(Ok(other)) => writes.iter().map(|_| Err(unexpected(&other))).collect(),
            Ok(Err(e)) => writes.iter().map(|_| Err(e.clone())).collect(),
            // A leader of an older version does not know batches (it cannot
            // decode one): during a rolling upgrade, send the writes one by one.
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                let one_by_one = writes
                    .into_iter()
                    .map(|w| forward_one(&peers, leader, &addr, w, timeout));
                futures::future::join_all(one_by_one).await
            }
            Err(_) => writes.iter().map(|_| Err(not_reached())).collect(),
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that gave up is gone: nothing to tell.
        let _ = reply.send(answer);
    }
}

async fn forward_one(
    peers: &Peers,
    leader: NodeId,
    addr: &str,
    write: ForwardWrite,
    timeout: Duration,
) -> Reply {
    match call(peers, leader, addr, &ForwardRequest::Write(write), timeout).await {
        Ok(Ok(ForwardReply::Written(r))) => Ok(r),
        Ok(Ok(other)) => Err(unexpected(&other)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ForwardError::NotLeader {
            leader: Some(leader),
        }),
    }
}

fn unexpected(reply: &ForwardReply) -> ForwardError {
    ForwardError::Refused {
        code: tonic::Code::Internal as i32,
        message: format!("unexpected reply to a forwarded write: {reply:?}"),
    }
}

/// One forwarding RPC: the leader's answer, or the status of an RPC that failed
/// (the leader unreachable, gone, or refusing the payload).
pub async fn call(
    peers: &Peers,
    leader: NodeId,
    addr: &str,
    req: &ForwardRequest,
    timeout: Duration,
) -> Result<Result<ForwardReply, ForwardError>, tonic::Status> {
    let encoded = || {
        encode(req)
            .map(|data| RaftPayload {
                data,
                chunk: vec![],
            })
            .map_err(|e| tonic::Status::internal(e.to_string()))
    };
    let streamed = if peers.streams_forwards_to(addr) {
        peers.forward_streamed(addr, encoded()?, timeout).await
    } else {
        None
    };
    let reply = match streamed {
        Some(streamed) => streamed,
        // A leader of the version before: one unary call per forward. (Encoded
        // again only on the call that finds out; a batch is not copied per call.)
        None => {
            let mut client = peers
                .client(addr)
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(encoded()?);
            request.set_timeout(timeout);
            client
                .forward(request)
                .await
                .map(tonic::Response::into_inner)
        }
    }
    .inspect_err(|s| {
        tracing::debug!(leader, why = %s, "forward to leader failed; will retry");
    })?;
    decode::<Result<ForwardReply, ForwardError>>(&reply.data)
        .map_err(|e| tonic::Status::internal(format!("undecodable reply: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concord_domain::{Command, Outcome, Response};
    use tonic::Status;

    use super::*;
    use crate::test_peer::TestPeer;

    /// The leader's answer to write `w-<n>`: revision 1000 + n, so a test knows
    /// which write an answer is for.
    fn written_as(request_id: &str) -> Result<RaftPayload, Status> {
        let n: u64 = request_id
            .trim_start_matches("w-")
            .parse()
            .map_err(|_| Status::invalid_argument(format!("request id {request_id}")))?;
        let reply: Result<ForwardReply, ForwardError> = Ok(ForwardReply::Written(Response {
            revision: 1000 + n,
            result: Ok(Outcome::Nothing),
            replayed: false,
        }));
        Ok(RaftPayload {
            data: encode(&reply).map_err(|e| Status::internal(e.to_string()))?,
            chunk: vec![],
        })
    }

    /// A leader of this version answering a single forwarded write.
    fn written(data: &[u8]) -> Result<RaftPayload, Status> {
        match decode::<ForwardRequest>(data) {
            Ok(ForwardRequest::Write(w)) => written_as(&w.request_id),
            _ => Err(Status::invalid_argument("expected a single write")),
        }
    }

    /// A `ForwardRequest` of a leader from before batches: `Write` and `ReadIndex`
    /// only, so a batch does not decode (the InvalidArgument of
    /// `services::raft::parse_data`).
    #[derive(serde::Deserialize)]
    enum OlderForwardRequest {
        Write {
            actor: String,
            request_id: String,
            #[allow(dead_code)]
            command: Command,
        },
        ReadIndex,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_that_cannot_decode_batches_gets_the_writes_one_by_one() {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = seen.clone();
        // It answers slowly, so writes queue behind the forwarder's slots and go
        // as batches first; and it has no streams.
        let leader = TestPeer::new(move |data| {
            let req: OlderForwardRequest = decode(data)
                .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))?;
            let OlderForwardRequest::Write {
                actor, request_id, ..
            } = req
            else {
                return Err(Status::unimplemented("not in this test"));
            };
            assert_eq!(actor, "SAMR");
            recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(request_id.clone());
            written_as(&request_id)
        })
        .without_streams()
        .unary_answers_after(Duration::from_millis(30));
        let addr = leader.serve().await;
        let metrics = Metrics::new(2, "SAMR");
        let forwarder = Forwarder::start(Peers::new(None), metrics.clone());
        let writes = (0..12).map(|n| {
            let write = ForwardWrite {
                actor: "SAMR".into(),
                request_id: format!("w-{n}"),
                command: Command::Tick {
                    dedup_retention_ms: 0,
                },
            };
            forwarder.write(1, &addr, write, Duration::from_secs(10))
        });
        let answers = futures::future::join_all(writes).await;
        for (n, answer) in answers.iter().enumerate() {
            match answer {
                Ok(r) => assert_eq!(r.revision, 1000 + n as u64, "answer to w-{n}"),
                Err(e) => panic!("w-{n} was not answered: {e:?}"),
            }
        }
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        seen.sort();
        let mut expected: Vec<_> = (0..12).map(|n| format!("w-{n}")).collect();
        expected.sort();
        assert_eq!(seen, expected, "each write reached the leader once");
        // Batches were tried (and refused), not only single writes.
        assert!(metrics.forward_batches.get() < metrics.forwarded_writes.get());
    }

    fn write(n: u64) -> ForwardRequest {
        ForwardRequest::Write(ForwardWrite {
            actor: "SAMR".into(),
            request_id: format!("w-{n}"),
            command: Command::Tick {
                dedup_retention_ms: 0,
            },
        })
    }

    fn revision(answer: Result<Result<ForwardReply, ForwardError>, tonic::Status>) -> u64 {
        match answer {
            Ok(Ok(ForwardReply::Written(r))) => r.revision,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Forwards in flight together each have a stream of their own, and a forward
    /// given up on takes its stream along: its late answer goes to nobody.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_forwards_get_their_own_answers_and_an_abandoned_one_answers_nobody() {
        let leader = TestPeer::new(written).first_streamed_answer_after(Duration::from_millis(500));
        let addr = leader.serve().await;
        let peers = Peers::new(None);
        let abandoned = call(&peers, 1, &addr, &write(1), Duration::from_millis(100)).await;
        assert!(abandoned.is_err(), "{abandoned:?}");
        let long = Duration::from_secs(5);
        for round in 0..3 {
            let (wa, wb) = (write(10 + round), write(20 + round));
            let (a, b) = tokio::join!(
                call(&peers, 1, &addr, &wa, long),
                call(&peers, 1, &addr, &wb, long)
            );
            assert_eq!(revision(a), 1010 + round);
            assert_eq!(revision(b), 1020 + round);
        }
        let opened = leader
            .streams_opened
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (2..=3).contains(&opened),
            "{opened} streams for two at a time"
        );
        assert_eq!(
            leader.unary_calls.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }
}
