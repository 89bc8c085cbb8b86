//! Who a certificate speaks for. The identity is written into exactly one URI
//! subject-alternative name, `concord://<DEPARTMENT>/<role>/<name>`, and read back
//! only here, so the PKI tool and every check agree on one format.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

pub const URI_PREFIX: &str = "concord://";

/// What the holder of a certificate is allowed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertRole {
    /// A department's Concord node: raft traffic and forwarded writes.
    Node,
    /// A department's own systems, served by that department's node.
    Client,
    /// An operator: cluster administration on any node.
    Admin,
}

impl CertRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Node => "node",
            CertRole::Client => "client",
            CertRole::Admin => "admin",
        }
    }
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertRole {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "node" => Ok(CertRole::Node),
            "client" => Ok(CertRole::Client),
            "admin" => Ok(CertRole::Admin),
            other => Err(IdentityError::Malformed(format!(
                "role {other:?} is not node, client or admin"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// A department code as registered in the cluster (e.g. `SAMR`).
    pub department: String,
    pub role: CertRole,
    /// Free label of the holder (node name, system name, operator name).
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not an X.509 certificate: {0}")]
    NotACertificate(String),
    #[error("the certificate carries no concord:// identity (a URI subject alternative name)")]
    Missing,
    #[error("the certificate carries {0} concord:// identities; exactly one is allowed")]
    Ambiguous(usize),
    #[error("malformed identity: {0}")]
    Malformed(String),
}

/// Department codes and names: what may appear in one URI path segment.
fn check_segment(what: &str, s: &str, max: usize) -> Result<(), IdentityError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Malformed(format!(
            "{what} {s:?} must be 1-{max} characters of A-Z a-z 0-9 - _ ."
        )))
    }
}

impl Identity {
    pub fn new(
        department: impl Into<String>,
        role: CertRole,
        name: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let id = Identity {
            department: department.into(),
            role,
            name: name.into(),
        };
        check_segment("department", &id.department, 32)?;
        check_segment("name", &id.name, 64)?;
        Ok(id)
    }

    pub fn to_uri(&self) -> String {
        format!(
            "{URI_PREFIX}{}/{}/{}",
            self.department, self.role, self.name
        )
    }

    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(|| {
            IdentityError::Malformed(format!("{uri} does not start with {URI_PREFIX}"))
        })?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [dept, role, name] => Identity::new(*dept, role.parse()?, *name),
            _ => Err(IdentityError::Malformed(format!(
                "{uri} is not {URI_PREFIX}<department>/<role>/<name>"
            ))),
        }
    }

    /// Reads the identity of a DER certificate (the leaf of a peer's chain).
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::NotACertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::NotACertificate(e.to_string()))?;
        let uris: Vec<&str> = san
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) if u.starts_with(URI_PREFIX) => Some(*u),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        match uris.as_slice() {
            [] => Err(IdentityError::Missing),
            [one] => Identity::from_uri(one),
            many => Err(IdentityError::Ambiguous(many.len())),
        }
    }
}

/// Identities of the certificates seen lately, by their DER bytes. A client keeps
/// one connection for many calls and presents the same leaf on each; parsing it
/// with x509-parser on every call was 6 % of a node's CPU under a read load.
/// Only identities read successfully are kept, so a refusal is decided afresh.
pub struct IdentityCache {
    known: RwLock<HashMap<Box<[u8]>, Identity>>,
    capacity: usize,
}

impl IdentityCache {
    /// Forgets everything once `capacity` certificates are held: a node sees a
    /// few dozen (its department's clients, operators, the other nodes), so a
    /// full cache means churn, and starting over bounds the memory simply.
    pub fn new(capacity: usize) -> Self {
        IdentityCache {
            known: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The identity of `der`, parsed at most once while it stays cached.
    pub fn identify(&self, der: &[u8]) -> Result<Identity, IdentityError> {
        if let Some(id) = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(der)
        {
            return Ok(id.clone());
        }
        let id = Identity::from_cert_der(der)?;
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if known.len() >= self.capacity {
            known.clear();
        }
        known.insert(der.into(), id.clone());
        Ok(id)
    }

    pub fn len(&self) -> usize {
        self.known.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for IdentityCache {
    fn default() -> Self {
        IdentityCache::new(1024)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.department, self.role, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_der(id: &Identity) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        let ca = crate::Ca::create("test CA", crate::Validity::days_from_now(1)).unwrap();
        let issued = ca
            .issue(id, &[], crate::Validity::days_from_now(1))
            .unwrap();
        rustls_pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn the_cache_answers_what_the_certificate_says_and_keeps_only_good_ones() {
        let samr = Identity::new("SAMR", CertRole::Client, "app").unwrap();
        let trans = Identity::new("TRANS", CertRole::Admin, "ops").unwrap();
        let (a, b) = (cert_der(&samr), cert_der(&trans));
        let cache = IdentityCache::new(2);
        for _ in 0..2 {
            assert_eq!(cache.identify(&a).unwrap(), samr);
            assert_eq!(cache.identify(&b).unwrap(), trans);
        }
        assert_eq!(cache.len(), 2);
        // Garbage is refused every time and never remembered.
        for _ in 0..2 {
            assert!(cache.identify(b"not a certificate").is_err());
        }
        assert_eq!(cache.len(), 2);
        // Full: starting over still answers right.
        let just = Identity::new("JUST", CertRole::Client, "case-system").unwrap();
        assert_eq!(cache.identify(&cert_der(&just)).unwrap(), just);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.identify(&a).unwrap(), samr);
    }

    #[test]
    fn uri_round_trip_and_refusals() {
        let id = Identity::new("SAMR", CertRole::Node, "node-1").unwrap();
        assert_eq!(id.to_uri(), "concord://SAMR/node/node-1");
        assert_eq!(Identity::from_uri(&id.to_uri()).unwrap(), id);
        for bad in [
            "https://SAMR/node/n",
            "concord://SAMR/node",
            "concord://SAMR/root/n",
            "concord:///node/n",
            "concord://SA MR/node/n",
            "concord://SAMR/node/n/extra",
        ] {
            assert!(Identity::from_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
