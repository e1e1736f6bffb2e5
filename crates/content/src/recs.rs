//! Product recommendations before the models land: rule-based picks over a product catalogue,
//! ordered by recent sales.
//!
//! `for_you` takes the products a recipient is looking at (the cart of the triggering event,
//! or what they bought), recommends in-stock products from the same categories that they do
//! not already have, best sellers first, and fills up with overall best sellers.
//! `best_sellers` is the catalogue ranked by purchases with an exponential decay (a sale a
//! half-life ago counts half), so last week's hits outrank last year's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use missive_liquid::{Object, Value};
use serde::{Deserialize, Serialize};

use crate::ContentError;

/// A product of the catalogue, as loaded through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    /// In major units (19.99), as in Segment's e-commerce events and product feeds.
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default = "in_stock_default")]
    pub in_stock: bool,
    /// Anything else the templates may show.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn in_stock_default() -> bool {
    true
}

impl Product {
    pub fn validate(&self) -> Result<(), ContentError> {
        if self.id.trim().is_empty() || self.id.len() > 200 {
            return Err(ContentError::Invalid(
                "a product id is 1 to 200 characters".into(),
            ));
        }
        if self.title.trim().is_empty() {
            return Err(ContentError::Invalid(format!(
                "product {:?} has no title",
                self.id
            )));
        }
        if let Some(p) = self.price
            && !(p.is_finite() && p >= 0.0)
        {
            return Err(ContentError::Invalid(format!(
                "product {:?} has a negative or invalid price",
                self.id
            )));
        }
        Ok(())
    }

    /// The product as templates see it.
    pub fn to_value(&self) -> Value {
        let mut o = Object::with_capacity(10);
        o.insert("id", Value::from(self.id.as_str()));
        o.insert("title", Value::from(self.title.as_str()));
        let opt = |s: &Option<String>| s.as_deref().map(Value::from).unwrap_or(Value::Nil);
        o.insert("url", opt(&self.url));
        o.insert("image_url", opt(&self.image_url));
        o.insert("price", self.price.map(Value::from).unwrap_or(Value::Nil));
        o.insert("currency", opt(&self.currency));
        o.insert(
            "categories",
            Value::from(
                self.categories
                    .iter()
                    .map(|c| Value::from(c.as_str()))
                    .collect::<Vec<_>>(),
            ),
        );
        o.insert("brand", opt(&self.brand));
        o.insert("in_stock", Value::from(self.in_stock));
        for (k, v) in &self.attributes {
            if o.get(k).is_none() {
                o.insert(k.clone(), Value::from(v));
            }
        }
        Value::from(o)
    }
}

/// A catalogue entry with its template value computed once.
#[derive(Debug)]
pub struct CatalogEntry {
    pub product: Product,
    pub value: Value,
}

/// The product catalogue, indexed for recommendations.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Arc<CatalogEntry>>,
    by_id: HashMap<String, usize>,
    by_category: HashMap<String, Vec<usize>>,
}

impl Catalog {
    pub fn new(products: impl IntoIterator<Item = Product>) -> Self {
        let mut catalog = Catalog::default();
        for product in products {
            let value = product.to_value();
            let i = match catalog.by_id.get(&product.id) {
                Some(&i) => {
                    catalog.entries[i] = Arc::new(CatalogEntry { product, value });
                    continue;
                }
                None => catalog.entries.len(),
            };
            catalog.by_id.insert(product.id.clone(), i);
            for c in &product.categories {
                catalog.by_category.entry(c.clone()).or_default().push(i);
            }
            catalog.entries.push(Arc::new(CatalogEntry { product, value }));
        }
        catalog
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<CatalogEntry>> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// In-stock products ranked by recent sales, then catalogue order; `exclude` left out.
    pub fn best_sellers(
        &self,
        popularity: &Popularity,
        exclude: &BTreeSet<String>,
        limit: usize,
    ) -> Vec<Value> {
        let mut out = Vec::with_capacity(limit);
        let ranked = popularity
            .ranked
            .iter()
            .filter_map(|(id, _)| self.by_id.get(id).copied());
        for i in ranked.chain(0..self.entries.len()) {
            if out.len() == limit {
                break;
            }
            let e = &self.entries[i];
            if e.product.in_stock && !exclude.contains(&e.product.id) && !out.contains(&i) {
                out.push(i);
            }
        }
        out.into_iter().map(|i| self.entries[i].value.clone()).collect()
    }

    /// Products for one recipient: same categories as what they look at, best sellers first,
    /// then overall best sellers; never what they look at or already have, never out of stock.
    pub fn recommend(&self, popularity: &Popularity, request: &RecommendationRequest<'_>) -> Vec<Value> {
        let limit = request.limit;
        let mut exclude: BTreeSet<String> = request.exclude.clone();
        exclude.extend(request.seeds.iter().cloned());
        let categories: BTreeSet<&str> = request
            .seeds
            .iter()
            .chain(request.exclude.iter())
            .filter_map(|id| self.get(id))
            .flat_map(|e| e.product.categories.iter().map(String::as_str))
            .collect();
        let mut candidates: Vec<usize> = categories
            .iter()
            .flat_map(|c| self.by_category.get(*c).into_iter().flatten().copied())
            .filter(|&i| self.entries[i].product.in_stock && !exclude.contains(&self.entries[i].product.id))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.sort_by(|&a, &b| {
            let (sa, sb) = (
                popularity.score(&self.entries[a].product.id),
                popularity.score(&self.entries[b].product.id),
            );
            sb.total_cmp(&sa).then(a.cmp(&b))
        });
        candidates.truncate(limit);
        let mut out: Vec<Value> = candidates
            .iter()
            .map(|&i| self.entries[i].value.clone())
            .collect();
        if out.len() < limit {
            for &i in &candidates {
                exclude.insert(self.entries[i].product.id.clone());
            }
            out.extend(self.best_sellers(popularity, &exclude, limit - out.len()));
        }
        out
    }
}

/// What to recommend for.
#[derive(Debug)]
pub struct RecommendationRequest<'a> {
    /// Products the recipient is looking at (the cart, the viewed product).
    pub seeds: &'a [String],
    /// Products the recipient already has.
    pub exclude: &'a BTreeSet<String>,
    pub limit: usize,
}

