//! `POST /v1/segments/preview`: how many profiles a segment expression would hold, with a
//! sample, without saving it.

use axum::Json;
use axum::extract::State;
use missive_core::ErrorCode;
use missive_engine::segments::{PreviewError, SegmentServiceError, delete_segment, save_segment};
use missive_segment::Segment;
use serde::{Deserialize, Serialize};

use crate::auth::{Marketing, ReadPersonal, Reports, RequireRole};
use crate::error::{JsonBody, Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

/// Saved segments, previews and members.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(save, list))
        .routes(routes!(preview_segment))
        .routes(routes!(delete, get_one))
        .routes(routes!(members))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SegmentPreviewIn)]
pub struct PreviewIn {
    /// In missive's segment language (docs/segments.md).
    expression: String,
    /// Profiles to return as a sample (default 10, at most 100).
    sample: Option<usize>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SegmentPreview)]
pub struct PreviewOut {
    count: u64,
    scanned: u64,
    sample: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/segments/preview",
    tag = "segments",
    operation_id = "preview_segment",
    summary = "Count who an expression would hold",
    description = "Evaluates an expression over every profile without saving it, with a sample of members.",
    request_body = PreviewIn,
    responses(
        (status = 200, description = "How many profiles match, of how many.", body = PreviewOut),
        (status = 400, description = "Not the expected JSON, or the expression does not parse (`segment_parse_error`, with `at`) or type-check (`segment_type_error`), or names an unknown segment (`segment_dependency_error`).", body = ApiError),
    ),
)]
pub async fn preview_segment(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PreviewIn>,
) -> Result<Json<PreviewOut>, ApiError> {
    let sample = body.sample.unwrap_or(10);
    if sample > 100 {
        return Err(
            ApiError::bad_request(ErrorCode::InvalidValue, "sample may be at most 100").with_field("sample"),
        );
    }
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let segments = state.engine.segments();
    let schema = segments.schema().await?;
    let segment = Segment::compile(&body.expression, &schema)?;
    let now = state.engine.clock().now();
    let p = segments
        .preview(&segment, now, sample, |_| {})
        .await
        .map_err(|e| match e {
            PreviewError::Store(e) => ApiError::from(e),
            e @ PreviewError::UnknownSegment(_) => {
                ApiError::bad_request(ErrorCode::SegmentDependencyError, e.to_string())
            }
        })?;
    Ok(Json(PreviewOut {
        count: p.members,
        scanned: p.scanned,
        sample: p.sample.iter().map(ToString::to_string).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SegmentIn)]
pub struct SegmentIn {
    /// Letters, digits, `_` and `-`.
    name: String,
    /// In missive's segment language (docs/segments.md).
    expression: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SegmentOut)]
pub struct SegmentOut {
    name: String,
    expression: String,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    /// Set when the saved definition no longer compiles (saved by an older version): the
    /// segment is disabled, evaluated for nobody, until it is saved again or deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled: Option<String>,
}

impl From<missive_store::SegmentRecord> for SegmentOut {
    fn from(r: missive_store::SegmentRecord) -> Self {
        let disabled = Segment::compile(&r.expression, &missive_segment::Schema::default())
            .err()
            .map(|e| e.to_string());
        SegmentOut {
            name: r.name,
            expression: r.expression,
            created_at: r.created_at,
            updated_at: r.updated_at,
            disabled,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = SegmentSaved)]
pub struct SavedOut {
    name: String,
    expression: String,
    /// Profiles evaluated by the backfill.
    evaluated: u64,
}

pub(crate) fn service_error(e: SegmentServiceError) -> ApiError {
    match e {
        SegmentServiceError::InvalidName(why) => {
            ApiError::bad_request(ErrorCode::InvalidValue, format!("invalid segment name: {why}"))
                .with_field("name")
        }
        SegmentServiceError::Language(e) => ApiError::from(e),
        SegmentServiceError::Set(e) => {
            ApiError::bad_request(ErrorCode::SegmentDependencyError, e.to_string())
        }
        SegmentServiceError::NotFound(name) => ApiError::not_found(format!("no segment is named {name:?}")),
        e @ SegmentServiceError::InUse { .. } => ApiError::new(
            axum::http::StatusCode::CONFLICT,
            ErrorCode::SegmentInUse,
            e.to_string(),
        ),
        SegmentServiceError::Store(e) => ApiError::from(e),
        SegmentServiceError::Engine(e) => ApiError::unavailable(&e),
    }
}

/// `POST /v1/segments`: creates or replaces a segment and backfills its members.
#[utoipa::path(
    post,
    path = "/v1/segments",
    tag = "segments",
    operation_id = "save_segment",
    summary = "Create or replace a segment",
    description = "Saves the segment and evaluates every profile against it before answering.",
    request_body = SegmentIn,
    responses(
        (status = 201, description = "Saved, with how many profiles were evaluated.", body = SavedOut),
        (status = 400, description = "Not the expected JSON, or the expression does not parse (`segment_parse_error`, with `at`) or type-check (`segment_type_error`), or names an unknown segment (`segment_dependency_error`).", body = ApiError),
    ),
)]
pub async fn save(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SegmentIn>,
) -> Result<(axum::http::StatusCode, Json<SavedOut>), ApiError> {
    let evaluated = save_segment(&state.engine, &body.name, &body.expression, None)
        .await
        .map_err(service_error)?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(SavedOut {
            name: body.name,
            expression: body.expression,
            evaluated,
        }),
    ))
}

