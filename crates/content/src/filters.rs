//! Business filters, applied last and always to every recommendation list, whatever chose
//! its candidates: only products in the catalogue and available (in stock, with a variant
//! in stock), not what the caller leaves out (what the person has or is looking at), within
//! the price band, at most `max_per_category` of one category (diversity), and, when a margin
//! boost is configured, products with more margin moved up.
//!
//! A candidate's place is its rank; a margin boost divides it by `1 + boost × margin`, so a
//! product with a 50 % margin under a boost of 1 ranks as if it were placed a third higher.
//! Ranks rather than scores, because the candidates come from strategies whose scores do not
//! compare (rules have none).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use missive_liquid::{Object, Value};
use serde::{Deserialize, Serialize};

use crate::recs::{Catalog, CatalogEntry, Product};

/// What chose a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RecommendationSource)]
pub enum Source {
    /// A marketer's "bought A → recommend B" rule.
    Rule,
    /// The same category as the person's products, best sellers first.
    Category,
    BestSeller,
    /// Learned: co-occurrence in baskets.
    Item2item,
    /// Learned: matrix factorisation.
    Als,
    /// Learned: product text and attributes.
    Content,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rule => "rule",
            Source::Category => "category",
            Source::BestSeller => "best_seller",
            Source::Item2item => "item2item",
            Source::Als => "als",
            Source::Content => "content",
        }
    }
}

/// A product some strategy proposes, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub product_id: String,
    /// The strategy's score (0 for rules, which rank by order).
    pub score: f32,
    /// In words: "because you viewed Linen dress".
    pub reason: String,
    /// The person's product the reason names, if any.
    pub because_of: Option<String>,
    pub source: Source,
}

/// A recommended product that passed the filters.
#[derive(Debug, Clone)]
pub struct Pick {
    pub entry: Arc<CatalogEntry>,
    pub score: f32,
    pub reason: String,
    pub because_of: Option<String>,
    pub source: Source,
}

impl Pick {
    /// The product as templates see it, with `reason`, `because_of` and `source`.
    pub fn to_value(&self) -> Value {
        let mut o = match &self.entry.value {
            Value::Object(o) => Object::clone(o),
            _ => Object::new(),
        };
        o.insert("reason", Value::from(self.reason.as_str()));
        o.insert(
            "because_of",
            self.because_of.as_deref().map_or(Value::Nil, Value::from),
        );
        o.insert("source", Value::from(self.source.as_str()));
        Value::from(o)
    }
}

/// The business filters' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// At most this many products of one category (a product's first) in a list; 0: no cap.
    pub max_per_category: usize,
    /// Only products priced within the band (a product without a price is left out when a
    /// band is set).
    pub price_min: Option<f64>,
    pub price_max: Option<f64>,
    /// 0: off. See the module docs.
    pub margin_boost: f64,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            max_per_category: 3,
            price_min: None,
            price_max: None,
            margin_boost: 0.0,
        }
    }
}