/// Products ranked by purchases, decayed with a half-life.
#[derive(Debug, Default, Clone)]
pub struct Popularity {
    ranked: Vec<(String, f64)>,
    scores: HashMap<String, f64>,
}

impl Popularity {
    /// `purchases`: (product id, quantity, when). Sales after `now` count fully.
    pub fn from_purchases(
        purchases: impl IntoIterator<Item = (String, f64, jiff::Timestamp)>,
        now: jiff::Timestamp,
        half_life: jiff::SignedDuration,
    ) -> Self {
        let half_life_secs = half_life.as_secs_f64().max(1.0);
        let mut scores: HashMap<String, f64> = HashMap::new();
        for (id, quantity, at) in purchases {
            let age = now.duration_since(at).as_secs_f64().max(0.0);
            *scores.entry(id).or_default() += quantity.max(0.0) * (-age / half_life_secs).exp2();
        }
        let mut ranked: Vec<(String, f64)> = scores.iter().map(|(k, v)| (k.clone(), *v)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Popularity { ranked, scores }
    }

    pub fn score(&self, id: &str) -> f64 {
        self.scores.get(id).copied().unwrap_or(0.0)
    }

    pub fn top(&self, n: usize) -> &[(String, f64)] {
        &self.ranked[..n.min(self.ranked.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, cats: &[&str], in_stock: bool) -> Product {
        Product {
            id: id.into(),
            title: format!("Product {id}"),
            url: Some(format!("https://shop.example/p/{id}")),
            image_url: None,
            price: Some(10.0),
            currency: Some("USD".into()),
            categories: cats.iter().map(|c| c.to_string()).collect(),
            brand: None,
            in_stock,
            attributes: Default::default(),
        }
    }

    fn ids(values: &[Value]) -> Vec<String> {
        values
            .iter()
            .map(|v| match v {
                Value::Object(o) => match o.get("id") {
                    Some(Value::Str(s)) => s.to_string(),
                    _ => String::new(),
                },
                _ => String::new(),
            })
            .collect()
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn recent_sales_outrank_old_ones() {
        let now = ts("2026-11-28T00:00:00Z");
        let pop = Popularity::from_purchases(
            vec![
                ("old".to_string(), 10.0, ts("2026-01-01T00:00:00Z")),
                ("new".to_string(), 2.0, ts("2026-11-27T00:00:00Z")),
            ],
            now,
            jiff::SignedDuration::from_hours(24 * 7),
        );
        assert_eq!(pop.top(2)[0].0, "new");
    }

    #[test]
    fn for_you_prefers_the_cart_categories_and_skips_what_is_owned_or_out_of_stock() {
        let catalog = Catalog::new(vec![
            product("shoe-1", &["shoes"], true),
            product("shoe-2", &["shoes"], true),
            product("shoe-3", &["shoes"], false),
            product("shoe-4", &["shoes"], true),
            product("hat-1", &["hats"], true),
            product("hat-2", &["hats"], true),
        ]);
        let now = ts("2026-11-28T00:00:00Z");
        let pop = Popularity::from_purchases(
            vec![("hat-2".to_string(), 5.0, now), ("shoe-4".to_string(), 1.0, now)],
            now,
            jiff::SignedDuration::from_hours(168),
        );
        let owned: BTreeSet<String> = ["shoe-2".to_string()].into();
        let cart = vec!["shoe-1".to_string()];
        let recs = catalog.recommend(
            &pop,
            &RecommendationRequest {
                seeds: &cart,
                exclude: &owned,
                limit: 3,
            },
        );
        assert_eq!(ids(&recs), vec!["shoe-4", "hat-2", "hat-1"]);
        assert_eq!(
            ids(&catalog.best_sellers(&pop, &BTreeSet::new(), 2)),
            vec!["hat-2", "shoe-4"]
        );
    }

    #[test]
    fn with_no_history_best_sellers_follow_catalogue_order() {
        let catalog = Catalog::new(vec![
            product("a", &[], true),
            product("b", &[], false),
            product("c", &[], true),
        ]);
        let recs = catalog.recommend(
            &Popularity::default(),
            &RecommendationRequest {
                seeds: &[],
                exclude: &BTreeSet::new(),
                limit: 4,
            },
        );
        assert_eq!(ids(&recs), vec!["a", "c"]);
    }

    #[test]
    fn invalid_products_are_refused() {
        let mut p = product("x", &[], true);
        p.price = Some(-1.0);
        assert!(p.validate().is_err());
        p.price = Some(1.0);
        p.title = " ".into();
        assert!(p.validate().is_err());
    }
}
