//! `GET /v1/segments/{name}/export`: a segment's members as CSV for a purpose, or as a
//! customer-match list (`missive_engine::audiences` writes them). The response says how many
//! members were left out (`X-Missive-Left-Out`); the export is audited like every read of
//! personal data.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use missive_core::ErrorCode;
use missive_engine::audiences::{AudienceError, Format, export as write_export};
use serde::Deserialize;

use crate::auth::{ReadPersonal, RequireRole};
use crate::error::{Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router().routes(utoipa_axum::routes!(export))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (for a purpose) or `customer_match` (hashed addresses for an advertising platform).
    #[param(inline)]
    format: Format,
    /// The purpose the export serves (`csv` only; `customer_match` is `advertising`).
    #[serde(default)]
    purpose: Option<String>,
    /// Traits to add as columns (`csv` only), comma-separated.
    #[serde(default)]
    traits: Option<String>,
}

impl From<AudienceError> for ApiError {
    fn from(e: AudienceError) -> Self {
        match e {
            AudienceError::Invalid { field, why } => {
                ApiError::bad_request(ErrorCode::InvalidValue, why).with_field(field)
            }
            e @ AudienceError::UnknownSegment(_) => ApiError::not_found(e.to_string()),
            AudienceError::Segments(e) => crate::segments::service_error(e),
            AudienceError::Store(e) => ApiError::from(e),
            AudienceError::Engine(e) => ApiError::unavailable(&e),
            e @ AudienceError::Csv(_) => ApiError::internal(&e),
        }
    }
}

/// `GET /v1/segments/{name}/export?format=…`
#[utoipa::path(
    get,
    path = "/v1/segments/{name}/export",
    tag = "segments",
    operation_id = "export_segment",
    summary = "Export a segment's members as CSV",
    description = "Only members who consent to the purpose; the `X-Missive-Left-Out` header says how many were left out. Audited as a read of personal data.",
    params(("name" = String, Path, description = "The segment's name."), ExportQuery),
    responses(
        (status = 200, description = "The CSV.", content_type = "text/csv", body = String,
            headers(("x-missive-left-out" = u64, description = "Members left out (no consent, no address)."))),
        (status = 400, description = "A parameter is not valid.", body = ApiError),
        (status = 404, description = "No segment has that name.", body = ApiError),
    ),
)]
pub async fn export(
    _: RequireRole<ReadPersonal>,
    audit: crate::auth::AuditSlot,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let traits: Vec<String> = q
        .traits
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let done = write_export(&state.engine, &name, q.format, q.purpose.as_deref(), &traits).await?;
    // What left: the audit log records the request's meaning, not only its path.
    audit.set_detail(format!(
        "format={:?} purpose={} traits={} written={} left_out={}",
        q.format,
        q.purpose.as_deref().unwrap_or("advertising"),
        traits.join(","),
        done.written,
        done.left_out
    ));
    metrics::counter!("missive_audience_exports_total").increment(1);
    tracing::info!(segment = %name, written = done.written, left_out = done.left_out, "audience exported");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
            (
                header::HeaderName::from_static("x-missive-left-out"),
                done.left_out.to_string(),
            ),
        ],
        done.csv,
    ))
}
