//! The outbound webhooks API (administrators only: endpoints can carry personal data out):
//! `/v1/webhooks` (create, list), `/v1/webhooks/{name}` (read, delete),
//! `/v1/webhooks/{name}/test|pause|resume|rotate`, `/v1/webhooks/{name}/attempts`, and
//! `/v1/webhooks/{name}/dead-letters` (list) with `/dead-letters/replay`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use missive_core::ErrorCode;
use missive_sending::webhooks::{EndpointView, WebhookError, WithSecret};
use missive_webhooks::EndpointIn;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::auth::{Administer, RequireRole};
use crate::error::{JsonBody, Path, Query, RawBody};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(list, create))
        .routes(routes!(get_one, delete))
        .routes(routes!(test))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(rotate))
        .routes(routes!(attempts))
        .routes(routes!(dead_letters))
        .routes(routes!(replay))
}

/// A test notice queued.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookTestQueued)]
pub struct TestQueued {
    /// The notice's sequence number.
    queued: i64,
    /// The `webhook-id` it is delivered with.
    webhook_id: String,
}

/// A notice that was given up on.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDeadLetter)]
pub struct DeadLetterOut {
    seq: i64,
    #[serde(rename = "type")]
    kind: String,
    profile_id: Option<missive_core::ProfileId>,
    /// The notice's data, as it would have been delivered.
    data: Value,
    queued_at: chrono::DateTime<chrono::Utc>,
    reason: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// How many dead letters were queued again.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookReplayed)]
pub struct Replayed {
    replayed: u64,
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Endpoint(e) => {
                let field = e.field;
                ApiError::bad_request(ErrorCode::WebhookInvalid, e.to_string()).with_field(field)
            }
            e @ WebhookError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::WebhookExists, e.to_string())
            }
            e @ WebhookError::NotFound(_) => ApiError::not_found(e.to_string()),
            WebhookError::Store(e) => ApiError::from(e),
            e @ (WebhookError::Corrupt(..) | WebhookError::Client(_) | WebhookError::Stream(_)) => {
                ApiError::internal(&e)
            }
        }
    }
}

/// `POST /v1/webhooks`: 201 with the signing secret, shown this once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook", summary = "Add an endpoint",
    description = "Notices of the chosen events are signed (Standard Webhooks) and delivered in order, with retries. The signing secret is in the answer, and only there.",
    request_body = EndpointIn,
    responses((status = 201, description = "The endpoint with its secret.", body = WithSecret),
        (status = 400, description = "Not the expected JSON, or an invalid endpoint (`webhook_invalid`, with `field`).", body = ApiError),
        (status = 409, description = "An endpoint has that name (`webhook_exists`).", body = ApiError)))]
pub async fn create(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<EndpointIn>,
) -> Result<(StatusCode, Json<WithSecret>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.webhooks.create(body).await?)))
}

/// `GET /v1/webhooks`
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks", summary = "List the endpoints",
    responses((status = 200, description = "Every endpoint.", body = Vec<EndpointView>)))]
pub async fn list(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(state.webhooks.list().await?))
}

/// `GET /v1/webhooks/{name}`
#[utoipa::path(get, path = "/v1/webhooks/{name}", tag = "webhooks", operation_id = "get_webhook", summary = "Read an endpoint",
    params(("name" = String, Path, description = "The endpoint's name.")), responses((status = 200, description = "The endpoint and its delivery state.", body = EndpointView), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn get_one(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(state.webhooks.get(&name).await?))
}

