//! What recipients reach from an e-mail: tracked links (`/t/c/…`), the open pixel (`/t/o/…`)
//! and one-click unsubscribe (`/u/…`, RFC 8058). Tokens are signed; a tampered or foreign one
//! is refused, never redirected. Each visit becomes an event on the profile: `Email Link
//! Clicked`, `Email Opened`, `Unsubscribed`. `GET /v1/messages/{id}` reports a message's
//! opens, clicks and the purchases attributed to it.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use missive_core::ProfileId;
use missive_core::message::validate_message;
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_store::{EventQuery, OutboxMessage};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::{AuditSlot, ReadPersonal, RequireRole};
use crate::{ApiError, AppState};

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
    0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Purchases this long after a click count as the message's conversions.
pub const ATTRIBUTION_WINDOW: TimeDelta = TimeDelta::days(7);

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><p>This link is not valid.</p>"),
    )
        .into_response()
}

/// Records an event for the profile a message went to, identified as the profile is known.
async fn record(
    state: &AppState,
    profile: &ProfileId,
    event: &str,
    properties: Value,
    message_id: Option<String>,
) {
    let store = &state.engine.store();
    let key = ProfileKey::Id(profile.clone());
    let p = match find_profile(store, &key, 0).await {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "tracking: profile lookup failed");
            return;
        }
    };
    let mut msg = json!({"type": "track", "event": event, "properties": properties});
    missive_engine::privacy::identify_as(&p, &mut msg);
    if let Some(id) = message_id {
        msg["messageId"] = json!(id);
    }
    let now = state.engine.clock().now();
    match validate_message(msg, None, None, now) {
        Ok(mut e) => {
            e.set_trust(missive_core::Trust::Missive);
            if let Err(e) = state.engine.ingest(vec![e]).await {
                tracing::error!(error = %e, "tracking: event not recorded");
            }
            state.journeys.poke();
        }
        Err(r) => tracing::error!(code = r.code, "tracking: event refused"),
    }
}

async fn message_of(state: &AppState, id: &str) -> Option<OutboxMessage> {
    state
        .engine
        .store()
        .delivery()
        .outbox_message(id)
        .await
        .ok()
        .flatten()
}

pub async fn click(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(sender) = &state.sender else {
        return not_found();
    };
    let Ok(click) = sender.links().verify_click(&token) else {
        return not_found();
    };
    if let Some(m) = message_of(&state, &click.message_id).await {
        let props = json!({"message_id": click.message_id, "url": click.url, "template": m.template, "source": m.source});
        record(&state, &m.profile_id, "Email Link Clicked", props, None).await;
    }
    match HeaderValue::from_str(&click.url) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => not_found(),
    }
}

pub async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Response {
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
        && let Some(m) = message_of(&state, &open.message_id).await
    {
        let props = json!({"message_id": open.message_id, "template": m.template, "source": m.source});
        record(&state, &m.profile_id, "Email Opened", props, None).await;
    }
    pixel.into_response()
}

/// The page a recipient lands on from the unsubscribe link: one button, no JavaScript.
pub async fn unsubscribe_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
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
pub async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(sender) = &state.sender else {
        return not_found();
    };
    let Ok(unsub) = sender.links().verify_unsubscribe(&token) else {
        return not_found();
    };
    let Ok(profile) = ProfileId::parse(&unsub.profile_id) else {
        return not_found();
    };
    let store = &state.engine.store();
    let Ok(Some(p)) = find_profile(store, &ProfileKey::Id(profile.clone()), 0).await else {
        return not_found();
    };
    let now = state.engine.clock().now();
    // Each use of the link is its own withdrawal: unsubscribe, re-subscribe and unsubscribe
    // again with the same e-mail's link must withdraw again, so the id is not the link's.
    let mut identify = json!({
        "type": "identify",
        "traits": {"consent": {"email_marketing": false}},
        "messageId": format!("unsubscribe-consent-{}-{}", unsub.message_id, missive_core::MessageId::generate().as_str()),
        "context": {"library": {"name": "missive-unsubscribe"}, "missive": {"source": "unsubscribe-link"}},
    });
    missive_engine::privacy::identify_as(&p, &mut identify);
    let try_again = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Html("<p>Your unsubscribe could not be recorded. Please try again in a moment.</p>"),
        )
            .into_response()
    };
    match validate_message(identify, None, None, now) {
        Ok(mut e) => {
            e.set_trust(missive_core::Trust::Missive);
            if let Err(e) = state.engine.ingest(vec![e]).await {
                tracing::error!(error = %e, "unsubscribe not recorded");
                return try_again();
            }
            // The page says "unsubscribed" only when consent is withdrawn now.
            let withdrawn = match state.engine.sync().await {
                Ok(()) => matches!(
                    find_profile(store, &ProfileKey::Id(profile.clone()), 0).await,
                    Ok(Some(p)) if !p.consents(missive_core::Purpose::EmailMarketing)
                ),
                Err(_) => false,
            };
            if !withdrawn {
                tracing::error!(profile_id = %profile, "unsubscribe recorded but consent still granted");
                return try_again();
            }
        }
        Err(r) => {
            tracing::error!(code = r.code, "unsubscribe refused");
            return not_found();
        }
    }
    let props = json!({"message_id": unsub.message_id});
    record(
        &state,
        &profile,
        "Unsubscribed",
        props,
        Some(format!("unsubscribe-{}", unsub.message_id)),
    )
    .await;
    Html("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Unsubscribed</title><main><h1>You are unsubscribed</h1><p>You will no longer receive marketing e-mail from us.</p></main></html>")
        .into_response()
}

#[derive(Debug, Serialize)]
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

/// A message's fate and what it led to.
pub async fn message_report(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<MessageReport>, ApiError> {
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let store = &state.engine.store();
    let m = store
        .delivery()
        .outbox_message(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {id:?} does not exist")))?;
    audit.set_target(format!("profile:{}", m.profile_id));
    audit.set_detail(format!("message:{id}"));
    let events = store
        .events()
        .profile_events(EventQuery {
            profile_id: m.profile_id.clone(),
            received_before: None,
            cursor: None,
            limit: 5_000,
        })
        .await?;
    let (mut opens, mut clicks, mut conversions, mut revenue) = (0, 0, 0, 0.0);
    let mut first_click: Option<DateTime<Utc>> = None;
    for e in &events {
        let about_this = e.body["properties"]["message_id"].as_str() == Some(id.as_str());
        match e.name.as_str() {
            "Email Opened" if about_this => opens += 1,
            "Email Link Clicked" if about_this => {
                clicks += 1;
                first_click = Some(first_click.map_or(e.timestamp, |c| c.min(e.timestamp)));
            }
            _ => {}
        }
    }
    if let Some(click) = first_click {
        for e in events.iter().filter(|e| e.name == "Order Completed") {
            if e.timestamp >= click && e.timestamp <= click + ATTRIBUTION_WINDOW {
                conversions += 1;
                revenue += missive_core::profile::order_revenue(
                    e.body["properties"]
                        .as_object()
                        .unwrap_or(&serde_json::Map::new()),
                )
                .as_major();
            }
        }
    }
    Ok(axum::Json(MessageReport {
        id: m.id,
        profile_id: m.profile_id.to_string(),
        template: m.template,
        source: m.source,
        class: m.class,
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
