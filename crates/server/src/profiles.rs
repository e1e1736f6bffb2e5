//! `GET /v1/profiles/{key}` and its versions and events. The key is a profile id, a user id,
//! an anonymous id or an e-mail address (or `user_id:…`, `anonymous_id:…`, `email:…`).

use missive_core::ErrorCode;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use missive_core::message::parse_time;
use missive_core::profile::{RecentEvent, WINDOW_DAYS};
use missive_core::{Profile, ProfileDiff, Trait};
use missive_engine::profiles::ProfileKey;
use missive_store::{EventCursor, EventQuery, MergeRecord, ProfileVersion, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{AuditSlot, ReadPersonal, RequireRole};
use crate::error::{Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

/// Reading profiles: the profile, its versions, events and segments (erasure is in privacy).
pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(get_profile, crate::privacy::erase))
        .routes(routes!(get_versions))
        .routes(routes!(get_events))
        .routes(routes!(get_segments))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileParams {
    /// RFC 3339: the profile as recorded at that time.
    as_of: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Profile)]
pub struct ProfileOut {
    id: String,
    version: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
    identities: IdentitiesOut,
    /// The address this person's mail goes to (one of `identities.emails`).
    #[serde(skip_serializing_if = "Option::is_none")]
    mailing_address: Option<String>,
    traits: BTreeMap<String, TraitOut>,
    /// Per purpose: granted or not, with the evidence of each change.
    consent: BTreeMap<&'static str, ConsentOut>,
    /// Third-party traits (and consent) refused, with the reason.
    refusals: Vec<missive_core::Refusal>,
    /// Model scores (docs/models.md), with the versions that wrote them under `_versions`;
    /// empty without `profiling` consent.
    scores: BTreeMap<String, Value>,
    aggregates: AggregatesOut,
    history: Vec<HistoryOut>,
    merges: Vec<MergeOut>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileIdentities)]
struct IdentitiesOut {
    user_ids: Vec<String>,
    anonymous_ids: Vec<String>,
    emails: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PurposeConsentView)]
pub struct ConsentOut {
    granted: bool,
    channel: &'static str,
    /// What the purpose means, in plain words.
    meaning: &'static str,
    current: missive_core::ConsentChange,
    history: Vec<missive_core::ConsentChange>,
}

/// Every purpose, granted or not (never asked counts as not granted).
pub fn consent_out(p: &Profile) -> BTreeMap<&'static str, ConsentOut> {
    p.consent
        .iter()
        .map(|(purpose, c)| {
            (
                purpose.as_str(),
                ConsentOut {
                    granted: c.current.granted,
                    channel: purpose.channel(),
                    meaning: purpose.plain_words(),
                    current: c.current.clone(),
                    history: c.history.clone(),
                },
            )
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileTrait)]
struct TraitOut {
    value: Value,
    source: String,
    party: &'static str,
    at: DateTime<Utc>,
    consent_basis: Option<String>,
}

impl From<&Trait> for TraitOut {
    fn from(t: &Trait) -> Self {
        Self {
            value: t.value.clone(),
            source: t.source.clone(),
            party: match t.party {
                missive_core::TraitParty::First => "first",
                missive_core::TraitParty::Third => "third",
            },
            at: t.at,
            consent_basis: t.consent_basis.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileAggregates)]
struct AggregatesOut {
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    events: BTreeMap<String, EventAggOut>,
    orders: OrdersOut,
    rfm: RfmOut,
}

#[derive(Serialize, ToSchema)]
#[schema(as = EventAggregateView)]
struct EventAggOut {
    count: u64,
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    /// Counts over the rolling windows ending now (or at `as_of`), keyed `1d`, `7d`, `30d`, `90d`.
    windows: BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OrderAggregates)]
struct OrdersOut {
    count: u64,
    revenue: f64,
    average_order_value: Option<f64>,
    first_at: Option<DateTime<Utc>>,
    last_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Rfm)]
struct RfmOut {
    recency_days: Option<f64>,
    frequency: u64,
    monetary: f64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecentEventView)]
struct HistoryOut {
    message_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    event: String,
    timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    properties: serde_json::Map<String, Value>,
}

