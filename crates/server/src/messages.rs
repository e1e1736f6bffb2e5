//! What became of messages, and why: `GET /v1/journeys/{name}/messages` (with `?step=`),
//! `/v1/broadcasts/{id}/messages` and `/v1/profiles/{key}/messages`. Each message has a state
//! (`queued`, `deferred`, `sent`, `failed`, `skipped`) and, when it was not sent, a reason;
//! journey and broadcast pages carry the counts by state and by reason.

use axum::Json;
use axum::extract::State;
use missive_core::{ErrorCode, MessageSource};
use missive_sending::messages::{MessagePage, MessageView, MessagesError};
use serde::Deserialize;

use crate::auth::{AuditSlot, ReadPersonal, RequireRole};
use crate::error::{Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa_axum::routes;

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(of_journey))
        .routes(routes!(of_broadcast))
        .routes(routes!(of_profile))
}

/// A person's messages, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = ProfileMessages)]
pub struct ProfileMessages {
    profile_id: String,
    messages: Vec<MessageView>,
}

impl From<MessagesError> for ApiError {
    fn from(e: MessagesError) -> Self {
        match e {
            MessagesError::Cursor(c) => {
                ApiError::bad_request(ErrorCode::InvalidCursor, c.to_string()).with_field("before")
            }
            MessagesError::Store(e) => ApiError::from(e),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only the messages of this journey step.
    step: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
}

const DEFAULT_PAGE: u32 = 100;

#[utoipa::path(get, path = "/v1/journeys/{name}/messages", tag = "messages", operation_id = "list_journey_messages", summary = "A journey's messages and their fate",
    description = "Each message's state (`queued`, `deferred`, `sent`, `failed`, `skipped`) and, when it was not sent, why; with the counts by state and by reason.",
    params(("name" = String, Path, description = "The journey's name."), PageQuery),
    responses((status = 200, description = "A page of messages, newest first.", body = MessagePage), (status = 400, description = "`before` is not a cursor from this API (`invalid_cursor`), or a parameter is not valid.", body = ApiError),
        (status = 404, description = "No journey has that name.", body = ApiError)))]
pub async fn of_journey(
    _: RequireRole<ReadPersonal>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    state.journeys.get(&name).await?;
    let page = state
        .messages
        .of_source(
            &MessageSource::Journey(name),
            q.step.as_deref(),
            q.before.as_deref(),
            q.limit.unwrap_or(DEFAULT_PAGE),
        )
        .await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/v1/broadcasts/{id}/messages", tag = "messages", operation_id = "list_broadcast_messages", summary = "A broadcast's messages and their fate",
    description = "As for a journey; a broadcast has no steps (`step` is refused).",
    params(("id" = String, Path, description = "The broadcast's id."), PageQuery),
    responses((status = 200, description = "A page of messages, newest first.", body = MessagePage), (status = 400, description = "`before` is not a cursor from this API (`invalid_cursor`), or a parameter is not valid.", body = ApiError),
        (status = 404, description = "No broadcast has that id.", body = ApiError)))]
pub async fn of_broadcast(
    _: RequireRole<ReadPersonal>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    state.broadcasts.get(&id).await?;
    if q.step.is_some() {
        return Err(
            ApiError::bad_request(ErrorCode::InvalidValue, "a broadcast has no steps").with_field("step"),
        );
    }
    let page = state
        .messages
        .of_source(
            &MessageSource::Broadcast(id),
            None,
            q.before.as_deref(),
            q.limit.unwrap_or(DEFAULT_PAGE),
        )
        .await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileQuery {
    /// At most this many, newest first (default 100, at most 1,000).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/profiles/{key}/messages", tag = "messages", operation_id = "list_profile_messages", summary = "A person's messages and their fate",
    params(("key" = String, Path, description = "A profile id, user id, anonymous id or e-mail address."), ProfileQuery),
    responses((status = 200, description = "The messages, newest first.", body = ProfileMessages),
        (status = 400, description = "A parameter is not valid.", body = ApiError),
        (status = 404, description = "No profile has that key.", body = ApiError)))]
pub async fn of_profile(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Result<Json<ProfileMessages>, ApiError> {
    let id = crate::profiles::resolve(&state, &key, &audit).await?;
    let messages: Vec<MessageView> = state
        .messages
        .of_profile(&id, q.limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    Ok(Json(ProfileMessages {
        profile_id: id.to_string(),
        messages,
    }))
}
