//! What recipients reach from an e-mail: tracked links (`/t/c/…`), the open pixel (`/t/o/…`)
//! and one-click unsubscribe (`/u/…`, RFC 8058). Tokens are signed; a tampered or foreign one
//! is refused, never redirected. Each visit becomes an event on the profile: `Email Link
//! Clicked`, `Email Opened`, `Unsubscribed`. `GET /v1/messages/{id}` reports a message's
//! opens, clicks and the purchases attributed to it.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use missive_core::ProfileId;
use missive_sending::tracking::{Outcome, Unsubscribe};
use serde::Serialize;
use serde_json::json;

use crate::auth::{AuditSlot, ReadPersonal, RequireRole};
use crate::error::Path;
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};

use axum::routing::get;

/// Message reports (described in the API), tracked links, the open pixel and one-click
/// unsubscribe (for recipients, not part of the API).
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(utoipa_axum::routes!(message_report))
        .route("/t/c/{token}", get(click))
        .route("/t/o/{token}", get(open))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
    0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><p>This link is not valid.</p>"),
    )
        .into_response()
}

pub async fn click(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let Some(sender) = &state.sender else {
        return not_found();
    };
    let Ok(click) = sender.links().verify_click(&token) else {
        return not_found();
    };
    if let Ok(Some(m)) = state.tracking.message(&click.message_id).await {
        let mut props = json!({"message_id": click.message_id, "url": click.url, "template": m.template, "source": m.source});
        // A click on a product's page is an interaction with that product (recommendations).
        if let Ok(catalog) = state.content.catalog_as_cached().await
            && let Some(p) = catalog.product_at(&click.url)
        {
            props["product_id"] = json!(p.product.id);
        }
        state
            .tracking
            .record(&m.profile_id, "Email Link Clicked", props, None)
            .await;
    }
    match HeaderValue::from_str(&click.url) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => not_found(),
    }
}

pub async fn open(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let pixel = (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL,
    );
    let Some(sender) = &state.sender else {
        return pixel.into_response();
    };
    let token = token.trim_end_matches(".gif");
    if let Ok(open) = sender.links().verify_open(token)
        && let Ok(Some(m)) = state.tracking.message(&open.message_id).await
    {
        let props = json!({"message_id": open.message_id, "template": m.template, "source": m.source});
        state
            .tracking
            .record(&m.profile_id, "Email Opened", props, None)
            .await;
    }
    pixel.into_response()
}

/// The page a recipient lands on from the unsubscribe link: one button, no JavaScript.
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let Some(sender) = &state.sender else {
        return not_found();
    };
    if sender.links().verify_unsubscribe(&token).is_err() {
        return not_found();
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Unsubscribe</title>\
         <main><h1>Unsubscribe</h1><p>You will no longer receive marketing e-mail from us.</p>\
         <form method=\"post\" action=\"/u/{token}\"><button type=\"submit\">Unsubscribe</button></form></main></html>"
    ))
    .into_response()
}

/// One-click unsubscribe (RFC 8058) and the page's button: withdraws marketing consent.
pub async fn unsubscribe(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let Some(sender) = &state.sender else {
        return not_found();
    };
    let Ok(unsub) = sender.links().verify_unsubscribe(&token) else {
        return not_found();
    };
    let Ok(profile) = ProfileId::parse(&unsub.profile_id) else {
        return not_found();
    };
    match state.tracking.unsubscribe(&profile, &unsub.message_id).await {
        Unsubscribe::Withdrawn => {}
        Unsubscribe::UnknownProfile | Unsubscribe::Refused => return not_found(),
        Unsubscribe::NotRecorded => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Html("<p>Your unsubscribe could not be recorded. Please try again in a moment.</p>"),
            )
                .into_response();
        }
    }
    Html("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Unsubscribed</title><main><h1>You are unsubscribed</h1><p>You will no longer receive marketing e-mail from us.</p></main></html>")
        .into_response()
}

/// A message's fate and what it led to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageReport {
    id: String,
    profile_id: String,
    template: String,
    source: String,
    class: String,
    status: &'static str,
    attempts: u32,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    detail: Option<String>,
    opens: u64,
    clicks: u64,
    /// Purchases within the attribution window after the first click.
    conversions: u64,
    revenue: f64,
}

#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages", operation_id = "get_message_report", summary = "A message's fate and what it led to",
    description = "Its state and attempts, opens, clicks, and the purchases attributed to it (within the attribution window after the first click).",
    params(("id" = String, Path, description = "The message's id.")),
    responses((status = 200, description = "The report.", body = MessageReport),
        (status = 404, description = "No message has that id.", body = ApiError)))]
pub async fn message_report(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<MessageReport>, ApiError> {
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let m = state
        .tracking
        .message(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {id:?} does not exist")))?;
    audit.set_target(format!("profile:{}", m.profile_id));
    audit.set_detail(format!("message:{id}"));
    let Outcome {
        opens,
        clicks,
        conversions,
        revenue,
    } = state.tracking.outcome(&m).await?;
    Ok(axum::Json(MessageReport {
        id: m.id,
        profile_id: m.profile_id.to_string(),
        template: m.template,
        source: m.source.to_string(),
        class: m.class.as_str().to_owned(),
        status: m.status.as_str(),
        attempts: m.attempts,
        created_at: m.created_at,
        sent_at: m.sent_at,
        detail: m.detail,
        opens,
        clicks,
        conversions,
        revenue,
    }))
}
