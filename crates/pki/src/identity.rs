//! Who a certificate speaks for. The identity is written into exactly one URI
//! subject-alternative name, `concord://<DEPARTMENT>/<role>/<name>`, and read back
//! only here, so the PKI tool and every check agree on one format.

use std::fmt;
use std::str::FromStr;

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

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.department, self.role, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
