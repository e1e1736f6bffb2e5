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
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use missive_core::{ApiKeyId, ProfileId, Purpose};
use missive_engine::privacy::{ConsentUpdate, PrivacyError};
use missive_engine::profiles::ProfileKey;
use missive_store::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::auth::{Administer, AuditSlot, Privacy, ReadPersonal, Reports, RequireRole};
use crate::error::{JsonBody, Path, Query};
use crate::openapi::ApiRouter;
use crate::profiles::{ConsentOut, consent_out, resolve};
use crate::{ApiError, AppState};

/// Consent, exports, retention, pseudonymous analytics and API keys.
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(get_consent, put_consent))
        .routes(routes!(export))
        .routes(routes!(run_retention))
        .routes(routes!(analytics_profiles))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

const KEY_DESCRIPTION: &str =
    "A profile id, user id, anonymous id or e-mail address (or `user_id:…`, `anonymous_id:…`, `email:…`).";

/// A profile's consent, per purpose (every purpose, granted or not).
#[derive(Serialize, ToSchema)]
#[schema(as = ProfileConsent)]
pub struct ConsentView {
    profile_id: ProfileId,
    consent: BTreeMap<&'static str, ConsentOut>,
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

#[utoipa::path(
    get,
    path = "/v1/profiles/{key}/consent",
    tag = "privacy",
    operation_id = "get_consent",
    summary = "Read a profile's consent",
    description = "Every purpose, granted or not (never asked counts as not granted), with the evidence of each change.",
    params(("key" = String, Path, description = KEY_DESCRIPTION)),
    responses((status = 200, description = "The consent.", body = ConsentView), (status = 404, description = "No profile has that key.", body = ApiError)),
)]
pub async fn get_consent(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ConsentView>, ApiError> {
    let id = resolve(&state, &key, &audit).await?;
    let p = state
        .engine
        .profiles()
        .load(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile not found"))?;
    Ok(Json(ConsentView {
        consent: consent_out(&p),
        profile_id: id,
    }))
}

/// A change of consent, recorded with its evidence.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConsentUpdateIn)]
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

#[utoipa::path(
    put,
    path = "/v1/profiles/{key}/consent",
    tag = "privacy",
    operation_id = "set_consent",
    summary = "Record consent",
    description = "Grants or withdraws purposes, recording where, when and under which policy. Needs the privacy permission.",
    params(("key" = String, Path, description = KEY_DESCRIPTION)),
    request_body = ConsentIn,
    responses(
        (status = 200, description = "The consent after the change.", body = ConsentView),
        (status = 400, description = "Not the expected JSON, or an unknown purpose (`invalid_consent`).", body = ApiError),
        (status = 404, description = "No profile has that key.", body = ApiError),
    ),
)]
pub async fn put_consent(
    RequireRole { caller, .. }: RequireRole<Privacy>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<ConsentIn>,
) -> Result<Json<ConsentView>, ApiError> {
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
    Ok(Json(ConsentView {
        consent: consent_out(&p),
        profile_id: id,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{key}/export",
    tag = "privacy",
    operation_id = "export_profile",
    summary = "Export everything about a person",
    description = "The data-subject access export, as an attachment: the profile, its events, versions, messages, segment history and suppression. Needs the privacy permission.",
    params(("key" = String, Path, description = KEY_DESCRIPTION)),
    responses((status = 200, description = "The export (`missive-export/1`).", body = ExportDocument), (status = 404, description = "No profile has that key.", body = ApiError)),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/profiles/{key}",
    tag = "privacy",
    operation_id = "erase_profile",
    summary = "Erase a person",
    description = "Deletes the profile and everything merged into it: events, versions, messages, memberships; blocks its identities from coming back and suppresses its address. Needs the privacy permission. Cannot be undone.",
    params(("key" = String, Path, description = KEY_DESCRIPTION)),
    responses((status = 200, description = "What was deleted.", body = Erased), (status = 404, description = "No profile has that key.", body = ApiError)),
)]
pub async fn erase(
    _: RequireRole<Privacy>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Erased>, ApiError> {
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
    Ok(Json(Erased { erased: report }))
}

/// What an erasure deleted.
#[derive(Serialize, ToSchema)]
#[schema(as = ErasureResult)]
pub struct Erased {
    erased: missive_engine::privacy::ErasureReport,
}

/// What a retention run purged.
#[derive(Serialize, ToSchema)]
#[schema(as = RetentionResult)]
pub struct RetentionRun {
    purged_events: u64,
    /// Events received before this time were purged.
    before: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/v1/privacy/retention/run",
    tag = "privacy",
    operation_id = "run_retention",
    summary = "Purge events past retention now",
    description = "What the background job does daily, now. Needs the privacy permission.",
    responses(
        (status = 200, description = "How many events were purged.", body = RetentionRun),
        (status = 400, description = "No retention is configured (`retention_not_configured`).", body = ApiError),
    ),
)]
pub async fn run_retention(
    _: RequireRole<Privacy>,
    State(state): State<AppState>,
) -> Result<Json<RetentionRun>, ApiError> {
    let Some(retention) = state.privacy_config.event_retention else {
        return Err(ApiError::bad_request(
            ErrorCode::RetentionNotConfigured,
            "no event retention is configured (privacy.event_retention_days)",
        ));
    };
    let now = state.engine.clock().now();
    let purged = state.privacy.purge_expired_events(retention, now).await?;
    Ok(Json(RetentionRun {
        purged_events: purged,
        before: now - retention,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// The `next` of the previous page (an opaque cursor).
    after: Option<String>,
    /// At most this many (default 500; 1 to 5,000).
    limit: Option<u32>,
}

/// A profile with a pseudonym instead of its identities, and without personal traits.
#[derive(Serialize, ToSchema)]
#[schema(as = PseudonymizedProfile)]
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
#[utoipa::path(
    get,
    path = "/v1/analytics/profiles",
    tag = "privacy",
    operation_id = "list_pseudonymized_profiles",
    summary = "Page through pseudonymized profiles",
    description = "Profiles with a stable pseudonym instead of their identities, and only the traits declared not personal: for analysts.",
    params(AnalyticsParams),
    responses(
        (status = 200, description = "A page of profiles.", body = AnalyticsPage),
        (status = 400, description = "`after` is not a cursor from this API, or a parameter is not valid.", body = ApiError),
    ),
)]
pub async fn analytics_profiles(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Query(p): Query<AnalyticsParams>,
) -> Result<Json<AnalyticsPage>, ApiError> {
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
    Ok(Json(AnalyticsPage { profiles: rows, next }))
}

/// A page of pseudonymized profiles.
#[derive(Serialize, ToSchema)]
#[schema(as = PseudonymizedProfiles)]
pub struct AnalyticsPage {
    profiles: Vec<AnalyticsProfile>,
    /// Pass as `after` for the next page; `null` on the last.
    next: Option<String>,
}

/// A new key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyIn)]
pub struct KeyIn {
    /// `admin`, `marketer`, `analyst`, `privacy_officer`, `write` or `server_write`.
    role: String,
    /// What the key is for: 1 to 200 characters, no control characters.
    label: String,
}

/// An API key (never its secret).
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKey)]
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

#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "create_key",
    summary = "Create an API key",
    description = "Administrators only. The secret is in the answer, and only there.",
    request_body = KeyIn,
    responses(
        (status = 201, description = "The key, with its secret.", body = KeyCreated),
        (status = 400, description = "Not the expected JSON, an unknown role (`invalid_role`) or a bad label (`invalid_label`).", body = ApiError),
    ),
)]
pub async fn create_key(
    _: RequireRole<Administer>,
    audit: AuditSlot,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<KeyIn>,
) -> Result<Response, ApiError> {
    let (role, label) = key_request(&body.role, &body.label)?;
    let (record, secret) = state
        .auth
        .create_key(role, label, state.engine.clock().now())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    audit.set_target(format!("key:{}", record.id));
    audit.set_detail(format!("role={}", role.as_str()));
    let out = KeyCreated {
        key_record: KeyOut::from(&record),
        key: secret.expose().to_owned(),
        note: "the key is shown once: store it now",
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A new key's role and label, checked: the API's and the console's rules.
pub(crate) fn key_request<'a>(role: &str, label: &'a str) -> Result<(Role, &'a str), ApiError> {
    let role = Role::parse(role).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidRole,
            format!(
                "unknown role {:?}: use one of {}",
                role,
                Role::ALL.map(Role::as_str).join(", ")
            ),
        )
        .with_field("role")
    })?;
    let label = label.trim();
    if label.is_empty() || label.len() > 200 || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidLabel,
            "label must be 1 to 200 characters, without control characters",
        )
        .with_field("label"));
    }
    Ok((role, label))
}

