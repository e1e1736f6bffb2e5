//! The models API: `/v1/models` (list), `/v1/models/{name}` (the entry and every version, with
//! its validation report as data: folds, holdout, calibration table, importances; delete),
//! `/v1/models/{name}/train` (a new version from the store's profiles),
//! `/v1/models/{name}/activate` and `/v1/models/{name}/deactivate`. See docs/models.md.
//!
//! Training runs while the request waits (minutes on a large store): it reads the store and
//! fits on the blocking pool, off the ingest path.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use missive_core::ErrorCode;
use missive_engine::models::{
    ClusterRequest, ModelEntry, ModelError, ModelVersion, PropensityRequest, RegistryError, Trained,
};
use missive_models::classify::{self, Algorithm, Params, TrainOptions};
use missive_models::features::FeatureSpec;
use serde::{Deserialize, Serialize};

use crate::auth::{Marketing, Reports, RequireRole};
use crate::error::{JsonBody, Path};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(list))
        .routes(routes!(show, delete))
        .routes(routes!(train))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
}

fn invalid(field: &'static str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(ErrorCode::ModelInvalid, format!("invalid {field}: {why}")).with_field(field)
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Registry(RegistryError::NotFound(_) | RegistryError::NoVersion { .. }) => {
                ApiError::not_found(e.to_string())
            }
            ModelError::Registry(RegistryError::InvalidName(_)) => invalid("name", &e),
            ModelError::Registry(r @ RegistryError::Refused { .. }) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::ModelRefused, r.to_string())
            }
            ModelError::Registry(r @ RegistryError::KindMismatch { .. }) => invalid("kind", r),
            ModelError::Label(l) => invalid("label", l),
            e @ ModelError::LabelLeaks(_) => invalid("label", e),
            e @ ModelError::Cutoff { .. } => invalid("cutoff", e),
            ModelError::Limit { field, why } => invalid(field, why),
            e @ ModelError::Busy => ApiError::new(StatusCode::CONFLICT, ErrorCode::ModelBusy, e.to_string()),
            ModelError::Features(f @ missive_models::features::FeatureError::Identifier(_)) => {
                invalid("traits", f)
            }
            e @ ModelError::LabelReadsSegment(_) => invalid("label", e),
            ModelError::Features(f) => invalid("events", f),
            ModelError::Train(t) => ApiError::bad_request(ErrorCode::ModelInvalid, t.to_string()),
            e @ (ModelError::NoRows | ModelError::ClusterAlgorithm) => {
                ApiError::bad_request(ErrorCode::ModelInvalid, e.to_string())
            }
            ModelError::Cluster(c) => ApiError::bad_request(ErrorCode::ModelInvalid, c.to_string()),
            ModelError::Clv(c) => ApiError::bad_request(ErrorCode::ModelInvalid, c.to_string()),
            ModelError::Store(s) => ApiError::from(s),
            ModelError::Registry(RegistryError::Store(s)) => ApiError::from(s),
            e @ (ModelError::Registry(RegistryError::Corrupt(..))
            | ModelError::Engine(_)
            | ModelError::Join(_)) => ApiError::internal(&e),
        }
    }
}

fn models(state: &AppState) -> missive_engine::models::Models {
    missive_engine::models::Models::new(state.engine.store().clone(), state.engine.clone())
}

/// `GET /v1/models`
#[utoipa::path(get, path = "/v1/models", tag = "models", operation_id = "list_models", summary = "List the models",
    responses((status = 200, description = "Every model.", body = Vec<ModelEntry>)))]
pub async fn list(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<Vec<ModelEntry>>, ApiError> {
    Ok(Json(models(&state).list().await?))
}

#[derive(Serialize, ToSchema)]
#[schema(as = ModelWithVersions)]
pub struct Shown {
    model: ModelEntry,
    versions: Vec<VersionOut>,
}

/// A version as the API shows it: everything but the fitted model itself.
#[derive(Serialize, ToSchema)]
#[schema(as = ModelVersionView)]
pub struct VersionOut {
    version: u32,
    trained_at: DateTime<Utc>,
    trained_by: String,
    accepted: bool,
    verdict: String,
    data: missive_engine::models::TrainingData,
    features: Vec<String>,
    params: serde_json::Value,
    metrics: serde_json::Value,
}

fn version_out(v: ModelVersion) -> VersionOut {
    VersionOut {
        version: v.version,
        trained_at: v.trained_at,
        trained_by: v.trained_by,
        accepted: v.accepted,
        verdict: v.verdict,
        data: v.data,
        features: v.features.names(),
        params: v.params,
        metrics: v.metrics,
    }
}

/// `GET /v1/models/{name}`: the entry and the versions, newest first.
#[utoipa::path(get, path = "/v1/models/{name}", tag = "models", operation_id = "get_model", summary = "A model and its versions",
    description = "Every version with its validation report as data (folds, holdout, calibration, importances), newest first.",
    params(("name" = String, Path, description = "The model's name.")), responses((status = 200, description = "The model.", body = Shown), (status = 404, description = "No model has that name (or that version).", body = ApiError)))]
