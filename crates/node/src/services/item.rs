use std::sync::Arc;

use concord_domain::query::{self, ItemFilter};
use concord_domain::{validate, Command, DomainError, Outcome};
use concord_proto::item::v1::item_service_server::ItemService;
use concord_proto::item::v1::*;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{self, header, propose, timeout_of};

pub struct ItemSvc {
    pub core: Arc<NodeCore>,
}

fn require_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(NodeError::from(DomainError::invalid("id", "must not be empty")).into());
    }
    validate::optional_text("id", id, validate::MAX_SHORT_CHARS)
        .map_err(|e| NodeError::from(e).into())
}

impl ItemSvc {
    async fn write(
        &self,
        method: &'static str,
        request_id: &str,
        timeout: std::time::Duration,
        command: Command,
    ) -> Result<Response<ItemResponse>, Status> {
        let span = rpc::span(&self.core, method, request_id);
        async {
            match propose(&self.core, request_id, command, timeout).await? {
                (Outcome::Item(item), header) => Ok(Response::new(ItemResponse {
                    header,
                    item: Some(convert::item_to_wire(&item)),
                })),
                (other, _) => Err(rpc::unexpected(other)),
            }
        }
        .instrument(span)
        .await
    }
}

#[tonic::async_trait]
impl ItemService for ItemSvc {
    async fn create_item(
        &self,
        req: Request<CreateItemRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let content =
            convert::item_content("content", r.content.as_ref()).map_err(NodeError::from)?;
        self.write(
            "ItemService/CreateItem",
            &r.request_id,
            timeout,
            Command::CreateItem { content },
        )
        .await
    }

    async fn update_draft(
        &self,
        req: Request<UpdateDraftRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        require_id(&r.id)?;
        let content =
            convert::item_content("content", r.content.as_ref()).map_err(NodeError::from)?;
        let command = Command::UpdateDraft {
            id: r.id,
            content,
            expected_revision: r.expected_revision,
        };
        self.write("ItemService/UpdateDraft", &r.request_id, timeout, command)
            .await
    }

    async fn submit_for_review(
        &self,
        req: Request<SubmitForReviewRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        require_id(&r.id)?;
        let command = Command::SubmitForReview {
            id: r.id,
            expected_revision: r.expected_revision,
        };
        self.write(
            "ItemService/SubmitForReview",
            &r.request_id,
            timeout,
            command,
        )
        .await
    }

    async fn review_item(
        &self,
        req: Request<ReviewItemRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        require_id(&r.id)?;
        validate::optional_text("opinion", &r.opinion, validate::MAX_TEXT_CHARS)
            .map_err(NodeError::from)?;
        if !r.approve && r.opinion.trim().is_empty() {
            return Err(NodeError::from(DomainError::invalid(
                "opinion",
                "required when rejecting",
            ))
            .into());
        }
        let command = Command::ReviewItem {
            id: r.id,
            approve: r.approve,
            opinion: r.opinion,
            expected_revision: r.expected_revision,
        };
        self.write("ItemService/ReviewItem", &r.request_id, timeout, command)
            .await
    }

    async fn publish_item(
        &self,
        req: Request<PublishItemRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        require_id(&r.id)?;
        let command = Command::PublishItem {
            id: r.id,
            expected_revision: r.expected_revision,
        };
        self.write("ItemService/PublishItem", &r.request_id, timeout, command)
            .await
    }

    async fn revise_item(
        &self,
        req: Request<ReviseItemRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        require_id(&r.id)?;
        let cause = convert::change_cause("cause", r.cause).map_err(NodeError::from)?;
        validate::required_text("change_note", &r.change_note, validate::MAX_TEXT_CHARS)
            .map_err(NodeError::from)?;
        let content =
            convert::item_content("content", r.content.as_ref()).map_err(NodeError::from)?;
        let command = Command::ReviseItem {
            id: r.id,
            cause,
            change_note: r.change_note,
            content,
            expected_revision: r.expected_revision,
        };
        self.write("ItemService/ReviseItem", &r.request_id, timeout, command)
            .await
    }

    async fn abolish_item(
        &self,
        req: Request<AbolishItemRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        require_id(&r.id)?;
        validate::required_text("reason", &r.reason, validate::MAX_TEXT_CHARS)
            .map_err(NodeError::from)?;
        let command = Command::AbolishItem {
            id: r.id,
            reason: r.reason,
            expected_revision: r.expected_revision,
        };
        self.write("ItemService/AbolishItem", &r.request_id, timeout, command)
            .await
    }

    async fn get_item(
        &self,
        req: Request<GetItemRequest>,
    ) -> Result<Response<ItemResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(&self.core, "ItemService/GetItem", "");
        async {
            require_id(&r.id)?;
            let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
            let scope = self.core.scope()?;
            let item = query::item(&self.core.reader, &scope, &r.id, r.version)
                .map_err(NodeError::from)?;
            Ok(Response::new(ItemResponse {
                header: header(&self.core, revision, false),
                item: Some(convert::item_to_wire(&item)),
            }))
        }
        .instrument(span)
        .await
    }

    async fn list_items(
        &self,
        req: Request<ListItemsRequest>,
    ) -> Result<Response<ListItemsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(&self.core, "ItemService/ListItems", "");
        async {
            let optional_code = |field: &str, v: &str| -> Result<Option<String>, Status> {
                if v.is_empty() {
                    return Ok(None);
                }
                validate::department_code(field, v).map_err(NodeError::from)?;
                Ok(Some(v.to_string()))
            };
            let filter = ItemFilter {
                lead_department: optional_code("lead_department", &r.lead_department)?,
                involves_department: optional_code("involves_department", &r.involves_department)?,
                status: convert::status_filter("status", r.status).map_err(NodeError::from)?,
                field: if r.field.is_empty() {
                    None
                } else {
                    validate::slug("field", &r.field).map_err(NodeError::from)?;
                    Some(r.field.clone())
                },
                level: if r.level == 0 {
                    None
                } else {
                    Some(convert::level("level", r.level).map_err(NodeError::from)?)
                },
                public: r.public,
            };
            let page_size = query::page_size(r.page_size).map_err(NodeError::from)?;
            // Check the token before waiting on the leader.
            query::decode_page_token(&r.page_token, concord_domain::state::keys::ITEM)
                .map_err(NodeError::from)?;
            let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
            let scope = self.core.scope()?;
            let page = query::items(&self.core.reader, &scope, &filter, page_size, &r.page_token)
                .map_err(NodeError::from)?;
            Ok(Response::new(ListItemsResponse {
                header: header(&self.core, revision, false),
                items: page.items.iter().map(convert::item_to_wire).collect(),
                next_page_token: page.next_page_token,
            }))
        }
        .instrument(span)
        .await
    }

    async fn item_history(
        &self,
        req: Request<ItemHistoryRequest>,
    ) -> Result<Response<ItemHistoryResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let span = rpc::span(&self.core, "ItemService/ItemHistory", "");
        async {
            require_id(&r.id)?;
            let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
            let scope = self.core.scope()?;
            let versions =
                query::item_history(&self.core.reader, &scope, &r.id).map_err(NodeError::from)?;
            Ok(Response::new(ItemHistoryResponse {
                header: header(&self.core, revision, false),
                versions: versions.iter().map(convert::item_to_wire).collect(),
            }))
        }
        .instrument(span)
        .await
    }
}
