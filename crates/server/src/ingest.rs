//! Segment's HTTP Tracking API. A 200 means the events are durable; a batch with some bad
//! messages keeps the good ones and lists the rejected ones with their reasons.

use missive_core::ErrorCode;
use std::io::Read;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use missive_core::message::{MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Rejection, parse_time, validate_message};
use missive_core::{Event, EventKind, Trust};
use missive_store::Role;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::auth::{Ingest, Permission, caller_for, presented_key};
use crate::{ApiError, AppState};

use axum::Router;
use axum::routing::post;

/// Segment's tracking API and bulk import.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/track", post(single::<{ TRACK }>))
        .route("/v1/identify", post(single::<{ IDENTIFY }>))
        .route("/v1/page", post(single::<{ PAGE }>))
        .route("/v1/screen", post(single::<{ SCREEN }>))
        .route("/v1/group", post(single::<{ GROUP }>))
        .route("/v1/alias", post(single::<{ ALIAS }>))
        .route("/v1/batch", post(batch))
        .route("/v1/import", post(batch))
}

pub const TRACK: u8 = 0;
pub const IDENTIFY: u8 = 1;
pub const PAGE: u8 = 2;
pub const SCREEN: u8 = 3;
pub const GROUP: u8 = 4;
pub const ALIAS: u8 = 5;

/// Largest body accepted on the wire (compressed or not); decompressed bodies are held to
/// Segment's limits.
pub const MAX_RAW_BODY: usize = 1024 * 1024;

fn kind_of(k: u8) -> EventKind {
    match k {
        TRACK => EventKind::Track,
        IDENTIFY => EventKind::Identify,
        PAGE => EventKind::Page,
        SCREEN => EventKind::Screen,
        GROUP => EventKind::Group,
        _ => EventKind::Alias,
    }
}

/// The `Authorization` header's key, checked if present; a body `writeKey` is checked later.
pub struct IngestAuth(Option<Trust>, Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for IngestAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match presented_key(parts)? {
            Some(key) => {
                let ip = crate::limits::client_ip(parts);
                let trust = ingest_allowed(state, &key, ip).await?;
                Ok(IngestAuth(Some(trust), ip))
            }
            None => Ok(IngestAuth(None, crate::limits::client_ip(parts))),
        }
    }
}

/// A key may send events when its role has the [`Ingest`] permission. The public (client)
/// write key's events are [`Trust::Client`]; a server write key's or admin key's are
/// [`Trust::Server`].
async fn ingest_allowed(
    state: &AppState,
    key: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Trust, ApiError> {
    let caller = caller_for(state, key, ip).await?;
    if Ingest::allows(caller.role) {
        Ok(if caller.role == Role::Write {
            Trust::Client
        } else {
            Trust::Server
        })
    } else {
        Err(ApiError::forbidden(format!(
            "a {} key may not send events: use a write key",
            caller.role.as_str()
        )))
    }
}

async fn check_body_key(
    state: &AppState,
    header: &IngestAuth,
    body_key: Option<&Value>,
) -> Result<Trust, ApiError> {
    if let Some(trust) = header.0 {
        return Ok(trust);
    }
    match body_key {
        Some(Value::String(k)) => ingest_allowed(state, k, header.1).await,
        Some(_) => Err(
            ApiError::bad_request(ErrorCode::InvalidType, "writeKey must be a string").with_field("writeKey"),
        ),
        None => Err(ApiError::unauthorized(
            "a write key is required: HTTP Basic with the key as user name, or writeKey in the body",
        )),
    }
}

fn decode_body(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
    too_large: ErrorCode,
) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    let decoded = match encoding.as_deref() {
        None | Some("") | Some("identity") => body,
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len() * 4);
            // Read one byte past the limit: enough to know it is too large, never a bomb.
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request(ErrorCode::InvalidGzip, format!("body is not valid gzip: {e}"))
                })?;
            Bytes::from(out)
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedEncoding,
                format!("Content-Encoding {other:?} is not supported; use gzip or none"),
            ));
        }
    };
    if decoded.len() > limit {
        let what = if limit == MAX_BATCH_BYTES {
            "a batch"
        } else {
            "a message"
        };
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large,
            format!("{what} may be at most {} KB", limit / 1024),
        ));
    }
    Ok(decoded)
}

