//! The content API: templates (`/v1/templates`), content blocks (`/v1/blocks`), the product
//! catalogue (`/v1/catalog/products`), previews for a real profile and lint.

use axum::Json;
use axum::extract::State;
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
use crate::error::{At, JsonBody, Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

/// Templates, blocks and the product catalogue.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(list_templates))
        .routes(routes!(lint_template))
        .routes(routes!(get_template, put_template, delete_template))
        .routes(routes!(preview_template))
        .routes(routes!(test_send))
        .routes(routes!(list_blocks))
        .routes(routes!(block_matrix))
        .routes(routes!(get_block, put_block, delete_block))
        .routes(routes!(list_products, put_products))
        .routes(routes!(get_product, delete_product))
}

/// The saved templates.
#[derive(Serialize, ToSchema)]
#[schema(as = TemplateList)]
pub struct TemplatesOut {
    templates: Vec<DocumentOut>,
}

/// The saved blocks.
#[derive(Serialize, ToSchema)]
#[schema(as = BlockList)]
pub struct BlocksOut {
    blocks: Vec<BlockOut>,
}

/// A page of the catalogue, in id order.
#[derive(Serialize, ToSchema)]
#[schema(as = ProductPage)]
pub struct ProductsOut {
    products: Vec<Product>,
    /// Pass as `after` for the next page; `null` on the last.
    next_after: Option<String>,
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DocumentVersion)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TemplateIn)]
pub struct TemplateIn {
    #[serde(flatten)]
    source: TemplateSource,
    /// Default true: marketing e-mails need consent and an unsubscribe link.
    marketing: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TemplateSaved)]
pub struct TemplateSaved {
    name: String,
    version: i64,
    slots: Vec<String>,
    variables: Vec<String>,
}

#[utoipa::path(put, path = "/v1/templates/{name}", tag = "content", operation_id = "put_template", summary = "Create or replace a template",
    description = "A new version; the template is compiled (MJML layout, Liquid) before it is saved.",
    params(("name" = String, Path, description = "The template's name.")), request_body = TemplateIn,
    responses((status = 200, description = "Saved, with its slots and the variables it reads.", body = TemplateSaved), (status = 400, description = "Not the expected JSON, or the template does not compile: invalid MJML, a Liquid syntax error (with `at`), an unknown layout.", body = ApiError)))]
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Template)]
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CompiledTemplate)]
pub struct CompiledOut {
    html: String,
    text: String,
    slots: Vec<String>,
}

#[utoipa::path(get, path = "/v1/templates/{name}", tag = "content", operation_id = "get_template", summary = "Read a template",
    description = "Its source and its compiled HTML and text Liquid templates.",
    params(("name" = String, Path, description = "The template's name.")),
    responses((status = 200, description = "The template.", body = TemplateOut), (status = 404, description = "No template has that name.", body = ApiError)))]
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

#[utoipa::path(get, path = "/v1/templates", tag = "content", operation_id = "list_templates", summary = "List the templates",
    responses((status = 200, description = "Every template's name and version.", body = TemplatesOut)))]
pub async fn list_templates(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<TemplatesOut>, ApiError> {
    let docs = state.content.list_templates().await?;
    let out: Vec<DocumentOut> = docs.iter().map(DocumentOut::from).collect();
    Ok(Json(TemplatesOut { templates: out }))
}

#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "content", operation_id = "delete_template", summary = "Delete a template",
    params(("name" = String, Path, description = "The template's name.")),
    responses((status = 204, description = "Deleted."), (status = 404, description = "No template has that name.", body = ApiError)))]
pub async fn delete_template(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.content.delete_template(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TemplatePreviewIn)]
pub struct PreviewIn {
    /// A profile id, `user_id:…`, `email:…`, `anonymous_id:…` or a bare value.
    profile: String,
    /// `event` (default: the profile's latest track event), `experiment` and `now` (an
    /// RFC 3339 time that fixes "now" for reproducible previews).
    #[serde(flatten)]
    options: PreviewOptions,
}

#[utoipa::path(post, path = "/v1/templates/{name}/preview", tag = "content", operation_id = "preview_template", summary = "Render a template for a real profile",
    description = "The e-mail as that person would get it, with the data it used and lint. Audited as a read of personal data.",
    params(("name" = String, Path, description = "The template's name.")), request_body = PreviewIn,
    responses((status = 200, description = "The rendered e-mail.", body = Preview),
        (status = 400, description = "Not the expected JSON, or the template fails to render for this person.", body = ApiError),
        (status = 404, description = "No template has that name, or no profile has that key (`profile_not_found`).", body = ApiError),
        (status = 409, description = "The template needs recommendations and none are trained.", body = ApiError)))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TestSendIn)]
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
#[utoipa::path(post, path = "/v1/templates/{name}/test", tag = "content", operation_id = "test_send_template", summary = "Send a template to yourself",
    description = "A test send to the tester's own address now, bypassing the customer rules (and saying which), never the suppression list.",
    params(("name" = String, Path, description = "The template's name.")), request_body = TestSendIn,
    responses((status = 200, description = "Sent.", body = TestSent),
        (status = 400, description = "Not the expected JSON, a bad address, or the template fails to render.", body = ApiError),
        (status = 404, description = "No template has that name, or no profile has that key.", body = ApiError),
        (status = 409, description = "The address is suppressed, or the person has not consented.", body = ApiError),
        (status = 502, description = "The mail relay refused the message (`relay_refused`).", body = ApiError),
        (status = 503, description = "Delivery is not running (`delivery_off`), or the store is unavailable.", body = ApiError)))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = LintIn)]
