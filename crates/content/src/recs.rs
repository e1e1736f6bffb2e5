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

use chrono::{DateTime, TimeDelta, Utc};
use missive_liquid::{Object, Value};
use serde::{Deserialize, Serialize};

use crate::ContentError;

/// A product of the catalogue, as loaded through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Sizes and colours of this style. The style is what is recommended; it is available
    /// while one of its variants is, and templates see only the variants in stock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// The share of the price that is margin (0 to 1), for margin boosts; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Anything else the templates may show.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// One size or colour of a style, as stock keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ProductVariant)]
pub struct Variant {
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
    #[serde(default = "in_stock_default")]
    pub in_stock: bool,
}

/// Most variants one product may list.
pub const MAX_VARIANTS: usize = 500;

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
        let has_nul = |s: &str| s.contains('\0');
        let strings = [
            Some(&self.id),
            Some(&self.title),
            self.url.as_ref(),
            self.image_url.as_ref(),
            self.brand.as_ref(),
        ];
        if strings.into_iter().flatten().any(|s| has_nul(s))
            || self.categories.iter().any(|c| has_nul(c))
            || serde_json::Value::Object(self.attributes.clone())
                .to_string()
                .contains("\\u0000")
        {
            return Err(ContentError::Invalid(format!(
                "product {:?} contains a NUL character",
                self.id
            )));
        }
        if let Some(m) = self.margin
            && !(0.0..=1.0).contains(&m)
        {
            return Err(ContentError::Invalid(format!(
                "product {:?}: margin is a share of the price, from 0 to 1",
                self.id
            )));
        }
        if self.variants.len() > MAX_VARIANTS {
            return Err(ContentError::Invalid(format!(
                "product {:?} has more than {MAX_VARIANTS} variants",
                self.id
            )));
        }
        if let Some(v) = self.variants.iter().find(|v| {
            v.sku.trim().is_empty()
                || v.sku.len() > 200
                || [Some(&v.sku), v.size.as_ref(), v.colour.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|s| has_nul(s))
        }) {
            return Err(ContentError::Invalid(format!(
                "product {:?}: variant {:?} needs a sku of 1 to 200 characters without NUL",
                self.id, v.sku
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

    /// In stock, and, when it has variants, one of them is.
    pub fn available(&self) -> bool {
        self.in_stock && (self.variants.is_empty() || self.variants.iter().any(|v| v.in_stock))
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
        o.insert("in_stock", Value::from(self.available()));
        if !self.variants.is_empty() {
            let in_stock: Vec<Value> = self
                .variants
                .iter()
                .filter(|v| v.in_stock)
                .map(|v| {
                    let mut x = Object::with_capacity(3);
                    x.insert("sku", Value::from(v.sku.as_str()));
                    x.insert("size", opt(&v.size));
                    x.insert("colour", opt(&v.colour));
                    Value::from(x)
                })
                .collect();
            o.insert("variants", Value::from(in_stock));
        }
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
    /// Product pages by address; `None` when several products share one (a shop whose pages
    /// differ only by query): a click there names no product.
    by_url: HashMap<String, Option<usize>>,
}

/// A product page's address without its query, fragment and trailing slash, so that a link
/// with tracking parameters finds its product.
fn page_of(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].trim_end_matches('/')
}

impl Catalog {
    pub fn new(products: impl IntoIterator<Item = Product>) -> Self {
        let mut catalog = Catalog::default();
        for product in products {
            let entry = Arc::new(CatalogEntry {
                value: product.to_value(),
                product,
            });
            match catalog.by_id.get(&entry.product.id) {
                // A later duplicate replaces the earlier one.
                Some(&i) => catalog.entries[i] = entry,
                None => {
                    catalog
                        .by_id
                        .insert(entry.product.id.clone(), catalog.entries.len());
                    catalog.entries.push(entry);
                }
            }
        }
        for (i, e) in catalog.entries.iter().enumerate() {
            for c in &e.product.categories {
                catalog.by_category.entry(c.clone()).or_default().push(i);
            }
            if let Some(url) = &e.product.url {
                catalog
                    .by_url
                    .entry(page_of(url).to_owned())
                    .and_modify(|at| *at = None)
                    .or_insert(Some(i));
            }
        }
        catalog
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every product, in catalogue order.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.entries.iter().map(|e| &e.product)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<CatalogEntry>> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// The product whose page `url` is (its query and fragment ignored): what a click on a
    /// product link in an e-mail was about.
    pub fn product_at(&self, url: &str) -> Option<&Arc<CatalogEntry>> {
        self.by_url
            .get(page_of(url))
            .copied()
            .flatten()
            .map(|i| &self.entries[i])
    }

    /// In-stock products ranked by recent sales, then catalogue order; `exclude` left out.
    pub fn best_sellers(
        &self,
        popularity: &Popularity,
        exclude: &BTreeSet<String>,
        limit: usize,
    ) -> Vec<Value> {
        self.best_seller_indices(popularity, exclude, limit)
            .map(|i| self.entries[i].value.clone())
            .collect()
    }

    fn best_seller_indices(
        &self,
        popularity: &Popularity,
        exclude: &BTreeSet<String>,
        limit: usize,
    ) -> impl Iterator<Item = usize> {
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
            if e.product.available() && !exclude.contains(&e.product.id) && !out.contains(&i) {
                out.push(i);
            }
        }
        out.into_iter()
    }

    /// Products for one recipient: same categories as what they look at, best sellers first,
    /// then overall best sellers; never what they look at or already have, never out of stock.
    pub fn recommend(&self, popularity: &Popularity, request: &RecommendationRequest<'_>) -> Vec<Value> {
        let no_cap = crate::filters::Filters {
            max_per_category: 0,
            ..Default::default()
        };
        no_cap
            .finish(
                self,
                self.rule_candidates(popularity, request),
                |_| false,
                request.limit,
            )
            .iter()
            .map(crate::filters::Pick::to_value)
            .collect()
    }

    /// The category rule's candidates, with reasons: up to `limit` in-stock products of the
    /// seeds' and owned products' categories, best sellers first ("more from dresses"), then
    /// up to `limit` overall best sellers; never a seed or an owned product.
    pub fn rule_candidates(
        &self,
        popularity: &Popularity,
        request: &RecommendationRequest<'_>,
    ) -> Vec<crate::filters::Candidate> {
        use crate::filters::{Candidate, Source};
        let limit = request.limit;
        let mut exclude: BTreeSet<String> = request.exclude.clone();
        exclude.extend(request.seeds.iter().cloned());
        // Each category with the first product of theirs that has it.
        let mut categories: Vec<(&str, &str)> = Vec::new();
        for id in request.seeds.iter().chain(request.exclude.iter()) {
            for c in self.get(id).into_iter().flat_map(|e| &e.product.categories) {
                if !categories.iter().any(|(x, _)| x == c) {
                    categories.push((c.as_str(), id.as_str()));
                }
            }
        }
        let mut candidates: Vec<(usize, usize)> = categories
            .iter()
            .enumerate()
            .flat_map(|(ci, (c, _))| {
                self.by_category
                    .get(*c)
                    .into_iter()
                    .flatten()
                    .map(move |&i| (i, ci))
            })
            .filter(|&(i, _)| {
                self.entries[i].product.available() && !exclude.contains(&self.entries[i].product.id)
            })
            .collect();
        candidates.sort_unstable();
        candidates.dedup_by_key(|(i, _)| *i);
        candidates.sort_by(|&(a, _), &(b, _)| {
            let (sa, sb) = (
                popularity.score(&self.entries[a].product.id),
                popularity.score(&self.entries[b].product.id),
            );
            sb.total_cmp(&sa).then(a.cmp(&b))
        });
        candidates.truncate(limit);
        let mut out: Vec<Candidate> = candidates
            .iter()
            .map(|&(i, ci)| Candidate {
                product_id: self.entries[i].product.id.clone(),
                score: popularity.score(&self.entries[i].product.id) as f32,
                reason: format!("more from {}", categories[ci].0),
                because_of: Some(categories[ci].1.to_owned()),
                source: Source::Category,
            })
            .collect();
        for &(i, _) in &candidates {
            exclude.insert(self.entries[i].product.id.clone());
        }
        out.extend(self.best_seller_indices(popularity, &exclude, limit).map(|i| {
            let id = &self.entries[i].product.id;
            Candidate {
                product_id: id.clone(),
                score: popularity.score(id) as f32,
                reason: "a best seller".into(),
                because_of: None,
                source: Source::BestSeller,
            }
        }));
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

/// Products ranked by purchases, each sale decayed with a half-life. It can be brought up
/// to date incrementally: [`advance`](Self::advance) to a later time, [`add`](Self::add) the
/// new sales, then [`rank`](Self::rank).
#[derive(Debug, Clone)]
pub struct Popularity {
    ranked: Vec<(String, f64)>,
    scores: HashMap<String, f64>,
    as_of: DateTime<Utc>,
    half_life_secs: f64,
}

impl Default for Popularity {
    fn default() -> Self {
        Popularity::new(DateTime::UNIX_EPOCH, TimeDelta::hours(24 * 7))
    }
}

impl Popularity {
    pub fn new(as_of: DateTime<Utc>, half_life: TimeDelta) -> Self {
        Popularity {
            ranked: Vec::new(),
            scores: HashMap::new(),
            as_of,
            half_life_secs: half_life.as_seconds_f64().max(1.0),
        }
    }

    /// `purchases`: (product id, quantity, when). Sales after `now` count fully.
    pub fn from_purchases(
        purchases: impl IntoIterator<Item = (String, f64, DateTime<Utc>)>,
        now: DateTime<Utc>,
        half_life: TimeDelta,
    ) -> Self {
        let mut p = Popularity::new(now, half_life);
        for (id, quantity, at) in purchases {
            p.add(id, quantity, at);
        }
        p.rank();
        p
    }

    /// Decays every score to `now` (a no-op for an earlier time).
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let age = (now - self.as_of).as_seconds_f64();
        if age <= 0.0 {
            return;
        }
        let factor = (-age / self.half_life_secs).exp2();
        self.scores.values_mut().for_each(|s| *s *= factor);
        // Sales decayed to nothing stop costing memory.
        self.scores.retain(|_, s| *s > 1e-9);
        self.as_of = now;
    }

    /// Counts a sale, decayed by its age at the current time.
    pub fn add(&mut self, id: String, quantity: f64, at: DateTime<Utc>) {
        let age = (self.as_of - at).as_seconds_f64().max(0.0);
        *self.scores.entry(id).or_default() += quantity.max(0.0) * (-age / self.half_life_secs).exp2();
    }

    /// Orders the products by score, after additions.
    pub fn rank(&mut self) {
        let mut ranked: Vec<(String, f64)> = self.scores.iter().map(|(k, v)| (k.clone(), *v)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.ranked = ranked;
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
            variants: Vec::new(),
            margin: None,
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

    fn ts(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_link_finds_its_product_whatever_its_query() {
        let catalog = Catalog::new([product("p1", &["a"], true)]);
        for url in [
            "https://shop.example/p/p1",
            "https://shop.example/p/p1/",
            "https://shop.example/p/p1?utm_source=missive#top",
        ] {
            assert_eq!(
                catalog.product_at(url).map(|e| e.product.id.as_str()),
                Some("p1"),
                "{url}"
            );
        }
        assert!(catalog.product_at("https://shop.example/p/p2").is_none());
        let mut a = product("a", &["x"], true);
        let mut b = product("b", &["x"], true);
        a.url = Some("https://shop.example/item?id=1".into());
        b.url = Some("https://shop.example/item?id=2".into());
        let shared = Catalog::new([a, b]);
        assert!(
            shared.product_at("https://shop.example/item?id=1").is_none(),
            "ambiguous: no product"
        );
    }

    #[test]
    fn a_style_is_available_while_one_variant_is_and_shows_only_those() {
        let mut p = product("dress", &["dresses"], true);
        let variant = |size: &str, in_stock| Variant {
            sku: format!("dress-{size}"),
            size: Some(size.into()),
            colour: None,
            in_stock,
        };
        p.variants = vec![variant("S", false), variant("M", true)];
        assert!(p.available());
        let Value::Object(o) = p.to_value() else {
            panic!("an object")
        };
        let Some(Value::Array(v)) = o.get("variants") else {
            panic!("variants")
        };
        assert_eq!(v.len(), 1, "only the size in stock");
        p.variants[1].in_stock = false;
        assert!(!p.available());
        let catalog = Catalog::new([p, product("other", &["dresses"], true)]);
        let recs = catalog.recommend(
            &Popularity::default(),
            &RecommendationRequest {
                seeds: &[],
                exclude: &BTreeSet::new(),
                limit: 5,
            },
        );
        assert_eq!(
            ids(&recs),
            vec!["other"],
            "a style with no size left is not recommended"
        );
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
            TimeDelta::hours(24 * 7),
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
            TimeDelta::hours(168),
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
    fn popularity_brought_up_to_date_matches_one_computed_at_once() {
        let day = TimeDelta::hours(24);
        let t0 = ts("2026-11-01T00:00:00Z");
        let t1 = ts("2026-11-20T00:00:00Z");
        let sales = [
            ("a", 3.0, t0),
            ("b", 1.0, ts("2026-11-10T00:00:00Z")),
            ("a", 1.0, t1),
        ];
        let at_once =
            Popularity::from_purchases(sales.iter().map(|(i, q, t)| (i.to_string(), *q, *t)), t1, day * 7);
        let mut step = Popularity::new(t0, day * 7);
        step.add("a".into(), 3.0, t0);
        step.advance(ts("2026-11-10T00:00:00Z"));
        step.add("b".into(), 1.0, ts("2026-11-10T00:00:00Z"));
        step.advance(t1);
        step.add("a".into(), 1.0, t1);
        step.rank();
        for id in ["a", "b"] {
            assert!((at_once.score(id) - step.score(id)).abs() < 1e-9, "{id}");
        }
        assert_eq!(step.top(1)[0].0, "a");
    }

    #[test]
    fn a_duplicate_id_replaces_the_product_and_its_categories() {
        let catalog = Catalog::new(vec![
            product("x", &["hats"], true),
            product("x", &["boots"], true),
            product("y", &["hats"], true),
        ]);
        assert_eq!(catalog.len(), 2);
        let seeds = vec!["y".to_string()];
        let recs = catalog.recommend(
            &Popularity::default(),
            &RecommendationRequest {
                seeds: &seeds,
                exclude: &BTreeSet::new(),
                limit: 1,
            },
        );
        // x is no longer a hat: it is recommended only as a best seller, not for the category.
        assert_eq!(ids(&recs), vec!["x"]);
        assert_eq!(catalog.get("x").unwrap().product.categories, vec!["boots"]);
    }

    #[test]
    fn invalid_products_are_refused() {
        let mut p = product("x", &[], true);
        p.title = "a\0b".into();
        assert!(p.validate().is_err());
        p.title = "ok".into();
        p.attributes
            .insert("k".into(), serde_json::Value::String("\0".into()));
        assert!(p.validate().is_err());
        p.attributes.clear();
        p.price = Some(-1.0);
        assert!(p.validate().is_err());
        p.price = Some(1.0);
        p.title = " ".into();
        assert!(p.validate().is_err());
    }
}
