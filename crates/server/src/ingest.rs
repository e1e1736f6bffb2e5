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

use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa_axum::routes;

use crate::error::RawBody;
use crate::openapi::ApiRouter;

/// Segment's tracking API and bulk import.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(track))
        .routes(routes!(identify))
        .routes(routes!(page))
        .routes(routes!(screen))
        .routes(routes!(group))
        .routes(routes!(alias))
        .routes(routes!(batch))
        .routes(routes!(import))
}

/// One message of Segment's spec (docs/tracking.md): the fields missive reads are listed;
/// any others are kept in the event's body.
pub struct SegmentMessage;

impl utoipa::PartialSchema for SegmentMessage {
    fn schema() -> RefOr<Schema> {
        let string = |d: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some(d))
        };
        let object = |d: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .description(Some(d))
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        };
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .description(Some("A Segment message. In a batch each message says its `type`; the single calls imply it. A user id, an anonymous id (or, for `alias`, a previous id) is required; what fails validation is answered 400 with its code."))
                .property(
                    "type",
                    string("The call: only read in a batch.")
                        .enum_values(Some(["track", "identify", "page", "screen", "group", "alias"])),
                )
                .property("messageId", string("Deduplicates retries: a message id is stored once."))
                .property("userId", string("The person's id in the retailer's systems."))
                .property("anonymousId", string("A device or cookie id."))
                .property("previousId", string("`alias`: the id merged into `userId`."))
                .property("groupId", string("`group`: the account."))
                .property("event", string("`track`: the event's name (`Order Completed`)."))
                .property("name", string("`page` and `screen`: the page's name."))
                .property("properties", object("Free-form properties of the event."))
                .property("traits", object("Free-form traits (`identify`, `group`); also read from `context.traits`."))
                .property("context", object("Segment's context (ip, userAgent, traits, consent …)."))
                .property("timestamp", string("When it happened (ISO-8601); default: when received."))
                .property("sentAt", string("When the client sent it, to correct its clock (ISO-8601)."))
                .property("writeKey", string("The write key, when the request has no `Authorization` header."))
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .build(),
        ))
    }
}
impl utoipa::ToSchema for SegmentMessage {}

/// A batch: `{"batch": [...]}`, with a shared `context` and `sentAt`.
pub struct SegmentBatch;

impl utoipa::PartialSchema for SegmentBatch {
    fn schema() -> RefOr<Schema> {
        let string = |d: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some(d))
        };
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .property(
                    "batch",
                    ArrayBuilder::new()
                        .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "SegmentMessage",
                        )))
                        .description(Some(
                            "The messages, each validated on its own: the good ones are kept.",
                        )),
                )
                .required("batch")
                .property(
                    "sentAt",
                    string("When the client sent the batch (ISO-8601), for every message without its own."),
                )
                .property(
                    "context",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Object))
                        .description(Some("A context every message gets, under its own keys."))
                        .additional_properties(Some(AdditionalProperties::FreeForm(true))),
                )
                .property(
                    "writeKey",
                    string("The write key, when the request has no `Authorization` header."),
                )
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .build(),
        ))
    }
}
impl utoipa::ToSchema for SegmentBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "SegmentMessage".into(),
            <SegmentMessage as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// A refused batch: the request itself was wrong (an error), or every message was (the result,
/// with `accepted: 0` and each message's reason).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Describes the 400 of `/v1/batch`; the handler builds each arm itself.
enum BatchRefused {
    Error(ApiError),
    EveryMessageRejected(IngestOut),
}