pub async fn show(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Shown>, ApiError> {
    let (model, versions) = models(&state).show(&name).await?;
    Ok(Json(Shown {
        model,
        versions: versions.into_iter().map(version_out).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ModelKindIn)]
enum Kind {
    Propensity,
    Cluster,
    Clv,
    SendTime,
}

/// What to train (docs/models.md); each kind reads the fields it needs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ModelTrainIn)]
pub struct TrainIn {
    kind: Kind,
    /// Propensity: the label in the segment language, evaluated `horizon_days` after the cutoff.
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    cutoff: Option<NaiveDate>,
    #[serde(default = "thirty")]
    horizon_days: i64,
    /// `gbm` (default), `rf` or `logistic`.
    #[serde(default)]
    algorithm: Option<String>,
    /// Fixed hyperparameters (no grid search), as strings or numbers.
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "five")]
    folds: usize,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    traits: Vec<String>,
    /// Active models whose scores are features (a lifetime-value model, say).
    #[serde(default)]
    score_features: Vec<String>,
    /// Clusters: k (default: chosen by silhouette up to `max_k`).
    #[serde(default)]
    k: Option<usize>,
    #[serde(default = "eight")]
    max_k: usize,
    #[serde(default = "budget")]
    max_profiles: usize,
    /// Lifetime value: months of the horizon and the monthly discount.
    #[serde(default = "twelve")]
    months: u32,
    #[serde(default = "one_percent")]
    monthly_discount: f64,
    /// Send time: how many of a person's own opens and clicks count as much as everyone's.
    #[serde(default = "eight_events")]
    strength: f64,
}

fn eight_events() -> f64 {
    8.0
}

fn twelve() -> u32 {
    12
}
fn one_percent() -> f64 {
    0.01
}

fn thirty() -> i64 {
    30
}
fn five() -> usize {
    5
}
fn eight() -> usize {
    8
}
fn budget() -> usize {
    200_000
}

/// `POST /v1/models/{name}/train`: a new version from the store's profiles (201, with the
/// validation report); `accepted: false` says why it may not be activated.
#[utoipa::path(post, path = "/v1/models/{name}/train", tag = "models", operation_id = "train_model", summary = "Train a new version",
    description = "Reads the store's profiles and fits while the request waits (minutes on a large store). `accepted: false` says why the version may not be activated.",
    params(("name" = String, Path, description = "The model's name.")), request_body = TrainIn,
    responses((status = 201, description = "The new version and its validation.", body = Trained),
        (status = 400, description = "Not the expected JSON, or an invalid request (`model_invalid`, with `field`), or no data to train on.", body = ApiError),
        (status = 409, description = "A training is already running (`model_busy`), or the model is of another kind.", body = ApiError)))]
