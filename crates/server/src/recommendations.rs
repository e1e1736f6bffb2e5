//! Learned recommendations over the API: `POST /v1/recommendations/train` trains every
//! strategy on the store's product events (people with `personalization` consent) and the
//! catalogue, and swaps the result in; `GET /v1/profiles/{key}/recommendations?strategy=…&limit=…`
//! serves a person's top items with a reason each. See docs/recommendations.md.
//!
//! Business filters, applied last and always: only products in the catalogue and in stock,
//! nothing the person already had, at most `MAX_PER_CATEGORY` per category.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use missive_core::{ErrorCode, Purpose};
use missive_engine::recs::RecsError;
use missive_recs::strategy::{Reason, Strategy};
use serde::{Deserialize, Serialize};

use crate::auth::{AuditSlot, Marketing, ReadPersonal, RequireRole};
use crate::{ApiError, AppState};

/// Diversity: at most this many products of one category in a list.
const MAX_PER_CATEGORY: usize = 3;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/recommendations/train", post(train))
        .route("/v1/profiles/{key}/recommendations", get(for_profile))
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

#[derive(Serialize)]
struct TrainedOut {
    trained_at: chrono::DateTime<chrono::Utc>,
    seconds: f64,
    profiles: usize,
    left_out_no_consent: usize,
    people: usize,
    items: usize,
    interactions: usize,
}

async fn train(
    _: RequireRole<Marketing>,
    State(state): State<AppState>,
) -> Result<Json<TrainedOut>, ApiError> {
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let catalog = state
        .content
        .catalog()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let items: Vec<_> = catalog.products().map(item_of_product).collect();
    let now = state.engine.clock().now();
    let m = state
        .recs
        .train(state.engine.store(), items, served_settings(catalog.len()), now)
        .await?;
    Ok(Json(TrainedOut {
        trained_at: m.trained_at,
        seconds: m.seconds,
        profiles: m.read.profiles,
        left_out_no_consent: m.read.no_consent,
        people: m.read.with_interactions,
        items: m.items.len(),
        interactions: m.read.interactions,
    }))
}

/// The settings of the served model: factors by catalogue size (a factor per two products,
/// 4 to 64: more than the data can support fits noise), and views weighing more than the
/// unobserved (confidence 10 per unit of weight; at `implicit`'s default of 1 a single view
/// counts no more than no view).
fn served_settings(catalogue: usize) -> missive_recs::strategy::Settings {
    let mut s = missive_recs::strategy::Settings::default();
    s.als.factors = (catalogue / 2).clamp(4, 64);
    s.als.alpha = 10.0;
    s
}

