//! The experiments API: `/v1/experiments` (create, list), `/v1/experiments/{name}` (read,
//! replace a draft, delete a draft), `/v1/experiments/{name}/start|stop|conclude`, and the
//! results: `/v1/experiments/{name}/results` (JSON) and `/v1/experiments/{name}/chart.svg`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use missive_core::ErrorCode;
use missive_experiment::definition::{DefinitionError, Experiment, ExperimentIn};
use missive_experiment::results::Results;
use missive_sending::experiments::{ExperimentError, Transition};
use serde::Deserialize;

use crate::auth::{Marketing, Reports, RequireRole};
use crate::error::{JsonBody, Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa_axum::routes;

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, delete))
        .routes(routes!(start))
        .routes(routes!(stop))
        .routes(routes!(conclude))
        .routes(routes!(results))
        .routes(routes!(chart))
        .routes(routes!(global_holdout))
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
#[utoipa::path(post, path = "/v1/experiments", tag = "experiments", operation_id = "create_experiment", summary = "Create an experiment",
    description = "A new draft, with its plan (sample size, duration) when the body asks for one.",
    request_body = ExperimentIn,
    responses((status = 201, description = "The draft.", body = Experiment), (status = 400, description = "Not the expected JSON, or an invalid definition (`experiment_invalid`, with `field`).", body = ApiError),
        (status = 409, description = "An experiment has that name (`experiment_exists`).", body = ApiError)))]
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
#[utoipa::path(get, path = "/v1/experiments", tag = "experiments", operation_id = "list_experiments", summary = "List the experiments",
    responses((status = 200, description = "Every experiment.", body = Vec<Experiment>)))]
pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<Vec<Experiment>>, ApiError> {
    Ok(Json(state.experiments.list().await?))
}

/// `GET /v1/experiments/{name}`
#[utoipa::path(get, path = "/v1/experiments/{name}", tag = "experiments", operation_id = "get_experiment", summary = "Read an experiment",
    params(("name" = String, Path, description = "The experiment's name.")), responses((status = 200, description = "The experiment.", body = Experiment), (status = 404, description = "No experiment has that name.", body = ApiError)))]
pub async fn get_one(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    Ok(Json(state.experiments.get(&name).await?))
}

/// `PUT /v1/experiments/{name}`: replaces a draft (or creates it).
#[utoipa::path(put, path = "/v1/experiments/{name}", tag = "experiments", operation_id = "put_experiment", summary = "Replace a draft (or create it)",
    params(("name" = String, Path, description = "The experiment's name.")), request_body = ExperimentIn,
    responses((status = 200, description = "The draft.", body = Experiment), (status = 400, description = "Not the expected JSON, or an invalid definition (`experiment_invalid`, with `field`).", body = ApiError), (status = 409, description = "Not possible in the experiment's state (`experiment_state`).", body = ApiError)))]
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
#[utoipa::path(delete, path = "/v1/experiments/{name}", tag = "experiments", operation_id = "delete_experiment", summary = "Delete a draft",
    params(("name" = String, Path, description = "The experiment's name.")), responses((status = 204, description = "Deleted."), (status = 404, description = "No experiment has that name.", body = ApiError), (status = 409, description = "Not possible in the experiment's state (`experiment_state`).", body = ApiError)))]
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
#[utoipa::path(post, path = "/v1/experiments/{name}/start", tag = "experiments", operation_id = "start_experiment", summary = "Start an experiment",
    params(("name" = String, Path, description = "The experiment's name.")), responses((status = 200, description = "Running.", body = Experiment), (status = 404, description = "No experiment has that name.", body = ApiError), (status = 409, description = "Not possible in the experiment's state (`experiment_state`).", body = ApiError)))]
pub async fn start(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    move_to(&state, &name, Transition::Start).await
}

