//! The operations port: plaintext, no client certificate, and no data — only
//! grpc.health.v1 (what Kubernetes gRPC probes call) and Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic_health::pb::health_server::{Health, HealthServer};

use crate::core::NodeCore;

/// Binds `addr` and serves health and metrics until the node stops.
pub async fn serve<H: Health>(
    addr: &str,
    core: Arc<NodeCore>,
    health: HealthServer<H>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let scrape = core.clone();
    // Reflection of the health service alone, so `grpcurl -plaintext` works as is.
    // (grpcurl 1.8 asks v1alpha.)
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(std::io::Error::other)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(std::io::Error::other)?;
    let router = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .into_axum_router()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let core = scrape.clone();
                async move { core.metrics.render(&core).await }
            }),
        );
    let mut stopping = core.stopping.subscribe();
    tokio::spawn(async move {
        let stop = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "the ops port stopped");
        }
    });
    tracing::info!(%local, "ops port: grpc.health.v1 and /metrics (plaintext)");
    Ok(local)
}
