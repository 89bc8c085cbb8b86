//! Case hand-offs: push, the steps of the closed loop, reads and the inbox.

use std::sync::Arc;

use concord_domain::{query, validate, Command, DomainError, Outcome};
use concord_proto::case::v1::case_service_server::CaseService;
use concord_proto::case::v1::*;
use concord_proto::common::v1::ResponseHeader;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{header, timeout_of, write_with};

pub struct CaseSvc {
    pub core: Arc<NodeCore>,
}

fn invalid(e: DomainError) -> Status {
    NodeError::from(e).into()
}

/// Case ids are `case-<revision>-<n>`; hand-offs `case-<revision>`.
fn check_id(field: &str, id: &str, numbers: usize) -> Result<(), Status> {
    validate::generated_id(field, id, "case", numbers).map_err(invalid)
}

fn case_response(o: Outcome, header: Option<ResponseHeader>) -> Result<CaseResponse, Outcome> {
    match o {
        Outcome::Case(c) => Ok(CaseResponse {
            header,
            case: Some(convert::case_to_wire(&c)),
        }),
        other => Err(other),
    }
}

impl CaseSvc {
    async fn step(
        &self,
        method: &'static str,
        action: &str,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("id", &r.id, 2)?;
        let action = convert::case_action(action, &r).map_err(invalid)?;
        self.run_step(method, &r.request_id, timeout, &r.id, action)
            .await
    }

    async fn run_step(
        &self,
        method: &'static str,
        request_id: &str,
        timeout: std::time::Duration,
        id: &str,
        action: concord_domain::case::CaseAction,
    ) -> Result<Response<CaseResponse>, Status> {
        let command = Command::CaseStep {
            id: id.to_string(),
            action,
        };
        write_with(
            &self.core,
            method,
            request_id,
            timeout,
            command,
            case_response,
        )
        .await
    }
}

fn licensing_response(
    o: Outcome,
    header: Option<ResponseHeader>,
) -> Result<LicensingDecisionResponse, Outcome> {
    match o {
        Outcome::Licensing { decision, cases } => Ok(LicensingDecisionResponse {
            header,
            decision: Some(convert::licensing_to_wire(&decision)),
            cases: cases.iter().map(convert::case_to_wire).collect(),
        }),
        other => Err(other),
    }
}

#[tonic::async_trait]
impl CaseService for CaseSvc {
    async fn push_case(
        &self,
        req: Request<PushCaseRequest>,
    ) -> Result<Response<PushCaseResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let case = convert::case_spec("case", r.case.as_ref()).map_err(invalid)?;
        write_with(
            &self.core,
            "CaseService/PushCase",
            &r.request_id,
            timeout,
            Command::PushCase { case },
            |o, header| match o {
                Outcome::Cases(cases) => Ok(PushCaseResponse {
                    header,
                    cases: cases.iter().map(convert::case_to_wire).collect(),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn acknowledge_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/AcknowledgeCase", "acknowledge", req)
            .await
    }

    async fn accept_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/AcceptCase", "accept", req).await
    }

    async fn reject_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/RejectCase", "reject", req).await
    }

    async fn reroute_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/RerouteCase", "reroute", req).await
    }

    async fn escalate_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/EscalateCase", "escalate", req).await
    }

    async fn assign_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/AssignCase", "assign", req).await
    }

    async fn resolve_case(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/ResolveCase", "resolve", req).await
    }

    async fn confirm_feedback(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/ConfirmFeedback", "confirm_feedback", req)
            .await
    }

    async fn return_for_rework(
        &self,
        req: Request<CaseStepRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        self.step("CaseService/ReturnForRework", "return_for_rework", req)
            .await
    }

    async fn get_case(
        &self,
        req: Request<GetCaseRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("id", &r.id, 2)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let case = query::case_for(&self.core.reader, &self.core.department, &r.id)
            .map_err(NodeError::from)?;
        Ok(Response::new(CaseResponse {
            header: header(&self.core, revision, false),
            case: Some(convert::case_to_wire(&case)),
        }))
    }

    async fn get_handoff(
        &self,
        req: Request<GetHandoffRequest>,
    ) -> Result<Response<GetHandoffResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("handoff", &r.handoff, 1)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let cases = query::handoff(&self.core.reader, &self.core.department, &r.handoff)
            .map_err(NodeError::from)?;
        Ok(Response::new(GetHandoffResponse {
            header: header(&self.core, revision, false),
            cases: cases.iter().map(convert::case_to_wire).collect(),
        }))
    }

    async fn list_inbox(
        &self,
        req: Request<ListCaseInboxRequest>,
    ) -> Result<Response<ListCaseInboxResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let awaiting =
            query::case_inbox(&self.core.reader, &self.core.department).map_err(NodeError::from)?;
        let notices = query::case_notices(&self.core.reader, &self.core.department)
            .map_err(NodeError::from)?;
        Ok(Response::new(ListCaseInboxResponse {
            header: header(&self.core, revision, false),
            awaiting: awaiting.iter().map(convert::case_to_wire).collect(),
            notices: notices.iter().map(convert::notice_to_wire).collect(),
        }))
    }

    async fn transfer_to_judicial(
        &self,
        req: Request<TransferToJudicialRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("id", &r.id, 2)?;
        let action = convert::transfer_action(&r).map_err(invalid)?;
        self.run_step(
            "CaseService/TransferToJudicial",
            &r.request_id,
            timeout,
            &r.id,
            action,
        )
        .await
    }

    async fn request_assistance(
        &self,
        req: Request<RequestAssistanceRequest>,
    ) -> Result<Response<CaseResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("id", &r.id, 2)?;
        let action = convert::assistance_action(&r).map_err(invalid)?;
        self.run_step(
            "CaseService/RequestAssistance",
            &r.request_id,
            timeout,
            &r.id,
            action,
        )
        .await
    }

    async fn record_licensing_decision(
        &self,
        req: Request<RecordLicensingDecisionRequest>,
    ) -> Result<Response<LicensingDecisionResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let decision = convert::licensing_spec("decision", r.decision.as_ref()).map_err(invalid)?;
        write_with(
            &self.core,
            "CaseService/RecordLicensingDecision",
            &r.request_id,
            timeout,
            Command::RecordLicensingDecision { decision },
            licensing_response,
        )
        .await
    }

    async fn get_licensing_decision(
        &self,
        req: Request<GetLicensingDecisionRequest>,
    ) -> Result<Response<LicensingDecisionResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        validate::generated_id("id", &r.id, "lic", 1).map_err(invalid)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let decision =
            query::licensing_decision(&self.core.reader, &r.id).map_err(NodeError::from)?;
        Ok(Response::new(LicensingDecisionResponse {
            header: header(&self.core, revision, false),
            decision: Some(convert::licensing_to_wire(&decision)),
            cases: vec![],
        }))
    }

    async fn list_licensing_decisions(
        &self,
        req: Request<ListLicensingDecisionsRequest>,
    ) -> Result<Response<ListLicensingDecisionsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        concord_domain::uscc::validate("uscc", &r.uscc).map_err(invalid)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let decisions =
            query::licensing_decisions(&self.core.reader, &r.uscc).map_err(NodeError::from)?;
        Ok(Response::new(ListLicensingDecisionsResponse {
            header: header(&self.core, revision, false),
            decisions: decisions.iter().map(convert::licensing_to_wire).collect(),
        }))
    }
}
