//! The entity directory and the joint incentive and punishment lists.

use std::sync::Arc;

use concord_domain::query::{self, EntityFilter};
use concord_domain::{uscc, validate, Command, DomainError, Outcome};
use concord_proto::entity::v1::entity_service_server::EntityService;
use concord_proto::entity::v1::*;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;
use crate::rpc::{header, timeout_of, write_with};

pub struct EntitySvc {
    pub core: Arc<NodeCore>,
}

fn listing_response(
    o: Outcome,
    header: Option<concord_proto::common::v1::ResponseHeader>,
) -> Result<ListingResponse, Outcome> {
    match o {
        Outcome::Listing(l) => Ok(ListingResponse {
            header,
            listing: Some(convert::listing_to_wire(&l)),
        }),
        other => Err(other),
    }
}

fn optional(
    field: &str,
    v: &str,
    check: fn(&str, &str) -> Result<(), DomainError>,
) -> Result<Option<String>, Status> {
    if v.is_empty() {
        return Ok(None);
    }
    check(field, v).map_err(NodeError::from)?;
    Ok(Some(v.to_string()))
}

fn short_text(field: &str, v: &str) -> Result<(), DomainError> {
    validate::required_text(field, v, validate::MAX_SHORT_CHARS)
}

#[tonic::async_trait]
impl EntityService for EntitySvc {
    async fn register_entity(
        &self,
        req: Request<RegisterEntityRequest>,
    ) -> Result<Response<EntityResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let entity = convert::entity_spec("entity", r.entity.as_ref()).map_err(NodeError::from)?;
        let command = Command::RegisterEntity {
            entity,
            expected_revision: r.expected_revision,
        };
        write_with(
            &self.core,
            "EntityService/RegisterEntity",
            &r.request_id,
            timeout,
            command,
            |o, header| match o {
                Outcome::Entity { entity, tier } => Ok(EntityResponse {
                    header,
                    entity: Some(convert::entity_to_wire(&entity, Some(&tier))),
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn get_entity(
        &self,
        req: Request<GetEntityRequest>,
    ) -> Result<Response<EntityResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        uscc::validate("uscc", &r.uscc).map_err(NodeError::from)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let e = query::entity(&self.core.reader, &r.uscc).map_err(NodeError::from)?;
        let tier = query::tier(&self.core.reader, &r.uscc).ok().map(|(t, _)| t);
        Ok(Response::new(EntityResponse {
            header: header(&self.core, revision, false),
            entity: Some(convert::entity_to_wire(&e, tier.as_ref())),
        }))
    }

    async fn list_entities(
        &self,
        req: Request<ListEntitiesRequest>,
    ) -> Result<Response<ListEntitiesResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let filter = EntityFilter {
            district: optional("district", &r.district, short_text)?,
            industry: optional("industry", &r.industry, validate::slug)?,
            tier: optional("tier", &r.tier, short_text)?,
        };
        let page_size = query::page_size(r.page_size).map_err(NodeError::from)?;
        query::decode_page_token(&r.page_token, concord_domain::state::keys::ENTITY)
            .map_err(NodeError::from)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let page = query::entities(&self.core.reader, &filter, page_size, &r.page_token)
            .map_err(NodeError::from)?;
        Ok(Response::new(ListEntitiesResponse {
            header: header(&self.core, revision, false),
            entities: page
                .items
                .iter()
                .map(|(e, t)| convert::entity_to_wire(e, t.as_ref()))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_districts(
        &self,
        req: Request<ListDistrictsRequest>,
    ) -> Result<Response<ListDistrictsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let districts = query::districts(&self.core.reader).map_err(NodeError::from)?;
        Ok(Response::new(ListDistrictsResponse {
            header: header(&self.core, revision, false),
            districts,
        }))
    }

    async fn put_on_list(
        &self,
        req: Request<PutOnListRequest>,
    ) -> Result<Response<ListingResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        let listing =
            convert::listing_spec("listing", r.listing.as_ref()).map_err(NodeError::from)?;
        write_with(
            &self.core,
            "EntityService/PutOnList",
            &r.request_id,
            timeout,
            Command::PutOnList { listing },
            listing_response,
        )
        .await
    }

    async fn remove_from_list(
        &self,
        req: Request<RemoveFromListRequest>,
    ) -> Result<Response<ListingResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        validate::generated_id("id", &r.id, "list", 1).map_err(NodeError::from)?;
        validate::required_text("reason", &r.reason, validate::MAX_TEXT_CHARS)
            .map_err(NodeError::from)?;
        let command = Command::RemoveFromList {
            id: r.id,
            reason: r.reason,
            expected_revision: r.expected_revision,
        };
        write_with(
            &self.core,
            "EntityService/RemoveFromList",
            &r.request_id,
            timeout,
            command,
            listing_response,
        )
        .await
    }

    async fn list_listings(
        &self,
        req: Request<ListListingsRequest>,
    ) -> Result<Response<ListListingsResponse>, Status> {
        let timeout = timeout_of(&req, &self.core);
        let r = req.into_inner();
        uscc::validate("uscc", &r.uscc).map_err(NodeError::from)?;
        let revision = self.core.read_barrier(r.read.as_ref(), timeout).await?;
        let listings = query::listings(&self.core.reader, &r.uscc).map_err(NodeError::from)?;
        Ok(Response::new(ListListingsResponse {
            header: header(&self.core, revision, false),
            listings: listings.iter().map(convert::listing_to_wire).collect(),
        }))
    }
}
