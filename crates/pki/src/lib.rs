//! Department identity in certificates, a small CA, and reloadable rustls
//! configurations. See docs/security.md.

pub mod identity;
pub mod issue;
pub mod layout;
pub mod refusal;
pub mod tls;

pub use identity::{CertRole, Identity, IdentityCache, IdentityError};
pub use issue::{Ca, IssueError, Issued, Validity};
pub use refusal::Refusal;
pub use tls::{install_default_provider, ReloadingTls, TlsError, TlsFiles, TlsMaterial};
