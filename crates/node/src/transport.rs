//! Connections: the TLS listener (every accepted connection must complete a mutual
//! TLS handshake with a certificate from the CA bundle), the TLS dialer for peers,
//! the record of refused connections, and the task that reloads certificates.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_pki::{IdentityCache, Refusal, ReloadingTls};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;

use crate::gather::Gathered;

/// How long a connection may take to say its first byte and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const KEPT_REFUSALS: usize = 256;

/// This node's TLS state: None runs plaintext (`tls.insecure`).
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Arc<ReloadingTls>>,
    pub refusals: RefusalLog,
    /// Callers' certificates already read (see `auth::authenticate`).
    pub identities: Arc<IdentityCache>,
}

/// One refused connection or call, as kept for operators and tests.
#[derive(Debug, Clone)]
pub struct RefusalRecord {
    pub refusal: Refusal,
    pub peer: String,
}

/// The most recent refusals and a count per kind. Every refusal is also logged.
#[derive(Clone, Default)]
pub struct RefusalLog {
    inner: Arc<Mutex<RefusalInner>>,
}

#[derive(Default)]
struct RefusalInner {
    recent: VecDeque<RefusalRecord>,
    counts: BTreeMap<&'static str, u64>,
}

impl RefusalLog {
    pub fn record(&self, refusal: Refusal, peer: impl ToString) {
        let peer = peer.to_string();
        tracing::warn!(%peer, reason = refusal.kind(), "refused: {refusal}");
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *inner.counts.entry(refusal.kind()).or_default() += 1;
        if inner.recent.len() == KEPT_REFUSALS {
            inner.recent.pop_front();
        }
        inner.recent.push_back(RefusalRecord { refusal, peer });
    }

    pub fn recent(&self) -> Vec<RefusalRecord> {
        match self.inner.lock() {
            Ok(g) => g.recent.iter().cloned().collect(),
            Err(p) => p.into_inner().recent.iter().cloned().collect(),
        }
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        match self.inner.lock() {
            Ok(g) => g.counts.clone(),
            Err(p) => p.into_inner().counts.clone(),
        }
    }
}

pub type TlsConn = Gathered<tokio_rustls::server::TlsStream<TcpStream>>;

/// The accepted connection's peer address and certificates, as tonic reads them
/// from an unwrapped rustls stream (department identity comes from these).
impl tonic::transport::server::Connected for Gathered<tokio_rustls::server::TlsStream<TcpStream>> {
    type ConnectInfo =
        <tokio_rustls::server::TlsStream<TcpStream> as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// Accepts connections on `listener` and yields those that completed the mutual
/// TLS handshake. Handshakes run concurrently, so a slow peer delays no one.
pub fn tls_incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    refusals: RefusalLog,
) -> ReceiverStream<Result<TlsConn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (tls, refusals, tx) = (tls.clone(), refusals.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, &tls)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(refusal)) => refusals.record(refusal, peer),
                    Err(_) => refusals.record(
                        Refusal::Handshake("no TLS handshake within 10 s".into()),
                        peer,
                    ),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(tcp: TcpStream, tls: &ReloadingTls) -> Result<TlsConn, Refusal> {
    // tonic's serve_with_incoming does not apply the builder's TCP_NODELAY.
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => return Err(Refusal::Handshake("closed before the handshake".into())),
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => return Err(Refusal::Plaintext),
        Ok(_) => {}
        Err(e) => return Err(Refusal::Handshake(e.to_string())),
    }
    TlsAcceptor::from(tls.server())
        .accept(tcp)
        .await
        .map(Gathered::new)
        .map_err(|e| Refusal::from_accept_error(&e))
}

/// Dials a peer over TLS with the current certificate; the peer's certificate must
/// name the host dialled and chain to the CA bundle.
pub async fn dial(
    tls: Arc<ReloadingTls>,
    uri: tonic::transport::Uri,
) -> Result<TokioIo<Gathered<tokio_rustls::client::TlsStream<TcpStream>>>, std::io::Error> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let host = uri
        .host()
        .ok_or_else(|| bad(format!("{uri} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .ok_or_else(|| bad(format!("{uri} has no port")))?;
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.clone()).map_err(|e| bad(format!("{host}: {e}")))?;
    let conn = TlsConnector::from(tls.client()).connect(name, tcp).await?;
    Ok(TokioIo::new(Gathered::new(conn)))
}

/// Polls the certificate files and swaps in new configurations when they change.
pub async fn reload_certificates(
    tls: Arc<ReloadingTls>,
    every: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        match tls.reload_if_changed() {
            Ok(true) => tracing::info!(
                cert = %tls.files().cert.display(),
                ca = %tls.files().ca.display(),
                "certificates reloaded; new connections use them"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "certificates changed but were not reloaded; the previous ones stay in use")
            }
        }
    }
}

/// A printable peer address.
pub fn peer_of(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "unknown peer".into(), |a| a.to_string())
}
