//! The content API: templates (`/v1/templates`), content blocks (`/v1/blocks`), the product
//! catalogue (`/v1/catalog/products`), previews for a real profile and lint.

use axum::Json;
use axum::extract::{Path, Query, State};
use missive_content::ContentError;
use missive_content::blocks::{BlockSource, MatrixRow};
use missive_content::lint::LintIssue;
use missive_content::recs::Product;
use missive_content::template::TemplateSource;
use missive_core::ErrorCode;
use missive_sending::content::{
    ContentServiceError, Preview, PreviewOptions, RejectedProduct, StoredTemplate,
};
use missive_sending::test_send::{TestSend, TestSendError, TestSent};
use missive_store::DocumentRecord;
use serde::{Deserialize, Serialize};

use crate::auth::{AuditSlot, Marketing, ReadPersonal, Reports, RequireRole};
use crate::error::{At, JsonBody};
use crate::{ApiError, AppState};

use axum::Router;
use axum::routing::{get, post};

/// Templates, blocks and the product catalogue.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/templates", get(list_templates))
        .route("/v1/templates/lint", post(lint_template))
        .route(
            "/v1/templates/{name}",
            get(get_template).put(put_template).delete(delete_template),
        )
        .route("/v1/templates/{name}/preview", post(preview_template))
        .route("/v1/templates/{name}/test", post(test_send))
        .route("/v1/blocks", get(list_blocks))
        .route("/v1/blocks/matrix", get(block_matrix))
        .route(
            "/v1/blocks/{name}",
            get(get_block).put(put_block).delete(delete_block),
        )
        .route("/v1/catalog/products", get(list_products).post(put_products))
        .route(
            "/v1/catalog/products/{id}",
            get(get_product).delete(delete_product),
        )
}

impl From<ContentServiceError> for ApiError {
    fn from(e: ContentServiceError) -> Self {
        match e {
            ContentServiceError::Content(c) => content_error(c),
            ContentServiceError::BlockTarget { error, .. } => ApiError::from(error).with_field("target"),
            ContentServiceError::NotFound { .. } => ApiError::not_found(e.to_string()),
            ContentServiceError::ProfileNotFound(_) => ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                ErrorCode::ProfileNotFound,
                e.to_string(),
            )
            .with_field("profile"),
            ContentServiceError::InvalidName(_) => {
                ApiError::bad_request(ErrorCode::InvalidName, e.to_string())
            }
            ContentServiceError::UnknownSegment(_) => {
                ApiError::bad_request(ErrorCode::SegmentNotFound, e.to_string()).with_field("target")
            }
            ContentServiceError::UnknownVariant { .. } => {
                ApiError::bad_request(ErrorCode::ExperimentInvalid, e.to_string()).with_field("target")
            }
            ContentServiceError::Store(e) => ApiError::from(e),
            ContentServiceError::Corrupt(..) => ApiError::internal(&e),
            ContentServiceError::Engine(e) => ApiError::unavailable(&e),
            ContentServiceError::NotTrained => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                ErrorCode::RecommendationsNotTrained,
                e.to_string(),
            ),
        }
    }
}