/// `GET /v1/segments`
#[utoipa::path(
    get,
    path = "/v1/segments",
    tag = "segments",
    operation_id = "list_segments",
    summary = "List the saved segments",
    responses((status = 200, description = "Every saved segment.", body = Vec<SegmentOut>)),
)]
pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<Vec<SegmentOut>>, ApiError> {
    let records = state.engine.segments().saved().await?;
    Ok(Json(records.into_iter().map(SegmentOut::from).collect()))
}

/// `DELETE /v1/segments/{name}`
#[utoipa::path(
    delete,
    path = "/v1/segments/{name}",
    tag = "segments",
    operation_id = "delete_segment",
    summary = "Delete a segment",
    params(("name" = String, Path, description = "The segment's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No segment has that name.", body = ApiError),
        (status = 409, description = "Another segment, a journey, a block or a broadcast uses it (`segment_in_use`).", body = ApiError),
    ),
)]
pub async fn delete(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    delete_segment(&state.engine, &name)
        .await
        .map_err(service_error)?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersParams {
    /// The `next` of the previous page (a profile id).
    after: Option<String>,
    /// At most this many (default 1,000; 1 to 10,000).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SegmentMembers)]
pub struct MembersOut {
    members: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /v1/segments/{name}/members?after=&limit=`
#[utoipa::path(
    get,
    path = "/v1/segments/{name}/members",
    tag = "segments",
    operation_id = "list_segment_members",
    summary = "List a segment's members",
    description = "Profile ids, in id order.",
    params(("name" = String, Path, description = "The segment's name."), MembersParams),
    responses(
        (status = 200, description = "A page of members; `next` is the `after` of the next page.", body = MembersOut),
        (status = 400, description = "`limit` or `after` is not valid.", body = ApiError),
        (status = 404, description = "No segment has that name.", body = ApiError),
    ),
)]
pub async fn members(
    _: RequireRole<ReadPersonal>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<MembersParams>,
) -> Result<Json<MembersOut>, ApiError> {
    let limit = params.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(
            ApiError::bad_request(ErrorCode::InvalidValue, "limit must be between 1 and 10000")
                .with_field("limit"),
        );
    }
    let after = params
        .after
        .as_deref()
        .map(missive_core::ProfileId::parse)
        .transpose()
        .map_err(|_| {
            ApiError::bad_request(ErrorCode::InvalidValue, "after must be a profile id").with_field("after")
        })?;
    let segments = state.engine.segments();
    if segments.get(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no segment is named {name:?}")));
    }
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let members = segments.members(&name, after, limit).await?;
    let next = (members.len() == limit as usize)
        .then(|| members.last().map(ToString::to_string))
        .flatten();
    Ok(Json(MembersOut {
        members: members.iter().map(ToString::to_string).collect(),
        next,
    }))
}

/// `GET /v1/segments/{name}`
#[utoipa::path(
    get,
    path = "/v1/segments/{name}",
    tag = "segments",
    operation_id = "get_segment",
    summary = "Read a segment",
    params(("name" = String, Path, description = "The segment's name.")),
    responses(
        (status = 200, description = "The segment.", body = SegmentOut),
        (status = 404, description = "No segment has that name.", body = ApiError),
    ),
)]
pub async fn get_one(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SegmentOut>, ApiError> {
    let Some(r) = state.engine.segments().get(&name).await? else {
        return Err(ApiError::not_found(format!("no segment is named {name:?}")));
    };
    Ok(Json(SegmentOut::from(r)))
}
