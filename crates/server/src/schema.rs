//! The workspace's schema: `GET /v1/schema` lists the traits, events and event properties
//! known from data, declarations and Segment's spec; `PUT` and `DELETE` under
//! `/v1/schema/traits/{name}`, `/v1/schema/events/{event}` and
//! `/v1/schema/events/{event}/properties/{name}` declare a field before data carries it, or
//! withdraw the declaration (docs/segments.md, "The schema").

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use missive_core::ErrorCode;
use missive_core::schema::{FieldKey, FieldKind, FieldType, SchemaField};
use missive_engine::schema::DeclareError;
use serde::{Deserialize, Serialize};

use crate::auth::{Marketing, Reports, RequireRole};
use crate::error::{Path, RawBody};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(show))
        .routes(routes!(declare_trait, undeclare_trait))
        .routes(routes!(declare_event, undeclare_event))
        .routes(routes!(declare_property, undeclare_property))
}

/// A trait or property, with the type segments check it as (`null`: any).
#[derive(Serialize, ToSchema)]
#[schema(as = SchemaFieldView)]
struct FieldOut {
    #[serde(flatten)]
    field: SchemaField,
    #[serde(rename = "type")]
    ty: Option<FieldType>,
}

impl From<SchemaField> for FieldOut {
    fn from(field: SchemaField) -> Self {
        FieldOut {
            ty: field.check_type(),
            field,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = SchemaEventView)]
struct EventOut {
    #[serde(flatten)]
    field: SchemaField,
    properties: Vec<FieldOut>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = WorkspaceSchema)]
pub struct SchemaOut {
    traits: Vec<FieldOut>,
    events: Vec<EventOut>,
}

/// `GET /v1/schema`: every trait and event, each event with its properties.
#[utoipa::path(
    get,
    path = "/v1/schema",
    tag = "schema",
    operation_id = "get_schema",
    summary = "List the workspace's traits, events and properties",
    description = "Every field known from data, declarations and Segment's spec, with the type segments check it as.",
    responses((status = 200, description = "The schema.", body = SchemaOut)),
)]
pub async fn show(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<SchemaOut>, ApiError> {
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let fields = missive_engine::schema::fields(state.engine.store()).await?;
    let mut out = SchemaOut {
        traits: Vec::new(),
        events: Vec::new(),
    };
    let mut properties: std::collections::BTreeMap<String, Vec<FieldOut>> = Default::default();
    for f in fields {
        match f.kind {
            FieldKind::Trait => out.traits.push(f.into()),
            FieldKind::Event => out.events.push(EventOut {
                field: f,
                properties: Vec::new(),
            }),
            FieldKind::Property => properties.entry(f.event.clone()).or_default().push(f.into()),
        }
    }
    for e in &mut out.events {
        e.properties = properties.remove(&e.field.name).unwrap_or_default();
    }
    Ok(Json(out))
}

/// The body of a declaration: `{"type": "number"}`, or `{}` (or none) for any type.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FieldDeclaration)]
struct DeclareIn {
    #[serde(rename = "type")]
    ty: Option<FieldType>,
}

fn declare_body(body: &Bytes) -> Result<DeclareIn, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeclareIn::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("{e}; send {{\"type\": \"string\"}} (or number, bool, time, list, object), or {{}} for any type"),
        )
        .with_field("type")
    })
}

#[derive(Serialize, ToSchema)]
#[schema(as = FieldDeclared)]
pub struct DeclaredOut {
    kind: FieldKind,
    #[serde(skip_serializing_if = "String::is_empty")]
    event: String,
    name: String,
    #[serde(rename = "type")]
    ty: Option<FieldType>,
    /// Whether it was declared before (this replaced that declaration).
    replaced: bool,
}

async fn declare(state: &AppState, key: FieldKey, body: &Bytes) -> Result<Json<DeclaredOut>, ApiError> {
    let DeclareIn { ty } = declare_body(body)?;
    let at = state.engine.clock().now();
    let replaced = missive_engine::schema::declare(state.engine.store(), key.clone(), ty, at)
        .await
        .map_err(|e| match e {
            e @ DeclareError::Invalid { field, .. } => {
                ApiError::bad_request(ErrorCode::InvalidValue, e.to_string()).with_field(field)
            }
            DeclareError::Store(e) => ApiError::from(e),
        })?;
    Ok(Json(DeclaredOut {
        kind: key.kind,
        event: key.event,
        name: key.name,
        ty,
        replaced,
    }))
}

async fn undeclare(state: &AppState, key: FieldKey) -> Result<StatusCode, ApiError> {
    let what = match key.kind {
        FieldKind::Trait => format!("trait {:?}", key.name),
        FieldKind::Event => format!("event {:?}", key.name),
        FieldKind::Property => format!("property {:?} of event {:?}", key.name, key.event),
    };
    if missive_engine::schema::undeclare(state.engine.store(), key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("{what} is not declared")))
    }
}