fn content_error(e: ContentError) -> ApiError {
    match e {
        ContentError::Mjml(m) => {
            ApiError::bad_request(ErrorCode::MjmlInvalid, format!("invalid MJML: {m}")).with_field("body")
        }
        ContentError::Layout(m) => ApiError::bad_request(ErrorCode::TemplateInvalid, m).with_field("body"),
        ContentError::Invalid(m) => ApiError::bad_request(ErrorCode::InvalidValue, m),
        ContentError::Liquid { part, error } => {
            let code = match error.kind {
                missive_liquid::ErrorKind::Syntax => ErrorCode::LiquidSyntaxError,
                missive_liquid::ErrorKind::Limit => ErrorCode::TemplateLimitExceeded,
                _ => ErrorCode::LiquidRenderError,
            };
            let field = if part.starts_with("block ") {
                "html".to_string()
            } else {
                part.clone()
            };
            let mut err = ApiError::bad_request(code, format!("{part}: {}", error.message)).with_field(field);
            if let (Some(line), Some(column)) = (error.line, error.column) {
                err.at = Some(At { line, column });
            }
            err
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DocumentOut {
    name: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&DocumentRecord> for DocumentOut {
    fn from(d: &DocumentRecord) -> Self {
        DocumentOut {
            name: d.name.clone(),
            version: d.version,
            updated_at: d.updated_at,
        }
    }
}

// --- templates ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct TemplateIn {
    #[serde(flatten)]
    source: TemplateSource,
    /// Default true: marketing e-mails need consent and an unsubscribe link.
    marketing: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct TemplateSaved {
    name: String,
    version: i64,
    slots: Vec<String>,
    variables: Vec<String>,
}

pub async fn put_template(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TemplateIn>,
) -> Result<Json<TemplateSaved>, ApiError> {
    let stored = StoredTemplate {
        source: body.source,
        marketing: body.marketing.unwrap_or(true),
    };
    let now = state.engine.clock().now();
    let version = state.content.save_template(&name, stored, now).await?;
    let (_, compiled, _) = state.content.compiled_template(&name).await?;
    Ok(Json(TemplateSaved {
        name,
        version,
        slots: compiled.slots.clone(),
        variables: compiled.variables().into_iter().collect(),
    }))
}

#[derive(Debug, Serialize)]
pub struct TemplateOut {
    name: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
    marketing: bool,
    #[serde(flatten)]
    source: TemplateSource,
    /// The HTML and text Liquid templates after layout compilation.
    compiled: CompiledOut,
}

#[derive(Debug, Serialize)]
pub struct CompiledOut {
    html: String,
    text: String,
    slots: Vec<String>,
}

pub async fn get_template(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TemplateOut>, ApiError> {
    let (doc, stored) = state.content.template(&name).await?;
    let (_, compiled, _) = state.content.compiled_template(&name).await?;
    Ok(Json(TemplateOut {
        name,
        version: doc.version,
        updated_at: doc.updated_at,
        marketing: stored.marketing,
        source: stored.source,
        compiled: CompiledOut {
            html: compiled.html_source.clone(),
            text: compiled.text_source.clone(),
            slots: compiled.slots.clone(),
        },
    }))
}

pub async fn list_templates(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let docs = state.content.list_templates().await?;
    let out: Vec<DocumentOut> = docs.iter().map(DocumentOut::from).collect();
    Ok(Json(serde_json::json!({ "templates": out })))
}

pub async fn delete_template(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.content.delete_template(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct PreviewIn {
    /// A profile id, `user_id:…`, `email:…`, `anonymous_id:…` or a bare value.
    profile: String,
    /// `event` (default: the profile's latest track event), `experiment` and `now` (an
    /// RFC 3339 time that fixes "now" for reproducible previews).
    #[serde(flatten)]
    options: PreviewOptions,
}

pub async fn preview_template(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PreviewIn>,
) -> Result<Json<Preview>, ApiError> {
    let preview = state
        .content
        .preview(&state.engine, &name, &body.profile, body.options)
        .await?;
    audit.set_target(format!("profile:{}", preview.profile_id));
    audit.set_detail(format!("template:{name}"));
    Ok(Json(preview))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSendIn {
    /// The tester's own address.
    to: String,
    /// Render with this person's data; default: a person with no data.
    profile: Option<String>,
    event: Option<missive_sending::content::PreviewEvent>,
    journey_events: Option<Vec<missive_sending::content::PreviewEvent>>,
}

impl From<TestSendError> for ApiError {
    fn from(e: TestSendError) -> Self {
        use axum::http::StatusCode;
        match e {
            TestSendError::Address(_) => {
                ApiError::bad_request(ErrorCode::InvalidValue, e.to_string()).with_field("to")
            }
            TestSendError::Suppressed(..) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Suppressed, e.to_string())
            }
            TestSendError::CustomerWithoutConsent(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::RecipientNotConsented,
                e.to_string(),
            ),
            TestSendError::ProfileNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ProfileNotFound, e.to_string())
            }
            TestSendError::Content(e) => ApiError::from(e),
            TestSendError::Relay(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::RelayRefused, e.to_string())
            }
            TestSendError::Build(_) => ApiError::internal(&e),
            TestSendError::Store(e) => ApiError::from(e),
            TestSendError::Engine(e) => ApiError::unavailable(&e),
        }
    }
}

/// "Send this template to me now": a test send to the tester's own address, bypassing the
/// customer rules (and saying which), never the suppression list.
pub async fn test_send(
    // Sending is marketing's; rendering a person's data needs the right to read it.
    _: RequireRole<Marketing>,
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TestSendIn>,
) -> Result<Json<TestSent>, ApiError> {
    let Some(sender) = &state.sender else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DeliveryOff,
            "delivery is not running",
        ));
    };
    let sent = sender
        .send_test(TestSend {
            template: name.clone(),
            to: body.to,
            profile: body.profile,
            event: body.event,
            journey_events: body.journey_events,
        })
        .await?;
    if let Some(id) = &sent.profile_id {
        audit.set_target(format!("profile:{id}"));
    }
    audit.set_detail(format!("template:{name}"));
    Ok(Json(sent))
}

