//! Joint inspections: rosters, plans, the draw and its verification, tasks and
//! results, ad-hoc inspections, mutual recognition and the alert inbox.

use std::sync::Arc;

use concord_domain::sharing::RecordClass;
use concord_domain::{query, uscc, validate, Command, DomainError, Outcome};
use concord_proto::common::v1::ResponseHeader;
use concord_proto::inspection::v1::inspection_service_server::InspectionService;
use concord_proto::inspection::v1::*;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{header, timeout_of, write_with};

pub struct InspectionSvc {
    pub core: Arc<NodeCore>,
}

/// Plan ids are `plan-<n>`, task ids `task-<n>-<m>`.
fn check_id(field: &str, id: &str, prefix: &str) -> Result<(), Status> {
    let numbers = if prefix == "task" { 2 } else { 1 };
    validate::generated_id(field, id, prefix, numbers).map_err(invalid)
}

fn invalid(e: DomainError) -> Status {
    NodeError::from(e).into()
}

fn draw_response(o: Outcome, header: Option<ResponseHeader>) -> Result<DrawResponse, Outcome> {
    match o {
        Outcome::Drawn { plan, draw, tasks } => Ok(DrawResponse {
            header,
            plan: Some(convert::plan_to_wire(&plan)),
            draw: Some(convert::draw_to_wire(&draw)),
            tasks: tasks.iter().map(convert::task_to_wire).collect(),
        }),
        other => Err(other),
    }
}

