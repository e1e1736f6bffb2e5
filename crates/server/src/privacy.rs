//! Consent, data-subject rights, pseudonymized analytics and API keys:
//!
//! - `GET|PUT /v1/profiles/{key}/consent`: consent per purpose with its evidence;
//! - `GET /v1/profiles/{key}/export`: everything about a person, as JSON;
//! - `DELETE /v1/profiles/{key}`: erasure;
//! - `POST /v1/privacy/retention/run`: purge events past retention now;
//! - `GET /v1/analytics/profiles`: profiles with pseudonyms instead of identities and
//!   without personal traits;
//! - `POST|GET /v1/keys`, `DELETE /v1/keys/{id}`: API keys.

use missive_core::ErrorCode;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use missive_core::{ApiKeyId, ProfileId, Purpose};
use missive_engine::privacy::{ConsentUpdate, PrivacyError};
use missive_engine::profiles::ProfileKey;
use missive_store::Role;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Administer, AuditSlot, Privacy, ReadPersonal, Reports, RequireRole};
use crate::error::JsonBody;
use crate::profiles::{consent_out, resolve};
use crate::{ApiError, AppState};

use axum::Router;
use axum::routing::{delete, get, post};

/// Consent, exports, retention, pseudonymous analytics and API keys.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/profiles/{key}/consent", get(get_consent).put(put_consent))
        .route("/v1/profiles/{key}/export", get(export))
        .route("/v1/privacy/retention/run", post(run_retention))
        .route("/v1/analytics/profiles", get(analytics_profiles))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
}

impl From<PrivacyError> for ApiError {
    fn from(e: PrivacyError) -> Self {
        match e {
            PrivacyError::NotFound => {
                ApiError::not_found("no profile has that id, user id, anonymous id or e-mail address")
            }
            PrivacyError::InvalidConsent(m) => ApiError::bad_request(ErrorCode::InvalidConsent, m),
            PrivacyError::Store(e) => e.into(),
            PrivacyError::Engine(e) => ApiError::unavailable(&e),
        }
    }
}

pub async fn get_consent(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = resolve(&state, &key, &audit).await?;
    let p = state
        .engine
        .profiles()
        .load(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile not found"))?;
    Ok(Json(json!({"profile_id": id, "consent": consent_out(&p)})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentIn {
    /// `{"email_marketing": true, "profiling": false}`.
    purposes: BTreeMap<String, bool>,
    /// Where the consent was collected (default `api`).
    source: Option<String>,
    policy_version: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Idempotency: the same id is recorded once.
    message_id: Option<String>,
}

pub async fn put_consent(
    RequireRole { caller, .. }: RequireRole<Privacy>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<ConsentIn>,
) -> Result<Json<Value>, ApiError> {
    let id = resolve(&state, &key, &audit).await?;
    let mut purposes = Vec::with_capacity(body.purposes.len());
    for (name, granted) in &body.purposes {
        let p = Purpose::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidConsent,
                format!(
                    "unknown consent purpose {name:?}: use one of {}",
                    Purpose::ALL.map(Purpose::as_str).join(", ")
                ),
            )
            .with_field(format!("purposes.{name}"))
        })?;
        purposes.push((p, *granted));
    }
    audit.set_detail(
        body.purposes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let update = ConsentUpdate {
        purposes,
        source: body.source.unwrap_or_else(|| format!("api:{}", caller.key_id)),
        policy_version: body.policy_version,
        ip: body.ip,
        user_agent: body.user_agent,
        message_id: body.message_id,
        traits: Default::default(),
    };
    let p = state
        .privacy
        .set_consent(&ProfileKey::Id(id.clone()), update)
        .await?;
    Ok(Json(json!({"profile_id": id, "consent": consent_out(&p)})))
}

pub async fn export(
    _: RequireRole<Privacy>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &key, &audit).await?;
    let doc = state.privacy.export(&ProfileKey::Id(id.clone())).await?;
    Ok((
        [(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"missive-export-{id}.json\""),
        )],
        Json(doc),
    )
        .into_response())
}

pub async fn erase(
    _: RequireRole<Privacy>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = resolve(&state, &key, &audit).await?;
    let report = state.privacy.erase(&ProfileKey::Id(id)).await?;
    audit.set_detail(format!(
        "{} profiles, {} events, {} versions, {} messages",
        report.profiles.len(),
        report.deleted.events,
        report.deleted.versions,
        report.deleted.messages
    ));
    state.journeys.poke();
    Ok(Json(json!({"erased": report})))
}

pub async fn run_retention(
    _: RequireRole<Privacy>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let Some(retention) = state.privacy_config.event_retention else {
        return Err(ApiError::bad_request(
            ErrorCode::RetentionNotConfigured,
            "no event retention is configured (privacy.event_retention_days)",
        ));
    };
    let now = state.engine.clock().now();
    let purged = state.privacy.purge_expired_events(retention, now).await?;
    Ok(Json(json!({"purged_events": purged, "before": now - retention})))
}