fn rejection_error(r: Rejection) -> ApiError {
    ApiError::bad_request(r.code, r.message).with_field(r.field)
}

fn count_rejection(code: ErrorCode) {
    metrics::counter!("missive_events_rejected_total", "reason" => code.as_str()).increment(1);
}

fn count_accepted(events: &[Event]) {
    for e in events {
        metrics::counter!("missive_events_accepted_total", "type" => e.kind.as_str()).increment(1);
    }
}

#[derive(Serialize)]
pub struct IngestOut {
    success: bool,
    accepted: usize,
    duplicates: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<RejectedOut>,
}

#[derive(Serialize)]
pub struct RejectedOut {
    index: usize,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    code: ErrorCode,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
    message: String,
}

/// `POST /v1/track` and the other single-message calls.
pub async fn single<const K: u8>(
    State(state): State<AppState>,
    auth: IngestAuth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let received_at = state.engine.clock().now();
    let body = decode_body(&headers, body, MAX_MESSAGE_BYTES, ErrorCode::MessageTooLarge)
        .inspect_err(|e| count_rejection(e.code))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        count_rejection(ErrorCode::InvalidJson);
        ApiError::bad_request(ErrorCode::InvalidJson, format!("body is not valid JSON: {e}"))
    })?;
    let trust = check_body_key(&state, &auth, value.get("writeKey")).await?;
    let message_id = value.get("messageId").and_then(Value::as_str).map(str::to_owned);
    let mut event = validate_message(value, Some(kind_of(K)), None, received_at).map_err(|r| {
        count_rejection(r.code);
        rejection_error(r)
    })?;
    event.set_trust(trust);
    let events = vec![event];
    count_accepted(&events);
    let outcome = state
        .engine
        .ingest(events)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    // Journeys react to the new events now, not at their next poll.
    state.journeys.poke();
    metrics::counter!("missive_events_duplicate_total").increment(outcome.duplicates as u64);
    metrics::histogram!("missive_ingest_ack_seconds").record(started.elapsed().as_secs_f64());
    let rejected: Vec<RejectedOut> = outcome
        .erased
        .iter()
        .map(|_| erased(0, message_id.clone()))
        .collect();
    Ok(Json(IngestOut {
        success: rejected.is_empty(),
        accepted: outcome.stored,
        duplicates: outcome.duplicates,
        rejected,
    })
    .into_response())
}

/// An event naming a person who asked to be erased: acknowledged, never stored.
fn erased(index: usize, message_id: Option<String>) -> RejectedOut {
    count_rejection(ErrorCode::Erased);
    RejectedOut {
        index,
        message_id,
        code: ErrorCode::Erased,
        field: String::new(),
        message: "names a person who was erased at their request; it is not stored (docs/privacy.md)".into(),
    }
}

