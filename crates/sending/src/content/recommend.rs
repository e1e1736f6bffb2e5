//! Recommendations for one person or one product, as e-mails and the API serve them: the
//! marketer's rules, the learned strategies (trained from the store, see
//! `missive_engine::recs`) and the category and best-seller rules, each pick with a reason,
//! through the business filters last and always (`missive_content::filters`).
//!
//! A person's history is their product events (views, cart adds, purchases, clicks) as the
//! profile keeps them, folded into the model at the time of asking: a click a minute ago
//! counts at once. The products in the e-mail (the cart, the viewed product) count as their
//! latest interest and are never recommended back.

use std::collections::HashSet;

use missive_content::filters::{Candidate, Filters, Pick, Source};
use missive_content::rules::{self, Rule};
use missive_engine::recs::{RecsError, RecsModel};
use missive_recs::data::items_of_event;
use missive_recs::strategy::{Reason, Strategy};

use super::*;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// What `recommendations.for_you` shows: the marketer's rules, then the hybrid (when
    /// trained), then the category rule and best sellers.
    ForYou,
    /// The marketer's rules, then the category rule and best sellers.
    Rules,
    /// One learned strategy (needs a trained model).
    Learned(Strategy),
}

impl std::str::FromStr for Served {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "for_you" => Ok(Served::ForYou),
            "rules" => Ok(Served::Rules),
            other => other.parse().map(Served::Learned).map_err(|_| {
                format!("strategy {s:?}: one of for_you, rules, popular, item2item, als, content, hybrid")
            }),
        }
    }
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Served::ForYou => "for_you",
            Served::Rules => "rules",
            Served::Learned(s) => s.as_str(),
        }
    }
}

impl serde::Serialize for Served {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for Served {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        missive_core::api_schema::string(
            "Which list: the marketer's rules with fallbacks, or one learned strategy.",
            Some(vec![
                "for_you",
                "rules",
                "popular",
                "item2item",
                "als",
                "content",
                "hybrid",
            ]),
        )
    }
}
impl utoipa::ToSchema for Served {
    fn name() -> std::borrow::Cow<'static, str> {
        "RecommendationList".into()
    }
}

/// A person's events as recommendations read them: (name, properties, time), any order.
pub type PersonEvent<'a> = (
    &'a str,
    &'a serde_json::Map<String, serde_json::Value>,
    DateTime<Utc>,
);

/// A person as recommendations see them, their products derived once
/// ([`ContentService::person`]) for every list of a message.
pub struct Person<'a> {
    pub events: &'a [PersonEvent<'a>],
    /// The products in the e-mail: their latest interest, never recommended back.
    pub in_message: &'a [String],
    /// Their products, most relevant first: the e-mail's, then their events', newest first.
    pub theirs: Vec<String>,
    /// The ones they bought.
    pub bought: BTreeSet<String>,
}

/// One person's request.
pub struct Ask<'a> {
    pub strategy: Served,
    pub person: &'a Person<'a>,
    pub limit: usize,
    pub filters: &'a Filters,
    pub now: DateTime<Utc>,
}

/// How many candidates to ask a strategy for: the filters drop some.
fn over(limit: usize, filters: &Filters) -> usize {
    limit * (filters.max_per_category.clamp(1, 10) + 2)
}

impl ContentService {
    /// The learned recommendations served (trained with [`train_recommendations`](Self::train_recommendations)).
    pub fn recs(&self) -> &missive_engine::recs::RecsService {
        &self.recs
    }

    /// Trains every strategy on the store's product events (people with personalization
    /// consent) and the catalogue, and swaps the result in.
    pub async fn train_recommendations(&self, now: DateTime<Utc>) -> Result<Arc<RecsModel>, RecsError> {
        let catalog = self.catalog().await.map_err(|e| match e {
            ContentServiceError::Store(s) => RecsError::Store(s),
            other => RecsError::Join(other.to_string()),
        })?;
        let items: Vec<_> = catalog.products().map(item_of_product).collect();
        let mut settings = served_settings(catalog.len());
        settings.decay = self.config.recommendation_decay;
        let job = missive_engine::recs::Training {
            items,
            settings,
            weights: self.config.recommendation_weights.clone(),
            now,
        };
        self.recs.train(&self.store, job).await
    }

    // --- rules ----------------------------------------------------------------------------