/// `PUT /v1/schema/traits/{name}`
#[utoipa::path(
    put,
    path = "/v1/schema/traits/{name}",
    tag = "schema",
    operation_id = "declare_trait",
    summary = "Declare a trait",
    description = "Declares a trait (and its type) before data carries it, so that segments can name it.",
    params(("name" = String, Path, description = "The trait.")),
    request_body(content = Option<DeclareIn>, description = "`{\"type\": \"number\"}`, or `{}` (or no body) for any type."),
    responses(
        (status = 200, description = "Declared.", body = DeclaredOut),
        (status = 400, description = "Not a declaration (`invalid_body`), or an invalid name (`invalid_value`).", body = ApiError),
    ),
)]
pub async fn declare_trait(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<DeclaredOut>, ApiError> {
    declare(&state, FieldKey::trait_(name), &body).await
}

/// `DELETE /v1/schema/traits/{name}`
#[utoipa::path(
    delete,
    path = "/v1/schema/traits/{name}",
    tag = "schema",
    operation_id = "undeclare_trait",
    summary = "Withdraw a trait declaration",
    description = "Withdraws the declaration.",
    params(("name" = String, Path, description = "The trait.")),
    responses(
        (status = 204, description = "The declaration is withdrawn (what data shows stays)."),
        (status = 404, description = "Not declared.", body = ApiError),
    ),
)]
pub async fn undeclare_trait(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    undeclare(&state, FieldKey::trait_(name)).await
}

/// `PUT /v1/schema/events/{event}`
#[utoipa::path(
    put,
    path = "/v1/schema/events/{event}",
    tag = "schema",
    operation_id = "declare_event",
    summary = "Declare an event",
    description = "Declares a track event before data carries it.",
    params(("event" = String, Path, description = "The track event's name.")),
    request_body(content = Option<DeclareIn>, description = "`{\"type\": \"number\"}`, or `{}` (or no body) for any type."),
    responses(
        (status = 200, description = "Declared.", body = DeclaredOut),
        (status = 400, description = "Not a declaration (`invalid_body`), or an invalid name (`invalid_value`).", body = ApiError),
    ),
)]
pub async fn declare_event(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(event): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<DeclaredOut>, ApiError> {
    declare(&state, FieldKey::event(event), &body).await
}

/// `DELETE /v1/schema/events/{event}`
#[utoipa::path(
    delete,
    path = "/v1/schema/events/{event}",
    tag = "schema",
    operation_id = "undeclare_event",
    summary = "Withdraw an event declaration",
    description = "Withdraws the declaration.",
    params(("event" = String, Path, description = "The track event's name.")),
    responses(
        (status = 204, description = "The declaration is withdrawn (what data shows stays)."),
        (status = 404, description = "Not declared.", body = ApiError),
    ),
)]
pub async fn undeclare_event(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(event): Path<String>,
) -> Result<StatusCode, ApiError> {
    undeclare(&state, FieldKey::event(event)).await
}

/// `PUT /v1/schema/events/{event}/properties/{name}`
#[utoipa::path(
    put,
    path = "/v1/schema/events/{event}/properties/{name}",
    tag = "schema",
    operation_id = "declare_property",
    summary = "Declare an event property",
    description = "Declares a property of a track event (and its type) before data carries it.",
    params(("event" = String, Path, description = "The track event's name."), ("name" = String, Path, description = "The property (a path such as `items.price`).")),
    request_body(content = Option<DeclareIn>, description = "`{\"type\": \"number\"}`, or `{}` (or no body) for any type."),
    responses(
        (status = 200, description = "Declared.", body = DeclaredOut),
        (status = 400, description = "Not a declaration (`invalid_body`), or an invalid name (`invalid_value`).", body = ApiError),
    ),
)]
pub async fn declare_property(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path((event, name)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<DeclaredOut>, ApiError> {
    declare(&state, FieldKey::property(event, name), &body).await
}

/// `DELETE /v1/schema/events/{event}/properties/{name}`
#[utoipa::path(
    delete,
    path = "/v1/schema/events/{event}/properties/{name}",
    tag = "schema",
    operation_id = "undeclare_property",
    summary = "Withdraw a property declaration",
    description = "Withdraws the declaration.",
    params(("event" = String, Path, description = "The track event's name."), ("name" = String, Path, description = "The property (a path such as `items.price`).")),
    responses(
        (status = 204, description = "The declaration is withdrawn (what data shows stays)."),
        (status = 404, description = "Not declared.", body = ApiError),
    ),
)]
pub async fn undeclare_property(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path((event, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    undeclare(&state, FieldKey::property(event, name)).await
}
