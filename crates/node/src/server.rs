//! Wiring: config → store → network → Raft → gRPC server, in one function.

use std::net::SocketAddr;
use std::sync::Arc;

use concord_proto::cluster::v1::cluster_service_server::ClusterServiceServer;
use concord_proto::item::v1::item_service_server::ItemServiceServer;
use concord_proto::raft::v1::raft_service_server::RaftServiceServer;
use concord_proto::watch::v1::watch_service_server::WatchServiceServer;
use concord_store::{Raft, StoreOptions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::config::NodeConfig;
use crate::core::NodeCore;
use crate::network::{NetworkFactory, Peers};
use crate::services::{cluster::ClusterSvc, item::ItemSvc, raft::RaftSvc, watch::WatchSvc};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] concord_store::StoreError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("reflection: {0}")]
    Reflection(String),
}

/// A node that is serving. Dropping it does not stop it; call [`RunningNode::shutdown`].
pub struct RunningNode {
    pub core: Arc<NodeCore>,
    /// The address the server is bound to (useful with port 0).
    pub addr: SocketAddr,
    shutdown_tx: tokio::sync::oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningNode {
    /// Stops serving (watch streams end with UNAVAILABLE), then stops Raft.
    pub async fn shutdown(self) {
        let _ = self.core.stopping.send(true);
        let _ = self.shutdown_tx.send(());
        let _ = self.server.await;
        let _ = self.core.raft.shutdown().await;
    }
}

/// Binds the listener first, so a config with port 0 learns its port before Raft
/// advertises it.
pub async fn bind(config: &NodeConfig) -> Result<TcpListener, StartError> {
    TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen.clone(),
            source,
        })
}

pub async fn start(config: NodeConfig) -> Result<RunningNode, StartError> {
    let listener = bind(&config).await?;
    start_with_listener(config, listener).await
}

pub async fn start_with_listener(
    config: NodeConfig,
    listener: TcpListener,
) -> Result<RunningNode, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let options = StoreOptions {
        event_retention: config.housekeeping.event_retention,
        ..Default::default()
    };
    let (log_store, state_machine, reader) = concord_store::open(&config.data_dir, options)?;
    let raft_config = Arc::new(
        config
            .openraft_config()
            .validate()
            .map_err(|e| StartError::Raft(e.to_string()))?,
    );
    let peers = Peers::default();
    let network = NetworkFactory {
        peers: peers.clone(),
    };
    let raft = Raft::new(
        config.node_id,
        raft_config,
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let (stopping, _) = tokio::sync::watch::channel(false);
    let core = Arc::new(NodeCore {
        id: config.node_id,
        department: config.department.clone(),
        raft,
        reader,
        peers,
        config: config.clone(),
        stopping,
    });

    let limit = config.limits.max_request_bytes;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ItemServiceServer<ItemSvc>>()
        .await;
    health_reporter
        .set_serving::<ClusterServiceServer<ClusterSvc>>()
        .await;
    health_reporter
        .set_serving::<WatchServiceServer<WatchSvc>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(concord_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(concord_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| StartError::Reflection(e.to_string()))?;

    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            ClusterServiceServer::new(ClusterSvc { core: core.clone() })
                .max_decoding_message_size(limit),
        )
        .add_service(
            ItemServiceServer::new(ItemSvc { core: core.clone() }).max_decoding_message_size(limit),
        )
        .add_service(
            WatchServiceServer::new(WatchSvc { core: core.clone() })
                .max_decoding_message_size(limit),
        )
        // Raft traffic carries snapshot chunks and entry batches larger than client requests.
        .add_service(
            RaftServiceServer::new(RaftSvc { core: core.clone() })
                .max_decoding_message_size(usize::MAX),
        );
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    // serve_with_incoming bypasses the builder's tcp_nodelay, so set it on every
    // accepted connection: otherwise small replies wait on Nagle + delayed ACK.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|c| {
            if let Err(e) = c.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    });
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = shutdown_rx.await;
    }));

    tokio::spawn(core.clone().run_ticker());
    if let Err(e) = core.clone().bootstrap_if_configured().await {
        tracing::error!(error = %e, "bootstrap failed");
    }
    tracing::info!(node_id = config.node_id, department = %config.department, %addr, "node serving");
    Ok(RunningNode {
        core,
        addr,
        shutdown_tx,
        server,
    })
}