#[tonic::async_trait]
impl InspectionService for InspectionSvc {
    async fn put_inspector(
        &self,
        req: Request<PutInspectorRequest>,
    ) -> Result<Response<InspectorResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let inspector =
            convert::inspector_spec("inspector", r.inspector.as_ref()).map_err(invalid)?;
        write_with(
            &self.core,
            "InspectionService/PutInspector",
            &r.request_id,
            timeout,
            Command::PutInspector { inspector },
            |o, header| match o {
                Outcome::Inspector(i) => Ok(InspectorResponse {
                    header,
                    inspector: Some(convert::inspector_to_wire(&i)),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn list_inspectors(
        &self,
        req: Request<ListInspectorsRequest>,
    ) -> Result<Response<ListInspectorsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let department = if r.department.is_empty() {
            self.core.department.clone()
        } else {
            validate::department_code("department", &r.department).map_err(invalid)?;
            r.department
        };
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let inspectors =
            query::inspectors(&self.core.reader, &department).map_err(NodeError::from)?;
        Ok(Response::new(ListInspectorsResponse {
            header: header(&self.core, revision, false),
            inspectors: inspectors.iter().map(convert::inspector_to_wire).collect(),
        }))
    }

    async fn create_plan(
        &self,
        req: Request<CreatePlanRequest>,
    ) -> Result<Response<PlanResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let plan = convert::plan_spec("plan", r.plan.as_ref()).map_err(invalid)?;
        write_with(
            &self.core,
            "InspectionService/CreatePlan",
            &r.request_id,
            timeout,
            Command::CreatePlan { plan },
            |o, header| match o {
                Outcome::Plan(p) => Ok(PlanResponse {
                    header,
                    plan: Some(convert::plan_to_wire(&p)),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn get_plan(
        &self,
        req: Request<GetPlanRequest>,
    ) -> Result<Response<PlanResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("id", &r.id, "plan")?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let plan = query::plan(&self.core.reader, &r.id).map_err(NodeError::from)?;
        Ok(Response::new(PlanResponse {
            header: header(&self.core, revision, false),
            plan: Some(convert::plan_for(&plan, &self.core.department)),
        }))
    }

    async fn draw_plan(
        &self,
        req: Request<DrawPlanRequest>,
    ) -> Result<Response<DrawResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("plan_id", &r.plan_id, "plan")?;
        write_with(
            &self.core,
            "InspectionService/DrawPlan",
            &r.request_id,
            timeout,
            Command::DrawPlan { plan_id: r.plan_id },
            draw_response,
        )
        .await
    }

    async fn get_draw(
        &self,
        req: Request<GetDrawRequest>,
    ) -> Result<Response<DrawResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("plan_id", &r.plan_id, "plan")?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let plan = query::plan(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        let draw = query::draw(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        Ok(Response::new(DrawResponse {
            header: header(&self.core, revision, false),
            plan: Some(convert::plan_for(&plan, &self.core.department)),
            draw: Some(convert::draw_to_wire(&draw)),
            tasks: vec![],
        }))
    }

    async fn verify_draw(
        &self,
        req: Request<VerifyDrawRequest>,
    ) -> Result<Response<VerifyDrawResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("plan_id", &r.plan_id, "plan")?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let problems =
            query::verify_draw(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        Ok(Response::new(VerifyDrawResponse {
            header: header(&self.core, revision, false),
            verified: problems.is_empty(),
            problems,
        }))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("plan_id", &r.plan_id, "plan")?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        query::plan(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        let tasks = query::tasks(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        let scope = self.core.scope()?;
        let granted = |d: &str| scope.is_granted(RecordClass::InspectionResult, d);
        Ok(Response::new(ListTasksResponse {
            header: header(&self.core, revision, false),
            tasks: tasks
                .iter()
                .map(|t| convert::task_for(t, &self.core.department, granted))
                .collect(),
        }))
    }

    async fn get_task(
        &self,
        req: Request<GetTaskRequest>,
    ) -> Result<Response<TaskResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("id", &r.id, "task")?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let task = query::task(&self.core.reader, &r.id).map_err(NodeError::from)?;
        let scope = self.core.scope()?;
        let granted = |d: &str| scope.is_granted(RecordClass::InspectionResult, d);
        Ok(Response::new(TaskResponse {
            header: header(&self.core, revision, false),
            task: Some(convert::task_for(&task, &self.core.department, granted)),
        }))
    }

    async fn submit_result(
        &self,
        req: Request<SubmitResultRequest>,
    ) -> Result<Response<SubmitResultResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("task_id", &r.task_id, "task")?;
        let result = convert::result_spec("result", r.result.as_ref()).map_err(invalid)?;
        let command = Command::SubmitResult {
            task_id: r.task_id,
            result,
        };
        write_with(
            &self.core,
            "InspectionService/SubmitResult",
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::Submitted {
                    task,
                    alert,
                    pushed,
                } => Ok(SubmitResultResponse {
                    header,
                    task: Some(convert::task_to_wire(&task)),
                    alert: alert.as_ref().map(convert::alert_to_wire),
                    pushed_cases: pushed.into_iter().map(|c| c.id).collect(),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn record_inspection(
        &self,
        req: Request<RecordInspectionRequest>,
    ) -> Result<Response<RecordInspectionResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        uscc::validate("uscc", &r.uscc).map_err(invalid)?;
        validate::required_text("note", &r.note, validate::MAX_TEXT_CHARS).map_err(invalid)?;
        let command = Command::RecordInspection {
            uscc: r.uscc,
            note: r.note,
        };
        write_with(
            &self.core,
            "InspectionService/RecordInspection",
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::Inspected { alert, .. } => Ok(RecordInspectionResponse {
                    header,
                    alert: alert.as_ref().map(convert::alert_to_wire),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn recent_results(
        &self,
        req: Request<RecentResultsRequest>,
    ) -> Result<Response<RecentResultsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        uscc::validate("uscc", &r.uscc).map_err(invalid)?;
        if r.since_ms < 0 {
            return Err(invalid(DomainError::invalid(
                "since_ms",
                "must be 0 or a time",
            )));
        }
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let scope = self.core.scope()?;
        let results = query::recent_results(&self.core.reader, &scope, &r.uscc, r.since_ms)
            .map_err(NodeError::from)?;
        Ok(Response::new(RecentResultsResponse {
            header: header(&self.core, revision, false),
            results: results.iter().map(convert::filed_result_to_wire).collect(),
        }))
    }

    async fn list_public_results(
        &self,
        req: Request<ListPublicResultsRequest>,
    ) -> Result<Response<RecentResultsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        check_id("plan_id", &r.plan_id, "plan")?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        query::plan(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        let results =
            query::public_results(&self.core.reader, &r.plan_id).map_err(NodeError::from)?;
        Ok(Response::new(RecentResultsResponse {
            header: header(&self.core, revision, false),
            results: results.iter().map(convert::filed_result_to_wire).collect(),
        }))
    }

    async fn list_inbox(
        &self,
        req: Request<ListInboxRequest>,
    ) -> Result<Response<ListInboxResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let alerts =
            query::inbox(&self.core.reader, &self.core.department).map_err(NodeError::from)?;
        Ok(Response::new(ListInboxResponse {
            header: header(&self.core, revision, false),
            alerts: alerts.iter().map(convert::alert_to_wire).collect(),
        }))
    }
}
