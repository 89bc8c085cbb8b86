//! What every handler shares: the caller's deadline, the request span, response
//! headers, and proposing a write with a request id.

use std::time::Duration;

use concord_domain::{validate, Command, Outcome};
use concord_proto::common::v1::ResponseHeader;
use tonic::{Request, Status};
use tracing::Span;

use crate::core::NodeCore;
use crate::error::NodeError;

/// The caller's `grpc-timeout`, or the node's default.
pub fn timeout_of<T>(req: &Request<T>, core: &NodeCore) -> Duration {
    req.metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or_else(|| core.default_timeout())
}

fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The span of one request: method, this node's department, request id, and the
/// revision once known.
pub fn span(core: &NodeCore, method: &'static str, request_id: &str) -> Span {
    tracing::info_span!(
        "rpc",
        method,
        department = %core.department,
        request_id = %request_id,
        revision = tracing::field::Empty,
    )
}

pub fn header(core: &NodeCore, revision: u64, replayed: bool) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        node_id: core.id,
        department: core.department.clone(),
        replayed,
    })
}

/// Proposes `command` under `request_id` (a fresh one when empty) and returns the
/// outcome with its response header.
pub async fn propose(
    core: &NodeCore,
    request_id: &str,
    command: Command,
    timeout: Duration,
) -> Result<(Outcome, Option<ResponseHeader>), Status> {
    let response = core
        .write(request_id_or_new(request_id)?, command, timeout)
        .await?;
    finish(core, response)
}

/// Like [`propose`], for an administrative command; runs only on the leader.
pub async fn propose_admin(
    core: &NodeCore,
    admin_department: String,
    request_id: &str,
    command: Command,
) -> Result<(Outcome, Option<ResponseHeader>), Status> {
    let response = core
        .admin_write(admin_department, request_id_or_new(request_id)?, command)
        .await?;
    finish(core, response)
}

fn request_id_or_new(request_id: &str) -> Result<String, Status> {
    if request_id.is_empty() {
        return Ok(uuid::Uuid::new_v4().to_string());
    }
    validate::request_id("request_id", request_id).map_err(NodeError::from)?;
    Ok(request_id.to_string())
}

fn finish(
    core: &NodeCore,
    response: concord_domain::Response,
) -> Result<(Outcome, Option<ResponseHeader>), Status> {
    Span::current().record("revision", response.revision);
    let outcome = response.result.map_err(NodeError::from)?;
    Ok((outcome, header(core, response.revision, response.replayed)))
}

/// Proposes `command` in the span of `method` and turns the outcome into the
/// response with `respond` (which hands back an outcome it does not expect).
pub async fn write_with<T>(
    core: &NodeCore,
    method: &'static str,
    request_id: &str,
    timeout: Duration,
    command: Command,
    respond: impl FnOnce(Outcome, Option<ResponseHeader>) -> Result<T, Outcome>,
) -> Result<tonic::Response<T>, Status> {
    write_as(core, method, None, request_id, timeout, command, respond).await
}

/// Like [`write_with`]; with `admin_department`, as that department's operator
/// (at the leader only, see [`propose_admin`]).
pub async fn write_as<T>(
    core: &NodeCore,
    method: &'static str,
    admin_department: Option<String>,
    request_id: &str,
    timeout: Duration,
    command: Command,
    respond: impl FnOnce(Outcome, Option<ResponseHeader>) -> Result<T, Outcome>,
) -> Result<tonic::Response<T>, Status> {
    use tracing::Instrument;
    async {
        let (outcome, header) = match admin_department {
            Some(d) => propose_admin(core, d, request_id, command).await?,
            None => propose(core, request_id, command, timeout).await?,
        };
        respond(outcome, header)
            .map(tonic::Response::new)
            .map_err(unexpected)
    }
    .instrument(span(core, method, request_id))
    .await
}

/// A handler got an outcome of another command. Names only its kind: the record it
/// carries may be one the caller must not see.
pub fn unexpected(outcome: Outcome) -> Status {
    let kind = format!("{outcome:?}");
    let kind = kind.split(['(', ' ', '{']).next().unwrap_or("?");
    Status::internal(format!("unexpected outcome {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("10X"), None);
    }
}
