//! A scripted peer for the transport tests of `network` and `forwarder`: one
//! function answers every request, unary or streamed, and counters and delays
//! say what a test needs to know of how the requests travelled.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_proto::raft::v1::raft_service_server::{RaftService, RaftServiceServer};
use concord_proto::raft::v1::RaftPayload;
use tonic::{Request, Response, Status, Streaming};

type Answer = Arc<dyn Fn(&[u8]) -> Result<RaftPayload, Status> + Send + Sync>;
type Replies = Pin<Box<dyn futures::Stream<Item = Result<RaftPayload, Status>> + Send>>;

/// Answers AppendEntries and forwards alike (a test sends only the one it is
/// about); votes and snapshots are not in these tests.
#[derive(Clone)]
pub(crate) struct TestPeer {
    answer: Answer,
    /// false: a node of an earlier version, without the stream methods.
    pub streams: Arc<AtomicBool>,
    /// How long each unary call waits before it is answered.
    unary_delay: Duration,
    /// The first streamed request is answered only after this long.
    first_delay: Duration,
    delayed: Arc<AtomicBool>,
    pub unary_calls: Arc<AtomicUsize>,
    pub stream_attempts: Arc<AtomicUsize>,
    pub streams_opened: Arc<AtomicUsize>,
}

impl TestPeer {
    pub fn new(
        answer: impl Fn(&[u8]) -> Result<RaftPayload, Status> + Send + Sync + 'static,
    ) -> Self {
        TestPeer {
            answer: Arc::new(answer),
            streams: Arc::new(AtomicBool::new(true)),
            unary_delay: Duration::ZERO,
            first_delay: Duration::ZERO,
            delayed: Arc::default(),
            unary_calls: Arc::default(),
            stream_attempts: Arc::default(),
            streams_opened: Arc::default(),
        }
    }

    pub fn without_streams(self) -> Self {
        self.streams.store(false, Ordering::SeqCst);
        self
    }

    pub fn first_streamed_answer_after(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    pub fn unary_answers_after(mut self, delay: Duration) -> Self {
        self.unary_delay = delay;
        self
    }

    /// Serves on a loopback port (plaintext); returns the address.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServiceServer::new(self.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    async fn unary(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.unary_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.unary_delay).await;
        (self.answer)(&req.into_inner().data).map(Response::new)
    }

    /// Each request of the stream answered in turn, the first one late.
    fn streamed(&self, req: Request<Streaming<RaftPayload>>) -> Result<Response<Replies>, Status> {
        self.stream_attempts.fetch_add(1, Ordering::SeqCst);
        if !self.streams.load(Ordering::SeqCst) {
            return Err(Status::unimplemented("a node of the version before"));
        }
        self.streams_opened.fetch_add(1, Ordering::SeqCst);
        let peer = self.clone();
        let replies = futures::stream::unfold(req.into_inner(), move |mut requests| {
            let peer = peer.clone();
            async move {
                let request = requests.message().await.ok()??;
                if !peer.delayed.swap(true, Ordering::SeqCst) {
                    tokio::time::sleep(peer.first_delay).await;
                }
                Some(((peer.answer)(&request.data), requests))
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

#[tonic::async_trait]
impl RaftService for TestPeer {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.unary(req).await
    }

    type AppendEntriesStreamStream = Replies;

    async fn append_entries_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Replies>, Status> {
        self.streamed(req)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.unary(req).await
    }

    type ForwardStreamStream = Replies;

    async fn forward_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Replies>, Status> {
        self.streamed(req)
    }

    async fn vote(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }

    async fn install_snapshot(
        &self,
        _: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }
}
