//! What became of messages, and why: `GET /v1/journeys/{name}/messages` (with `?step=`),
//! `/v1/broadcasts/{id}/messages` and `/v1/profiles/{key}/messages`. Each message has a state
//! (`queued`, `deferred`, `sent`, `failed`, `skipped`) and, when it was not sent, a reason;
//! journey and broadcast pages carry the counts by state and by reason.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use missive_core::{ErrorCode, MessageSource};
use missive_sending::messages::{MessagePage, MessageView, MessagesError};
use serde::Deserialize;

use crate::auth::{AuditSlot, ReadPersonal, RequireRole};
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys/{name}/messages", get(of_journey))
        .route("/v1/broadcasts/{id}/messages", get(of_broadcast))
        .route("/v1/profiles/{key}/messages", get(of_profile))
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

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Only the messages of this journey step.
    step: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
}

const DEFAULT_PAGE: u32 = 100;

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

#[derive(Debug, Deserialize)]
pub struct ProfileQuery {
    /// At most this many, newest first (default 100, at most 1,000).
    limit: Option<u32>,
}

pub async fn of_profile(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = crate::profiles::resolve(&state, &key, &audit).await?;
    let messages: Vec<MessageView> = state
        .messages
        .of_profile(&id, q.limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    Ok(Json(
        serde_json::json!({ "profile_id": id.to_string(), "messages": messages }),
    ))
}
