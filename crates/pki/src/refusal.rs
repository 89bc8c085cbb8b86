//! Why a connection or a caller was turned away, in words an operator can act on.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer spoke something other than TLS (usually plaintext HTTP/2).
    Plaintext,
    NoClientCertificate,
    /// The certificate was not issued by a CA in this node's bundle.
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    /// Any other certificate problem rustls reported.
    BadCertificate(String),
    /// The handshake failed for a reason that is not about the certificate.
    Handshake(String),
    /// A valid certificate without a readable concord:// identity.
    NoIdentity(String),
    /// The certificate's role may not use this service (e.g. a client on raft).
    WrongRole(String),
    /// A node certificate of a department that is not a member of this cluster.
    NotMember(String),
    /// A client certificate of another department than this node's.
    WrongDepartment(String),
}

impl Refusal {
    /// A stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Plaintext => "plaintext",
            Refusal::NoClientCertificate => "no_client_certificate",
            Refusal::UnknownCa => "unknown_ca",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Revoked => "revoked",
            Refusal::BadCertificate(_) => "bad_certificate",
            Refusal::Handshake(_) => "handshake",
            Refusal::NoIdentity(_) => "no_identity",
            Refusal::WrongRole(_) => "wrong_role",
            Refusal::NotMember(_) => "not_member",
            Refusal::WrongDepartment(_) => "wrong_department",
        }
    }

    /// Classifies the error of a failed server-side TLS accept.
    pub fn from_accept_error(e: &std::io::Error) -> Refusal {
        use rustls::CertificateError as C;
        let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return Refusal::Handshake(e.to_string());
        };
        match tls {
            rustls::Error::NoCertificatesPresented => Refusal::NoClientCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                // A CA of the same name but another key shows up as a bad signature:
                // either way no CA in the bundle issued the certificate.
                C::UnknownIssuer | C::BadSignature => Refusal::UnknownCa,
                C::Expired | C::ExpiredContext { .. } => Refusal::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Refusal::NotYetValid,
                C::Revoked => Refusal::Revoked,
                other => Refusal::BadCertificate(format!("{other:?}")),
            },
            other => Refusal::Handshake(other.to_string()),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Plaintext => f.write_str("plaintext connection; this node accepts TLS only"),
            Refusal::NoClientCertificate => f.write_str("no client certificate presented"),
            Refusal::UnknownCa => {
                f.write_str("certificate not issued by a CA in this node's CA bundle")
            }
            Refusal::Expired => f.write_str("certificate expired"),
            Refusal::NotYetValid => f.write_str("certificate not yet valid"),
            Refusal::Revoked => f.write_str("certificate revoked"),
            Refusal::BadCertificate(why) => write!(f, "bad certificate: {why}"),
            Refusal::Handshake(why) => write!(f, "TLS handshake failed: {why}"),
            Refusal::NoIdentity(why) => write!(f, "no usable identity: {why}"),
            Refusal::WrongRole(why) | Refusal::NotMember(why) | Refusal::WrongDepartment(why) => {
                f.write_str(why)
            }
        }
    }
}
