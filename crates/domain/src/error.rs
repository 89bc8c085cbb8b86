use serde::{Deserialize, Serialize};

/// Every way a command or a query can be refused. The node maps each variant to one
/// gRPC status code in one place; the variants carry what a caller needs to fix the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DomainError {
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{kind} {key} not found")]
    NotFound { kind: String, key: String },
    #[error("{kind} {key} already exists")]
    AlreadyExists { kind: String, key: String },
    #[error("permission denied: {reason}")]
    PermissionDenied { reason: String },
    #[error("failed precondition: {reason}")]
    FailedPrecondition { reason: String },
    #[error("revision mismatch: expected {expected}, current {actual}")]
    RevisionMismatch { expected: u64, actual: u64 },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
    pub fn not_found(kind: &str, key: impl Into<String>) -> Self {
        DomainError::NotFound {
            kind: kind.to_string(),
            key: key.into(),
        }
    }
    pub fn denied(reason: impl Into<String>) -> Self {
        DomainError::PermissionDenied {
            reason: reason.into(),
        }
    }
    /// The gRPC code name this refusal maps to, for the audit trail.
    pub fn code_name(&self) -> &'static str {
        match self {
            DomainError::InvalidArgument { .. } => "INVALID_ARGUMENT",
            DomainError::NotFound { .. } => "NOT_FOUND",
            DomainError::AlreadyExists { .. } => "ALREADY_EXISTS",
            DomainError::PermissionDenied { .. } => "PERMISSION_DENIED",
            DomainError::FailedPrecondition { .. } => "FAILED_PRECONDITION",
            DomainError::RevisionMismatch { .. } => "ABORTED",
        }
    }
    pub fn precondition(reason: impl Into<String>) -> Self {
        DomainError::FailedPrecondition {
            reason: reason.into(),
        }
    }
}

/// The state view could not be read or held a value that does not decode. This is not
/// a refusal of the command: the store treats it as fatal for the replica.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state storage fault: {0}")]
pub struct StorageFault(pub String);

impl StorageFault {
    const INSTALLING: &'static str =
        "this replica is installing a snapshot; retry shortly or read at another node";

    /// The replica's state is being replaced by a snapshot: not readable until the
    /// install is over. Not a fault of the data; the node answers UNAVAILABLE.
    pub fn installing() -> StorageFault {
        StorageFault(Self::INSTALLING.to_string())
    }

    pub fn is_installing(&self) -> bool {
        self.0 == Self::INSTALLING
    }
}

/// Either a refusal (the caller's problem, returned to them) or a storage fault (the
/// replica's problem). Lets rule code use `?` on both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Refused(#[from] DomainError),
    #[error(transparent)]
    Fault(#[from] StorageFault),
}
