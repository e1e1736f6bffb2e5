//! The outbound webhooks API (administrators only: endpoints can carry personal data out):
//! `/v1/webhooks` (create, list), `/v1/webhooks/{name}` (read, delete),
//! `/v1/webhooks/{name}/test|pause|resume|rotate`, `/v1/webhooks/{name}/attempts`, and
//! `/v1/webhooks/{name}/dead-letters` (list) with `/dead-letters/replay`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use missive_core::ErrorCode;
use missive_sending::webhooks::{EndpointView, WebhookError, WithSecret};
use missive_webhooks::EndpointIn;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Administer, RequireRole};
use crate::error::JsonBody;
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{name}", get(get_one).delete(delete))
        .route("/v1/webhooks/{name}/test", post(test))
        .route("/v1/webhooks/{name}/pause", post(pause))
        .route("/v1/webhooks/{name}/resume", post(resume))
        .route("/v1/webhooks/{name}/rotate", post(rotate))
        .route("/v1/webhooks/{name}/attempts", get(attempts))
        .route("/v1/webhooks/{name}/dead-letters", get(dead_letters))
        .route("/v1/webhooks/{name}/dead-letters/replay", post(replay))
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
            e @ (WebhookError::Corrupt(..) | WebhookError::Client(_)) => ApiError::internal(&e),
        }
    }
}

/// `POST /v1/webhooks`: 201 with the signing secret, shown this once.
pub async fn create(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<EndpointIn>,
) -> Result<(StatusCode, Json<WithSecret>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.webhooks.create(body).await?)))
}

/// `GET /v1/webhooks`
pub async fn list(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(state.webhooks.list().await?))
}

/// `GET /v1/webhooks/{name}`
pub async fn get_one(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(state.webhooks.get(&name).await?))
}

/// `DELETE /v1/webhooks/{name}`: 204.
pub async fn delete(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.webhooks.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{name}/test`: queues a `webhook.test` for this endpoint (202).
pub async fn test(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let seq = state.webhooks.test(&name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"queued": seq, "webhook_id": format!("msg_{seq}")})),
    ))
}

/// `POST /v1/webhooks/{name}/pause`
pub async fn pause(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(state.webhooks.set_paused(&name, true).await?))
}

/// `POST /v1/webhooks/{name}/resume`
pub async fn resume(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(state.webhooks.set_paused(&name, false).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// The new secret (`whsec_…`); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long the old secret keeps signing (24 h by default).
    #[serde(default)]
    pub overlap_hours: Option<i64>,
}

/// `POST /v1/webhooks/{name}/rotate`: the new secret, shown this once.
pub async fn rotate(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<WithSecret>, ApiError> {
    let body: RotateIn = optional_json(&body)?;
    Ok(Json(
        state
            .webhooks
            .rotate(&name, body.secret, body.overlap_hours)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct LimitQuery {
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
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
pub async fn dead_letters(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let out = state
        .webhooks
        .dead_letters(&name, limit)
        .await?
        .into_iter()
        .map(|l| {
            json!({
                "seq": l.notice.seq,
                "type": l.notice.kind,
                "profile_id": l.notice.profile_id,
                "data": l.notice.data,
                "queued_at": l.notice.at,
                "reason": l.reason,
                "at": l.at,
            })
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// The dead letters to replay (their `seq`); all when absent.
    #[serde(default)]
    pub seqs: Option<Vec<i64>>,
}

/// `POST /v1/webhooks/{name}/dead-letters/replay`: queues them again for this endpoint.
pub async fn replay(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: ReplayIn = optional_json(&body)?;
    let n = state.webhooks.replay(&name, body.seqs).await?;
    Ok(Json(json!({"replayed": n})))
}

/// A body that may be left out (the defaults apply).
fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidJson, format!("the body is not valid: {e}")))
}