pub async fn train(
    role: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TrainIn>,
) -> Result<(StatusCode, Json<Trained>), ApiError> {
    let now = state.engine.clock().now();
    if !(2..=20).contains(&body.folds) {
        return Err(invalid("folds", "2 to 20"));
    }
    if !(2..=30).contains(&body.max_k) {
        return Err(invalid("max_k", "2 to 30"));
    }
    if !(1..=365).contains(&body.horizon_days) {
        return Err(invalid("horizon_days", "1 to 365"));
    }
    // A propensity label needs its window to have passed: by default the cutoff is that long ago.
    let cutoff = match (body.cutoff, &body.kind) {
        (Some(d), _) => d.and_time(chrono::NaiveTime::MIN).and_utc(),
        (None, Kind::Propensity) => now - chrono::Duration::days(body.horizon_days),
        (None, Kind::Cluster | Kind::Clv | Kind::SendTime) => now,
    };
    let mut features = FeatureSpec::default();
    if !body.events.is_empty() {
        features.events = body.events.clone();
    }
    features.scores = body.score_features.clone();
    let by = format!("api:{}", role.caller.key_id);
    let trained = match body.kind {
        Kind::Propensity => {
            let label = body
                .label
                .clone()
                .ok_or_else(|| invalid("label", "a propensity model needs a label"))?;
            let algorithm = match body.algorithm.as_deref().unwrap_or("gbm") {
                "gbm" => Algorithm::GradientBoosting,
                "rf" => Algorithm::RandomForest,
                "logistic" => Algorithm::Logistic,
                other => {
                    return Err(invalid(
                        "algorithm",
                        format!("`{other}`: use gbm, rf or logistic"),
                    ));
                }
            };
            let settings: Vec<(String, String)> = body
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let params = if settings.is_empty() {
                None
            } else {
                Some(Params::with(algorithm, &settings).map_err(|e| invalid("params", e))?)
            };
            let schema = missive_engine::segments::Segments::new(state.engine.store().clone())
                .schema()
                .await?;
            let req = PropensityRequest {
                name: name.clone(),
                label,
                cutoff,
                horizon: chrono::Duration::days(body.horizon_days),
                features,
                traits: body.traits,
                options: TrainOptions {
                    algorithm,
                    params,
                    folds: body.folds,
                    ..classify::TrainOptions::default()
                },
                max_profiles: body.max_profiles,
                trained_by: by,
            };
            models(&state).train_propensity(req, &schema, now).await?
        }
        Kind::SendTime => {
            models(&state)
                .train_send_time(&name, body.strength, body.max_profiles, by, now)
                .await?
        }
        Kind::Clv => {
            let req = missive_engine::models::ClvRequest {
                name: name.clone(),
                calibration_end: cutoff,
                months: body.months,
                monthly_discount: body.monthly_discount,
                max_profiles: body.max_profiles,
                trained_by: by,
            };
            models(&state).train_clv(req, now).await?
        }
        Kind::Cluster => {
            let req = ClusterRequest {
                name: name.clone(),
                cutoff,
                k: body.k,
                max_k: body.max_k,
                features,
                traits: body.traits,
                max_profiles: body.max_profiles,
                seed: 7,
                trained_by: by,
            };
            models(&state).train_cluster(req, now).await?
        }
    };
    Ok((StatusCode::CREATED, Json(trained)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ModelActivateIn)]
pub struct ActivateIn {
    #[serde(default)]
    version: Option<u32>,
    /// Scored on every profile change (default), or in batch only.
    #[serde(default = "yes")]
    live: bool,
    /// Every profile scored again every this many hours.
    #[serde(default)]
    score_every_hours: Option<u32>,
    /// A new version trained every this many days (activated when validation accepts it).
    #[serde(default)]
    retrain_every_days: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, ToSchema)]
#[schema(as = ModelActivated)]
pub struct Activated {
    model: ModelEntry,
    profiles_scored: u64,
}

/// `POST /v1/models/{name}/activate`: scores every profile with the version before answering.
#[utoipa::path(post, path = "/v1/models/{name}/activate", tag = "models", operation_id = "activate_model", summary = "Activate a version",
    description = "Scores every profile with the version before answering; then live on every change unless `live` is false.",
    params(("name" = String, Path, description = "The model's name.")), request_body = ActivateIn,
    responses((status = 200, description = "Active, with how many profiles were scored.", body = Activated),
        (status = 400, description = "Not the expected JSON.", body = ApiError), (status = 404, description = "No model has that name (or that version).", body = ApiError),
        (status = 409, description = "The version was not accepted by validation (`model_refused`), or a training is running.", body = ApiError)))]
pub async fn activate(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ActivateIn>,
) -> Result<Json<Activated>, ApiError> {
    let now = state.engine.clock().now();
    let schedule = missive_engine::models::Schedule {
        score_every_hours: body.score_every_hours,
        retrain_every_days: body.retrain_every_days,
    };
    let (model, profiles_scored) = models(&state)
        .activate(&name, body.version, body.live, Some(schedule), now)
        .await?;
    Ok(Json(Activated {
        model,
        profiles_scored,
    }))
}

/// `POST /v1/models/{name}/deactivate`
#[utoipa::path(post, path = "/v1/models/{name}/deactivate", tag = "models", operation_id = "deactivate_model", summary = "Deactivate a model",
    params(("name" = String, Path, description = "The model's name.")), responses((status = 200, description = "Inactive: no longer scores.", body = ModelEntry), (status = 404, description = "No model has that name (or that version).", body = ApiError)))]
pub async fn deactivate(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelEntry>, ApiError> {
    let now = state.engine.clock().now();
    Ok(Json(models(&state).deactivate(&name, now).await?))
}

/// `DELETE /v1/models/{name}`: the model and every version (204).
#[utoipa::path(delete, path = "/v1/models/{name}", tag = "models", operation_id = "delete_model", summary = "Delete a model and every version",
    params(("name" = String, Path, description = "The model's name.")), responses((status = 204, description = "Deleted."), (status = 404, description = "No model has that name (or that version).", body = ApiError)))]
pub async fn delete(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    models(&state).delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