impl From<&RecentEvent> for HistoryOut {
    fn from(h: &RecentEvent) -> Self {
        Self {
            message_id: h.message_id.to_string(),
            kind: h.kind.as_str(),
            event: h.name.clone(),
            timestamp: h.at,
            properties: h.properties.parse(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileMerge)]
struct MergeOut {
    from: String,
    into: String,
    at: DateTime<Utc>,
    cause: String,
}

impl From<&MergeRecord> for MergeOut {
    fn from(m: &MergeRecord) -> Self {
        Self {
            from: m.from.to_string(),
            into: m.into.to_string(),
            at: m.at,
            cause: m.cause.clone(),
        }
    }
}

fn profile_out(
    p: &Profile,
    now: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
    merges: &[MergeRecord],
) -> ProfileOut {
    let rfm = p.rfm(now);
    ProfileOut {
        id: p.id.to_string(),
        version: p.version,
        created_at: p.created_at,
        updated_at: p.updated_at,
        as_of,
        identities: IdentitiesOut {
            user_ids: p.identities.user_ids.iter().cloned().collect(),
            anonymous_ids: p.identities.anonymous_ids.iter().cloned().collect(),
            emails: p.identities.emails.iter().cloned().collect(),
        },
        mailing_address: p.email().map(str::to_owned),
        traits: p
            .traits
            .iter()
            .map(|(k, t)| (k.clone(), TraitOut::from(t)))
            .collect(),
        consent: consent_out(p),
        refusals: p.refusals.clone(),
        scores: p.model_scores().clone(),
        aggregates: AggregatesOut {
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            events: p
                .events
                .iter()
                .map(|(name, a)| (name.clone(), event_agg_out(a, now)))
                .collect(),
            orders: orders_out(&p.orders),
            rfm: RfmOut {
                recency_days: rfm.recency_days,
                frequency: rfm.frequency,
                monetary: rfm.monetary.as_major(),
            },
        },
        history: p.history.iter().rev().map(HistoryOut::from).collect(),
        merges: merges.iter().map(MergeOut::from).collect(),
    }
}

fn parse_as_of(s: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    s.map(|s| {
        parse_time(s).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidTimestamp, "as_of must be an ISO-8601 date-time")
                .with_field("as_of")
        })
    })
    .transpose()
}

/// The profile a key names; the audit log records it by id.
pub async fn resolve(
    state: &AppState,
    key: &str,
    audit: &AuditSlot,
) -> Result<missive_core::ProfileId, ApiError> {
    // Profiles reach the store at checkpoints; make it current first.
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let id = state
        .engine
        .profiles()
        .resolve(&ProfileKey::parse(key))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("no profile has that id, user id, anonymous id or e-mail address")
        })?;
    audit.set_target(format!("profile:{id}"));
    Ok(id)
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{key}",
    tag = "profiles",
    operation_id = "get_profile",
    summary = "Read a profile",
    description = "Identities, traits with their source, consent with its evidence, aggregates, recent history, model scores and merges; as it is now, or as it was at `as_of`. Needs the right to read personal data.",
    params(("key" = String, Path, description = "A profile id, user id, anonymous id or e-mail address (or `user_id:…`, `anonymous_id:…`, `email:…`)."), ProfileParams),
    responses(
        (status = 200, description = "The profile.", body = ProfileOut),
        (status = 400, description = "`as_of` is not a date-time.", body = ApiError),
        (status = 404, description = "No profile has that key, or it did not exist at `as_of`.", body = ApiError),
    ),
)]
pub async fn get_profile(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<ProfileParams>,
) -> Result<Json<ProfileOut>, ApiError> {
    let people = state.engine.profiles();
    let as_of = parse_as_of(params.as_of.as_deref())?;
    let id = resolve(&state, &key, &audit).await?;
    let profile = match as_of {
        None => people.find(&ProfileKey::Id(id.clone())).await?,
        Some(at) => people.as_of(&id, at).await?,
    };
    let Some(profile) = profile else {
        return Err(ApiError::not_found("the profile did not exist at that time"));
    };
    let merges = people.merges(&id).await?;
    let merges: Vec<_> = merges
        .into_iter()
        .filter(|m| as_of.is_none_or(|at| m.at <= at))
        .collect();
    let now = as_of.unwrap_or_else(|| state.engine.clock().now());
    Ok(Json(profile_out(&profile, now, as_of, &merges)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// At most this many (default 50; 1 to 1,000).
    limit: Option<u32>,
    /// Versions: only those below this version number. Events: the `next` cursor of the last page.
    before: Option<String>,
    /// Events: only those received before this time (RFC 3339).
    as_of: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileVersions)]
pub struct VersionsOut {
    versions: Vec<VersionOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileVersionView)]
struct VersionOut {
    version: u64,
    recorded_at: DateTime<Utc>,
    cause: String,
    diff: DiffOut,
}

