//! rustls configurations built from three PEM files (CA bundle, certificate chain,
//! key), and a holder that rebuilds them when the files change, so certificates and
//! the CA bundle rotate without a restart. Connections already open keep the
//! configuration they were made with; every new one uses the current files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::identity::{Identity, IdentityError};

/// The one crypto provider Concord uses. Installing it as the process default
/// keeps any library that asks rustls for "the" provider from panicking.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Identity {
        path: PathBuf,
        source: IdentityError,
    },
    #[error("TLS configuration: {0}")]
    Rustls(String),
    #[error("the new certificate {new} does not match the running identity {old}")]
    IdentityChanged { old: String, new: String },
}

/// Where a node or client keeps its PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA bundle: every CA whose certificates are accepted.
    pub ca: PathBuf,
    /// This holder's certificate (chain, leaf first).
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, why: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

fn rustls_error(e: impl ToString) -> TlsError {
    TlsError::Rustls(e.to_string())
}

/// Parsed PEM files, ready to become rustls configurations.
#[derive(Debug)]
pub struct TlsMaterial {
    pub roots: Arc<RootCertStore>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub identity: Identity,
    /// SHA-256 over the three files, to notice a change.
    pub digest: [u8; 32],
}

impl TlsFiles {
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let (ca, cert, key) = (read(&self.ca)?, read(&self.cert)?, read(&self.key)?);
        let digest = digest(&ca, &cert, &key);
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            let c = c.map_err(|e| pem_error(&self.ca, e))?;
            roots.add(c).map_err(|e| pem_error(&self.ca, e))?;
        }
        if roots.is_empty() {
            return Err(pem_error(&self.ca, "no CA certificate in the bundle"));
        }
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(&self.cert, e))?;
        let leaf = chain
            .first()
            .ok_or_else(|| pem_error(&self.cert, "no certificate in the file"))?;
        let identity =
            Identity::from_cert_der(leaf.as_ref()).map_err(|source| TlsError::Identity {
                path: self.cert.clone(),
                source,
            })?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| pem_error(&self.key, e))?;
        Ok(TlsMaterial {
            roots: Arc::new(roots),
            chain,
            key,
            identity,
            digest,
        })
    }

    /// The digest of the files as they are now, without parsing them.
    pub fn digest(&self) -> Result<[u8; 32], TlsError> {
        Ok(digest(
            &read(&self.ca)?,
            &read(&self.cert)?,
            &read(&self.key)?,
        ))
    }
}

fn digest(ca: &[u8], cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [ca, cert, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

const ALPN_H2: &[u8] = b"h2";

impl TlsMaterial {
    /// Requires a client certificate from a CA in the bundle; speaks HTTP/2 (ALPN
    /// `h2`, which grpcurl and grpc-go insist on).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(rustls_error)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// Verifies the server against the bundle (and its host name) and presents
    /// this holder's certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(rustls_error)?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }
}

struct Current {
    digest: [u8; 32],
    identity: Identity,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// The configurations in use, rebuilt by [`ReloadingTls::reload_if_changed`].
pub struct ReloadingTls {
    files: TlsFiles,
    current: RwLock<Arc<Current>>,
}

impl ReloadingTls {
    pub fn load(files: TlsFiles) -> Result<ReloadingTls, TlsError> {
        let current = Self::build(&files)?;
        Ok(ReloadingTls {
            files,
            current: RwLock::new(Arc::new(current)),
        })
    }

    fn build(files: &TlsFiles) -> Result<Current, TlsError> {
        let m = files.load()?;
        Ok(Current {
            digest: m.digest,
            server: m.server_config()?,
            client: m.client_config()?,
            identity: m.identity,
        })
    }

    fn now(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub fn identity(&self) -> Identity {
        self.now().identity.clone()
    }

    pub fn server(&self) -> Arc<ServerConfig> {
        self.now().server.clone()
    }

    pub fn client(&self) -> Arc<ClientConfig> {
        self.now().client.clone()
    }

    /// Rebuilds the configurations if any file changed. A change that does not
    /// parse, or that would change who this holder is, is refused and the running
    /// configuration stays (the caller logs the error).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let old = self.now();
        if self.files.digest()? == old.digest {
            return Ok(false);
        }
        let new = Self::build(&self.files)?;
        if new.identity != old.identity {
            return Err(TlsError::IdentityChanged {
                old: old.identity.to_uri(),
                new: new.identity.to_uri(),
            });
        }
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
        Ok(true)
    }
}
