//! The HTTP surface of missive: Segment's tracking API (`/v1/track` … `/v1/batch`), the
//! profile API, `/health` and `/metrics`.
//!
//! Handlers are thin: they authenticate (extractors in [`auth`]), decode and validate the
//! body, call one engine function and map the result to a response type. No SQL and no
//! business rules live here.

mod audit;
mod auth;
mod broadcasts;
mod console;
mod content;
mod error;
mod html;
mod ingest;
mod journeys;
pub mod limits;
pub mod metrics;
mod preferences;
mod privacy;
mod profiles;
mod segments;
mod state;
mod tracking;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
pub use state::AppState;

/// The complete router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/track", post(ingest::single::<{ ingest::TRACK }>))
        .route("/v1/identify", post(ingest::single::<{ ingest::IDENTIFY }>))
        .route("/v1/page", post(ingest::single::<{ ingest::PAGE }>))
        .route("/v1/screen", post(ingest::single::<{ ingest::SCREEN }>))
        .route("/v1/group", post(ingest::single::<{ ingest::GROUP }>))
        .route("/v1/alias", post(ingest::single::<{ ingest::ALIAS }>))
        .route("/v1/batch", post(ingest::batch))
        .route("/v1/import", post(ingest::batch))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::ingest_limit,
        ))
        .route(
            "/v1/profiles/{key}",
            get(profiles::get_profile).delete(privacy::erase),
        )
        .route(
            "/v1/profiles/{key}/consent",
            get(privacy::get_consent).put(privacy::put_consent),
        )
        .route("/v1/profiles/{key}/export", get(privacy::export))
        .route("/v1/privacy/retention/run", post(privacy::run_retention))
        .route("/v1/analytics/profiles", get(privacy::analytics_profiles))
        .route("/v1/keys", get(privacy::list_keys).post(privacy::create_key))
        .route("/v1/keys/{id}", axum::routing::delete(privacy::revoke_key))
        .route("/v1/audit", get(audit::query))
        .route("/v1/profiles/{key}/versions", get(profiles::get_versions))
        .route("/v1/profiles/{key}/events", get(profiles::get_events))
        .route("/v1/segments", post(segments::save).get(segments::list))
        .route("/v1/segments/preview", post(segments::preview_segment))
        .route(
            "/v1/segments/{name}",
            axum::routing::delete(segments::delete).get(segments::get_one),
        )
        .route("/v1/segments/{name}/members", get(segments::members))
        .route("/v1/profiles/{key}/segments", get(profiles::get_segments))
        .route("/v1/templates", get(content::list_templates))
        .route("/v1/templates/lint", post(content::lint_template))
        .route(
            "/v1/templates/{name}",
            get(content::get_template)
                .put(content::put_template)
                .delete(content::delete_template),
        )
        .route("/v1/templates/{name}/preview", post(content::preview_template))
        .route("/v1/blocks", get(content::list_blocks))
        .route("/v1/blocks/matrix", get(content::block_matrix))
        .route(
            "/v1/blocks/{name}",
            get(content::get_block)
                .put(content::put_block)
                .delete(content::delete_block),
        )
        .route(
            "/v1/catalog/products",
            get(content::list_products).post(content::put_products),
        )
        .route(
            "/v1/catalog/products/{id}",
            get(content::get_product).delete(content::delete_product),
        )
        .route("/v1/journeys", get(journeys::list_journeys))
        .route("/v1/journeys/run", post(journeys::run_journeys))
        .route(
            "/v1/journeys/{name}",
            get(journeys::get_journey)
                .put(journeys::put_journey)
                .delete(journeys::delete_journey),
        )
        .route("/v1/journeys/{name}/instances", get(journeys::journey_instances))
        .route("/v1/messages/{id}", get(tracking::message_report))
        .route("/v1/broadcasts", get(broadcasts::list).post(broadcasts::create))
        .route("/v1/broadcasts/run", post(broadcasts::run))
        .route("/v1/broadcasts/{id}", get(broadcasts::get_one))
        .route("/v1/broadcasts/{id}/pause", post(broadcasts::pause))
        .route("/v1/broadcasts/{id}/resume", post(broadcasts::resume))
        .route("/v1/broadcasts/{id}/cancel", post(broadcasts::cancel))
        .route("/v1/inbound/reports", post(broadcasts::inbound_report))
        .route("/t/c/{token}", get(tracking::click))
        .route("/t/o/{token}", get(tracking::open))
        .route(
            "/u/{token}",
            get(tracking::unsubscribe_page).post(tracking::unsubscribe),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::audit_layer,
        ))
        .route(
            "/preferences/{token}",
            get(preferences::page).post(preferences::update),
        )
        .route("/preferences/{token}/export", get(preferences::export))
        .route("/console", get(console::home))
        .route("/console/login", get(console::login_page).post(console::login))
        .route("/console/logout", post(console::logout))
        .route("/console/audit", get(console::audit_page))
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
    let backend = state.engine.store().backend();
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
    match state.engine.store().access().workspace().await {
        Ok(_) => axum::Json(serde_json::json!({
            "status": "ok",
            "store": backend,
            "store_writes": "ok",
            "uptime_seconds": state.started.elapsed().as_secs(),
        }))
        .into_response(),
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