/// What a version changed, in the profile's own representation: money in major units
/// (`89.0`, as `orders.revenue` on the profile), event aggregates as counts over windows
/// (not the stored hourly buckets), traits with their source.
#[derive(Serialize, ToSchema)]
#[schema(as = ProfileDiffView)]
struct DiffOut {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    traits: BTreeMap<String, TraitOut>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    events: BTreeMap<String, EventAggOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders: Option<OrdersOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    identities_added: Vec<missive_core::IdentityKey>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    merged_from: Vec<missive_core::ProfileId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    merged_into: Option<missive_core::ProfileId>,
    events_applied: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<missive_core::profile::Membership>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<BTreeMap<missive_core::Purpose, missive_core::consent::PurposeConsent>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusals: Option<Vec<missive_core::consent::Refusal>>,
}

fn event_agg_out(a: &missive_core::profile::EventAggregate, now: DateTime<Utc>) -> EventAggOut {
    EventAggOut {
        count: a.count,
        first_at: a.first_at,
        last_at: a.last_at,
        windows: WINDOW_DAYS
            .iter()
            .map(|d| (format!("{d}d"), a.count_within(now, *d)))
            .collect(),
    }
}

fn orders_out(o: &missive_core::profile::OrderAggregate) -> OrdersOut {
    OrdersOut {
        count: o.count,
        revenue: o.revenue.as_major(),
        average_order_value: o.average_order_value().map(|m| m.as_major()),
        first_at: o.first_at,
        last_at: o.last_at,
    }
}

impl DiffOut {
    /// `d` as recorded at `at` (windows count back from then).
    fn new(d: ProfileDiff, at: DateTime<Utc>) -> Self {
        Self {
            traits: d
                .traits
                .iter()
                .map(|(k, t)| (k.clone(), TraitOut::from(t)))
                .collect(),
            events: d
                .events
                .iter()
                .map(|(k, a)| (k.clone(), event_agg_out(a, at)))
                .collect(),
            orders: d.orders.as_ref().map(orders_out),
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            identities_added: d.identities_added,
            merged_from: d.merged_from,
            merged_into: d.merged_into,
            events_applied: d.events_applied,
            segments: d.segments,
            consent: d.consent,
            refusals: d.refusals,
        }
    }
}

impl From<ProfileVersion> for VersionOut {
    fn from(v: ProfileVersion) -> Self {
        Self {
            version: v.version,
            recorded_at: v.recorded_at,
            cause: v.cause,
            diff: DiffOut::new(v.diff, v.recorded_at),
        }
    }
}

fn limit_of(p: &PageParams) -> Result<u32, ApiError> {
    match p.limit {
        None => Ok(50),
        Some(n @ 1..=1000) => Ok(n),
        Some(_) => Err(
            ApiError::bad_request(ErrorCode::InvalidValue, "limit must be between 1 and 1000")
                .with_field("limit"),
        ),
    }
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{key}/versions",
    tag = "profiles",
    operation_id = "list_profile_versions",
    summary = "List a profile's versions",
    description = "Every change made a version with what it changed; newest first.",
    params(("key" = String, Path, description = "A profile id, user id, anonymous id or e-mail address (or `user_id:…`, `anonymous_id:…`, `email:…`)."), PageParams),
    responses(
        (status = 200, description = "A page of versions; `next` is the `before` of the next page.", body = VersionsOut),
        (status = 400, description = "`limit` or `before` is not valid.", body = ApiError),
        (status = 404, description = "No profile has that key.", body = ApiError),
    ),
)]
pub async fn get_versions(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<VersionsOut>, ApiError> {
    let limit = limit_of(&params)?;
    let before = params
        .before
        .as_deref()
        .map(|b| b.parse::<u64>())
        .transpose()
        .map_err(|_| {
            ApiError::bad_request(ErrorCode::InvalidValue, "before must be a version number")
                .with_field("before")
        })?;
    let id = resolve(&state, &key, &audit).await?;
    let versions = state.engine.profiles().versions(&id, before, limit).await?;
    let next = (versions.len() == limit as usize)
        .then(|| versions.last().map(|v| v.version.to_string()))
        .flatten();
    Ok(Json(VersionsOut {
        versions: versions.into_iter().map(VersionOut::from).collect(),
        next,
    }))
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileEvents)]
pub struct EventsOut {
    events: Vec<EventOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = StoredEventView)]