/// `POST /v1/batch` (and `/v1/import`, Segment's alias of it).
pub async fn batch(
    State(state): State<AppState>,
    auth: IngestAuth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let received_at = state.engine.clock().now();
    let body = decode_body(&headers, body, MAX_BATCH_BYTES, ErrorCode::BatchTooLarge)
        .inspect_err(|e| count_rejection(e.code))?;
    // Only the envelope is parsed here; each message is parsed once, below, so that its own
    // size is known and one bad message cannot spoil the others.
    #[derive(serde::Deserialize)]
    struct Envelope {
        batch: Option<Box<RawValue>>,
        #[serde(rename = "sentAt")]
        sent_at: Option<Value>,
        #[serde(rename = "writeKey")]
        write_key: Option<Value>,
        context: Option<Value>,
    }
    let top: Envelope = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            count_rejection(ErrorCode::InvalidJson);
            return Err(if serde_json::from_slice::<Value>(&body).is_ok() {
                ApiError::bad_request(ErrorCode::InvalidType, "a batch body must be a JSON object")
            } else {
                ApiError::bad_request(ErrorCode::InvalidJson, format!("body is not valid JSON: {e}"))
            });
        }
    };
    let trust = check_body_key(&state, &auth, top.write_key.as_ref()).await?;
    let items: Vec<Box<RawValue>> = match &top.batch {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|_| {
            ApiError::bad_request(ErrorCode::InvalidType, "batch must be an array").with_field("batch")
        })?,
        None => {
            return Err(
                ApiError::bad_request(ErrorCode::MissingField, "batch is required").with_field("batch"),
            );
        }
    };
    let batch_sent_at: Option<DateTime<Utc>> = match &top.sent_at {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_time(s).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidTimestamp,
                "sentAt must be an ISO-8601 date-time",
            )
            .with_field("sentAt")
        })?),
        Some(_) => {
            return Err(
                ApiError::bad_request(ErrorCode::InvalidType, "sentAt must be a string").with_field("sentAt"),
            );
        }
    };
    let shared_context = top.context.as_ref().and_then(Value::as_object);

    let mut events = Vec::with_capacity(items.len());
    // For each event, its position and message id in the request.
    let mut origin: Vec<(usize, Option<String>)> = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, raw) in items.into_iter().enumerate() {
        let mut reject = |r: Rejection, message_id: Option<String>| {
            count_rejection(r.code);
            rejected.push(RejectedOut {
                index,
                message_id,
                code: r.code,
                field: r.field,
                message: r.message,
            });
        };
        if raw.get().len() > MAX_MESSAGE_BYTES {
            reject(
                Rejection {
                    code: ErrorCode::MessageTooLarge,
                    field: String::new(),
                    message: format!("a message may be at most {} KB", MAX_MESSAGE_BYTES / 1024),
                },
                None,
            );
            continue;
        }
        let mut value: Value = match serde_json::from_str(raw.get()) {
            Ok(v) => v,
            Err(e) => {
                reject(
                    Rejection {
                        code: ErrorCode::InvalidJson,
                        field: String::new(),
                        message: e.to_string(),
                    },
                    None,
                );
                continue;
            }
        };
        if let (Some(shared), Some(Value::Object(msg))) = (shared_context, Some(&mut value)) {
            merge_shared_context(msg, shared);
        }
        let message_id = value.get("messageId").and_then(Value::as_str).map(str::to_owned);
        match validate_message(value, None, batch_sent_at, received_at) {
            Ok(mut e) => {
                e.set_trust(trust);
                events.push(e);
                origin.push((index, message_id));
            }
            Err(r) => reject(r, message_id),
        }
    }

    if events.is_empty() && !rejected.is_empty() {
        let body = IngestOut {
            success: false,
            accepted: 0,
            duplicates: 0,
            rejected,
        };
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    count_accepted(&events);
    let outcome = state
        .engine
        .ingest(events)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    // Journeys react to the new events now, not at their next poll.
    state.journeys.poke();
    metrics::counter!("missive_events_duplicate_total").increment(outcome.duplicates as u64);
    metrics::histogram!("missive_ingest_ack_seconds").record(started.elapsed().as_secs_f64());
    for &i in &outcome.erased {
        if let Some((index, message_id)) = origin.get(i) {
            rejected.push(erased(*index, message_id.clone()));
        }
    }
    rejected.sort_by_key(|r| r.index);
    Ok(Json(IngestOut {
        success: true,
        accepted: outcome.stored,
        duplicates: outcome.duplicates,
        rejected,
    })
    .into_response())
}

/// A batch-level `context` applies to every message, under the message's own keys.
fn merge_shared_context(msg: &mut Map<String, Value>, shared: &Map<String, Value>) {
    let ctx = msg.entry("context").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(ctx) = ctx {
        for (k, v) in shared {
            ctx.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}
