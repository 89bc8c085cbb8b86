//! Dialling a Concord node: one function for peers, the dev launcher, operator tools
//! and tests, so all of them speak mutual TLS the same way.

use std::sync::Arc;
use std::time::Duration;

use concord_pki::ReloadingTls;
use tonic::transport::{Channel, Endpoint};

use crate::error::NodeError;

/// A lazily connecting channel to `addr` (host:port). With `tls`, every new
/// connection is a mutual TLS handshake with the certificates current at that
/// moment; without, plaintext (insecure development mode only).
pub fn channel(addr: &str, tls: Option<Arc<ReloadingTls>>) -> Result<Channel, NodeError> {
    // The scheme stays http: TLS is done by the dialer, not by tonic.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| NodeError::Internal(format!("address {addr}: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(tower::service_fn(move |uri| {
            crate::transport::dial(tls.clone(), uri)
        })),
        None => endpoint.connect_lazy(),
    })
}
