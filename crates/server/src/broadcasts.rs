//! The broadcasts API (`/v1/broadcasts`) and the inbound endpoint for bounce and complaint
//! reports (`/v1/inbound/reports`).

use axum::Json;
use axum::extract::{Path, State};
use missive_core::ErrorCode;
use missive_sending::bounces::{BounceError, ReportOutcome};
use missive_sending::broadcasts::{Broadcast, BroadcastError, BroadcastIn, Progress};

use crate::auth::{Administer, Marketing, Reports, RequireRole};
use crate::error::JsonBody;
use crate::{ApiError, AppState};

use axum::Router;
use axum::routing::{get, post};

/// Broadcasts and inbound delivery reports.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/broadcasts", get(list).post(create))
        .route("/v1/broadcasts/run", post(run))
        .route("/v1/broadcasts/{id}", get(get_one))
        .route("/v1/broadcasts/{id}/pause", post(pause))
        .route("/v1/broadcasts/{id}/resume", post(resume))
        .route("/v1/broadcasts/{id}/cancel", post(cancel))
        .route("/v1/inbound/reports", post(inbound_report))
}

impl From<BroadcastError> for ApiError {
    fn from(e: BroadcastError) -> Self {
        match e {
            BroadcastError::Invalid(m) => ApiError::bad_request(ErrorCode::BroadcastInvalid, m),
            BroadcastError::NotFound(_) => ApiError::not_found(e.to_string()),
            BroadcastError::WrongState { .. } => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                ErrorCode::BroadcastState,
                e.to_string(),
            ),
            BroadcastError::Store(e) => ApiError::from(e),
            BroadcastError::Corrupt(_) => ApiError::internal(&e),
        }
    }
}

pub async fn create(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BroadcastIn>,
) -> Result<(axum::http::StatusCode, Json<Progress>), ApiError> {
    state
        .privacy_config
        .check_topic(body.topic.as_deref())
        .map_err(|m| ApiError::bad_request(ErrorCode::BroadcastInvalid, m).with_field("topic"))?;
    let progress = state.broadcasts.create(body).await?;
    Ok((axum::http::StatusCode::CREATED, Json(progress)))
}

pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all: Vec<Broadcast> = state.broadcasts.list().await?;
    Ok(Json(serde_json::json!({ "broadcasts": all })))
}

pub async fn get_one(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.get(&id).await?))
}

pub async fn pause(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.pause(&id).await?))
}

pub async fn resume(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.resume(&id).await?))
}

pub async fn cancel(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.cancel(&id).await?))
}

/// Queues what is due now (what the background loop does on its own).
pub async fn run(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let queued = state.broadcasts.run_pending().await?;
    Ok(Json(serde_json::json!({ "queued": queued })))
}

/// A raw bounce (RFC 3464) or complaint (RFC 5965) message, as received by the bounce
/// mailbox; the mail server's pipe or a forwarder posts it here.
pub async fn inbound_report(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<ReportOutcome>, ApiError> {
    let Some(sender) = &state.sender else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DeliveryOff,
            "delivery is not running",
        ));
    };
    let now = state.engine.clock().now();
    match sender.apply_report(&body, now).await {
        Ok(out) => Ok(Json(out)),
        Err(BounceError::NotAReport) => Err(ApiError::bad_request(
            ErrorCode::NotAReport,
            "the body is not a delivery status notification (RFC 3464) or feedback report (RFC 5965)",
        )),
        Err(BounceError::Store(e)) => Err(ApiError::from(e)),
    }
}
