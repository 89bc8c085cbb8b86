//! The one place where failures become gRPC statuses.

use concord_domain::{DomainError, Failure, StorageFault};
use tonic::{Code, Status};

#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No leader, or the leader could not be reached: retry (with the same request id).
    #[error("unavailable: {reason}")]
    Unavailable { reason: String, leader: Option<u64> },
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A watch start revision that was compacted away.
    #[error("revision {requested} is compacted; the oldest available revision is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    #[error("internal: {0}")]
    Internal(String),
    /// The caller's certificate may not use this service here.
    #[error("{0}")]
    Refused(concord_pki::Refusal),
    /// Administrative writes run on the leader, with the admin's own certificate.
    #[error("administrative writes are served by the leader{}; send this request there", leader_hint(*leader, addr.as_deref()))]
    NotLeader {
        leader: Option<u64>,
        addr: Option<String>,
    },
}

impl From<StorageFault> for NodeError {
    fn from(f: StorageFault) -> Self {
        if f.is_installing() {
            return NodeError::unavailable(f.0);
        }
        NodeError::Internal(f.to_string())
    }
}

impl From<Failure> for NodeError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(e) => NodeError::Domain(e),
            Failure::Fault(f) => f.into(),
        }
    }
}

fn leader_hint(leader: Option<u64>, addr: Option<&str>) -> String {
    match (leader, addr) {
        (Some(l), Some(a)) => format!(" (node {l} at {a})"),
        _ => " (none is elected now)".to_string(),
    }
}

impl NodeError {
    pub fn unavailable(reason: impl Into<String>) -> Self {
        NodeError::Unavailable {
            reason: reason.into(),
            leader: None,
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let msg = e.to_string();
        match e {
            NodeError::Domain(d) => match d {
                DomainError::InvalidArgument { field, reason } => {
                    let mut s = Status::new(Code::InvalidArgument, format!("{field}: {reason}"));
                    if let Ok(v) = field.parse() {
                        s.metadata_mut().insert("concord-field", v);
                    }
                    s
                }
                DomainError::NotFound { .. } => Status::new(Code::NotFound, msg),
                DomainError::AlreadyExists { .. } => Status::new(Code::AlreadyExists, msg),
                DomainError::PermissionDenied { reason } => {
                    Status::new(Code::PermissionDenied, reason)
                }
                DomainError::FailedPrecondition { reason } => {
                    Status::new(Code::FailedPrecondition, reason)
                }
                DomainError::RevisionMismatch { .. } => Status::new(Code::Aborted, msg),
            },
            NodeError::Unavailable { leader, .. } => {
                let mut s = Status::new(Code::Unavailable, msg);
                if let Some(Ok(v)) = leader.map(|l| l.to_string().parse()) {
                    s.metadata_mut().insert("concord-leader-id", v);
                }
                s
            }
            NodeError::DeadlineExceeded(_) => Status::new(Code::DeadlineExceeded, msg),
            NodeError::Compacted { oldest, .. } => {
                let mut s = Status::new(Code::OutOfRange, msg);
                if let Ok(v) = oldest.to_string().parse() {
                    s.metadata_mut().insert("concord-oldest-revision", v);
                }
                s
            }
            NodeError::Internal(_) => Status::new(Code::Internal, msg),
            NodeError::Refused(r) => match r {
                concord_pki::Refusal::NoIdentity(_) | concord_pki::Refusal::NoClientCertificate => {
                    Status::new(Code::Unauthenticated, msg)
                }
                _ => Status::new(Code::PermissionDenied, msg),
            },
            NodeError::NotLeader { leader, addr } => {
                let mut s = Status::new(Code::FailedPrecondition, msg);
                if let Some(Ok(v)) = leader.map(|l| l.to_string().parse()) {
                    s.metadata_mut().insert("concord-leader-id", v);
                }
                if let Some(Ok(v)) = addr.map(|a| a.parse()) {
                    s.metadata_mut().insert("concord-leader-addr", v);
                }
                s
            }
        }
    }
}
