//! `POST /v1/segments/preview`: how many profiles a segment expression would hold, with a
//! sample, without saving it.

use axum::Json;
use axum::extract::{Path, Query, State};
use missive_core::ErrorCode;
use missive_engine::segments::{PreviewError, SegmentServiceError, delete_segment, save_segment};
use missive_segment::Segment;
use serde::{Deserialize, Serialize};

use crate::auth::{Marketing, ReadPersonal, Reports, RequireRole};
use crate::error::JsonBody;
use crate::{ApiError, AppState};

use axum::Router;
use axum::routing::{get, post};

/// Saved segments, previews and members.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/segments", post(save).get(list))
        .route("/v1/segments/preview", post(preview_segment))
        .route("/v1/segments/{name}", axum::routing::delete(delete).get(get_one))
        .route("/v1/segments/{name}/members", get(members))
}

#[derive(Debug, Deserialize)]
pub struct PreviewIn {
    expression: String,
    /// Profiles to return as a sample (default 10, at most 100).
    sample: Option<usize>,
}

#[derive(Serialize)]
pub struct PreviewOut {
    count: u64,
    scanned: u64,
    sample: Vec<String>,
}

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

#[derive(Debug, Deserialize)]
pub struct SegmentIn {
    name: String,
    expression: String,
}

#[derive(Serialize)]
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

#[derive(Serialize)]
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
pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<Vec<SegmentOut>>, ApiError> {
    let records = state.engine.segments().saved().await?;
    Ok(Json(records.into_iter().map(SegmentOut::from).collect()))
}

/// `DELETE /v1/segments/{name}`
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

#[derive(Debug, Deserialize)]
pub struct MembersParams {
    after: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct MembersOut {
    members: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /v1/segments/{name}/members?after=&limit=`
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
