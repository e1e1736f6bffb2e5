//! Recommendations over the API (docs/recommendations.md):
//! - `POST /v1/recommendations/train` trains every learned strategy on the store's product
//!   events (people with `personalization` consent) and the catalogue, and swaps the result in
//!   (the schedule does the same, `[recommendations] retrain_every_hours`);
//! - `GET /v1/recommendations` says what is served and what is training;
//! - `GET /v1/profiles/{key}/recommendations?strategy=…&limit=…` serves a person's top
//!   products with a reason each, through the business filters (`max_per_category`,
//!   `price_min`, `price_max`, `margin_boost` override the configured ones);
//! - `GET /v1/products/{id}/similar` and `/v1/products/{id}/bought-together`;
//! - `/v1/recommendations/rules/{name}`: the marketer's "bought A → recommend B" rules.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use missive_content::filters::{Filters, Pick};
use missive_content::rules::Rule;
use missive_core::{ErrorCode, Purpose};
use missive_engine::recs::RecsError;
use missive_sending::content::{Ask, ContentServiceError, Served};
use serde::{Deserialize, Serialize};

use crate::auth::{AuditSlot, Marketing, ReadPersonal, Reports, RequireRole};
use crate::error::{JsonBody, Path, Query};
use crate::openapi::ApiRouter;
use crate::{ApiError, AppState};
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn router() -> ApiRouter {
    crate::openapi::router()
        .routes(routes!(status))
        .routes(routes!(train))
        .routes(routes!(list_rules))
        .routes(routes!(put_rule, delete_rule))
        .routes(routes!(for_profile))
        .routes(routes!(similar))
        .routes(routes!(bought_together))
}

/// The marketer's rules.
#[derive(Serialize, ToSchema)]
#[schema(as = RecommendationRules)]
struct RulesOut {
    rules: Vec<RuleOut>,
}

/// A rule saved.
#[derive(Serialize, ToSchema)]
#[schema(as = RecommendationRuleSaved)]
struct RuleSaved {
    name: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<RecsError> for ApiError {
    fn from(e: RecsError) -> Self {
        match e {
            RecsError::Busy => ApiError::new(StatusCode::CONFLICT, ErrorCode::ModelBusy, e.to_string()),
            RecsError::NoData => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::RecommendationsNotTrained,
                e.to_string(),
            ),
            RecsError::Store(s) => ApiError::unavailable(&s),
            RecsError::Join(j) => ApiError::internal(&j),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecommendationModel)]
struct TrainedOut {
    version: u64,
    trained_at: chrono::DateTime<chrono::Utc>,
    seconds: f64,
    profiles: usize,
    left_out_no_consent: usize,
    people: usize,
    items: usize,
    interactions: usize,
}

fn trained_out(m: &missive_engine::recs::RecsModel) -> TrainedOut {
    TrainedOut {
        version: m.version,
        trained_at: m.trained_at,
        seconds: m.seconds,
        profiles: m.read.profiles,
        left_out_no_consent: m.read.no_consent,
        people: m.read.with_interactions,
        items: m.items.len(),
        interactions: m.read.interactions,
    }
}

#[utoipa::path(post, path = "/v1/recommendations/train", tag = "recommendations", operation_id = "train_recommendations", summary = "Train the recommendations now",
    description = "Every learned strategy, on the product events of people with `personalization` consent and the catalogue; the result is served at once.",
    responses((status = 200, description = "The new model.", body = TrainedOut),
        (status = 409, description = "A training is running (`model_busy`), or there is nothing to learn from (`recommendations_not_trained`).", body = ApiError)))]
async fn train(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
) -> Result<Json<TrainedOut>, ApiError> {
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let now = state.engine.clock().now();
    let m = state.content.train_recommendations(now).await?;
    Ok(Json(trained_out(&m)))
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecommendationStatus)]
struct StatusOut {
    /// The model served, if one is trained.
    served: Option<TrainedOut>,
    /// The training under way.
    training: Option<missive_engine::recs::Progress>,
    /// The last training that failed, unless one succeeded since.
    last_failure: Option<missive_engine::recs::Failure>,
}

#[utoipa::path(get, path = "/v1/recommendations", tag = "recommendations", operation_id = "get_recommendations_status", summary = "What is served and what is training",
    responses((status = 200, description = "The served model, the training under way and the last failure.", body = StatusOut)))]
