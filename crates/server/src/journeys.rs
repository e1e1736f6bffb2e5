//! The journeys API: `/v1/journeys` (definitions) and their instances.

use axum::Json;
use axum::extract::State;
use missive_core::ErrorCode;
use missive_sending::journeys::{DefinitionError, JourneyDef, JourneyError, RunStats};
use serde::{Deserialize, Serialize};

use crate::auth::{Marketing, ReadPersonal, Reports, RequireRole};
use crate::error::{JsonBody, Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

/// Journeys and their instances.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(list_journeys))
        .routes(routes!(run_journeys))
        .routes(routes!(get_journey, put_journey, delete_journey))
        .routes(routes!(journey_instances))
}

/// A journey in the list.
#[derive(Serialize, ToSchema)]
#[schema(as = JourneySummary)]
pub struct JourneyListed {
    name: String,
    version: i64,
    trigger: missive_sending::journeys::Trigger,
}

/// The saved journeys.
#[derive(Serialize, ToSchema)]
#[schema(as = JourneyList)]
pub struct JourneysOut {
    journeys: Vec<JourneyListed>,
}

/// A journey's instances, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = JourneyInstances)]
pub struct InstancesOut {
    instances: Vec<InstanceOut>,
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JourneySaved)]
pub struct JourneySaved {
    name: String,
    version: i64,
}

#[utoipa::path(put, path = "/v1/journeys/{name}", tag = "journeys", operation_id = "put_journey", summary = "Create or replace a journey",
    description = "A new version of the journey (docs/journeys.md); running instances continue on the steps they are at.",
    params(("name" = String, Path, description = "The journey's name.")), request_body = JourneyDef,
    responses((status = 200, description = "Saved.", body = JourneySaved),
        (status = 400, description = "Not the expected JSON, or an invalid definition (`journey_invalid`; a step's condition: a segment error with `field`).", body = ApiError)))]
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Journey)]
pub struct JourneyOut {
    name: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    def: JourneyDef,
}

#[utoipa::path(get, path = "/v1/journeys/{name}", tag = "journeys", operation_id = "get_journey", summary = "Read a journey",
    params(("name" = String, Path, description = "The journey's name.")),
    responses((status = 200, description = "The journey's definition and version.", body = JourneyOut), (status = 404, description = "No journey has that name.", body = ApiError)))]
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

#[utoipa::path(get, path = "/v1/journeys", tag = "journeys", operation_id = "list_journeys", summary = "List the journeys",
    responses((status = 200, description = "Every journey with its trigger.", body = JourneysOut)))]
pub async fn list_journeys(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<JourneysOut>, ApiError> {
    let defs = state.journeys.definitions().await?;
    let journeys = defs
        .iter()
        .map(|d| JourneyListed {
            name: d.name.clone(),
            version: d.version,
            trigger: d.def.trigger.clone(),
        })
        .collect();
    Ok(Json(JourneysOut { journeys }))
}

#[utoipa::path(delete, path = "/v1/journeys/{name}", tag = "journeys", operation_id = "delete_journey", summary = "Delete a journey",
    description = "Its running instances end.",
    params(("name" = String, Path, description = "The journey's name.")),
    responses((status = 204, description = "Deleted."), (status = 404, description = "No journey has that name.", body = ApiError)))]
pub async fn delete_journey(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    state.journeys.delete(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstancesQuery {
    /// At most this many (default 100; 1 to 1,000).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JourneyInstance)]
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

#[utoipa::path(get, path = "/v1/journeys/{name}/instances", tag = "journeys", operation_id = "list_journey_instances", summary = "List a journey's instances",
    description = "Who is where in the journey, and what they wait for.",
    params(("name" = String, Path, description = "The journey's name."), InstancesQuery),
    responses((status = 200, description = "The instances, newest first.", body = InstancesOut), (status = 404, description = "No journey has that name.", body = ApiError)))]
pub async fn journey_instances(
    _: RequireRole<ReadPersonal>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InstancesQuery>,
) -> Result<Json<InstancesOut>, ApiError> {
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
    Ok(Json(InstancesOut { instances: out }))
}

/// Runs the journeys now (events since the last pass, due waits); what the background runner
/// does on its own. For operators and tests driving a manual clock.
#[utoipa::path(post, path = "/v1/journeys/run", tag = "journeys", operation_id = "run_journeys", summary = "Run the journeys now",
    description = "What the background runner does on its own: the events since its last pass, and the waits that are due.",
    responses((status = 200, description = "What the pass did.", body = RunStats)))]
pub async fn run_journeys(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
) -> Result<Json<RunStats>, ApiError> {
    Ok(Json(state.journeys.run_pending().await?))
}