/// A key just created, with its secret: shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKeyCreated)]
pub struct KeyCreated {
    #[serde(flatten)]
    key_record: KeyOut,
    /// The secret: present it as a Bearer token, or as the Basic user name.
    key: String,
    note: &'static str,
}

/// The workspace's keys, revoked ones included.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKeys)]
pub struct KeysOut {
    keys: Vec<KeyOut>,
}

#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "list_keys",
    summary = "List the API keys",
    description = "Administrators only; never the secrets.",
    responses((status = 200, description = "Every key, revoked ones included.", body = KeysOut)),
)]
pub async fn list_keys(
    _: RequireRole<Administer>,
    State(state): State<AppState>,
) -> Result<Json<KeysOut>, ApiError> {
    let keys = state.auth.list_keys().await?;
    Ok(Json(KeysOut {
        keys: keys.iter().map(KeyOut::from).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    operation_id = "revoke_key",
    summary = "Revoke an API key",
    description = "Administrators only. The key stops working at once, and its console sessions end.",
    params(("id" = String, Path, description = "The key's id (`key_…`).")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, description = "Not a key id.", body = ApiError),
        (status = 404, description = "No live key has that id.", body = ApiError),
        (status = 409, description = "It is the last admin key (`last_admin_key`).", body = ApiError),
    ),
)]
pub async fn revoke_key(
    RequireRole { caller, .. }: RequireRole<Administer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ApiKeyId::parse(&id).map_err(|e| ApiError::bad_request(ErrorCode::InvalidId, e.to_string()))?;
    revoke_live_key(&state, &id).await?;
    if caller.key_id == id {
        tracing::info!(key_id = %id, "a key revoked itself");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a live key and ends its console sessions; refuses the last admin key. The API's
/// and the console's revocation.
pub(crate) async fn revoke_live_key(state: &AppState, id: &ApiKeyId) -> Result<(), ApiError> {
    let keys = state.auth.list_keys().await?;
    let live_admins = keys
        .iter()
        .filter(|k| k.role == Role::Admin && k.revoked_at.is_none())
        .count();
    let target = keys.iter().find(|k| k.id == *id && k.revoked_at.is_none());
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
    state.auth.revoke_key(id, state.engine.clock().now()).await?;
    state.sessions.end_sessions_of(id);
    Ok(())
}

/// The export document: free-form beyond its top level, which this lists.
pub struct ExportDocument;

impl utoipa::PartialSchema for ExportDocument {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
        let object = |d: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .description(Some(d))
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        };
        let array = |d: &str| {
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(object("An entry."))
                .description(Some(d))
        };
        utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .property(
                    "format",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .description(Some("`missive-export/1`.")),
                )
                .required("format")
                .property(
                    "exported_at",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::DateTime,
                        ))),
                )
                .property(
                    "profile",
                    object("The profile: identities, traits, consent, aggregates, segments, scores."),
                )
                .property("segment_history", array("Entries and exits of segments."))
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .description(Some("Everything missive holds about a person (docs/privacy.md)."))
                .build(),
        ))
    }
}
impl utoipa::ToSchema for ExportDocument {}

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
