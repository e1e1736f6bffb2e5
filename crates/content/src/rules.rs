//! The marketer's "bought A → recommend B" rules: when a person's products (the ones in the
//! e-mail, then what they viewed, carted or bought, newest first) include one a rule names, or one of a
//! category it names, its products are recommended first, with the rule's reason or "goes
//! with A". Rules fire in name order; the business filters still apply to what they pick.

use serde::{Deserialize, Serialize};

use crate::filters::{Candidate, Source};
use crate::recs::Catalog;

/// Most products one rule names, in `when` and in `recommend`.
pub const MAX_RULE_PRODUCTS: usize = 100;

/// One rule, as saved through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RecommendationRule)]
pub struct Rule {
    pub when: Trigger,
    /// Product ids, in the order to recommend them.
    pub recommend: Vec<String>,
    /// Shown as the pick's reason instead of "goes with …", e.g. "Complete the look".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What makes a rule fire: any of these products, or any product of these categories.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RuleTrigger)]
pub struct Trigger {
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

impl Rule {
    /// Names the field that is wrong, and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.when.products.is_empty() && self.when.categories.is_empty() {
            return Err((
                "when",
                "name the products or categories that make the rule fire".into(),
            ));
        }
        if self.recommend.is_empty() {
            return Err(("recommend", "name at least one product to recommend".into()));
        }
        let lists = [
            ("when.products", &self.when.products),
            ("when.categories", &self.when.categories),
            ("recommend", &self.recommend),
        ];
        for (field, list) in lists {
            if list.len() > MAX_RULE_PRODUCTS {
                return Err((field, format!("at most {MAX_RULE_PRODUCTS}")));
            }
            if list
                .iter()
                .any(|s| s.trim().is_empty() || s.len() > 200 || s.contains('\0'))
            {
                return Err((field, "each is 1 to 200 characters, without NUL".into()));
            }
        }
        if let Some(r) = &self.reason
            && (r.trim().is_empty() || r.len() > 200 || r.contains('\0'))
        {
            return Err(("reason", "1 to 200 characters, without NUL".into()));
        }
        Ok(())
    }

    fn fires_on(&self, product_id: &str, catalog: &Catalog) -> bool {
        self.when.products.iter().any(|p| p == product_id)
            || (!self.when.categories.is_empty()
                && catalog.get(product_id).is_some_and(|e| {
                    e.product
                        .categories
                        .iter()
                        .any(|c| self.when.categories.contains(c))
                }))
    }
}

/// The candidates the rules give for `theirs` (most relevant first), in order: for each of
/// their products, each rule that fires on it, its products in order.
pub fn fire<'a>(
    rules: impl IntoIterator<Item = &'a Rule> + Clone,
    theirs: &[String],
    catalog: &Catalog,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for id in theirs {
        for rule in rules.clone() {
            if !rule.fires_on(id, catalog) {
                continue;
            }
            let reason = match (&rule.reason, catalog.get(id)) {
                (Some(r), _) => r.clone(),
                (None, Some(e)) => format!("goes with {}", e.product.title),
                (None, None) => "goes with what you chose".into(),
            };
            out.extend(rule.recommend.iter().map(|p| Candidate {
                product_id: p.clone(),
                score: 0.0,
                reason: reason.clone(),
                because_of: Some(id.clone()),
                source: Source::Rule,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::Product;

    fn product(id: &str, category: &str) -> Product {
        serde_json::from_value(serde_json::json!({
            "id": id, "title": format!("Title {id}"), "categories": [category],
        }))
        .unwrap()
    }

    fn rule(json: serde_json::Value) -> Rule {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn rules_fire_on_products_and_categories_in_order() {
        let catalog = Catalog::new([product("dress", "dresses"), product("boot", "boots")]);
        let rules = [
            rule(serde_json::json!({"when": {"products": ["dress"]}, "recommend": ["belt", "scarf"]})),
            rule(
                serde_json::json!({"when": {"categories": ["boots"]}, "recommend": ["socks"], "reason": "Keep them dry"}),
            ),
        ];
        let got = fire(&rules, &["boot".into(), "dress".into(), "hat".into()], &catalog);
        let summary: Vec<(&str, &str, Option<&str>)> = got
            .iter()
            .map(|c| (c.product_id.as_str(), c.reason.as_str(), c.because_of.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("socks", "Keep them dry", Some("boot")),
                ("belt", "goes with Title dress", Some("dress")),
                ("scarf", "goes with Title dress", Some("dress")),
            ]
        );
        assert!(fire(&rules, &["hat".into()], &catalog).is_empty());
    }

    #[test]
    fn bad_rules_name_their_field() {
        let cases = [
            (serde_json::json!({"when": {}, "recommend": ["b"]}), "when"),
            (
                serde_json::json!({"when": {"products": ["a"]}, "recommend": []}),
                "recommend",
            ),
            (
                serde_json::json!({"when": {"products": [" "]}, "recommend": ["b"]}),
                "when.products",
            ),
            (
                serde_json::json!({"when": {"categories": ["c"]}, "recommend": ["b"], "reason": ""}),
                "reason",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(rule(json).validate().unwrap_err().0, field);
        }
        let unknown = serde_json::from_value::<Rule>(
            serde_json::json!({"when": {"product": ["a"]}, "recommend": ["b"]}),
        );
        assert!(unknown.is_err(), "a misspelt field is refused, not ignored");
    }
}