macro_rules! single_call {
    ($name:ident, $kind:ident, $path:literal, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "tracking",
            operation_id = stringify!($name),
            summary = $summary,
            description = "Segment's call: one message, durable when answered 200. The body may be gzip-compressed (`Content-Encoding: gzip`); at most 32 KB once decompressed. A message naming a person who was erased is acknowledged and not stored (listed in `rejected` with code `erased`).",
            request_body(content = SegmentMessage, description = "The message."),
            security(("basic" = []), ("bearer" = []), ()),
            responses(
                (status = 200, description = "Stored (or a duplicate of a stored message).", body = IngestOut),
                (status = 400, description = "Not JSON, or not a valid message: the code says why.", body = ApiError),
                (status = 401, description = "No write key (neither `Authorization` nor `writeKey`), or an unknown one.", body = ApiError),
                (status = 413, description = "More than 32 KB once decompressed.", body = ApiError),
                (status = 415, description = "A `Content-Encoding` other than gzip.", body = ApiError),
            ),
        )]
        pub async fn $name(
            state: State<AppState>,
            auth: IngestAuth,
            headers: HeaderMap,
            body: RawBody,
        ) -> Result<Response, ApiError> {
            single::<$kind>(state, auth, headers, body.0).await
        }
    };
}

single_call!(track, TRACK, "/v1/track", "Record an event");
single_call!(
    identify,
    IDENTIFY,
    "/v1/identify",
    "Identify a person and set traits"
);
single_call!(page, PAGE, "/v1/page", "Record a page view");
single_call!(screen, SCREEN, "/v1/screen", "Record a screen view");
single_call!(group, GROUP, "/v1/group", "Put a person in a group");
single_call!(alias, ALIAS, "/v1/alias", "Merge two identities");

const BATCH_DESCRIPTION: &str = "Many messages in one request, each validated on its own: the good ones are stored, the others listed in `rejected` with their reason. The body may be gzip-compressed; at most 500 KB once decompressed, 32 KB per message.";

#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "tracking",
    operation_id = "batch",
    summary = "Record a batch of messages",
    description = BATCH_DESCRIPTION,
    request_body(content = SegmentBatch),
    security(("basic" = []), ("bearer" = []), ()),
    responses(
        (status = 200, description = "The good messages are durable; `rejected` lists the others.", body = IngestOut),
        (status = 400, description = "The request is wrong (not JSON, no `batch`), or every message was rejected.", body = BatchRefused),
        (status = 401, description = "No write key (neither `Authorization` nor `writeKey`), or an unknown one.", body = ApiError),
        (status = 413, description = "More than 500 KB once decompressed.", body = ApiError),
        (status = 415, description = "A `Content-Encoding` other than gzip.", body = ApiError),
    ),
)]
pub async fn batch(
    state: State<AppState>,
    auth: IngestAuth,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    receive_batch(state, auth, headers, body.0).await
}

/// Segment's alias of `/v1/batch`.
#[utoipa::path(
    post,
    path = "/v1/import",
    tag = "tracking",
    operation_id = "import",
    summary = "Record a batch of messages (Segment's alias of /v1/batch)",
    description = BATCH_DESCRIPTION,
    request_body(content = SegmentBatch),
    security(("basic" = []), ("bearer" = []), ()),
    responses(
        (status = 200, description = "The good messages are durable; `rejected` lists the others.", body = IngestOut),
        (status = 400, description = "The request is wrong (not JSON, no `batch`), or every message was rejected.", body = BatchRefused),
        (status = 401, description = "No write key (neither `Authorization` nor `writeKey`), or an unknown one.", body = ApiError),
        (status = 413, description = "More than 500 KB once decompressed.", body = ApiError),
        (status = 415, description = "A `Content-Encoding` other than gzip.", body = ApiError),
    ),
)]
pub async fn import(
    state: State<AppState>,
    auth: IngestAuth,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    receive_batch(state, auth, headers, body.0).await
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

/// What became of a request's messages.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = IngestResult)]
pub struct IngestOut {
    success: bool,
    accepted: usize,
    duplicates: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<RejectedOut>,
}

/// A message that was not stored, and why.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RejectedMessage)]
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
async fn single<const K: u8>(
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
async fn receive_batch(
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