/// `POST /v1/experiments/{name}/stop`
#[utoipa::path(post, path = "/v1/experiments/{name}/stop", tag = "experiments", operation_id = "stop_experiment", summary = "Stop an experiment",
    params(("name" = String, Path, description = "The experiment's name.")), responses((status = 200, description = "Stopped: no one new is assigned.", body = Experiment), (status = 404, description = "No experiment has that name.", body = ApiError), (status = 409, description = "Not possible in the experiment's state (`experiment_state`).", body = ApiError)))]
pub async fn stop(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Experiment>, ApiError> {
    move_to(&state, &name, Transition::Stop).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExperimentConcludeIn)]
pub struct ConcludeIn {
    /// The variant chosen; none for "no difference shown".
    #[serde(default)]
    winner: Option<String>,
}

/// `POST /v1/experiments/{name}/conclude` with `{"winner": "…"}` or `{}`.
#[utoipa::path(post, path = "/v1/experiments/{name}/conclude", tag = "experiments", operation_id = "conclude_experiment", summary = "Conclude an experiment",
    description = "`{\"winner\": \"B\"}`, or `{}` for no difference shown.",
    params(("name" = String, Path, description = "The experiment's name.")), request_body = ConcludeIn,
    responses((status = 200, description = "Concluded.", body = Experiment), (status = 400, description = "Not the expected JSON, or an invalid definition (`experiment_invalid`, with `field`).", body = ApiError), (status = 404, description = "No experiment has that name.", body = ApiError), (status = 409, description = "Not possible in the experiment's state (`experiment_state`).", body = ApiError)))]
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
#[utoipa::path(get, path = "/v1/experiments/{name}/results", tag = "experiments", operation_id = "get_experiment_results", summary = "An experiment's results",
    description = "Every variant's figures, the statistics of the primary metric and the guardrails, the sequential test and a verdict (docs/experiments.md).",
    params(("name" = String, Path, description = "The experiment's name.")), responses((status = 200, description = "The results.", body = Results), (status = 404, description = "No experiment has that name.", body = ApiError)))]
pub async fn results(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Results>, ApiError> {
    Ok(Json(state.experiments.results(&name).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChartQuery {
    /// The variant drawn against control (default: the first other than control).
    #[serde(default)]
    variant: Option<String>,
}

/// `GET /v1/experiments/{name}/chart.svg[?variant=B]`: the cumulative lift with its interval
/// band and the daily exposures, as a self-contained SVG.
#[utoipa::path(get, path = "/v1/experiments/{name}/chart.svg", tag = "experiments", operation_id = "get_experiment_chart", summary = "An experiment's lift chart",
    description = "The cumulative lift of a variant against control with its interval band, and the daily exposures, as a self-contained SVG.",
    params(("name" = String, Path, description = "The experiment's name."), ChartQuery),
    responses((status = 200, description = "The chart.", content_type = "image/svg+xml", body = String),
        (status = 400, description = "A parameter is not valid, or names no variant.", body = ApiError), (status = 404, description = "No experiment has that name.", body = ApiError)))]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HoldoutQuery {
    /// Orders of the last this many days count (default 30; 1 to 3,650).
    #[serde(default = "thirty")]
    #[param(required = false, minimum = 1, maximum = 3650)]
    days: u32,
}

fn thirty() -> u32 {
    30
}

/// `GET /v1/global-holdout[?days=30]`: people who consent to marketing, in the global holdout
/// against the rest, by whether they ordered in the last `days` days and what they spent.
#[utoipa::path(get, path = "/v1/global-holdout", tag = "experiments", operation_id = "get_global_holdout", summary = "The global holdout against everyone else",
    description = "People who consent to marketing, in the global holdout against the rest: whether they ordered in the last `days` days and what they spent.",
    params(HoldoutQuery),
    responses((status = 200, description = "The comparison.", body = missive_sending::experiments::HoldoutResults),
        (status = 400, description = "`days` is not 1 to 3,650.", body = ApiError)))]
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
