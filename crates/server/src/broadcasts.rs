//! The broadcasts API (`/v1/broadcasts`) and the inbound endpoint for bounce and complaint
//! reports (`/v1/inbound/reports`).

use axum::Json;
use axum::extract::State;
use missive_core::ErrorCode;
use missive_sending::bounces::{BounceError, ReportOutcome};
use missive_sending::broadcasts::{Broadcast, BroadcastError, BroadcastIn, Progress};

use crate::auth::{Administer, Marketing, Reports, RequireRole};
use crate::error::{JsonBody, Path, RawBody};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa_axum::routes;

/// Broadcasts and inbound delivery reports.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(list, create))
        .routes(routes!(run))
        .routes(routes!(get_one))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(inbound_report))
}

/// Every broadcast.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastList)]
pub struct BroadcastsOut {
    broadcasts: Vec<Broadcast>,
}

/// What a run queued.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastRun)]
pub struct RunOut {
    queued: u64,
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

#[utoipa::path(post, path = "/v1/broadcasts", tag = "broadcasts", operation_id = "create_broadcast", summary = "Schedule a broadcast",
    description = "A template to a segment's members, at `send_at` (default now), at most `rate_per_second`; with an experiment, optionally in waves.",
    request_body = BroadcastIn,
    responses((status = 201, description = "Scheduled.", body = Progress),
        (status = 400, description = "Not the expected JSON, or an invalid broadcast (`broadcast_invalid`).", body = ApiError)))]
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

#[utoipa::path(get, path = "/v1/broadcasts", tag = "broadcasts", operation_id = "list_broadcasts", summary = "List the broadcasts",
    responses((status = 200, description = "Every broadcast.", body = BroadcastsOut)))]
pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<BroadcastsOut>, ApiError> {
    let broadcasts: Vec<Broadcast> = state.broadcasts.list().await?;
    Ok(Json(BroadcastsOut { broadcasts }))
}

#[utoipa::path(get, path = "/v1/broadcasts/{id}", tag = "broadcasts", operation_id = "get_broadcast", summary = "A broadcast and its progress",
    params(("id" = String, Path, description = "The broadcast's id.")), responses((status = 200, description = "The broadcast with its messages' counts.", body = Progress), (status = 404, description = "No broadcast has that id.", body = ApiError)))]
pub async fn get_one(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.get(&id).await?))
}

#[utoipa::path(post, path = "/v1/broadcasts/{id}/pause", tag = "broadcasts", operation_id = "pause_broadcast", summary = "Pause a broadcast",
    params(("id" = String, Path, description = "The broadcast's id.")), responses((status = 200, description = "Paused.", body = Progress), (status = 404, description = "No broadcast has that id.", body = ApiError), (status = 409, description = "Not possible in the broadcast's state (`broadcast_state`).", body = ApiError)))]
pub async fn pause(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.pause(&id).await?))
}

#[utoipa::path(post, path = "/v1/broadcasts/{id}/resume", tag = "broadcasts", operation_id = "resume_broadcast", summary = "Resume a paused broadcast",
    params(("id" = String, Path, description = "The broadcast's id.")), responses((status = 200, description = "Running again.", body = Progress), (status = 404, description = "No broadcast has that id.", body = ApiError), (status = 409, description = "Not possible in the broadcast's state (`broadcast_state`).", body = ApiError)))]
pub async fn resume(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.resume(&id).await?))
}

#[utoipa::path(post, path = "/v1/broadcasts/{id}/cancel", tag = "broadcasts", operation_id = "cancel_broadcast", summary = "Cancel a broadcast",
    description = "What is queued is not sent.",
    params(("id" = String, Path, description = "The broadcast's id.")), responses((status = 200, description = "Cancelled.", body = Progress), (status = 404, description = "No broadcast has that id.", body = ApiError), (status = 409, description = "Not possible in the broadcast's state (`broadcast_state`).", body = ApiError)))]
pub async fn cancel(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    Ok(Json(state.broadcasts.cancel(&id).await?))
}

/// Queues what is due now (what the background loop does on its own).
#[utoipa::path(post, path = "/v1/broadcasts/run", tag = "broadcasts", operation_id = "run_broadcasts", summary = "Queue what is due now",
    description = "What the background loop does on its own.",
    responses((status = 200, description = "How many messages were queued.", body = RunOut)))]
pub async fn run(_: RequireRole<Marketing>, State(state): State<AppState>) -> Result<Json<RunOut>, ApiError> {
    let queued = state.broadcasts.run_pending().await?;
    Ok(Json(RunOut { queued }))
}

/// A raw bounce (RFC 3464) or complaint (RFC 5965) message, as received by the bounce
/// mailbox; the mail server's pipe or a forwarder posts it here.
#[utoipa::path(post, path = "/v1/inbound/reports", tag = "broadcasts", operation_id = "post_inbound_report", summary = "Report a bounce or complaint",
    description = "A raw delivery status notification (RFC 3464) or feedback report (RFC 5965), as the bounce mailbox received it. Administrators only.",
    request_body(content = String, content_type = "text/plain", description = "The raw message (RFC 5322), as received; any content type is read as such."),
    responses((status = 200, description = "What the report said, and what was suppressed.", body = ReportOutcome),
        (status = 400, description = "Not a delivery status notification or feedback report (`not_a_report`).", body = ApiError),
        (status = 503, description = "Delivery is not running (`delivery_off`), or the store is unavailable.", body = ApiError)))]
pub async fn inbound_report(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
    RawBody(body): RawBody,
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
