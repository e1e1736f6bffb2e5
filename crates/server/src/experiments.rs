//! The experiments API: `/v1/experiments` (create, list), `/v1/experiments/{name}` (read,
//! replace a draft, delete a draft), `/v1/experiments/{name}/start|stop|conclude`, and the
//! results: `/v1/experiments/{name}/results` (JSON) and `/v1/experiments/{name}/chart.svg`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use missive_core::ErrorCode;
use missive_experiment::definition::{DefinitionError, Experiment, ExperimentIn};
use missive_experiment::results::Results;
use missive_sending::experiments::{ExperimentError, Transition};
use serde::Deserialize;

use crate::auth::{Marketing, Reports, RequireRole};
use crate::error::JsonBody;
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/experiments", get(list).post(create))
        .route("/v1/experiments/{name}", get(get_one).put(replace).delete(delete))
        .route("/v1/experiments/{name}/start", post(start))
        .route("/v1/experiments/{name}/stop", post(stop))
        .route("/v1/experiments/{name}/conclude", post(conclude))
        .route("/v1/experiments/{name}/results", get(results))
        .route("/v1/experiments/{name}/chart.svg", get(chart))
        .route("/v1/global-holdout", get(global_holdout))
}

impl From<ExperimentError> for ApiError {
    fn from(e: ExperimentError) -> Self {
        match e {
            ExperimentError::Definition(DefinitionError::Invalid { field, why }) => {
                ApiError::bad_request(ErrorCode::ExperimentInvalid, format!("invalid {field}: {why}"))
                    .with_field(field)
            }
            ExperimentError::Definition(e @ DefinitionError::State { .. }) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::ExperimentState, e.to_string())
            }
            e @ ExperimentError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::ExperimentExists, e.to_string())
            }
            e @ ExperimentError::NameMismatch { .. } => {
                ApiError::bad_request(ErrorCode::ExperimentInvalid, e.to_string()).with_field("name")
            }
            e @ ExperimentError::NotFound(_) => ApiError::not_found(e.to_string()),
            ExperimentError::Store(e) => ApiError::from(e),
            e @ ExperimentError::Corrupt(..) => ApiError::internal(&e),
        }
    }
}

/// `POST /v1/experiments`: a new draft (201), with its plan when the body has one.
pub async fn create(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ExperimentIn>,
) -> Result<(StatusCode, Json<Experiment>), ApiError> {
    let now = state.engine.clock().now();
    Ok((
        StatusCode::CREATED,
        Json(state.experiments.create(body, now).await?),
    ))
}

/// `GET /v1/experiments`
pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<Vec<Experiment>>, ApiError> {
    Ok(Json(state.experiments.list().await?))
}

/// `GET /v1/experiments/{name}`
pub async fn get_one(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    Ok(Json(state.experiments.get(&name).await?))
}

/// `PUT /v1/experiments/{name}`: replaces a draft (or creates it).
pub async fn replace(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ExperimentIn>,
) -> Result<Json<Experiment>, ApiError> {
    let now = state.engine.clock().now();
    Ok(Json(state.experiments.replace(&name, body, now).await?))
}

/// `DELETE /v1/experiments/{name}`: a draft only.
pub async fn delete(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.experiments.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn move_to(state: &AppState, name: &str, t: Transition) -> Result<Json<Experiment>, ApiError> {
    let now = state.engine.clock().now();
    Ok(Json(state.experiments.transition(name, t, now).await?))
}

/// `POST /v1/experiments/{name}/start`
pub async fn start(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    move_to(&state, &name, Transition::Start).await
}

/// `POST /v1/experiments/{name}/stop`
pub async fn stop(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    move_to(&state, &name, Transition::Stop).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcludeIn {
    /// The variant chosen; none for "no difference shown".
    #[serde(default)]
    winner: Option<String>,
}

/// `POST /v1/experiments/{name}/conclude` with `{"winner": "…"}` or `{}`.
pub async fn conclude(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ConcludeIn>,
) -> Result<Json<Experiment>, ApiError> {
    move_to(&state, &name, Transition::Conclude { winner: body.winner }).await
}

/// `GET /v1/experiments/{name}/results`: every variant's figures, the statistics of the primary
/// metric and the guardrails, the sequential test and a verdict (docs/experiments.md).
pub async fn results(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Results>, ApiError> {
    Ok(Json(state.experiments.results(&name).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartQuery {
    /// The variant drawn against control (default: the first other than control).
    #[serde(default)]
    variant: Option<String>,
}

/// `GET /v1/experiments/{name}/chart.svg[?variant=B]`: the cumulative lift with its interval
/// band and the daily exposures, as a self-contained SVG.
pub async fn chart(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ChartQuery>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let svg = state.experiments.chart(&name, q.variant.as_deref()).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            // The chart holds no script, and a browser opening it directly runs none.
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldoutQuery {
    /// Orders of the last this many days count (default 30).
    #[serde(default = "thirty")]
    days: u32,
}

fn thirty() -> u32 {
    30
}

/// `GET /v1/global-holdout[?days=30]`: people who consent to marketing, in the global holdout
/// against the rest, by whether they ordered in the last `days` days and what they spent.
pub async fn global_holdout(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Query(q): Query<HoldoutQuery>,
) -> Result<Json<missive_sending::experiments::HoldoutResults>, ApiError> {
    if !(1..=3650).contains(&q.days) {
        return Err(ApiError::bad_request(ErrorCode::InvalidValue, "days: 1 to 3650").with_field("days"));
    }
    let percent = state
        .sender
        .as_ref()
        .map_or(0.0, |s| s.config().policy.global_holdout_percent);
    let since = state.engine.clock().now() - chrono::TimeDelta::days(i64::from(q.days));
    Ok(Json(state.experiments.global_holdout(percent, since).await?))
}
