//! Credit records, tiers and the tier policy.

use std::sync::Arc;

use concord_domain::{query, uscc, validate, Command, Outcome};
use concord_proto::common::v1::ResponseHeader;
use concord_proto::credit::v1::credit_service_server::CreditService;
use concord_proto::credit::v1::*;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{header, timeout_of, write_with};

pub struct CreditSvc {
    pub core: Arc<NodeCore>,
}

fn credit_response(o: Outcome, header: Option<ResponseHeader>) -> Result<CreditResponse, Outcome> {
    match o {
        Outcome::Credit { record, tier } => Ok(CreditResponse {
            header,
            record: Some(convert::credit_to_wire(&record)),
            tier: Some(convert::tier_to_wire(&tier)),
        }),
        other => Err(other),
    }
}

fn record_id(id: &str) -> Result<(), Status> {
    validate::generated_id("id", id, "cr", 1).map_err(|e| NodeError::from(e).into())
}

#[tonic::async_trait]
impl CreditService for CreditSvc {
    async fn record_credit(
        &self,
        req: Request<RecordCreditRequest>,
    ) -> Result<Response<CreditResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let record = convert::credit_spec("record", r.record.as_ref()).map_err(NodeError::from)?;
        write_with(
            &self.core,
            "CreditService/RecordCredit",
            &r.request_id,
            timeout,
            Command::RecordCredit { record },
            credit_response,
        )
        .await
    }

    async fn correct_credit(
        &self,
        req: Request<CorrectCreditRequest>,
    ) -> Result<Response<CreditResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        record_id(&r.id)?;
        let record = convert::credit_spec("record", r.record.as_ref()).map_err(NodeError::from)?;
        validate::required_text("reason", &r.reason, validate::MAX_TEXT_CHARS)
            .map_err(NodeError::from)?;
        let command = Command::CorrectCredit {
            id: r.id,
            record,
            reason: r.reason,
            expected_revision: r.expected_revision,
        };
        write_with(
            &self.core,
            "CreditService/CorrectCredit",
            &r.request_id,
            timeout,
            command,
            credit_response,
        )
        .await
    }

    async fn get_credit_record(
        &self,
        req: Request<GetCreditRecordRequest>,
    ) -> Result<Response<CreditRecordResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        record_id(&r.id)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let record = query::credit_record(&self.core.reader, &r.id).map_err(NodeError::from)?;
        Ok(Response::new(CreditRecordResponse {
            header: header(&self.core, revision, false),
            record: Some(convert::credit_to_wire(&record)),
        }))
    }

    async fn list_credit_records(
        &self,
        req: Request<ListCreditRecordsRequest>,
    ) -> Result<Response<ListCreditRecordsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        uscc::validate("uscc", &r.uscc).map_err(NodeError::from)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        query::entity(&self.core.reader, &r.uscc).map_err(NodeError::from)?;
        let records = query::credit_records(&self.core.reader, &r.uscc).map_err(NodeError::from)?;
        Ok(Response::new(ListCreditRecordsResponse {
            header: header(&self.core, revision, false),
            records: records.iter().map(convert::credit_to_wire).collect(),
        }))
    }

    async fn credit_record_history(
        &self,
        req: Request<CreditRecordHistoryRequest>,
    ) -> Result<Response<ListCreditRecordsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        record_id(&r.id)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let records = query::credit_history(&self.core.reader, &r.id).map_err(NodeError::from)?;
        Ok(Response::new(ListCreditRecordsResponse {
            header: header(&self.core, revision, false),
            records: records.iter().map(convert::credit_to_wire).collect(),
        }))
    }

    async fn get_tier(
        &self,
        req: Request<GetTierRequest>,
    ) -> Result<Response<TierResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        uscc::validate("uscc", &r.uscc).map_err(NodeError::from)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let (tier, history) = query::tier(&self.core.reader, &r.uscc).map_err(NodeError::from)?;
        Ok(Response::new(TierResponse {
            header: header(&self.core, revision, false),
            tier: Some(convert::tier_to_wire(&tier)),
            history: history.iter().map(convert::tier_change_to_wire).collect(),
        }))
    }

    async fn get_tier_policy(
        &self,
        req: Request<GetTierPolicyRequest>,
    ) -> Result<Response<TierPolicyResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let policy = query::tier_policy(&self.core.reader, r.version).map_err(NodeError::from)?;
        Ok(Response::new(TierPolicyResponse {
            header: header(&self.core, revision, false),
            policy: Some(convert::policy_to_wire(&policy)),
            retiered: 0,
        }))
    }

    async fn put_tier_policy(
        &self,
        req: Request<PutTierPolicyRequest>,
    ) -> Result<Response<TierPolicyResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let policy = convert::policy_spec("policy", r.policy.as_ref()).map_err(NodeError::from)?;
        let command = Command::PutTierPolicy {
            policy,
            expected_version: r.expected_version,
        };
        write_with(
            &self.core,
            "CreditService/PutTierPolicy",
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::TierPolicy { policy, retiered } => Ok(TierPolicyResponse {
                    header,
                    policy: Some(convert::policy_to_wire(&policy)),
                    retiered,
                }),
                other => Err(other),
            },
        )
        .await
    }
}