    /// Saves (creates or replaces) a rule; returns its version.
    pub async fn put_rule(
        &self,
        name: &str,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> Result<i64, ContentServiceError> {
        check_name(name)?;
        rule.validate().map_err(|(field, why)| {
            ContentServiceError::Content(ContentError::Invalid(format!("{field}: {why}")))
        })?;
        let body =
            serde_json::to_value(rule).map_err(|e| ContentServiceError::Corrupt("rule", e.to_string()))?;
        let version = self
            .put_one(DocumentKind::RecommendationRule, name, body, now)
            .await?;
        self.invalidate();
        Ok(version)
    }

    pub async fn delete_rule(&self, name: &str) -> Result<(), ContentServiceError> {
        if !self
            .store
            .documents()
            .delete_document(DocumentKind::RecommendationRule, name)
            .await?
        {
            return Err(ContentServiceError::NotFound {
                kind: "rule",
                name: name.to_string(),
            });
        }
        self.invalidate();
        Ok(())
    }

    /// Every rule, by name (cached like the catalogue).
    pub async fn rules(&self) -> Result<Arc<NamedRules>, ContentServiceError> {
        let generation = {
            let c = self.cache();
            if let Some((at, rules)) = &c.rules
                && at.elapsed() < CACHE_TTL
            {
                return Ok(rules.clone());
            }
            c.generation
        };
        let mut rules = Vec::new();
        for doc in self.list_all(DocumentKind::RecommendationRule).await? {
            match serde_json::from_value::<Rule>(doc.body) {
                Ok(r) => rules.push((doc.name, r)),
                Err(e) => {
                    tracing::warn!(rule = %doc.name, error = %e, "stored recommendation rule left out: unreadable")
                }
            }
        }
        let rules = Arc::new(rules);
        let mut c = self.cache();
        if c.generation == generation {
            c.rules = Some((Instant::now(), rules.clone()));
        }
        Ok(rules)
    }

    // --- serving --------------------------------------------------------------------------

    /// Which of a person's events [`Self::person`] and the learned history read products from:
    /// those with a weight above zero (in the settings or the current model) and purchases.
    /// For any other event they take nothing, whatever its properties.
    pub(super) fn reads_products(&self) -> impl Fn(&str) -> bool + use<> {
        let (weights, purchases) = (
            self.config.recommendation_weights.clone(),
            self.config.purchase_events.clone(),
        );
        let model = self.recs.current();
        move |name: &str| {
            let weighted = |w: Option<f32>| w.is_some_and(|w| w > 0.0);
            weighted(weights.of(name))
                || model.as_ref().is_some_and(|m| weighted(m.weights.of(name)))
                || purchases.iter().any(|p| p == name)
        }
    }

    /// A person's products, most relevant first: the message's, then their events', newest
    /// first (the weighted product events, and every product of a purchase event whatever the
    /// weights say); and the ones they bought. None of them is recommended back.
    pub fn person<'a>(&self, events: &'a [PersonEvent<'a>], in_message: &'a [String]) -> Person<'a> {
        let mut theirs: Vec<String> = in_message.to_vec();
        let mut bought = BTreeSet::new();
        let mut newest: Vec<_> = events.iter().collect();
        newest.sort_by_key(|e| std::cmp::Reverse(e.2));
        let weights = &self.config.recommendation_weights;
        for (name, props, _) in newest {
            let mut items: Vec<String> = items_of_event(name, props, weights)
                .into_iter()
                .map(|(i, _, _)| i.to_owned())
                .collect();
            if self.config.purchase_events.iter().any(|p| p == name) {
                let purchased = super::catalog::event_products(props);
                bought.extend(purchased.iter().cloned());
                items.extend(purchased);
            }
            for item in items {
                if !theirs.contains(&item) {
                    theirs.push(item);
                }
            }
        }
        Person {
            events,
            in_message,
            theirs,
            bought,
        }
    }

    /// A person's recommendations. `Learned` without a trained model is
    /// [`ContentServiceError::NotTrained`].
    pub async fn recommend_for(&self, ask: &Ask<'_>) -> Result<Vec<Pick>, ContentServiceError> {
        let catalog = self.catalog().await?;
        let model = self.recs.current();
        if matches!(ask.strategy, Served::Learned(_)) && model.is_none() {
            return Err(ContentServiceError::NotTrained);
        }
        let person = ask.person;
        let had: HashSet<&str> = person.theirs.iter().map(String::as_str).collect();
        let n = over(ask.limit, ask.filters);
        let mut candidates = Vec::new();
        if matches!(ask.strategy, Served::ForYou | Served::Rules) {
            candidates.extend(rules::fire(
                self.rules().await?.iter().map(|(_, r)| r),
                &person.theirs,
                &catalog,
            ));
        }
        let learned = match ask.strategy {
            Served::ForYou => Some(Strategy::Hybrid),
            Served::Learned(s) => Some(s),
            Served::Rules => None,
        };
        if let (Some(strategy), Some(model)) = (learned, &model) {
            let mut history = missive_engine::recs::history(model, person.events.iter().copied(), ask.now);
            let cart_weight = self
                .config
                .recommendation_weights
                .of("Product Added")
                .unwrap_or(1.0);
            history.extend(
                person
                    .in_message
                    .iter()
                    .filter_map(|id| model.items.get(id))
                    .map(|i| (i, cart_weight)),
            );
            // Not yet known to the model's people (an empty history) gives best sellers only
            // through the rules below, which know this shop's sales as of now.
            if !history.is_empty() || matches!(ask.strategy, Served::Learned(_)) {
                let skip = |i: u32| {
                    let id = model.items.name(i);
                    had.contains(id) || catalog.get(id).is_none_or(|e| !ask.filters.admits(&e.product))
                };
                let picks = model.trained.recommend(strategy, &history, None, n, &skip);
                candidates.extend(
                    picks
                        .into_iter()
                        .map(|p| candidate(p.item, p.score, p.reason, model, &catalog)),
                );
            }
        }
        if matches!(ask.strategy, Served::ForYou | Served::Rules) {
            let popularity = self.popularity(ask.now).await?;
            candidates.extend(catalog.rule_candidates(
                &popularity,
                &RecommendationRequest {
                    seeds: person.in_message,
                    exclude: &person.bought,
                    limit: n,
                },
            ));
        }
        Ok(ask
            .filters
            .finish(&catalog, candidates, |id| had.contains(id), ask.limit))
    }

