//! The audit layer and `GET /v1/audit`.
//!
//! Every request to the management API (`/v1/…` except the tracking API, whose events are
//! their own record) is written to the append-only audit log once it is answered: who (the
//! key), what (method and route), on what (the profile id, the document's path), and the
//! status, refusals included. A read of personal data whose audit entry cannot be written is
//! not answered: the response becomes a 503.

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use missive_store::{AuditEntry, AuditQuery};
use serde::Deserialize;

use crate::auth::{AuditSlot, Privacy, RequireRole};
use crate::error::Query;
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};

/// Reading the audit log.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router().routes(utoipa_axum::routes!(query))
}

/// Tracking-API routes: not audited per request (the event log is their record).
const INGEST_PATHS: [&str; 8] = [
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
    "/v1/import",
];

pub async fn audit_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    // Sources' deliveries are ingest too: the event log is their record.
    if !path.starts_with("/v1/") || INGEST_PATHS.contains(&path.as_str()) || path.starts_with("/v1/sources/")
    {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    let facts = slot.facts();
    // A profile may be named by its e-mail address in the path: such routes are recorded by
    // their template unless the handler names the profile id.
    let target = facts.target.unwrap_or_else(|| {
        if route.contains("{key}") {
            route.clone()
        } else {
            path.clone()
        }
    });
    let entry = AuditEntry {
        seq: 0,
        at: state.engine.clock().now(),
        actor: facts
            .caller
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |c| c.actor()),
        role: facts.caller.as_ref().map_or("", |c| c.role.as_str()).to_owned(),
        action: format!("{method} {route}"),
        target,
        status: response.status().as_u16(),
        detail: facts.detail.unwrap_or_default(),
    };
    if let Err(e) = state.engine.audit().append(vec![entry]).await {
        if response.status().is_success() {
            return ApiError::unavailable(&format!("audit log not written: {e}")).into_response();
        }
        tracing::error!(error = %e, "audit log not written for a refused request");
    }
    response
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this actor's entries (`key:key_…`).
    actor: Option<String>,
    /// Only entries about this (`profile:prf_…`, a path).
    target: Option<String>,
    /// Only this action (`DELETE /v1/profiles/{key}`).
    action: Option<String>,
    /// The `next` of the previous page.
    before: Option<i64>,
    /// At most this many (default 100; 1 to 1,000).
    limit: Option<u32>,
}

/// A page of the audit log, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page.
    next: Option<i64>,
}

/// `GET /v1/audit?actor=&target=&action=&before=&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    operation_id = "list_audit_entries",
    summary = "Read the audit log",
    description = "Who did what, on what, with which answer; newest first. Needs the privacy permission.",
    params(AuditParams),
    responses((status = 200, description = "A page; pass `next` as `before` for the next one.", body = AuditPage)),
)]
pub async fn query(
    _: RequireRole<Privacy>,
    State(state): State<AppState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .engine
        .audit()
        .entries(AuditQuery {
            before_seq: p.before,
            actor: p.actor,
            target: p.target,
            action: p.action,
            limit,
        })
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage { entries, next }))
}
