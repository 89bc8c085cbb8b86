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

use crate::auth::{interceptor, Surface};
use crate::config::NodeConfig;
use crate::core::NodeCore;
use crate::network::{NetworkFactory, Peers};
use crate::services::{
    case::CaseSvc, cluster::ClusterSvc, credit::CreditSvc, entity::EntitySvc,
    inspection::InspectionSvc, item::ItemSvc, raft::RaftSvc, sharing::SharingSvc, watch::WatchSvc,
};
use crate::transport::{self, RefusalLog, Security};
use concord_pki::{CertRole, ReloadingTls};
use concord_proto::case::v1::case_service_server::CaseServiceServer;
use concord_proto::credit::v1::credit_service_server::CreditServiceServer;
use concord_proto::entity::v1::entity_service_server::EntityServiceServer;
use concord_proto::inspection::v1::inspection_service_server::InspectionServiceServer;
use concord_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use tonic::service::interceptor::InterceptedService;

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
    #[error("TLS: {0}")]
    Tls(String),
}

/// The development CA mode (`tls.ca_key`): a node certificate for this node's
/// department, valid for its advertised host and localhost (for port-forwards),
/// written where `tls.cert` and `tls.key` point. Issued afresh at every start, so a
/// restart renews it.
fn issue_own_certificate(config: &NodeConfig, ca_key: &std::path::Path) -> Result<(), StartError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
    };
    let ca = concord_pki::Ca::from_pem(&read(&config.tls.ca)?, &read(ca_key)?).map_err(|e| {
        StartError::Tls(format!(
            "tls.ca_key {} with tls.ca {}: {e}",
            ca_key.display(),
            config.tls.ca.display()
        ))
    })?;
    let identity = concord_pki::Identity::new(
        &config.department,
        concord_pki::CertRole::Node,
        &format!("node-{}", config.node_id),
    )
    .map_err(|e| StartError::Tls(e.to_string()))?;
    let host = config
        .advertise
        .rsplit_once(':')
        .map_or(config.advertise.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut hosts = vec![host.to_string(), "localhost".to_string()];
    hosts.extend(config.tls.hosts.iter().cloned());
    let issued = ca
        .issue(&identity, &hosts, concord_pki::Validity::days_from_now(365))
        .map_err(|e| StartError::Tls(format!("issuing this node's certificate: {e}")))?;
    for (path, pem, private) in [
        (&config.tls.key, &issued.key_pem, true),
        (&config.tls.cert, &issued.cert_pem, false),
    ] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StartError::Tls(format!("{}: {e}", dir.display())))?;
        }
        concord_pki::layout::write_atomically(path, pem, private)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    tracing::warn!(
        cert = %config.tls.cert.display(),
        "tls.ca_key is set: this node issued its own certificate from a CA key it holds; development only"
    );
    Ok(())
}

/// Loads this node's certificates and checks they speak for this node.
fn load_tls(config: &NodeConfig) -> Result<Option<Arc<ReloadingTls>>, StartError> {
    if config.tls.insecure {
        tracing::warn!(
            "tls.insecure is set: every port is PLAINTEXT and callers are not authenticated; \
             never run a cluster that holds real data like this"
        );
        return Ok(None);
    }
    if let Some(ca_key) = &config.tls.ca_key {
        issue_own_certificate(config, ca_key)?;
    }
    let tls = ReloadingTls::load(config.tls.files()).map_err(|e| StartError::Tls(e.to_string()))?;
    let id = tls.identity();
    if id.role != CertRole::Node || id.department != config.department {
        return Err(StartError::Tls(format!(
            "{} is a {} certificate of {}; this node needs a node certificate of {}",
            config.tls.cert.display(),
            id.role,
            id.department,
            config.department
        )));
    }
    Ok(Some(Arc::new(tls)))
}