#[derive(Debug, Deserialize)]
pub struct LintIn {
    #[serde(flatten)]
    source: TemplateSource,
    marketing: Option<bool>,
    /// Render for this profile; default: a profile with no data.
    profile: Option<String>,
    #[serde(flatten)]
    options: PreviewOptions,
}

#[derive(Debug, Serialize)]
pub struct LintOut {
    ok: bool,
    issues: Vec<LintIssue>,
}

/// Lints a template without saving it.
pub async fn lint_template(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LintIn>,
) -> Result<Json<LintOut>, ApiError> {
    let issues = state
        .content
        .lint(
            &state.engine,
            body.source,
            body.marketing.unwrap_or(true),
            body.profile.as_deref(),
            body.options,
        )
        .await?;
    let ok = !issues
        .iter()
        .any(|i| i.severity == missive_content::lint::Severity::Error);
    Ok(Json(LintOut { ok, issues }))
}

// --- blocks ---------------------------------------------------------------------------------

pub async fn put_block(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<BlockSource>,
) -> Result<Json<DocumentOut>, ApiError> {
    // A target may name what was just ingested: checkpoint first, so the schema knows it.
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let now = state.engine.clock().now();
    let version = state.content.save_block(&name, body, now).await?;
    Ok(Json(DocumentOut {
        name,
        version,
        updated_at: now,
    }))
}

#[derive(Debug, Serialize)]
pub struct BlockOut {
    name: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    source: BlockSource,
}

fn block_out(d: DocumentRecord) -> Result<BlockOut, ApiError> {
    let source: BlockSource = serde_json::from_value(d.body).map_err(|e| ApiError::internal(&e))?;
    Ok(BlockOut {
        name: d.name,
        version: d.version,
        updated_at: d.updated_at,
        source,
    })
}

pub async fn list_blocks(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let blocks = state
        .content
        .list_blocks()
        .await?
        .into_iter()
        .map(block_out)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "blocks": blocks })))
}

pub async fn get_block(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BlockOut>, ApiError> {
    Ok(Json(block_out(state.content.block_document(&name).await?)?))
}

pub async fn delete_block(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.content.delete_block(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct MatrixQuery {
    slot: String,
}

#[derive(Debug, Serialize)]
pub struct MatrixOut {
    slot: String,
    rows: Vec<MatrixRow>,
}

pub async fn block_matrix(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Query(q): Query<MatrixQuery>,
) -> Result<Json<MatrixOut>, ApiError> {
    let now = state.engine.clock().now();
    let rows = state.content.block_matrix(&q.slot, now).await?;
    Ok(Json(MatrixOut { slot: q.slot, rows }))
}

// --- catalogue ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProductsIn {
    List(Vec<serde_json::Value>),
    Wrapped { products: Vec<serde_json::Value> },
}

#[derive(Debug, Serialize)]
pub struct ProductsSaved {
    saved: usize,
    rejected: Vec<RejectedProduct>,
}

/// Most products in one request.
const MAX_PRODUCTS: usize = 10_000;

pub async fn put_products(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ProductsIn>,
) -> Result<Json<ProductsSaved>, ApiError> {
    let products = match body {
        ProductsIn::List(p) | ProductsIn::Wrapped { products: p } => p,
    };
    if products.len() > MAX_PRODUCTS {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyProducts,
            format!("at most {MAX_PRODUCTS} products per request; send them in parts"),
        ));
    }
    let now = state.engine.clock().now();
    let (saved, rejected) = state.content.put_products(products, now).await?;
    Ok(Json(ProductsSaved { saved, rejected }))
}

#[derive(Debug, Deserialize)]
pub struct ProductsQuery {
    after: Option<String>,
    limit: Option<u32>,
}

pub async fn list_products(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Query(q): Query<ProductsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let products = state.content.list_products(q.after, limit).await?;
    let next = (products.len() == limit as usize)
        .then(|| products.last().map(|p| p.id.clone()))
        .flatten();
    Ok(Json(
        serde_json::json!({ "products": products, "next_after": next }),
    ))
}

pub async fn get_product(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(state.content.product(&id).await?))
}

pub async fn delete_product(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.content.delete_product(&id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