/// `DELETE /v1/webhooks/{name}`: 204.
#[utoipa::path(delete, path = "/v1/webhooks/{name}", tag = "webhooks", operation_id = "delete_webhook", summary = "Delete an endpoint",
    params(("name" = String, Path, description = "The endpoint's name.")), responses((status = 204, description = "Deleted."), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn delete(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.webhooks.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{name}/test`: queues a `webhook.test` for this endpoint (202).
#[utoipa::path(post, path = "/v1/webhooks/{name}/test", tag = "webhooks", operation_id = "test_webhook", summary = "Send a test notice",
    params(("name" = String, Path, description = "The endpoint's name.")), responses((status = 202, description = "A `webhook.test` notice is queued for this endpoint.", body = TestQueued), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn test(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<TestQueued>), ApiError> {
    let seq = state.webhooks.test(&name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestQueued {
            queued: seq,
            webhook_id: format!("msg_{seq}"),
        }),
    ))
}

/// `POST /v1/webhooks/{name}/pause`
#[utoipa::path(post, path = "/v1/webhooks/{name}/pause", tag = "webhooks", operation_id = "pause_webhook", summary = "Pause deliveries",
    description = "Notices keep queuing and are delivered on resume.",
    params(("name" = String, Path, description = "The endpoint's name.")), responses((status = 200, description = "Paused.", body = EndpointView), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn pause(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(state.webhooks.set_paused(&name, true).await?))
}

/// `POST /v1/webhooks/{name}/resume`
#[utoipa::path(post, path = "/v1/webhooks/{name}/resume", tag = "webhooks", operation_id = "resume_webhook", summary = "Resume deliveries",
    params(("name" = String, Path, description = "The endpoint's name.")), responses((status = 200, description = "Delivering again.", body = EndpointView), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn resume(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(state.webhooks.set_paused(&name, false).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookRotateIn)]
pub struct RotateIn {
    /// The new secret (`whsec_…`); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long the old secret keeps signing (24 h by default).
    #[serde(default)]
    pub overlap_hours: Option<i64>,
}

/// `POST /v1/webhooks/{name}/rotate`: the new secret, shown this once.
#[utoipa::path(post, path = "/v1/webhooks/{name}/rotate", tag = "webhooks", operation_id = "rotate_webhook_secret", summary = "Rotate the signing secret",
    description = "The old secret keeps signing alongside the new one for `overlap_hours` (24 by default). The new secret is in the answer, and only there.",
    params(("name" = String, Path, description = "The endpoint's name.")), request_body(content = Option<RotateIn>, description = "The new secret and the overlap; or no body for the defaults."),
    responses((status = 200, description = "The endpoint with its new secret.", body = WithSecret),
        (status = 400, description = "Not the expected JSON, or an invalid secret or overlap.", body = ApiError), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn rotate(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<WithSecret>, ApiError> {
    let body: RotateIn = optional_json(&body)?;
    Ok(Json(
        state
            .webhooks
            .rotate(&name, body.secret, body.overlap_hours)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// At most this many.
    pub limit: Option<u32>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptOut {
    pub seq: i64,
    pub webhook_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// 0 when there was no answer.
    pub status: u16,
    pub error: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u32,
}

/// `GET /v1/webhooks/{name}/attempts?limit=`: newest first.
#[utoipa::path(get, path = "/v1/webhooks/{name}/attempts", tag = "webhooks", operation_id = "list_webhook_attempts", summary = "List delivery attempts",
    description = "Newest first; `limit` 1 to 1,000 (default 50).",
    params(("name" = String, Path, description = "The endpoint's name."), LimitQuery),
    responses((status = 200, description = "The attempts.", body = Vec<AttemptOut>),
        (status = 400, description = "A parameter is not valid.", body = ApiError), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn attempts(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<AttemptOut>>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1_000);
    let out = state
        .webhooks
        .attempts(&name, limit)
        .await?
        .into_iter()
        .map(|a| AttemptOut {
            seq: a.seq,
            webhook_id: a.webhook_id,
            kind: a.kind,
            status: a.status,
            error: a.error,
            at: a.at,
            duration_ms: a.duration_ms,
        })
        .collect();
    Ok(Json(out))
}

/// `GET /v1/webhooks/{name}/dead-letters?limit=`: oldest first.
#[utoipa::path(get, path = "/v1/webhooks/{name}/dead-letters", tag = "webhooks", operation_id = "list_webhook_dead_letters", summary = "List the notices given up on",
    description = "Oldest first; `limit` 1 to 10,000 (default 100).",
    params(("name" = String, Path, description = "The endpoint's name."), LimitQuery),
    responses((status = 200, description = "The dead letters.", body = Vec<DeadLetterOut>),
        (status = 400, description = "A parameter is not valid.", body = ApiError), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn dead_letters(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<DeadLetterOut>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let out = state
        .webhooks
        .dead_letters(&name, limit)
        .await?
        .into_iter()
        .map(|l| DeadLetterOut {
            seq: l.notice.seq,
            kind: l.notice.kind,
            profile_id: l.notice.profile_id,
            data: l.notice.data,
            queued_at: l.notice.at,
            reason: l.reason,
            at: l.at,
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookReplayIn)]
pub struct ReplayIn {
    /// The dead letters to replay (their `seq`); all when absent.
    #[serde(default)]
    pub seqs: Option<Vec<i64>>,
}

/// `POST /v1/webhooks/{name}/dead-letters/replay`: queues them again for this endpoint.
#[utoipa::path(post, path = "/v1/webhooks/{name}/dead-letters/replay", tag = "webhooks", operation_id = "replay_webhook_dead_letters", summary = "Queue dead letters again",
    params(("name" = String, Path, description = "The endpoint's name.")), request_body(content = Option<ReplayIn>, description = "The dead letters to replay (their `seq`); all without a body."),
    responses((status = 200, description = "How many were queued again.", body = Replayed),
        (status = 400, description = "Not the expected JSON.", body = ApiError), (status = 404, description = "No endpoint has that name.", body = ApiError)))]
pub async fn replay(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Replayed>, ApiError> {
    let body: ReplayIn = optional_json(&body)?;
    let n = state.webhooks.replay(&name, body.seqs).await?;
    Ok(Json(Replayed { replayed: n }))
}

/// A body that may be left out (the defaults apply).
fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidJson, format!("the body is not valid: {e}")))
}