    /// Products like `product_id` (its text and attributes; else what the same people liked;
    /// else its category's best sellers), `skip` left out.
    pub async fn similar_to(
        &self,
        product_id: &str,
        limit: usize,
        filters: &Filters,
        skip: &(dyn Fn(&str) -> bool + Sync),
        now: DateTime<Utc>,
    ) -> Result<Vec<Pick>, ContentServiceError> {
        let catalog = self.catalog().await?;
        let n = over(limit, filters);
        let mut candidates = Vec::new();
        if let Some(model) = self.recs.current()
            && let Some(item) = model.items.get(product_id)
        {
            let skip_item = |i: u32| {
                let id = model.items.name(i);
                i == item || skip(id) || catalog.get(id).is_none_or(|e| !filters.admits(&e.product))
            };
            for strategy in [Strategy::Content, Strategy::Als] {
                let picks = model
                    .trained
                    .recommend(strategy, &[(item, 1.0)], None, n, &skip_item);
                if !picks.is_empty() {
                    candidates.extend(
                        picks
                            .into_iter()
                            .map(|p| candidate(p.item, p.score, p.reason, &model, &catalog)),
                    );
                    break;
                }
            }
        }
        let popularity = self.popularity(now).await?;
        let seeds = [product_id.to_owned()];
        candidates.extend(
            catalog
                .rule_candidates(
                    &popularity,
                    &RecommendationRequest {
                        seeds: &seeds,
                        exclude: &BTreeSet::new(),
                        limit: n,
                    },
                )
                .into_iter()
                .filter(|c| c.source == Source::Category),
        );
        Ok(filters.finish(&catalog, candidates, |id| id == product_id || skip(id), limit))
    }

    /// Products bought with `product_id`: the marketer's rules for it first, then baskets.
    pub async fn bought_together(
        &self,
        product_id: &str,
        limit: usize,
        filters: &Filters,
        skip: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<Pick>, ContentServiceError> {
        let catalog = self.catalog().await?;
        let seeds = [product_id.to_owned()];
        let mut candidates = rules::fire(self.rules().await?.iter().map(|(_, r)| r), &seeds, &catalog);
        if let Some(model) = self.recs.current()
            && let Some(item) = model.items.get(product_id)
        {
            let picks = model.trained.recommend(
                Strategy::Item2item,
                &[(item, 1.0)],
                None,
                over(limit, filters),
                &|i| {
                    let id = model.items.name(i);
                    skip(id) || catalog.get(id).is_none_or(|e| !filters.admits(&e.product))
                },
            );
            candidates.extend(
                picks
                    .into_iter()
                    .map(|p| candidate(p.item, p.score, p.reason, &model, &catalog)),
            );
        }
        Ok(filters.finish(&catalog, candidates, |id| id == product_id || skip(id), limit))
    }
}

/// A learned pick as a candidate, its reason in words.
fn candidate(item: u32, score: f32, reason: Reason, model: &RecsModel, catalog: &Catalog) -> Candidate {
    // A reason names a product only when the catalogue knows it (an event may name a product
    // that is not, or no longer, in it).
    let named = |i: u32| {
        let id = model.items.name(i);
        catalog.get(id).map(|e| (id.to_owned(), e.product.title.clone()))
    };
    let (source, about, words): (Source, Option<u32>, fn(&str) -> String) = match reason {
        Reason::Popular => (Source::BestSeller, None, |_| String::new()),
        Reason::BoughtWith(i) => (Source::Item2item, Some(i), |t| format!("often bought with {t}")),
        Reason::LikedWith(i) => (Source::Als, Some(i), |t| {
            format!("people who liked {t} liked this")
        }),
        Reason::LooksLike(i) => (Source::Content, Some(i), |t| format!("like {t}")),
    };
    let (because_of, reason) = match about.filter(|&i| i != item).and_then(named) {
        Some((id, title)) => (Some(id), words(&title)),
        None if source == Source::BestSeller => (None, "a best seller".into()),
        None => (None, "picked from what you looked at".into()),
    };
    Candidate {
        product_id: model.items.name(item).to_owned(),
        score,
        reason,
        because_of,
        source,
    }
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
pub fn item_of_product(p: &Product) -> missive_recs::data::Item {
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
        in_stock: p.available(),
    }
}
