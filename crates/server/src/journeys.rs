//! The journeys API: `/v1/journeys` (definitions) and their instances.

use axum::Json;
use axum::extract::{Path, Query, State};
use missive_core::ErrorCode;
use missive_sending::journeys::{DefinitionError, JourneyDef, JourneyError, RunStats};
use serde::{Deserialize, Serialize};

use crate::auth::{Marketing, ReadPersonal, Reports, RequireRole};
use crate::error::JsonBody;
use crate::{ApiError, AppState};

use axum::Router;
use axum::routing::{get, post};

/// Journeys and their instances.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys", get(list_journeys))
        .route("/v1/journeys/run", post(run_journeys))
        .route(
            "/v1/journeys/{name}",
            get(get_journey).put(put_journey).delete(delete_journey),
        )
        .route("/v1/journeys/{name}/instances", get(journey_instances))
}

impl From<JourneyError> for ApiError {
    fn from(e: JourneyError) -> Self {
        match e {
            JourneyError::Definition(DefinitionError::Invalid(m)) => {
                ApiError::bad_request(ErrorCode::JourneyInvalid, m)
            }
            JourneyError::Definition(DefinitionError::Condition { step, error }) => {
                ApiError::from(error).with_field(format!("steps.{step}.condition"))
            }
            JourneyError::NotFound(_) => ApiError::not_found(e.to_string()),
            JourneyError::Store(e) => ApiError::from(e),
            JourneyError::Engine(e) => ApiError::unavailable(&e),
            JourneyError::Corrupt(..) => ApiError::internal(&e),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct JourneySaved {
    name: String,
    version: i64,
}

pub async fn put_journey(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(def): JsonBody<JourneyDef>,
) -> Result<Json<JourneySaved>, ApiError> {
    state
        .privacy_config
        .check_topic(def.topic.as_deref())
        .map_err(|m| ApiError::bad_request(ErrorCode::JourneyInvalid, m).with_field("topic"))?;
    let version = state
        .journeys
        .save(&name, def, state.engine.clock().now())
        .await?;
    Ok(Json(JourneySaved { name, version }))
}

#[derive(Debug, Serialize)]
pub struct JourneyOut {
    name: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    def: JourneyDef,
}

pub async fn get_journey(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JourneyOut>, ApiError> {
    let (doc, def) = state.journeys.get(&name).await?;
    Ok(Json(JourneyOut {
        name,
        version: doc.version,
        updated_at: doc.updated_at,
        def,
    }))
}

pub async fn list_journeys(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let defs = state.journeys.definitions().await?;
    let out: Vec<serde_json::Value> = defs
        .iter()
        .map(|d| serde_json::json!({"name": d.name, "version": d.version, "trigger": d.def.trigger}))
        .collect();
    Ok(Json(serde_json::json!({ "journeys": out })))
}

pub async fn delete_journey(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.journeys.delete(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct InstancesQuery {
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct InstanceOut {
    id: String,
    profile_id: String,
    key: String,
    step: String,
    status: &'static str,
    wake_at: Option<chrono::DateTime<chrono::Utc>>,
    waiting_for: Option<String>,
    entered_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

pub async fn journey_instances(
    _: RequireRole<ReadPersonal>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InstancesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.journeys.get(&name).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let rows = state.journeys.instances(&name, limit).await?;
    let out: Vec<InstanceOut> = rows
        .into_iter()
        .map(|i| InstanceOut {
            id: i.id,
            profile_id: i.profile_id.to_string(),
            key: i.key,
            step: i.step,
            status: i.status.as_str(),
            wake_at: i.wake_at,
            waiting_for: i.waiting_for,
            entered_at: i.entered_at,
            updated_at: i.updated_at,
        })
        .collect();
    Ok(Json(serde_json::json!({ "instances": out })))
}

/// Runs the journeys now (events since the last pass, due waits); what the background runner
/// does on its own. For operators and tests driving a manual clock.
pub async fn run_journeys(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
) -> Result<Json<RunStats>, ApiError> {
    Ok(Json(state.journeys.run_pending().await?))
}