/// A catalogue product as the content strategy reads it: its first category, and a
/// `description` and `colour` (or `color`) attribute.
pub fn item_of_product(p: &missive_content::recs::Product) -> missive_recs::data::Item {
    let attr = |k: &str| {
        p.attributes
            .get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    missive_recs::data::Item {
        id: p.id.clone(),
        title: p.title.clone(),
        description: attr("description"),
        category: p.categories.first().cloned().unwrap_or_default(),
        brand: p.brand.clone().unwrap_or_default(),
        colour: if attr("colour").is_empty() {
            attr("color")
        } else {
            attr("colour")
        },
        price: p.price,
        in_stock: p.in_stock,
    }
}

#[derive(Debug, Deserialize)]
pub struct RecsParams {
    strategy: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
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
}

#[derive(Serialize)]
struct RecsOut {
    strategy: Strategy,
    trained_at: chrono::DateTime<chrono::Utc>,
    items: Vec<Recommended>,
    /// Why the list is empty or short, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

async fn for_profile(
    _: RequireRole<ReadPersonal>,
    audit: AuditSlot,
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<RecsParams>,
) -> Result<Json<RecsOut>, ApiError> {
    let strategy: Strategy = params
        .strategy
        .as_deref()
        .unwrap_or("hybrid")
        .parse()
        .map_err(|e: String| ApiError::bad_request(ErrorCode::InvalidValue, e).with_field("strategy"))?;
    let limit = params.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidValue, "limit is 1 to 100").with_field("limit"));
    }
    let Some(model) = state.recs.current() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RecommendationsNotTrained,
            "recommendations are not trained yet: POST /v1/recommendations/train",
        ));
    };
    let id = crate::profiles::resolve(&state, &key, &audit).await?;
    let store = state.engine.store();
    let profile = missive_engine::profiles::find_profile(
        store,
        &missive_engine::profiles::ProfileKey::Id(id.clone()),
        0,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no profile has that id"))?;
    let mut out = RecsOut {
        strategy,
        trained_at: model.trained_at,
        items: Vec::new(),
        note: None,
    };
    if !profile.consents(Purpose::Personalization) {
        out.note = Some("no personalization consent: nothing is chosen from this person's history");
        return Ok(Json(out));
    }
    let events = missive_engine::profiles::all_events(store, &id).await?;
    let now = state.engine.clock().now();
    let history = missive_engine::recs::history(&model, &events, now);
    let had: HashSet<u32> = history.iter().map(|(i, _)| *i).collect();
    let catalog = state
        .content
        .catalog()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    // The person's vector is folded in from their history as it is now, so that an event
    // since training (a click a minute ago) counts at once.
    // Only products in the catalogue and in stock, and not theirs: asked of the candidates as
    // they are ranked, so that these filters never cut the list short.
    let unavailable = |i: u32| {
        had.contains(&i)
            || catalog
                .get(model.items.name(i))
                .is_none_or(|e| !e.product.in_stock)
    };
    // More than asked for: the cap per category drops some.
    let picks = model.trained.recommend(
        strategy,
        &history,
        None,
        limit * (MAX_PER_CATEGORY + 2),
        &unavailable,
    );
    let mut per_category: HashMap<String, usize> = HashMap::new();
    for p in picks {
        let product_id = model.items.name(p.item);
        let Some(entry) = catalog.get(product_id) else {
            continue;
        };
        let product = &entry.product;
        if !product.in_stock {
            continue;
        }
        let category = product.categories.first().cloned().unwrap_or_default();
        let n = per_category.entry(category).or_default();
        if *n >= MAX_PER_CATEGORY {
            continue;
        }
        *n += 1;
        let (because_of, reason) = explain(p.reason, &model.items, &catalog);
        out.items.push(Recommended {
            product_id: product.id.clone(),
            title: product.title.clone(),
            url: product.url.clone(),
            image_url: product.image_url.clone(),
            price: product.price,
            score: p.score,
            reason,
            because_of,
        });
        if out.items.len() == limit {
            break;
        }
    }
    if out.items.is_empty() {
        out.note = Some(
            "nothing to recommend: no history the model knows, or everything it would pick is out of stock or already theirs",
        );
    }
    Ok(Json(out))
}

fn explain(
    reason: Reason,
    items: &missive_recs::data::Interner,
    catalog: &missive_content::recs::Catalog,
) -> (Option<String>, String) {
    // A reason names a product of theirs only when the catalogue knows it (an event may name
    // a product that is not, or no longer, in it).
    let theirs = |i: u32| {
        let id = items.name(i);
        catalog.get(id).map(|e| (id.to_owned(), e.product.title.clone()))
    };
    let (item, words): (Option<u32>, fn(&str) -> String) = match reason {
        Reason::Popular => (None, |_| String::new()),
        Reason::BoughtWith(i) => (Some(i), |t| format!("often bought with {t}")),
        Reason::LikedWith(i) => (Some(i), |t| format!("people who liked {t} liked this")),
        Reason::LooksLike(i) => (Some(i), |t| format!("like {t}")),
    };
    match item.and_then(theirs) {
        Some((id, title)) => (Some(id), words(&title)),
        None if reason == Reason::Popular => (None, "a best seller".into()),
        None => (None, "picked from what you looked at".into()),
    }
}