impl Filters {
    /// Names the setting that is wrong, and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, v) in [("price_min", self.price_min), ("price_max", self.price_max)] {
            if let Some(p) = v
                && !(p.is_finite() && p >= 0.0)
            {
                return Err((field, "a price band's ends are prices: 0 or more".into()));
            }
        }
        if let (Some(lo), Some(hi)) = (self.price_min, self.price_max)
            && lo > hi
        {
            return Err(("price_min", format!("price_min {lo} is above price_max {hi}")));
        }
        if !(self.margin_boost.is_finite() && (0.0..=100.0).contains(&self.margin_boost)) {
            return Err(("margin_boost", "0 (off) to 100".into()));
        }
        Ok(())
    }

    /// Available and within the price band.
    pub fn admits(&self, p: &Product) -> bool {
        if !p.available() {
            return false;
        }
        if self.price_min.is_none() && self.price_max.is_none() {
            return true;
        }
        p.price.is_some_and(|price| {
            self.price_min.is_none_or(|lo| price >= lo) && self.price_max.is_none_or(|hi| price <= hi)
        })
    }

    /// The first `limit` candidates, in order, that the catalogue has, that `skip` does not
    /// leave out and that the filters admit; each product once; boosted by margin and capped
    /// per category.
    pub fn finish(
        &self,
        catalog: &Catalog,
        candidates: impl IntoIterator<Item = Candidate>,
        skip: impl Fn(&str) -> bool,
        limit: usize,
    ) -> Vec<Pick> {
        let mut seen = HashSet::new();
        let mut admitted: Vec<(f64, Pick)> = Vec::new();
        for (rank, c) in candidates.into_iter().enumerate() {
            if skip(&c.product_id) || seen.contains(&c.product_id) {
                continue;
            }
            let Some(entry) = catalog.get(&c.product_id) else {
                continue;
            };
            if !self.admits(&entry.product) {
                continue;
            }
            let margin = entry.product.margin.unwrap_or(0.0);
            let place = (rank + 1) as f64 / (1.0 + self.margin_boost * margin);
            seen.insert(c.product_id);
            admitted.push((
                place,
                Pick {
                    entry: entry.clone(),
                    score: c.score,
                    reason: c.reason,
                    because_of: c.because_of,
                    source: c.source,
                },
            ));
        }
        if self.margin_boost > 0.0 {
            admitted.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let mut per_category: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(limit);
        for (_, pick) in &admitted {
            if out.len() == limit {
                break;
            }
            if self.max_per_category > 0
                && let Some(c) = pick.entry.product.categories.first()
            {
                let n = per_category.entry(c.as_str()).or_default();
                if *n >= self.max_per_category {
                    continue;
                }
                *n += 1;
            }
            out.push(pick.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::Variant;

    fn product(id: &str, category: &str, price: f64, margin: Option<f64>) -> Product {
        serde_json::from_value(serde_json::json!({
            "id": id, "title": format!("Title {id}"), "price": price,
            "categories": [category], "margin": margin,
        }))
        .unwrap()
    }

    fn candidate(id: &str) -> Candidate {
        Candidate {
            product_id: id.into(),
            score: 0.0,
            reason: String::new(),
            because_of: None,
            source: Source::Als,
        }
    }

    fn ids(picks: &[Pick]) -> Vec<&str> {
        picks.iter().map(|p| p.entry.product.id.as_str()).collect()
    }

    fn catalog() -> Catalog {
        let mut sold_out = product("sold-out", "dresses", 50.0, None);
        sold_out.in_stock = false;
        let mut variants_gone = product("variants-gone", "dresses", 50.0, None);
        variants_gone.variants = vec![Variant {
            sku: "variants-gone-M".into(),
            size: Some("M".into()),
            colour: None,
            in_stock: false,
        }];
        Catalog::new([
            product("d1", "dresses", 40.0, None),
            product("d2", "dresses", 60.0, Some(0.1)),
            product("d3", "dresses", 80.0, None),
            product("d4", "dresses", 90.0, None),
            product("b1", "boots", 120.0, Some(0.6)),
            sold_out,
            variants_gone,
        ])
    }

    #[test]
    fn the_filters_apply_whatever_the_candidates() {
        let c = catalog();
        let all = || {
            [
                "sold-out",
                "d1",
                "unknown",
                "d2",
                "d1",
                "variants-gone",
                "d3",
                "d4",
                "b1",
            ]
            .map(candidate)
        };
        type Case<'a> = (Filters, &'a dyn Fn(&str) -> bool, usize, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            // Diversity: three dresses, then the boots; unknown, sold out, duplicates gone.
            (Filters::default(), &|_| false, 10, vec!["d1", "d2", "d3", "b1"]),
            // The person's own products are skipped.
            (
                Filters::default(),
                &|id| id == "d1",
                10,
                vec!["d2", "d3", "d4", "b1"],
            ),
            // The limit.
            (Filters::default(), &|_| false, 2, vec!["d1", "d2"]),
            // A price band.
            (
                Filters {
                    price_min: Some(50.0),
                    price_max: Some(100.0),
                    ..Filters::default()
                },
                &|_| false,
                10,
                vec!["d2", "d3", "d4"],
            ),
            // No cap.
            (
                Filters {
                    max_per_category: 0,
                    ..Filters::default()
                },
                &|_| false,
                10,
                vec!["d1", "d2", "d3", "d4", "b1"],
            ),
            // A margin boost of 10 moves the boots (60 %: place 9 / 7 = 1.29) to the top,
            // ahead of d1 (place 2) and d2 (10 %: place 4 / 2 = 2, after d1 on a tie).
            (
                Filters {
                    margin_boost: 10.0,
                    ..Filters::default()
                },
                &|_| false,
                10,
                vec!["b1", "d1", "d2", "d3"],
            ),
        ];
        for (i, (filters, skip, limit, want)) in cases.into_iter().enumerate() {
            assert_eq!(ids(&filters.finish(&c, all(), skip, limit)), want, "case {i}");
        }
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = [
            (
                Filters {
                    price_min: Some(-1.0),
                    ..Filters::default()
                },
                "price_min",
            ),
            (
                Filters {
                    price_min: Some(10.0),
                    price_max: Some(5.0),
                    ..Filters::default()
                },
                "price_min",
            ),
            (
                Filters {
                    price_max: Some(f64::NAN),
                    ..Filters::default()
                },
                "price_max",
            ),
            (
                Filters {
                    margin_boost: -1.0,
                    ..Filters::default()
                },
                "margin_boost",
            ),
        ];
        for (f, field) in bad {
            assert_eq!(f.validate().unwrap_err().0, field);
        }
        assert!(Filters::default().validate().is_ok());
    }

    #[test]
    fn a_pick_tells_templates_why() {
        let c = catalog();
        let mut cand = candidate("d1");
        cand.reason = "because you viewed Boots".into();
        cand.because_of = Some("b1".into());
        let picks = Filters::default().finish(&c, [cand], |_| false, 1);
        let Value::Object(o) = picks[0].to_value() else {
            panic!("an object")
        };
        assert_eq!(o.get("reason"), Some(&Value::from("because you viewed Boots")));
        assert_eq!(o.get("because_of"), Some(&Value::from("b1")));
        assert_eq!(o.get("source"), Some(&Value::from("als")));
        assert_eq!(o.get("title"), Some(&Value::from("Title d1")));
    }
}