pub struct LintIn {
    #[serde(flatten)]
    source: TemplateSource,
    marketing: Option<bool>,
    /// Render for this profile; default: a profile with no data.
    profile: Option<String>,
    #[serde(flatten)]
    options: PreviewOptions,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LintResult)]
pub struct LintOut {
    ok: bool,
    issues: Vec<LintIssue>,
}

/// Lints a template without saving it.
#[utoipa::path(post, path = "/v1/templates/lint", tag = "content", operation_id = "lint_template", summary = "Lint a template without saving it",
    description = "Renders it (for a profile, or for a person with no data) and lists what is wrong or risky: errors block a save, warnings do not.",
    request_body = LintIn,
    responses((status = 200, description = "The issues found.", body = LintOut), (status = 400, description = "Not the expected JSON, or the template does not compile: invalid MJML, a Liquid syntax error (with `at`), an unknown layout.", body = ApiError),
        (status = 404, description = "The profile named does not exist (`profile_not_found`).", body = ApiError)))]
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

#[utoipa::path(put, path = "/v1/blocks/{name}", tag = "content", operation_id = "put_block", summary = "Create or replace a content block",
    description = "A block fills a template's slot for its target (everyone, a segment, an expression or an experiment's variant).",
    params(("name" = String, Path, description = "The block's name.")), request_body = BlockSource,
    responses((status = 200, description = "Saved.", body = DocumentOut),
        (status = 400, description = "Not the expected JSON, an invalid target, or its Liquid does not compile.", body = ApiError)))]
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Block)]
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

#[utoipa::path(get, path = "/v1/blocks", tag = "content", operation_id = "list_blocks", summary = "List the content blocks",
    responses((status = 200, description = "Every block.", body = BlocksOut)))]
pub async fn list_blocks(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<BlocksOut>, ApiError> {
    let blocks = state
        .content
        .list_blocks()
        .await?
        .into_iter()
        .map(block_out)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(BlocksOut { blocks }))
}

#[utoipa::path(get, path = "/v1/blocks/{name}", tag = "content", operation_id = "get_block", summary = "Read a content block",
    params(("name" = String, Path, description = "The block's name.")),
    responses((status = 200, description = "The block.", body = BlockOut), (status = 404, description = "No block has that name.", body = ApiError)))]
pub async fn get_block(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BlockOut>, ApiError> {
    Ok(Json(block_out(state.content.block_document(&name).await?)?))
}

#[utoipa::path(delete, path = "/v1/blocks/{name}", tag = "content", operation_id = "delete_block", summary = "Delete a content block",
    params(("name" = String, Path, description = "The block's name.")),
    responses((status = 204, description = "Deleted."), (status = 404, description = "No block has that name.", body = ApiError)))]
pub async fn delete_block(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.content.delete_block(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MatrixQuery {
    /// The slot whose blocks are shown.
    slot: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = BlockMatrix)]
pub struct MatrixOut {
    slot: String,
    rows: Vec<MatrixRow>,
}

#[utoipa::path(get, path = "/v1/blocks/matrix", tag = "content", operation_id = "block_matrix", summary = "Which block each segment gets in a slot",
    params(MatrixQuery),
    responses((status = 200, description = "One row per case, in priority order.", body = MatrixOut),
        (status = 400, description = "No `slot`, or a parameter is not valid.", body = ApiError)))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = ProductsIn)]
pub enum ProductsIn {
    List(Vec<serde_json::Value>),
    Wrapped { products: Vec<serde_json::Value> },
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProductsSaved)]
pub struct ProductsSaved {
    saved: usize,
    rejected: Vec<RejectedProduct>,
}

/// Most products in one request.
const MAX_PRODUCTS: usize = 10_000;

#[utoipa::path(post, path = "/v1/catalog/products", tag = "catalog", operation_id = "put_products", summary = "Add or replace products",
    description = "A list of products, or `{\"products\": [...]}`; each is checked on its own: the good ones are saved, the others listed.",
    request_body = ProductsIn,
    responses((status = 200, description = "How many were saved, and the rejected ones with their reason.", body = ProductsSaved),
        (status = 400, description = "Not the expected JSON, or more than 10,000 products (`too_many_products`).", body = ApiError)))]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductsQuery {
    /// The `next_after` of the previous page (a product id).
    after: Option<String>,
    /// At most this many (default 100; 1 to 1,000).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/catalog/products", tag = "catalog", operation_id = "list_products", summary = "List the catalogue",
    params(ProductsQuery),
    responses((status = 200, description = "A page of products.", body = ProductsOut)))]
pub async fn list_products(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Query(q): Query<ProductsQuery>,
) -> Result<Json<ProductsOut>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let products = state.content.list_products(q.after, limit).await?;
    let next = (products.len() == limit as usize)
        .then(|| products.last().map(|p| p.id.clone()))
        .flatten();
    Ok(Json(ProductsOut {
        products,
        next_after: next,
    }))
}

#[utoipa::path(get, path = "/v1/catalog/products/{id}", tag = "catalog", operation_id = "get_product", summary = "Read a product",
    params(("id" = String, Path, description = "The product's id.")),
    responses((status = 200, description = "The product.", body = Product), (status = 404, description = "No product has that id.", body = ApiError)))]
pub async fn get_product(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(state.content.product(&id).await?))
}

#[utoipa::path(delete, path = "/v1/catalog/products/{id}", tag = "catalog", operation_id = "delete_product", summary = "Delete a product",
    params(("id" = String, Path, description = "The product's id.")),
    responses((status = 204, description = "Deleted."), (status = 404, description = "No product has that id.", body = ApiError)))]
pub async fn delete_product(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.content.delete_product(&id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
