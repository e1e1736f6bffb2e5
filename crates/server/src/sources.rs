//! Inbound sources: `POST /v1/sources/{name}` takes a shop's or another service's webhook,
//! checks its signature with the source's secret (no API key: the sender signs instead), maps
//! it to Segment messages (`missive_sources`) and ingests them as a server key's would be.
//! The sender's delivery id deduplicates its retries.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use missive_core::ErrorCode;
use missive_core::message::validate_message;
use missive_sources::{Delivery, SourceError};
use serde_json::Value;

use crate::error::{Path, RawBody};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};

/// The largest body a source may send (Shopify's orders with many lines stay well below). The
/// server's body limit (1 MiB) applies first.
const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router().routes(utoipa_axum::routes!(receive))
}

/// What a delivery became.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = SourceDeliveryResult)]
pub struct Received {
    /// Messages ingested from it.
    accepted: usize,
    /// Of those, how many were already stored (a retried delivery). Absent for WooCommerce's
    /// unsigned ping.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicates: Option<usize>,
}

fn header<'a>(headers: &'a HeaderMap, name: Option<&str>) -> Option<&'a str> {
    name.and_then(|n| headers.get(n)).and_then(|v| v.to_str().ok())
}

/// `POST /v1/sources/{name}`: 200 with how many messages were ingested.
#[utoipa::path(post, path = "/v1/sources/{name}", tag = "sources", operation_id = "receive_source_delivery", summary = "Receive a source's webhook",
    description = "A shop's or another service's webhook (Shopify, WooCommerce, a consent platform, a generic mapping; docs/integrations.md). No API key: the body is signed with the source's secret, in the header the source names (`X-Shopify-Hmac-Sha256`, `X-WC-Webhook-Signature`, `X-Missive-Signature`). Mapped to Segment messages and ingested; the sender's delivery id deduplicates its retries.",
    params(("name" = String, Path, description = "The source's name (`[sources.NAME]` in the configuration).")),
    request_body(content = Value, description = "The source's payload, as it sends it."),
    security(()),
    responses((status = 200, description = "Ingested.", body = Received),
        (status = 400, description = "The body is not JSON.", body = ApiError),
        (status = 401, description = "The signature is missing or does not match (`source_signature`).", body = ApiError),
        (status = 404, description = "No source has that name.", body = ApiError),
        (status = 413, description = "The body is larger than 1 MiB.", body = ApiError),
        (status = 422, description = "The topic is not one the source maps (`source_topic`), or the payload cannot be mapped (`source_unmapped`).", body = ApiError)))]
pub async fn receive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Some(source) = state.sources.get(&name) else {
        return Err(ApiError::not_found(format!(
            "no source is named {name:?}: configure it under [sources.{name}]"
        )));
    };
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MessageTooLarge,
            format!("a source's body is at most {MAX_BODY} bytes"),
        ));
    }
    // WooCommerce pings a new webhook unsigned, with a form body (`webhook_id=N`): acknowledged,
    // and nothing is read from it.
    if matches!(source, missive_sources::Source::Woocommerce { .. })
        && headers.get(source.signature_header()).is_none()
        && body
            .strip_prefix(b"webhook_id=")
            .is_some_and(|rest| !rest.is_empty() && rest.iter().all(u8::is_ascii_digit))
    {
        let ping = Received {
            accepted: 0,
            duplicates: None,
        };
        return Ok((StatusCode::OK, axum::Json(ping)).into_response());
    }
    let delivery = Delivery {
        source: &name,
        topic: header(&headers, source.topic_header()),
        id: header(&headers, source.delivery_id_header()),
        signature: header(&headers, Some(source.signature_header())),
    };
    // Checked before the body is parsed: an unsigned body is nobody's.
    if source.verify(&body, &delivery).is_err() {
        metrics::counter!("missive_source_deliveries_total", "source" => name.clone(), "outcome" => "bad_signature")
            .increment(1);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::SourceSignature,
            format!(
                "the {} header is missing or does not match the body and the source's secret",
                source.signature_header()
            ),
        ));
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                format!("body is not valid JSON: {e}"),
            ));
        }
    };
    let messages = source.map(&payload, &delivery).map_err(|e| match e {
        SourceError::Topic(t) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::SourceTopic,
            format!("topic {t:?} is not one this source maps; see docs/integrations.md"),
        ),
        SourceError::Map { path, why } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::SourceUnmapped,
            format!("{path}: {why}"),
        )
        .with_field(path),
        SourceError::Signature => ApiError::unauthorized("signature"),
    })?;
    let now = state.engine.clock().now();
    let mut events = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let mut event = validate_message(m, None, None, now).map_err(|r| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::SourceUnmapped,
                format!("mapped message {i} is not a valid event: {}", r.message),
            )
        })?;
        event.set_trust(missive_core::Trust::Server);
        events.push(event);
    }
    let accepted = events.len();
    let outcome = state
        .engine
        .ingest(events)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    state.journeys.poke();
    metrics::counter!("missive_source_deliveries_total", "source" => name, "outcome" => "accepted")
        .increment(1);
    Ok((
        StatusCode::OK,
        axum::Json(Received {
            accepted,
            duplicates: Some(outcome.duplicates),
        }),
    )
        .into_response())
}