async fn status(_: RequireRole<Reports>, State(state): State<AppState>) -> Json<StatusOut> {
    let recs = state.content.recs();
    Json(StatusOut {
        served: recs.current().as_deref().map(trained_out),
        training: recs.progress(),
        last_failure: recs.last_failure(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecsParams {
    /// `for_you`, `rules`, `popular`, `item2item`, `als`, `content` or `hybrid` (default).
    /// Only for a person's list.
    strategy: Option<String>,
    /// How many (default 10; 1 to 100).
    limit: Option<usize>,
    /// At most this many of one category (overrides the configured filter).
    max_per_category: Option<usize>,
    /// Only products at or above this price.
    price_min: Option<f64>,
    /// Only products at or below this price.
    price_max: Option<f64>,
    /// How much a product's margin raises it (0 to 1).
    margin_boost: Option<f64>,
}

impl RecsParams {
    fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            return Err(
                ApiError::bad_request(ErrorCode::InvalidValue, "limit is 1 to 100").with_field("limit"),
            );
        }
        Ok(limit)
    }

    /// The configured filters with this request's overrides.
    fn filters(&self, configured: &Filters) -> Result<Filters, ApiError> {
        let f = Filters {
            max_per_category: self.max_per_category.unwrap_or(configured.max_per_category),
            price_min: self.price_min.or(configured.price_min),
            price_max: self.price_max.or(configured.price_max),
            margin_boost: self.margin_boost.unwrap_or(configured.margin_boost),
        };
        f.validate()
            .map_err(|(field, why)| ApiError::bad_request(ErrorCode::InvalidValue, why).with_field(field))?;
        Ok(f)
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecommendedProduct)]
struct Recommended {
    product_id: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    score: f32,
    /// In words: "because you viewed Linen dress".
    reason: String,
    /// The product of theirs the reason names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    because_of: Option<String>,
    /// What chose it: rule, category, best_seller, item2item, als, content.
    source: missive_content::filters::Source,
}

fn recommended(p: Pick) -> Recommended {
    let product = &p.entry.product;
    Recommended {
        product_id: product.id.clone(),
        title: product.title.clone(),
        url: product.url.clone(),
        image_url: product.image_url.clone(),
        price: product.price,
        score: p.score,
        reason: p.reason,
        because_of: p.because_of,
        source: p.source,
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Recommendations)]
struct RecsOut {
    strategy: Served,
    /// The learned model's version and training time, when one is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trained_at: Option<chrono::DateTime<chrono::Utc>>,
    items: Vec<Recommended>,
    /// Why the list is empty or short, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

impl RecsOut {
    fn new(state: &AppState, strategy: Served, picks: Vec<Pick>) -> Self {
        let model = state.content.recs().current();
        let items: Vec<Recommended> = picks.into_iter().map(recommended).collect();
        RecsOut {
            strategy,
            model_version: model.as_ref().map(|m| m.version),
            trained_at: model.as_ref().map(|m| m.trained_at),
            note: items.is_empty().then_some(
                "nothing to recommend: no history the model knows, or everything it would pick is out of stock, outside the filters or already theirs",
            ),
            items,
        }
    }
}

fn not_trained() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::RecommendationsNotTrained,
        "recommendations are not trained yet: POST /v1/recommendations/train",
    )
}

fn served_error(e: ContentServiceError) -> ApiError {
    match e {
        ContentServiceError::NotTrained => not_trained(),
        other => other.into(),
    }
}

#[utoipa::path(get, path = "/v1/profiles/{key}/recommendations", tag = "recommendations", operation_id = "recommend_for_profile", summary = "A person's recommendations",
    description = "Their top products with a reason each, through the business filters. Without `personalization` consent, nothing is chosen from their history (`note` says so).",
    params(("key" = String, Path, description = "A profile id, user id, anonymous id or e-mail address."), RecsParams),
    responses((status = 200, description = "The list.", body = RecsOut), (status = 400, description = "A parameter is not valid (`invalid_value`, with `field`).", body = ApiError),
        (status = 404, description = "No profile has that key.", body = ApiError),
        (status = 409, description = "A learned strategy is asked for and none is trained (`recommendations_not_trained`).", body = ApiError)))]
