//! `GET /v1/segments/{name}/export`: a segment's members as CSV for a purpose, or as a
//! customer-match list (`missive_engine::audiences` writes them). The response says how many
//! members were left out (`X-Missive-Left-Out`); the export is audited like every read of
//! personal data.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use missive_core::ErrorCode;
use missive_engine::audiences::{AudienceError, Format, export as write_export};
use serde::Deserialize;

use crate::auth::{ReadPersonal, RequireRole};
use crate::{ApiError, AppState};

pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/segments/{name}/export", axum::routing::get(export))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
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
