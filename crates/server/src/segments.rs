//! `POST /v1/segments/preview`: how many profiles a segment expression would hold, with a
//! sample, without saving it.

use axum::Json;
use axum::extract::State;
use missive_engine::segments::{PreviewError, infer_schema, preview};
use missive_segment::Segment;
use serde::{Deserialize, Serialize};

use crate::auth::RequireAdmin;
use crate::{ApiError, AppState};

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
    _: RequireAdmin,
    State(state): State<AppState>,
    Json(body): Json<PreviewIn>,
) -> Result<Json<PreviewOut>, ApiError> {
    let sample = body.sample.unwrap_or(10);
    if sample > 100 {
        return Err(ApiError::bad_request("invalid_value", "sample may be at most 100").with_field("sample"));
    }
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let store = &**state.engine.store();
    let schema = infer_schema(store).await?;
    let segment = Segment::compile(&body.expression, &schema)?;
    let now = state.engine.clock().now();
    let p = preview(store, &segment, now, sample, |_| {})
        .await
        .map_err(|e| match e {
            PreviewError::Store(e) => ApiError::from(e),
            e @ PreviewError::ReadsSegments(_) => {
                ApiError::bad_request("segment_not_supported", e.to_string())
            }
        })?;
    Ok(Json(PreviewOut {
        count: p.members,
        scanned: p.scanned,
        sample: p.sample.iter().map(ToString::to_string).collect(),
    }))
}