#[derive(Debug, Deserialize)]
pub struct AnalyticsParams {
    after: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct AnalyticsProfile {
    /// HMAC-SHA256 of the profile id under the workspace's index key: stable, not reversible.
    pseudonym: String,
    created_at: DateTime<Utc>,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    segments: Vec<String>,
    orders: u64,
    revenue: f64,
    events: BTreeMap<String, u64>,
    /// Only traits declared not personal (`privacy.analytics_traits`), screened.
    traits: BTreeMap<String, Value>,
    consent: BTreeMap<&'static str, bool>,
}

/// `GET /v1/analytics/profiles?after=&limit=`: a page of pseudonymized profiles. `next` is an
/// opaque cursor.
pub async fn analytics_profiles(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Query(p): Query<AnalyticsParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(500).clamp(1, 5000);
    let after = match p.after.as_deref() {
        None => None,
        Some(c) => Some(state.cursor_key.open_cursor(c).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidCursor, "after is not a cursor from this API")
        })?),
    };
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let page = state.engine.profiles().page(after, limit).await?;
    let rows: Vec<AnalyticsProfile> = page
        .iter()
        .map(|p| AnalyticsProfile {
            pseudonym: state.keyring.pseudonymize(p.id.as_str()),
            created_at: p.created_at,
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            segments: p.segments.segments.iter().cloned().collect(),
            orders: p.orders.count,
            revenue: p.orders.revenue.as_major(),
            events: p.events.iter().map(|(k, a)| (k.clone(), a.count)).collect(),
            traits: state.privacy_config.analytics_traits_of(p),
            consent: p
                .consent
                .iter()
                .map(|(k, c)| (k.as_str(), c.current.granted))
                .collect(),
        })
        .collect();
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|p| state.cursor_key.seal_cursor(&p.id)))
        .flatten();
    Ok(Json(json!({"profiles": rows, "next": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    role: String,
    label: String,
}

#[derive(Serialize)]
struct KeyOut {
    id: String,
    role: &'static str,
    label: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<&missive_store::ApiKeyRecord> for KeyOut {
    fn from(k: &missive_store::ApiKeyRecord) -> Self {
        KeyOut {
            id: k.id.to_string(),
            role: k.role.as_str(),
            label: k.label.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

pub async fn create_key(
    _: RequireRole<Administer>,
    audit: AuditSlot,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<KeyIn>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidRole,
            format!(
                "unknown role {:?}: use one of {}",
                body.role,
                Role::ALL.map(Role::as_str).join(", ")
            ),
        )
        .with_field("role")
    })?;
    let label = body.label.trim();
    if label.is_empty() || label.len() > 200 || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidLabel,
            "label must be 1 to 200 characters, without control characters",
        )
        .with_field("label"));
    }
    let (record, secret) = state
        .auth
        .create_key(role, label, state.engine.clock().now())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    audit.set_target(format!("key:{}", record.id));
    audit.set_detail(format!("role={}", role.as_str()));
    let mut out = serde_json::to_value(KeyOut::from(&record)).map_err(|e| ApiError::internal(&e))?;
    out["key"] = json!(secret.expose());
    out["note"] = json!("the key is shown once: store it now");
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn list_keys(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let keys = state.auth.list_keys().await?;
    Ok(Json(
        json!({"keys": keys.iter().map(KeyOut::from).collect::<Vec<_>>()}),
    ))
}

pub async fn revoke_key(
    RequireRole { caller, .. }: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ApiKeyId::parse(&id).map_err(|e| ApiError::bad_request(ErrorCode::InvalidId, e.to_string()))?;
    let keys = state.auth.list_keys().await?;
    let live_admins = keys
        .iter()
        .filter(|k| k.role == Role::Admin && k.revoked_at.is_none())
        .count();
    let target = keys.iter().find(|k| k.id == id && k.revoked_at.is_none());
    let Some(target) = target else {
        return Err(ApiError::not_found("no live key has that id"));
    };
    if target.role == Role::Admin && live_admins == 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::LastAdminKey,
            "this is the last admin key: create another one first",
        ));
    }
    state.auth.revoke_key(&id, state.engine.clock().now()).await?;
    state.sessions.end_sessions_of(&id);
    if caller.key_id == id {
        tracing::info!(key_id = %id, "a key revoked itself");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Seals profile ids into opaque cursors, so that pseudonymized pages do not leak them.
#[derive(Clone)]
pub struct CursorKey(std::sync::Arc<missive_privacy::DataKey>);

impl CursorKey {
    pub fn new() -> Self {
        Self(std::sync::Arc::new(missive_privacy::DataKey::generate()))
    }

    fn seal_cursor(&self, id: &ProfileId) -> String {
        self.0
            .seal("cursor", id.as_str().as_bytes(), b"analytics")
            .unwrap_or_default()
    }

    fn open_cursor(&self, c: &str) -> Option<ProfileId> {
        let bytes = self.0.open(c, b"analytics").ok()?;
        ProfileId::parse(std::str::from_utf8(&bytes).ok()?).ok()
    }
}

impl Default for CursorKey {
    fn default() -> Self {
        Self::new()
    }
}
