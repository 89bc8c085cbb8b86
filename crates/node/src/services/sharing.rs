//! The data-sharing catalogue: a department states which of its records it shares
//! with whom, for what, how often and under which confidentiality level.

use std::sync::Arc;

use concord_domain::sharing::{self, validate_rule_id};
use concord_domain::{Command, Outcome};
use concord_proto::sharing::v1::sharing_service_server::SharingService;
use concord_proto::sharing::v1::*;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{self, header, propose, timeout_of};

pub struct SharingSvc {
    pub core: Arc<NodeCore>,
}

#[tonic::async_trait]
impl SharingService for SharingSvc {
    async fn put_sharing_rule(
        &self,
        req: Request<PutSharingRuleRequest>,
    ) -> Result<Response<SharingRuleResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(&self.core, "SharingService/PutSharingRule", &r.request_id);
        async {
            let rule = convert::sharing_rule_spec("rule", r.rule.as_ref(), &self.core.department)
                .map_err(NodeError::from)?;
            let command = Command::PutSharingRule {
                rule,
                expected_revision: r.expected_revision,
            };
            match propose(&self.core, &r.request_id, command, timeout).await? {
                (Outcome::SharingRule(rule), header) => Ok(Response::new(SharingRuleResponse {
                    header,
                    rule: Some(convert::sharing_rule_to_wire(&rule)),
                })),
                (other, _) => Err(rpc::unexpected(other)),
            }
        }
        .instrument(span)
        .await
    }

    async fn delete_sharing_rule(
        &self,
        req: Request<DeleteSharingRuleRequest>,
    ) -> Result<Response<DeleteSharingRuleResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(
            &self.core,
            "SharingService/DeleteSharingRule",
            &r.request_id,
        );
        async {
            let class = convert::record_class("class", r.class).map_err(NodeError::from)?;
            validate_rule_id("id", &r.id).map_err(NodeError::from)?;
            let command = Command::DeleteSharingRule {
                class,
                provider: self.core.department.clone(),
                id: r.id,
                expected_revision: r.expected_revision,
            };
            match propose(&self.core, &r.request_id, command, timeout).await? {
                (Outcome::SharingRuleDeleted, header) => {
                    Ok(Response::new(DeleteSharingRuleResponse { header }))
                }
                (other, _) => Err(rpc::unexpected(other)),
            }
        }
        .instrument(span)
        .await
    }

    async fn list_sharing_rules(
        &self,
        req: Request<ListSharingRulesRequest>,
    ) -> Result<Response<ListSharingRulesResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let rules = sharing::rules(&self.core.reader).map_err(NodeError::from)?;
        Ok(Response::new(ListSharingRulesResponse {
            header: header(&self.core, revision, false),
            rules: rules.iter().map(convert::sharing_rule_to_wire).collect(),
        }))
    }
}
