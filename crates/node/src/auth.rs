//! Who is calling, and whether they may use this service on this node. The TLS
//! handshake already proved the certificate chains to the CA bundle; here its
//! identity (department, role) is matched against the service:
//!
//! | service                          | node cert        | client cert        | admin cert         |
//! |----------------------------------|------------------|--------------------|--------------------|
//! | departmental (items, watch, …)   | refused          | own department's node only | own department's node only |
//! | ClusterService                   | refused          | own department's node only (reads) | any node (reads and admin writes) |
//! | RaftService (internal)           | member departments only | refused     | refused            |
//!
//! Health and reflection need only a certificate from the CA bundle.

use std::sync::Arc;

use concord_pki::{CertRole, Identity, Refusal};
use tonic::{Request, Status};

use crate::core::NodeCore;
use crate::error::NodeError;
use crate::transport::peer_of;

/// The authenticated caller of one request, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// None only when the node runs with `tls.insecure`.
    pub identity: Option<Identity>,
    pub peer: String,
}

impl Caller {
    /// Administrative writes need an admin certificate (anyone, in insecure mode).
    pub fn is_admin(&self) -> bool {
        self.identity
            .as_ref()
            .is_none_or(|i| i.role == CertRole::Admin)
    }

    /// The department a node certificate speaks for (None in insecure mode).
    pub fn node_department(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .filter(|i| i.role == CertRole::Node)
            .map(|i| i.department.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Services that act for this node's department.
    Departmental,
    Cluster,
    Raft,
    /// JoinService: node certificates of registered departments.
    Join,
}

/// The caller of a request that passed the interceptor.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("request reached a handler without authentication"))
}

/// A tonic interceptor that authenticates every call of `surface`.
pub fn interceptor(
    core: Arc<NodeCore>,
    surface: Surface,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let caller = authenticate(&core, &req, surface)?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

fn authenticate(core: &NodeCore, req: &Request<()>, surface: Surface) -> Result<Caller, Status> {
    let peer = peer_of(req.remote_addr());
    if core.security.tls.is_none() {
        return Ok(Caller {
            identity: None,
            peer,
        });
    }
    let refuse = |refusal: Refusal| -> Status {
        core.security.refusals.record(refusal.clone(), &peer);
        NodeError::Refused(refusal).into()
    };
    let certs = req
        .peer_certs()
        .ok_or_else(|| refuse(Refusal::NoClientCertificate))?;
    let leaf = certs
        .first()
        .ok_or_else(|| refuse(Refusal::NoClientCertificate))?;
    let identity = core
        .security
        .identities
        .identify(leaf.as_ref())
        .map_err(|e| refuse(Refusal::NoIdentity(e.to_string())))?;
    permit(core, &identity, surface).map_err(refuse)?;
    Ok(Caller {
        identity: Some(identity),
        peer,
    })
}

/// The table in the module documentation.
fn permit(core: &NodeCore, id: &Identity, surface: Surface) -> Result<(), Refusal> {
    let own = id.department == core.department;
    match (surface, id.role) {
        (Surface::Raft, CertRole::Node) => raft_member(core, &id.department),
        (Surface::Raft, role) => Err(Refusal::WrongRole(format!(
            "a {role} certificate ({}) may not use RaftService; it is for nodes",
            id.department
        ))),
        (Surface::Join, CertRole::Node) => {
            if concord_domain::query::department(&core.reader, &id.department).is_ok() {
                Ok(())
            } else {
                Err(Refusal::NotMember(format!(
                    "node certificate of {} refused on JoinService: {} is not a registered department",
                    id.department, id.department
                )))
            }
        }
        (Surface::Join, role) => Err(Refusal::WrongRole(format!(
            "a {role} certificate ({}) may not join the cluster; it is for nodes",
            id.department
        ))),
        (_, CertRole::Node) => Err(Refusal::WrongRole(format!(
            "a node certificate ({}) is for raft traffic; department systems use a client certificate",
            id.department
        ))),
        (Surface::Cluster, CertRole::Admin) => Ok(()),
        (_, _) if own => Ok(()),
        (_, role) => Err(Refusal::WrongDepartment(format!(
            "a {role} certificate of {} is served only by a node of {}; this node serves {}",
            id.department, id.department, core.department
        ))),
    }
}

/// A raft stream is authenticated when it opens; each message on it is checked
/// again for membership, so a department whose nodes were all removed is refused
/// on the streams they already had, as on their next unary call.
pub fn still_member(core: &NodeCore, caller: &Caller) -> Result<(), Status> {
    let Some(department) = caller.node_department() else {
        return Ok(());
    };
    raft_member(core, department).map_err(|refusal| {
        core.security.refusals.record(refusal.clone(), &caller.peer);
        NodeError::Refused(refusal).into()
    })
}

/// RaftService is for nodes of departments in this node's membership.
fn raft_member(core: &NodeCore, department: &str) -> Result<(), Refusal> {
    if is_member_department(core, department) {
        return Ok(());
    }
    Err(Refusal::NotMember(format!(
        "node certificate of {department} refused on RaftService: no member of this cluster belongs to {department}"
    )))
}

/// Whether a node of `department` is in this node's membership. A node that has
/// not joined a cluster yet has no membership and accepts the leader that adds it.
fn is_member_department(core: &NodeCore, department: &str) -> bool {
    let metrics = core.raft.metrics();
    let m = metrics.borrow();
    let mut nodes = m.membership_config.membership().nodes().peekable();
    if nodes.peek().is_none() {
        return true;
    }
    nodes.any(|(_, n)| n.department == department)
}
