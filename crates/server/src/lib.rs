//! The HTTP surface of missive: Segment's tracking API (`/v1/track` … `/v1/batch`), the
//! profile, segment, content, journey, broadcast, privacy and key APIs, tracking links, the
//! preference centre, the console, `/health` and `/metrics`; and the composition root
//! ([`app::App`]) that builds every service a running missive needs.
//!
//! Each module declares its routes in its own `router()`; [`router`] merges them. The `/v1`
//! routes are declared with their OpenAPI description (`openapi`), served at `/openapi.json`
//! and rendered at `/api` (`api_reference`). Handlers
//! are thin: they authenticate (extractors in `auth`), decode and validate the body, call
//! the engine's or the sending side's services and map the result to a response type, with
//! errors from one catalogue ([`ApiError`], codes in `missive_core::ErrorCode`). No SQL, no
//! store access and no business rules live here.

mod api_reference;
pub mod app;
mod audiences;
mod audit;
mod auth;
mod broadcasts;
mod console;
mod content;
mod error;
mod experiments;
mod html;
mod ingest;
mod journeys;
pub mod limits;
mod link_check;
mod messages;
pub mod metrics;
mod models;
pub mod openapi;
mod preferences;
mod privacy;
mod profiles;
mod recommendations;
mod schema;
pub mod screenshots;
mod segments;
mod sources;
mod state;
mod tracking;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use error::ApiError;

pub use state::{AppParts, AppState};

/// The `/v1` routes with their descriptions: the tracking API, and the rest.
fn api_routers() -> (openapi::ApiRouter, openapi::ApiRouter) {
    let rest = openapi::router()
        .merge(profiles::router())
        .merge(privacy::router())
        .merge(audit::router())
        .merge(segments::router())
        .merge(schema::router())
        .merge(content::router())
        .merge(journeys::router())
        .merge(tracking::router())
        .merge(broadcasts::router())
        .merge(experiments::router())
        .merge(webhooks::router())
        .merge(models::router())
        .merge(recommendations::router())
        .merge(sources::router())
        .merge(audiences::router())
        .merge(messages::router());
    (ingest::router(), rest)
}

/// The OpenAPI description of the `/v1` API, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (ingest, rest) = api_routers();
    openapi::finish(ingest.merge(rest).into_openapi())
}

/// The complete router: each module's routes, with the ingest limit on the tracking API, the
/// audit layer on everything a key reaches, then the client address, body limit and metrics.
pub fn router(state: impl Into<AppState>) -> Router {
    let state: AppState = state.into();
    let (ingest, rest) = api_routers();
    let ingest = ingest.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        limits::ingest_limit,
    ));
    let (audited, api) = ingest
        .merge(rest)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::audit_layer,
        ))
        .split_for_parts();
    let reference = openapi::routes(&openapi::finish(api)).unwrap_or_else(|e| {
        // Serializing a document of strings and numbers does not fail; if it ever did, the
        // API still runs without its description.
        tracing::error!(error = %e, "the OpenAPI description could not be rendered");
        Router::new()
    });
    Router::new()
        .merge(audited)
        .merge(reference)
        .merge(preferences::router())
        .merge(console::router(state.clone()))
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        // Compressed bodies are bounded here; decompressed ones by the ingest handlers.
        .layer(DefaultBodyLimit::max(ingest::MAX_RAW_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::client_address,
        ))
        .with_state(state)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn(metrics::track_http))
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let backend = state.engine.backend();
    let unavailable = |store_writes: &str, detail: Option<u64>| {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "unavailable", "store": backend, "store_writes": store_writes,
                "last_write_failure_seconds_ago": detail,
            })),
        )
            .into_response()
    };
    // Reads can work while every write fails (a full disk): the last commit decides. A failure
    // is reported for WRITE_FAILURE_REPORTED_FOR after it happened, unless a commit succeeds.
    if let Some((ago, error)) = state.engine.write_failure()
        && ago < WRITE_FAILURE_REPORTED_FOR
    {
        tracing::warn!(error = %error, "health check: the last store write failed");
        return unavailable("failing", Some(ago.as_secs()));
    }
    match state.auth.workspace().await {
        Ok(_) => {
            let mut body = serde_json::json!({
                "status": "ok",
                "store": backend,
                "store_writes": "ok",
                "uptime_seconds": state.started.elapsed().as_secs(),
            });
            if !state.setup_warnings.is_empty() {
                // The sending set-up still has defaults: say so where operators look.
                body["warnings"] = state
                    .setup_warnings
                    .iter()
                    .map(|w| serde_json::json!({"code": w, "message": w.message()}))
                    .collect();
            }
            axum::Json(body).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check: store unreachable");
            unavailable("unknown", None)
        }
    }
}

/// How long `/health` reports a failed store write when nothing has been written since: long
/// enough for a load balancer to notice, short enough that a node that recovered while taken
/// out of rotation comes back.
const WRITE_FAILURE_REPORTED_FOR: std::time::Duration = std::time::Duration::from_secs(60);