struct EventOut {
    seq: i64,
    message_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    event: String,
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
    body: Value,
}

impl From<StoredEvent> for EventOut {
    fn from(e: StoredEvent) -> Self {
        Self {
            seq: e.seq,
            message_id: e.message_id.to_string(),
            kind: e.kind.as_str(),
            event: e.name,
            timestamp: e.timestamp,
            received_at: e.received_at,
            body: e.body,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{key}/events",
    tag = "profiles",
    operation_id = "list_profile_events",
    summary = "List a profile's events",
    description = "The stored events of the person, newest first, as received.",
    params(("key" = String, Path, description = "A profile id, user id, anonymous id or e-mail address (or `user_id:…`, `anonymous_id:…`, `email:…`)."), PageParams),
    responses(
        (status = 200, description = "A page of events; `next` is the `before` of the next page.", body = EventsOut),
        (status = 400, description = "`limit`, `before` or `as_of` is not valid.", body = ApiError),
        (status = 404, description = "No profile has that key.", body = ApiError),
    ),
)]
pub async fn get_events(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<EventsOut>, ApiError> {
    let limit = limit_of(&params)?;
    let cursor = params
        .before
        .as_deref()
        .map(|c| {
            EventCursor::decode(c).ok_or_else(|| {
                ApiError::bad_request(ErrorCode::InvalidValue, "before must be a cursor from `next`")
                    .with_field("before")
            })
        })
        .transpose()?;
    let as_of = parse_as_of(params.as_of.as_deref())?;
    let id = resolve(&state, &key, &audit).await?;
    let events = state
        .engine
        .profiles()
        .events(EventQuery {
            profile_id: id,
            received_before: as_of,
            cursor,
            limit,
        })
        .await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| EventCursor::of(e).encode()))
        .flatten();
    Ok(Json(EventsOut {
        events: events.into_iter().map(EventOut::from).collect(),
        next,
    }))
}

#[derive(Serialize, ToSchema)]
#[schema(as = ProfileSegments)]
pub struct ProfileSegmentsOut {
    profile_id: String,
    segments: Vec<String>,
    /// When each time-dependent segment will be looked at again.
    timers: BTreeMap<String, DateTime<Utc>>,
    /// For every saved segment: in or out, and the value of each predicate.
    explain: Vec<ExplainOut>,
    /// Entries and exits, newest first.
    changes: Vec<ChangeOut>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SegmentExplanation)]
struct ExplainOut {
    segment: String,
    member: bool,
    predicates: Vec<missive_segment::PredicateResult>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SegmentChange)]
struct ChangeOut {
    segment: String,
    entered: bool,
    at: DateTime<Utc>,
    cause: String,
}

/// `GET /v1/profiles/{key}/segments`: which segments a profile is in, and why.
#[utoipa::path(
    get,
    path = "/v1/profiles/{key}/segments",
    tag = "profiles",
    operation_id = "get_profile_segments",
    summary = "Which segments a profile is in, and why",
    description = "Its segments, when each time-dependent one is looked at again, the value of each predicate of every saved segment, and the entries and exits, newest first.",
    params(("key" = String, Path, description = "A profile id, user id, anonymous id or e-mail address (or `user_id:…`, `anonymous_id:…`, `email:…`).")),
    responses(
        (status = 200, description = "The profile's segments.", body = ProfileSegmentsOut),
        (status = 404, description = "No profile has that key.", body = ApiError),
    ),
)]
pub async fn get_segments(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ProfileSegmentsOut>, ApiError> {
    let id = resolve(&state, &key, &audit).await?;
    let people = state.engine.profiles();
    let Some(profile) = people.find(&ProfileKey::Id(id.clone())).await? else {
        return Err(ApiError::not_found("no profile has that id"));
    };
    let now = state.engine.clock().now();
    let explain = people
        .explain_segments(&profile, now)
        .await?
        .into_iter()
        .map(|e| ExplainOut {
            segment: e.segment,
            member: e.explanation.member,
            predicates: e.explanation.predicates,
        })
        .collect();
    let members = profile.segments.segments.clone();
    let changes = people
        .segment_changes(&id, 100)
        .await?
        .into_iter()
        .map(|c| ChangeOut {
            segment: c.segment,
            entered: c.entered,
            at: c.at,
            cause: c.cause,
        })
        .collect();
    Ok(Json(ProfileSegmentsOut {
        profile_id: id.to_string(),
        segments: members.into_iter().collect(),
        timers: profile.segments.timers.clone(),
        explain,
        changes,
    }))
}