/// A node that is serving. Dropping it does not stop it; call [`RunningNode::shutdown`].
pub struct RunningNode {
    pub core: Arc<NodeCore>,
    /// The address the server is bound to (useful with port 0).
    pub addr: SocketAddr,
    /// The ops port (health and metrics), when configured.
    pub ops_addr: Option<SocketAddr>,
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
        cache_bytes: config.storage.cache_mib << 20,
        memtable_bytes: config.storage.memtable_mib << 20,
    };
    let (log_store, state_machine, reader) = concord_store::open(&config.data_dir, options)?;
    let raft_config = Arc::new(
        config
            .openraft_config()
            .validate()
            .map_err(|e| StartError::Raft(e.to_string()))?,
    );
    let security = Security {
        tls: load_tls(&config)?,
        refusals: RefusalLog::default(),
        identities: Default::default(),
    };
    let peers = Peers::new(security.tls.clone());
    let snapshot_sends = crate::network::SnapshotSends::default();
    let metrics = crate::metrics::Metrics::new(config.node_id, &config.department);
    metrics.register(reader.timings().collectors());
    let network = NetworkFactory {
        peers: peers.clone(),
        snapshot_timeouts: config.snapshot_timeouts(),
        snapshot_sends: snapshot_sends.clone(),
        encoded: Some(log_store.encoded_entries()),
        append_seconds: Some(metrics.peer_appends.clone()),
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
        forwarder: crate::forwarder::Forwarder::start(peers.clone(), metrics.clone()),
        peers,
        snapshot_sends,
        config: config.clone(),
        stopping,
        security: security.clone(),
        metrics,
        read_index: Default::default(),
        leader_read_index: Default::default(),
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
    health_reporter
        .set_serving::<SharingServiceServer<SharingSvc>>()
        .await;
    health_reporter
        .set_serving::<EntityServiceServer<EntitySvc>>()
        .await;
    health_reporter
        .set_serving::<CreditServiceServer<CreditSvc>>()
        .await;
    health_reporter
        .set_serving::<InspectionServiceServer<InspectionSvc>>()
        .await;
    health_reporter
        .set_serving::<CaseServiceServer<CaseSvc>>()
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

    let ops = match &config.ops_listen {
        Some(addr) => Some(
            crate::ops::serve(addr, core.clone(), health_service.clone())
                .await
                .map_err(|source| StartError::Listen {
                    addr: addr.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .layer(crate::metrics::MetricsLayer(core.metrics.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            ClusterServiceServer::new(ClusterSvc { core: core.clone() })
                .max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Cluster),
        ))
        .add_service(InterceptedService::new(
            ItemServiceServer::new(ItemSvc { core: core.clone() }).max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            EntityServiceServer::new(EntitySvc { core: core.clone() })
                .max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            CaseServiceServer::new(CaseSvc { core: core.clone() }).max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            InspectionServiceServer::new(InspectionSvc { core: core.clone() })
                .max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            CreditServiceServer::new(CreditSvc { core: core.clone() })
                .max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            SharingServiceServer::new(SharingSvc { core: core.clone() })
                .max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            WatchServiceServer::new(WatchSvc { core: core.clone() })
                .max_decoding_message_size(limit),
            interceptor(core.clone(), Surface::Departmental),
        ))
        .add_service(InterceptedService::new(
            concord_proto::raft::v1::join_service_server::JoinServiceServer::new(
                crate::services::join::JoinSvc { core: core.clone() },
            ),
            interceptor(core.clone(), Surface::Join),
        ))
        // Raft traffic carries snapshot chunks and entry batches larger than client requests.
        .add_service(InterceptedService::new(
            RaftServiceServer::new(RaftSvc { core: core.clone() })
                .max_decoding_message_size(usize::MAX),
            interceptor(core.clone(), Surface::Raft),
        ));
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = shutdown_rx.await;
    };
    let server = match &security.tls {
        Some(tls) => {
            tokio::spawn(transport::reload_certificates(
                tls.clone(),
                std::time::Duration::from_millis(config.tls.reload_interval_ms),
                core.stopping.subscribe(),
            ));
            let incoming =
                transport::tls_incoming(listener, tls.clone(), security.refusals.clone());
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
        None => {
            // serve_with_incoming bypasses the builder's tcp_nodelay, so set it on every
            // accepted connection: otherwise small replies wait on Nagle + delayed ACK.
            let incoming = TcpListenerStream::new(listener).map(|conn| {
                conn.inspect(|c| {
                    if let Err(e) = c.set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                })
            });
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
    };

    tokio::spawn(core.clone().run_ticker());
    tokio::spawn(crate::compaction::run(core.clone()));
    tokio::spawn(crate::membership::run(
        core.clone(),
        core.config.membership.clone(),
    ));
    if !config.join.is_empty() {
        tokio::spawn(crate::services::join::join_until_member(
            core.clone(),
            config.join.clone(),
        ));
    }
    if let Err(e) = core.clone().bootstrap_if_configured().await {
        tracing::error!(error = %e, "bootstrap failed");
    }
    tracing::info!(node_id = config.node_id, department = %config.department, %addr, ops = ?ops, tls = security.tls.is_some(), "node serving");
    Ok(RunningNode {
        core,
        addr,
        ops_addr: ops,
        shutdown_tx,
        server,
    })
}