async fn for_profile(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<RecsParams>,
) -> Result<Json<RecsOut>, ApiError> {
    let strategy: Served = params
        .strategy
        .as_deref()
        .unwrap_or("hybrid")
        .parse()
        .map_err(|e: String| ApiError::bad_request(ErrorCode::InvalidValue, e).with_field("strategy"))?;
    let limit = params.limit()?;
    let filters = params.filters(&state.content.config().recommendation_filters)?;
    if matches!(strategy, Served::Learned(_)) && state.content.recs().current().is_none() {
        return Err(not_trained());
    }
    let id = crate::profiles::resolve(&state, &key, &audit).await?;
    let store = state.engine.store();
    let profile = missive_engine::profiles::find_profile(
        store,
        &missive_engine::profiles::ProfileKey::Id(id.clone()),
        0,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no profile has that id"))?;
    if !profile.consents(Purpose::Personalization) {
        let mut out = RecsOut::new(&state, strategy, Vec::new());
        out.note = Some("no personalization consent: nothing is chosen from this person's history");
        return Ok(Json(out));
    }
    // Every stored event, not only the profile's recent history: the API answers for the
    // whole of it.
    let stored = missive_engine::profiles::all_events(store, &id).await?;
    let events: Vec<_> = stored
        .iter()
        .filter_map(missive_engine::recs::stored_event)
        .collect();
    let person = state.content.person(&events, &[]);
    let picks = state
        .content
        .recommend_for(&Ask {
            strategy,
            person: &person,
            limit,
            filters: &filters,
            now: state.engine.clock().now(),
        })
        .await
        .map_err(served_error)?;
    Ok(Json(RecsOut::new(&state, strategy, picks)))
}

/// The limit and filters of a product's list.
fn product_list(state: &AppState, params: &RecsParams) -> Result<(usize, Filters), ApiError> {
    Ok((
        params.limit()?,
        params.filters(&state.content.config().recommendation_filters)?,
    ))
}

#[utoipa::path(get, path = "/v1/products/{id}/similar", tag = "recommendations", operation_id = "similar_products", summary = "Products like this one",
    params(("id" = String, Path, description = "The product's id."), RecsParams),
    responses((status = 200, description = "The list.", body = RecsOut), (status = 400, description = "A parameter is not valid (`invalid_value`, with `field`).", body = ApiError),
        (status = 404, description = "No product has that id.", body = ApiError),
        (status = 409, description = "Recommendations are not trained (`recommendations_not_trained`).", body = ApiError)))]
async fn similar(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<RecsParams>,
) -> Result<Json<RecsOut>, ApiError> {
    let (limit, filters) = product_list(&state, &params)?;
    let now = state.engine.clock().now();
    let picks = state
        .content
        .similar_to(&id, limit, &filters, &|_| false, now)
        .await?;
    Ok(Json(RecsOut::new(
        &state,
        Served::Learned(missive_recs::strategy::Strategy::Content),
        picks,
    )))
}

#[utoipa::path(get, path = "/v1/products/{id}/bought-together", tag = "recommendations", operation_id = "bought_together", summary = "Products bought with this one",
    params(("id" = String, Path, description = "The product's id."), RecsParams),
    responses((status = 200, description = "The list.", body = RecsOut), (status = 400, description = "A parameter is not valid (`invalid_value`, with `field`).", body = ApiError),
        (status = 404, description = "No product has that id.", body = ApiError),
        (status = 409, description = "Recommendations are not trained (`recommendations_not_trained`).", body = ApiError)))]
async fn bought_together(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<RecsParams>,
) -> Result<Json<RecsOut>, ApiError> {
    let (limit, filters) = product_list(&state, &params)?;
    let picks = state
        .content
        .bought_together(&id, limit, &filters, &|_| false)
        .await?;
    Ok(Json(RecsOut::new(
        &state,
        Served::Learned(missive_recs::strategy::Strategy::Item2item),
        picks,
    )))
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecommendationRuleView)]
struct RuleOut {
    name: String,
    #[serde(flatten)]
    rule: Rule,
}

#[utoipa::path(get, path = "/v1/recommendations/rules", tag = "recommendations", operation_id = "list_recommendation_rules", summary = "List the rules",
    responses((status = 200, description = "Every \"bought A → recommend B\" rule.", body = RulesOut)))]
async fn list_rules(
    _: RequireRole<Reports>,
    State(state): State<AppState>,
) -> Result<Json<RulesOut>, ApiError> {
    let rules: Vec<RuleOut> = state
        .content
        .rules()
        .await?
        .iter()
        .map(|(name, rule)| RuleOut {
            name: name.clone(),
            rule: rule.clone(),
        })
        .collect();
    Ok(Json(RulesOut { rules }))
}

#[utoipa::path(put, path = "/v1/recommendations/rules/{name}", tag = "recommendations", operation_id = "put_recommendation_rule", summary = "Create or replace a rule",
    params(("name" = String, Path, description = "The rule's name.")), request_body = Rule,
    responses((status = 200, description = "Saved.", body = RuleSaved),
        (status = 400, description = "Not the expected JSON, or an invalid rule (`invalid_value`, with `field`).", body = ApiError)))]
async fn put_rule(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(rule): JsonBody<Rule>,
) -> Result<Json<RuleSaved>, ApiError> {
    rule.validate()
        .map_err(|(field, why)| ApiError::bad_request(ErrorCode::InvalidValue, why).with_field(field))?;
    let now = state.engine.clock().now();
    let version = state.content.put_rule(&name, &rule, now).await?;
    Ok(Json(RuleSaved {
        name,
        version,
        updated_at: now,
    }))
}

#[utoipa::path(delete, path = "/v1/recommendations/rules/{name}", tag = "recommendations", operation_id = "delete_recommendation_rule", summary = "Delete a rule",
    params(("name" = String, Path, description = "The rule's name.")),
    responses((status = 204, description = "Deleted."), (status = 404, description = "No rule has that name.", body = ApiError)))]
async fn delete_rule(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.content.delete_rule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
